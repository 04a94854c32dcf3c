"""Service settings, read from the environment once, in the application factory."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from api.secrets import Secrets, ensure_demo_secrets

__all__ = ["Settings"]


class Settings(BaseModel):
    """Everything configurable. Environment variables: ``MIAOPI_*`` and ``DATABASE_URL``."""

    model_config = ConfigDict(frozen=True)

    data_dir: Path = Path("var/demo")
    rulesets_dir: Path = Path("rulesets")
    registries: Path | None = None
    """The registry catalogue; ``None``: ``registries.yaml`` in the rulesets folder."""
    database_url: str = "sqlite:///var/miaopi.db"
    migrate: bool = True
    """Upgrade the schema at start (under a lock); ``False``: refuse to start unless at head."""
    max_body_bytes: int = Field(default=64 * 1024, gt=0)
    max_clock_skew_s: int = Field(default=300, ge=0, le=3600)
    """How far in the future an application's ``submitted_at`` may be (the platform's clock)."""
    evidence_budget_ms: int = Field(default=800, ge=1, le=60_000)
    """How long one decision may wait for all of its evidence."""
    evidence_budgets: dict[str, int] = Field(default_factory=dict)
    """Per service (``MIAOPI_EVIDENCE_BUDGETS=service=ms,…``)."""
    registry_url: str | None = None
    """Ask every catalogued registry over HTTP at this base URL (e.g. the simulator)."""
    pseudonym_key: str | None = None
    """No default: outside ``demo`` the service refuses to start without it."""
    previous_pseudonym_keys: tuple[str, ...] = ()
    """Keys rotated out: citizen tokens issued under them still open their decisions."""
    signing_key_file: Path | None = None
    """The Ed25519 key that signs the log's checkpoints (PEM)."""
    trusted_public_keys: tuple[Path, ...] = ()
    """Public keys (PEM) of signing keys rotated out: their checkpoints still verify."""
    checkpoint_file: Path | None = None
    """Where signed checkpoints are appended (JSON lines), outside the database."""
    demo: bool = False
    """A local demonstration: random secrets are made once in ``secrets_dir`` and kept."""
    secrets_dir: Path = Path("var/secrets")
    oidc_issuer: str | None = None
    oidc_audience: str | None = None
    oidc_jwks_url: str | None = None
    oidc_roles_claim: str = "roles"
    review_days: int = Field(default=5, ge=1, le=60)
    """Working days a reviewer has for a case when the service guide does not say."""
    log_level: str = "INFO"
    metrics_access: Literal["local", "key", "open"] = "local"
    """Who may read ``/metrics`` and ``/v1/ops/health``: ``local`` (default) lets a caller on
    this machine (loopback, no proxy header) in without a key and asks anyone else for an
    ``ops`` or ``auditor`` key; ``key`` always asks for one; ``open`` lets anyone read
    ``/metrics`` (only on a private network: it tells how many decisions of each kind),
    ``/v1/ops/health`` staying as under ``local``."""
    public_base_url: str = ""
    commit_socket: str | None = None
    """The commit process's socket (``miaopi serve`` starts one and sets it): the workers
    send their records there to be written (``explanations.committer``)."""

    def secrets(self) -> Secrets:
        """The secrets to run with; ``MissingSecrets`` says what is missing and how to set it."""
        if self.demo and not self.pseudonym_key and self.signing_key_file is None:
            key, signing = ensure_demo_secrets(self.secrets_dir)
            return Secrets.load(pseudonym_key=key, previous=(), signing_key_file=signing)
        return Secrets.load(
            pseudonym_key=self.pseudonym_key,
            previous=self.previous_pseudonym_keys,
            signing_key_file=self.signing_key_file,
        )

    @property
    def checkpoints(self) -> Path | None:
        """The checkpoint file; in a demo, ``checkpoints.jsonl`` beside the secrets."""
        if self.checkpoint_file is not None:
            return self.checkpoint_file
        return self.secrets_dir.parent / "checkpoints.jsonl" if self.demo else None

    @classmethod
    def from_env(cls, **overrides: object) -> Settings:
        env = os.environ
        values: dict[str, object] = {}
        mapping = {
            "data_dir": "MIAOPI_DATA_DIR",
            "rulesets_dir": "MIAOPI_RULESETS_DIR",
            "registries": "MIAOPI_REGISTRIES",
            "database_url": "DATABASE_URL",
            "migrate": "MIAOPI_MIGRATE",
            "max_body_bytes": "MIAOPI_MAX_BODY_BYTES",
            "max_clock_skew_s": "MIAOPI_MAX_CLOCK_SKEW_S",
            "evidence_budget_ms": "MIAOPI_EVIDENCE_BUDGET_MS",
            "registry_url": "MIAOPI_REGISTRY_URL",
            "pseudonym_key": "MIAOPI_PSEUDONYM_KEY",
            "signing_key_file": "MIAOPI_SIGNING_KEY_FILE",
            "checkpoint_file": "MIAOPI_CHECKPOINT_FILE",
            "demo": "MIAOPI_DEMO",
            "secrets_dir": "MIAOPI_SECRETS_DIR",
            "oidc_issuer": "MIAOPI_OIDC_ISSUER",
            "oidc_audience": "MIAOPI_OIDC_AUDIENCE",
            "oidc_jwks_url": "MIAOPI_OIDC_JWKS_URL",
            "oidc_roles_claim": "MIAOPI_OIDC_ROLES_CLAIM",
            "review_days": "MIAOPI_REVIEW_DAYS",
            "log_level": "MIAOPI_LOG_LEVEL",
            "metrics_access": "MIAOPI_METRICS_ACCESS",
            "public_base_url": "MIAOPI_PUBLIC_BASE_URL",
            "commit_socket": "MIAOPI_COMMIT_SOCKET",
        }
        for field, var in mapping.items():
            if env.get(var):
                values[field] = env[var]
        if env.get("MIAOPI_EVIDENCE_BUDGETS"):
            values["evidence_budgets"] = {
                k.strip(): int(v)
                for k, _, v in (
                    part.partition("=") for part in env["MIAOPI_EVIDENCE_BUDGETS"].split(",")
                )
                if k.strip() and v.strip().isdigit()
            }
        if env.get("MIAOPI_TRUSTED_PUBLIC_KEYS"):
            values["trusted_public_keys"] = tuple(
                Path(p.strip()) for p in env["MIAOPI_TRUSTED_PUBLIC_KEYS"].split(",") if p.strip()
            )
        if env.get("MIAOPI_PREVIOUS_PSEUDONYM_KEYS"):
            values["previous_pseudonym_keys"] = tuple(
                k.strip() for k in env["MIAOPI_PREVIOUS_PSEUDONYM_KEYS"].split(",") if k.strip()
            )
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls.model_validate(values)
