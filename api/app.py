"""The FastAPI application factory: routes, error shapes, request ids, body limits."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Annotated, Any

import structlog
from fastapi import Depends, FastAPI, Header, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from pydantic import BaseModel

from api.access import access_token, token_matches
from api.deployment import Deployment, load_deployment
from api.logging import configure_logging
from api.service import DecisionRequest, DecisionService, RequestRejected, request_sha256
from api.settings import DEV_PSEUDONYM_KEY, Settings
from explanations import (
    DecisionResponse,
    DecisionStore,
    ExplanationRecordV1,
    IdempotencyConflict,
    render_text,
)

__all__ = ["create_app"]

log = structlog.get_logger("miaopi.api")
Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


class ErrorDetail(BaseModel):
    code: str
    message_zh: str
    message_en: str
    fields: list[dict[str, Any]] | None = None


class ErrorBody(BaseModel):
    """Every 4xx answer: a stable code, a Chinese and an English message, field locations."""

    error: ErrorDetail


def _error(
    status: int, code: str, zh: str, en: str, fields: list[dict[str, Any]] | None = None
) -> JSONResponse:
    body: dict[str, Any] = {"error": {"code": code, "message_zh": zh, "message_en": en}}
    if fields:
        body["error"]["fields"] = fields
    return JSONResponse(body, status_code=status)


class BodyLimit:
    """Refuse request bodies over ``limit`` bytes with 413, declared or streamed."""

    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]], limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", []):
            if name == b"content-length" and value.isdigit() and int(value) > self.limit:
                await self._reject(scope, receive, send)
                return
        # Read (at most ``limit`` bytes of) the body before the app sees it: an exception raised
        # from inside ``receive`` would reach FastAPI first, which turns it into a generic 400.
        messages: list[Message] = []
        seen = 0
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                break
            seen += len(message.get("body", b""))
            if seen > self.limit:
                await self._reject(scope, receive, send)
                return
            if not message.get("more_body", False):
                break
        buffered = iter(messages)

        async def replay() -> Message:
            for message in buffered:
                return message
            return await receive()

        await self.app(scope, replay, send)

    async def _reject(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = _error(
            413,
            "BODY_TOO_LARGE",
            f"请求体超过 {self.limit} 字节",
            f"request body larger than {self.limit} bytes",
        )
        await response(scope, receive, send)


def get_service(request: Request) -> DecisionService:
    """The decision service the application was built with."""
    service: DecisionService = request.app.state.service
    return service


# Module level, not inside create_app: with ``from __future__ import annotations`` FastAPI
# resolves the string annotations of the route functions in this module's globals.
ServiceDep = Annotated[DecisionService, Depends(get_service)]
TokenQuery = Annotated[str | None, Query(alias="token", description="the decision's access_token")]
TokenHeader = Annotated[str | None, Header(alias="X-Access-Token")]


def create_app(
    settings: Settings | None = None, *, service: DecisionService | None = None
) -> FastAPI:
    """Build the service from ``settings`` (read from the environment when not given)."""
    settings = settings or Settings.from_env()
    configure_logging(settings.log_level)
    deployment: Deployment | None = None
    if service is None:
        deployment = load_deployment(
            rulesets_dir=settings.rulesets_dir,
            data_dir=settings.data_dir,
            registries=settings.registries,
        )
        store = DecisionStore(settings.database_url)
        store.create_schema()
        service = DecisionService(
            catalog=deployment.rulesets,
            adapters=deployment.adapters,
            registries=deployment.registries,
            store=store,
            pseudonym_key=settings.pseudonym_key,
            adapter_timeout_s=settings.adapter_timeout_s,
        )
    if settings.pseudonym_key == DEV_PSEUDONYM_KEY:
        log.warning("development_pseudonym_key", hint="set MIAOPI_PSEUDONYM_KEY in production")
    svc = service
    access_key = ("access:" + settings.pseudonym_key).encode("utf-8")

    app = FastAPI(
        title="秒批 Miaopi — instant-approval decision engine",
        version="0.1.0",
        description="自动审批服务：结构化申请 → 版本化规则 → 共享数据核验 → 可审计的决定与说明。",
    )
    app.state.service = svc
    app.state.settings = settings

    @app.middleware("http")
    async def request_context(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        request_id = request.headers.get("x-request-id") or uuid.uuid4().hex
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(request_id=request_id)
        start = time.perf_counter()
        response = await call_next(request)
        response.headers["X-Request-ID"] = request_id
        log.info(
            "request",
            method=request.method,
            path=request.url.path,
            status=response.status_code,
            ms=round((time.perf_counter() - start) * 1000, 2),
        )
        return response

    app.add_middleware(BodyLimit, limit=settings.max_body_bytes)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        if any(e.get("type") == "json_invalid" for e in errors):
            return _error(
                400,
                "MALFORMED_JSON",
                "请求体不是合法的JSON",
                "the request body is not valid JSON",
                [{"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]} for e in errors],
            )
        fields = [
            {"loc": [str(p) for p in e["loc"]], "msg": e["msg"], "type": e["type"]} for e in errors
        ]
        return _error(422, "INVALID_REQUEST", "请求字段有误", "some fields are invalid", fields)

    @app.exception_handler(RequestRejected)
    async def _rejected(_: Request, exc: RequestRejected) -> JSONResponse:
        return _error(exc.status, exc.code, exc.message_zh, exc.message_en, exc.fields)

    @app.exception_handler(IdempotencyConflict)
    async def _conflict(_: Request, exc: IdempotencyConflict) -> JSONResponse:
        return _error(
            422,
            "IDEMPOTENCY_KEY_REUSED",
            "该幂等键已用于另一份不同的申请",
            "this Idempotency-Key was already used with a different request body",
        )

    @app.get("/healthz", tags=["ops"])
    def healthz() -> dict[str, Any]:
        """Which registries loaded and which rulesets can decide (``degraded`` if any cannot)."""
        if deployment is not None:
            body = deployment.health()
        else:
            rulesets = svc.catalog.status()
            body = {
                "status": "ok" if all(r["servable"] for r in rulesets) else "degraded",
                "rulesets": rulesets,
            }
        body["decisions"] = svc.store.count() if svc.store else None
        return body

    @app.post(
        "/v1/decisions",
        tags=["decisions"],
        status_code=201,
        response_model=DecisionResponse,
        responses={
            400: {"model": ErrorBody, "description": "no Idempotency-Key, or malformed JSON"},
            404: {"model": ErrorBody, "description": "unknown service"},
            413: {"model": ErrorBody, "description": "body too large"},
            422: {
                "model": ErrorBody,
                "description": "invalid fields, no version in force, key reused",
            },
            503: {
                "model": ErrorBody,
                "description": "the service cannot decide now: its ruleset or a registry it "
                "needs is not available (see /healthz); nothing is stored",
            },
        },
    )
    def post_decision(
        body: DecisionRequest,
        svc: ServiceDep,
        idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
    ) -> JSONResponse:
        """Decide one application. Same ``Idempotency-Key`` and body → the same decision."""
        if not idempotency_key:
            return _error(
                400,
                "IDEMPOTENCY_KEY_REQUIRED",
                "缺少 Idempotency-Key 请求头",
                "the Idempotency-Key header is required",
            )
        structlog.contextvars.bind_contextvars(application_id=body.application_id)
        stored = svc.decide(
            body,
            idempotency_key=idempotency_key,
            body_sha256=request_sha256(body.model_dump(mode="json")),
        )
        structlog.contextvars.bind_contextvars(decision_id=stored.decision_id)
        return JSONResponse(
            _with_token(stored.response),
            status_code=201,  # a retry gets the very same response; the header tells them apart
            headers={"Idempotent-Replayed": "true" if stored.replayed else "false"},
        )

    def _with_token(response: dict[str, Any]) -> dict[str, Any]:
        token = access_token(response["decision_id"], key=access_key)
        return {
            **response,
            "access_token": token,
            "explanation_url": f"{response['explanation_url']}?token={token}",
        }

    def _denied(decision_id: str, token: str | None, header: str | None) -> JSONResponse | None:
        presented = token or header
        if not presented:
            return _error(
                401,
                "ACCESS_TOKEN_REQUIRED",
                "查看决定需要访问令牌（决定答复中的 access_token）",
                "reading a decision needs its access token (?token= or X-Access-Token)",
            )
        if not token_matches(decision_id, presented, key=access_key):
            return _error(
                403,
                "ACCESS_TOKEN_INVALID",
                "访问令牌无效",
                "the access token does not open this decision",
            )
        return None

    def _readable_record(
        svc: DecisionService, decision_id: str, token: str | None, header: str | None
    ) -> ExplanationRecordV1 | JSONResponse:
        """The stored record if the token opens it, else the refusal to send."""
        if (refused := _denied(decision_id, token, header)) is not None:
            return refused
        assert svc.store is not None
        record = svc.store.get_record(decision_id)
        if record is None:
            return _error(404, "DECISION_NOT_FOUND", "未找到该决定", f"no decision {decision_id}")
        return record

    denied_responses: dict[int | str, dict[str, Any]] = {
        401: {"model": ErrorBody, "description": "no access token"},
        403: {"model": ErrorBody, "description": "wrong access token"},
        404: {"model": ErrorBody, "description": "no such decision"},
    }

    @app.get(
        "/v1/decisions/{decision_id}",
        tags=["decisions"],
        response_model=DecisionResponse,
        responses=denied_responses,
    )
    def get_decision(
        decision_id: str,
        svc: ServiceDep,
        token: TokenQuery = None,
        x_access_token: TokenHeader = None,
    ) -> JSONResponse:
        """The decision as first answered. Needs the decision's access token."""
        if (refused := _denied(decision_id, token, x_access_token)) is not None:
            return refused
        assert svc.store is not None
        row = svc.store.get_decision(decision_id)
        if row is None:
            return _error(404, "DECISION_NOT_FOUND", "未找到该决定", f"no decision {decision_id}")
        return JSONResponse(_with_token(json.loads(row.response_json)))

    @app.get(
        "/v1/decisions/{decision_id}/explanation", tags=["decisions"], responses=denied_responses
    )
    def get_explanation(
        decision_id: str,
        svc: ServiceDep,
        token: TokenQuery = None,
        x_access_token: TokenHeader = None,
    ) -> JSONResponse:
        """The explanation record plus plain-language text (zh-CN, then English). Needs the token."""
        record = _readable_record(svc, decision_id, token, x_access_token)
        if isinstance(record, JSONResponse):
            return record
        return JSONResponse(
            {
                "decision_id": decision_id,
                "outcome": record.outcome.value,
                "text_zh": render_text(record, lang="zh"),
                "text_en": render_text(record, lang="en"),
                "record": record.model_dump(mode="json"),
            }
        )

    @app.get(
        "/v1/decisions/{decision_id}/explanation.txt",
        tags=["decisions"],
        response_class=PlainTextResponse,
    )
    def get_explanation_text(
        decision_id: str,
        svc: ServiceDep,
        token: TokenQuery = None,
        x_access_token: TokenHeader = None,
    ) -> Response:
        """The explanation as plain text for the citizen. Needs the token."""
        record = _readable_record(svc, decision_id, token, x_access_token)
        if isinstance(record, JSONResponse):
            return record
        return PlainTextResponse(
            render_text(record, lang="zh") + "\n\n" + render_text(record, lang="en")
        )

    @app.get("/v1/rulesets", tags=["rulesets"])
    def list_rulesets(svc: ServiceDep) -> list[dict[str, Any]]:
        return [
            {
                "service": rs.service,
                "version": rs.version,
                "name_zh": rs.doc.name.zh,
                "name_en": rs.doc.name.en,
                "status": rs.doc.status,
                "effective_from": rs.doc.effective_from.isoformat(),
                "effective_to": rs.doc.effective_to.isoformat() if rs.doc.effective_to else None,
                "content_hash": rs.content_hash,
            }
            for rs in svc.catalog
        ]

    @app.get("/v1/rulesets/{service}/{version}", tags=["rulesets"])
    def get_ruleset(service: str, version: str, svc: ServiceDep) -> JSONResponse:
        if service not in svc.catalog.services():
            return _error(
                404, "UNKNOWN_SERVICE", f"未知的事项编码 {service}", f"unknown service {service}"
            )
        rs = svc.catalog.get(service, version)
        if rs is None:
            return _error(
                404,
                "UNKNOWN_VERSION",
                f"{service} 没有版本 {version}",
                f"{service} has no version {version}",
            )
        return JSONResponse(
            {
                "content_hash": rs.content_hash,
                "status": rs.doc.status,
                "ruleset": rs.doc.model_dump(mode="json"),
            }
        )

    return app
