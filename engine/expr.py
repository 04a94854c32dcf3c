"""The condition language: a lark grammar, its typed AST, and an unparser. Never ``eval``."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from functools import cache, cached_property

import lark

from engine.errors import ExpressionError

__all__ = [
    "And",
    "Arith",
    "Call",
    "Compare",
    "Expr",
    "If",
    "In",
    "Index",
    "ListLit",
    "Literal",
    "Name",
    "Neg",
    "Not",
    "Or",
    "children",
    "parse",
    "unparse",
]

_GRAMMAR = r"""
?start: expr
?expr: _IF expr _THEN expr _ELSE expr -> if_
    | disj
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
    | postfix "[" expr "]"       -> index
?atom: NUMBER                    -> number
    | STRING                     -> string
    | _TRUE                      -> true
    | _FALSE                     -> false
    | NAME "(" [expr ("," expr)*] ")" -> call
    | NAME ("." NAME)*           -> name
    | "[" [expr ("," expr)*] "]" -> list_
    | "(" expr ")"

_OR.2: /or\b/
_AND.2: /and\b/
_NOT.2: /not\b/
_IN.2: /in\b/
_TRUE.2: /true\b/
_FALSE.2: /false\b/
_IF.2: /if\b/
_THEN.2: /then\b/
_ELSE.2: /else\b/
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
    """A constant: string, integer, exact decimal number, boolean or date."""

    value: str | int | Decimal | bool | dt.date
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
class If:
    """``if cond then a else b``: UNKNOWN when ``cond`` is; otherwise the chosen branch."""

    cond: Expr
    then: Expr
    orelse: Expr
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


Expr = Literal | Name | Call | Index | Arith | Neg | ListLit | Compare | In | Not | And | Or | If


def _offset(meta_or_token: object) -> int:
    pos = getattr(meta_or_token, "start_pos", None)
    if pos is None:
        pos = getattr(meta_or_token, "start_pos", 0)
    return int(pos or 0)


@lark.v_args(meta=True)
class _ToAst(lark.Transformer):  # type: ignore[type-arg]
    def if_(self, meta: lark.tree.Meta, items: list[Expr]) -> Expr:
        cond, then, orelse = items
        return If(cond, then, orelse, meta.start_pos)

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
        if isinstance(inner, Literal) and isinstance(inner.value, int | Decimal):
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
        value: int | Decimal = Decimal(text) if "." in text else int(text)
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
        raise ExpressionError(_unexpected_character(text, pos), text=text, offset=pos) from None
    except lark.exceptions.UnexpectedToken as exc:
        at_end = exc.token.type == "$END"
        offset = len(text) if at_end else (exc.token.start_pos or 0)
        raise ExpressionError(
            _unexpected_token(text, exc.token, at_end=at_end, expected=set(exc.expected)),
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


_TOKEN_WORDS: dict[str, tuple[str, str]] = {
    "RPAR": ("右括号“)”", "')'"),
    "LPAR": ("左括号“(”", "'('"),
    "RSQB": ("右方括号“]”", "']'"),
    "LSQB": ("左方括号“[”", "'['"),
    "COMMA": ("逗号“,”", "','"),
    "DOT": ("点“.”", "'.'"),
    "NAME": ("名称", "a name"),
    "NUMBER": ("数字", "a number"),
    "STRING": ("字符串", "a string"),
    "COMP": ("比较运算符（== != < <= > >=）", "a comparison (== != < <= > >=)"),
    "ADDOP": ("运算符 + 或 -", "+ or -"),
    "MULOP": ("运算符 * 或 /", "* or /"),
    "MINUS": ("负号“-”", "'-'"),
    "_AND": ("and", "'and'"),
    "_OR": ("or", "'or'"),
    "_NOT": ("not", "'not'"),
    "_IN": ("in", "'in'"),
    "_THEN": ("then", "'then'"),
    "_ELSE": ("else", "'else'"),
    "_IF": ("if", "'if'"),
    "_TRUE": ("true", "'true'"),
    "_FALSE": ("false", "'false'"),
}
_OPERAND_START = {"NAME", "NUMBER", "STRING", "LPAR"}
_HINTS: dict[str, tuple[str, str]] = {
    "=": ("比较是否相等请写 ==", "write == to compare"),
    "&": ("“并且”请写 and", "write 'and'"),
    "|": ("“或者”请写 or", "write 'or'"),
    "!": ("“非”请写 not，“不等于”请写 !=", "write 'not', or != for 'not equal'"),
    "'": ('字符串请用英文双引号 "…"', 'strings take double quotes "…"'),
    "（": ("请用英文括号 ( )", "use ASCII parentheses ( )"),
    "）": ("请用英文括号 ( )", "use ASCII parentheses ( )"),
    "“": ('字符串请用英文双引号 "…"', 'strings take ASCII double quotes "…"'),
    "”": ('字符串请用英文双引号 "…"', 'strings take ASCII double quotes "…"'),
    "，": ("请用英文逗号 ,", "use an ASCII comma ,"),
    "【": ("请用英文方括号 [ ]", "use ASCII brackets [ ]"),
    "】": ("请用英文方括号 [ ]", "use ASCII brackets [ ]"),
}


def _unexpected_character(text: str, pos: int) -> str:
    ch = text[pos] if pos < len(text) else ""
    if text[pos : pos + 2] == "!=" or text[pos : pos + 2] == "==":
        ch = text[pos : pos + 2]
    hint_zh, hint_en = _HINTS.get(ch, ("", ""))
    zh = f"无法识别的字符“{ch}”" + (f"：{hint_zh}" if hint_zh else "")
    en = f"unexpected character {ch!r}" + (f": {hint_en}" if hint_en else "")
    return f"{zh} / {en}"


def _brackets(text: str) -> tuple[list[str], str | None]:
    """The brackets still open at the end of ``text``, and the first unmatched closing one."""
    stack: list[str] = []
    in_string = False
    i = 0
    while i < len(text):
        ch = text[i]
        if in_string:
            if ch == "\\":
                i += 1
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "([":
            stack.append(ch)
        elif ch in ")]":
            if not stack or {")": "(", "]": "["}[ch] != stack[-1]:
                return stack, ch
            stack.pop()
        i += 1
    return stack, None


_OPERAND_TOKENS = {"NAME", "NUMBER", "STRING", "LPAR", "LSQB", "_TRUE", "_FALSE", "_NOT", "_IF"}


def _unexpected_token(text: str, token: lark.Token, *, at_end: bool, expected: set[str]) -> str:
    """A syntax error in words: what was expected, in Chinese and English."""
    found = str(token)
    open_brackets, stray = _brackets(text)
    if stray is not None:
        word = "右括号" if stray == ")" else "右方括号"
        return f"多余的{word}“{stray}” / unmatched {stray!r}"
    if at_end and open_brackets:
        if open_brackets[-1] == "(":
            return "缺少右括号 / expected ')'"
        return "缺少右方括号 / expected ']'"
    if _OPERAND_START <= expected:
        wanted = [("一个值（名称、数字、字符串或括号）", "a value (a name, number, string or '(')")]
    else:
        wanted = [
            _TOKEN_WORDS[t]
            for t in sorted(expected)
            if t in _TOKEN_WORDS and t not in ("RPAR", "RSQB", "COMMA", "DOT")
        ]
    zh_list = "、".join(w[0] for w in wanted[:5]) or "其他内容"
    en_list = " or ".join(w[1] for w in wanted[:5]) or "something else"
    if at_end:
        return (
            f"表达式不完整，此处应为{zh_list} / the expression ends too early: expected {en_list}"
        )
    if token.type in _OPERAND_TOKENS and expected & {"COMP", "ADDOP", "MULOP", "_AND", "_OR"}:
        return (
            f"“{found}”前缺少运算符（如 and、or、==、+） / "
            f"expected an operator (and, or, ==, + …) before {found!r}"
        )
    return f"语法错误：“{found}”处应为{zh_list} / syntax error at {found!r}: expected {en_list}"


_PRECEDENCE = {"or": 1, "and": 2, "not": 3, "cmp": 4, "+": 5, "-": 5, "*": 6, "/": 6, "neg": 7}


def children(node: Expr) -> Iterator[Expr]:
    """Every direct sub-expression of ``node``, in source order."""
    match node:
        case Call(args=items) | ListLit(items=items) | And(items=items) | Or(items=items):
            yield from items
        case Index(table=t, key=k):
            yield t
            yield k
        case Arith(left=l, right=r) | Compare(left=l, right=r):
            yield l
            yield r
        case Neg(operand=o) | Not(operand=o):
            yield o
        case In(needle=n, haystack=h):
            yield n
            yield h
        case If(cond=c, then=a, orelse=b):
            yield c
            yield a
            yield b


def unparse(node: Expr) -> str:
    """Canonical text of an expression (used in explanations and as derived-term names)."""
    return _unparse(node, 0)


def _unparse(node: Expr, outer: int) -> str:
    def wrap(text: str, level: int) -> str:
        return f"({text})" if level < outer else text

    match node:
        case If(cond=c, then=t, orelse=e):
            return wrap(f"if {_unparse(c, 0)} then {_unparse(t, 0)} else {_unparse(e, 0)}", 0)
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
