"""One decision, end to end: validate, pick the version, gather evidence, decide, record."""

from __future__ import annotations

import datetime as dt
import functools
import importlib.metadata
import json
import re
import time
import uuid
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

import pydantic
import structlog
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator
from starlette.concurrency import run_in_threadpool

from adapters.base import Adapter, ClaimValues, Lookup, LookupMode
from api.metrics import observe_decision
from api.secrets import key_id
from engine import (
    CriterionStatus,
    Evaluation,
    NoVersionInForce,
    Outcome,
    Reason,
    ReasonCode,
    Ruleset,
    RulesetCatalog,
    ServiceUnavailable,
    UnknownService,
    application_env,
    durable_version,
    evaluate,
)
from engine._compiled import EvidencePlan
from engine._semantics import MISSING, value
from engine.decision import ParameterUse, ValueResult, unvalidated
from engine.expr import Name
from engine.privacy import contains_id_number, id_number_problem
from engine.registries import RegistryCatalogue
from engine.text import SingleLine
from explanations import (
    DataUse,
    DecisionStore,
    EngineInfo,
    EvidenceItem,
    ExplanationRecordV1,
    IdempotencyConflict,
    LegalBasisRef,
    MaskedApplicant,
    OutputColumn,
    StoredDecision,
    Unsealed,
    decision_response,
    is_personal_field,
    pseudonymize,
)
from explanations.counterfactual import counterfactuals
from explanations.minimise import Minimised, json_scalar, minimise
from explanations.record import (
    RECORD_SCHEMA,
    Counterfactual,
    DatetimeJson,
    NotPlain,
    canonical_json_bytes_of_dump,
    criterion_json,
    evidence_json,
    plain,
    utf8_hash,
)
from explanations.remedy import remedy_for

__all__ = [
    "ApplicantIn",
    "DecisionRequest",
    "DecisionService",
    "RequestRejected",
    "refuse_personal_identifiers",
    "request_sha256",
]

SHANGHAI = ZoneInfo("Asia/Shanghai")
SUBMITTED_YEARS = (1900, 2999)
"""The years a submission date may name at all (the real window: ``api.window``)."""
_SURROGATE = re.compile(r"[\ud800-\udfff]")
log = structlog.get_logger("miaopi.decision")


@functools.cache
def _version() -> str:
    try:
        return importlib.metadata.version("miaopi")
    except importlib.metadata.PackageNotFoundError:
        return "0.0.0+local"


_VALUES = pydantic.TypeAdapter(list[ValueResult])
_PARAMETERS = pydantic.TypeAdapter(list[ParameterUse])
_REASONS = pydantic.TypeAdapter(list[Reason])
_COUNTERFACTUALS = pydantic.TypeAdapter(list[Counterfactual])
_EVIDENCE_ITEM_SET = frozenset(EvidenceItem.model_fields) - {"ages"}
"""The fields ``_item`` gives (``ages`` is set only by ``minimise``, which copies the item)."""


def _masked_fields(decided: Decided, kept: Minimised) -> list[str]:
    """The record's fields held as keyed pseudonyms: the applicant, the form fields kept so,
    and each registry value that identifies a person."""
    return [
        "applicant.id_number",
        "applicant.name",
        *kept.masked,
        *(f"{e.id}.{k}" for e in decided.evidence for k in e.values if is_personal_field(k)),
    ]


class ApplicantIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id_number: str = Field(
        min_length=18, max_length=18, description="居民身份证号码 (18 characters, GB 11643)"
    )
    name: SingleLine = Field(min_length=1, max_length=50, description="姓名")

    @field_validator("id_number")
    @classmethod
    def _valid_id(cls, v: str) -> str:
        v = v.upper()
        problem = id_number_problem(v)
        if problem:
            raise ValueError(problem)
        return v


class DecisionRequest(BaseModel):
    """The body of ``POST /v1/decisions``."""

    model_config = ConfigDict(extra="forbid")

    service: str = Field(pattern=r"^[a-z][a-z0-9-]{1,62}$", description="事项编码 service code")
    application_id: str = Field(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$", description="平台申请编号"
    )
    submitted_at: AwareDatetime = Field(description="申请提交时间，须带时区 (ISO 8601 with offset)")
    applicant: ApplicantIn
    form: dict[str, Any]

    @field_validator("submitted_at", mode="before")
    @classmethod
    def _iso_text(cls, v: object) -> object:
        # pydantic would take a number as Unix seconds (123 → 1970-01-01T00:02:03Z).
        if isinstance(v, str | dt.datetime):
            return v
        raise ValueError(
            "申请提交时间须为带时区的 ISO 8601 字符串 / expected an ISO 8601 date-time string with an offset"
        )

    @field_validator("submitted_at")
    @classmethod
    def _plausible_year(cls, v: dt.datetime) -> dt.datetime:
        # Year 1 or 9999 with an offset overflows when converted to Beijing time. Whether the
        # date is in the future or before the service existed needs the clock and the
        # catalogue: ``api.window`` checks that.
        if not SUBMITTED_YEARS[0] <= v.year <= SUBMITTED_YEARS[1]:
            raise ValueError(
                f"申请提交时间的年份须在 {SUBMITTED_YEARS[0]}–{SUBMITTED_YEARS[1]} 之间 / the year "
                f"must be between {SUBMITTED_YEARS[0]} and {SUBMITTED_YEARS[1]}"
            )
        return v

    @field_validator("form")
    @classmethod
    def _encodable(cls, v: dict[str, Any]) -> dict[str, Any]:
        # The body is hashed (idempotency) before the form is checked against the service's
        # form model; a lone surrogate in a key or a string cannot be encoded to hash it.
        pending: list[object] = [v]
        while pending:
            item = pending.pop()
            if isinstance(item, str) and _SURROGATE.search(item):
                raise ValueError(
                    "申请表含有不成对的代理码位 / the form holds a lone surrogate (not encodable text)"
                )
            if isinstance(item, dict):
                pending += [*item.keys(), *item.values()]
            elif isinstance(item, list):
                pending += item
        return v


class RequestRejected(Exception):
    """A request the service refuses, with an HTTP status and field-level details."""

    def __init__(
        self,
        status: int,
        code: str,
        message_zh: str,
        message_en: str,
        fields: list[dict[str, Any]] | None = None,
    ) -> None:
        super().__init__(message_en)
        self.status = status
        self.code = code
        self.message_zh = message_zh
        self.message_en = message_en
        self.fields = fields or []


def refuse_personal_identifiers(application_id: str, idempotency_key: str | None = None) -> None:
    """Refuse (422 ``PERSONAL_DATA_IN_IDENTIFIER``) an identifier holding a resident ID number.

    ``application_id`` and the ``Idempotency-Key`` are stored verbatim: in the record, the
    response, the decision row and the log's leaf (which signed checkpoints commit to). A keyed
    hash instead would make the stored application id differ from the platform's own and could
    never be undone in the log; an ID number there is the platform's bug, which a refusal tells
    it. Nothing is stored.
    """
    fields = [
        {
            "loc": loc,
            "msg": "contains a resident ID number; identifiers must not carry personal data",
            "type": "personal_data_in_identifier",
        }
        for loc, text in (
            (["body", "application_id"], application_id),
            (["header", "Idempotency-Key"], idempotency_key or ""),
        )
        if contains_id_number(text)
    ]
    if fields:
        raise RequestRejected(
            422,
            "PERSONAL_DATA_IN_IDENTIFIER",
            "申请编号或幂等键中含有居民身份证号码；标识符不得包含个人信息，请改用不含个人信息的编号",
            "application_id or the Idempotency-Key holds a resident ID number; identifiers must "
            "not carry personal data: use an opaque one",
            fields,
        )


def request_sha256(body: Mapping[str, Any]) -> str:
    """The hash an idempotency key is bound to: the canonical JSON of the validated body
    (``model_dump(mode="json")``), encoded as records are (orjson where its text is
    ``canonical_json``'s, ~15 µs less a request than ``json``)."""
    return utf8_hash(canonical_json_bytes_of_dump(body))


def _value_facts(rs: Ruleset, name: str) -> list[str]:
    """The facts a named value reads, through the values it reads."""
    by_name = {v.name: v for v in rs.values}
    seen: set[str] = set()
    facts: list[str] = []
    pending = [name]
    while pending:
        current = by_name.get(pending.pop())
        if current is None or current.name in seen:
            continue
        seen.add(current.name)
        for read in current.inputs:
            if read in by_name:
                pending.append(read)
            else:
                facts.append(read)
    return facts


OUTCOMES = (
    "FOUND",
    "NOT_FOUND",
    "MATCH",
    "NO_MATCH",
    "ERROR",
    "TIMEOUT",
    "MALFORMED",
    "CIRCUIT_OPEN",
    "QUOTA_EXHAUSTED",
    "SKIPPED",
)
"""The closed set of what asking a source can come to (recorded per evidence item)."""
_ERROR_OUTCOMES = {"TIMEOUT", "MALFORMED", "CIRCUIT_OPEN", "QUOTA_EXHAUSTED"}


def outcome_of(status: str, mode: str, values: Mapping[str, object], error_code: str | None) -> str:
    """The closed-set outcome of one evidence item."""
    if status == "skipped":
        return "SKIPPED"
    if status == "error":
        code = (error_code or "ERROR").removeprefix("ADAPTER_")
        return code if code in _ERROR_OUTCOMES else "ERROR"
    if mode == "verify":
        if status == "not_found" and not values:
            return "NOT_FOUND"
        return "MATCH" if values and all(v is True for v in values.values()) else "NO_MATCH"
    return "FOUND" if status == "found" else "NOT_FOUND"


_OUTCOME_ZH = {
    "TIMEOUT": "未在时限内答复",
    "MALFORMED": "返回的数据格式有误",
    "CIRCUIT_OPEN": "连续出错，暂停调用",
    "QUOTA_EXHAUSTED": "调用额度已用完或不在允许的调用时段",
    "ERROR": "暂时无法查询",
}
_OUTCOME_EN = {
    "TIMEOUT": "no answer in time",
    "MALFORMED": "the answer was malformed",
    "CIRCUIT_OPEN": "paused after repeated failures",
    "QUOTA_EXHAUSTED": "call quota used up or outside the allowed hours",
    "ERROR": "could not be asked",
}


def _evidence_reason(item: EvidenceItem) -> Reason | None:
    """Why a source's answer cannot decide: failed, holds no record, or was not asked."""
    name_zh = item.source_name_zh or item.source
    name_en = item.source_name_en or item.source
    if item.status == "error":
        code = ReasonCode.EVIDENCE_UNAVAILABLE
        zh = f"数据源{name_zh}{_OUTCOME_ZH.get(item.outcome or '', '暂时无法查询')}（{item.outcome}），相关条件转人工审核。"
        en = f"{name_en}: {_OUTCOME_EN.get(item.outcome or '', 'could not be asked')} ({item.outcome}); the criteria needing it are referred to a person."
    elif item.status == "not_found":
        code = ReasonCode.EVIDENCE_NOT_FOUND
        zh = f"数据源{name_zh}中没有查到相关记录。"
        en = f"{name_en} holds no record for this applicant."
    elif item.status == "skipped":
        code = ReasonCode.EVIDENCE_NOT_FOUND
        zh = f"未能向数据源{name_zh}查询：查询所需的信息（{item.key_expression}）未能取得。"
        en = f"{name_en} was not asked: what the query needs ({item.key_expression}) could not be obtained."
    else:
        return None
    return Reason(
        code=code,
        evidence=item.id,
        source=item.source,
        outcome=item.outcome,
        message_zh=zh,
        message_en=en,
    )


def _stamp(future: Future[Lookup]) -> None:
    future.done_at = time.perf_counter()  # type: ignore[attr-defined]


def _elapsed(future: object, started: float) -> float:
    ended = getattr(future, "done_at", None) or time.perf_counter()
    return round((ended - started) * 1000, 2)


class _Completed:
    """An in-memory registry's answer, read like a pooled call's future (``result()``).

    A real ``Future`` costs a lock and a condition per lookup, for nothing here.
    """

    __slots__ = ("_error", "_value", "done_at")

    def __init__(self, call: Callable[[], Lookup]) -> None:
        self._value: Lookup | None = None
        self._error: Exception | None = None
        try:
            self._value = call()
        except Exception as exc:  # delivered through result() like a pooled call's
            self._error = exc
        self.done_at = time.perf_counter()

    def result(self, timeout: float | None = None) -> Lookup:
        if self._error is not None:
            raise self._error
        assert self._value is not None
        return self._value


@dataclass
class Prepared:
    request: DecisionRequest
    ruleset: Ruleset
    form: dict[str, Any]
    application_date: dt.date


@dataclass
class Decided:
    prepared: Prepared
    evaluation: Evaluation
    evidence: list[EvidenceItem]
    env: dict[str, object]
    decided_at: dt.datetime
    extra_reasons: list[Reason] = field(default_factory=list)


class DecisionService:
    """Decides applications; everything with side effects (adapters, store, clock) is passed in."""

    def __init__(
        self,
        *,
        catalog: RulesetCatalog,
        adapters: Mapping[str, Adapter],
        store: DecisionStore | None,
        pseudonym_key: str,
        registries: RegistryCatalogue | None = None,
        budget_ms: int = 800,
        budgets: Mapping[str, int] | None = None,
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
        new_id: Callable[[], str] = lambda: str(uuid.uuid4()),
    ) -> None:
        self.catalog = catalog
        self.adapters = dict(adapters)
        self.registries = registries
        self.store = store
        self.key = pseudonym_key.encode("utf-8")
        self.key_id = key_id(pseudonym_key)
        self.budget_ms = budget_ms
        """How long one decision may wait for all its evidence (per service in ``budgets``)."""
        self.budgets = dict(budgets or {})
        self.clock = clock
        self.new_id = new_id
        self._pool = ThreadPoolExecutor(max_workers=32, thread_name_prefix="adapter")
        self.on_stored: Callable[[Any, Any], None] | None = None
        """Runs inside the transaction that stores a decision (opens referral cases)."""
        self.guides: dict[str, Any] = {}
        """Service guides (contact, review body, payment) by service code."""
        self._personal_fields: dict[tuple[str, str], str | None] = {}
        self._output_columns: dict[str, list[OutputColumn]] = {}
        self._purpose_cache: dict[str, dict[str, tuple[list[str], list[str], list[str]]]] = {}
        self._in_memory_cache: dict[str, bool] = {}
        self._static_json: dict[str, dict[str, Any]] = {}
        self._remedy_json: dict[tuple[object, ...], tuple[object, dict[str, Any]]] = {}

    # --- steps ---------------------------------------------------------------------------

    def prepare(self, request: DecisionRequest) -> Prepared:
        day = request.submitted_at.astimezone(SHANGHAI).date()
        try:
            ruleset = self.catalog.in_force(request.service, day)
        except UnknownService as exc:
            raise RequestRejected(
                404, "UNKNOWN_SERVICE", f"未知的事项编码 {exc.service}", str(exc)
            ) from None
        except ServiceUnavailable as exc:
            raise RequestRejected(
                503,
                "SERVICE_UNAVAILABLE",
                f"事项 {exc.service} 暂时无法办理（规则或数据源不可用），请稍后再试",
                f"service {exc.service} cannot decide now (a ruleset or registry is not "
                f"available); try again later",
                [
                    {"loc": ["body", "service"], "msg": r, "type": "service_unavailable"}
                    for r in exc.reasons[:5]
                ],
            ) from None
        except NoVersionInForce:
            raise RequestRejected(
                422,
                "NO_VERSION_IN_FORCE",
                f"申请日期 {day.isoformat()}（北京时间）没有有效的规则版本",
                f"no ruleset version of {request.service} is in force on the application date {day.isoformat()} (Asia/Shanghai)",
                [
                    {
                        "loc": ["body", "submitted_at"],
                        "msg": f"application date {day.isoformat()} has no ruleset in force",
                        "type": "no_version_in_force",
                    }
                ],
            ) from None
        try:
            form = ruleset.form_model.model_validate(request.form).model_dump()
        except pydantic.ValidationError as exc:
            fields = [
                {
                    "loc": ["body", "form", *[str(p) for p in e["loc"]]],
                    "msg": e["msg"],
                    "type": e["type"],
                }
                for e in exc.errors()
            ]
            raise RequestRejected(
                422,
                "INVALID_FORM",
                "申请表填写有误",
                f"the form does not match {ruleset.key}'s input schema",
                fields,
            ) from None
        return Prepared(request, ruleset, form, day)

    def _personal(self, source: str, field_name: str) -> str | None:
        """``id_number`` or ``name`` when a registry field identifies a person (cached)."""
        try:
            return self._personal_fields[(source, field_name)]
        except KeyError:
            pass
        spec = self.registries.get(source) if self.registries is not None else None
        kind = spec.personal(field_name) if spec is not None else None
        if kind is None and is_personal_field(field_name):
            kind = "name" if field_name.endswith("name") else "id_number"
        self._personal_fields[(source, field_name)] = kind
        return kind

    def _columns_of(self, rs: Ruleset) -> list[OutputColumn]:
        """The outputs' titles and units as the record carries them (built once per version)."""
        columns = self._output_columns.get(rs.engine_name)
        if columns is None:
            columns = self._output_columns[rs.engine_name] = [
                OutputColumn(
                    name=c.name,
                    type=c.type,
                    title_zh=c.title.zh if c.title else None,
                    title_en=c.title.en if c.title else None,
                    unit=c.unit,
                )
                for c in (rs.outputs.columns if rs.outputs is not None else ())
            ]
        return columns

    def _purposes(self, rs: Ruleset) -> dict[str, tuple[list[str], list[str], list[str]]]:
        """Per evidence id: the criteria and values that read it, and their legal basis."""
        found = self._purpose_cache.get(rs.engine_name)
        if found is None:
            found = {}
            for plan in rs.evidence:
                prefix = plan.id + "."
                criteria = [c for c in rs.criteria if any(f.startswith(prefix) for f in c.facts)]
                docs = {c.id: c for c in rs.doc.criteria}
                values = [
                    v
                    for v in rs.values
                    if any(f.startswith(prefix) for f in _value_facts(rs, v.name))
                ]
                basis: list[str] = []
                for c in criteria:
                    basis += docs[c.id].legal_basis
                for v in values:
                    basis += v.legal_basis
                found[plan.id] = (
                    [c.id for c in criteria],
                    [v.name for v in values],
                    list(dict.fromkeys(basis)),
                )
            self._purpose_cache[rs.engine_name] = found
        return found

    def _data_use(self, rs: Ruleset, items: list[EvidenceItem]) -> list[DataUse]:
        purposes = self._purposes(rs)
        uses = []
        for item in items:
            if item.status == "skipped":
                continue  # never asked: its key was not available
            criteria, values, basis = purposes.get(item.id, ([], [], []))
            uses.append(
                DataUse(
                    evidence=item.id,
                    source=item.source,
                    mode=item.mode,
                    status=item.status,
                    retrieved_at=item.retrieved_at,
                    service=rs.service,
                    criteria=criteria,
                    values=values,
                    legal_basis=basis,
                )
            )
        return uses

    def _pseudonym(self, value: str, kind: str, memo: dict[tuple[str, str], str]) -> str:
        """``pseudonymize`` once per value and kind within one decision."""
        found = memo.get((value, kind))
        if found is None:
            found = memo[(value, kind)] = pseudonymize(value, key=self.key, kind=kind)
        return found

    def _request(
        self, plan: EvidencePlan, facts: Mapping[str, object], ruleset: Ruleset
    ) -> tuple[dict[str, object], dict[str, ClaimValues | None], list[str]] | str:
        """The key, claims and fields to ask for, or why the registry cannot be asked."""
        key: dict[str, object] = {}
        for key_field, expr in plan.key.items():
            v = (
                facts.get(expr.dotted, MISSING)
                if type(expr) is Name
                else value(expr, facts, ruleset.tables)
            )
            if v is MISSING or v is None or v == "":
                return f"lookup key {plan.key_text} is not available"
            if key_field is None:
                return f"registry {plan.source}: the key field for {plan.key_text} is not known"
            key[key_field] = v
        fields = list(plan.fields)
        claims: dict[str, ClaimValues | None] = {}
        for name, claim in plan.claims.items():
            if claim is None:
                claims[name] = None
                continue
            values = {f: value(e, facts, ruleset.tables) for f, e in claim.equals}
            if any(v is MISSING for v in values.values()):
                fields.remove(name)  # a claim about a missing declaration cannot be checked
                continue
            claims[name] = values
        return key, claims, fields

    def gather(
        self,
        prepared: Prepared,
        now: dt.datetime,
        memo: dict[tuple[str, str], str] | None = None,
    ) -> tuple[dict[str, dict[str, object] | None], list[EvidenceItem]]:
        """Ask every registry, dependency level by level, each call time-boxed.

        Within a level the calls run concurrently (registries answering from memory are
        called inline); a key read from other evidence waits for the level that fetches it.
        """
        rs = prepared.ruleset
        req = prepared.request
        memo = {} if memo is None else memo
        facts = application_env(
            application_date=prepared.application_date,
            id_number=req.applicant.id_number,
            name=req.applicant.name,
            form=prepared.form,
            evidence={},
        )
        fetched: dict[str, dict[str, object] | None] = {}
        items: dict[str, EvidenceItem] = {}
        budget_s = self.budgets.get(rs.service, self.budget_ms) / 1000
        deadline = time.monotonic() + budget_s
        for level in sorted({p.level for p in rs.evidence}):
            pending: list[
                tuple[EvidencePlan, dict[str, object], Future[Lookup] | _Completed, float]
            ] = []
            for plan in (p for p in rs.evidence if p.level == level):
                asked = self._request(plan, facts, rs)
                adapter = self.adapters.get(plan.source)
                if isinstance(asked, str) or adapter is None:
                    fetched[plan.id] = None
                    items[plan.id] = self._item(
                        plan,
                        None,
                        None,
                        status="skipped" if isinstance(asked, str) else "error",
                        error_code="KEY_UNAVAILABLE"
                        if isinstance(asked, str)
                        else "ADAPTER_UNAVAILABLE",
                        error_message=asked
                        if isinstance(asked, str)
                        else f"registry {plan.source} is not loaded",
                    )
                    continue
                key, claims, fields = asked
                mode: LookupMode = "verify" if plan.mode == "verify" else "fetch"
                started = time.perf_counter()
                future: Future[Lookup] | _Completed
                if getattr(adapter, "in_memory", False):
                    future = _Completed(
                        functools.partial(
                            adapter.lookup, key, fields=fields, mode=mode, claims=claims, now=now
                        )
                    )
                else:
                    submitted: Future[Lookup] = (
                        # asynchronous (HTTP): waiting holds no thread
                        adapter.submit(key, fields=fields, mode=mode, claims=claims, now=now)
                        if hasattr(adapter, "submit")
                        else self._pool.submit(
                            adapter.lookup, key, fields=fields, mode=mode, claims=claims, now=now
                        )
                    )
                    submitted.add_done_callback(_stamp)
                    future = submitted
                pending.append((plan, key, future, started))
            for plan, key, future, started in pending:
                try:
                    lookup: Lookup = future.result(timeout=max(0.0, deadline - time.monotonic()))
                except Exception as exc:  # an adapter failure must never become a rejection
                    if isinstance(exc, FutureTimeout):
                        if isinstance(future, Future):
                            future.cancel()
                        code = "TIMEOUT"
                        message = f"no answer within the decision's {round(budget_s * 1000)} ms"
                    else:
                        code = str(getattr(exc, "code", "ERROR"))
                        message = str(getattr(exc, "message", exc))[:300]
                    fetched[plan.id] = None
                    items[plan.id] = self._item(
                        plan,
                        key,
                        None,
                        status="error",
                        error_code=code,
                        error_message=message,
                        memo=memo,
                        elapsed_ms=_elapsed(future, started),
                    )
                    log.warning(
                        "adapter_failed", evidence=plan.id, registry=plan.source, error_code=code
                    )
                    continue
                found = lookup.status == "found" or bool(lookup.values)
                fetched[plan.id] = dict(lookup.values) if found else None
                for k, v in lookup.values.items():
                    if v is not None:
                        facts[f"{plan.id}.{k}"] = v
                items[plan.id] = self._item(
                    plan,
                    key,
                    lookup,
                    status=lookup.status,
                    error_code=lookup.error_code,
                    error_message=lookup.error_message,
                    memo=memo,
                    elapsed_ms=_elapsed(future, started),
                )
        return fetched, [items[e.id] for e in rs.doc.evidence if e.id in items]

    def _key_text(
        self, plan: EvidencePlan, key: Mapping[str, object], memo: dict[tuple[str, str], str]
    ) -> str:
        def shown(field_name: str, v: object) -> str:
            text = json_scalar(v)
            kind = self._personal(plan.source, field_name)
            if kind is None and field_name in plan.pseudonym_keys:
                return self._pseudonym(str(text), "value", memo)
            if kind is not None and isinstance(v, str):
                return self._pseudonym(v, kind, memo)
            return str(text)

        if len(key) == 1:
            ((field_name, v),) = key.items()
            return shown(field_name, v)
        return ", ".join(f"{k}={shown(k, v)}" for k, v in key.items())

    def _item(
        self,
        plan: EvidencePlan,
        key: Mapping[str, object] | None,
        lookup: Lookup | None,
        *,
        status: str,
        error_code: str | None = None,
        error_message: str | None = None,
        memo: dict[tuple[str, str], str] | None = None,
        elapsed_ms: float | None = None,
    ) -> EvidenceItem:
        memo = {} if memo is None else memo
        values: dict[str, Any] = {}
        if lookup is not None:
            for k, v in lookup.values.items():
                kind = self._personal(plan.source, k)
                if kind is not None and isinstance(v, str):
                    v = self._pseudonym(v, kind, memo)
                values[k] = json_scalar(v)
        prov = lookup.provenance if lookup is not None else None
        spec = self.registries.get(plan.source) if self.registries is not None else None
        # Built without validation, as evaluation results are (``unvalidated``; ~6 µs an item,
        # six a decision): every value is already of its type (the plan's mode, a status of
        # the closed set, scalars through ``json_scalar``, the provenance's typed fields).
        # A test holds these items equal to validated ones, field sets included.
        return unvalidated(
            EvidenceItem,
            _EVIDENCE_ITEM_SET,
            {
                "id": plan.id,
                "source": plan.source,
                "mode": plan.mode,
                "key_expression": plan.key_text,
                "key": self._key_text(plan, key, memo) if key else None,
                "status": status,
                "values": values,
                "adapter": prov.adapter if prov else None,
                "adapter_version": prov.adapter_version if prov else None,
                "reference": prov.reference if prov else None,
                "retrieved_at": prov.retrieved_at if prov else None,
                "raw_sha256": prov.raw_sha256 if prov else None,
                "error_code": error_code,
                "error_message": error_message,
                "outcome": outcome_of(status, plan.mode, values, error_code),
                "elapsed_ms": elapsed_ms,
                "ages": {},
                "source_name_zh": spec.name.zh if spec else None,
                "source_name_en": spec.name.en if spec else None,
                "holder_zh": spec.holder.zh if spec else None,
                "holder_en": spec.holder.en if spec else None,
            },
        )

    def decide_prepared(self, prepared: Prepared) -> Decided:
        now = self.clock()
        memo: dict[tuple[str, str], str] = {}
        fetched, items = self.gather(prepared, now, memo)
        req = prepared.request
        pseudo_id = self._pseudonym(req.applicant.id_number, "id_number", memo)
        pseudo_name = self._pseudonym(req.applicant.name, "name", memo)
        sources = {p.id: p.source for p in prepared.ruleset.evidence}
        evidence: dict[str, dict[str, object] | None] = {}
        for eid, values in fetched.items():
            if values is None:
                evidence[eid] = None
                continue
            pseudo: dict[str, object] = {}
            for k, v in values.items():
                kind = self._personal(sources[eid], k)
                pseudo[k] = (
                    self._pseudonym(v, kind, memo) if kind is not None and isinstance(v, str) else v
                )
            evidence[eid] = pseudo
        env = application_env(
            application_date=prepared.application_date,
            id_number=pseudo_id,
            name=pseudo_name,
            form=prepared.form,
            evidence=evidence,
        )
        evaluation = evaluate(prepared.ruleset, env)
        extra = [r for r in map(_evidence_reason, items) if r is not None]
        return Decided(prepared, evaluation, items, env, self.clock(), extra)

    def _kept(self, decided: Decided) -> Minimised:
        """What the record keeps of the form, evidence and values (``minimise``)."""
        p = decided.prepared
        return minimise(
            p.ruleset.recording,
            form=p.form,
            evidence=decided.evidence,
            values=decided.evaluation.values,
            application_date=p.application_date,
            pseudonym=lambda v: self._pseudonym(v, "value", {}),
        )

    def _counterfactuals(self, decided: Decided) -> list[Counterfactual]:
        """For an adverse decision, the change that would make each failed criterion pass."""
        ev = decided.evaluation
        if ev.outcome is Outcome.APPROVED or not any(
            c.status is CriterionStatus.FAIL for c in ev.criteria
        ):
            return []
        return counterfactuals(
            decided.prepared.ruleset, decided.env, ev, registries=self.registries
        )

    def build_record(
        self, decided: Decided, *, decision_id: str, seq: int, prev_hash: str
    ) -> ExplanationRecordV1:
        p = decided.prepared
        rs = p.ruleset
        ev = decided.evaluation
        kept = self._kept(decided)
        return ExplanationRecordV1(
            seq=seq,
            decision_id=decision_id,
            application_id=p.request.application_id,
            service=rs.service,
            service_name_zh=rs.doc.name.zh,
            service_name_en=rs.doc.name.en,
            authority_zh=rs.doc.authority.zh,
            ruleset_version=rs.version,
            ruleset_hash=rs.content_hash,
            engine=EngineInfo(
                version=_version(), evaluator=ev.evaluator, durable_rules=durable_version()
            ),
            submitted_at=p.request.submitted_at,
            application_date=p.application_date,
            decided_at=decided.decided_at,
            applicant=MaskedApplicant(
                id_number=str(decided.env["applicant.id_number"]),
                name=str(decided.env["applicant.name"]),
            ),
            form=kept.form,
            omitted_fields=kept.omitted,
            evidence=kept.evidence,
            data_use=self._data_use(rs, decided.evidence),
            legal_basis=self._legal_basis_of(rs),
            criteria=ev.criteria,
            values=kept.values,
            parameters=ev.parameters,
            outcome=ev.outcome,
            outputs=ev.outputs,
            output_columns=self._columns_of(rs),
            output_rules=ev.output_rules,
            reasons=[*ev.reasons, *decided.extra_reasons],
            counterfactuals=self._counterfactuals(decided),
            remedy=remedy_for(
                ev.outcome,
                decided.decided_at.astimezone(SHANGHAI).date(),
                self.guides.get(rs.service),
                rs.doc.authority.zh,
            ),
            pseudonym_key_id=self.key_id,
            masked_fields=_masked_fields(decided, kept),
            prev_hash=prev_hash,
        )

    def record_json(self, decided: Decided, *, decision_id: str) -> dict[str, Any]:
        """``build_record(decided, decision_id=…, seq=0, prev_hash="")`` as its
        ``model_dump(mode="json", exclude={"record_hash"})``, written directly: the record
        the decision path stores, without building a model of ~30 parts and dumping it
        again (~0.1 ms a decision). ``NotPlain`` for a value it does not write as pydantic
        does; the caller then builds the model. A test holds the two equal for the decisions
        of every shipped service; a field added to the record goes in both."""
        p = decided.prepared
        rs = p.ruleset
        ev = decided.evaluation
        kept = self._kept(decided)
        when = DatetimeJson()
        decided_on = decided.decided_at.astimezone(SHANGHAI).date()
        reasons = [*ev.reasons, *decided.extra_reasons]
        outputs = ev.outputs
        return {
            **self._static_of(rs),
            "schema_version": RECORD_SCHEMA,
            "seq": 0,
            "decision_id": decision_id,
            "application_id": p.request.application_id,
            "engine": {
                "name": "miaopi",
                "version": _version(),
                "evaluator": ev.evaluator,
                "durable_rules": durable_version(),
            },
            "submitted_at": when(p.request.submitted_at),
            "application_date": p.application_date.isoformat(),
            "decided_at": when(decided.decided_at),
            "applicant": {
                "id_number": str(decided.env["applicant.id_number"]),
                "name": str(decided.env["applicant.name"]),
            },
            "form": {k: plain(v) for k, v in kept.form.items()},
            "omitted_fields": list(kept.omitted),
            "evidence": [evidence_json(e, when) for e in kept.evidence],
            "data_use": self._data_use_json(rs, decided.evidence, when),
            "criteria": [criterion_json(c) for c in ev.criteria],
            "values": _VALUES.dump_python(kept.values, mode="json") if kept.values else [],
            "parameters": (
                _PARAMETERS.dump_python(ev.parameters, mode="json") if ev.parameters else []
            ),
            "outcome": ev.outcome.value,
            "outputs": (
                None
                if outputs is None
                else {
                    k: [plain(x) for x in v] if type(v) is list else plain(v)
                    for k, v in outputs.items()
                }
            ),
            "output_rules": list(ev.output_rules),
            "reasons": _REASONS.dump_python(reasons, mode="json") if reasons else [],
            "counterfactuals": (
                _COUNTERFACTUALS.dump_python(found, mode="json")
                if (found := self._counterfactuals(decided))
                else []
            ),
            "remedy": self._remedy_of(ev.outcome, decided_on, rs),
            "pseudonym_key_id": self.key_id,
            "masked_fields": _masked_fields(decided, kept),
            "prev_hash": "",
        }

    def _static_of(self, rs: Ruleset) -> dict[str, Any]:
        """The record's fields that only the ruleset version decides, written once."""
        found = self._static_json.get(rs.engine_name)
        if found is None:
            found = self._static_json[rs.engine_name] = {
                "service": rs.service,
                "service_name_zh": rs.doc.name.zh,
                "service_name_en": rs.doc.name.en,
                "authority_zh": rs.doc.authority.zh,
                "ruleset_version": rs.version,
                "ruleset_hash": rs.content_hash,
                "legal_basis": [b.model_dump(mode="json") for b in self._legal_basis_of(rs)],
                "output_columns": [c.model_dump(mode="json") for c in self._columns_of(rs)],
            }
        return found  # shared by every record of the version: nothing changes a record's dump

    def _remedy_of(self, outcome: Outcome, decided_on: dt.date, rs: Ruleset) -> dict[str, Any]:
        """``remedy_for(…)`` as JSON, written once per outcome, day and service guide."""
        guide = self.guides.get(rs.service)
        key = (outcome, decided_on, rs.service, rs.doc.authority.zh)
        found = self._remedy_json.get(key)
        if found is None or found[0] is not guide:
            if len(self._remedy_json) > 4096:  # days go by: keep the table small
                self._remedy_json.clear()
            notice = remedy_for(outcome, decided_on, guide, rs.doc.authority.zh)
            found = self._remedy_json[key] = (guide, notice.model_dump(mode="json"))
        return found[1]  # shared, as ``_static_of``'s

    def _data_use_json(
        self, rs: Ruleset, items: list[EvidenceItem], when: DatetimeJson
    ) -> list[dict[str, Any]]:
        """``_data_use`` as JSON (each ``DataUse``'s dump), written directly."""
        purposes = self._purposes(rs)
        uses = []
        for item in items:
            if item.status == "skipped":
                continue
            criteria, values, basis = purposes.get(item.id, ([], [], []))
            uses.append(
                {
                    "evidence": item.id,
                    "source": item.source,
                    "mode": item.mode,
                    "status": item.status,
                    "retrieved_at": when(item.retrieved_at),
                    "service": rs.service,
                    "criteria": list(criteria),
                    "values": list(values),
                    "legal_basis": list(basis),
                }
            )
        return uses

    def _legal_basis_of(self, rs: Ruleset) -> list[LegalBasisRef]:
        return [
            LegalBasisRef(
                id=b.id,
                title=b.title,
                issuer=b.issuer,
                doc_number=b.doc_number,
                article=b.article,
            )
            for b in rs.doc.legal_basis
        ]

    # --- whole decisions -----------------------------------------------------------------

    def decide(
        self, request: DecisionRequest, *, idempotency_key: str, body_sha256: str
    ) -> StoredDecision:
        """Decide and store atomically; a retried key returns the stored response."""
        assert self.store is not None, "decide() needs a store; use decide_unstored() for a dry run"
        started = time.perf_counter()
        refuse_personal_identifiers(request.application_id, idempotency_key)
        # Looked up first: a retry must not ask the registries again (their quotas, their load).
        existing = self._stored(idempotency_key, body_sha256)
        if existing is not None:
            return existing
        prepared = self.prepare(request)
        decided, record = self._decided(prepared)
        stored = self.store.append(
            idempotency_key=idempotency_key,
            request_sha256=body_sha256,
            record=record,
            on_stored=self.on_stored,
        )
        self._observe(stored, decided, started)
        return stored

    async def decide_async(
        self, request: DecisionRequest, *, idempotency_key: str, body_sha256: str
    ) -> StoredDecision:
        """``decide`` for the event loop: a decision whose evidence all comes from memory is
        decided right here (CPU only, ~1 ms) and waits for its group commit without holding a
        thread; one that asks a remote registry runs ``decide`` in the thread pool.

        The key is not looked up first on the in-memory path: the group commit finds a stored
        key anyway and answers the stored decision (a retry costs a decision's CPU, and no
        registry is asked). A retry that can no longer be decided (the service paused, say)
        still gets its stored decision."""
        assert self.store is not None, "decide() needs a store; use decide_unstored() for a dry run"
        started = time.perf_counter()
        refuse_personal_identifiers(request.application_id, idempotency_key)
        try:
            prepared = self.prepare(request)
        except RequestRejected:
            existing = self._stored(idempotency_key, body_sha256)
            if existing is not None:
                return existing
            raise
        if not self._in_memory(prepared.ruleset):
            return await run_in_threadpool(
                self.decide, request, idempotency_key=idempotency_key, body_sha256=body_sha256
            )
        decided, record = self._decided(prepared)
        stored = await self.store.append_async(
            idempotency_key=idempotency_key,
            request_sha256=body_sha256,
            record=record,
            on_stored=self.on_stored,
        )
        self._observe(stored, decided, started)
        return stored

    def _stored(self, idempotency_key: str, body_sha256: str) -> StoredDecision | None:
        """The decision already stored under the key (``IdempotencyConflict`` for another body)."""
        assert self.store is not None
        existing = self.store.find_by_key(idempotency_key)
        if existing is None:
            return None
        if existing.request_sha256 != body_sha256:
            raise IdempotencyConflict(idempotency_key)
        return StoredDecision(
            existing.id,
            json.loads(existing.response_json),
            True,
            self.store.receipt(existing.id),
        )

    def _in_memory(self, rs: Ruleset) -> bool:
        """Whether every registry the ruleset asks answers from memory (never blocks)."""
        found = self._in_memory_cache.get(rs.engine_name)
        if found is None:
            adapters = [self.adapters.get(plan.source) for plan in rs.evidence]
            found = self._in_memory_cache[rs.engine_name] = all(
                a is None or getattr(a, "in_memory", False)  # None: not loaded, never called
                for a in adapters
            )
        return found

    def _decided(self, prepared: Prepared) -> tuple[Decided, Unsealed]:
        decided = self.decide_prepared(prepared)
        # Built and encoded here, outside the chain's lock; the store only seals and writes it.
        decision_id = self.new_id()
        try:
            record = Unsealed.of_dump(
                self.record_json(decided, decision_id=decision_id), decided_at=decided.decided_at
            )
        except NotPlain:  # a value only the model writes right: build it
            record = Unsealed(
                self.build_record(decided, decision_id=decision_id, seq=0, prev_hash="")
            )
        return decided, record

    def _observe(self, stored: StoredDecision, decided: Decided, started: float) -> None:
        if stored.replayed:
            return
        rs = decided.prepared.ruleset
        log.info(
            "decided",
            decision_id=stored.decision_id,
            application_id=decided.prepared.request.application_id,
            service=rs.service,
            ruleset_version=rs.version,
            outcome=decided.evaluation.outcome.value,
        )
        observe_decision(
            service=rs.service,
            outcome=decided.evaluation.outcome.value,
            seconds=time.perf_counter() - started,
            evidence=[(e.source, e.outcome or "ERROR") for e in decided.evidence],
        )

    def decide_unstored(
        self, request: DecisionRequest
    ) -> tuple[dict[str, Any], ExplanationRecordV1]:
        """Decide without storing (CLI dry runs, benchmarks): seq 0, no chain link."""
        refuse_personal_identifiers(request.application_id)
        decided = self.decide_prepared(self.prepare(request))
        record, _ = self.build_record(
            decided, decision_id=self.new_id(), seq=0, prev_hash=""
        ).sealed()
        return decision_response(record), record

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
