"""Running the named examples (``tests:``) a ruleset carries: the policy office's own test suite."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field

import pydantic

from engine.decision import Evaluation, application_env, evaluate
from engine.model import Example
from engine.ruleset import Ruleset

__all__ = ["ExampleResult", "run_examples"]


@dataclass(frozen=True)
class ExampleResult:
    name: str
    ok: bool
    problems: list[str] = field(default_factory=list)
    evaluation: Evaluation | None = None


def _coerce_evidence(ruleset: Ruleset, eid: str, values: Mapping[str, object]) -> dict[str, object]:
    spec = next(e for e in ruleset.doc.evidence if e.id == eid)
    out: dict[str, object] = {}
    for k, v in values.items():
        if spec.fields.get(k) == "date" and isinstance(v, str):
            out[k] = dt.date.fromisoformat(v)
        else:
            out[k] = v
    return out


def run_example(ruleset: Ruleset, example: Example) -> ExampleResult:
    """Decide one example with both evaluators and compare with what it expects."""
    app = example.application
    problems: list[str] = []
    raw_date = app.get("date")
    day = raw_date if isinstance(raw_date, dt.date) else dt.date.fromisoformat(str(raw_date))
    applicant = app.get("applicant") or {}
    assert isinstance(applicant, dict)
    form_raw = app.get("form") or {}
    try:
        form = ruleset.form_model.model_validate(form_raw).model_dump()
    except pydantic.ValidationError as exc:
        return ExampleResult(example.name, False, [f"form invalid: {exc}"])
    evidence = {
        eid: (_coerce_evidence(ruleset, eid, vals) if vals is not None else None)
        for eid, vals in example.evidence.items()
    }
    env = application_env(
        application_date=day,
        id_number=str(applicant.get("id_number", "")),
        name=str(applicant.get("name", "")),
        form=form,
        evidence=evidence,
    )
    result = evaluate(ruleset, env)
    reference = evaluate(ruleset, env, evaluator="reference")
    exp = example.expect
    if result.outcome != exp.outcome:
        problems.append(f"outcome: expected {exp.outcome}, got {result.outcome}")
    if sorted(result.failed) != sorted(exp.failed):
        problems.append(
            f"failed criteria: expected {sorted(exp.failed)}, got {sorted(result.failed)}"
        )
    if sorted(result.unknown) != sorted(exp.unknown):
        problems.append(
            f"unknown criteria: expected {sorted(exp.unknown)}, got {sorted(result.unknown)}"
        )
    if exp.outputs is not None:
        got = result.outputs or {}
        for k, v in exp.outputs.items():
            if got.get(k) != v:
                problems.append(f"output {k}: expected {v!r}, got {got.get(k)!r}")
    if (result.outcome, result.failed, result.unknown, result.outputs) != (
        reference.outcome,
        reference.failed,
        reference.unknown,
        reference.outputs,
    ):
        problems.append("durable_rules and the reference evaluator disagree")
    return ExampleResult(example.name, not problems, problems, result)


def run_examples(ruleset: Ruleset) -> list[ExampleResult]:
    return [run_example(ruleset, ex) for ex in ruleset.doc.tests]
