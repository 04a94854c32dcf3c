"""Compile checked conditions to durable_rules' JSON ruleset form (data, not generated code).

Each criterion becomes two rules over one asserted fact: ``pass`` fires when the condition is
TRUE and ``fail`` when it is FALSE, both in negation normal form. A comparison over a missing
fact never matches (against a constant durable_rules does not match a missing field; between
two fields both are guarded by ``$ex``), so a criterion whose outcome depends on a missing
fact fires neither rule: UNKNOWN. This is
exactly Kleene's three-valued logic, which the reference evaluator implements directly.
Each rule of the outputs table becomes a ``hit`` rule; the fact keys it reads are kept, so a
rule that did not fire is known to be FALSE when all of them were asserted, and is otherwise
decided (FALSE or UNKNOWN) by the reference evaluator: a rule over a missing fact is never
taken as not matching. (A ``miss`` rule per row gave the same answer at ~10% more cost.)

Terms durable_rules cannot compute (function calls, arithmetic, table lookups, conditional
values, membership in a parameter whose keys change by date) are evaluated by us into
derived fields of the fact; the comparisons and the logic run in the Rete network.
durable_rules compares numbers as binary doubles, so a comparison involving an exact
decimal (a ``number``) is not handed to it as such: we compute the sign of ``left − right``
exactly and the network compares that sign with 0. Integers, dates (as day ordinals),
strings and booleans are compared by the network itself.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from functools import cached_property
from typing import Any

from engine._semantics import (
    MISSING,
    Memo,
    ValueFn,
    arith,
    as_decimal,
    compile_truth,
    compile_value,
    member,
)
from engine.expr import (
    And,
    Compare,
    Expr,
    In,
    ListLit,
    Literal,
    Name,
    Not,
    Or,
    unparse,
)

__all__ = ["CompiledRules", "RuleRef", "compile_rules", "to_fact_value"]

_OPS = {"!=": "$neq", "<": "$lt", "<=": "$lte", ">": "$gt", ">=": "$gte"}
_NEGATE = {"==": "!=", "!=": "==", "<": ">=", "<=": ">", ">": "<=", ">=": "<"}
_FLIP = {"==": "==", "!=": "!=", "<": ">", "<=": ">=", ">": "<", ">=": "<="}
_ALWAYS = {"$ex": {"id": 1}}
_NEVER = {"$nex": {"id": 1}}


@dataclass(frozen=True)
class RuleRef:
    """What one durable_rules rule stands for: a criterion's pass/fail, or a row's hit/miss."""

    kind: str  # "pass" | "fail" | "hit"
    index: int


@dataclass(frozen=True)
class _Sign:
    """A derived term: the sign (−1, 0, 1) of ``left − right``, computed exactly."""

    left: Expr
    right: Expr


@dataclass(frozen=True)
class _Member:
    """A derived term: whether ``needle`` is among the keys of a dated parameter."""

    node: In


@dataclass(frozen=True)
class _Truth:
    """A derived term: the Kleene truth of a condition too wide for durable_rules' ``$or``."""

    node: Expr


Derived = Expr | _Sign | _Member | _Truth
MAX_OR_WIDTH = 12
"""durable_rules refuses a rule whose ``$or`` (nested ones flattened) has 15 or more branches
(error 113); wider disjunctions are decided before asserting."""


@dataclass
class CompiledRules:
    """The durable_rules definition plus what is needed to build the fact it matches."""

    definition: dict[str, Any]
    rules: dict[str, RuleRef]
    fields: dict[str, str] = field(default_factory=dict)
    """dotted fact name → fact key"""
    derived: dict[str, Derived] = field(default_factory=dict)
    """fact key → term we evaluate before asserting"""
    row_keys: list[frozenset[str]] = field(default_factory=list)
    """Per outputs-table rule: the fact keys its condition reads."""

    def fact(
        self,
        env: Mapping[str, object],
        tables: Mapping[str, Mapping[str, object]],
        memo: Memo | None = None,
    ) -> dict[str, object]:
        """The single fact asserted for one decision; missing facts are left out.

        ``memo`` (one per decision) keeps the derived terms computed here for the rest of
        the decision: the values compared and the reason texts read the same terms.
        """
        if memo is None:
            memo = {}
        out: dict[str, object] = {}
        date = dt.date
        for dotted, key in self._field_items:
            v = env.get(dotted)
            if v is not None and v is not MISSING:
                out[key] = v.toordinal() if isinstance(v, date) else v
        for key, fn in self._derived_fns:
            v = fn(env, tables, memo)
            if v is not MISSING and v is not None:
                out[key] = v.toordinal() if isinstance(v, date) else v
        return out

    @cached_property
    def _field_items(self) -> tuple[tuple[str, str], ...]:
        return tuple(self.fields.items())

    @cached_property
    def _derived_fns(self) -> tuple[tuple[str, ValueFn], ...]:
        return tuple((key, _derive_fn(term)) for key, term in self.derived.items())


def _derive_fn(term: Derived) -> ValueFn:
    """How a derived term is computed for the fact, compiled once (see
    ``engine._semantics.compile_value``)."""
    if isinstance(term, _Truth):
        verdict = compile_truth(term.node)

        def truth_term(env: Mapping[str, object], tables: Any, memo: Memo) -> object:
            t = verdict(env, tables, memo)
            return MISSING if t is None else t

        return truth_term
    if isinstance(term, _Sign):
        left, right = compile_value(term.left), compile_value(term.right)

        def sign(env: Mapping[str, object], tables: Any, memo: Memo) -> object:
            a, b = left(env, tables, memo), right(env, tables, memo)
            if a is MISSING or b is MISSING:
                return MISSING
            diff = arith("-", a, b)
            if diff is MISSING:
                return MISSING
            d = as_decimal(diff)
            return 0 if d == 0 else (1 if d > 0 else -1)

        return sign
    if isinstance(term, _Member):
        needle_fn, haystack = compile_value(term.node.needle), term.node.haystack

        def membership(env: Mapping[str, object], tables: Any, memo: Memo) -> object:
            needle = needle_fn(env, tables, memo)
            if needle is MISSING:
                return MISSING
            return member(needle, haystack, env, tables)

        return membership
    return compile_value(term)


def to_fact_value(v: object) -> object:
    """Dates become day ordinals so the Rete network can compare them; never a float."""
    if isinstance(v, dt.date):
        return v.toordinal()
    if isinstance(v, float):  # pragma: no cover - nothing in the language makes floats
        raise TypeError("binary floats are never asserted")
    return v


class _Compiler:
    def __init__(self, static_keys: Mapping[str, list[str]], types: Mapping[Expr, str]) -> None:
        self.static_keys = static_keys
        self.types = types
        self.out = CompiledRules(definition={}, rules={})
        self._derived_by_text: dict[object, str] = {}
        self.used: set[str] = set()
        """The fact keys read by what is being compiled (collected per outputs rule)."""

    def derived(self, identity: object, term: Derived) -> str:
        """The fact key of a derived term; equal terms (same ``identity``) share one key."""
        key = self._derived_by_text.get(identity)
        if key is None:
            key = f"t{len(self._derived_by_text)}"
            self._derived_by_text[identity] = key
            self.out.derived[key] = term
        self.used.add(key)
        return key

    def operand(self, term: Expr) -> tuple[str, object]:
        """('const', value) or ('field', fact key)."""
        if isinstance(term, Literal):
            return "const", to_fact_value(term.value)
        if isinstance(term, Name):
            key = "v_" + "__".join(term.parts)
            self.out.fields[term.dotted] = key
            self.used.add(key)
            return "field", key
        return "field", self.derived(unparse(term), term)

    def _decimal(self, *terms: Expr) -> bool:
        return any(
            self.types.get(t) == "number"
            or (isinstance(t, Literal) and isinstance(t.value, Decimal))
            for t in terms
        )

    def atom(self, op: str, left: Expr, right: Expr) -> dict[str, Any]:
        if self._decimal(left, right) and not (
            isinstance(left, Literal) and isinstance(right, Literal)
        ):
            sign = self.derived(("sign", unparse(left), unparse(right)), _Sign(left, right))
            return self._test(op, "field", sign, "const", 0)
        lk, lv = self.operand(left)
        rk, rv = self.operand(right)
        return self._test(op, lk, lv, rk, rv)

    def _test(self, op: str, lk: str, lv: object, rk: str, rv: object) -> dict[str, Any]:
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
        if isinstance(rv, Decimal):  # pragma: no cover - the checker's types route these to signs
            raise TypeError("decimals are compared through their exact sign")
        if rk == "const":
            # Against a constant, durable_rules never matches a missing field (measured for
            # every operator): the test alone is three-valued already.
            return {str(lv): rv} if op == "==" else {_OPS[op]: {str(lv): rv}}
        # Between two fields a missing right-hand one could match ($neq): guard both.
        left, right = str(lv), str(rv)
        test = {left: {"$m": right}} if op == "==" else {_OPS[op]: {left: {"$m": right}}}
        return {"$and": [{"$ex": {left: 1}}, {"$ex": {right: 1}}, test]}

    def nnf(self, node: Expr, positive: bool) -> dict[str, Any]:
        """``node`` in negation normal form: matches when it is TRUE (FALSE if not positive)."""
        compiled = self._nnf(node, positive)
        if _or_width(compiled) > MAX_OR_WIDTH:
            key = self.derived(("truth", unparse(node)), _Truth(node))
            return self._test("==", "field", key, "const", positive)
        return compiled

    def _nnf(self, node: Expr, positive: bool) -> dict[str, Any]:
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
                member_ = positive != neg
                if isinstance(h, ListLit):
                    choices: list[Expr] = list(h.items)
                elif isinstance(h, Name) and h.dotted in self.static_keys:
                    choices = [Literal(k, h.offset) for k in self.static_keys[h.dotted]]
                else:  # a parameter whose keys change by date: computed before asserting
                    key = self.derived(
                        ("member", unparse(node)), _Member(In(n, h, False, node.offset))
                    )
                    return self._test("==", "field", key, "const", member_)
                parts = [self.atom("==" if member_ else "!=", n, i) for i in choices]
                return {"$or" if member_ else "$and": parts}
            case Literal(value=v) if isinstance(v, bool):
                return dict(_ALWAYS if v == positive else _NEVER)
            case _:
                return self.atom("==", node, Literal(positive, node.offset))


def _or_width(compiled: Mapping[str, Any]) -> int:
    """The widest ``$or`` in a compiled condition, nested ``$or`` branches counted together."""

    def flat(branches: list[Any]) -> int:
        return sum(flat(b["$or"]) if "$or" in b else 1 for b in branches)

    def widest(part: Any) -> int:
        if isinstance(part, dict):
            here = flat(part["$or"]) if "$or" in part else 0
            return max([here, *(widest(v) for v in part.values())])
        if isinstance(part, list):
            return max((widest(v) for v in part), default=0)
        return 0

    return widest(compiled)


def compile_rules(
    *,
    criteria: list[Expr],
    rows: list[Expr],
    static_keys: Mapping[str, list[str]] | None = None,
    types: Mapping[Expr, str] | None = None,
) -> CompiledRules:
    """Compile criteria (pass and fail rules) and decision-table rows (hit rules)."""
    c = _Compiler(static_keys or {}, types or {})
    for i, cond in enumerate(criteria):
        for kind, positive in (("pass", True), ("fail", False)):
            rule = f"c{i}_{kind}"
            c.out.definition[rule] = {"all": [{"m": c.nnf(cond, positive)}]}
            c.out.rules[rule] = RuleRef(kind, i)
    for i, when in enumerate(rows):
        c.used = set()
        rule = f"r{i}_hit"
        c.out.definition[rule] = {"all": [{"m": c.nnf(when, True)}]}
        c.out.rules[rule] = RuleRef("hit", i)
        c.out.row_keys.append(frozenset(c.used))
    return c.out
