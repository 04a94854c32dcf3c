"""The condition language: a lark grammar, its typed AST, and an unparser. Never ``eval``."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from functools import cache, cached_property

import lark

from engine.errors import ExpressionError

__all__ = [
    "And",
    "Arith",
    "Call",
    "Compare",
    "Expr",
    "In",
    "Index",
    "ListLit",
    "Literal",
    "Name",
    "Neg",
    "Not",
    "Or",
    "parse",
    "unparse",
]

_GRAMMAR = r"""
?start: disj
?disj: conj (_OR conj)*          -> or_
?conj: neg (_AND neg)*           -> and_
?neg: _NOT neg                   -> not_
    | comparison
?comparison: sum COMP sum        -> compare
    | sum _IN sum                -> in_
    | sum _NOT _IN sum           -> not_in
    | sum
?sum: product
    | sum ADDOP product          -> arith
?product: unary
    | product MULOP unary        -> arith
?unary: "-" unary                -> neg_num
    | postfix
?postfix: atom
    | postfix "[" disj "]"       -> index
?atom: NUMBER                    -> number
    | STRING                     -> string
    | _TRUE                      -> true
    | _FALSE                     -> false
    | NAME "(" [disj ("," disj)*] ")" -> call
    | NAME ("." NAME)*           -> name
    | "[" [disj ("," disj)*] "]" -> list_
    | "(" disj ")"

_OR.2: /or\b/
_AND.2: /and\b/
_NOT.2: /not\b/
_IN.2: /in\b/
_TRUE.2: /true\b/
_FALSE.2: /false\b/
COMP: "==" | "!=" | "<=" | ">=" | "<" | ">"
ADDOP: "+" | "-"
MULOP: "*" | "/"
NAME: /[A-Za-z_][A-Za-z0-9_]*/
NUMBER: /[0-9]+(\.[0-9]+)?/
STRING: /"(\\.|[^"\\])*"/
%ignore /[ \t\r\n]+/
"""


@dataclass(frozen=True)
class Literal:
    """A constant: string, integer, decimal number, boolean or date."""

    value: str | int | float | bool | dt.date
    offset: int


@dataclass(frozen=True)
class Name:
    """A dotted reference: ``form.degree``, ``education.degree``, ``application.date`` or a table."""

    parts: tuple[str, ...]
    offset: int

    @cached_property
    def dotted(self) -> str:
        return ".".join(self.parts)


@dataclass(frozen=True)
class Call:
    """A call of a built-in function such as ``age_on(birth, on)``."""

    func: str
    args: tuple[Expr, ...]
    offset: int


@dataclass(frozen=True)
class Index:
    """A decision-table lookup: ``max_age_by_degree[education.degree]``."""

    table: Name
    key: Expr
    offset: int


@dataclass(frozen=True)
class Arith:
    """``+ - * /`` between numbers (and ``date ± integer days``)."""

    op: str
    left: Expr
    right: Expr
    offset: int


@dataclass(frozen=True)
class Neg:
    """Unary minus."""

    operand: Expr
    offset: int


@dataclass(frozen=True)
class ListLit:
    """A list literal, only valid on the right of ``in``."""

    items: tuple[Expr, ...]
    offset: int


@dataclass(frozen=True)
class Compare:
    """One comparison ``left op right``; chains such as ``a < b < c`` are not allowed."""

    op: str
    left: Expr
    right: Expr
    offset: int


@dataclass(frozen=True)
class In:
    """Membership in a list literal or in a table's keys; ``negated`` for ``not in``."""

    needle: Expr
    haystack: Expr
    negated: bool
    offset: int


@dataclass(frozen=True)
class Not:
    operand: Expr
    offset: int


@dataclass(frozen=True)
class And:
    items: tuple[Expr, ...]
    offset: int


@dataclass(frozen=True)
class Or:
    items: tuple[Expr, ...]
    offset: int


Expr = Literal | Name | Call | Index | Arith | Neg | ListLit | Compare | In | Not | And | Or


def _offset(meta_or_token: object) -> int:
    pos = getattr(meta_or_token, "start_pos", None)
    if pos is None:
        pos = getattr(meta_or_token, "start_pos", 0)
    return int(pos or 0)


@lark.v_args(meta=True)
class _ToAst(lark.Transformer):  # type: ignore[type-arg]
    def or_(self, meta: lark.tree.Meta, items: list[Expr]) -> Expr:
        return items[0] if len(items) == 1 else Or(tuple(items), meta.start_pos)

    def and_(self, meta: lark.tree.Meta, items: list[Expr]) -> Expr:
        return items[0] if len(items) == 1 else And(tuple(items), meta.start_pos)

    def not_(self, meta: lark.tree.Meta, items: list[Expr]) -> Expr:
        return Not(items[0], meta.start_pos)

    def compare(self, meta: lark.tree.Meta, items: list[object]) -> Expr:
        left, op, right = items
        return Compare(str(op), left, right, meta.start_pos)  # type: ignore[arg-type]

    def in_(self, meta: lark.tree.Meta, items: list[Expr]) -> Expr:
        return In(items[0], items[1], False, meta.start_pos)

    def not_in(self, meta: lark.tree.Meta, items: list[Expr]) -> Expr:
        return In(items[0], items[1], True, meta.start_pos)

    def arith(self, meta: lark.tree.Meta, items: list[object]) -> Expr:
        left, op, right = items
        return Arith(str(op), left, right, meta.start_pos)  # type: ignore[arg-type]

    def neg_num(self, meta: lark.tree.Meta, items: list[Expr]) -> Expr:
        inner = items[0]
        if isinstance(inner, Literal) and isinstance(inner.value, int | float):
            if not isinstance(inner.value, bool):
                return Literal(-inner.value, meta.start_pos)
        return Neg(inner, meta.start_pos)

    def index(self, meta: lark.tree.Meta, items: list[Expr]) -> Expr:
        table, key = items
        if not isinstance(table, Name):
            raise ExpressionError(
                "只能对表名取值 / only a table name can be indexed", text="", offset=meta.start_pos
            )
        return Index(table, key, meta.start_pos)

    def number(self, meta: lark.tree.Meta, items: list[lark.Token]) -> Expr:
        text = str(items[0])
        value: int | float = float(text) if "." in text else int(text)
        return Literal(value, meta.start_pos)

    def string(self, meta: lark.tree.Meta, items: list[lark.Token]) -> Expr:
        raw = str(items[0])[1:-1]
        return Literal(raw.replace('\\"', '"').replace("\\\\", "\\"), meta.start_pos)

    def true(self, meta: lark.tree.Meta, items: list[object]) -> Expr:
        return Literal(True, meta.start_pos)

    def false(self, meta: lark.tree.Meta, items: list[object]) -> Expr:
        return Literal(False, meta.start_pos)

    def call(self, meta: lark.tree.Meta, items: list[object]) -> Expr:
        func = str(items[0])
        args = tuple(a for a in items[1:] if a is not None)
        return Call(func, args, meta.start_pos)  # type: ignore[arg-type]

    def name(self, meta: lark.tree.Meta, items: list[lark.Token]) -> Expr:
        return Name(tuple(str(t) for t in items), meta.start_pos)

    def list_(self, meta: lark.tree.Meta, items: list[Expr | None]) -> Expr:
        return ListLit(tuple(i for i in items if i is not None), meta.start_pos)


@cache
def _parser() -> lark.Lark:
    return lark.Lark(_GRAMMAR, parser="lalr", propagate_positions=True, maybe_placeholders=True)


def parse(text: str) -> Expr:
    """Parse one condition or term; raise ``ExpressionError`` with the offset of the problem."""
    try:
        tree = _parser().parse(text)
        result = _ToAst().transform(tree)
    except lark.exceptions.UnexpectedCharacters as exc:
        pos = exc.pos_in_stream or 0
        raise ExpressionError(
            f"无法识别的字符 / unexpected character {text[pos]!r}", text=text, offset=pos
        ) from None
    except lark.exceptions.UnexpectedToken as exc:
        expected = ", ".join(sorted(exc.expected)[:8])
        found = "end of text" if exc.token.type == "$END" else repr(str(exc.token))
        offset = len(text) if exc.token.type == "$END" else (exc.token.start_pos or 0)
        raise ExpressionError(
            f"语法错误 / syntax error: found {found}, expected one of {expected}",
            text=text,
            offset=offset,
        ) from None
    except lark.exceptions.UnexpectedEOF:
        raise ExpressionError(
            "表达式不完整 / unexpected end of text", text=text, offset=len(text)
        ) from None
    except lark.exceptions.VisitError as exc:
        if isinstance(exc.orig_exc, ExpressionError):
            raise ExpressionError(
                exc.orig_exc.message, text=text, offset=exc.orig_exc.offset
            ) from None
        raise
    assert not isinstance(result, lark.Tree)
    return result  # type: ignore[no-any-return]


_PRECEDENCE = {"or": 1, "and": 2, "not": 3, "cmp": 4, "+": 5, "-": 5, "*": 6, "/": 6, "neg": 7}


def unparse(node: Expr) -> str:
    """Canonical text of an expression (used in explanations and as derived-term names)."""
    return _unparse(node, 0)


def _unparse(node: Expr, outer: int) -> str:
    def wrap(text: str, level: int) -> str:
        return f"({text})" if level < outer else text

    match node:
        case Literal(value=v):
            if isinstance(v, bool):
                return "true" if v else "false"
            if isinstance(v, str):
                return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
            if isinstance(v, dt.date):
                return f'date("{v.isoformat()}")'
            return str(v)
        case Name():
            return node.dotted
        case Call(func=f, args=args):
            return f"{f}({', '.join(_unparse(a, 0) for a in args)})"
        case Index(table=t, key=k):
            return f"{t.dotted}[{_unparse(k, 0)}]"
        case Arith(op=op, left=l, right=r):
            p = _PRECEDENCE[op]
            return wrap(f"{_unparse(l, p)} {op} {_unparse(r, p + 1)}", p)
        case Neg(operand=o):
            return wrap(f"-{_unparse(o, 7)}", 7)
        case ListLit(items=items):
            return "[" + ", ".join(_unparse(i, 0) for i in items) + "]"
        case Compare(op=op, left=l, right=r):
            return wrap(f"{_unparse(l, 5)} {op} {_unparse(r, 5)}", 4)
        case In(needle=n, haystack=h, negated=neg):
            return wrap(f"{_unparse(n, 5)} {'not in' if neg else 'in'} {_unparse(h, 5)}", 4)
        case Not(operand=o):
            return wrap(f"not {_unparse(o, 3)}", 3)
        case And(items=items):
            return wrap(" and ".join(_unparse(i, 3) for i in items), 2)
        case Or(items=items):
            return wrap(" or ".join(_unparse(i, 2) for i in items), 1)
    raise TypeError(f"not an expression node: {node!r}")
