"""The checked, compiled parts of a ruleset: what evaluation and evidence gathering work from."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from functools import cached_property
from typing import Final

from engine._semantics import (
    MISSING,
    Memo,
    TruthFn,
    ValueFn,
    compile_truth,
    compile_value,
)
from engine.expr import Expr
from engine.model import Text
from engine.registries import Claim

__all__ = [
    "CheckedCriterion",
    "CheckedParameter",
    "CheckedRow",
    "CheckedTable",
    "CheckedValue",
    "Column",
    "EvidencePlan",
    "Period",
    "Template",
    "format_value",
]


JsonScalar = str | int | float | bool | None
JsonValue = JsonScalar | list[JsonScalar]


_AS_IS: Final = frozenset({str, int, bool})
"""Types written in JSON as they are (checked by exact type: the common case, fast)."""


def json_value(v: object) -> JsonValue:
    """A value as written in JSON records: decimals as exact strings, dates as ISO text."""
    if type(v) in _AS_IS:
        return v  # type: ignore[return-value]
    if v is MISSING or v is None:
        return None
    if isinstance(v, bool | str | int):
        return v
    if isinstance(v, Decimal):
        return format(v, "f")
    if isinstance(v, dt.date):
        return v.isoformat()
    if isinstance(v, list):
        return [json_value(i) for i in v]  # type: ignore[misc]
    return str(v)


def typed_json(v: object, type_name: str) -> JsonValue:
    """A value of a declared type in JSON: every ``number`` is a decimal string."""
    if isinstance(v, list):
        return [typed_json(i, type_name) for i in v]  # type: ignore[misc]
    if type_name == "number" and isinstance(v, int) and not isinstance(v, bool):
        return str(v)
    return json_value(v)


def _plain(d: Decimal) -> str:
    """A decimal without exponent: ``Decimal('1E+3')`` → ``1000``."""
    return format(d, "f")


def format_value(v: object, *, lang: str, fmt: str | None = None) -> str:
    """A value as a citizen reads it; ``fmt="money"`` writes ``1,234.50`` (grouped, to 分)."""
    if v is MISSING or v is None:
        return "（无记录）" if lang == "zh" else "(no record)"
    if isinstance(v, bool):
        return ("是" if v else "否") if lang == "zh" else ("yes" if v else "no")
    if isinstance(v, dt.date):
        return v.isoformat()
    if fmt == "money":
        if isinstance(v, int):
            return f"{v:,}"
        if isinstance(v, Decimal):
            import decimal

            return f"{v.quantize(Decimal('0.01'), rounding=decimal.ROUND_HALF_UP):,.2f}"
    if isinstance(v, Decimal):
        return _plain(v)
    if isinstance(v, list):
        return "、".join(format_value(i, lang=lang, fmt=fmt) for i in v)
    return str(v)


@dataclass(frozen=True)
class Template:
    """A citizen-facing text with ``{expression}`` (or ``{expression:money}``) placeholders."""

    text: str
    parts: tuple[str | tuple[Expr, str | None], ...]

    @cached_property
    def _compiled(self) -> tuple[str | tuple[ValueFn, str | None], ...]:
        return tuple(
            part if isinstance(part, str) else (compile_value(part[0]), part[1])
            for part in self.parts
        )

    def render(
        self,
        env: Mapping[str, object],
        tables: Mapping[str, Mapping[str, object]],
        *,
        lang: str,
        memo: Memo | None = None,
    ) -> str:
        """The text for one decision; ``memo`` shares computed terms with the rest of it."""
        if memo is None:
            memo = {}
        out: list[str] = []
        for part in self._compiled:
            if isinstance(part, str):
                out.append(part)
            else:
                fn, fmt = part
                out.append(format_value(fn(env, tables, memo), lang=lang, fmt=fmt))
        return "".join(out)


@dataclass(frozen=True)
class CheckedCriterion:
    index: int
    id: str
    condition: Expr
    names: tuple[str, ...]
    """Every name the condition reads directly (facts, values, parameters)."""
    terms: tuple[Expr, ...]
    reason_zh: Template
    reason_en: Template
    condition_text: str = ""
    term_texts: tuple[str, ...] = ()
    facts: tuple[str, ...] = ()
    """The application and registry facts it depends on, through values too."""
    term_sources: tuple[str, ...] = ()
    """Where each compared term's value comes from (see ``ComparedValue.source``)."""

    @cached_property
    def term_plan(self) -> tuple[tuple[ValueFn, str, str], ...]:
        """Each compared term compiled once (see ``engine._semantics.compile_value``), with
        its text and source."""
        return tuple(
            (compile_value(t), text, source)
            for t, text, source in zip(self.terms, self.term_texts, self.term_sources, strict=True)
        )

    @cached_property
    def truth_fn(self) -> TruthFn:
        """The condition, compiled once (see ``engine._semantics.compile_truth``)."""
        return compile_truth(self.condition)


@dataclass(frozen=True)
class Column:
    """One output of a decision table."""

    name: str
    type: str
    title: Text | None = None
    unit: str | None = None
    priority: tuple[object, ...] | None = None
    """The output values in decreasing priority (PRIORITY and OUTPUT ORDER)."""

    def rank(self, v: object) -> int:
        assert self.priority is not None
        return self.priority.index(v)


@dataclass(frozen=True)
class CheckedRow:
    index: int
    when: Expr | None
    """``None``: the rule always matches."""
    when_text: str
    cells: dict[str, Expr]
    constant: dict[str, object] | None = None
    """The outputs when every cell is a constant (computed once, not per decision)."""
    constant_json: dict[str, JsonValue] | None = None
    """The same, as written in JSON (each column's type applied)."""

    @cached_property
    def when_fn(self) -> TruthFn:
        """The condition, compiled once; a rule without one always matches."""
        if self.when is None:
            return lambda env, tables, memo: True
        return compile_truth(self.when)

    @cached_property
    def cell_fns(self) -> dict[str, ValueFn]:
        """Each output cell, compiled once."""
        return {column: compile_value(cell) for column, cell in self.cells.items()}


@dataclass(frozen=True)
class CheckedTable:
    """A decision table, checked: outputs (several columns) or a value's (one column)."""

    id: str
    title: Text
    hit_policy: str
    columns: tuple[Column, ...]
    rows: tuple[CheckedRow, ...]
    default: dict[str, Expr] | None = None

    @cached_property
    def column_types(self) -> dict[str, str]:
        return {c.name: c.type for c in self.columns}

    @cached_property
    def default_fns(self) -> dict[str, ValueFn]:
        """Each default output, compiled once (empty without a default)."""
        return {column: compile_value(cell) for column, cell in (self.default or {}).items()}

    @property
    def multiple(self) -> bool:
        """Whether the result is a list per column (RULE ORDER, OUTPUT ORDER, COLLECT)."""
        return self.hit_policy in ("RULE ORDER", "OUTPUT ORDER", "COLLECT")


@dataclass(frozen=True)
class Period:
    start: dt.date
    end: dt.date | None
    """The last day (inclusive); ``None`` while no later period is declared."""
    value: object
    legal_basis: tuple[str, ...]
    note: str | None = None


@dataclass(frozen=True)
class CheckedParameter:
    name: str
    title: Text
    type: str
    unit: str | None
    periods: tuple[Period, ...]
    mapping: bool

    def in_force(self, day: dt.date) -> Period | None:
        for period in self.periods:
            if period.start <= day and (period.end is None or day <= period.end):
                return period
        return None


@dataclass(frozen=True)
class CheckedValue:
    name: str
    title: Text
    type: str
    unit: str | None
    legal_basis: tuple[str, ...]
    expr: Expr | None
    table: CheckedTable | None
    text: str
    """The expression as written (canonical), or ``decision table (<hit policy>)``."""
    inputs: tuple[str, ...]
    """The names it reads directly, in order: facts, parameters, other values."""

    @cached_property
    def expr_fn(self) -> ValueFn | None:
        """The expression, compiled once (``None`` for a value given by a table)."""
        return None if self.expr is None else compile_value(self.expr)


@dataclass(frozen=True)
class EvidencePlan:
    """How to ask one registry for one evidence item."""

    id: str
    source: str
    mode: str
    key: dict[str | None, Expr]
    """Key field → expression; ``None`` is "the registry's one key field not given otherwise"
    (a version-1 single key)."""
    fields: dict[str, str]
    claims: dict[str, Claim | None] = field(default_factory=dict)
    """Verify: answer → the claim to send, or ``None`` for an answer the catalogue names."""
    depends_on: tuple[str, ...] = ()
    level: int = 0
    key_text: str = ""
    pseudonym_keys: frozenset[str] = frozenset()
    """Key fields whose value comes from a form field a record keeps only as a pseudonym (the
    record's ``key`` shows them pseudonymised too; see ``engine.recording``)."""
