"""The real server (``miaopi serve``) under concurrent load over real HTTP, then audited."""

from __future__ import annotations

import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from support import bearer, make_key, server_env

from api.service import DecisionRequest, DecisionService

from .conftest import free_port, wait_until_up

pytestmark = pytest.mark.slow

CLIENTS = 8
PER_CLIENT = 2000


def test_eight_clients_posting_sixteen_thousand_decisions_get_the_in_process_outcomes(
    tmp_path: Path,
    repo_root: Path,
    miaopi_bin: Path,
    demo_dir: Path,
    bulk_bodies: list[dict[str, Any]],
    make_service: Callable[[str | None], DecisionService],
) -> None:
    """8 concurrent clients × 2,000 posts: all 201 with the in-process outcome, server alive, chain verifies."""
    assert len(bulk_bodies) >= PER_CLIENT
    bodies = bulk_bodies[:PER_CLIENT]
    dry_run = make_service(None)
    expected = [
        dry_run.decide_unstored(DecisionRequest.model_validate(b))[0]["outcome"] for b in bodies
    ]
    assert {"APPROVED", "REJECTED", "REFERRED"} == set(expected)

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    db_url = f"sqlite:///{tmp_path}/s.db"
    log = tmp_path / "server.log"
    env = server_env(db_url)
    headers = bearer(make_key(db_url, "platform"))
    with log.open("wb") as log_file:
        server = subprocess.Popen(
            [
                str(miaopi_bin),
                "serve",
                "--port",
                str(port),
                "--data-dir",
                str(demo_dir),
                "--database-url",
                db_url,
            ],
            cwd=repo_root,
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_until_up(base, server, log)
        statuses: Counter[int] = Counter()
        mismatches: list[tuple[str, str, str]] = []
        errors: list[str] = []
        lock = threading.Lock()

        def client(t: int) -> None:
            local: Counter[int] = Counter()
            wrong: list[tuple[str, str, str]] = []
            try:
                with httpx.Client(base_url=base, timeout=60, headers=headers) as http:
                    for i, body in enumerate(bodies):
                        app_id = f"HTTP-{t}-{i:04d}"
                        r = http.post(
                            "/v1/decisions",
                            json={**body, "application_id": app_id},
                            headers={"Idempotency-Key": f"http-{t}-{i}"},
                        )
                        local[r.status_code] += 1
                        if r.status_code == 201 and r.json()["outcome"] != expected[i]:
                            wrong.append((app_id, expected[i], r.json()["outcome"]))
            except Exception as exc:  # reported by the assertions below
                errors.append(f"client {t}: {type(exc).__name__}: {exc}")
            with lock:
                statuses.update(local)
                mismatches.extend(wrong)

        start = time.perf_counter()
        threads = [threading.Thread(target=client, args=(t,)) for t in range(CLIENTS)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        elapsed = time.perf_counter() - start
        total = CLIENTS * PER_CLIENT
        print(
            f"\nHTTP throughput: {total} decisions in {elapsed:.1f}s = {total / elapsed:.0f} decisions/s "
            f"({CLIENTS} clients, 1 server process, SQLite)"
        )

        assert [] == errors
        assert {201: total} == dict(statuses)
        assert [] == mismatches[:20]
        assert server.poll() is None, "the server died under load"
        health = httpx.get(f"{base}/v1/ops/health", timeout=10).json()  # loopback: no key
        assert total == health["decisions"]
        assert "decisions" not in httpx.get(f"{base}/healthz", timeout=10).json()

        verify = subprocess.run(
            [str(miaopi_bin), "audit", "verify", "--database-url", db_url],
            cwd=repo_root,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert 0 == verify.returncode, verify.stdout + verify.stderr
        assert f"{total} records" in verify.stdout
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=20)
