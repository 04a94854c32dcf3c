"""Type checking of expressions against a scope, and their three-valued (Kleene) evaluation.

Numbers are exact: integers are Python ``int`` and every other number is a ``Decimal`` computed
in ``DECIMAL`` (34 significant digits, the precision of IEEE decimal128). No binary float is
ever produced. A value that is missing, or an operation that cannot be carried out (division
by zero, a date out of range), is ``MISSING``: three-valued logic turns it into UNKNOWN.
"""

from __future__ import annotations

import datetime as dt
import decimal
import difflib
import operator
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Final

from engine import dates
from engine.errors import ExpressionError
from engine.expr import (
    And,
    Arith,
    Call,
    Compare,
    Expr,
    If,
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
    "ANY",
    "DECIMAL",
    "FUNCTIONS",
    "MISSING",
    "NUMERIC",
    "Scope",
    "TableInfo",
    "as_decimal",
    "check",
    "compile_truth",
    "compile_value",
    "function_list",
    "literal_type",
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
Env = Mapping[str, object]
Tables = Mapping[str, Mapping[str, object]]

NUMERIC = frozenset({"integer", "number"})
ANY: Final = "any"
"""The type of a name whose definition has an error (already reported): it fits anywhere,
so its uses are not reported again as unknown names."""
DECIMAL: Final = decimal.Context(
    prec=34,
    rounding=decimal.ROUND_HALF_EVEN,
    Emax=999_999,
    Emin=-999_999,
    traps=[decimal.InvalidOperation, decimal.DivisionByZero, decimal.Overflow],
)
"""The context of every decimal operation: 34 significant digits, errors raised (→ MISSING)."""

_DECIMAL_ERRORS = (decimal.InvalidOperation, decimal.DivisionByZero, decimal.Overflow)
INT_MIN, INT_MAX = -(2**63), 2**63 - 1
"""Integers are 64-bit, as durable_rules compares them; a result outside is MISSING (and
inputs, registry cells and constants outside are refused where they enter)."""


def in_int64(v: int) -> bool:
    return INT_MIN <= v <= INT_MAX


def as_decimal(v: object) -> Decimal:
    """An integer or decimal as a ``Decimal`` (never through a binary float)."""
    if isinstance(v, Decimal):
        return v
    if isinstance(v, int) and not isinstance(v, bool):
        return Decimal(v)
    raise TypeError(f"not a number: {v!r}")


# --- functions -------------------------------------------------------------------------------


def _places(places: object) -> int:
    if not isinstance(places, int) or isinstance(places, bool):
        raise ValueError("places must be an integer")
    return places


def _quantized(x: object, places: object, rounding: str) -> int | Decimal:
    p = _places(places)
    d = as_decimal(x).quantize(Decimal(1).scaleb(-p), rounding=rounding, context=DECIMAL)
    if p > 0:
        return d
    result = int(d)
    if not in_int64(result):
        raise OverflowError("integer out of 64-bit range")
    return result


def _round(x: object, places: object = 0) -> int | Decimal:
    """Half-up (四舍五入): 2.5 → 3, −2.5 → −3, 2.345 → 2.35 with two places."""
    return _quantized(x, places, decimal.ROUND_HALF_UP)


def _floor(x: object, places: object = 0) -> int | Decimal:
    return _quantized(x, places, decimal.ROUND_FLOOR)


def _ceil(x: object, places: object = 0) -> int | Decimal:
    return _quantized(x, places, decimal.ROUND_CEILING)


def _abs(x: object) -> int | Decimal:
    if isinstance(x, Decimal):
        return x.copy_abs()
    assert isinstance(x, int)
    if not in_int64(abs(x)):
        raise OverflowError("integer out of 64-bit range")
    return abs(x)


def _date_literal(text: object) -> dt.date:
    return dt.date.fromisoformat(str(text))


def _min(*args: Any) -> object:
    return min(args)


def _max(*args: Any) -> object:
    return max(args)


Fail = Callable[[str, Expr | None], ExpressionError]
CheckFn = Callable[[list[str], tuple[Expr, ...], Fail], str]


@dataclass(frozen=True)
class _Function:
    signature: str
    """How the function is written, for error messages and the documentation."""
    check: CheckFn
    impl: Callable[..., object]


def _fixed(params: tuple[str, ...], returns: str, name: str) -> CheckFn:
    def check(types: list[str], args: tuple[Expr, ...], fail: Fail) -> str:
        if len(types) != len(params):
            raise fail(
                f"{name} 需要 {len(params)} 个参数，实际 {len(types)} 个 / {name} expects "
                f"{len(params)} argument(s), got {len(types)}",
                None,
            )
        for got, want, arg in zip(types, params, args, strict=True):
            if not _compatible(got, want) or (want == "integer" and got == "number"):
                raise fail(
                    f"{name} 的参数应为{_ZH_TYPE[want]}，实际为{_ZH_TYPE.get(got, got)} / "
                    f"{name}: expected a {want} argument, got a {got}",
                    arg,
                )
        return returns

    return check


def _rounding(name: str) -> CheckFn:
    def check(types: list[str], args: tuple[Expr, ...], fail: Fail) -> str:
        if len(types) not in (1, 2):
            raise fail(
                f"{name} 需要 1 或 2 个参数 / {name} expects 1 or 2 arguments "
                f"({name}(x) or {name}(x, places)), got {len(types)}",
                None,
            )
        if types[0] not in NUMERIC and types[0] != ANY:
            raise fail(
                f"{name} 的参数应为数字 / {name}: expected a number, got a {types[0]}", args[0]
            )
        if len(args) == 1:
            return "integer"
        places = args[1]
        if not (
            isinstance(places, Literal)
            and isinstance(places.value, int)
            and not isinstance(places.value, bool)
            and 0 <= places.value <= 10
        ):
            raise fail(
                f"{name} 的小数位数须为 0 到 10 的整数常量 / {name}: the number of decimal "
                "places must be an integer constant from 0 to 10",
                places,
            )
        return "integer" if places.value == 0 else "number"

    return check


def _extreme(name: str) -> CheckFn:
    def check(types: list[str], args: tuple[Expr, ...], fail: Fail) -> str:
        if len(types) < 2:
            raise fail(
                f"{name} 至少需要 2 个参数 / {name} expects two or more arguments, got "
                f"{len(types)}",
                None,
            )
        if ANY in types:
            return ANY
        if all(t in NUMERIC for t in types):
            return "number" if "number" in types else "integer"
        if all(t == "date" for t in types):
            return "date"
        raise fail(
            f"{name} 的参数须同为数字或同为日期 / {name}: arguments must all be numbers or all "
            f"dates, got {', '.join(types)}",
            None,
        )

    return check


def _abs_check(types: list[str], args: tuple[Expr, ...], fail: Fail) -> str:
    if len(types) != 1 or (types[0] not in NUMERIC and types[0] != ANY):
        raise fail("abs 需要 1 个数字参数 / abs expects one number", None)
    return types[0]


FUNCTIONS: Final[dict[str, _Function]] = {
    "abs": _Function("abs(x)", _abs_check, _abs),
    "age_on": _Function(
        "age_on(birth, day)", _fixed(("date", "date"), "integer", "age_on"), dates.age_on
    ),
    "ceil": _Function("ceil(x[, places])", _rounding("ceil"), _ceil),
    "date": _Function('date("YYYY-MM-DD")', _fixed(("string",), "date", "date"), _date_literal),
    "day": _Function("day(d)", _fixed(("date",), "integer", "day"), lambda d: d.day),
    "days_between": _Function(
        "days_between(a, b)",
        _fixed(("date", "date"), "integer", "days_between"),
        lambda a, b: (b - a).days,
    ),
    "floor": _Function("floor(x[, places])", _rounding("floor"), _floor),
    "max": _Function("max(a, b, …)", _extreme("max"), _max),
    "min": _Function("min(a, b, …)", _extreme("min"), _min),
    "month": _Function("month(d)", _fixed(("date",), "integer", "month"), lambda d: d.month),
    "round": _Function("round(x[, places])", _rounding("round"), _round),
    "year": _Function("year(d)", _fixed(("date",), "integer", "year"), lambda d: d.year),
    "years_after": _Function(
        "years_after(day, n)",
        _fixed(("date", "integer"), "date", "years_after"),
        lambda d, n: dates.anniversary(d, n),
    ),
    "years_before": _Function(
        "years_before(day, n)",
        _fixed(("date", "integer"), "date", "years_before"),
        dates.years_before,
    ),
}


def function_list() -> str:
    """Every built-in function as written, for messages: ``abs(x), age_on(birth, day), …``."""
    return ", ".join(f.signature for f in FUNCTIONS.values())


# --- scope and type checking -----------------------------------------------------------------

_ZH_TYPE = {
    "string": "字符串",
    "integer": "整数",
    "number": "数字",
    "boolean": "布尔值",
    "date": "日期",
    "table": "表",
}


@dataclass(frozen=True)
class TableInfo:
    """A name usable as ``name[key]`` and ``key in name``: a lookup table or a dated parameter."""

    value_type: str
    keys: frozenset[str]
    dated: bool = False
    """A parameter whose mapping changes by period: ``in`` is computed, not compiled."""


@dataclass
class Scope:
    """The names an expression may use, with their types; tables map to their value type."""

    names: dict[str, str]
    enums: dict[str, tuple[str, ...]] = field(default_factory=dict)
    tables: dict[str, TableInfo] = field(default_factory=dict)

    def suggest(self, wanted: str) -> str:
        pool = list(self.names) + list(self.tables)
        close = difflib.get_close_matches(wanted, pool, n=1, cutoff=0.6)
        return f"; did you mean {close[0]!r}?" if close else ""


def literal_type(v: object) -> str:
    """The language type of a constant (``Decimal`` is ``number``, ``date`` is ``date``)."""
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, int):
        return "integer"
    if isinstance(v, Decimal):
        return "number"
    if isinstance(v, dt.date):
        return "date"
    return "string"


def _compatible(a: str, b: str) -> bool:
    return a == b or (a in NUMERIC and b in NUMERIC) or ANY in (a, b)


def _numeric_result(a: str, b: str) -> str:
    return "number" if "number" in (a, b) else "integer"


def check(node: Expr, scope: Scope, *, text: str, types: dict[Expr, str] | None = None) -> str:
    """The type of ``node``; raise ``ExpressionError`` (with offset) for any type error.

    With ``types``, the type of every sub-expression is recorded there (the compiler uses it
    to keep exact decimal comparisons out of the Rete network's binary floats).
    """

    def fail(message: str, at: Expr | None) -> ExpressionError:
        return ExpressionError(message, text=text, offset=(at or node).offset)

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

    def key_check(table: Name, key: Expr) -> None:
        info = scope.tables[table.dotted]
        if info.value_type == ANY:
            return
        if isinstance(key, Literal) and isinstance(key.value, str) and key.value not in info.keys:
            close = difflib.get_close_matches(key.value, sorted(info.keys), n=1, cutoff=0.3)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise fail(
                f"表 {table.dotted} 中没有键 {key.value!r} / table {table.dotted} has no key "
                f"{key.value!r} (keys: {', '.join(sorted(info.keys))}){hint}",
                key,
            )

    def go(n: Expr) -> str:
        t = _go(n)
        if types is not None:
            types[n] = t
        return t

    def _go(n: Expr) -> str:
        match n:
            case Literal(value=v):
                if type(v) is int and not in_int64(v):
                    raise fail(
                        f"整数超出64位范围 / integer {v} is outside the 64-bit range "
                        f"({INT_MIN} … {INT_MAX}); write it as a decimal (e.g. {v}.0)",
                        n,
                    )
                return literal_type(v)
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
                    raise fail(
                        f"未知的函数 / unknown function {f!r}{hint}; "
                        f"可用的函数 / available: {function_list()}",
                        n,
                    )
                arg_types = [go(a) for a in args]
                returns = spec.check(arg_types, args, fail)
                if f == "date":
                    arg = args[0]
                    if not isinstance(arg, Literal):
                        raise fail(
                            "date() 需要字符串常量 / date() takes a string literal such as "
                            '"2026-01-01"',
                            arg,
                        )
                    try:
                        _date_literal(arg.value)
                    except ValueError:
                        raise fail(
                            f"不是有效日期 / not a date (YYYY-MM-DD): {arg.value!r}", arg
                        ) from None
                return returns
            case Index(table=t, key=k):
                if t.dotted not in scope.tables:
                    raise fail(f"未知的表 / unknown table {t.dotted!r}{scope.suggest(t.dotted)}", t)
                key_type = go(k)
                if key_type not in ("string", ANY):
                    raise fail(
                        f"表的键须为字符串 / table keys are strings, got a {key_type} key", k
                    )
                key_check(t, k)
                return scope.tables[t.dotted].value_type
            case Arith(op=op, left=l, right=r):
                lt, rt = go(l), go(r)
                if ANY in (lt, rt):
                    return ANY
                if lt in NUMERIC and rt in NUMERIC:
                    return "number" if op == "/" else _numeric_result(lt, rt)
                if lt == "date" and rt == "integer" and op in "+-":
                    return "date"
                if lt == "date" and rt == "date" and op == "-":
                    return "integer"
                raise fail(
                    f"不能对{_ZH_TYPE.get(lt, lt)}和{_ZH_TYPE.get(rt, rt)}做“{op}”运算 / "
                    f"cannot apply {op!r} to {lt} and {rt}",
                    n,
                )
            case Neg(operand=o):
                operand_type = go(o)
                if operand_type == ANY:
                    return ANY
                if operand_type not in NUMERIC:
                    raise fail(f"不能取负 / cannot negate a {operand_type}", n)
                return operand_type
            case ListLit():
                raise fail(
                    "列表只能用在 in 的右边 / a list is only allowed on the right of 'in'", n
                )
            case If(cond=c, then=a, orelse=b):
                if go(c) not in ("boolean", ANY):
                    raise fail("if 之后须为条件 / 'if' needs a boolean condition", c)
                at, bt = go(a), go(b)
                if ANY in (at, bt):
                    return bt if at == ANY else at
                if at in NUMERIC and bt in NUMERIC:
                    return _numeric_result(at, bt)
                if at != bt or at == "table":
                    raise fail(
                        f"then 与 else 的类型不同 / 'then' gives a {at} but 'else' a {bt}", b
                    )
                return at
            case Compare(op=op, left=l, right=r):
                lt, rt = go(l), go(r)
                if not _compatible(lt, rt):
                    raise fail(
                        f"不能比较{_ZH_TYPE.get(lt, lt)}和{_ZH_TYPE.get(rt, rt)} / "
                        f"cannot compare {lt} with {rt}",
                        n,
                    )
                if lt == "table":
                    raise fail("不能比较表 / cannot compare a table", n)
                if op not in ("==", "!=") and "boolean" in (lt, rt) and ANY not in (lt, rt):
                    raise fail(
                        f"布尔值只能用 == 或 != 比较 / booleans only support == and !=, not {op}", n
                    )
                enum_check(l, r)
                enum_check(r, l)
                return "boolean"
            case In(needle=needle, haystack=hay):
                nt = go(needle)
                if isinstance(hay, ListLit):
                    if not hay.items:
                        raise fail("in 后的列表为空 / empty list after 'in'", hay)
                    for item in hay.items:
                        if not isinstance(item, Literal):
                            raise fail(
                                "in 后的列表只能包含常量 / list items after 'in' must be literals",
                                item,
                            )
                        it = go(item)
                        if not _compatible(nt, it):
                            raise fail(
                                f"列表项为{_ZH_TYPE.get(it, it)}，左边为{_ZH_TYPE.get(nt, nt)} / "
                                f"list item is a {it}, but the left side is a {nt}",
                                item,
                            )
                        enum_check(needle, item)
                    return "boolean"
                if isinstance(hay, Name) and hay.dotted in scope.tables:
                    if types is not None:
                        types[hay] = "table"
                    if nt not in ("string", ANY):
                        raise fail(f"表的键须为字符串 / table keys are strings, got a {nt}", needle)
                    return "boolean"
                raise fail(
                    "in 的右边须为列表或表名 / 'in' needs a list literal or a table name on its right",
                    hay,
                )
            case Not(operand=o):
                if go(o) not in ("boolean", ANY):
                    raise fail("not 之后须为条件 / 'not' needs a boolean", o)
                return "boolean"
            case And(items=items) | Or(items=items):
                word = "and" if isinstance(n, And) else "or"
                for item in items:
                    got = go(item)
                    if got not in ("boolean", ANY):
                        raise fail(
                            f"{word} 的两边须为条件 / '{word}' needs boolean operands, got {got}",
                            item,
                        )
                return "boolean"
        raise TypeError(f"not an expression node: {n!r}")

    return go(node)


# --- walking ---------------------------------------------------------------------------------


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
        case If(cond=c, then=a, orelse=b):
            yield from names_in(c)
            yield from names_in(a)
            yield from names_in(b)
        case Literal():
            return


def tables_in(node: Expr) -> Iterator[str]:
    """Every table (or mapping parameter) name ``node`` indexes or tests membership in."""
    match node:
        case Index(table=t, key=k):
            yield t.dotted
            yield from tables_in(k)
        case In(needle=n, haystack=h):
            yield from tables_in(n)
            if isinstance(h, Name):
                yield h.dotted
        case Call(args=items) | ListLit(items=items) | And(items=items) | Or(items=items):
            for i in items:
                yield from tables_in(i)
        case Arith(left=l, right=r) | Compare(left=l, right=r):
            yield from tables_in(l)
            yield from tables_in(r)
        case Neg(operand=o) | Not(operand=o):
            yield from tables_in(o)
        case If(cond=c, then=a, orelse=b):
            yield from tables_in(c)
            yield from tables_in(a)
            yield from tables_in(b)
        case _:
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
        case Name() | If() | Index() | Call():
            yield node
        case _:
            return


# --- evaluation ------------------------------------------------------------------------------


def value(node: Expr, env: Env, tables: Tables) -> object:
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
            except (ValueError, OverflowError, TypeError, *_DECIMAL_ERRORS):
                return MISSING
        case Index(table=t, key=k):
            key = value(k, env, tables)
            if key is MISSING:
                return MISSING
            table = tables.get(t.dotted)
            return MISSING if table is None else table.get(str(key), MISSING)
        case Arith(op=op, left=l, right=r):
            a, b = value(l, env, tables), value(r, env, tables)
            if a is MISSING or b is MISSING:
                return MISSING
            return arith(op, a, b)
        case Neg(operand=o):
            inner: Any = value(o, env, tables)
            if inner is MISSING:
                return MISSING
            if type(inner) is int and not in_int64(-inner):
                return MISSING
            return -inner
        case If(cond=c, then=a, orelse=b):
            verdict = truth(c, env, tables)
            if verdict is None:
                return MISSING
            return value(a if verdict else b, env, tables)
        case _:
            verdict = truth(node, env, tables)
            return MISSING if verdict is None else verdict


def arith(op: str, a: object, b: object) -> object:
    """``a op b`` exactly: integers stay integers, everything else is a ``Decimal``."""
    try:
        if isinstance(a, dt.date):
            if isinstance(b, dt.date):
                return (a - b).days
            days = dt.timedelta(days=int(b))  # type: ignore[call-overload]
            return a + days if op == "+" else a - days
        if op == "/":
            return DECIMAL.divide(as_decimal(a), as_decimal(b))
        if type(a) is int and type(b) is int:
            result = a + b if op == "+" else a - b if op == "-" else a * b
            return result if in_int64(result) else MISSING
        x, y = as_decimal(a), as_decimal(b)
        if op == "+":
            return DECIMAL.add(x, y)
        if op == "-":
            return DECIMAL.subtract(x, y)
        return DECIMAL.multiply(x, y)
    except (OverflowError, TypeError, *_DECIMAL_ERRORS):
        return MISSING


_COMPARE: Final[dict[str, Callable[[Any, Any], bool]]] = {
    "==": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
}


def compare(op: str, a: object, b: object) -> bool:
    """``a op b`` on two known values (exact for integers and decimals)."""
    return _COMPARE[op](a, b)


def member(needle: object, haystack: Expr, env: Env, tables: Tables) -> bool:
    """Whether a known ``needle`` is in a list literal or among a table's keys."""
    if isinstance(haystack, ListLit):
        return any(needle == value(i, env, tables) for i in haystack.items)
    assert isinstance(haystack, Name)
    return str(needle) in tables.get(haystack.dotted, {})


def truth(node: Expr, env: Env, tables: Tables) -> bool | None:
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
            found = member(needle, h, env, tables)
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


def literal_values(items: Sequence[Expr]) -> list[object]:
    """The constant values of a list literal's items."""
    return [i.value for i in items if isinstance(i, Literal)]


# --- compiled evaluation ---------------------------------------------------------------------
#
# ``value`` and ``truth`` walk the tree on every call. A decision asks for the same terms
# several times (the fact for durable_rules, the compared values, the reason texts), so the
# decision path compiles each expression once into closures, and a per-decision ``memo``
# (canonical text → value) computes each computed term once per decision. The closures give
# exactly what ``value`` and ``truth`` give: tests compare them on every shipped ruleset and
# on random applications.

Memo = dict[str, object]
ValueFn = Callable[[Env, Tables, Memo], object]
TruthFn = Callable[[Env, Tables, Memo], "bool | None"]
_UNSET: Final = object()
_OPERATORS: Final[dict[str, Callable[[Any, Any], bool]]] = {
    "==": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}
_CALL_ERRORS = (ValueError, OverflowError, TypeError, *_DECIMAL_ERRORS)


def compile_value(node: Expr) -> ValueFn:
    """``value(node, env, tables)`` as a closure ``fn(env, tables, memo)``.

    A computed term (call, lookup, arithmetic, conditional) is kept in ``memo`` under its
    canonical text, so that every use of it within one decision computes it once. A memo
    belongs to one decision and one state of ``env``.
    """
    match node:
        case Literal(value=v):
            return lambda env, tables, memo: v
        case Name():
            dotted = node.dotted

            def name(env: Env, tables: Tables, memo: Memo) -> object:
                if dotted in tables:
                    return MISSING
                return env.get(dotted, MISSING)

            return name
        case ListLit():
            raise TypeError("a list has no value outside 'in'")
        case Call() | Index() | Arith() | Neg() | If():
            compute = _compile_computed(node)
            key = unparse(node)

            def memoised(env: Env, tables: Tables, memo: Memo) -> object:
                v = memo.get(key, _UNSET)
                if v is _UNSET:
                    v = memo[key] = compute(env, tables, memo)
                return v

            return memoised
    verdict = compile_truth(node)

    def boolean(env: Env, tables: Tables, memo: Memo) -> object:
        t = verdict(env, tables, memo)
        return MISSING if t is None else t

    return boolean


def _compile_computed(node: Expr) -> ValueFn:
    match node:
        case Call(func=f, args=args):
            impl = FUNCTIONS[f].impl
            fns = tuple(compile_value(a) for a in args)
            if len(fns) == 2:
                fa, fb = fns

                def call2(env: Env, tables: Tables, memo: Memo) -> object:
                    a, b = fa(env, tables, memo), fb(env, tables, memo)
                    if a is MISSING or b is MISSING:
                        return MISSING
                    try:
                        return impl(a, b)
                    except _CALL_ERRORS:
                        return MISSING

                return call2

            def call(env: Env, tables: Tables, memo: Memo) -> object:
                vals = [fn(env, tables, memo) for fn in fns]
                for v in vals:
                    if v is MISSING:
                        return MISSING
                try:
                    return impl(*vals)
                except _CALL_ERRORS:
                    return MISSING

            return call
        case Index(table=t, key=k):
            table_name = t.dotted
            key_fn = compile_value(k)

            def index(env: Env, tables: Tables, memo: Memo) -> object:
                key = key_fn(env, tables, memo)
                if key is MISSING:
                    return MISSING
                table = tables.get(table_name)
                return MISSING if table is None else table.get(str(key), MISSING)

            return index
        case Arith(op=op, left=l, right=r):
            fl, fr = compile_value(l), compile_value(r)

            def arithmetic(env: Env, tables: Tables, memo: Memo) -> object:
                a, b = fl(env, tables, memo), fr(env, tables, memo)
                if a is MISSING or b is MISSING:
                    return MISSING
                return arith(op, a, b)

            return arithmetic
        case Neg(operand=o):
            fo = compile_value(o)

            def negative(env: Env, tables: Tables, memo: Memo) -> object:
                inner: Any = fo(env, tables, memo)
                if inner is MISSING:
                    return MISSING
                if type(inner) is int and not in_int64(-inner):
                    return MISSING
                return -inner

            return negative
        case If(cond=c, then=a, orelse=b):
            fc, fa, fb = compile_truth(c), compile_value(a), compile_value(b)

            def conditional(env: Env, tables: Tables, memo: Memo) -> object:
                verdict = fc(env, tables, memo)
                if verdict is None:
                    return MISSING
                return fa(env, tables, memo) if verdict else fb(env, tables, memo)

            return conditional
    raise TypeError(f"not a computed term: {node!r}")  # pragma: no cover - see compile_value


def compile_truth(node: Expr) -> TruthFn:
    """``truth(node, env, tables)`` as a closure ``fn(env, tables, memo)`` (see
    ``compile_value``)."""
    match node:
        case Compare(op=op, left=l, right=r):
            fl, fr, cmp = compile_value(l), compile_value(r), _OPERATORS[op]

            def comparison(env: Env, tables: Tables, memo: Memo) -> bool | None:
                a, b = fl(env, tables, memo), fr(env, tables, memo)
                if a is MISSING or b is MISSING:
                    return None
                return cmp(a, b)

            return comparison
        case In(needle=n, haystack=h, negated=neg):
            fn = compile_value(n)
            if isinstance(h, ListLit) and all(isinstance(i, Literal) for i in h.items):
                constants = tuple(i.value for i in h.items if isinstance(i, Literal))

                def in_constants(env: Env, tables: Tables, memo: Memo) -> bool | None:
                    needle = fn(env, tables, memo)
                    if needle is MISSING:
                        return None
                    found = False
                    for c in constants:
                        if needle == c:
                            found = True
                            break
                    return not found if neg else found

                return in_constants
            if isinstance(h, ListLit):
                item_fns = tuple(compile_value(i) for i in h.items)

                def in_list(env: Env, tables: Tables, memo: Memo) -> bool | None:
                    needle = fn(env, tables, memo)
                    if needle is MISSING:
                        return None
                    found = any(needle == item(env, tables, memo) for item in item_fns)
                    return not found if neg else found

                return in_list
            assert isinstance(h, Name)
            table_name = h.dotted

            def in_table(env: Env, tables: Tables, memo: Memo) -> bool | None:
                needle = fn(env, tables, memo)
                if needle is MISSING:
                    return None
                found = str(needle) in tables.get(table_name, {})
                return not found if neg else found

            return in_table
        case Not(operand=o):
            fo = compile_truth(o)

            def negation(env: Env, tables: Tables, memo: Memo) -> bool | None:
                t = fo(env, tables, memo)
                return None if t is None else not t

            return negation
        case And(items=items) | Or(items=items):
            fns = tuple(compile_truth(i) for i in items)
            decisive = isinstance(node, Or)

            def junction(env: Env, tables: Tables, memo: Memo) -> bool | None:
                unknown = False
                for fn_ in fns:
                    t = fn_(env, tables, memo)
                    if t is decisive:
                        return decisive
                    if t is None:
                        unknown = True
                return None if unknown else not decisive

            return junction
        case Literal(value=v) if isinstance(v, bool):
            return lambda env, tables, memo: v
    fv = compile_value(node)
    text = unparse(node)

    def boolean(env: Env, tables: Tables, memo: Memo) -> bool | None:
        result = fv(env, tables, memo)
        if result is MISSING:
            return None
        if isinstance(result, bool):
            return result
        raise TypeError(f"not a boolean: {text}")

    return boolean
