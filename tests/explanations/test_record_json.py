"""The record the decision path stores is written as JSON directly (``record_json``), not
built as a model and dumped: it must be, byte for byte, the model's dump."""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest

from api.service import Decided, DecisionRequest, DecisionService
from engine import Outcome
from engine.decision import CriterionStatus
from explanations.record import (
    Chained,
    ExplanationRecordV1,
    NotPlain,
    Unsealed,
    canonical_json_bytes_of_dump,
    plain,
)
from tests.conftest import DemoSample

PREV = "sha256:" + "7" * 64


def _decisions(
    service: DecisionService,
    samples: dict[str, DemoSample],
    bulk: list[dict[str, Any]],
) -> list[Decided]:
    bodies = [s.body for s in samples.values()] + bulk[:400]
    return [
        service.decide_prepared(service.prepare(DecisionRequest.model_validate(b))) for b in bodies
    ]


def test_the_written_record_is_the_models_dump(
    make_service: Callable[[str | None], DecisionService],
    demo_samples: dict[str, DemoSample],
    bulk_bodies: list[dict[str, Any]],
) -> None:
    """Every shipped sample (every service, every outcome, counterfactuals, referrals,
    decision tables, parameters) and 400 bulk applications: the same data, the same canonical
    text, and the same model when read back."""
    service = make_service(None)
    decisions = _decisions(service, demo_samples, bulk_bodies)
    services = {d.prepared.ruleset.service for d in decisions}
    outcomes = {d.evaluation.outcome for d in decisions}
    assert len(services) >= 4 and outcomes == set(Outcome)
    assert any(c.status is CriterionStatus.FAIL for d in decisions for c in d.evaluation.criteria)
    for decided in decisions:
        model = service.build_record(decided, decision_id="d-1", seq=0, prev_hash="")
        expected = model.model_dump(mode="json", exclude={"record_hash"})
        written = service.record_json(decided, decision_id="d-1")
        assert expected == written
        assert canonical_json_bytes_of_dump(expected) == canonical_json_bytes_of_dump(written)
        assert ExplanationRecordV1.model_validate(written) == model


def test_a_written_record_seals_as_its_model_does(
    make_service: Callable[[str | None], DecisionService],
    demo_samples: dict[str, DemoSample],
    bulk_bodies: list[dict[str, Any]],
) -> None:
    """The chained text, the response and the row fields are those of the model's sealing;
    the model itself is still there for whoever asks."""
    service = make_service(None)
    for decided in _decisions(service, demo_samples, bulk_bodies[:50]):
        model = service.build_record(decided, decision_id="d-2", seq=0, prev_hash="")
        want, want_body, want_response = Unsealed(model).seal(12, PREV)
        dumped = Unsealed.of_dump(
            service.record_json(decided, decision_id="d-2"), decided_at=decided.decided_at
        )
        got, body, response = dumped.seal(12, PREV)
        assert isinstance(got, Chained) and isinstance(want, ExplanationRecordV1)
        assert (body, response) == (want_body, want_response)
        assert (got.seq, got.prev_hash, got.record_hash) == (12, PREV, want.record_hash)
        assert (got.decision_id, got.outcome, got.decided_at) == (
            want.decision_id,
            want.outcome,
            want.decided_at,
        )
        assert dumped.record == model
        unchained = dumped.unchained()
        assert unchained is not None and unchained.outcome is model.outcome


@pytest.mark.parametrize(
    "value",
    [math.nan, math.inf, -math.inf, Decimal("1.5"), dt.date(2025, 1, 1), Outcome.APPROVED, b"x"],
)
def test_plain_refuses_what_pydantic_may_write_otherwise(value: object) -> None:
    with pytest.raises(NotPlain):
        plain(value)


def test_a_value_only_the_model_writes_right_falls_back_to_the_model(
    make_service: Callable[[str | None], DecisionService],
    demo_samples: dict[str, DemoSample],
) -> None:
    """An answer time that is not finite is written by pydantic's rules (the model path),
    never guessed at by the hand-written one."""
    service = make_service(None)
    sample = next(iter(demo_samples.values()))
    prepared = service.prepare(DecisionRequest.model_validate(sample.body))
    decided = service.decide_prepared(prepared)
    decided.evidence[0] = decided.evidence[0].model_copy(update={"elapsed_ms": math.inf})
    with pytest.raises(NotPlain):
        service.record_json(decided, decision_id="d-3")
    model = service.build_record(decided, decision_id="d-3", seq=0, prev_hash="")
    assert Unsealed(model).seal(1, PREV)[1]  # the model's way still writes it


class _Down:
    """A registry that fails every call, as an unreachable one does."""

    in_memory = True

    def lookup(self, *_args: object, **_kwargs: object) -> object:
        raise TimeoutError("the registry did not answer")


def test_evidence_items_equal_validated_ones(
    make_service: Callable[[str | None], DecisionService],
    demo_samples: dict[str, DemoSample],
    bulk_bodies: list[dict[str, Any]],
) -> None:
    """The decision path builds evidence items without validation: each equals the item
    pydantic validates from the same fields, and records the same fields as given. Found,
    not found, skipped, failed and unavailable registries all included."""
    from explanations.record import EvidenceItem

    service = make_service(None)
    items = [e for d in _decisions(service, demo_samples, bulk_bodies) for e in d.evidence]
    sources = sorted(service.adapters)
    service.adapters[sources[0]] = _Down()  # type: ignore[assignment]
    del service.adapters[sources[1]]
    items += [e for d in _decisions(service, demo_samples, bulk_bodies[:100]) for e in d.evidence]
    assert {e.status for e in items} == {"found", "not_found", "error", "skipped"}
    assert {"ERROR", "FOUND", "NOT_FOUND"} <= {e.outcome for e in items}
    fields = set(EvidenceItem.model_fields) - {"ages"}  # what gathering gives (as arguments)
    for item in items:
        validated = EvidenceItem.model_validate({k: getattr(item, k) for k in fields})
        assert validated == item
        assert fields == validated.model_fields_set == item.model_fields_set
        assert validated.model_dump(mode="json") == item.model_dump(mode="json")
