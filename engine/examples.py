"""Running the named examples (``tests:``) a ruleset carries: the policy office's own test suite."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation

import pydantic

from engine.decision import Evaluation, application_env, evaluate
from engine.model import Approx, Example
from engine.registries import convert_text
from engine.ruleset import Ruleset

__all__ = ["ExampleResult", "run_example", "run_examples"]


@dataclass(frozen=True)
class ExampleResult:
    name: str
    ok: bool
    problems: list[str] = field(default_factory=list)
    evaluation: Evaluation | None = None


def _coerce_evidence(ruleset: Ruleset, eid: str, values: Mapping[str, object]) -> dict[str, object]:
    """Test evidence as the registry would give it: typed values, ``null`` as missing."""
    spec = next(e for e in ruleset.doc.evidence if e.id == eid)
    out: dict[str, object] = {}
    for k, v in values.items():
        type_name = spec.fields.get(k, "string")
        if v is None:
            continue
        if isinstance(v, str) and type_name != "string":
            out[k] = convert_text(v, type_name)
        else:
            out[k] = v
    return out


def _as_decimal(v: object) -> Decimal | None:
    if isinstance(v, bool) or v is None:
        return None
    if isinstance(v, int | Decimal):
        return Decimal(v)
    if isinstance(v, str):
        try:
            return Decimal(v)
        except InvalidOperation:
            return None
    return None


def _matches(expected: object, got: object, tolerance: Decimal | None, type_name: str) -> bool:
    """Whether a recorded (JSON) value meets an expectation; numbers compare exactly, or
    within ``tolerance``."""
    if isinstance(expected, Approx):
        g = _as_decimal(got)
        return g is not None and abs(g - expected.value) <= expected.tolerance
    if isinstance(expected, list):
        return (
            isinstance(got, list)
            and len(got) == len(expected)
            and all(
                _matches(e, g, tolerance, type_name) for e, g in zip(expected, got, strict=True)
            )
        )
    if expected is None or got is None:
        return expected is None and got is None
    if isinstance(expected, bool) or isinstance(got, bool):
        return expected == got
    if isinstance(expected, dt.date):
        return expected.isoformat() == got
    e, g = _as_decimal(expected), _as_decimal(got)
    numeric = type_name in ("integer", "number") or isinstance(expected, int | Decimal)
    if numeric and e is not None and g is not None:
        return abs(e - g) <= (tolerance or 0)
    return expected == got


def _shown(v: object) -> str:
    """An expectation or a result as the policy officer wrote it (no Python reprs)."""
    if isinstance(v, Approx):
        return f"{v.value} ± {v.tolerance}"
    if isinstance(v, dt.date):
        return v.isoformat()
    if isinstance(v, Decimal | int) and not isinstance(v, bool):
        return str(v)
    if isinstance(v, bool):
        return "true" if v else "false"
    if v is None:
        return "null（无结果 / nothing）"
    if isinstance(v, list):
        return "[" + ", ".join(_shown(i) for i in v) + "]"
    return str(v)


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
    try:
        evidence = {
            eid: (_coerce_evidence(ruleset, eid, vals) if vals is not None else None)
            for eid, vals in example.evidence.items()
        }
    except ValueError as exc:  # refused at validate time; kept here for rulesets built in code
        return ExampleResult(example.name, False, [f"evidence invalid: {exc}"])
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
        types = {c.name: c.type for c in ruleset.outputs.columns} if ruleset.outputs else {}
        for k, v in exp.outputs.items():
            if not _matches(v, got.get(k), exp.tolerance, types.get(k, "")):
                problems.append(
                    f"output {k}: expected {_shown(v)}, got {_shown(got.get(k))}"
                    + (f" (tolerance {exp.tolerance})" if exp.tolerance is not None else "")
                )
    if exp.values is not None:
        got_values = {v.name: v.value for v in result.values}
        value_types = {v.name: v.type for v in ruleset.values}
        for k, v in exp.values.items():
            if not _matches(v, got_values.get(k), exp.tolerance, value_types.get(k, "")):
                problems.append(
                    f"value {k}: expected {_shown(v)}, got {_shown(got_values.get(k))}"
                    + (f" (tolerance {exp.tolerance})" if exp.tolerance is not None else "")
                )
    if (result.outcome, result.failed, result.unknown, result.outputs, result.output_rules) != (
        reference.outcome,
        reference.failed,
        reference.unknown,
        reference.outputs,
        reference.output_rules,
    ):
        problems.append("durable_rules and the reference evaluator disagree")
    return ExampleResult(example.name, not problems, problems, result)


def run_examples(ruleset: Ruleset) -> list[ExampleResult]:
    return [run_example(ruleset, ex) for ex in ruleset.doc.tests]
