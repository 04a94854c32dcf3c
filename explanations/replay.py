"""Replaying a record: the recorded ruleset version and evidence must give the same decision."""

from __future__ import annotations

from dataclasses import dataclass

from engine import Ruleset, application_env, evaluate
from engine.registries import convert_text
from explanations.minimise import evidence_for_replay
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
            type_name = spec.fields.get(k, "string")
            if isinstance(v, str) and type_name != "string":
                values[k] = convert_text(v, type_name)
            elif v is not None:
                values[k] = v
        values.update(evidence_for_replay(item, record.application_date))
        evidence[item.id] = values
    # Version 4 keeps only the fields the rules read; those used only to ask a registry are
    # pseudonyms (no rule reads them): they are not validated against the form's types.
    pseudonyms = {f.removeprefix("form.") for f in record.masked_fields if f.startswith("form.")}
    raw_form = {k: v for k, v in record.form.items() if v is not None and k not in pseudonyms}
    try:
        form = ruleset.partial_form_model.model_validate(raw_form).model_dump()
    except ValueError:  # a record the current model cannot read: compare on what it holds
        form = raw_form
    form.update({k: record.form[k] for k in pseudonyms if k in record.form})
    env = application_env(
        application_date=record.application_date,
        id_number=record.applicant.id_number,
        name=record.applicant.name,
        form=form,
        evidence=evidence,
    )
    result = evaluate(ruleset, env, evaluator=record.engine.evaluator)
    diffs: list[str] = []
    if result.outcome != record.outcome:
        diffs.append(f"outcome {result.outcome} != recorded {record.outcome}")
    if result.outputs != record.outputs:
        diffs.append(f"outputs {result.outputs} != recorded {record.outputs}")
    for got, want in zip(result.criteria, record.criteria, strict=False):
        compared = [(v.expression, v.value, v.missing) for v in got.values]
        recorded = [(v.expression, v.value, v.missing) for v in want.values]
        if got.status != want.status or compared != recorded:
            diffs.append(f"criterion {want.id}: {got.status} != recorded {want.status}")
    recorded_values = {v.name: v.value for v in record.values}
    for computed in result.values:
        recorded_value = recorded_values.get(computed.name)
        if record.values and recorded_value != computed.value:
            diffs.append(
                f"value {computed.name}: {computed.value!r} != recorded {recorded_value!r}"
            )
    return ReplayResult(not diffs, diffs)
