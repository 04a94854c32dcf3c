"""Operations routes: liveness (``/healthz``), readiness (``/readyz``), ``/metrics``, and the
full health report for staff (``/v1/ops/health``).

What anyone may read tells nothing private: no decision count, no file path, no registry
row or value, no database error text (it can hold a host name or a user). ``/metrics``
carries counts by service, outcome, registry and route template only, yet it still says
how much the service decides, so it is not public by default: ``MIAOPI_METRICS_ACCESS``
``local`` (the default) lets a caller on this machine in (loopback address and no proxy
header: a reverse proxy on the same host adds ``X-Forwarded-For``/``Forwarded``) and asks
anyone else for an API key of role ``ops`` or ``auditor``; ``key`` always asks for one;
``open`` lets anyone read ``/metrics``. ``/v1/ops/health`` (paths, problems in full, the
decision count) is never open.
"""

from __future__ import annotations

import threading
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Annotated, Any, Literal

import sqlalchemy as sa
from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict

from api import metrics
from api.auth import Role
from api.common import AUTH_RESPONSES, AppContext, staff
from engine.catalog import IN_FORCE_STATUSES
from explanations.store import ChainHead

__all__ = ["Readiness", "install_ops_routes"]

DATABASE_TIMEOUT_S = 2.0
"""How long ``/readyz`` waits for the database's answer."""
_LOOPBACK = frozenset({"127.0.0.1", "::1"})
_PROXY_HEADERS = ("forwarded", "x-forwarded-for", "x-real-ip")

_ops_bearer = HTTPBearer(auto_error=False, description="API key of role ops or auditor")
_ops_key = staff(Role.OPS, Role.AUDITOR)
OpsCredentials = Annotated[HTTPAuthorizationCredentials | None, Depends(_ops_bearer)]


def on_this_machine(request: Request) -> bool:
    """The caller connected from loopback and no proxy says it forwards someone else."""
    client = request.client
    if client is None or client.host not in _LOOPBACK:
        return False
    return not any(h in request.headers for h in _PROXY_HEADERS)


async def ops_reader(request: Request, _credentials: OpsCredentials = None) -> None:
    """A dependency: a caller on this machine (unless the setting is ``key``), or an ops or
    auditor key (else 401/403)."""
    ctx: AppContext = request.app.state.ctx
    if ctx.settings.metrics_access != "key" and on_this_machine(request):
        return
    await _ops_key(request)


async def metrics_reader(request: Request, _credentials: OpsCredentials = None) -> None:
    """A dependency: anyone when the setting is ``open``, else as ``ops_reader``."""
    ctx: AppContext = request.app.state.ctx
    if ctx.settings.metrics_access == "open":
        return
    await ops_reader(request)


OpsReader = Annotated[None, Depends(ops_reader)]
MetricsReader = Annotated[None, Depends(metrics_reader)]


class ReadinessBody(BaseModel):
    """What ``/readyz`` answers, ready (200) or not (503): one entry per check."""

    model_config = ConfigDict(extra="allow")

    status: Literal["ready", "not_ready"]
    checks: dict[str, dict[str, Any]]


class Readiness:
    """The checks behind ``/readyz``: the database answers, a ruleset can decide, the
    registries the published rulesets need are loaded and no remote one has its breaker open.

    The database is asked on one thread of its own with a time-out: a database that hangs
    makes the probe answer 503 in ``DATABASE_TIMEOUT_S``, and probes never pile up threads.
    """

    def __init__(self, ctx: AppContext, *, timeout_s: float = DATABASE_TIMEOUT_S) -> None:
        self.ctx = ctx
        self.timeout_s = timeout_s
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="readyz")
        self._pending: Future[None] | None = None
        self._lock = threading.Lock()

    def _ask_database(self) -> None:
        head = ChainHead.__table__  # type: ignore[attr-defined]
        with self.ctx.store.engine.connect() as conn:
            if conn.execute(sa.select(head.c.seq).where(head.c.id == 1)).first() is None:
                raise LookupError("no chain head")

    def database(self) -> dict[str, Any]:
        with self._lock:
            if self._pending is not None and not self._pending.done():
                return _failed(
                    "DATABASE_TIMEOUT", "数据库未及时答复", "the database did not answer in time"
                )
            future = self._pending = self._pool.submit(self._ask_database)
        try:
            future.result(timeout=self.timeout_s)
        except FutureTimeout:
            return _failed(
                "DATABASE_TIMEOUT", "数据库未及时答复", "the database did not answer in time"
            )
        except LookupError:
            return _failed(
                "DATABASE_EMPTY",
                "数据库中没有决定链（架构未建立）",
                "the database holds no decision chain (no schema)",
            )
        except Exception as exc:  # any driver error: its text may name hosts or users
            return _failed(
                "DATABASE_UNAVAILABLE",
                "数据库无法访问",
                f"the database cannot be reached ({type(exc).__name__})",
            )
        return {"ok": True}

    def rulesets(self) -> dict[str, Any]:
        catalog = self.ctx.service.catalog
        servable = [
            rs.key for rs in catalog if rs.doc.status in IN_FORCE_STATUSES and catalog.servable(rs)
        ]
        if not servable:
            return _failed(
                "NO_SERVABLE_RULESET",
                "没有可用于决定的规则集",
                "no published ruleset can decide",
            )
        return {"ok": True, "servable": len(servable)}

    def sources(self) -> dict[str, Any]:
        catalog = self.ctx.service.catalog
        adapters = self.ctx.service.adapters
        needed = sorted(
            {r for rs in catalog if rs.doc.status in IN_FORCE_STATUSES for r in rs.registries}
        )
        failing: list[dict[str, str]] = []
        for registry in needed:
            adapter = adapters.get(registry)
            if adapter is None:
                failing.append({"registry": registry, "problem": "NOT_LOADED"})
                continue
            health = getattr(adapter, "health", None)
            live = health() if callable(health) else {}
            breaker = live.get("breaker") if isinstance(live, dict) else None
            if isinstance(breaker, dict) and breaker.get("state") == "open":
                failing.append({"registry": registry, "problem": "CIRCUIT_OPEN"})
        if failing:
            return {
                **_failed(
                    "SOURCES_UNAVAILABLE",
                    "规则集所需的数据源不可用",
                    "registries the published rulesets need are not available",
                ),
                "registries": failing,
            }
        return {"ok": True, "registries": len(needed)}

    def check(self) -> tuple[bool, dict[str, Any]]:
        checks = {
            "database": self.database(),
            "rulesets": self.rulesets(),
            "sources": self.sources(),
        }
        ready = all(c["ok"] for c in checks.values())
        return ready, {"status": "ready" if ready else "not_ready", "checks": checks}

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


def _failed(code: str, zh: str, en: str) -> dict[str, Any]:
    return {"ok": False, "code": code, "message_zh": zh, "message_en": en}


def install_ops_routes(app: FastAPI, ctx: AppContext) -> None:
    """``/healthz``, ``/readyz``, ``/metrics`` and ``/v1/ops/health`` on ``app``."""
    readiness = Readiness(ctx)
    app.state.readiness = readiness
    svc = ctx.service

    def health(*, detailed: bool) -> dict[str, Any]:
        if ctx.deployment is not None:
            return ctx.deployment.health(detailed=detailed)
        rulesets = svc.catalog.status(detailed=detailed)
        return {
            "status": "ok" if all(r["servable"] for r in rulesets) else "degraded",
            "rulesets": rulesets,
        }

    @app.get("/healthz", tags=["ops"])
    def healthz() -> dict[str, Any]:
        """Alive; which registries loaded and which rulesets can decide (``degraded`` if any
        cannot). Nothing private: no paths, no rows, no counts (staff: ``/v1/ops/health``)."""
        return health(detailed=False)

    @app.get(
        "/readyz",
        tags=["ops"],
        response_model=ReadinessBody,
        responses={
            503: {
                "model": ReadinessBody,
                "description": "not ready: ``checks`` names each failed check "
                "(database, rulesets, sources) with a stable code",
            }
        },
    )
    def readyz() -> JSONResponse:
        """Ready for traffic: the database answers, a published ruleset can decide, and the
        registries the published rulesets need are loaded (remote ones: breaker not open)."""
        ready, body = readiness.check()
        return JSONResponse(body, status_code=200 if ready else 503)

    @app.get(
        "/metrics",
        tags=["ops"],
        response_class=Response,
        responses={
            **AUTH_RESPONSES,
            200: {"content": {"text/plain": {}}, "description": "Prometheus text format"},
        },
    )
    def get_metrics(_who: MetricsReader) -> Response:
        """Prometheus metrics (see ``MIAOPI_METRICS_ACCESS`` for who may read them)."""
        return Response(metrics.render(ctx.store.engine), media_type=metrics.CONTENT_TYPE_LATEST)

    @app.get("/v1/ops/health", tags=["ops"], responses=AUTH_RESPONSES)
    def ops_health(_who: OpsReader) -> dict[str, Any]:
        """The full health report for operators: file paths, every problem as logged, remote
        sources' quotas and outcome counts, and the number of decisions stored (role ``ops``
        or ``auditor``, or a caller on this machine)."""
        return {**health(detailed=True), "decisions": ctx.store.count()}
