"""kill -9 under load (``scripts/crash_test.py``): nothing acknowledged is lost or doubled.

A short run of the harness that ``make crash-test`` runs with 200 kills: real ``miaopi serve``
processes, SIGKILLed while clients post, restarted, the database and the chain checked after.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.slow

KILLS = 8


def crash_test(repo_root: Path, tmp_path: Path, *args: str) -> dict[str, Any]:
    """Run the harness; its figures (JSON), after checking that it passed."""
    summary = tmp_path / "summary.json"
    done = subprocess.run(
        [
            sys.executable, str(repo_root / "scripts" / "crash_test.py"), "--kills", str(KILLS),
            "--clients", "4", "--workers", "1", "--people", "500", "--summary", str(summary),
            *args,
        ],
        cwd=repo_root,
        capture_output=True,
        text=True,
        timeout=600,
    )  # fmt: skip
    assert 0 == done.returncode, f"{done.stdout}\n{done.stderr[-4000:]}"
    figures: dict[str, Any] = json.loads(summary.read_text(encoding="utf-8"))
    return figures


def assert_durable(figures: dict[str, Any]) -> None:
    """Every kill happened, under load; every acknowledgement is stored exactly once."""
    assert KILLS == figures["kills"]
    assert figures["kills_with_requests_in_flight"] >= 1
    assert figures["acknowledged"] > 0
    assert figures["acknowledged"] == figures["stored"]
    assert ([], [], [], []) == (
        figures["lost"],
        figures["duplicates"],
        figures["chain"],
        figures["retries"],
    )
    assert "chain and log intact, signatures checked" in figures["verify"]


def test_sigkills_of_a_server_on_sqlite_lose_and_double_no_acknowledged_decision(
    repo_root: Path, tmp_path: Path
) -> None:
    """Eight SIGKILLs of a server writing SQLite under load: 0 lost, 0 duplicates, chain intact, retries replayed."""
    assert_durable(crash_test(repo_root, tmp_path, "--store", "sqlite"))


@pytest.mark.postgres
def test_sigkills_of_either_of_two_servers_on_postgres_lose_and_double_nothing(
    repo_root: Path, tmp_path: Path, _postgres_base_url: str
) -> None:
    """Eight SIGKILLs of either of two servers on one PostgreSQL schema: 0 lost, 0 duplicates, chain intact."""
    figures = crash_test(
        repo_root, tmp_path, "--store", "postgres", "--postgres-url", _postgres_base_url
    )
    assert_durable(figures)
    assert 2 == figures["servers"]
