"""Only verified facts decide: every mix of adapter outcomes, on every shipped sample.

Each registry answers, per case, with one outcome drawn from the closed set: its real answer,
"no record" (as that registry would say it), or a failure (ERROR, TIMEOUT, MALFORMED,
CIRCUIT_OPEN, QUOTA_EXHAUSTED). The decision path is the real one (DecisionService, the
rulesets, the engine); only what the registries say is chosen.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapters.base import Adapter, AdapterFailure, ClaimValues, Lookup, LookupMode
from api.service import DecisionRequest, DecisionService
from engine import RulesetCatalog
from engine.registries import RegistryCatalogue
from explanations import ExplanationRecordV1

FAILURES = ("ERROR", "TIMEOUT", "MALFORMED", "CIRCUIT_OPEN", "QUOTA_EXHAUSTED")
OUTCOMES = ("real", "not_found", *FAILURES)
VERIFIED = {"FOUND", "MATCH", "NO_MATCH"}


class Scripted:
    """A registry that answers as told for this case: really, "no record", or a failure."""

    in_memory = True

    def __init__(self, real: Adapter, negative: bool) -> None:
        self.real = real
        self.source = real.source
        self.version = real.version
        self.negative = negative
        self.outcome = "real"

    @property
    def fields(self) -> Mapping[str, str]:
        return self.real.fields

    def supports(self, mode: LookupMode) -> bool:
        return self.real.supports(mode)

    def lookup(
        self,
        key: Mapping[str, object],
        *,
        fields: Sequence[str],
        mode: LookupMode,
        claims: Mapping[str, ClaimValues | None] | None = None,
        now: dt.datetime,
    ) -> Lookup:
        answer = self.real.lookup(key, fields=fields, mode=mode, claims=claims, now=now)
        if self.outcome == "real":
            return answer
        if self.outcome == "not_found":
            # what this registry says for a key it does not hold: for an authoritative
            # (negative) registry every verify answer is "no"
            values = {f: False for f in fields} if mode == "verify" and self.negative else {}
            return answer.model_copy(update={"status": "not_found", "values": values})
        raise AdapterFailure(code=self.outcome, message=f"scripted {self.outcome}")


@pytest.fixture(scope="module")
def cases(demo_samples: dict, bulk_bodies: list[dict[str, Any]]) -> list[DecisionRequest]:
    bodies = [s.body for s in demo_samples.values()] + bulk_bodies[:60]
    return [DecisionRequest.model_validate(b) for b in bodies]


@pytest.fixture(scope="module")
def scripted_service(
    ruleset_catalog: RulesetCatalog,
    demo_registries: dict[str, Adapter],
    registry_catalogue: RegistryCatalogue,
) -> Any:
    scripted = {
        rid: Scripted(adapter, registry_catalogue.get(rid).no_record == "negative")  # type: ignore[union-attr]
        for rid, adapter in demo_registries.items()
    }
    service = DecisionService(
        catalog=ruleset_catalog,
        adapters=scripted,
        registries=registry_catalogue,
        store=None,
        pseudonym_key="tests-fail-safe",
    )
    yield service, scripted
    service.close()


def _verified(record: ExplanationRecordV1, negative: set[str]) -> dict[str, bool]:
    """Per evidence item: did it give a verified answer?"""
    return {
        e.id: (e.outcome in VERIFIED) or (e.outcome == "NOT_FOUND" and e.source in negative)
        for e in record.evidence
    }


@settings(
    max_examples=10_000,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(data=st.data())
def test_only_verified_facts_reject_or_approve(
    data: st.DataObject,
    cases: list[DecisionRequest],
    scripted_service: Any,
    ruleset_catalog: RulesetCatalog,
    registry_catalogue: RegistryCatalogue,
) -> None:
    """REJECTED only when every fact behind each failed ``reject`` criterion was verified;
    APPROVED only when every fact was verified; every failure named in a reason."""
    service, scripted = scripted_service
    request = data.draw(st.sampled_from(cases), label="application")
    for rid in sorted(scripted):
        scripted[rid].outcome = data.draw(st.sampled_from(OUTCOMES), label=rid)
    _, record = service.decide_unstored(request)
    negative = {s.id for s in registry_catalogue if s.no_record == "negative"}
    verified = _verified(record, negative)
    if record.outcome.value == "APPROVED":
        assert all(verified.values()), {e.id: e.outcome for e in record.evidence}
    if record.outcome.value == "REJECTED":
        ruleset = ruleset_catalog.get(record.service, record.ruleset_version)
        assert ruleset is not None
        checked = {c.id: c for c in ruleset.criteria}
        for c in record.criteria:
            if c.status.value == "FAIL" and c.on_fail == "reject":
                needs = {f.split(".", 1)[0] for f in checked[c.id].facts}
                unverified = [e for e in needs if e in verified and not verified[e]]
                assert not unverified, (c.id, unverified)
    for e in record.evidence:
        if e.outcome in FAILURES:
            assert any(r.evidence == e.id and r.outcome == e.outcome for r in record.reasons), e.id
