"""Decision-table hit policies with DMN 1.5's semantics, made safe for three-valued logic.

Both evaluators decide which rules match (durable_rules for the outputs table, the reference
evaluator everywhere); this module turns the matches into the table's result. A rule may be
UNKNOWN (its condition reads a missing fact): the result is then UNKNOWN whenever that rule
could change it, so a missing fact can never choose an amount.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from engine._compiled import CheckedRow, CheckedTable
from engine._semantics import MISSING, arith

__all__ = ["TableResult", "decide_table"]

Status = Literal["ok", "no_match", "ambiguous", "unknown"]


@dataclass(frozen=True)
class TableResult:
    """The result of one decision table for one decision."""

    status: Status
    outputs: dict[str, object] | None
    """Column → value (a list for RULE ORDER, OUTPUT ORDER and COLLECT); ``None`` unless ok."""
    hits: tuple[int, ...]
    """The rules that matched (0-based, in rule order)."""
    undecided: tuple[int, ...]
    """The rules whose condition is UNKNOWN."""
    detail: str = ""
    defaulted: bool = False


class _Unknown(Exception):
    """A cell of a rule that decides the result reads a missing fact."""


def decide_table(
    table: CheckedTable,
    statuses: Sequence[bool | None],
    cell: Callable[[CheckedRow, str], object],
    default: Callable[[str], object] | None = None,
) -> TableResult:
    """The table's result given each rule's status (True: matches, False: not, None: UNKNOWN).

    ``cell(row, column)`` computes an output cell (``MISSING`` if it cannot be computed) and
    ``default(column)`` the table's default output. Cells are computed only for the rules the
    result is made of.
    """
    hits = tuple(i for i, s in enumerate(statuses) if s is True)
    undecided = tuple(i for i, s in enumerate(statuses) if s is None)
    rows = table.rows
    columns = [c.name for c in table.columns]

    def row_out(i: int) -> dict[str, object]:
        constant = rows[i].constant
        if constant is not None:
            return constant
        out = {c: cell(rows[i], c) for c in columns}
        if any(v is MISSING for v in out.values()):
            raise _Unknown
        return out

    def result(
        status: Status,
        outputs: dict[str, object] | None = None,
        detail: str = "",
        defaulted: bool = False,
    ) -> TableResult:
        return TableResult(status, outputs, hits, undecided, detail, defaulted)

    def no_match() -> TableResult:
        if table.default is None or default is None:
            return result("no_match")
        out = {c: default(c) for c in columns}
        if any(v is MISSING for v in out.values()):
            return result("unknown")
        return result("ok", out, defaulted=True)

    policy = table.hit_policy
    try:
        if policy == "FIRST":
            for i, s in enumerate(statuses):
                if s is None:
                    return result("unknown")
                if s is True:
                    return result("ok", row_out(i))
            return no_match()
        if policy == "UNIQUE":
            if len(hits) > 1:
                return result("ambiguous", detail=f"rules {_numbers(hits)} all match")
            if undecided:
                return result("unknown")
            return result("ok", row_out(hits[0])) if hits else no_match()
        if policy == "ANY":
            outs = [row_out(i) for i in hits]
            if any(o != outs[0] for o in outs[1:]):
                return result("ambiguous", detail=f"rules {_numbers(hits)} give different outputs")
            if undecided:
                return result("unknown")
            return result("ok", outs[0]) if outs else no_match()
        if policy == "PRIORITY":
            if hits:
                best = min(hits, key=lambda i: _rank(table, i))
                # an undecided rule that would rank first (by priority, then rule order) could
                # still be the one that applies
                if any(_rank(table, u) < _rank(table, best) for u in undecided):
                    return result("unknown")
                return result("ok", row_out(best))
            return result("unknown") if undecided else no_match()
        if undecided:
            return result("unknown")
        if policy in ("RULE ORDER", "COLLECT", "OUTPUT ORDER"):
            order = list(hits)
            if policy == "OUTPUT ORDER":
                order.sort(key=lambda i: _rank(table, i))
            outs = [row_out(i) for i in order]
            return result("ok", {c: [o[c] for o in outs] for c in columns})
        # COLLECT SUM / MIN / MAX / COUNT: one column
        column = columns[0]
        values = [row_out(i)[column] for i in hits]
        if policy == "COLLECT COUNT":
            return result("ok", {column: len(values)})
        if not values:
            return no_match()
        if policy == "COLLECT SUM":
            total: object = values[0]
            for v in values[1:]:
                total = arith("+", total, v)
                if total is MISSING:
                    return result("unknown")
            return result("ok", {column: total})
        pick = min if policy == "COLLECT MIN" else max
        return result("ok", {column: pick(values)})  # type: ignore[type-var]
    except _Unknown:
        return result("unknown")


def _rank(table: CheckedTable, i: int) -> tuple[int, ...]:
    """A rule's output priority: its cells' positions in the ``values`` lists of the columns
    that have one, in column order, then the rule's position (ties keep rule order)."""
    row = table.rows[i]
    ranks = []
    for col in table.columns:
        if col.priority:
            ranks.append(col.rank(getattr(row.cells[col.name], "value", None)))
    return (*ranks, i)


def _numbers(rows: Sequence[int]) -> str:
    return ", ".join(str(i + 1) for i in rows)
