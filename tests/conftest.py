"""Fixtures shared by every test folder: demo data, shipped rulesets, services, PostgreSQL.

Tests marked ``slow`` are skipped unless selected with ``-m`` (for example ``-m slow``) or
``MIAOPI_RUN_SLOW=1`` is set, so that the default run stays within a few minutes.

PostgreSQL: tests marked ``postgres`` take the ``postgres_url`` fixture, which points at
``DATABASE_URL_TEST`` (default ``postgresql+psycopg://postgres@127.0.0.1:5432/test``) with a
fresh schema per test. When the server cannot be reached they are skipped, or fail when
``MIAOPI_REQUIRE_POSTGRES=1`` (as CI sets it).
"""

from __future__ import annotations

import json
import os
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import sqlalchemy as sa

from adapters.base import Adapter
from adapters.demo import generate_demo_data
from adapters.files import load_registries
from api.service import DecisionRequest, DecisionService
from engine import RulesetCatalog
from engine.registries import RegistryCatalogue, load_catalogue
from explanations import DecisionStore

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(Path(__file__).parent) not in sys.path:  # for ``support``, shared by every folder
    sys.path.insert(0, str(Path(__file__).parent))

from support import signing_key_path  # noqa: E402

DEFAULT_POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
TEST_PSEUDONYM_KEY = "tests-pseudonym-key"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip ``slow`` tests unless a ``-m`` expression or ``MIAOPI_RUN_SLOW=1`` asks for them."""
    if config.option.markexpr or os.environ.get("MIAOPI_RUN_SLOW") == "1":
        return
    skip = pytest.mark.skip(reason="slow: run with -m slow (or MIAOPI_RUN_SLOW=1)")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


# --- files ------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def repo_root() -> Path:
    """The project folder (holds ``rulesets/`` and ``.venv/``)."""
    return REPO_ROOT


@pytest.fixture(scope="session")
def rulesets_dir(repo_root: Path) -> Path:
    """The shipped rulesets folder."""
    return repo_root / "rulesets"


@pytest.fixture(scope="session")
def miaopi_bin(repo_root: Path) -> Path:
    """The installed ``miaopi`` console script."""
    return repo_root / ".venv" / "bin" / "miaopi"


@pytest.fixture(scope="session")
def demo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Demo registries for 2,000 people plus the hand-crafted samples, generated once."""
    out = tmp_path_factory.mktemp("demo")
    generate_demo_data(out, people=2000, rulesets_dir=REPO_ROOT / "rulesets")
    return out


@dataclass(frozen=True)
class DemoSample:
    """One shipped sample application and what it must be decided as."""

    name: str
    """The file name in ``applications/``, e.g. ``rejected-many.json``."""
    body: dict[str, Any]
    expected: dict[str, Any]
    """``outcome``, ``failed``, ``unknown``, ``version``, ``amount_yuan``, ``description``."""


def load_samples(demo: Path) -> dict[str, DemoSample]:
    """Every ``applications/<name>.json`` with its entry from ``applications/expected.json``."""
    folder = demo / "applications"
    expected = json.loads((folder / "expected.json").read_text(encoding="utf-8"))
    return {
        name: DemoSample(name, json.loads((folder / name).read_text(encoding="utf-8")), exp)
        for name, exp in expected.items()
    }


@pytest.fixture(scope="session")
def demo_samples(demo_dir: Path) -> dict[str, DemoSample]:
    """The shipped samples by file name (see ``load_samples``)."""
    return load_samples(demo_dir)


@pytest.fixture(scope="session")
def bulk_bodies(demo_dir: Path) -> list[dict[str, Any]]:
    """The bulk request bodies from ``applications.jsonl`` (2,000, all under the 2016 rules)."""
    lines = (demo_dir / "applications.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


# --- services ---------------------------------------------------------------------------


@pytest.fixture(scope="session")
def registry_catalogue(rulesets_dir: Path) -> RegistryCatalogue:
    """The shipped registry catalogue (``rulesets/registries.yaml``)."""
    return load_catalogue(rulesets_dir / "registries.yaml")


@pytest.fixture(scope="session")
def ruleset_catalog(rulesets_dir: Path, registry_catalogue: RegistryCatalogue) -> RulesetCatalog:
    """Every shipped ruleset, loaded once and checked against the registry catalogue."""
    return RulesetCatalog.load(rulesets_dir, sources=registry_catalogue)


@pytest.fixture(scope="session")
def demo_registries(demo_dir: Path, registry_catalogue: RegistryCatalogue) -> dict[str, Adapter]:
    """The demo registries through the file adapters, loaded once."""
    loaded = load_registries(registry_catalogue, demo_dir)
    assert {} == loaded.problems
    return loaded.adapters


@pytest.fixture
def make_service(
    ruleset_catalog: RulesetCatalog,
    demo_registries: dict[str, Adapter],
    registry_catalogue: RegistryCatalogue,
) -> Iterator[Callable[[str | None], DecisionService]]:
    """Build decision services on the demo data; each with a store at the URL given (or none)."""
    made: list[DecisionService] = []

    def make(database_url: str | None) -> DecisionService:
        store = None
        if database_url is not None:
            from api.secrets import load_signing_key

            store = DecisionStore(database_url, signing_key=load_signing_key(signing_key_path()))
            store.create_schema()
        service = DecisionService(
            catalog=ruleset_catalog,
            adapters=demo_registries,
            registries=registry_catalogue,
            store=store,
            pseudonym_key=TEST_PSEUDONYM_KEY,
        )
        made.append(service)
        return service

    yield make
    for service in made:
        service.close()
        if service.store is not None:
            service.store.dispose()


@pytest.fixture
def request_of() -> Callable[[dict[str, Any]], DecisionRequest]:
    """Turn a request body into the validated ``DecisionRequest``."""
    return DecisionRequest.model_validate


# --- PostgreSQL -------------------------------------------------------------------------


@pytest.fixture(scope="session")
def _postgres_base_url() -> str:
    """The PostgreSQL server URL, checked once; skip or fail when it cannot be reached."""
    url = os.environ.get("DATABASE_URL_TEST") or DEFAULT_POSTGRES_URL
    engine = sa.create_engine(url, connect_args={"connect_timeout": 5})
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("select 1"))
    except Exception as exc:  # any connection failure means "no server for these tests"
        first_line = (str(exc).strip().splitlines() or [""])[0][:200]
        message = f"PostgreSQL at {url} is not reachable: {type(exc).__name__}: {first_line}"
        if os.environ.get("MIAOPI_REQUIRE_POSTGRES") == "1":
            pytest.fail(message + " (MIAOPI_REQUIRE_POSTGRES=1)", pytrace=False)
        pytest.skip(message + " (set DATABASE_URL_TEST, or MIAOPI_REQUIRE_POSTGRES=1 to fail)")
    finally:
        engine.dispose()
    return url


@pytest.fixture
def postgres_url(_postgres_base_url: str) -> Iterator[str]:
    """A URL whose ``search_path`` is a fresh schema, dropped after the test."""
    schema = f"miaopi_test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(_postgres_base_url)
    with admin.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    sep = "&" if "?" in _postgres_base_url else "?"
    try:
        yield f"{_postgres_base_url}{sep}options={quote(f'-csearch_path={schema}', safe='')}"
    finally:
        with admin.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        admin.dispose()
