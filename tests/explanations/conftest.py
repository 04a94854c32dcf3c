"""Fixtures for the explanation tests: shipped samples decided on a pinned clock, the guides."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from adapters.base import Adapter
from api.service import DecisionRequest, DecisionService
from engine import RulesetCatalog
from engine.registries import RegistryCatalogue
from explanations.guide import ServiceGuide, load_guides
from explanations.record import ExplanationRecordV1

DECIDED_AT = dt.datetime(2026, 3, 6, 2, 0, tzinfo=dt.UTC)
"""The clock of ``decide``: 2026-03-06 10:00 in Beijing."""


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database: a SQLite file, or a fresh PostgreSQL schema."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/store.db"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture(scope="module")
def decide(
    ruleset_catalog: RulesetCatalog,
    demo_registries: dict[str, Adapter],
    registry_catalogue: RegistryCatalogue,
    demo_samples: dict,
) -> Iterator[Callable[[str], ExplanationRecordV1]]:
    """Decide a shipped sample by file name (without storing) at ``DECIDED_AT``."""
    service = DecisionService(
        catalog=ruleset_catalog,
        adapters=demo_registries,
        registries=registry_catalogue,
        store=None,
        pseudonym_key="tests-explanations",
        clock=lambda: DECIDED_AT,
    )
    made: dict[str, ExplanationRecordV1] = {}

    def run(name: str) -> ExplanationRecordV1:
        if name not in made:
            request = DecisionRequest.model_validate(demo_samples[name].body)
            made[name] = service.decide_unstored(request)[1]
        return made[name]

    yield run
    service.close()


@pytest.fixture(scope="module")
def guides(rulesets_dir: Path) -> dict[str, ServiceGuide]:
    """The shipped service guides."""
    loaded, problems = load_guides(rulesets_dir)
    assert [] == problems
    return loaded
