"""Registries served over HTTP (``kind: http``): fetch or verify, with every fault contained.

Protocol (what ``adapters.simulator`` serves, and what a registry gateway is expected to):

- fetch: ``GET {base}/records?key.<field>=<value>…&fields=a,b`` → 200
  ``{"status": "found", "values": {…}, "reference": …, "as_of": …}`` or 404
  ``{"status": "not_found"}``;
- verify: ``POST {base}/verify`` with ``{"key": {…}, "claims": {name: {field: value} | null}}``
  → 200 ``{"status": "found" | "not_found", "answers": {name: true | false}}``: the source
  keeps the data and only answers yes or no; nothing else is kept.

Calls run on one event loop thread per process (httpx, async), so a hung source holds no
thread. Before calling: the quota (calls per day, allowed windows) and the circuit breaker
are asked, and a short-lived cache is looked at. A call gets ``timeout_ms`` per attempt and
``retries`` jittered further attempts on a time-out, a transport error or a 5xx (lookups are
idempotent reads); at most ``concurrency`` calls are in flight to one source (a bulkhead).
Every failure is an ``AdapterFailure`` with a code of the closed set (``TIMEOUT``,
``MALFORMED``, ``CIRCUIT_OPEN``, ``QUOTA_EXHAUSTED``, ``ERROR``), which the decision turns
into UNKNOWN criteria and a referral, never a rejection.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import datetime as dt
import json
import os
import threading
import time
from collections.abc import Coroutine, Mapping, Sequence
from decimal import Decimal
from typing import Any, TypeVar

import httpx
import structlog
from pydantic import BaseModel, ConfigDict, ValidationError
from tenacity import (
    AsyncRetrying,
    retry_if_exception,
    stop_after_attempt,
    wait_random_exponential,
)

from adapters.base import AdapterFailure, ClaimValues, FactValue, Lookup, LookupMode, Provenance
from adapters.resilience import CircuitBreaker, QuotaGate, TtlCache
from engine.registries import HttpOptions, RegistryCatalogue, RegistrySpec, convert_text

__all__ = ["HttpRegistry", "build_http_registries", "run_on_loop"]

log = structlog.get_logger("miaopi.http_registry")
T = TypeVar("T")
VERSION = "1"


class _Loop:
    """One event loop on a daemon thread, shared by every HTTP registry of the process."""

    _lock = threading.Lock()
    _loop: asyncio.AbstractEventLoop | None = None

    @classmethod
    def get(cls) -> asyncio.AbstractEventLoop:
        with cls._lock:
            if cls._loop is None or cls._loop.is_closed():
                loop = asyncio.new_event_loop()
                thread = threading.Thread(target=loop.run_forever, name="registry-io", daemon=True)
                thread.start()
                cls._loop = loop
            return cls._loop


def run_on_loop(coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
    """Schedule ``coro`` on the registries' event loop; cancel the future to cancel it."""
    return asyncio.run_coroutine_threadsafe(coro, _Loop.get())


class _Found(BaseModel):
    model_config = ConfigDict(extra="ignore")

    status: str
    values: dict[str, Any] | None = None
    answers: dict[str, bool] | None = None
    reference: str | None = None
    as_of: str | None = None
    raw_sha256: str | None = None


class _Transient(Exception):
    """A failure worth another attempt: time-out, transport error, 5xx."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def _json_value(v: object) -> object:
    if isinstance(v, dt.date):
        return v.isoformat()
    if isinstance(v, Decimal):
        return format(v, "f")
    return v


class HttpRegistry:
    """One catalogued registry behind an HTTP API."""

    in_memory = False

    def __init__(
        self, spec: RegistrySpec, *, base_url: str | None = None, token: str | None = None
    ) -> None:
        self.spec = spec
        self.source = spec.id
        self.version = VERSION
        self.options = spec.http or HttpOptions()
        base = base_url or (
            os.environ.get(self.options.location_env) if self.options.location_env else None
        )
        self.base = (base or spec.location).rstrip("/") + (
            self.options.path or f"/v1/registries/{spec.id}"
        )
        if token is None and self.options.token_env:
            token = os.environ.get(self.options.token_env)
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.breaker = CircuitBreaker(
            failures=self.options.breaker_failures, reset_s=self.options.breaker_reset_s
        )
        quota = self.options.quota
        self.quota = QuotaGate(
            per_day=quota.per_day if quota else None, windows=quota.windows if quota else []
        )
        self.cache: TtlCache[Lookup] = TtlCache(ttl_s=self.options.cache_ttl_s)
        self._client: httpx.AsyncClient | None = None
        self._bulkhead: asyncio.Semaphore | None = None
        self.in_flight = 0
        self.outcomes: dict[str, int] = {}

    @property
    def fields(self) -> Mapping[str, str]:
        return self.spec.field_types

    def supports(self, mode: LookupMode) -> bool:
        return mode in self.spec.modes

    # --- the synchronous interface the gatherer calls -------------------------------------

    def lookup(
        self,
        key: Mapping[str, object],
        *,
        fields: Sequence[str],
        mode: LookupMode,
        claims: Mapping[str, ClaimValues | None] | None = None,
        now: dt.datetime,
    ) -> Lookup:
        future = self.submit(key, fields=fields, mode=mode, claims=claims, now=now)
        try:
            return future.result(timeout=self._worst_case_s())
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise AdapterFailure(
                code="TIMEOUT", message=f"{self.source}: no answer in time (queued or slow)"
            ) from None

    def submit(
        self,
        key: Mapping[str, object],
        *,
        fields: Sequence[str],
        mode: LookupMode,
        claims: Mapping[str, ClaimValues | None] | None = None,
        now: dt.datetime,
    ) -> concurrent.futures.Future[Lookup]:
        """Start the lookup on the event loop; the caller waits as long as its budget allows."""
        return run_on_loop(self.alookup(key, fields=fields, mode=mode, claims=claims, now=now))

    def _worst_case_s(self) -> float:
        attempts = self.options.retries + 1
        return attempts * self.options.timeout_ms / 1000 + attempts * 0.5 + 1

    # --- the call ---------------------------------------------------------------------------

    async def alookup(
        self,
        key: Mapping[str, object],
        *,
        fields: Sequence[str],
        mode: LookupMode,
        claims: Mapping[str, ClaimValues | None] | None = None,
        now: dt.datetime,
    ) -> Lookup:
        subject = (
            mode,
            tuple(sorted((k, str(v)) for k, v in key.items())),
            tuple(fields),
            json.dumps(
                {k: dict(v) if v is not None else None for k, v in (claims or {}).items()},
                sort_keys=True,
                default=str,
            ),
        )
        cached = self.cache.get(subject)
        if cached is not None:
            self._count("CACHED")
            return cached
        if not self.breaker.allow():
            self._count("CIRCUIT_OPEN")
            raise self._circuit_open()
        started = time.monotonic()
        try:
            self._take_quota(now)  # every attempt counts; a refusal here calls nothing
            found = await self._call(key, fields=fields, mode=mode, claims=claims, now=now)
            lookup = self._lookup(found, fields=fields, mode=mode, now=now)
        except AdapterFailure as exc:
            if exc.code == "QUOTA_EXHAUSTED":
                # refused here (nothing was called), or the source said 429: it is alive and
                # rationing, not failing, so the breaker is not told
                self.breaker.release()
            elif exc.code != "CIRCUIT_OPEN":
                self._record(ok=False)
            self._count(exc.code)
            log.warning("registry_failed", registry=self.source, outcome=exc.code)
            raise
        except Exception as exc:  # anything unforeseen is a failure of the source, not a crash
            self._record(ok=False)
            self._count("ERROR")
            log.warning(
                "registry_failed", registry=self.source, outcome="ERROR", error=type(exc).__name__
            )
            raise AdapterFailure(
                code="ERROR", message=f"{self.source}: {type(exc).__name__}"
            ) from None
        except asyncio.CancelledError:
            # The decision stopped waiting. Evidence against this source only if it had its
            # own time-out's worth of waiting (queued behind its bulkhead, or unanswered);
            # a call cut short because another source used up the budget says nothing.
            if time.monotonic() - started >= self.options.timeout_ms / 1000:
                self._record(ok=False)
                self._count("TIMEOUT")
            else:
                self.breaker.release()
                self._count("CANCELLED")
            raise
        self._record(ok=True)
        self._count(lookup.status.upper())
        self.cache.put(subject, lookup)
        return lookup

    def _circuit_open(self) -> AdapterFailure:
        return AdapterFailure(
            code="CIRCUIT_OPEN", message=f"{self.source}: circuit open after repeated failures"
        )

    def _take_quota(self, now: dt.datetime) -> None:
        allowed = self.quota.take(now)
        if allowed != "ok":
            raise AdapterFailure(
                code="QUOTA_EXHAUSTED",
                message=f"{self.source}: "
                + ("daily quota used up" if allowed == "exhausted" else "outside allowed hours")
                + " (refused here, not called)",
            )

    def _record(self, *, ok: bool) -> None:
        """Tell the breaker; log when it opens or closes (source health in the logs)."""
        before = self.breaker.state
        self.breaker.record(ok=ok)
        after = self.breaker.state
        if after != before and after in ("open", "closed"):
            log.warning(
                f"breaker_{'opened' if after == 'open' else 'closed'}", registry=self.source
            )

    def _count(self, outcome: str) -> None:
        self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1

    async def _call(
        self,
        key: Mapping[str, object],
        *,
        fields: Sequence[str],
        mode: LookupMode,
        claims: Mapping[str, ClaimValues | None] | None,
        now: dt.datetime,
    ) -> _Found:
        if self._client is None:
            self._client = httpx.AsyncClient(
                headers=self._headers,
                limits=httpx.Limits(max_connections=self.options.concurrency),
            )
            self._bulkhead = asyncio.Semaphore(self.options.concurrency)
        assert self._bulkhead is not None
        timeout = httpx.Timeout(self.options.timeout_ms / 1000)
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self.options.retries + 1),
            wait=wait_random_exponential(multiplier=0.02, max=0.2),
            retry=retry_if_exception(lambda e: isinstance(e, _Transient)),
            reraise=True,
        )
        try:
            async with self._bulkhead:
                if self.breaker.state == "open":  # it opened while this call queued
                    raise self._circuit_open()
                self.in_flight += 1
                try:
                    async for attempt in retrying:
                        with attempt:
                            if attempt.retry_state.attempt_number > 1:
                                self._take_quota(now)  # a retry is a call like any other
                            return await self._attempt(key, fields, mode, claims, timeout)
                finally:
                    self.in_flight -= 1
        except _Transient as exc:
            raise AdapterFailure(code=exc.code, message=f"{self.source}: {exc}") from None
        raise AssertionError("unreachable")  # pragma: no cover

    async def _attempt(
        self,
        key: Mapping[str, object],
        fields: Sequence[str],
        mode: LookupMode,
        claims: Mapping[str, ClaimValues | None] | None,
        timeout: httpx.Timeout,
    ) -> _Found:
        assert self._client is not None
        started = time.perf_counter()
        try:
            if mode == "fetch":
                params = {f"key.{k}": str(_json_value(v)) for k, v in key.items()}
                params["fields"] = ",".join(fields)
                response = await asyncio.wait_for(
                    self._client.get(f"{self.base}/records", params=params, timeout=timeout),
                    timeout=self.options.timeout_ms / 1000,
                )
            else:
                body = {
                    "key": {k: _json_value(v) for k, v in key.items()},
                    "claims": {
                        name: {f: _json_value(v) for f, v in c.items()} if c is not None else None
                        for name, c in (claims or {}).items()
                    },
                }
                response = await asyncio.wait_for(
                    self._client.post(f"{self.base}/verify", json=body, timeout=timeout),
                    timeout=self.options.timeout_ms / 1000,
                )
        except (TimeoutError, httpx.TimeoutException):
            raise _Transient("TIMEOUT", f"no answer within {self.options.timeout_ms} ms") from None
        except httpx.TransportError as exc:
            raise _Transient("ERROR", f"transport error: {type(exc).__name__}") from None
        except httpx.DecodingError:
            raise AdapterFailure(
                code="MALFORMED", message=f"{self.source}: the answer could not be decoded"
            ) from None
        status = response.status_code
        log.debug(
            "registry_call",
            registry=self.source,
            status=status,
            ms=round((time.perf_counter() - started) * 1000, 1),
        )
        if status == 429:
            raise AdapterFailure(
                code="QUOTA_EXHAUSTED",
                message=f"{self.source}: the source says its quota is used up (429)",
            )
        if status >= 500:
            raise _Transient("ERROR", f"the source answered {status}")
        try:
            found = _Found.model_validate(response.json())
        except (ValueError, ValidationError):
            raise AdapterFailure(
                code="MALFORMED",
                message=f"{self.source}: the answer is not the expected JSON ({status})",
            ) from None
        if status == 404 and found.status == "not_found":
            return found
        if status != 200 or found.status not in ("found", "not_found"):
            raise AdapterFailure(
                code="ERROR", message=f"{self.source}: unexpected answer {status} {found.status!r}"
            )
        return found

    def _lookup(
        self, found: _Found, *, fields: Sequence[str], mode: LookupMode, now: dt.datetime
    ) -> Lookup:
        values: dict[str, FactValue] = {}
        if found.status == "found" and mode == "fetch":
            raw = found.values or {}
            for name in fields:
                values[name] = self._typed(name, raw.get(name))
        elif mode == "verify":
            values = dict(found.answers or {})
            if found.status == "found" and found.values:
                raise AdapterFailure(
                    code="MALFORMED", message=f"{self.source}: a verify answer carried data"
                )
        provenance = Provenance(
            source=self.source,
            adapter="http",
            adapter_version=VERSION,
            reference=found.reference,
            retrieved_at=now,
            raw_sha256=found.raw_sha256,
        )
        if found.status == "not_found" and mode == "fetch":
            return Lookup(status="not_found", mode=mode, values={}, provenance=provenance)
        return Lookup(status=found.status, mode=mode, values=values, provenance=provenance)  # type: ignore[arg-type]

    def _typed(self, name: str, v: object) -> FactValue:
        type_name = self.spec.field_type(name) or "string"
        if v is None:
            return None
        try:
            if type_name == "string" and isinstance(v, str):
                return v
            if type_name == "integer" and isinstance(v, int) and not isinstance(v, bool):
                return v
            if type_name == "boolean" and isinstance(v, bool):
                return v
            if isinstance(v, str | int) and not isinstance(v, bool):
                converted = convert_text(str(v), type_name)
                if isinstance(converted, str | int | Decimal | bool | dt.date):
                    return converted
        except (ValueError, ArithmeticError):
            pass
        raise AdapterFailure(
            code="MALFORMED",
            message=f"{self.source}: field {name} is not a {type_name}: {str(v)[:40]!r}",
        )

    def health(self) -> dict[str, object]:
        return {
            "breaker": self.breaker.snapshot(),
            "quota": self.quota.state(),
            "in_flight": self.in_flight,
            "concurrency": self.options.concurrency,
            "outcomes": dict(self.outcomes),
        }


def build_http_registries(
    catalogue: RegistryCatalogue, *, override_url: str | None = None
) -> dict[str, HttpRegistry]:
    """An HTTP registry for each ``kind: http`` entry; with ``override_url``, for every entry
    (the whole catalogue served by one gateway, such as the simulator)."""
    return {
        spec.id: HttpRegistry(spec, base_url=override_url)
        for spec in catalogue
        if override_url is not None or spec.kind == "http"
    }
