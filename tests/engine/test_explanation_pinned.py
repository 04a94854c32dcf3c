"""Decisions and their explanations are byte-identical to those pinned before the engine was
made faster: every shipped sample's record, the first bulk applications' records, and every
named example of every shipped ruleset on both evaluators.

The pins are the SHA-256 of canonical JSON (sorted keys, no whitespace), with a fixed clock,
decision id and pseudonym key; the only measured quantity in a record (each evidence item's
``elapsed_ms``) is set to 0 first. A deliberate change of what a record holds re-pins with
``MIAOPI_WRITE_PINS=1`` (and says why in its commit); an optimisation never does.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from helpers_engine import catalog
from pydantic import TypeAdapter

from api.service import DecisionRequest, DecisionService
from engine.dates import anniversary
from engine.decision import Evaluation, application_env, evaluate
from engine.examples import _coerce_evidence
from explanations.record import canonical_json

PINS = Path(__file__).parent / "fixtures" / "pinned_explanations.json"
WRITE = os.environ.get("MIAOPI_WRITE_PINS") == "1"
CLOCK = dt.datetime(2026, 3, 2, 1, 30, tzinfo=dt.UTC)
BULK = 300
_EVALUATION = TypeAdapter(Evaluation)


def _sha(data: object) -> str:
    return hashlib.sha256(canonical_json(data).encode("utf-8")).hexdigest()


def _record_sha(service: DecisionService, body: dict[str, Any]) -> str:
    """The pinned digest of the record of one request, decided now (timings zeroed)."""
    decided = service.decide_prepared(service.prepare(DecisionRequest.model_validate(body)))
    record = service.build_record(decided, decision_id="pinned", seq=0, prev_hash="")
    data = record.model_dump(mode="json")
    for item in data["evidence"]:
        item["elapsed_ms"] = 0
    return _sha(data)


@cache
def _pins() -> dict[str, dict[str, str]]:
    return dict(json.loads(PINS.read_text(encoding="utf-8")))


def _unlike_pins(section: str, got: dict[str, str]) -> dict[str, tuple[str | None, str | None]]:
    """Each key whose digest is not the pinned one (pinned, got); with MIAOPI_WRITE_PINS=1 the
    section is written instead and the test skipped."""
    if WRITE:
        pins = json.loads(PINS.read_text(encoding="utf-8")) if PINS.exists() else {}
        pins[section] = got
        PINS.write_text(
            json.dumps(pins, indent=1, sort_keys=True, ensure_ascii=False) + "\n",
            encoding="utf-8",
        )
        pytest.skip(f"wrote the {section} pins")
    want = _pins()[section]
    return {k: (want.get(k), got.get(k)) for k in {*want, *got} if want.get(k) != got.get(k)}


@pytest.fixture
def pinned_service(
    make_service: Callable[[str | None], DecisionService],
) -> DecisionService:
    service = make_service(None)
    service.clock = lambda: CLOCK
    return service


def test_every_shipped_sample_record_is_as_pinned(
    pinned_service: DecisionService, demo_samples: dict[str, Any]
) -> None:
    """Each shipped sample's explanation record (criteria, values, reasons, counterfactuals…)."""
    got = {name: _record_sha(pinned_service, s.body) for name, s in demo_samples.items()}
    assert {} == _unlike_pins("sample_records", got)


def test_bulk_application_records_are_as_pinned(
    pinned_service: DecisionService, bulk_bodies: list[dict[str, Any]]
) -> None:
    """The records of the first bulk applications (every outcome, both talent versions)."""
    got = {b["application_id"]: _record_sha(pinned_service, b) for b in bulk_bodies[:BULK]}
    assert {} == _unlike_pins("bulk_records", got)


def test_bulk_evaluations_a_year_later_are_as_pinned(
    pinned_service: DecisionService, bulk_bodies: list[dict[str, Any]]
) -> None:
    """The same bulk facts one year later, decided by the 2026 talent rules (the benchmark's)."""
    later = catalog().get("talent-housing-subsidy", "2026")
    assert later is not None
    got: dict[str, str] = {}
    for body in bulk_bodies[:BULK]:
        prepared = pinned_service.prepare(DecisionRequest.model_validate(body))
        env = dict(pinned_service.decide_prepared(prepared).env)
        env["application.date"] = anniversary(prepared.application_date, 1)
        for evaluator in ("durable_rules", "reference"):
            ev = evaluate(later, env, evaluator=evaluator)  # type: ignore[arg-type]
            got[f"{body['application_id']} {evaluator}"] = _sha(
                _EVALUATION.dump_python(ev, mode="json")
            )
    assert {} == _unlike_pins("bulk_evaluations_2026", got)


def test_every_named_example_evaluation_is_as_pinned() -> None:
    """Each named example of each shipped ruleset, on durable_rules and on the reference."""
    got: dict[str, str] = {}
    for ruleset in catalog():
        for example in ruleset.doc.tests:
            app = example.application
            applicant = app.get("applicant") or {}
            assert isinstance(applicant, dict)
            raw_date = app["date"]
            env = application_env(
                application_date=raw_date
                if isinstance(raw_date, dt.date)
                else dt.date.fromisoformat(str(raw_date)),
                id_number=str(applicant.get("id_number", "")),
                name=str(applicant.get("name", "")),
                form=ruleset.form_model.model_validate(app.get("form") or {}).model_dump(),
                evidence={
                    eid: None if vals is None else _coerce_evidence(ruleset, eid, vals)
                    for eid, vals in example.evidence.items()
                },
            )
            for evaluator in ("durable_rules", "reference"):
                ev = evaluate(ruleset, env, evaluator=evaluator)  # type: ignore[arg-type]
                got[f"{ruleset.key} {evaluator}: {example.name}"] = _sha(
                    _EVALUATION.dump_python(ev, mode="json")
                )
    assert {} == _unlike_pins("example_evaluations", got)
