"""Fixtures for the API tests: one application on the demo data with its own SQLite store."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from api.app import create_app
from api.settings import Settings
from explanations import DecisionStore


@pytest.fixture(scope="module")
def api_settings(
    tmp_path_factory: pytest.TempPathFactory, demo_dir: Path, rulesets_dir: Path
) -> Settings:
    """Settings for a service on the demo data, storing into a fresh SQLite file."""
    db = tmp_path_factory.mktemp("api-db") / "m.db"
    return Settings(data_dir=demo_dir, rulesets_dir=rulesets_dir, database_url=f"sqlite:///{db}")


@pytest.fixture(scope="module")
def api_app(api_settings: Settings) -> Iterator[FastAPI]:
    """The application built by ``create_app``, shared by the tests of one module."""
    app = create_app(api_settings)
    yield app
    app.state.service.close()
    app.state.service.store.dispose()


@pytest.fixture(scope="module")
def client(api_app: FastAPI) -> Iterator[TestClient]:
    """A test client for ``api_app``."""
    with TestClient(api_app) as c:
        yield c


@pytest.fixture
def store(api_app: FastAPI) -> DecisionStore:
    """The decision store behind ``api_app``."""
    s: DecisionStore = api_app.state.service.store
    return s
