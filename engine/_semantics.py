"""Type checking of expressions against a scope, and their three-valued (Kleene) evaluation."""

from __future__ import annotations

import datetime as dt
import difflib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from engine import dates
from engine.errors import ExpressionError
from engine.expr import (
    And,
    Arith,
    Call,
    Compare,
    Expr,
    In,
    Index,
    ListLit,
    Literal,
    Name,
    Neg,
    Not,
    Or,
    unparse,
)

__all__ = [
    "FUNCTIONS",
    "MISSING",
    "Scope",
    "check",
    "names_in",
    "terms_in",
    "truth",
    "value",
]


class _Missing:
    """The value of a fact that is absent or could not be obtained."""

    _instance: _Missing | None = None

    def __new__(cls) -> _Missing:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "MISSING"

    def __bool__(self) -> bool:
        return False


MISSING: Final = _Missing()
Value = str | int | float | bool | dt.date
Env = Mapping[str, object]

NUMERIC = frozenset({"integer", "number"})


@dataclass(frozen=True)
class _Function:
    params: tuple[str, ...]
    returns: str
    impl: Callable[..., object]


def _date_literal(text: object) -> dt.date:
    return dt.date.fromisoformat(str(text))


FUNCTIONS: Final[dict[str, _Function]] = {
    "age_on": _Function(("date", "date"), "integer", dates.age_on),
    "years_before": _Function(("date", "integer"), "date", dates.years_before),
    "years_after": _Function(("date", "integer"), "date", lambda d, n: dates.anniversary(d, n)),
    "days_between": _Function(("date", "date"), "integer", lambda a, b: (b - a).days),
    "date": _Function(("string",), "date", _date_literal),
}


@dataclass
class Scope:
    """The names a condition may use, with their types; tables map to their value type."""

    names: dict[str, str]
    enums: dict[str, tuple[str, ...]] = field(default_factory=dict)
    tables: dict[str, tuple[str, Mapping[str, object]]] = field(default_factory=dict)

    def suggest(self, wanted: str) -> str:
        pool = list(self.names) + list(self.tables)
        close = difflib.get_close_matches(wanted, pool, n=1, cutoff=0.6)
        return f"; did you mean {close[0]!r}?" if close else ""


def _type_of_literal(value: object) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, dt.date):
        return "date"
    return "string"


def _compatible(a: str, b: str) -> bool:
    return a == b or (a in NUMERIC and b in NUMERIC)


def check(node: Expr, scope: Scope, *, text: str) -> str:
    """The type of ``node``; raise ``ExpressionError`` (with offset) for any type error."""

    def fail(message: str, at: Expr) -> ExpressionError:
        return ExpressionError(message, text=text, offset=at.offset)

    def enum_check(name: Expr, literal: Expr) -> None:
        if isinstance(name, Name) and isinstance(literal, Literal) and name.dotted in scope.enums:
            allowed = scope.enums[name.dotted]
            if literal.value not in allowed:
                close = difflib.get_close_matches(str(literal.value), allowed, n=1, cutoff=0.3)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                raise fail(
                    f"{literal.value!r} 不是 {name.dotted} 的可选值 / is not one of the values "
                    f"of {name.dotted} ({', '.join(allowed)}){hint}",
                    literal,
                )

    def go(n: Expr) -> str:
        match n:
            case Literal(value=v):
                return _type_of_literal(v)
            case Name():
                if n.dotted in scope.names:
                    return scope.names[n.dotted]
                if n.dotted in scope.tables:
                    return "table"
                raise fail(f"未知的名称 / unknown name {n.dotted!r}{scope.suggest(n.dotted)}", n)
            case Call(func=f, args=args):
                spec = FUNCTIONS.get(f)
                if spec is None:
                    close = difflib.get_close_matches(f, list(FUNCTIONS), n=1)
                    hint = f"; did you mean {close[0]!r}?" if close else ""
                    raise fail(f"未知的函数 / unknown function {f!r}{hint}", n)
                if len(args) != len(spec.params):
                    raise fail(f"{f} expects {len(spec.params)} argument(s), got {len(args)}", n)
                for arg, want in zip(args, spec.params, strict=True):
                    got = go(arg)
                    if not _compatible(got, want):
                        raise fail(f"{f}: expected a {want} argument, got {got}", arg)
                if f == "date":
                    arg = args[0]
                    if not isinstance(arg, Literal):
                        raise fail('date() takes a string literal such as "2026-01-01"', arg)
                    try:
                        _date_literal(arg.value)
                    except ValueError:
                        raise fail(f"not a date (YYYY-MM-DD): {arg.value!r}", arg) from None
                return spec.returns
            case Index(table=t, key=k):
                if t.dotted not in scope.tables:
                    raise fail(f"未知的表 / unknown table {t.dotted!r}{scope.suggest(t.dotted)}", t)
                key_type = go(k)
                if key_type != "string":
                    raise fail(f"table keys are strings, got a {key_type} key", k)
                return scope.tables[t.dotted][0]
            case Arith(op=op, left=l, right=r):
                lt, rt = go(l), go(r)
                if lt in NUMERIC and rt in NUMERIC:
                    return "number" if "number" in (lt, rt) or op == "/" else "integer"
                if lt == "date" and rt == "integer" and op in "+-":
                    return "date"
                if lt == "date" and rt == "date" and op == "-":
                    return "integer"
                raise fail(f"cannot apply {op!r} to {lt} and {rt}", n)
            case Neg(operand=o):
                operand_type = go(o)
                if operand_type not in NUMERIC:
                    raise fail(f"cannot negate a {operand_type}", n)
                return operand_type
            case ListLit(items=items):
                raise fail("a list is only allowed on the right of 'in'", n)
            case Compare(op=op, left=l, right=r):
                lt, rt = go(l), go(r)
                if not _compatible(lt, rt):
                    raise fail(f"cannot compare {lt} with {rt}", n)
                if lt in ("table",):
                    raise fail("cannot compare a table", n)
                if op not in ("==", "!=") and lt == "boolean":
                    raise fail(f"booleans only support == and !=, not {op}", n)
                enum_check(l, r)
                enum_check(r, l)
                return "boolean"
            case In(needle=needle, haystack=hay):
                nt = go(needle)
                if isinstance(hay, ListLit):
                    if not hay.items:
                        raise fail("empty list after 'in'", hay)
                    for item in hay.items:
                        if not isinstance(item, Literal):
                            raise fail("list items after 'in' must be literals", item)
                        it = go(item)
                        if not _compatible(nt, it):
                            raise fail(f"list item is a {it}, but the left side is a {nt}", item)
                        enum_check(needle, item)
                    return "boolean"
                if isinstance(hay, Name) and hay.dotted in scope.tables:
                    if nt != "string":
                        raise fail(f"table keys are strings, got a {nt}", needle)
                    return "boolean"
                raise fail("'in' needs a list literal or a table name on its right", hay)
            case Not(operand=o):
                if go(o) != "boolean":
                    raise fail("'not' needs a boolean", o)
                return "boolean"
            case And(items=items) | Or(items=items):
                for item in items:
                    if go(item) != "boolean":
                        word = "and" if isinstance(n, And) else "or"
                        raise fail(f"'{word}' needs boolean operands, got {go(item)}", item)
                return "boolean"
        raise TypeError(f"not an expression node: {n!r}")

    return go(node)


def names_in(node: Expr) -> Iterator[str]:
    """Every dotted fact name ``node`` reads (tables excluded), in order of appearance."""
    match node:
        case Name():
            yield node.dotted
        case Call(args=args):
            for a in args:
                yield from names_in(a)
        case Index(key=k):
            yield from names_in(k)
        case Arith(left=l, right=r) | Compare(left=l, right=r):
            yield from names_in(l)
            yield from names_in(r)
        case Neg(operand=o) | Not(operand=o):
            yield from names_in(o)
        case In(needle=n, haystack=h):
            yield from names_in(n)
            if not isinstance(h, Name):
                yield from names_in(h)
        case ListLit(items=items) | And(items=items) | Or(items=items):
            for i in items:
                yield from names_in(i)
        case Literal():
            return


def terms_in(node: Expr) -> Iterator[Expr]:
    """The value-level operands of every comparison and membership test in ``node``."""
    match node:
        case Compare(left=l, right=r):
            yield l
            yield r
        case In(needle=n):
            yield n
        case Not(operand=o):
            yield from terms_in(o)
        case And(items=items) | Or(items=items):
            for i in items:
                yield from terms_in(i)
        case Name():
            yield node
        case _:
            return


def value(node: Expr, env: Env, tables: Mapping[str, Mapping[str, object]]) -> object:
    """The value of a term, or ``MISSING`` when any fact it needs is missing."""
    match node:
        case Literal(value=v):
            return v
        case Name():
            if node.dotted in tables:
                return MISSING
            return env.get(node.dotted, MISSING)
        case Call(func=f, args=args):
            vals = [value(a, env, tables) for a in args]
            if any(v is MISSING for v in vals):
                return MISSING
            try:
                return FUNCTIONS[f].impl(*vals)
            except (ValueError, OverflowError):
                return MISSING
        case Index(table=t, key=k):
            key = value(k, env, tables)
            if key is MISSING:
                return MISSING
            return tables[t.dotted].get(str(key), MISSING)
        case Arith(op=op, left=l, right=r):
            a, b = value(l, env, tables), value(r, env, tables)
            if a is MISSING or b is MISSING:
                return MISSING
            return _arith(op, a, b)
        case Neg(operand=o):
            inner: Any = value(o, env, tables)
            return MISSING if inner is MISSING else -inner
        case _:
            verdict = truth(node, env, tables)
            return MISSING if verdict is None else verdict


def _arith(op: str, a: object, b: object) -> object:
    try:
        if isinstance(a, dt.date):
            if isinstance(b, dt.date):
                return (a - b).days
            days = dt.timedelta(days=int(b))  # type: ignore[call-overload]
            return a + days if op == "+" else a - days
        x, y = a, b
        if op == "+":
            return x + y  # type: ignore[operator]
        if op == "-":
            return x - y  # type: ignore[operator]
        if op == "*":
            return x * y  # type: ignore[operator]
        return x / y  # type: ignore[operator]
    except (ZeroDivisionError, OverflowError):
        return MISSING


_COMPARE: Final[dict[str, Callable[[object, object], bool]]] = {
    "==": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
    "<": lambda a, b: a < b,  # type: ignore[operator]
    "<=": lambda a, b: a <= b,  # type: ignore[operator]
    ">": lambda a, b: a > b,  # type: ignore[operator]
    ">=": lambda a, b: a >= b,  # type: ignore[operator]
}


def truth(node: Expr, env: Env, tables: Mapping[str, Mapping[str, object]]) -> bool | None:
    """Kleene three-valued truth: ``True``, ``False`` or ``None`` (UNKNOWN)."""
    match node:
        case Compare(op=op, left=l, right=r):
            a, b = value(l, env, tables), value(r, env, tables)
            if a is MISSING or b is MISSING:
                return None
            return _COMPARE[op](a, b)
        case In(needle=n, haystack=h, negated=neg):
            needle = value(n, env, tables)
            if needle is MISSING:
                return None
            if isinstance(h, ListLit):
                found = any(needle == value(i, env, tables) for i in h.items)
            else:
                assert isinstance(h, Name)
                found = str(needle) in tables[h.dotted]
            return not found if neg else found
        case Not(operand=o):
            t = truth(o, env, tables)
            return None if t is None else not t
        case And(items=items):
            results = [truth(i, env, tables) for i in items]
            if any(r is False for r in results):
                return False
            return None if any(r is None for r in results) else True
        case Or(items=items):
            results = [truth(i, env, tables) for i in items]
            if any(r is True for r in results):
                return True
            return None if any(r is None for r in results) else False
        case Literal(value=v) if isinstance(v, bool):
            return v
        case _:
            result = value(node, env, tables)
            if result is MISSING:
                return None
            if isinstance(result, bool):
                return result
            raise TypeError(f"not a boolean: {unparse(node)}")
