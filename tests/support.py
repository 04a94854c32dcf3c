"""Helpers shared by test folders: the tests' secrets, API keys, a real server's environment."""

from __future__ import annotations

import os
from pathlib import Path

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
    """Create an API key for ``role`` in the database at ``database_url`` (schema made if new)."""
    from sqlmodel import SQLModel

    from api.auth import KeyStore

    store = DecisionStore(database_url)
    try:
        SQLModel.metadata.create_all(store.engine)
        return KeyStore(store.engine).create(role, label=f"tests {role}")[1]
    finally:
        store.dispose()


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}
