"""Schemathesis against the real server process: every operation, every check, nothing found.

``scripts/fuzz.py`` does the work (``make fuzz`` runs it with 300 examples per operation);
here the server is the ``serve`` fixture's ``miaopi serve`` and the examples per operation
are ``MIAOPI_FUZZ_EXAMPLES`` (default 25, to keep CI within its time).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest


@pytest.mark.slow
def test_schemathesis_finds_no_server_error_and_no_schema_violation(
    serve: Callable[..., str], rulesets_dir: Path, demo_dir: Path, repo_root: Path, tmp_path: Path
) -> None:
    """All operations, all checks, with platform and staff keys: 0 failures, 0 tracebacks logged."""
    # Keys for /metrics too: schemathesis cannot know a caller on this machine may read it.
    base = serve(rulesets=rulesets_dir, data_dir=demo_dir, environ={"MIAOPI_METRICS_ACCESS": "key"})
    examples = os.environ.get("MIAOPI_FUZZ_EXAMPLES", "25")
    done = subprocess.run(
        [
            sys.executable, str(repo_root / "scripts" / "fuzz.py"), "--url", base,
            "--database-url", serve.database_url,  # type: ignore[attr-defined]
            "--samples", str(demo_dir / "applications"), "--examples", examples,
        ],
        cwd=repo_root, capture_output=True, text=True, timeout=1800,
    )  # fmt: skip
    figures = [line for line in done.stdout.splitlines() if line.startswith("fuzz: ")]
    assert 0 == done.returncode, done.stdout[-15_000:] + done.stderr[-3_000:]
    (line,) = figures
    found = re.search(r"(\d+) operations, (\d+) cases, (\d+) failures", line)
    assert found is not None, line
    operations, cases, failures = map(int, found.groups())
    every = sum(len(item) for item in httpx.get(f"{base}/openapi.json").json()["paths"].values())
    assert (every, 0) == (operations, failures), line
    assert cases >= 500, line
    logs = "".join(p.read_text(errors="replace") for p in tmp_path.glob("server-*.log"))
    assert "Traceback" not in logs, logs[-5_000:]
