"""Helpers shared by test folders: the tests' secrets, API keys, a real server's environment."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from explanations import DecisionStore

REPO_ROOT = Path(__file__).resolve().parents[1]
TEST_SECRET_KEY = "tests-secret-key-0123456789abcdefghijklmnop"
"""The service's pseudonym key in API tests (the service refuses keys under 32 characters)."""
TEST_SIGNING_KEY = REPO_ROOT / "var" / "test-secrets" / "signing-key.pem"


def signing_key_path() -> Path:
    """An Ed25519 key for the tests' logs, made once per checkout (var/ is not committed)."""
    from api.secrets import generate_signing_key

    if not TEST_SIGNING_KEY.exists():
        try:
            generate_signing_key(TEST_SIGNING_KEY)
        except FileExistsError:  # another test process made it first
            pass
    return TEST_SIGNING_KEY


def server_env(database_url: str) -> dict[str, str]:
    """The environment for a real ``miaopi serve``: ours without MIAOPI_*, plus its secrets."""
    env = {
        k: v for k, v in os.environ.items() if not k.startswith("MIAOPI_") and k != "DATABASE_URL"
    }
    env["MIAOPI_PSEUDONYM_KEY"] = TEST_SECRET_KEY
    env["MIAOPI_SIGNING_KEY_FILE"] = str(signing_key_path())
    env["DATABASE_URL"] = database_url
    return env


def make_key(database_url: str, role: str) -> str:
    """Create an API key for ``role`` in the database at ``database_url`` (migrated to head)."""
    from api.auth import KeyStore
    from explanations.migrate import upgrade

    upgrade(database_url)
    store = DecisionStore(database_url)
    try:
        return KeyStore(store.engine).create(role, label=f"tests {role}")[1]
    finally:
        store.dispose()


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextlib.contextmanager
def running_simulator(
    data_dir: Path, log: Path, *args: str
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """``python -m adapters.simulator`` on the shipped catalogue as a real process on a free
    port, until it answers /healthz; yields its base URL and process, stops it after."""
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MIAOPI_")}
    with log.open("wb") as out:
        process = subprocess.Popen(
            [
                sys.executable, "-m", "adapters.simulator", "--data-dir", str(data_dir),
                "--registries", str(REPO_ROOT / "rulesets" / "registries.yaml"),
                "--port", str(port), *args,
            ],
            cwd=REPO_ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
    deadline = time.monotonic() + 30
    try:
        with httpx.Client(base_url=base, timeout=5) as client:
            while True:
                if process.poll() is not None:
                    pytest.fail(f"simulator exited with {process.returncode}:\n{log.read_text()}")
                try:
                    if client.get("/healthz").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    pytest.fail(
                        f"simulator did not answer /healthz within 30 s:\n{log.read_text()}"
                    )
                time.sleep(0.1)
        yield base, process
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
