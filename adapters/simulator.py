"""A registry simulator: the file registries served over HTTP on loopback, with switchable faults.

Integration tests start it as a real process (``python -m adapters.simulator --data-dir DIR``)
and point the service's HTTP adapter at it. Every answer comes from the same ``FileRegistry``
the service uses for files, so an HTTP lookup and a file lookup of the same key agree.

Protocol (``{id}`` is a catalogue id; every ``/v1`` call needs ``Authorization: Bearer T`` when
the simulator was started with a token, else 401 ``{"error": "unauthorized"}``):

``GET /healthz``
    200 ``{"status": "ok", "registries": [ids]}`` (plus ``"unavailable": {id: problem}`` when
    a catalogued registry's file could not be loaded); 503 during a global outage.
``GET /v1/registries/{id}/records?key.<field>=<value>…&fields=a,b``
    200 ``{"status": "found", "values": {…}, "reference", "as_of", "raw_sha256"}`` or 404
    ``{"status": "not_found"}``. Dates are ISO strings, numbers decimal strings, integers and
    booleans JSON ones, an empty cell ``null``. Without ``fields`` every field is returned.
``POST /v1/registries/{id}/verify`` with ``{"key": {…}, "claims": {answer: {field: value} | null}}``
    200 ``{"status", "answers": {answer: bool}, "reference", "as_of", "raw_sha256"}``: exactly
    what ``FileRegistry.lookup(mode="verify")`` answers, never a field value. For a
    ``no_record: negative`` registry a key without a record is, as there, ``"found"`` with every
    answer ``false`` and ``reference`` null; for ``no_record: unknown`` it is ``"not_found"``
    with no answers.
Key values
    Text is converted to the key field's declared type with ``convert_text``; a value that
    cannot have that type matches no record (not found), as in the file adapter.
Errors
    404 ``{"error": "unknown_registry"}``; 400 ``{"error": "unsupported_mode" | "bad_request",
    "message"}``; 503 ``{"error": "registry_unavailable", "message"}`` for a registry whose file
    did not load; 500 ``{"error": "bad_data", "message"}`` when a fetch key matches two records;
    503 ``{"error": "lookup_error", "code", "message"}`` when the file registry itself answers
    an error (``STALE_SNAPSHOT``).
    Simulated faults: 500 ``simulated_error``, 503 ``outage``, 429 ``quota_exceeded`` with
    ``Retry-After`` (seconds to midnight, Asia/Shanghai), and 200 with a broken body.

Faults (``POST /_control/faults``, merged into the current settings; ``GET`` reads them back;
``GET /_control/stats``; ``POST /_control/reset`` restores the start-up settings and clears the
statistics and quotas). The control routes need no token: the simulator is a test tool meant
for loopback. Each registry draws its faults from its own RNG, seeded with ``"<seed>:<id>"``
and re-seeded whenever the settings change, and every call makes the same five draws whatever
the rates, so a run with the same settings and calls sees the same faults.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import hmac
import json
import math
import os
import random
import socket
import sys
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal
from zoneinfo import ZoneInfo

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from adapters.base import Adapter, AdapterFailure, ClaimValues, FactValue, Lookup

if TYPE_CHECKING:
    from engine.registries import RegistryCatalogue

__all__ = [
    "OUTCOMES",
    "FaultSettings",
    "SimulatedRegistries",
    "create_app",
    "load_simulated",
    "main",
]

OUTCOMES = ("ok", "error", "malformed", "hang", "quota", "outage", "slow")
"""The outcomes ``/_control/stats`` counts per registry (plus ``unauthorized`` and
``bad_request`` for calls refused before or instead of an answer)."""
_COUNTED = (*OUTCOMES, "unauthorized", "bad_request")
_TZ = ZoneInfo("Asia/Shanghai")
"""Quota days are calendar days in Asia/Shanghai, as the catalogue's ``quota.per_day``."""
_HANG_S = 3600.0
_SLOW_BODY_S = 2.0
_SLOW_CHUNKS = 10
_MALFORMED_TEXT = b'{"status": "found", "values": {"id_number": "1101'
"""A body cut short: not valid JSON."""
_MALFORMED_SHAPE = b'{"result": "ok", "values": ["found"], "reference": 42}'
"""Valid JSON of the wrong shape."""

Rate = Annotated[float, Field(ge=0, le=1)]
JsonScalar = str | int | float | bool | None
Clock = Callable[[], dt.datetime]


class FaultSettings(BaseModel):
    """The faults one registry shows (the top level is the default for every registry)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    latency_ms: tuple[Annotated[int, Field(ge=0)], Annotated[int, Field(ge=0)]] = (0, 0)
    """Each call waits a uniform draw from ``[lo, hi]`` milliseconds before answering."""
    error_rate: Rate = 0.0
    """Share of calls answered 500."""
    outage: bool = False
    """Every call answered 503 (at the top level: ``/healthz`` too)."""
    malformed_rate: Rate = 0.0
    """Share of calls answered 200 with a broken body: invalid JSON and wrong-shape JSON in turn."""
    slow_body_rate: Rate = 0.0
    """Share of calls whose headers come at once and whose body trickles over ~2 s."""
    hang_rate: Rate = 0.0
    """Share of calls never answered (until the client gives up, or an hour)."""
    quota_per_day: int | None = Field(default=None, ge=0)
    """Calls a registry answers per day (Asia/Shanghai); later ones get 429 with Retry-After."""
    seed: int = 0

    @model_validator(mode="after")
    def _band(self) -> FaultSettings:
        lo, hi = self.latency_ms
        if lo > hi:
            raise ValueError(f"latency_ms: expected [lo, hi] with lo <= hi, got [{lo}, {hi}]")
        return self


class _VerifyBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    key: dict[str, str | int | float | bool]
    claims: dict[str, dict[str, str | int | float | bool] | None] = Field(default_factory=dict)


@dataclass(frozen=True)
class SimulatedRegistries:
    """What the simulator serves: loaded registries, the catalogue, and what failed to load."""

    catalogue: RegistryCatalogue
    adapters: dict[str, Adapter]
    problems: dict[str, str]
    as_of: dict[str, dt.date | None]
    """Each registry's snapshot date, reported with every answer."""


def load_simulated(
    catalogue: RegistryCatalogue, data_dir: Path, *, as_of: dt.date | None = None
) -> SimulatedRegistries:
    """Load the catalogue's registries from ``data_dir`` through ``adapters.files``.

    A ``kind: http`` entry is served from ``<id>.csv`` in ``data_dir``, so the catalogue a
    service uses to call the simulator can also be the one the simulator serves. ``as_of``,
    when given, is reported for every registry; otherwise the snapshot manifest's ``as_of``,
    else the data file's modification date (Asia/Shanghai).
    """
    from adapters.files import load_registries
    from engine.registries import RegistryCatalogue

    specs = [
        s.model_copy(update={"kind": "csv", "location": f"{s.id}.csv", "http": None})
        if s.kind == "http"
        else s
        for s in catalogue
    ]
    served = RegistryCatalogue(specs, path=catalogue.path)
    loaded = load_registries(served, data_dir)
    dates: dict[str, dt.date | None] = {}
    for spec in served:
        adapter = loaded.adapters.get(spec.id)
        if adapter is None:
            continue
        # The snapshot's manifest knows its date when there is one (``FileRegistry.snapshot``).
        vouched = getattr(getattr(adapter, "snapshot", None), "as_of", None)
        if as_of is not None or isinstance(vouched, dt.date):
            dates[spec.id] = as_of or vouched
            continue
        path = Path(spec.location)
        path = path if path.is_absolute() else data_dir / path
        stamp = dt.datetime.fromtimestamp(path.stat().st_mtime, tz=_TZ)
        dates[spec.id] = stamp.date()
    return SimulatedRegistries(served, loaded.adapters, loaded.problems, dates)


@dataclass(frozen=True, slots=True)
class _Draw:
    latency_s: float
    hang: bool
    error: bool
    malformed: bool
    slow: bool


@dataclass
class _State:
    """Fault settings, per-registry RNGs, quotas and statistics (touched on the event loop only)."""

    ids: list[str]
    start_defaults: FaultSettings
    start_overrides: dict[str, dict[str, object]]
    defaults: FaultSettings = field(init=False)
    overrides: dict[str, dict[str, object]] = field(init=False)
    effective: dict[str, FaultSettings] = field(init=False)
    rngs: dict[str, random.Random] = field(init=False)
    malformed_turn: dict[str, int] = field(init=False)
    quota_used: dict[str, tuple[dt.date, int]] = field(init=False)
    calls: dict[str, int] = field(init=False)
    by_outcome: dict[str, dict[str, int]] = field(init=False)
    stopping: Callable[[], bool] = lambda: False
    """True once the server is shutting down: hung calls then end at once."""

    def __post_init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.calls = dict.fromkeys(self.ids, 0)
        self.by_outcome = {i: dict.fromkeys(_COUNTED, 0) for i in self.ids}
        self.quota_used = {}
        self._apply(self.start_defaults, {k: dict(v) for k, v in self.start_overrides.items()})

    def _apply(self, defaults: FaultSettings, overrides: dict[str, dict[str, object]]) -> None:
        base = defaults.model_dump()
        effective = {
            i: FaultSettings.model_validate({**base, **overrides.get(i, {})}) for i in self.ids
        }
        self.defaults, self.overrides, self.effective = defaults, overrides, effective
        self.rngs = {i: random.Random(f"{f.seed}:{i}") for i, f in effective.items()}
        self.malformed_turn = dict.fromkeys(self.ids, 0)

    def configure(self, patch: Mapping[str, object]) -> None:
        """Merge ``patch`` into the settings; raise ``ValueError``/``ValidationError`` if invalid."""
        top = {k: v for k, v in patch.items() if k != "registries"}
        defaults = FaultSettings.model_validate({**self.defaults.model_dump(), **top})
        overrides = {k: dict(v) for k, v in self.overrides.items()}
        per_registry = patch.get("registries") or {}
        if not isinstance(per_registry, Mapping):
            raise ValueError("registries: expected an object {registry id: {fault: value}}")
        for rid, changes in per_registry.items():
            if rid not in self.ids:
                raise ValueError(
                    f"registries: unknown registry {rid!r}; served: {', '.join(self.ids)}"
                )
            if changes is None:
                overrides.pop(rid, None)
                continue
            if not isinstance(changes, Mapping):
                raise ValueError(f"registries.{rid}: expected an object of fault settings or null")
            merged = {**overrides.get(rid, {}), **changes}
            try:
                checked = FaultSettings.model_validate({**defaults.model_dump(), **merged})
            except ValidationError as exc:
                raise ValueError(_first_error(exc, prefix=f"registries.{rid}")) from None
            overrides[rid] = {k: getattr(checked, k) for k in merged}
        self._apply(defaults, overrides)

    def settings_json(self) -> dict[str, object]:
        out: dict[str, object] = self.defaults.model_dump(mode="json")
        out["registries"] = {
            rid: FaultSettings.model_validate({**self.defaults.model_dump(), **o}).model_dump(
                mode="json", include=set(o)
            )
            for rid, o in self.overrides.items()
        }
        return out

    def count(self, rid: str, outcome: str) -> None:
        self.calls[rid] += 1
        self.by_outcome[rid][outcome] += 1

    def draw(self, rid: str) -> _Draw:
        """Five draws from the registry's RNG, whatever the rates (so runs stay aligned)."""
        f, rng = self.effective[rid], self.rngs[rid]
        lo, hi = f.latency_ms
        latency, hang, error, malformed, slow = (rng.random() for _ in range(5))
        return _Draw(
            latency_s=(lo + (hi - lo) * latency) / 1000,
            hang=hang < f.hang_rate,
            error=error < f.error_rate,
            malformed=malformed < f.malformed_rate,
            slow=slow < f.slow_body_rate,
        )

    def take_quota(self, rid: str, *, now: dt.datetime) -> int | None:
        """Count one call against the day's quota; seconds until it renews when it is spent."""
        limit = self.effective[rid].quota_per_day
        if limit is None:
            return None
        local = now.astimezone(_TZ)
        day, used = self.quota_used.get(rid, (local.date(), 0))
        if day != local.date():
            day, used = local.date(), 0
        if used >= limit:
            midnight = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), tzinfo=_TZ)
            return max(1, math.ceil((midnight - local).total_seconds()))
        self.quota_used[rid] = (day, used + 1)
        return None

    def next_malformed(self, rid: str) -> bytes:
        turn = self.malformed_turn[rid]
        self.malformed_turn[rid] = turn + 1
        return _MALFORMED_TEXT if turn % 2 == 0 else _MALFORMED_SHAPE


def _first_error(exc: ValidationError, *, prefix: str = "") -> str:
    """The first problem pydantic found, as ``where: what``."""
    first = exc.errors(include_url=False)[0]
    where = ".".join([*([prefix] if prefix else []), *(str(p) for p in first["loc"])])
    return f"{where or 'body'}: {first['msg']}"


def _wire(v: FactValue) -> str | int | bool | None:
    """A fact as JSON: dates ISO, decimals as exact strings, the rest as they are."""
    if isinstance(v, dt.date):
        return v.isoformat()
    if isinstance(v, Decimal):
        return format(v, "f")
    return v


class _Refusal(Exception):
    """A call refused with a 4xx/5xx answer of the simulator's own (not a simulated fault)."""

    def __init__(self, status: int, error: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.error = error
        self.message = message


def create_app(
    registries: SimulatedRegistries,
    *,
    token: str | None = None,
    faults: FaultSettings | None = None,
    overrides: Mapping[str, Mapping[str, object]] | None = None,
    clock: Clock | None = None,
) -> FastAPI:
    """The simulator's application; ``faults`` and ``overrides`` are the start-up settings."""
    from engine.registries import convert_text

    now: Clock = clock or (lambda: dt.datetime.now(dt.UTC))
    served = list(registries.adapters)
    state = _State(served, faults or FaultSettings(), {})
    if overrides:
        state.configure({"registries": {k: dict(v) for k, v in overrides.items()}})
        state.start_overrides = {k: dict(v) for k, v in state.overrides.items()}
    app = FastAPI(
        title="miaopi registry simulator", docs_url=None, redoc_url=None, openapi_url=None
    )
    app.state.simulator = state

    def error(status: int, code: str, message: str | None = None) -> JSONResponse:
        body = {"error": code} if message is None else {"error": code, "message": message}
        return JSONResponse(body, status_code=status)

    def authorised(request: Request) -> bool:
        if token is None:
            return True
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(given.strip(), token)

    def typed_key(rid: str, key: Mapping[str, object]) -> dict[str, object]:
        spec = registries.catalogue.get(rid)
        assert spec is not None
        missing = [k for k in spec.key if k not in key]
        unknown = [k for k in key if k not in spec.key]
        if missing or unknown:
            raise _Refusal(
                400,
                "bad_request",
                f"registry {rid} is keyed by {', '.join(spec.key)}; missing {missing}, "
                f"unexpected {unknown}",
            )
        types = spec.field_types
        out: dict[str, object] = {}
        for k, v in key.items():
            if isinstance(v, str):
                try:
                    v = convert_text(v, types[k])
                except ValueError:
                    pass  # a key that cannot exist: the registry answers not found
            out[k] = v
        return out

    def check_mode(rid: str, mode: Literal["fetch", "verify"]) -> Adapter:
        adapter = registries.adapters[rid]
        if not adapter.supports(mode):
            spec = registries.catalogue.get(rid)
            modes = ", ".join(spec.modes) if spec else "?"
            raise _Refusal(
                400,
                "unsupported_mode",
                f"registry {rid} does not support {mode}; supported: {modes}",
            )
        return adapter

    def provenance(lookup: Lookup, rid: str) -> dict[str, object]:
        as_of = registries.as_of.get(rid)
        return {
            "reference": lookup.provenance.reference,
            "as_of": as_of.isoformat() if as_of else None,
            "raw_sha256": lookup.provenance.raw_sha256,
        }

    def lookup_error(lookup: Lookup) -> tuple[int, dict[str, object]]:
        """The registry could not answer (a stale snapshot): 503 with the adapter's code."""
        return 503, {
            "error": "lookup_error",
            "code": lookup.error_code,
            "message": lookup.error_message,
        }

    def fetch_answer(rid: str, request: Request) -> tuple[int, dict[str, object]]:
        adapter = check_mode(rid, "fetch")
        key: dict[str, object] = {}
        fields: list[str] | None = None
        for name, value in request.query_params.multi_items():
            if name.startswith("key."):
                field_name = name[4:]
                if field_name in key:
                    raise _Refusal(400, "bad_request", f"key field {field_name!r} given twice")
                key[field_name] = value
            elif name == "fields":
                fields = [*(fields or []), *(f.strip() for f in value.split(",") if f.strip())]
            else:
                raise _Refusal(
                    400,
                    "bad_request",
                    f"unexpected query parameter {name!r}; expected key.<field> and fields",
                )
        wanted = list(adapter.fields) if fields is None else fields
        unknown = [f for f in wanted if f not in adapter.fields]
        if unknown:
            raise _Refusal(
                400,
                "bad_request",
                f"registry {rid} has no field(s) {', '.join(unknown)}; available: "
                f"{', '.join(adapter.fields)}",
            )
        lookup = adapter.lookup(typed_key(rid, key), fields=wanted, mode="fetch", now=now())
        if lookup.status == "error":
            return lookup_error(lookup)
        if lookup.status == "not_found":
            return 404, {"status": "not_found"}
        values = {k: _wire(v) for k, v in lookup.values.items()}
        return 200, {"status": "found", "values": values, **provenance(lookup, rid)}

    async def verify_answer(rid: str, request: Request) -> tuple[int, dict[str, object]]:
        adapter = check_mode(rid, "verify")
        try:
            body = _VerifyBody.model_validate_json(await request.body())
        except ValidationError as exc:
            raise _Refusal(400, "bad_request", _first_error(exc)) from None
        claims: dict[str, ClaimValues | None] = dict(body.claims)
        lookup = adapter.lookup(
            typed_key(rid, body.key), fields=list(claims), mode="verify", claims=claims, now=now()
        )
        if lookup.status == "error":
            return lookup_error(lookup)
        answers = {k: bool(v) for k, v in lookup.values.items()}
        return 200, {"status": lookup.status, "answers": answers, **provenance(lookup, rid)}

    async def hang(request: Request) -> None:
        deadline = asyncio.get_running_loop().time() + _HANG_S
        while asyncio.get_running_loop().time() < deadline:
            if state.stopping() or await request.is_disconnected():
                return
            await asyncio.sleep(0.1)

    def slow(status: int, body: bytes) -> StreamingResponse:
        size = max(1, math.ceil(len(body) / _SLOW_CHUNKS))

        async def trickle() -> AsyncIterator[bytes]:
            for start in range(0, len(body), size):
                await asyncio.sleep(_SLOW_BODY_S / _SLOW_CHUNKS)
                yield body[start : start + size]

        return StreamingResponse(trickle(), status_code=status, media_type="application/json")

    async def call(rid: str, request: Request, mode: Literal["fetch", "verify"]) -> Response:
        known = rid in state.calls
        if state.defaults.outage:
            if known:
                state.count(rid, "outage")
            return error(503, "outage")
        if not authorised(request):
            if known:
                state.count(rid, "unauthorized")
            return JSONResponse(
                {"error": "unauthorized"}, status_code=401, headers={"WWW-Authenticate": "Bearer"}
            )
        if rid in registries.problems:
            return error(503, "registry_unavailable", message=registries.problems[rid])
        if not known:
            return error(404, "unknown_registry")
        if state.effective[rid].outage:
            state.count(rid, "outage")
            return error(503, "outage")
        retry_after = state.take_quota(rid, now=now())
        if retry_after is not None:
            state.count(rid, "quota")
            return JSONResponse(
                {"error": "quota_exceeded"},
                status_code=429,
                headers={"Retry-After": str(retry_after)},
            )
        draw = state.draw(rid)
        if draw.latency_s:
            await asyncio.sleep(draw.latency_s)
        if draw.hang:
            state.count(rid, "hang")
            await hang(request)
            return error(503, "shutting_down")
        if draw.error:
            state.count(rid, "error")
            return error(500, "simulated_error")
        try:
            status, payload = (
                fetch_answer(rid, request) if mode == "fetch" else await verify_answer(rid, request)
            )
        except _Refusal as exc:
            state.count(rid, "bad_request")
            return error(exc.status, exc.error, message=exc.message)
        except ValueError as exc:  # what FileRegistry.lookup refuses (an unknown named answer …)
            state.count(rid, "bad_request")
            return error(400, "bad_request", message=str(exc))
        except AdapterFailure as exc:  # the data is wrong (a duplicated key), not a fault
            state.count(rid, "error")
            return error(500, "bad_data", message=exc.message)
        if status >= 500:  # the registry's own failure, not a simulated one
            state.count(rid, "error")
            return JSONResponse(payload, status_code=status)
        if draw.malformed:
            state.count(rid, "malformed")
            return Response(
                state.next_malformed(rid), status_code=200, media_type="application/json"
            )
        body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        if draw.slow:
            state.count(rid, "slow")
            return slow(status, body)
        state.count(rid, "ok")
        return Response(body, status_code=status, media_type="application/json")

    @app.get("/healthz")
    async def healthz() -> Response:
        if state.defaults.outage:
            return error(503, "outage")
        out: dict[str, object] = {"status": "ok", "registries": served}
        if registries.problems:
            out["unavailable"] = registries.problems
        return JSONResponse(out)

    @app.get("/v1/registries/{registry_id}/records")
    async def fetch(registry_id: str, request: Request) -> Response:
        return await call(registry_id, request, "fetch")

    @app.post("/v1/registries/{registry_id}/verify")
    async def verify(registry_id: str, request: Request) -> Response:
        return await call(registry_id, request, "verify")

    @app.get("/_control/faults")
    async def get_faults() -> Response:
        return JSONResponse(state.settings_json())

    @app.post("/_control/faults")
    async def set_faults(request: Request) -> Response:
        try:
            patch = json.loads(await request.body() or b"{}")
            if not isinstance(patch, dict):
                raise ValueError("expected a JSON object of fault settings")
            state.configure(patch)
        except ValidationError as exc:
            return error(422, "invalid_faults", message=_first_error(exc))
        except ValueError as exc:  # json.JSONDecodeError is one
            return error(422, "invalid_faults", message=str(exc))
        return JSONResponse(state.settings_json())

    @app.get("/_control/stats")
    async def stats() -> Response:
        return JSONResponse({"calls": state.calls, "by_outcome": state.by_outcome})

    @app.post("/_control/reset")
    async def reset() -> Response:
        state.reset()
        return JSONResponse(state.settings_json())

    return app


# --- the process ---------------------------------------------------------------------------


def _latency(text: str) -> tuple[int, int]:
    parts = [p.strip() for p in text.split(",")]
    try:
        values = [int(p) for p in parts]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected LO,HI in milliseconds, got {text!r}") from None
    if len(values) == 1:
        return values[0], values[0]
    if len(values) != 2:
        raise argparse.ArgumentTypeError(f"expected LO,HI in milliseconds, got {text!r}")
    return values[0], values[1]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m adapters.simulator",
        description="Serve the registry files over HTTP with switchable faults (for tests).",
    )
    p.add_argument(
        "--data-dir", type=Path, default=None, help="registry data folder [env MIAOPI_DATA_DIR]"
    )
    p.add_argument(
        "--registries",
        type=Path,
        default=None,
        help="registry catalogue [env MIAOPI_REGISTRIES; default: registries.yaml beside or above "
        "the data folder, else rulesets/registries.yaml]",
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8765, help="0: any free port (printed)")
    p.add_argument(
        "--token", default=None, help="bearer token every /v1 call needs [env MIAOPI_SIM_TOKEN]"
    )
    p.add_argument(
        "--as-of",
        type=dt.date.fromisoformat,
        default=None,
        help="snapshot date reported (YYYY-MM-DD)",
    )
    # Fault flags default to "not given", so that only those given override --faults.
    fault = p.add_argument_group("start-up faults (as in POST /_control/faults)")
    unset = argparse.SUPPRESS
    fault.add_argument(
        "--latency-ms", dest="latency_ms", type=_latency, default=unset, metavar="LO,HI"
    )
    fault.add_argument("--error-rate", dest="error_rate", type=float, default=unset)
    fault.add_argument("--outage", action="store_true", default=unset)
    fault.add_argument("--malformed-rate", dest="malformed_rate", type=float, default=unset)
    fault.add_argument("--slow-body-rate", dest="slow_body_rate", type=float, default=unset)
    fault.add_argument("--hang-rate", dest="hang_rate", type=float, default=unset)
    fault.add_argument("--quota-per-day", dest="quota_per_day", type=int, default=unset)
    fault.add_argument("--seed", type=int, default=unset)
    fault.add_argument(
        "--faults",
        dest="faults_json",
        default=None,
        metavar="JSON",
        help="settings with per-registry overrides: a JSON object, or @FILE; the flags above "
        "override its top-level keys",
    )
    return p


@dataclass(frozen=True)
class _Options:
    data_dir: Path
    catalogue: Path
    host: str
    port: int
    token: str | None
    as_of: dt.date | None
    faults: FaultSettings
    overrides: dict[str, dict[str, object]]


class _StartupError(Exception):
    """Raised when the simulator cannot start; ``str()`` is the one line printed."""


def _options(argv: Sequence[str] | None, environ: Mapping[str, str]) -> _Options:
    """The parsed command line; raise ``_StartupError`` (one line) for a missing input."""
    from engine.registries import find_catalogue

    parser = _parser()
    a = parser.parse_args(argv)
    data_dir = a.data_dir or (
        Path(environ["MIAOPI_DATA_DIR"]) if environ.get("MIAOPI_DATA_DIR") else None
    )
    if data_dir is None:
        raise _StartupError("simulator: no data folder given (--data-dir or MIAOPI_DATA_DIR)")
    if not data_dir.is_dir():
        raise _StartupError(f"simulator: data folder not found: {data_dir}")
    catalogue = a.registries or (
        Path(environ["MIAOPI_REGISTRIES"]) if environ.get("MIAOPI_REGISTRIES") else None
    )
    if catalogue is None:
        shipped = Path("rulesets/registries.yaml")
        catalogue = find_catalogue(data_dir) or (shipped if shipped.is_file() else None)
        if catalogue is None:
            raise _StartupError(
                f"simulator: no registry catalogue beside {data_dir}; give --registries FILE"
            )
    if not catalogue.is_file():
        raise _StartupError(f"simulator: registry catalogue not found: {catalogue}")
    base: dict[str, object] = {}
    if a.faults_json:
        text = a.faults_json
        try:
            if text.startswith("@"):
                text = Path(text[1:]).read_text(encoding="utf-8")
            loaded = json.loads(text)
        except (OSError, ValueError) as exc:
            raise _StartupError(f"simulator: --faults: {exc}") from None
        if not isinstance(loaded, dict):
            raise _StartupError("simulator: --faults: expected a JSON object")
        base = loaded
    overrides = base.pop("registries", None) or {}
    given = {k: v for k, v in vars(a).items() if k in FaultSettings.model_fields}
    try:
        faults = FaultSettings.model_validate({**base, **given})
    except ValidationError as exc:
        raise _StartupError(f"simulator: fault setting {_first_error(exc)}") from None
    if not isinstance(overrides, dict) or not all(isinstance(v, dict) for v in overrides.values()):
        raise _StartupError("simulator: --faults: registries must map ids to objects")
    return _Options(
        data_dir=data_dir,
        catalogue=catalogue,
        host=a.host,
        port=a.port,
        token=a.token or environ.get("MIAOPI_SIM_TOKEN") or None,
        as_of=a.as_of,
        faults=faults,
        overrides=overrides,
    )


def _build(opts: _Options) -> FastAPI:
    from engine.errors import RulesetInvalid
    from engine.registries import load_catalogue

    try:
        catalogue = load_catalogue(opts.catalogue)
    except RulesetInvalid as exc:
        first = str(exc).splitlines()[0] if str(exc) else "invalid"
        raise _StartupError(f"simulator: registry catalogue {opts.catalogue}: {first}") from None
    served = load_simulated(catalogue, opts.data_dir, as_of=opts.as_of)
    if not served.adapters:
        first = next(iter(served.problems.values()), "the catalogue is empty")
        raise _StartupError(f"simulator: no registry could be loaded from {opts.data_dir}: {first}")
    try:
        return create_app(served, token=opts.token, faults=opts.faults, overrides=opts.overrides)
    except (ValueError, ValidationError) as exc:
        line = str(exc).splitlines()[0]
        raise _StartupError(f"simulator: --faults: {line}") from None


async def _serve(app: FastAPI, sock: socket.socket, *, line: str) -> None:
    import uvicorn

    config = uvicorn.Config(
        app,
        log_config=None,
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=1,
        lifespan="off",
    )
    server = uvicorn.Server(config)
    simulator: _State = app.state.simulator
    simulator.stopping = lambda: server.should_exit
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started and not task.done():
        await asyncio.sleep(0.01)
    if server.started:
        print(line, flush=True)
    await task


def main(argv: Sequence[str] | None = None) -> int:
    """Run the simulator until interrupted; 2 with a one-line message when it cannot start."""
    try:
        opts = _options(argv, os.environ)
        app = _build(opts)
    except _StartupError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    family = socket.AF_INET6 if ":" in opts.host else socket.AF_INET
    # IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY only on sockets that say so, and without
    # it every answer waits ~40 ms for a delayed ACK.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((opts.host, opts.port))
    except OSError as exc:
        print(
            f"simulator: cannot listen on {opts.host}:{opts.port}: {exc.strerror}", file=sys.stderr
        )
        return 2
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    asyncio.run(_serve(app, sock, line=f"simulator listening on http://{shown}:{port}"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
