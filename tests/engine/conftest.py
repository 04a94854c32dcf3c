"""Fixtures shared by the engine tests; puts ``helpers_engine`` on the import path.

The project runs pytest with ``--import-mode=importlib``, which does not add test folders to
``sys.path``; this conftest (imported before the test modules) does it for this folder.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

if str(Path(__file__).resolve().parent) not in sys.path:
    sys.path.insert(0, str(Path(__file__).resolve().parent))

from helpers_engine import catalog, shipped  # noqa: E402

from engine import Ruleset, RulesetCatalog  # noqa: E402


@pytest.fixture(scope="session")
def shipped_catalog() -> RulesetCatalog:
    """Every ruleset under ``rulesets/``."""
    return catalog()


@pytest.fixture(scope="session")
def ruleset_2016() -> Ruleset:
    """The talent-housing-subsidy ruleset in force 2016-01-01 … 2025-12-31."""
    return shipped("2016")


@pytest.fixture(scope="session")
def ruleset_2026() -> Ruleset:
    """The talent-housing-subsidy ruleset in force from 2026-01-01."""
    return shipped("2026")
