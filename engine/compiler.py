"""Compile checked conditions to durable_rules' JSON ruleset form (data, not generated code).

Each criterion becomes two rules over one asserted fact: ``pass`` fires when the condition is
TRUE and ``fail`` when it is FALSE, both in negation normal form. Every comparison is guarded
by ``$ex`` on the fields it reads, so a comparison over a missing fact is neither true nor
false, and a criterion whose outcome depends on one fires neither rule: UNKNOWN. This is
exactly Kleene's three-valued logic, which the reference evaluator implements directly.
Terms durable_rules cannot compute (function calls, arithmetic, table lookups) are evaluated
by us into derived fields of the fact; the comparisons and the logic run in the Rete network.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from engine._semantics import MISSING, value
from engine.expr import And, Compare, Expr, In, Index, ListLit, Literal, Name, Not, Or, unparse

__all__ = ["CompiledRules", "RuleRef", "compile_rules", "to_fact_value"]

_OPS = {"!=": "$neq", "<": "$lt", "<=": "$lte", ">": "$gt", ">=": "$gte"}
_NEGATE = {"==": "!=", "!=": "==", "<": ">=", "<=": ">", ">": "<=", ">=": "<"}
_FLIP = {"==": "==", "!=": "!=", "<": ">", "<=": ">=", ">": "<", ">=": "<="}
_ALWAYS = {"$ex": {"id": 1}}
_NEVER = {"$nex": {"id": 1}}


@dataclass(frozen=True)
class RuleRef:
    """What one durable_rules rule stands for: a criterion's pass/fail, or an output row."""

    kind: str  # "pass" | "fail" | "row"
    index: int


@dataclass
class CompiledRules:
    """The durable_rules definition plus what is needed to build the fact it matches."""

    definition: dict[str, Any]
    rules: dict[str, RuleRef]
    fields: dict[str, str] = field(default_factory=dict)
    """dotted fact name → fact key"""
    derived: dict[str, Expr] = field(default_factory=dict)
    """fact key → term we evaluate before asserting"""

    def fact(
        self, env: Mapping[str, object], tables: Mapping[str, Mapping[str, object]]
    ) -> dict[str, object]:
        """The single fact asserted for one decision; missing facts are left out."""
        out: dict[str, object] = {}
        for dotted, key in self.fields.items():
            v = env.get(dotted, MISSING)
            if v is not MISSING and v is not None:
                out[key] = to_fact_value(v)
        for key, term in self.derived.items():
            v = value(term, env, tables)
            if v is not MISSING and v is not None:
                out[key] = to_fact_value(v)
        return out


def to_fact_value(v: object) -> object:
    """Dates become day ordinals so the Rete network can compare them."""
    if isinstance(v, dt.date):
        return v.toordinal()
    return v


class _Compiler:
    def __init__(self, tables: Mapping[str, Mapping[str, object]]) -> None:
        self.tables = tables
        self.out = CompiledRules(definition={}, rules={})
        self._derived_by_text: dict[str, str] = {}

    def operand(self, term: Expr) -> tuple[str, object]:
        """('const', value) or ('field', fact key)."""
        if isinstance(term, Literal):
            return "const", to_fact_value(term.value)
        if isinstance(term, Name):
            key = "v_" + "__".join(term.parts)
            self.out.fields[term.dotted] = key
            return "field", key
        text = unparse(term)
        derived = self._derived_by_text.get(text)
        if derived is None:
            derived = f"t{len(self._derived_by_text)}"
            self._derived_by_text[text] = derived
            self.out.derived[derived] = term
        return "field", derived

    def atom(self, op: str, left: Expr, right: Expr) -> dict[str, Any]:
        lk, lv = self.operand(left)
        rk, rv = self.operand(right)
        if lk == "const" and rk == "const":
            holds = {
                "==": lv == rv,
                "!=": lv != rv,
                "<": lv < rv,  # type: ignore[operator]
                "<=": lv <= rv,  # type: ignore[operator]
                ">": lv > rv,  # type: ignore[operator]
                ">=": lv >= rv,  # type: ignore[operator]
            }[op]
            return dict(_ALWAYS if holds else _NEVER)
        if lk == "const":
            lk, lv, rk, rv, op = rk, rv, lk, lv, _FLIP[op]
        guards: list[dict[str, Any]] = [{"$ex": {lv: 1}}]
        target: object = rv
        if rk == "field":
            guards.append({"$ex": {rv: 1}})
            target = {"$m": rv}
        test = {lv: target} if op == "==" else {_OPS[op]: {lv: target}}
        return {"$and": [*guards, test]}

    def nnf(self, node: Expr, positive: bool) -> dict[str, Any]:
        match node:
            case And(items=items) | Or(items=items):
                conj = isinstance(node, And) == positive
                parts = [self.nnf(i, positive) for i in items]
                return {"$and" if conj else "$or": parts}
            case Not(operand=o):
                return self.nnf(o, not positive)
            case Compare(op=op, left=l, right=r):
                return self.atom(op if positive else _NEGATE[op], l, r)
            case In(needle=n, haystack=h, negated=neg):
                member = positive != neg
                if isinstance(h, ListLit):
                    choices: list[Expr] = list(h.items)
                else:
                    assert isinstance(h, Name)
                    choices = [Literal(k, h.offset) for k in self.tables[h.dotted]]
                parts = [self.atom("==" if member else "!=", n, i) for i in choices]
                return {"$or" if member else "$and": parts}
            case Literal(value=v) if isinstance(v, bool):
                return dict(_ALWAYS if v == positive else _NEVER)
            case Name() | Index() | _:
                return self.atom("==", node, Literal(positive, node.offset))


def compile_rules(
    *,
    criteria: list[Expr],
    rows: list[Expr],
    tables: Mapping[str, Mapping[str, object]],
) -> CompiledRules:
    """Compile criteria (pass and fail rules) and decision-table rows (hit rules)."""
    c = _Compiler(tables)
    for i, cond in enumerate(criteria):
        for kind, positive in (("pass", True), ("fail", False)):
            rule = f"c{i}_{kind}"
            c.out.definition[rule] = {"all": [{"m": c.nnf(cond, positive)}]}
            c.out.rules[rule] = RuleRef(kind, i)
    for i, when in enumerate(rows):
        rule = f"r{i}_hit"
        c.out.definition[rule] = {"all": [{"m": c.nnf(when, True)}]}
        c.out.rules[rule] = RuleRef("row", i)
    return c.out
