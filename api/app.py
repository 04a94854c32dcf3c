"""The FastAPI application factory: routes, error shapes, request ids, body limits."""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import gc
import json
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from typing import Annotated, Any, Literal

import orjson
import structlog
from fastapi import Depends, FastAPI, Header, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from fastapi_offline import FastAPIOffline
from starlette.exceptions import HTTPException as StarletteHTTPException

from api import metrics
from api.auth import Authenticator, AuthFailed, KeyStore, OidcVerifier, Principal, Role
from api.citizen import install_citizen_routes, review_view
from api.common import (
    AUTH_RESPONSES,
    AnyStaff,
    AppContext,
    ErrorBody,
    ServiceDep,
    TokenHeader,
    TokenQuery,
    error,
    staff,
)
from api.deployment import Deployment, load_deployment
from api.docs import install_redoc
from api.fastpath import FastDecisions, replaying
from api.logging import configure_logging
from api.openapi import document_errors
from api.ops import install_ops_routes
from api.service import DecisionRequest, DecisionService, RequestRejected, request_sha256
from api.settings import Settings
from api.staff import install_staff_routes
from api.strictjson import ApiError, StrictJSONRoute
from api.window import check_submitted_at
from explanations import (
    DecisionResponse,
    DecisionStore,
    ExplanationRecordV1,
    IdempotencyConflict,
    render_text,
)
from explanations.guide import load_guides
from explanations.log import Receipt
from explanations.review import CaseConflict, ReviewStore

__all__ = ["AppContext", "create_app"]

log = structlog.get_logger("miaopi.api")
Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


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
        await self.app(scope, replaying(messages, receive), send)

    async def _reject(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = error(
            413,
            "BODY_TOO_LARGE",
            f"请求体超过 {self.limit} 字节",
            f"request body larger than {self.limit} bytes",
        )
        await response(scope, receive, send)


class RequestContext:
    """Request id, the request log line and the HTTP metrics, as a pure ASGI middleware.

    ``X-Request-ID`` is taken from the request (or made) and returned on the answer; it is
    bound in structlog's context for every log line of the request. ``/docs`` and ``/redoc``
    get their Content-Security-Policy. The metrics name the route *template*, never the path.
    (A ``BaseHTTPMiddleware`` did this before at several times the cost per request.)
    """

    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]]) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = ""
        for name, value in scope.get("headers", []):
            if name == b"x-request-id":
                request_id = value.decode("latin-1")
                break
        request_id = request_id or uuid.uuid4().hex
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(request_id=request_id)
        path: str = scope["path"]
        docs = path in ("/docs", "/redoc")
        status = 500
        start = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                added = [(b"x-request-id", request_id.encode("latin-1"))]
                if docs:
                    # Assets are served from here; the ReDoc bundle's own "by Redocly" logo
                    # would otherwise be fetched from its CDN on every visit.
                    added.append((b"content-security-policy", _DOCS_POLICY.encode()))
                replaced = {name for name, _ in added}
                message["headers"] = [
                    (k, v) for k, v in message.get("headers", []) if k.lower() not in replaced
                ] + added
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            elapsed = time.perf_counter() - start
            method = scope["method"] if scope["method"] in metrics.METHODS else "OTHER"
            route = scope.get("route")
            template = getattr(route, "path_format", None) or metrics.UNMATCHED_ROUTE
            metrics.observe_request(method=method, route=template, status=status, seconds=elapsed)
            log.info(
                "request",
                method=scope["method"],
                path=path,
                status=status,
                ms=round(elapsed * 1000, 2),
            )


Platform = Annotated[Principal, Depends(staff(Role.PLATFORM))]
IDEMPOTENCY_KEY_PATTERN = r"^[!-~]{1,200}$"
"""Visible ASCII, at most 200 characters: the key is stored and compared as given."""
_HTTP_ERRORS: dict[int, tuple[str, str, str]] = {
    400: ("BAD_REQUEST", "请求有误", "bad request"),
    404: ("NOT_FOUND", "未找到", "not found"),
    405: ("METHOD_NOT_ALLOWED", "不支持此请求方法", "method not allowed"),
    413: ("BODY_TOO_LARGE", "请求体过大", "request body too large"),
    415: ("UNSUPPORTED_MEDIA_TYPE", "不支持的请求体类型", "unsupported media type"),
}
"""Codes for the HTTP errors FastAPI and Starlette raise themselves (unknown route, method …)."""
_DOCS_POLICY = (
    "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; worker-src 'self' blob:; connect-src 'self'; font-src 'self' data:"
)


def _rejection(exc: RequestRejected) -> JSONResponse:
    return error(exc.status, exc.code, exc.message_zh, exc.message_en, exc.fields)


def _key_reused() -> JSONResponse:
    return error(
        422,
        "IDEMPOTENCY_KEY_REUSED",
        "该幂等键已用于另一份不同的申请",
        "this Idempotency-Key was already used with a different request body",
    )


class _DecisionJSON(JSONResponse):
    """A decision's answer: compact JSON as ``JSONResponse`` writes it, by orjson (~5× json's
    speed; a float may be spelt otherwise, 1e16 for 1e+16), or by json for what orjson does
    not write (ints beyond 64 bits)."""

    def render(self, content: Any) -> bytes:
        try:
            return orjson.dumps(content)
        except TypeError:
            return super().render(content)


def build_context(settings: Settings, service: DecisionService | None = None) -> AppContext:
    """Open the stores and load the rulesets and registries; refuse without secrets."""
    secrets = settings.secrets()
    deployment: Deployment | None = None
    if service is None:
        deployment = load_deployment(
            rulesets_dir=settings.rulesets_dir,
            data_dir=settings.data_dir,
            registries=settings.registries,
            registry_url=settings.registry_url,
        )
        store = DecisionStore(
            settings.database_url,
            signing_key=secrets.signing_key,
            checkpoint_file=settings.checkpoints,
        )
        store.create_schema(migrate=settings.migrate)
        service = DecisionService(
            catalog=deployment.rulesets,
            adapters=deployment.adapters,
            registries=deployment.registries,
            store=store,
            pseudonym_key=secrets.pseudonym_key,
            budget_ms=settings.evidence_budget_ms,
            budgets=settings.evidence_budgets,
        )
    assert service.store is not None
    store = service.store
    keys = KeyStore(store.engine)
    oidc = None
    if settings.oidc_issuer and settings.oidc_jwks_url:
        oidc = OidcVerifier(
            issuer=settings.oidc_issuer,
            audience=settings.oidc_audience or "miaopi",
            jwks_url=settings.oidc_jwks_url,
            roles_claim=settings.oidc_roles_claim,
        )
    guides, problems = load_guides(settings.rulesets_dir)
    for problem in problems:
        log.warning("service_guide_problem", problem=problem)

    def working_days(service_code: str, kind: str) -> int:
        """A case is due this many working days after it opens (the guide's review period)."""
        guide = guides.get(service_code)
        return guide.review.working_days if guide is not None else settings.review_days

    reviews = ReviewStore(store, working_days=working_days, clock=service.clock)
    service.on_stored = reviews.referral_hook
    if settings.commit_socket:
        from explanations.committer import CommitProcessClient

        store.commit_through(
            CommitProcessClient(settings.commit_socket),
            hook=reviews.referral_hook,
            case_of=reviews.referral_case,
        )
    service.guides = guides
    return AppContext(
        settings=settings,
        service=service,
        store=store,
        reviews=reviews,
        auth=Authenticator(keys, oidc),
        token_keys=secrets.token_keys,
        signing_key=secrets.signing_key,
        deployment=deployment,
        guides=guides,
    )


def create_app(
    settings: Settings | None = None, *, service: DecisionService | None = None
) -> FastAPI:
    """Build the service from ``settings`` (read from the environment when not given)."""
    settings = settings or Settings.from_env()
    configure_logging(settings.log_level)
    ctx = build_context(settings, service)
    svc = ctx.service

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        # What is loaded by now (rulesets, registries, the app) lives as long as the process:
        # out of the collector's sight, a full collection no longer walks it (~85 ms a time
        # with the demo registries, the p99 of every request caught behind one).
        gc.collect()
        gc.freeze()
        # A decision holds ~1,000 containers while in flight and frees every one of them by
        # reference counting when it ends (it makes no reference cycles: a test holds that).
        # At the default threshold (700 net allocations) the young generation was collected
        # every ~8 decisions, scanning the objects of the decisions in flight and promoting
        # them to be scanned again (~2% of a decision's CPU), to free nothing. The collector
        # still runs, for what other paths may leave in cycles, every 10,000.
        gc.set_threshold(10_000, *gc.get_threshold()[1:])
        yield
        ctx.store.write_checkpoint()  # the last signed head, filed outside the database

    app = FastAPIOffline(
        redoc_url=None,
        # FastAPI's OpenTelemetry hook asks the environment for a tracer on every request;
        # the service reports through /metrics and its logs instead.
        telemetry={"tracing": False, "metrics": False, "logs": False},
        lifespan=lifespan,
        title="秒批 Miaopi — instant-approval decision engine",
        version="0.1.0",
        description=(
            "自动审批服务：结构化申请 → 版本化规则 → 共享数据核验 → 可审计的决定与说明。\n\n"
            "Staff authenticate with `Authorization: Bearer <key>` (API keys from "
            "`miaopi keys create --role platform|reviewer|policy|auditor`, or OIDC tokens); "
            "citizens open their own decision with its `access_token`."
        ),
    )
    app.router.route_class = StrictJSONRoute  # JSON bodies read strictly (api.strictjson)
    app.state.service = svc
    app.state.settings = settings
    app.state.ctx = ctx
    install_redoc(app)
    document_errors(app)

    # Innermost: well-formed decision requests skip the framework (api.fastpath); the body
    # limit and the request context still apply to them.
    app.add_middleware(
        FastDecisions,
        auth=lambda: ctx.auth,
        endpoint=lambda body, key: decide(body, key),
        route=lambda: _decision_route(),
    )
    app.add_middleware(BodyLimit, limit=settings.max_body_bytes)
    app.add_middleware(RequestContext)  # outermost: a 413 is logged and counted too

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code in (204, 304):  # no body allowed
            return Response(status_code=exc.status_code, headers=exc.headers)
        if isinstance(exc, ApiError):
            response = error(exc.status_code, exc.code, exc.message_zh, exc.message_en, exc.fields)
        else:
            code, zh, en = _HTTP_ERRORS.get(
                exc.status_code,
                (f"HTTP_{exc.status_code}", "请求无法处理", "the request cannot be handled"),
            )
            response = error(exc.status_code, code, zh, en)
        response.headers.update(exc.headers or {})
        return response

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        if any(tuple(e["loc"][:2]) == ("header", "idempotency-key") for e in errors):
            return error(
                400,
                "IDEMPOTENCY_KEY_INVALID",
                "Idempotency-Key 须为1至200个可见ASCII字符（不含空格）",
                "the Idempotency-Key must be 1 to 200 visible ASCII characters (no spaces)",
                [
                    {
                        "loc": ["header", "idempotency-key"],
                        "msg": "1-200 characters ! to ~",
                        "type": "idempotency_key",
                    }
                ],
            )
        if any(e.get("type") == "json_invalid" for e in errors):
            return error(
                400,
                "MALFORMED_JSON",
                "请求体不是合法的JSON",
                "the request body is not valid JSON",
                [{"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]} for e in errors],
            )
        fields = [
            {"loc": [str(p) for p in e["loc"]], "msg": e["msg"], "type": e["type"]} for e in errors
        ]
        return error(422, "INVALID_REQUEST", "请求字段有误", "some fields are invalid", fields)

    @app.exception_handler(RequestRejected)
    async def _rejected(_: Request, exc: RequestRejected) -> JSONResponse:
        return _rejection(exc)

    @app.exception_handler(AuthFailed)
    async def _auth_failed(_: Request, exc: AuthFailed) -> JSONResponse:
        response = error(exc.status, exc.code, exc.message_zh, exc.message_en)
        if exc.status == 401:
            response.headers["WWW-Authenticate"] = "Bearer"
        return response

    @app.exception_handler(CaseConflict)
    async def _case_conflict(_: Request, exc: CaseConflict) -> JSONResponse:
        return error(409, exc.code, exc.message_zh, exc.message_en)

    @app.exception_handler(IdempotencyConflict)
    async def _conflict(_: Request, exc: IdempotencyConflict) -> JSONResponse:
        return _key_reused()

    @app.get("/livez", tags=["ops"], response_class=PlainTextResponse)
    def livez() -> PlainTextResponse:
        """Liveness: the process answers (no database, no registries; for probes and benchmarks)."""
        return PlainTextResponse("ok")

    @app.post(
        "/v1/decisions",
        tags=["decisions"],
        status_code=201,
        response_model=DecisionResponse,
        responses={
            **AUTH_RESPONSES,
            400: {
                "model": ErrorBody,
                "description": "no Idempotency-Key or an invalid one, or malformed JSON",
            },
            404: {"model": ErrorBody, "description": "unknown service"},
            413: {"model": ErrorBody, "description": "body too large"},
            422: {
                "model": ErrorBody,
                "description": "invalid fields, submitted_at in the future or before the service "
                "existed, no version in force, key reused, a resident ID number inside "
                "application_id or Idempotency-Key (PERSONAL_DATA_IN_IDENTIFIER)",
            },
            503: {
                "model": ErrorBody,
                "description": "the service cannot decide now: its ruleset or a registry it "
                "needs is not available (see /healthz); nothing is stored",
            },
        },
    )
    async def post_decision(
        body: DecisionRequest,
        _who: Platform,
        idempotency_key: Annotated[
            str | None,
            Header(
                pattern=IDEMPOTENCY_KEY_PATTERN,
                description="1–200 visible ASCII characters; a retry sends the same key",
            ),
        ] = None,
    ) -> JSONResponse:
        """Decide one application (role ``platform``). Same ``Idempotency-Key`` and body → the same decision.

        The answer carries the citizen's ``access_token`` and a ``receipt``: the record's
        inclusion proof in the signed log (check it offline with ``miaopi receipt verify``).
        """
        if not idempotency_key:
            return error(
                400,
                "IDEMPOTENCY_KEY_REQUIRED",
                "缺少 Idempotency-Key 请求头",
                "the Idempotency-Key header is required",
            )
        return await decide(body, idempotency_key)

    async def decide(body: DecisionRequest, idempotency_key: str) -> JSONResponse:
        """Decide a validated request: the route's work, and the fast path's (api.fastpath)."""
        structlog.contextvars.bind_contextvars(application_id=body.application_id)
        try:
            check_submitted_at(
                body,
                now=svc.clock(),
                catalog=svc.catalog,
                max_skew=dt.timedelta(seconds=settings.max_clock_skew_s),
            )
            stored = await svc.decide_async(
                body,
                idempotency_key=idempotency_key,
                body_sha256=request_sha256(body.model_dump(mode="json")),
            )
        except RequestRejected as exc:
            return _rejection(exc)
        except IdempotencyConflict:
            return _key_reused()
        structlog.contextvars.bind_contextvars(decision_id=stored.decision_id)
        return _DecisionJSON(
            _delivered(stored.response, stored.receipt),
            status_code=201,  # a retry gets the very same response; the header tells them apart
            headers={"Idempotent-Replayed": "true" if stored.replayed else "false"},
        )

    @functools.cache  # looked up on the first fast request, not on every one
    def _decision_route() -> Any:
        return next(
            r
            for r in app.router.routes
            if getattr(r, "path", None) == "/v1/decisions" and "POST" in getattr(r, "methods", ())
        )

    def _delivered(response: dict[str, Any], receipt: Receipt | None) -> dict[str, Any]:
        token = ctx.token_for(response["decision_id"])
        delivered = {
            **response,
            "access_token": token,
            "receipt": receipt.model_dump(mode="json") if receipt is not None else None,
        }
        if "explanation_url" in response:  # an automated decision (a human one has no page)
            delivered["explanation_url"] = f"{response['explanation_url']}?token={token}"
            delivered["page_url"] = (
                f"{settings.public_base_url}/explain/{response['decision_id']}?token={token}"
            )
        return delivered

    def _denied(decision_id: str, token: str | None, header: str | None) -> JSONResponse | None:
        return ctx.token_refusal(decision_id, token or header)

    def _readable_record(
        decision_id: str, token: str | None, header: str | None
    ) -> ExplanationRecordV1 | JSONResponse:
        """The stored record if the token opens it, else the refusal to send."""
        if (refused := _denied(decision_id, token, header)) is not None:
            return refused
        record = ctx.store.get_record(decision_id)
        if record is None:
            return error(404, "DECISION_NOT_FOUND", "未找到该决定", f"no decision {decision_id}")
        return record

    def _text(record: ExplanationRecordV1, lang: str) -> str:
        cases = ctx.reviews.cases_of(record.decision_id)
        return render_text(
            record,
            lang=lang,
            guide=ctx.guides.get(record.service),
            counterfactuals=record.counterfactuals,
            review=review_view(cases[-1], ctx) if cases else None,
            registries=svc.registries,
        )

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
        token: TokenQuery = None,
        x_access_token: TokenHeader = None,
    ) -> JSONResponse:
        """The decision as first answered, with its receipt. Needs the decision's access token."""
        if (refused := _denied(decision_id, token, x_access_token)) is not None:
            return refused
        row = ctx.store.get_decision(decision_id)
        if row is None:
            return error(404, "DECISION_NOT_FOUND", "未找到该决定", f"no decision {decision_id}")
        return JSONResponse(
            _delivered(json.loads(row.response_json), ctx.store.receipt(decision_id))
        )

    @app.get(
        "/v1/decisions/{decision_id}/explanation", tags=["decisions"], responses=denied_responses
    )
    def get_explanation(
        decision_id: str,
        token: TokenQuery = None,
        x_access_token: TokenHeader = None,
    ) -> JSONResponse:
        """The explanation record plus plain-language text (zh-CN, then English). Needs the token."""
        record = _readable_record(decision_id, token, x_access_token)
        if isinstance(record, JSONResponse):
            return record
        return JSONResponse(
            {
                "decision_id": decision_id,
                "outcome": record.outcome.value,
                "text_zh": _text(record, "zh"),
                "text_en": _text(record, "en"),
                "record": record.model_dump(mode="json"),
            }
        )

    @app.get(
        "/v1/decisions/{decision_id}/explanation.txt",
        tags=["decisions"],
        response_class=PlainTextResponse,
        responses=denied_responses,
    )
    def get_explanation_text(
        decision_id: str,
        token: TokenQuery = None,
        x_access_token: TokenHeader = None,
        lang: Annotated[Literal["zh", "en"], Query(description="zh (default) or en")] = "zh",
    ) -> Response:
        """The explanation as plain text for the citizen, in one language. Needs the token."""
        record = _readable_record(decision_id, token, x_access_token)
        if isinstance(record, JSONResponse):
            return record
        return PlainTextResponse(_text(record, lang))

    @app.get("/v1/rulesets", tags=["rulesets"], responses=AUTH_RESPONSES)
    def list_rulesets(svc: ServiceDep, _who: AnyStaff) -> list[dict[str, Any]]:
        """Every loaded ruleset version (any staff role)."""
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

    @app.get(
        "/v1/rulesets/{service}/{version}",
        tags=["rulesets"],
        responses={**AUTH_RESPONSES, 404: {"model": ErrorBody, "description": "no such version"}},
    )
    def get_ruleset(service: str, version: str, svc: ServiceDep, _who: AnyStaff) -> JSONResponse:
        """One ruleset version as loaded, with its content hash (any staff role)."""
        if service not in svc.catalog.services():
            return error(
                404, "UNKNOWN_SERVICE", f"未知的事项编码 {service}", f"unknown service {service}"
            )
        rs = svc.catalog.get(service, version)
        if rs is None:
            return error(
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

    install_citizen_routes(app, ctx)
    install_staff_routes(app, ctx)
    install_ops_routes(app, ctx)

    return app
