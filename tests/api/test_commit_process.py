"""``miaopi serve``'s commit process, as real processes over real HTTP.

The server starts one commit process beside its workers, and the workers' decisions are
written there. Killed (kill -9) while clients post, it costs no decision: the workers write
their own until ``serve`` has started it again, and every acknowledged decision is stored
once, in a chain that verifies.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import psutil
import sqlalchemy as sa
from support import bearer, make_key, server_env

from .conftest import free_port, wait_until_up


def _commit_processes(server: subprocess.Popen[bytes]) -> list[psutil.Process]:
    found = []
    for p in psutil.Process(server.pid).children(recursive=True):
        try:
            if "api.commit_process" in " ".join(p.cmdline()):
                found.append(p)
        except psutil.Error:  # gone meanwhile, or a zombie not yet reaped
            continue
    return found


def _wait_for(condition: Any, what: str, seconds: float = 60) -> Any:
    deadline = time.monotonic() + seconds
    while not (found := condition()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)
    return found


def test_a_commit_process_killed_under_load_costs_no_decision_and_is_started_again(
    tmp_path: Path,
    repo_root: Path,
    miaopi_bin: Path,
    demo_dir: Path,
    bulk_bodies: list[dict[str, Any]],
) -> None:
    """4 clients post 150 decisions each to a 2-worker server; the commit process is killed
    (kill -9) twice on the way. Every post is answered 201; the database holds exactly the
    600 keys, once each; ``serve`` started a new commit process each time (and said so); the
    chain and the log verify."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    db_url = f"sqlite:///{tmp_path}/s.db"
    env = server_env(db_url)
    headers = bearer(make_key(db_url, "platform"))
    log = tmp_path / "server.log"
    with log.open("wb") as log_file:
        server = subprocess.Popen(
            [str(miaopi_bin), "serve", "--port", str(port), "--workers", "2",
             "--data-dir", str(demo_dir), "--database-url", db_url],
            cwd=repo_root, env=env, stdout=log_file, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        wait_until_up(base, server, log)
        first = _wait_for(lambda: _commit_processes(server), "the commit process")
        assert 1 == len(first)
        statuses: list[int] = []
        errors: list[str] = []
        lock = threading.Lock()
        posted = threading.Event()

        def client(t: int) -> None:
            with httpx.Client(base_url=base, timeout=60, headers=headers) as http:
                for i in range(150):
                    body = bulk_bodies[t * 150 + i]
                    try:
                        r = http.post(
                            "/v1/decisions",
                            json={**body, "application_id": f"CP-{t}-{i}"},
                            headers={"Idempotency-Key": f"cp-{t}-{i}"},
                        )
                    except httpx.HTTPError as exc:
                        errors.append(f"{t}-{i}: {exc!r}")
                        continue
                    with lock:
                        statuses.append(r.status_code)
                        if len(statuses) == 100:
                            posted.set()

        threads = [threading.Thread(target=client, args=(t,)) for t in range(4)]
        for th in threads:
            th.start()
        killed: list[int] = []
        assert posted.wait(120)
        for _ in range(2):
            victim = _wait_for(lambda: _commit_processes(server), "a commit process")[0]
            os.kill(victim.pid, signal.SIGKILL)
            killed.append(victim.pid)
            _wait_for(
                lambda: [p for p in _commit_processes(server) if p.pid not in killed],
                "a new commit process",
            )
        for th in threads:
            th.join(timeout=300)
        assert [] == errors
        assert [201] * 600 == statuses
        assert server.poll() is None
    finally:
        server.terminate()
        server.wait(30)
    engine = sa.create_engine(db_url)
    with engine.connect() as conn:
        keys = conn.exec_driver_sql("SELECT idempotency_key FROM decisions").scalars().all()
    engine.dispose()
    assert sorted(keys) == sorted(f"cp-{t}-{i}" for t in range(4) for i in range(150))
    verify = subprocess.run(
        [str(miaopi_bin), "audit", "verify", "--database-url", db_url],
        cwd=repo_root, env=env, capture_output=True, text=True,
    )  # fmt: skip
    assert 0 == verify.returncode, verify.stdout + verify.stderr
    text = log.read_text(errors="replace")
    assert text.count("the commit process exited") == 2
