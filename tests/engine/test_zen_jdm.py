"""The JDM graph scripts/zen_jdm.py generates decides as our engine does, on zen-engine.

The engine benchmark (scripts/bench_engine.py) compares our decision with zen-engine's on
that graph; the comparison means something only if both decide the same. zen-engine comes
with the ``bench`` extra (part of ``dev``).
"""

from __future__ import annotations

import datetime as dt
import importlib.util
import json
import random
import sys
from collections.abc import Callable, Iterable, Mapping
from decimal import Decimal
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from helpers_engine import catalog, random_application
from helpers_v2 import cases, env_of, fixture
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from api.service import DecisionRequest, DecisionService
from engine import Evaluation, Ruleset, evaluate
from engine.dates import anniversary
from engine.decision import application_env
from engine.examples import _coerce_evidence, run_examples

zen = pytest.importorskip("zen", reason="zen-engine comes with the bench extra")
SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "zen_jdm.py"


@cache
def jdm() -> ModuleType:
    """scripts/zen_jdm.py (a script, not a package), imported once."""
    spec = importlib.util.spec_from_file_location("zen_jdm", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["zen_jdm"] = module
    spec.loader.exec_module(module)
    return module


_DECISIONS: dict[str, Any] = {}


def zen_decide(ruleset: Ruleset, env: Mapping[str, object]) -> tuple[str, dict[str, str], Any]:
    """zen-engine's outcome, criterion statuses and outputs on the generated graph (traced)."""
    decision = _DECISIONS.get(ruleset.engine_name)
    if decision is None:
        graph = json.dumps(jdm().to_jdm(ruleset), ensure_ascii=False)
        decision = _DECISIONS[ruleset.engine_name] = zen.ZenEngine().create_decision(graph)
    result = decision.evaluate(jdm().zen_context(env), {"trace": True})
    assert result["trace"], "the trace was asked for"
    outcome, criteria, outputs = jdm().zen_decision(result)
    return str(outcome), criteria, outputs


def both(
    ruleset: Ruleset, env: Mapping[str, object], ours: Evaluation | None = None
) -> tuple[tuple[object, ...], tuple[object, ...]]:
    """How we and zen decide ``env``: outcome, every criterion's status and the amounts."""
    ours = ours or evaluate(ruleset, env)
    outcome, criteria, outputs = zen_decide(ruleset, env)
    types = ruleset.outputs.column_types if ruleset.outputs is not None else {}

    def shown(values: Mapping[str, object] | None) -> dict[str, object] | None:
        if ours.outputs is None or values is None:
            return None
        return {
            k: Decimal(str(v)) if types[k] in ("integer", "number") and v is not None else v
            for k, v in values.items()
        }

    mine = (ours.outcome.value, {c.id: c.status.value for c in ours.criteria}, shown(ours.outputs))
    return mine, (outcome, criteria, shown(outputs))


def disagreements(cases: Iterable[tuple[Ruleset, Mapping[str, object]]]) -> list[object]:
    """Every case zen decides otherwise than we do, with both answers."""
    return [(ours, zen) for rs, env in cases for ours, zen in [both(rs, env)] if ours != zen]


@pytest.mark.parametrize("key", [rs.key for rs in catalog()])
def test_every_shipped_ruleset_translates_and_zen_decides_its_examples_alike(key: str) -> None:
    """Each named example of each shipped ruleset (every service), decided by zen-engine."""
    ruleset = next(rs for rs in catalog() if rs.key == key)
    results = run_examples(ruleset)
    assert results
    for example, result in zip(ruleset.doc.tests, results, strict=True):
        assert result.evaluation is not None
        ours, zen = both(ruleset, example_env(ruleset, example), result.evaluation)
        assert ours == zen, example.name


def example_env(ruleset: Ruleset, example: Any) -> dict[str, object]:
    """The facts of a named example, as ``run_examples`` builds them."""
    app = example.application
    applicant = app.get("applicant") or {}
    day = app["date"]
    return application_env(
        application_date=day if isinstance(day, dt.date) else dt.date.fromisoformat(str(day)),
        id_number=str(applicant.get("id_number", "")),
        name=str(applicant.get("name", "")),
        form=ruleset.form_model.model_validate(app.get("form") or {}).model_dump(),
        evidence={
            eid: None if v is None else _coerce_evidence(ruleset, eid, v)
            for eid, v in example.evidence.items()
        },
    )


def test_zen_decides_the_bulk_applications_alike_in_both_talent_versions(
    make_service: Callable[[str | None], DecisionService], bulk_bodies: list[dict[str, Any]]
) -> None:
    """The first 300 bulk applications as submitted (2016 rules), and their facts a year
    later (2026 rules): what the benchmark times."""
    service = make_service(None)
    later = catalog().get("talent-housing-subsidy", "2026")
    assert later is not None
    cases: list[tuple[Ruleset, Mapping[str, object]]] = []
    for body in bulk_bodies[:300]:
        prepared = service.prepare(DecisionRequest.model_validate(body))
        env = service.decide_prepared(prepared).env
        cases.append((prepared.ruleset, env))
        cases.append(
            (later, {**env, "application.date": anniversary(prepared.application_date, 1)})
        )
    assert [] == disagreements(cases)


def test_zen_decides_varied_talent_applications_alike() -> None:
    """Records and fields missing, ages and dates around their boundaries (29 February)."""
    rng = random.Random(8)
    talent = [rs for rs in catalog() if rs.service == "talent-housing-subsidy"]
    cases = [(rs, random_application(rng, rs).env()) for rs in talent for _ in range(300)]
    assert [] == disagreements(cases)


@pytest.mark.parametrize("name", ["exact", "outputs-first"])
@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_zen_decides_the_translatable_v2_fixtures_alike(name: str, data: st.DataObject) -> None:
    """Exact decimals, rounding, functions and a FIRST table, inputs missing at random."""
    case = data.draw(cases(name))
    ours, zen = both(fixture(name), env_of(case.day, case.partial))
    assert ours == zen
