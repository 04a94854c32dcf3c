"""Evaluating one application against a ruleset: criterion results, outcome, outputs."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict

from engine._durable import get_engine
from engine._semantics import MISSING, truth, value
from engine.errors import EngineFault
from engine.ruleset import Ruleset

__all__ = [
    "ComparedValue",
    "CriterionResult",
    "CriterionStatus",
    "Evaluation",
    "Outcome",
    "Reason",
    "ReasonCode",
    "application_env",
    "evaluate",
]


class Outcome(StrEnum):
    APPROVED = "APPROVED"
    REJECTED = "REJECTED"
    REFERRED = "REFERRED"


class CriterionStatus(StrEnum):
    PASS = "PASS"
    FAIL = "FAIL"
    UNKNOWN = "UNKNOWN"


class ReasonCode(StrEnum):
    """The closed set of reasons a decision is not an approval. Stable: clients match on them."""

    CRITERION_NOT_MET = "CRITERION_NOT_MET"
    """A ``reject`` criterion is FALSE on verified facts."""
    CRITERION_NEEDS_REVIEW = "CRITERION_NEEDS_REVIEW"
    """A ``refer`` criterion is FALSE (e.g. declared and registry values differ)."""
    FACT_UNKNOWN = "FACT_UNKNOWN"
    """A criterion could not be decided: a fact it needs is missing or unverifiable."""
    EVIDENCE_NOT_FOUND = "EVIDENCE_NOT_FOUND"
    """A registry has no record for the key (where that is not itself an answer)."""
    EVIDENCE_UNAVAILABLE = "EVIDENCE_UNAVAILABLE"
    """A registry could not be asked: down, timed out, over quota."""
    OUTPUT_NO_MATCH = "OUTPUT_NO_MATCH"
    OUTPUT_AMBIGUOUS = "OUTPUT_AMBIGUOUS"
    ENGINE_FAULT = "ENGINE_FAULT"


class Reason(BaseModel):
    model_config = ConfigDict(frozen=True)

    code: ReasonCode
    criterion: str | None = None
    evidence: str | None = None
    message_zh: str
    message_en: str


JsonScalar = str | int | float | bool | None


@dataclass(frozen=True, slots=True)
class ComparedValue:
    """One value a criterion compared: the term as written and what it evaluated to.

    A plain dataclass (pydantic validates and serialises it inside the record): there are
    dozens per decision, and a model instance costs ten times as much to build.
    """

    expression: str
    value: JsonScalar
    missing: bool = False


class CriterionResult(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: str
    title_zh: str
    title_en: str
    status: CriterionStatus
    on_fail: Literal["reject", "refer"]
    legal_basis: list[str]
    condition: str
    values: list[ComparedValue]
    missing_facts: list[str]
    reason_zh: str | None = None
    reason_en: str | None = None


class Evaluation(BaseModel):
    """What the engine concluded; the explanation record wraps it with provenance."""

    model_config = ConfigDict(frozen=True)

    outcome: Outcome
    criteria: list[CriterionResult]
    outputs: dict[str, JsonScalar] | None
    reasons: list[Reason]
    evaluator: Literal["durable_rules", "reference"]

    @property
    def failed(self) -> list[str]:
        return [c.id for c in self.criteria if c.status is CriterionStatus.FAIL]

    @property
    def unknown(self) -> list[str]:
        return [c.id for c in self.criteria if c.status is CriterionStatus.UNKNOWN]


def application_env(
    *,
    application_date: dt.date,
    id_number: str,
    name: str,
    form: Mapping[str, object],
    evidence: Mapping[str, Mapping[str, object] | None],
) -> dict[str, object]:
    """The flat name → value map conditions read. Missing evidence simply has no entries."""
    env: dict[str, object] = {
        "application.date": application_date,
        "applicant.id_number": id_number,
        "applicant.name": name,
    }
    for k, v in form.items():
        if v is not None:
            env[f"form.{k}"] = v
    for eid, values in evidence.items():
        for k, v in (values or {}).items():
            if v is not None:
                env[f"{eid}.{k}"] = v
    return env


def _json_value(v: object) -> JsonScalar:
    if v is MISSING or v is None:
        return None
    if isinstance(v, dt.date):
        return v.isoformat()
    if isinstance(v, str | int | float | bool):
        return v
    return str(v)


def evaluate(
    ruleset: Ruleset,
    env: Mapping[str, object],
    *,
    evaluator: Literal["durable_rules", "reference"] = "durable_rules",
) -> Evaluation:
    """Decide every criterion and the outputs for ``env``.

    With ``durable_rules`` the Rete engine fires the pass/fail/row rules; ``reference`` is the
    plain-Python Kleene evaluator the engine is tested against. An engine fault never
    becomes a rejection: the outcome is REFERRED with ``ENGINE_FAULT``.
    """
    tables = ruleset.tables
    n = len(ruleset.criteria)
    statuses: list[CriterionStatus] = []
    hits: list[int] = []
    fault: str | None = None
    if evaluator == "durable_rules":
        try:
            fired = get_engine().fire(
                ruleset.engine_name, ruleset.compiled.definition, ruleset.compiled.fact(env, tables)
            )
            passed, failed = set(), set()
            for rule in fired:
                ref = ruleset.compiled.rules[rule]
                if ref.kind == "pass":
                    passed.add(ref.index)
                elif ref.kind == "fail":
                    failed.add(ref.index)
                else:
                    hits.append(ref.index)
            both = passed & failed
            if both:
                raise EngineFault(f"criteria both passed and failed: {sorted(both)}")
            statuses = [
                CriterionStatus.PASS
                if i in passed
                else CriterionStatus.FAIL
                if i in failed
                else CriterionStatus.UNKNOWN
                for i in range(n)
            ]
            hits = sorted(set(hits))
        except EngineFault as exc:
            fault = str(exc)
            statuses = [CriterionStatus.UNKNOWN] * n
            hits = []
    else:
        for crit in ruleset.criteria:
            t = truth(crit.condition, env, tables)
            statuses.append(
                CriterionStatus.UNKNOWN
                if t is None
                else CriterionStatus.PASS
                if t
                else CriterionStatus.FAIL
            )
        hits = [i for i, row in enumerate(ruleset.rows) if truth(row, env, tables) is True]

    results: list[CriterionResult] = []
    reasons: list[Reason] = []
    docs = ruleset.doc.criteria
    for crit, status in zip(ruleset.criteria, statuses, strict=True):
        doc = docs[crit.index]
        values = []
        for term, text in zip(crit.terms, crit.term_texts, strict=True):
            v = value(term, env, tables)
            values.append(
                ComparedValue(expression=text, value=_json_value(v), missing=v is MISSING)
            )
        missing = [name for name in crit.names if env.get(name, MISSING) is MISSING]
        reason_zh = reason_en = None
        if status is not CriterionStatus.PASS:
            reason_zh = crit.reason_zh.render(env, tables, lang="zh")
            reason_en = crit.reason_en.render(env, tables, lang="en")
        if status is CriterionStatus.FAIL:
            code = (
                ReasonCode.CRITERION_NOT_MET
                if doc.on_fail == "reject"
                else ReasonCode.CRITERION_NEEDS_REVIEW
            )
            reasons.append(
                Reason(
                    code=code,
                    criterion=doc.id,
                    message_zh=reason_zh or "",
                    message_en=reason_en or "",
                )
            )
        elif status is CriterionStatus.UNKNOWN and fault is None:
            reasons.append(
                Reason(
                    code=ReasonCode.FACT_UNKNOWN,
                    criterion=doc.id,
                    message_zh=f"{doc.title.zh}：缺少或无法核验所需数据（{'、'.join(missing) or '—'}），转人工审核。",
                    message_en=f"{doc.title.en}: required data missing or unverifiable ({', '.join(missing) or '-'}); referred to a person.",
                )
            )
        results.append(
            CriterionResult.model_construct(
                id=doc.id,
                title_zh=doc.title.zh,
                title_en=doc.title.en,
                status=status,
                on_fail=doc.on_fail,
                legal_basis=list(doc.legal_basis),
                condition=crit.condition_text,
                values=values,
                missing_facts=missing,
                reason_zh=reason_zh,
                reason_en=reason_en,
            )
        )
    if fault is not None:
        reasons.append(
            Reason(
                code=ReasonCode.ENGINE_FAULT,
                message_zh="规则引擎内部错误，转人工审核。",
                message_en=f"Rule engine fault; referred to a person. ({fault})",
            )
        )

    unknown = any(s is CriterionStatus.UNKNOWN for s in statuses)
    refer = any(
        s is CriterionStatus.FAIL and docs[c.index].on_fail == "refer"
        for c, s in zip(ruleset.criteria, statuses, strict=True)
    )
    reject = any(
        s is CriterionStatus.FAIL and docs[c.index].on_fail == "reject"
        for c, s in zip(ruleset.criteria, statuses, strict=True)
    )
    outputs: dict[str, JsonScalar] | None = None
    if unknown or refer or fault is not None:
        outcome = Outcome.REFERRED
    elif reject:
        outcome = Outcome.REJECTED
    else:
        outcome = Outcome.APPROVED
        table = ruleset.doc.outputs
        if table is not None:
            if not hits:
                outcome = Outcome.REFERRED
                reasons.append(
                    Reason(
                        code=ReasonCode.OUTPUT_NO_MATCH,
                        message_zh=f"{table.title.zh}：决策表无匹配行，转人工审核。",
                        message_en=f"{table.title.en}: no row of the decision table matches; referred to a person.",
                    )
                )
            elif table.hit_policy == "UNIQUE" and len(hits) > 1:
                outcome = Outcome.REFERRED
                reasons.append(
                    Reason(
                        code=ReasonCode.OUTPUT_AMBIGUOUS,
                        message_zh=f"{table.title.zh}：决策表有多行匹配（{hits}），转人工审核。",
                        message_en=f"{table.title.en}: rows {hits} all match under hit policy UNIQUE; referred to a person.",
                    )
                )
            else:
                outputs = dict(table.rules[hits[0]].then)
    return Evaluation(
        outcome=outcome, criteria=results, outputs=outputs, reasons=reasons, evaluator=evaluator
    )
