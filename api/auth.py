"""Who is calling: API keys (the embedded default) and OIDC bearer tokens, each with roles.

Staff and the service platform authenticate with ``Authorization: Bearer <credential>``:

- an API key ``mpk_<id>_<secret>`` made by ``miaopi keys create --role …``. Only the
  SHA-256 of the secret is stored (the secret has 256 bits of entropy, so a slow hash would
  add nothing); a revoked key stops working on the next request;
- where the deployment has an identity provider, a JWT it signed, verified against its JWKS
  (issuer, audience, expiry), whose ``roles`` claim names our roles.

Citizens never hold a key: they read their own decision with its per-decision token
(``api.access``). Every staff action is written to ``staff_actions`` with who did it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Literal

import sqlalchemy as sa
import structlog
from sqlmodel import Field, Session, SQLModel, select

__all__ = [
    "ApiKeyRow",
    "AuthFailed",
    "Authenticator",
    "KeyStore",
    "OidcVerifier",
    "Principal",
    "Role",
    "StaffActionRow",
]

log = structlog.get_logger("miaopi.auth")

KEY_PREFIX = "mpk_"


class Role(StrEnum):
    PLATFORM = "platform"
    """The service platform (政务服务平台): posts applications."""
    REVIEWER = "reviewer"
    """Handles review cases: referrals, objections, requests for a human decision."""
    POLICY = "policy"
    """Policy staff (业务处室): read rulesets and their status."""
    AUDITOR = "auditor"
    """Verifies the log, replays decisions, exports records."""
    OPS = "ops"
    """Monitoring: reads ``/metrics`` and ``/v1/ops/health`` (no decision, no person)."""


class ApiKeyRow(SQLModel, table=True):
    __tablename__ = "api_keys"

    id: str = Field(primary_key=True, max_length=32)
    secret_sha256: str = Field(max_length=64)
    role: str = Field(max_length=16)
    label: str = Field(default="", max_length=200)
    created_at: dt.datetime
    created_by: str = Field(default="", max_length=200)
    revoked_at: dt.datetime | None = None


class StaffActionRow(SQLModel, table=True):
    """One thing a member of staff did, with who did it (never edited)."""

    __tablename__ = "staff_actions"

    id: int | None = Field(default=None, primary_key=True)
    at: dt.datetime
    actor: str = Field(max_length=200, index=True)
    role: str = Field(max_length=16)
    action: str = Field(max_length=64)
    target: str | None = Field(default=None, max_length=200)
    detail_json: str = Field(default="{}", sa_type=sa.Text)


@dataclass(frozen=True)
class Principal:
    """An authenticated caller: ``key:<id>`` or ``oidc:<issuer>#<sub>``, and its roles."""

    subject: str
    roles: frozenset[str]
    method: Literal["api_key", "oidc"]

    def has_any(self, roles: Iterable[str]) -> bool:
        return bool(self.roles.intersection(roles))


class AuthFailed(Exception):
    """401 (no or bad credential) or 403 (authenticated, wrong role)."""

    def __init__(self, status: int, code: str, zh: str, en: str) -> None:
        super().__init__(en)
        self.status = status
        self.code = code
        self.message_zh = zh
        self.message_en = en


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


class KeyStore:
    """API keys and the staff action log, in the service's database."""

    CACHE_S = 2.0
    """How long a key that opened is taken without reading the database again."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        self._opened: dict[str, tuple[float, Principal]] = {}

    def create_schema(self) -> None:
        """Bring the schema (keys and staff actions included) to head with the migrations."""
        from explanations.migrate import upgrade

        upgrade(self.engine)

    def create(self, role: Role | str, *, label: str = "", created_by: str = "") -> tuple[str, str]:
        """A new key for ``role``: its id and the full key, shown once and never stored."""
        role = Role(role)
        key_id = secrets.token_hex(6)
        secret = secrets.token_urlsafe(32)
        with Session(self.engine) as s:
            s.add(
                ApiKeyRow(
                    id=key_id,
                    secret_sha256=_sha256(secret),
                    role=role.value,
                    label=label,
                    created_at=dt.datetime.now(dt.UTC),
                    created_by=created_by,
                )
            )
            s.commit()
        return key_id, f"{KEY_PREFIX}{key_id}_{secret}"

    def list(self) -> Sequence[ApiKeyRow]:
        with Session(self.engine) as s:
            return s.exec(select(ApiKeyRow).order_by(sa.asc(sa.column("created_at")))).all()

    def revoke(self, key_id: str) -> bool:
        """Revoke a key; False when there is no such key (revoking twice is fine)."""
        self._opened.clear()
        with Session(self.engine) as s:
            row = s.get(ApiKeyRow, key_id)
            if row is None:
                return False
            if row.revoked_at is None:
                row.revoked_at = dt.datetime.now(dt.UTC)
                s.add(row)
                s.commit()
            return True

    def remembered(self, presented: str) -> Principal | None:
        """The principal of a key that opened less than ``CACHE_S`` ago (no database read);
        None when it must be looked up."""
        found = self._opened.get(_sha256(presented)) if presented.startswith(KEY_PREFIX) else None
        return found[1] if found is not None and found[0] > time.monotonic() else None

    def authenticate(self, presented: str) -> Principal | None:
        """The principal a presented API key stands for, or None (unknown, wrong or revoked).

        A key that opened is remembered for ``CACHE_S`` seconds (by its hash, never the key):
        a platform posting hundreds of decisions a second need not cost a database read
        each. A revocation here takes effect at once; one made by another process within
        ``CACHE_S``.
        """
        if not presented.startswith(KEY_PREFIX):
            return None
        remembered = self.remembered(presented)
        if remembered is not None:
            return remembered
        principal = self._authenticate(presented)
        if principal is not None:
            if len(self._opened) > 1024:
                self._opened.clear()
            self._opened[_sha256(presented)] = (time.monotonic() + self.CACHE_S, principal)
        return principal

    def _authenticate(self, presented: str) -> Principal | None:
        key_id, sep, secret = presented[len(KEY_PREFIX) :].partition("_")
        if not sep or not key_id.isascii() or len(key_id) > 32:
            return None
        table = ApiKeyRow.__table__  # type: ignore[attr-defined]
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.select(table.c.secret_sha256, table.c.role, table.c.revoked_at).where(
                    table.c.id == key_id
                )
            ).first()
        expected = row.secret_sha256 if row is not None else "0" * 64
        matches = hmac.compare_digest(expected.encode(), _sha256(secret).encode())
        if row is None or not matches or row.revoked_at is not None:
            return None
        return Principal(f"key:{key_id}", frozenset({row.role}), "api_key")

    def log_action(
        self, who: Principal, action: str, target: str | None = None, **detail: Any
    ) -> None:
        """Write what a member of staff did, and log it (the subject, never a secret)."""
        with Session(self.engine) as s:
            s.add(
                StaffActionRow(
                    at=dt.datetime.now(dt.UTC),
                    actor=who.subject,
                    role=",".join(sorted(who.roles)),
                    action=action,
                    target=target,
                    detail_json=json.dumps(detail, ensure_ascii=False, default=str),
                )
            )
            s.commit()
        log.info("staff_action", actor=who.subject, action=action, target=target)

    def actions(self, *, limit: int = 1000) -> Sequence[StaffActionRow]:
        with Session(self.engine) as s:
            return s.exec(
                select(StaffActionRow).order_by(sa.desc(sa.column("id"))).limit(limit)
            ).all()


class OidcVerifier:
    """Bearer JWTs from the deployment's identity provider, checked against its JWKS."""

    ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "ES256", "ES384", "EdDSA")

    def __init__(
        self, *, issuer: str, audience: str, jwks_url: str, roles_claim: str = "roles"
    ) -> None:
        import jwt

        self.issuer = issuer
        self.audience = audience
        self.roles_claim = roles_claim
        self._jwks = jwt.PyJWKClient(jwks_url, cache_keys=True, lifespan=300, timeout=5)

    def verify(self, token: str) -> Principal | None:
        import jwt

        try:
            key = self._jwks.get_signing_key_from_jwt(token)
            claims = jwt.decode(
                token,
                key.key,
                algorithms=list(self.ALGORITHMS),
                audience=self.audience,
                issuer=self.issuer,
                options={"require": ["exp", "iss", "aud", "sub"]},
            )
        except jwt.PyJWKClientConnectionError as exc:
            log.warning("oidc_jwks_unreachable", error=str(exc)[:200])
            return None
        except jwt.PyJWTError:
            return None
        raw = claims.get(self.roles_claim, [])
        names = raw.split() if isinstance(raw, str) else raw if isinstance(raw, list) else []
        roles = frozenset(str(r) for r in names if str(r) in Role.__members__.values())
        return Principal(f"oidc:{self.issuer}#{claims['sub']}", roles, "oidc")


class Authenticator:
    """API keys first (they carry a prefix), then, when configured, OIDC bearer JWTs."""

    def __init__(self, keys: KeyStore, oidc: OidcVerifier | None = None) -> None:
        self.keys = keys
        self.oidc = oidc

    @staticmethod
    def _bearer(authorization: str | None) -> str | None:
        """The credential of ``Authorization: Bearer <credential>``, or None."""
        if not authorization:
            return None
        scheme, _, credential = authorization.strip().partition(" ")
        credential = credential.strip()
        if scheme.lower() != "bearer" or not credential or len(credential) > 8192:
            return None
        return credential

    def principal(self, authorization: str | None) -> Principal | None:
        credential = self._bearer(authorization)
        if credential is None:
            return None
        if credential.startswith(KEY_PREFIX):
            return self.keys.authenticate(credential)
        if self.oidc is not None:
            return self.oidc.verify(credential)
        return None

    def require_at_once(self, authorization: str | None, roles: Iterable[str]) -> Principal | None:
        """``require`` where it needs no database or network (no credential, or an API key
        remembered from the last seconds); None when it does."""
        if not authorization:
            return self.require(authorization, roles)
        credential = self._bearer(authorization)
        who = self.keys.remembered(credential) if credential is not None else None
        return None if who is None else self._with_role(who, roles)

    def require(self, authorization: str | None, roles: Iterable[str]) -> Principal:
        """The caller if it holds one of ``roles``; else ``AuthFailed`` (401 or 403)."""
        who = self.principal(authorization)
        if who is None:
            if authorization:
                raise AuthFailed(
                    401,
                    "CREDENTIAL_INVALID",
                    "凭据无效、已吊销或已过期",
                    "the credential is invalid, revoked or expired",
                )
            raise AuthFailed(
                401,
                "AUTHENTICATION_REQUIRED",
                "需要身份认证（Authorization: Bearer …）",
                "authentication required (Authorization: Bearer …)",
            )
        return self._with_role(who, roles)

    @staticmethod
    def _with_role(who: Principal, roles: Iterable[str]) -> Principal:
        wanted = sorted(roles)
        if not who.has_any(wanted):
            raise AuthFailed(
                403,
                "ROLE_FORBIDDEN",
                f"此操作需要以下角色之一：{'、'.join(wanted)}",
                f"this needs one of the roles: {', '.join(wanted)}",
            )
        return who
