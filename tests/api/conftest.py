"""Fixtures for the API tests: one application on the demo data with its own SQLite store."""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from support import TEST_SECRET_KEY, bearer, make_key, server_env, signing_key_path

from api.app import create_app
from api.auth import KeyStore
from api.settings import Settings
from explanations import DecisionStore


@pytest.fixture(scope="module")
def api_settings(
    tmp_path_factory: pytest.TempPathFactory, demo_dir: Path, rulesets_dir: Path
) -> Settings:
    """Settings for a service on the demo data, storing into a fresh SQLite file."""
    db = tmp_path_factory.mktemp("api-db") / "m.db"
    return Settings(
        data_dir=demo_dir,
        rulesets_dir=rulesets_dir,
        database_url=f"sqlite:///{db}",
        pseudonym_key=TEST_SECRET_KEY,
        signing_key_file=signing_key_path(),
    )


@pytest.fixture(scope="module")
def api_app(api_settings: Settings) -> Iterator[FastAPI]:
    """The application built by ``create_app``, shared by the tests of one module."""
    app = create_app(api_settings)
    yield app
    app.state.service.close()
    app.state.service.store.dispose()


@pytest.fixture(scope="module")
def role_keys(api_app: FastAPI) -> dict[str, str]:
    """One API key per role in ``api_app``'s database."""
    keys = KeyStore(api_app.state.ctx.store.engine)
    return {
        role: keys.create(role, label=f"tests {role}")[1]
        for role in ("platform", "reviewer", "policy", "auditor", "ops")
    }


@pytest.fixture(scope="module")
def client(api_app: FastAPI, role_keys: dict[str, str]) -> Iterator[TestClient]:
    """A test client for ``api_app`` that authenticates as the platform."""
    with TestClient(api_app, headers=bearer(role_keys["platform"])) as c:
        yield c


@pytest.fixture
def store(api_app: FastAPI) -> DecisionStore:
    """The decision store behind ``api_app``."""
    s: DecisionStore = api_app.state.service.store
    return s


# --- a real server process --------------------------------------------------------------


def free_port() -> int:
    """A TCP port nobody listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_until_up(
    base: str, server: subprocess.Popen[bytes], log: Path, timeout_s: float = 60
) -> None:
    """Wait for ``/healthz`` to answer; fail with the server's log if it dies or never does."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(
                f"server exited with {server.returncode}:\n{log.read_text(errors='replace')[-3000:]}"
            )
        try:
            if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    pytest.fail(
        f"server did not answer /healthz within {timeout_s}s:\n{log.read_text(errors='replace')[-3000:]}"
    )


@pytest.fixture
def serve(tmp_path: Path, repo_root: Path, miaopi_bin: Path) -> Iterator[Callable[..., str]]:
    """Start ``miaopi serve`` as a real process; returns its base URL. Stopped afterwards."""
    servers: list[subprocess.Popen[bytes]] = []

    def start(
        *,
        rulesets: Path,
        data_dir: Path,
        extra: tuple[str, ...] = (),
        environ: dict[str, str] | None = None,
    ) -> str:
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        log = tmp_path / f"server-{port}.log"
        db_url = f"sqlite:///{tmp_path}/server-{port}.db"
        env = server_env(db_url) | (environ or {})
        start.headers = bearer(make_key(db_url, "platform"))  # type: ignore[attr-defined]
        start.database_url = db_url  # type: ignore[attr-defined]
        with log.open("wb") as out:
            server = subprocess.Popen(
                [
                    str(miaopi_bin), "serve", "--port", str(port), "--rulesets", str(rulesets),
                    "--data-dir", str(data_dir), "--database-url", db_url, *extra,
                ],
                cwd=repo_root,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )  # fmt: skip
        servers.append(server)
        wait_until_up(base, server, log)
        return base

    yield start
    for server in servers:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
