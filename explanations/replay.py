"""Replaying a record: the recorded ruleset version and evidence must give the same decision."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from engine import Ruleset, application_env, evaluate
from explanations.record import ExplanationRecordV1

__all__ = ["ReplayResult", "replay"]


@dataclass(frozen=True)
class ReplayResult:
    identical: bool
    differences: list[str]


def replay(record: ExplanationRecordV1, ruleset: Ruleset) -> ReplayResult:
    """Re-decide from the record alone; list every difference from what was recorded."""
    if ruleset.content_hash != record.ruleset_hash:
        return ReplayResult(
            False,
            [f"ruleset hash {ruleset.content_hash} is not the recorded {record.ruleset_hash}"],
        )
    evidence: dict[str, dict[str, object] | None] = {}
    for item in record.evidence:
        if item.status != "found":
            evidence[item.id] = None
            continue
        spec = next(e for e in ruleset.doc.evidence if e.id == item.id)
        values: dict[str, object] = {}
        for k, v in item.values.items():
            if v is not None and spec.fields.get(k) == "date":
                values[k] = dt.date.fromisoformat(str(v))
            elif v is not None:
                values[k] = v
        evidence[item.id] = values
    env = application_env(
        application_date=record.application_date,
        id_number=record.applicant.id_number,
        name=record.applicant.name,
        form={k: v for k, v in record.form.items()},
        evidence=evidence,
    )
    result = evaluate(ruleset, env, evaluator=record.engine.evaluator)
    diffs: list[str] = []
    if result.outcome != record.outcome:
        diffs.append(f"outcome {result.outcome} != recorded {record.outcome}")
    if result.outputs != record.outputs:
        diffs.append(f"outputs {result.outputs} != recorded {record.outputs}")
    for got, want in zip(result.criteria, record.criteria, strict=False):
        if got.status != want.status or got.values != want.values:
            diffs.append(f"criterion {want.id}: {got.status} != recorded {want.status}")
    return ReplayResult(not diffs, diffs)
