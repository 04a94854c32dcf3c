"""Test coverage of a ruleset (like ``opa test -c``): which criteria reached PASS, FAIL and
UNKNOWN in its named examples, and which decision-table rules ever matched."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from engine.decision import CriterionStatus
from engine.examples import ExampleResult
from engine.ruleset import Ruleset

__all__ = ["Coverage", "measure", "render"]

_STATUSES = (CriterionStatus.PASS, CriterionStatus.FAIL, CriterionStatus.UNKNOWN)


@dataclass
class Coverage:
    """What a ruleset's tests exercised."""

    ruleset: Ruleset
    tests: int
    criteria: dict[str, set[CriterionStatus]] = field(default_factory=dict)
    output_rules: set[int] = field(default_factory=set)
    """Rules of the outputs table (numbered from 1) that matched in some test."""
    value_rules: dict[str, set[int]] = field(default_factory=dict)
    """Per value computed by a decision table: the rules (from 1) that matched."""

    @property
    def missing(self) -> dict[str, list[CriterionStatus]]:
        """Criterion id → the statuses no test reached."""
        return {
            cid: [s for s in _STATUSES if s not in seen]
            for cid, seen in self.criteria.items()
            if len(seen) < len(_STATUSES)
        }

    @property
    def unmatched_output_rules(self) -> list[int]:
        rules = self.ruleset.outputs.rows if self.ruleset.outputs else ()
        return [r.index + 1 for r in rules if r.index + 1 not in self.output_rules]

    def unmatched_value_rules(self, name: str) -> list[int]:
        value = next(v for v in self.ruleset.values if v.name == name)
        assert value.table is not None
        seen = self.value_rules.get(name, set())
        return [r.index + 1 for r in value.table.rows if r.index + 1 not in seen]

    @property
    def complete(self) -> bool:
        return (
            not self.missing
            and not self.unmatched_output_rules
            and not any(self.unmatched_value_rules(v.name) for v in self.ruleset.values if v.table)
        )


def measure(ruleset: Ruleset, results: Sequence[ExampleResult]) -> Coverage:
    """Coverage of ``ruleset`` by the evaluations of its examples."""
    cov = Coverage(ruleset, len(results), {c.id: set() for c in ruleset.criteria})
    for v in ruleset.values:
        if v.table is not None:
            cov.value_rules[v.name] = set()
    for result in results:
        ev = result.evaluation
        if ev is None:
            continue
        for c in ev.criteria:
            cov.criteria.setdefault(c.id, set()).add(c.status)
        cov.output_rules.update(ev.output_rules)
        for computed in ev.values:
            if computed.rules is not None:
                cov.value_rules.setdefault(computed.name, set()).update(computed.rules)
    return cov


def render(cov: Coverage) -> str:
    """The coverage report a policy officer reads (Chinese first, English second)."""
    rs = cov.ruleset
    n = len(rs.criteria)
    reached = {s: sum(1 for seen in cov.criteria.values() if s in seen) for s in _STATUSES}
    lines = [
        f"覆盖率 / coverage  {rs.key}  ({cov.tests} 个测试 / tests)",
        "  条件 / criteria: " + ", ".join(f"{s.value} {reached[s]}/{n}" for s in _STATUSES),
    ]
    titles = {c.id: c.title.zh for c in rs.doc.criteria}
    for cid, missing in cov.missing.items():
        never = ", ".join(s.value for s in missing)
        lines.append(f"    {cid} {titles.get(cid, '')}: 从未 / never {never}")
    if rs.outputs is not None:
        rows = rs.outputs.rows
        unmatched = cov.unmatched_output_rules
        lines.append(
            f"  输出表 / outputs table {rs.outputs.id} ({rs.outputs.hit_policy}): "
            f"{len(rows) - len(unmatched)}/{len(rows)} 条规则命中过 / rules matched"
        )
        for i in unmatched:
            lines.append(
                f"    规则 / rule {i} 从未命中 / never matched: when {rows[i - 1].when_text}"
            )
    for v in rs.values:
        if v.table is None:
            continue
        rows = v.table.rows
        unmatched = cov.unmatched_value_rules(v.name)
        lines.append(
            f"  中间值 / value {v.name} ({v.table.hit_policy}): "
            f"{len(rows) - len(unmatched)}/{len(rows)} 条规则命中过 / rules matched"
        )
        for i in unmatched:
            lines.append(
                f"    规则 / rule {i} 从未命中 / never matched: when {rows[i - 1].when_text}"
            )
    if cov.complete:
        lines.append("  全部覆盖 / everything covered")
    return "\n".join(lines)
