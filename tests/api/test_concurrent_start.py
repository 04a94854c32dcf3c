"""Servers started together on an empty database all start: the schema is migrated once, under a lock."""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
import sqlalchemy as sa
from support import bearer, make_key, server_env, signing_key_path

from explanations import DecisionStore
from explanations.log import load_public_keys

from .conftest import free_port, wait_until_up

ROUNDS = 20


@pytest.mark.slow
@pytest.mark.postgres
def test_two_servers_started_at_the_same_instant_on_an_empty_postgres_database_20_times_all_start(
    _postgres_base_url: str,
    tmp_path: Path,
    miaopi_bin: Path,
    repo_root: Path,
    rulesets_dir: Path,
    demo_dir: Path,
    demo_samples: dict,
) -> None:
    """20 rounds: a fresh empty schema, two `miaopi serve` processes launched back to back on it.
    Both answer /healthz every time, one application posted to each (and the first again to
    the other) is stored once, and the chain and the signed log verify."""
    body = demo_samples["approved-old-age-90.json"].body
    keys = load_public_keys([signing_key_path()])
    started = time.monotonic()
    for round_ in range(ROUNDS):
        schema = f"miaopi_start_{uuid.uuid4().hex[:12]}"
        admin = sa.create_engine(_postgres_base_url)
        with admin.begin() as conn:
            conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
        sep = "&" if "?" in _postgres_base_url else "?"
        url = f"{_postgres_base_url}{sep}options={quote(f'-csearch_path={schema}', safe='')}"
        servers: list[tuple[str, subprocess.Popen[bytes], Path]] = []
        try:
            ports = [free_port(), free_port()]
            for port in ports:  # launched back to back: both reach the schema together
                log = tmp_path / f"round-{round_}-{port}.log"
                with log.open("wb") as out:
                    server = subprocess.Popen(
                        [
                            str(miaopi_bin), "serve", "--port", str(port),
                            "--rulesets", str(rulesets_dir), "--data-dir", str(demo_dir),
                            "--database-url", url,
                        ],
                        cwd=repo_root,
                        env=server_env(url),
                        stdout=out,
                        stderr=subprocess.STDOUT,
                    )  # fmt: skip
                servers.append((f"http://127.0.0.1:{port}", server, log))
            for base, server, log in servers:
                wait_until_up(base, server, log)
            platform = bearer(make_key(url, "platform"))
            decided = []
            with httpx.Client(timeout=30) as http:
                for n, (base, _, _) in enumerate(servers):
                    answer = http.post(
                        f"{base}/v1/decisions",
                        json={**body, "application_id": f"start-{round_}-{n}"},
                        headers={**platform, "Idempotency-Key": f"start-{round_}-{n}"},
                    )
                    assert 201 == answer.status_code, answer.text
                    decided.append(answer.json()["decision_id"])
                again = http.post(
                    f"{servers[1][0]}/v1/decisions",
                    json={**body, "application_id": f"start-{round_}-0"},
                    headers={**platform, "Idempotency-Key": f"start-{round_}-0"},
                )
                assert (201, "true") == (
                    again.status_code,
                    again.headers.get("idempotent-replayed"),
                ), again.text
                assert decided[0] == again.json()["decision_id"]
            store = DecisionStore(url)
            try:
                count, problems = store.verify(keys=keys)
                assert (2, []) == (count, problems), f"round {round_}"
                assert {decided[0], decided[1]} == {r.decision_id for r in store.iter_records()}
            finally:
                store.dispose()
            for _, server, log in servers:
                assert server.poll() is None, log.read_text(errors="replace")[-2000:]
                assert "Traceback" not in log.read_text(errors="replace"), log.read_text()[-3000:]
        finally:
            for _, server, _ in servers:
                server.terminate()
            for _, server, _ in servers:
                try:
                    server.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    server.kill()
            with admin.begin() as conn:
                conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
            admin.dispose()
    elapsed = time.monotonic() - started
    print(json.dumps({"rounds": ROUNDS, "seconds": round(elapsed, 1)}))


def test_a_server_started_with_no_migrate_on_a_database_at_head_serves(
    serve: Callable[..., str], rulesets_dir: Path, demo_dir: Path, demo_samples: dict
) -> None:
    """After `miaopi db upgrade` (here through the key helper), `serve --no-migrate` starts and
    decides."""
    base = serve(rulesets=rulesets_dir, data_dir=demo_dir, extra=("--no-migrate",))
    answer = httpx.post(
        f"{base}/v1/decisions",
        json=demo_samples["approved-old-age-90.json"].body,
        headers={**serve.headers, "Idempotency-Key": "no-migrate-1"},  # type: ignore[attr-defined]
        timeout=30,
    )
    assert (201, "APPROVED") == (answer.status_code, answer.json().get("outcome")), answer.text
