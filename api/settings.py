"""Service settings, read from the environment once, in the application factory."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["DEV_PSEUDONYM_KEY", "Settings"]

DEV_PSEUDONYM_KEY = "miaopi-development-key-change-me"


class Settings(BaseModel):
    """Everything configurable. Environment variables: ``MIAOPI_*`` and ``DATABASE_URL``."""

    model_config = ConfigDict(frozen=True)

    data_dir: Path = Path("var/demo")
    rulesets_dir: Path = Path("rulesets")
    registries: Path | None = None
    """The registry catalogue; ``None``: ``registries.yaml`` in the rulesets folder."""
    database_url: str = "sqlite:///var/miaopi.db"
    max_body_bytes: int = Field(default=64 * 1024, gt=0)
    adapter_timeout_s: float = Field(default=2.0, gt=0)
    pseudonym_key: str = DEV_PSEUDONYM_KEY
    log_level: str = "INFO"
    public_base_url: str = ""

    @classmethod
    def from_env(cls, **overrides: object) -> Settings:
        env = os.environ
        values: dict[str, object] = {}
        mapping = {
            "data_dir": "MIAOPI_DATA_DIR",
            "rulesets_dir": "MIAOPI_RULESETS_DIR",
            "registries": "MIAOPI_REGISTRIES",
            "database_url": "DATABASE_URL",
            "max_body_bytes": "MIAOPI_MAX_BODY_BYTES",
            "adapter_timeout_s": "MIAOPI_ADAPTER_TIMEOUT_S",
            "pseudonym_key": "MIAOPI_PSEUDONYM_KEY",
            "log_level": "MIAOPI_LOG_LEVEL",
            "public_base_url": "MIAOPI_PUBLIC_BASE_URL",
        }
        for field, var in mapping.items():
            if env.get(var):
                values[field] = env[var]
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls.model_validate(values)
