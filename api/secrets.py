"""The service's secrets: the pseudonym key (citizen tokens derive from it) and the log's
Ed25519 signing key. None has a default: outside ``--demo`` the service refuses to start
without them; ``--demo`` makes random ones once, in a private folder, and keeps them.

Rotation: set the new pseudonym key as ``MIAOPI_PSEUDONYM_KEY`` and move the old one to
``MIAOPI_PREVIOUS_PSEUDONYM_KEYS`` (comma separated): new tokens and pseudonyms use the new
key, tokens already issued keep opening their decisions, and records keep the pseudonyms
they were written with (each record names the key by ``pseudonym_key_id``). A new signing
key takes effect at the next checkpoint; checkpoints name their key by id, and
``miaopi audit verify`` accepts every public key it is given.
"""

from __future__ import annotations

import hashlib
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

__all__ = [
    "MissingSecrets",
    "Secrets",
    "ensure_demo_secrets",
    "generate_signing_key",
    "key_id",
    "load_signing_key",
]

MIN_KEY_CHARS = 32


class MissingSecrets(Exception):
    """The service cannot start: which secrets are missing or unusable, and how to set them."""


def key_id(key: str) -> str:
    """A short public name for a secret key (never reveals it): 8 hex characters."""
    return hashlib.sha256(b"miaopi/key-id/v1:" + key.encode("utf-8")).hexdigest()[:8]


def generate_signing_key(path: Path) -> Ed25519PrivateKey:
    """Write a new Ed25519 private key (PEM, readable by the owner only)."""
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(pem)
    return key


def load_signing_key(path: Path) -> Ed25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError) as exc:
        raise MissingSecrets(
            f"签名密钥无法读取 / cannot read the signing key {path}: {exc}"
        ) from None
    if not isinstance(key, Ed25519PrivateKey):
        raise MissingSecrets(f"签名密钥须为 Ed25519 / the signing key {path} is not Ed25519")
    return key


@dataclass(frozen=True)
class Secrets:
    pseudonym_key: str
    previous_pseudonym_keys: tuple[str, ...]
    signing_key: Ed25519PrivateKey

    @property
    def pseudonym_key_id(self) -> str:
        return key_id(self.pseudonym_key)

    @property
    def token_keys(self) -> list[bytes]:
        """The keys citizen tokens are checked against: the current one first."""
        return [
            ("access:" + k).encode("utf-8")
            for k in (self.pseudonym_key, *self.previous_pseudonym_keys)
        ]

    @classmethod
    def load(
        cls,
        *,
        pseudonym_key: str | None,
        previous: tuple[str, ...],
        signing_key_file: Path | None,
    ) -> Secrets:
        missing: list[str] = []
        if not pseudonym_key:
            missing.append("MIAOPI_PSEUDONYM_KEY (≥32 random characters)")
        elif len(pseudonym_key) < MIN_KEY_CHARS:
            missing.append(f"MIAOPI_PSEUDONYM_KEY is shorter than {MIN_KEY_CHARS} characters")
        if signing_key_file is None:
            missing.append("MIAOPI_SIGNING_KEY_FILE (make one: miaopi keys signing-key --out FILE)")
        elif not signing_key_file.exists():
            missing.append(f"MIAOPI_SIGNING_KEY_FILE {signing_key_file} does not exist")
        if missing:
            raise MissingSecrets(
                "缺少密钥，服务拒绝启动 / the service will not start without its secrets: "
                + "; ".join(missing)
                + " (or run with --demo for a local demonstration)"
            )
        assert pseudonym_key is not None and signing_key_file is not None
        return cls(pseudonym_key, previous, load_signing_key(signing_key_file))


def ensure_demo_secrets(folder: Path) -> tuple[str, Path]:
    """The demo's own random secrets, made once in ``folder`` (0700) and reused after."""
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    key_file = folder / "pseudonym.key"
    if not key_file.exists():
        fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(secrets.token_urlsafe(48))
    signing = folder / "signing-key.pem"
    if not signing.exists():
        generate_signing_key(signing)
    return key_file.read_text().strip(), signing
