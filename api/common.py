"""What every route shares: the error shape, the application context, role checks."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Annotated, Any

import structlog
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi import Depends, Header, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel

from api.access import access_token, token_matches
from api.auth import Authenticator, Principal, Role
from api.deployment import Deployment
from api.service import DecisionService
from api.settings import Settings
from explanations import DecisionStore
from explanations.review import ReviewStore

__all__ = [
    "AUTH_RESPONSES",
    "AnyStaff",
    "AppContext",
    "ContextDep",
    "ErrorBody",
    "ServiceDep",
    "TokenHeader",
    "TokenQuery",
    "error",
    "get_context",
    "staff",
]


class ErrorDetail(BaseModel):
    code: str
    message_zh: str
    message_en: str
    fields: list[dict[str, Any]] | None = None


class ErrorBody(BaseModel):
    """Every 4xx answer: a stable code, a Chinese and an English message, field locations."""

    error: ErrorDetail


def error(
    status: int, code: str, zh: str, en: str, fields: list[dict[str, Any]] | None = None
) -> JSONResponse:
    body: dict[str, Any] = {"error": {"code": code, "message_zh": zh, "message_en": en}}
    if fields:
        body["error"]["fields"] = fields
    return JSONResponse(body, status_code=status)


@dataclass
class AppContext:
    """What the routes share: the decision service, the stores, who may do what."""

    settings: Settings
    service: DecisionService
    store: DecisionStore
    reviews: ReviewStore
    auth: Authenticator
    token_keys: list[bytes]
    signing_key: Ed25519PrivateKey
    deployment: Deployment | None = None
    guides: dict[str, Any] = field(default_factory=dict)

    def token_for(self, decision_id: str) -> str:
        return access_token(decision_id, key=self.token_keys[0])

    def token_opens(self, decision_id: str, token: str | None) -> bool:
        return bool(token) and token_matches(decision_id, token or "", keys=self.token_keys)

    def token_refusal(self, decision_id: str, token: str | None) -> JSONResponse | None:
        """401 without a token, 403 with one that does not open ``decision_id``, else None."""
        if not token:
            return error(
                401,
                "ACCESS_TOKEN_REQUIRED",
                "需要访问令牌（决定答复中的 access_token）",
                "this needs the decision's access token (?token= or X-Access-Token)",
            )
        if not self.token_opens(decision_id, token):
            return error(
                403,
                "ACCESS_TOKEN_INVALID",
                "访问令牌无效",
                "the access token does not open this decision",
            )
        return None


# The dependencies are coroutines: FastAPI runs a plain function in the thread pool, a hop
# (queue, wake-up, GIL hand-off) per dependency per request, which cost more than they do.
async def get_service(request: Request) -> DecisionService:
    """The decision service the application was built with."""
    service: DecisionService = request.app.state.service
    return service


async def get_context(request: Request) -> AppContext:
    ctx: AppContext = request.app.state.ctx
    return ctx


_bearer = HTTPBearer(auto_error=False, description="API key (mpk_…) or OIDC access token")


def staff(*roles: Role) -> Callable[..., Awaitable[Principal]]:
    """A dependency: the caller, if authenticated with one of ``roles`` (else 401/403)."""

    async def dependency(
        request: Request,
        _credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)] = None,
    ) -> Principal:
        auth: Authenticator = request.app.state.ctx.auth
        header = request.headers.get("authorization")
        # A key seen in the last seconds is checked here; a first sight reads the database
        # (or an OIDC key set) in the thread pool, off the event loop.
        who = auth.require_at_once(header, roles)
        if who is None:
            who = await run_in_threadpool(auth.require, header, roles)
        structlog.contextvars.bind_contextvars(actor=who.subject)
        return who

    dependency.__name__ = "staff_" + "_".join(roles)
    return dependency


# Module level, not inside create_app: with ``from __future__ import annotations`` FastAPI
# resolves the string annotations of the route functions in this module's globals.
ServiceDep = Annotated[DecisionService, Depends(get_service)]
ContextDep = Annotated[AppContext, Depends(get_context)]
TokenQuery = Annotated[str | None, Query(alias="token", description="the decision's access_token")]
TokenHeader = Annotated[str | None, Header(alias="X-Access-Token")]
AnyStaff = Annotated[
    Principal, Depends(staff(Role.PLATFORM, Role.POLICY, Role.REVIEWER, Role.AUDITOR))
]

AUTH_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {
        "model": ErrorBody,
        "description": "no credential, or an invalid, revoked or expired one",
    },
    403: {"model": ErrorBody, "description": "authenticated, but without the role this needs"},
}
