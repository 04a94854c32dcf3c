"""The explanation record: one versioned, append-only account of one automated decision."""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import hmac
import json
import math
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from engine import CriterionResult, Outcome, Reason
from engine.decision import JsonScalar, JsonValue, ParameterUse, ValueResult
from engine.privacy import mask_name
from explanations.guide import Office

__all__ = [
    "HUMAN_DECISION_SCHEMA",
    "RECORD_SCHEMA",
    "AnyRecord",
    "DataUse",
    "DecisionResponse",
    "EngineInfo",
    "EvidenceItem",
    "ExplanationRecordV1",
    "HumanDecisionRecord",
    "LegalBasisRef",
    "MaskedApplicant",
    "OutputColumn",
    "RemedyNotice",
    "Unsealed",
    "canonical_json",
    "decision_response",
    "is_personal_field",
    "parse_record",
    "pseudonymize",
    "remedy_notice",
    "response_of",
    "text_hash",
]

RECORD_SCHEMA = "miaopi.explanation-record/4"
"""The version written now. Version 2 adds computed values, the parameters in force, the
matched output rules, the source of every compared value and registry names. Version 3
adds the counterfactual of each failed criterion, the remedy notice naming bodies (or a
referral's next steps instead of appeal routes) and the pseudonym key's id. Version 4 keeps
only what the decision used: form fields no rule reads are omitted (``omitted_fields``),
those used only to ask a registry are pseudonymised (``form.<name>`` in ``masked_fields``)
and a birth date is kept as the age on the application date (``EvidenceItem.ages``).
Records of versions 1 to 3 still read, verify and replay."""


def canonical_json(data: object) -> str:
    """Sorted keys, no whitespace, UTF-8 characters kept: the exact text that is hashed."""
    return json.dumps(data, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


_DIGITS = frozenset(b"0123456789")
_NUMBER_ENDS = frozenset(b",]}")


def _numbers_may_differ(text: bytes) -> bool:
    """Whether orjson's ``text`` may spell a float otherwise than ``json`` does.

    orjson writes a float as ``repr`` does but for two forms: from 1e-5 down to 1e-6 without
    an exponent (``0.00001`` where ``json`` writes ``1e-05``), and a one-digit negative
    exponent without its leading zero (``1.5e-7`` vs ``1.5e-07``); positive exponents and
    exponents of two digits or more are spelt alike (``1e+16``, ``2.5e-300``). So: a
    ``0.0000``, or ``e-`` and one digit that end a number (a digit before, ``,``, ``]``,
    ``}`` or the end after). Conservative: the same bytes inside a string count too. Both
    scans look for a two-byte literal, which ``in`` and ``find`` pass over at memory speed;
    a record's English text holds an ``e-`` now and then (``re-``), each looked at in place
    (a regex over the whole text cost ~20 µs a record that has one). A test sweeps every
    exponent."""
    if b"0.0000" in text:
        return True
    at = text.find(b"e-")
    while at != -1:  # most records: none, one scan
        end = at + 3
        if (
            at
            and text[at - 1] in _DIGITS
            and end <= len(text)
            and text[at + 2] in _DIGITS
            and (end == len(text) or text[end] in _NUMBER_ENDS)
        ):
            return True
        at = text.find(b"e-", at + 2)
    return False


def canonical_json_bytes_of_dump(data: object) -> bytes:
    """``canonical_json`` of what ``model_dump(mode="json")`` returns, in UTF-8, several
    times faster.

    orjson writes the same text as ``canonical_json`` for such data (keys sorted by code
    point, the same escapes, no NaN: pydantic's JSON mode writes it as null), except ints
    beyond 64 bits (orjson refuses them) and some floats below 1e-4 or in exponent form:
    for those this falls back to ``canonical_json`` itself. A test holds the two equal.
    """
    try:
        raw = orjson.dumps(data, option=orjson.OPT_SORT_KEYS)
    except TypeError:  # an int beyond 64 bits, or a type orjson does not write
        return canonical_json(data).encode("utf-8")
    if _numbers_may_differ(raw):
        return canonical_json(data).encode("utf-8")
    return raw


def text_hash(text: str) -> str:
    """``sha256:<hex>`` of UTF-8 text: how records and their links are hashed."""
    return utf8_hash(text.encode("utf-8"))


def utf8_hash(body: bytes) -> str:
    """``text_hash`` of text already in UTF-8."""
    return "sha256:" + hashlib.sha256(body).hexdigest()


@functools.lru_cache(maxsize=4096)  # field names come from rulesets and the catalogue
def is_personal_field(name: str) -> bool:
    """Fields that identify a person and are pseudonymised in records and logs."""
    leaf = name.rsplit(".", 1)[-1]
    return leaf.endswith("id_number") or leaf in {"name", "holder_name"}


def pseudonymize(value: str, *, key: bytes, kind: str) -> str:
    """A masked, keyed pseudonym: equal inputs give equal outputs, and nothing is reversible.

    ``******************~3f9c2a1b7d4e`` — the mask for people, the HMAC so that replay can
    still compare two identity numbers for equality. An ID number shows none of its digits
    (records before version 4 showed the first 3 and last 4, ``440***********0018~…``):
    with the key, the sequence and check digits left a handful of candidates per birth date
    (scripts/pseudonym_attack.py). ``kind`` ``value`` (a form field used only to ask a
    registry, such as a certificate number) shows no character either: ``***~…``.
    """
    if kind == "id_number":
        masked = "*" * len(value)
    elif kind == "value":
        masked = "***"
    else:
        masked = mask_name(value)
    digest = hmac.digest(key, value.encode("utf-8"), "sha256").hex()[:12]  # C, one call
    return f"{masked}~{digest}"


class MaskedApplicant(BaseModel):
    model_config = ConfigDict(frozen=True)

    id_number: str
    name: str


class EngineInfo(BaseModel):
    model_config = ConfigDict(frozen=True)

    name: Literal["miaopi"] = "miaopi"
    version: str
    evaluator: Literal["durable_rules", "reference"]
    durable_rules: str


class EvidenceItem(BaseModel):
    """One fact group as obtained, with where it came from."""

    model_config = ConfigDict(frozen=True)

    id: str
    source: str
    mode: Literal["fetch", "verify"]
    key_expression: str
    key: str | None
    """The lookup key, pseudonymised when it identifies a person."""
    status: Literal["found", "not_found", "error", "skipped"]
    values: dict[str, JsonScalar]
    adapter: str | None = None
    adapter_version: str | None = None
    reference: str | None = None
    retrieved_at: dt.datetime | None = None
    raw_sha256: str | None = None
    error_code: str | None = None
    error_message: str | None = None
    outcome: str | None = None
    """One of the closed set ``FOUND``, ``NOT_FOUND``, ``MATCH``, ``NO_MATCH``, ``ERROR``,
    ``TIMEOUT``, ``MALFORMED``, ``CIRCUIT_OPEN``, ``QUOTA_EXHAUSTED``, ``SKIPPED`` (version 3)."""
    elapsed_ms: float | None = None
    """How long the source took to answer (or to fail) for this decision."""
    ages: dict[str, int | None] = Field(default_factory=dict)
    """Fields the catalogue records as an age (``record: age``): the whole years (周岁) on the
    application date instead of the value, which is not in ``values`` (version 4)."""
    source_name_zh: str | None = None
    """The registry's name (人口库) and the agency that holds it, from the catalogue."""
    source_name_en: str | None = None
    holder_zh: str | None = None
    holder_en: str | None = None


class DataUse(BaseModel):
    """One registry query made for this decision and why (数据使用记录): as Estonia's X-Road
    Data Tracker and the Dutch Verwerkingenlogging keep them, for the person to read."""

    model_config = ConfigDict(frozen=True)

    evidence: str
    source: str
    mode: Literal["fetch", "verify"]
    status: str
    retrieved_at: dt.datetime | None = None
    service: str
    """The purpose: this service's decision…"""
    criteria: list[str]
    """…on these criteria (ids), which read the facts obtained…"""
    values: list[str] = []
    """…and these computed values (amounts and the like)…"""
    legal_basis: list[str]
    """…as these legal documents (ids in ``legal_basis``) provide."""


class LegalBasisRef(BaseModel):
    """One cited legal document, copied from the ruleset into the record."""

    model_config = ConfigDict(frozen=True)

    id: str
    title: str
    issuer: str
    doc_number: str | None = None
    article: str | None = None

    def citation(self) -> str:
        """《title》(文号) article — how a citizen reads the reference."""
        text = f"《{self.title}》"
        if self.doc_number:
            text += f"（{self.doc_number}）"
        return text + (self.article or "")


class RemedyRoute(BaseModel):
    model_config = ConfigDict(frozen=True)

    kind: Literal["human_review", "administrative_reconsideration", "administrative_litigation"]
    title_zh: str
    title_en: str
    deadline: dt.date
    basis: str
    how_zh: str
    how_en: str


class RemedyNotice(BaseModel):
    model_config = ConfigDict(frozen=True)

    routes: list[RemedyRoute]


def _add_months(day: dt.date, months: int) -> dt.date:
    import calendar

    month0 = day.month - 1 + months
    year, month = day.year + month0 // 12, month0 % 12 + 1
    return dt.date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


def remedy_notice(*, decided_on: dt.date, authority_zh: str) -> RemedyNotice:
    """The three routes of remedy, with deadlines counted from the day the decision is known.

    Periods start the day after (《民法典》第二百零一条); 60 days for reconsideration
    (《中华人民共和国行政复议法》第二十条) and six months for litigation
    (《中华人民共和国行政诉讼法》第四十六条).
    """
    return RemedyNotice(
        routes=[
            RemedyRoute(
                kind="human_review",
                title_zh="申请人工复核",
                title_en="Ask for review by a person",
                deadline=decided_on + dt.timedelta(days=15),
                basis="本系统服务承诺 / service commitment",
                how_zh=f"在期限内通过政务服务平台或向{authority_zh}提出，由工作人员重新审查本申请。",
                how_en="Ask through the service platform or the authority; an officer re-examines the application.",
            ),
            RemedyRoute(
                kind="administrative_reconsideration",
                title_zh="申请行政复议",
                title_en="Apply for administrative reconsideration",
                deadline=decided_on + dt.timedelta(days=60),
                basis="《中华人民共和国行政复议法》第二十条",
                how_zh="自知道该行政行为之日起六十日内向行政复议机关提出。",
                how_en="Within 60 days of learning of the decision, to the reconsideration authority.",
            ),
            RemedyRoute(
                kind="administrative_litigation",
                title_zh="提起行政诉讼",
                title_en="Bring an administrative lawsuit",
                deadline=_add_months(decided_on, 6),
                basis="《中华人民共和国行政诉讼法》第四十六条",
                how_zh="自知道作出行政行为之日起六个月内向人民法院提起诉讼。",
                how_en="Within six months of learning of the decision, before a people's court.",
            ),
        ]
    )


RouteKind = Literal[
    "human_review", "human_decision", "administrative_reconsideration", "administrative_litigation"
]


class RemedyRouteV2(BaseModel):
    """One way to challenge a decision, naming the body that hears it.

    Extends ``RemedyRoute`` with the body (from the service guide), its contact, the English
    legal basis, and an optional deadline (a request for a human decision has none).
    """

    model_config = ConfigDict(frozen=True)

    kind: RouteKind
    title_zh: str
    title_en: str
    deadline: dt.date | None
    basis: str
    """The legal basis as cited in Chinese (``《…》第二十条``) or the service commitment."""
    basis_en: str
    body_zh: str
    body_en: str
    contact: Office | None = None
    how_zh: str
    how_en: str


class ReferralSteps(BaseModel):
    """What happens to a referred application: who reviews it, by when, what helps."""

    model_config = ConfigDict(frozen=True)

    body_zh: str
    body_en: str
    contact: Office | None = None
    working_days: int | None
    """None when the service has no guide: no due date is promised then."""
    due_on: dt.date | None
    prepare_zh: list[str]
    prepare_en: list[str]


class RemedyNoticeV2(BaseModel):
    """The notice for one decision: routes of remedy (REJECTED, APPROVED) or the next steps
    of a referral (REFERRED, which has no routes: it is not a final decision)."""

    model_config = ConfigDict(frozen=True)

    outcome: Outcome
    decided_on: dt.date
    routes: list[RemedyRouteV2]
    referral: ReferralSteps | None = None

    def to_v1(self) -> RemedyNotice:
        """The routes the version-1/2 record can hold (those with a deadline, of its kinds)."""
        return RemedyNotice(
            routes=[
                RemedyRoute(
                    kind=r.kind,
                    title_zh=r.title_zh,
                    title_en=r.title_en,
                    deadline=r.deadline,
                    basis=r.basis,
                    how_zh=r.how_zh,
                    how_en=r.how_en,
                )
                for r in self.routes
                if r.deadline is not None and r.kind != "human_decision"
            ]
        )


ChangeOp = Literal[">=", "<=", "==", "!=", "in", "not in", ">", "<"]
"""What the new value must satisfy against ``required``. ``>`` and ``<`` are accepted in
stored records but never produced: strict bounds are written as ``>=``/``<=`` of the next
value (see the module docstring)."""


class Change(BaseModel):
    """One fact to change: what it is now and the nearest value that makes the criterion pass."""

    model_config = ConfigDict(frozen=True)

    fact: str
    """The input as the facts name it (``form.degree``, ``social_insurance.months_contributed``,
    ``population.birth_date``), or a term's expression text when ``source`` is ``computed``."""
    source: str | None
    """``declared``, ``registry:<id>``, ``application`` or ``computed``."""
    current: JsonScalar
    """Its value now, as the decision record writes it (decimals as strings, dates ISO);
    ``None`` when there is no record."""
    required: JsonValue
    """The nearest value for which ``new op required`` holds; a list for ``in``/``not in``."""
    op: ChangeOp


class Counterfactual(BaseModel):
    """What would have to be different for one failed criterion to pass."""

    model_config = ConfigDict(frozen=True)

    criterion: str
    changes: list[Change] = Field(default_factory=list)
    """Empty when no change could be computed; ``text_zh`` then says what must hold."""
    actionable: bool
    """Whether the applicant can bring about at least one of the changes (see the module
    docstring for the rule); False when there are no changes."""
    text_zh: str
    text_en: str
    table_row: int | None = None
    """The decision-table row (numbered from 1) the changes rely on, for a criterion that
    reads a table."""


class OutputColumn(BaseModel):
    """How an output is named and measured, copied from the ruleset so the record reads alone."""

    model_config = ConfigDict(frozen=True)

    name: str
    type: str
    title_zh: str | None = None
    title_en: str | None = None
    unit: str | None = None


class ExplanationRecordV1(BaseModel):
    """Everything needed to read, challenge, replay and verify one decision.

    Personal identifiers appear only pseudonymised (see ``masked_fields``). ``prev_hash``
    links to the record before it; ``record_hash`` is the SHA-256 of this record's canonical
    JSON without ``record_hash`` itself.
    """

    model_config = ConfigDict(frozen=True)

    schema_version: Literal[
        "miaopi.explanation-record/1",
        "miaopi.explanation-record/2",
        "miaopi.explanation-record/3",
        "miaopi.explanation-record/4",
    ] = "miaopi.explanation-record/4"
    seq: int
    decision_id: str
    application_id: str
    service: str
    service_name_zh: str
    service_name_en: str
    authority_zh: str
    ruleset_version: str
    ruleset_hash: str
    engine: EngineInfo
    submitted_at: dt.datetime
    application_date: dt.date
    decided_at: dt.datetime
    applicant: MaskedApplicant
    form: dict[str, JsonScalar]
    """The form fields a rule reads (version 4; before, every field as received)."""
    omitted_fields: list[str] = []
    """Form fields the applicant filled in that no rule reads: named, not kept (version 4)."""
    evidence: list[EvidenceItem]
    data_use: list[DataUse] = []
    """Every registry query made for the decision with its purpose (version 3)."""
    legal_basis: list[LegalBasisRef]
    """The documents the criteria cite (by ``id``), as the ruleset version names them."""
    criteria: list[CriterionResult]
    values: list[ValueResult] = []
    """Named intermediate values with the inputs each read (record version 2)."""
    parameters: list[ParameterUse] = []
    """The dated parameters in force on the application date, with their periods."""
    outcome: Outcome
    outputs: dict[str, JsonValue] | None
    output_columns: list[OutputColumn] = []
    """Title, unit and type of each output (record version 2)."""
    output_rules: list[int] = []
    """The rules of the outputs table (numbered from 1) that matched."""
    reasons: list[Reason]
    counterfactuals: list[Counterfactual] = []
    """For each failed criterion, the minimal change that would make it pass (version 3)."""
    remedy: Annotated[RemedyNoticeV2 | RemedyNotice, Field(union_mode="left_to_right")]
    """Remedies of an adverse decision, or a referral's next steps (version 3); version 1
    and 2 records hold the three routes only."""
    masked_fields: list[str]
    """The fields held as keyed pseudonyms (``applicant.id_number``, ``form.<name>`` …)."""
    pseudonym_key_id: str | None = None
    """Which pseudonym key made this record's pseudonyms (version 3; keys rotate)."""
    prev_hash: str
    record_hash: str = ""

    def body_json(self) -> str:
        """The canonical JSON that ``record_hash`` covers."""
        return canonical_json(self.model_dump(mode="json", exclude={"record_hash"}))

    def sealed(self) -> tuple[ExplanationRecordV1, str]:
        """This record with its ``record_hash`` set, and the exact text that hash covers."""
        body = self.body_json()
        return self.model_copy(update={"record_hash": text_hash(body)}), body


HUMAN_DECISION_SCHEMA = "miaopi.human-decision/1"


class HumanDecisionRecord(BaseModel):
    """A decision made by a person on a review case: a new record, linked, never an edit.

    It names the automated decision it reviews (``reviews_decision_id``), the case, the
    reviewer (an authenticated subject, not a name), the outcome and the reasons. It is a
    leaf of the same log and link of the same chain as the automated records.
    """

    model_config = ConfigDict(frozen=True)

    schema_version: Literal["miaopi.human-decision/1"] = "miaopi.human-decision/1"
    seq: int
    decision_id: str
    reviews_decision_id: str
    case_id: str
    case_kind: Literal["referral", "objection", "human_decision"]
    application_id: str
    service: str
    ruleset_version: str
    automated_outcome: Outcome
    outcome: Outcome
    outputs: dict[str, JsonValue] | None = None
    reason_zh: str
    reason_en: str | None = None
    reviewer: str
    decided_at: dt.datetime
    prev_hash: str
    record_hash: str = ""

    def body_json(self) -> str:
        return canonical_json(self.model_dump(mode="json", exclude={"record_hash"}))

    def sealed(self) -> tuple[HumanDecisionRecord, str]:
        body = self.body_json()
        return self.model_copy(update={"record_hash": text_hash(body)}), body


AnyRecord = ExplanationRecordV1 | HumanDecisionRecord


def join_parts(parts: tuple[bytes, bytes, bytes], seq_at: int, seq: int, prev_hash: str) -> bytes:
    """An unsealed record's UTF-8 text with ``seq`` and ``prev_hash`` put in
    (``Unsealed.parts``): the one way the chain's text is assembled, in the worker or in the
    commit process. Bytes, as orjson wrote them: the hash is taken over them as they are, and
    only the database needs them as text (one decode, ``sealed_text``)."""
    pieces = {
        seq_at: b'"seq":%d' % int(seq),
        3 - seq_at: b'"prev_hash":' + canonical_json(prev_hash).encode("utf-8"),
    }
    a, b, c = parts
    return b"".join((a, pieces[1], b, pieces[2], c))


def sealed_text(body: bytes) -> tuple[str, str]:
    """A joined record's text and its ``record_hash`` (``text_hash`` of that text)."""
    return body.decode("utf-8"), utf8_hash(body)


class NotPlain(Exception):
    """A value the hand-written dumps below do not spell as pydantic's JSON mode does (a
    non-finite float, a type outside JSON's): the caller builds and dumps the model instead."""


_DATETIME = TypeAdapter(dt.datetime)


def plain(v: object) -> JsonScalar:
    """A ``JsonScalar`` field's value as ``model_dump(mode="json")`` gives it (``NotPlain``
    for anything but a str, int, bool, None or finite float of exactly those types)."""
    t = type(v)
    if t is str or t is int or t is bool or v is None:
        return v  # type: ignore[return-value]
    if t is float and math.isfinite(v):  # type: ignore[arg-type]
        return v  # type: ignore[return-value]
    raise NotPlain(f"{t.__name__} value")


class DatetimeJson:
    """Datetimes as pydantic's JSON mode writes them (``…Z`` for UTC), each written once per
    record: a record holds the same few instants many times (every registry's answer time)."""

    __slots__ = ("_seen",)

    def __init__(self) -> None:
        self._seen: dict[tuple[dt.datetime, object], str] = {}

    def __call__(self, v: dt.datetime | None) -> str | None:
        if v is None:
            return None
        key = (v, v.tzinfo)  # equal instants in two offsets are written differently
        text = self._seen.get(key)
        if text is None:
            text = self._seen[key] = _DATETIME.dump_python(v, mode="json")
        return text


def criterion_json(c: CriterionResult) -> dict[str, Any]:
    """``c.model_dump(mode="json")``, written out (~2× pydantic's speed for this shape; a
    test holds the two equal over every shipped service's decisions)."""
    return {
        "id": c.id,
        "title_zh": c.title_zh,
        "title_en": c.title_en,
        "status": c.status.value,
        "on_fail": c.on_fail,
        "legal_basis": list(c.legal_basis),
        "condition": c.condition,
        "values": [
            {
                "expression": v.expression,
                "value": plain(v.value),
                "missing": v.missing,
                "source": v.source,
            }
            for v in c.values
        ],
        "missing_facts": list(c.missing_facts),
        "reason_zh": c.reason_zh,
        "reason_en": c.reason_en,
    }


def evidence_json(e: EvidenceItem, datetime_json: DatetimeJson) -> dict[str, Any]:
    """``e.model_dump(mode="json")``, written out (as ``criterion_json``)."""
    return {
        "id": e.id,
        "source": e.source,
        "mode": e.mode,
        "key_expression": e.key_expression,
        "key": e.key,
        "status": e.status,
        "values": {k: plain(v) for k, v in e.values.items()},
        "adapter": e.adapter,
        "adapter_version": e.adapter_version,
        "reference": e.reference,
        "retrieved_at": datetime_json(e.retrieved_at),
        "raw_sha256": e.raw_sha256,
        "error_code": e.error_code,
        "error_message": e.error_message,
        "outcome": e.outcome,
        "elapsed_ms": plain(e.elapsed_ms),
        "ages": {k: plain(v) for k, v in e.ages.items()},
        "source_name_zh": e.source_name_zh,
        "source_name_en": e.source_name_en,
        "holder_zh": e.holder_zh,
        "holder_en": e.holder_en,
    }


class Unsealed:
    """A record encoded once, ahead of its place in the chain.

    The record is encoded here, outside the chain's lock, with markers where ``seq`` and
    ``prev_hash`` go; ``seal`` puts the two in and hashes the result, which is exactly
    ``canonical_json`` of the whole record (one canonical encoding, whoever seals).

    An automated decision's record may come as its JSON-mode dump alone (``of_dump``): the
    decision path writes that dump directly, which costs a fraction of building the model and
    dumping it. The model is then made only if someone asks for ``record``.
    """

    __slots__ = ("_data", "_record", "_seq_at", "fields", "parts", "response")

    _SEQ = -918_273_645_546_372_819
    _PREV = "\u0000prev_hash\u0000"

    def __init__(self, record: AnyRecord) -> None:
        self._record: AnyRecord | None = record
        self._data: dict[str, Any] | None = None
        automated = isinstance(record, ExplanationRecordV1)
        self.fields: tuple[str, str, str, str, Outcome, dt.datetime] | None = (
            (
                record.decision_id,
                record.application_id,
                record.service,
                record.ruleset_version,
                record.outcome,
                record.decided_at,
            )
            if automated
            else None
        )
        """The decision row's fields (an automated decision's), as ``Encoded`` carries them."""
        self._encode(record.model_dump(mode="json", exclude={"record_hash"}), automated)

    @classmethod
    def of_dump(cls, data: dict[str, Any], *, decided_at: dt.datetime) -> Unsealed:
        """An automated decision's record given as exactly what ``model_dump(mode="json",
        exclude={"record_hash"})`` of its ``ExplanationRecordV1`` would return (its
        ``decided_at`` as the datetime it was made from)."""
        self = cls.__new__(cls)
        self._record = None
        self._data = data
        self.fields = (
            data["decision_id"],
            data["application_id"],
            data["service"],
            data["ruleset_version"],
            Outcome(data["outcome"]),
            decided_at,
        )
        self._encode(dict(data), True)
        return self

    def _encode(self, data: dict[str, Any], automated: bool) -> None:
        data["seq"], data["prev_hash"] = self._SEQ, self._PREV
        # UTF-8 bytes throughout: the markers are ASCII, bytes are searched and split at
        # memory speed, and the parts travel to the commit process without a decode here and
        # an encode there (~25 µs a record of mostly Chinese text).
        raw = canonical_json_bytes_of_dump(data)
        if raw.count(_SEQ_MARK) != 1 or raw.count(_PREV_MARK) != 1:
            # The markers also stand somewhere in the content: seal the whole record then.
            self.parts: tuple[bytes, bytes, bytes] | None = None
        else:
            head, tail = raw.split(_SEQ_MARK)
            if _PREV_MARK in head:
                a, b = head.split(_PREV_MARK)
                self.parts, self._seq_at = (a, b, tail), 2
            else:
                b, c = tail.split(_PREV_MARK)
                self.parts, self._seq_at = (head, b, c), 1
        self.response: dict[str, Any] | None = _response_of_dump(data) if automated else None
        """The platform's answer but for ``record_hash`` (set when sealed)."""

    @property
    def record(self) -> AnyRecord:
        """The record's model, at seq 0 after no record (made from the dump when needed)."""
        if self._record is None:
            assert self._data is not None
            self._record = ExplanationRecordV1.model_validate(self._data)
        return self._record

    def unchained(self) -> Chained | None:
        """An automated decision's row fields before it has a place in the chain (seq 0, no
        hashes): what opening its referral case reads. None for a human decision."""
        return None if self.fields is None else Chained.of(self.fields, 0, "", "", None)

    @property
    def seq_at(self) -> int:
        """Which gap of ``parts`` takes ``seq`` (1 or 2; the other takes ``prev_hash``)."""
        return self._seq_at

    def seal(self, seq: int, prev_hash: str) -> tuple[AnyRecord | Chained, str, dict[str, Any]]:
        """The record at ``seq`` after ``prev_hash``, its hashed text, and its response.

        The record comes back as its model, or as its ``Chained`` fields when it was given
        as a dump (what the store writes its rows from either way)."""
        if self.parts is None:
            record, body = self.record.model_copy(
                update={"seq": seq, "prev_hash": prev_hash}
            ).sealed()
            if self.response is None:
                return record, body, response_of(record)
            return record, body, {**self.response, "record_hash": record.record_hash}
        body, record_hash = sealed_text(join_parts(self.parts, self._seq_at, seq, prev_hash))
        if self._record is None and self.fields is not None and self.response is not None:
            chained = Chained.of(self.fields, seq, prev_hash, record_hash, None)
            return chained, body, {**self.response, "record_hash": record_hash}
        record = self.record.model_copy(
            update={"seq": seq, "prev_hash": prev_hash, "record_hash": record_hash}
        )
        if self.response is None:
            return record, body, response_of(record)
        return record, body, {**self.response, "record_hash": record_hash}


_SEQ_MARK = b'"seq":%d' % Unsealed._SEQ
_PREV_MARK = b'"prev_hash":' + canonical_json(Unsealed._PREV).encode("utf-8")
"""How ``Unsealed`` marks the gaps in its encoded text (one ``json`` call a record, once)."""


_RESPONSE_FIELDS = {
    "decision_id",
    "application_id",
    "service",
    "outcome",
    "outputs",
    "criteria",
    "reasons",
    "ruleset_version",
    "ruleset_hash",
    "application_date",
    "decided_at",
}
"""The record's fields the platform's response is made of."""


def _response_of_dump(data: dict[str, Any], record_hash: str = "") -> dict[str, Any]:
    """The platform's response, read off the record's JSON-mode dump (or the part of it in
    ``_RESPONSE_FIELDS``): the one definition of the response. An unsealed record's dump is
    made anyway, to be encoded; dumping a response model as well cost ~20 µs."""
    decision_id = data["decision_id"]
    criteria = data["criteria"]
    return {
        "decision_id": decision_id,
        "application_id": data["application_id"],
        "service": data["service"],
        "outcome": data["outcome"],
        "outputs": data["outputs"],
        "failed_criteria": [c["id"] for c in criteria if c["status"] == "FAIL"],
        "unknown_criteria": [c["id"] for c in criteria if c["status"] == "UNKNOWN"],
        "reasons": [{k: v for k, v in r.items() if v is not None} for r in data["reasons"]],
        "ruleset": {
            "service": data["service"],
            "version": data["ruleset_version"],
            "content_hash": data["ruleset_hash"],
        },
        "application_date": data["application_date"],
        "decided_at": data["decided_at"],
        "record_hash": record_hash,
        "explanation_url": f"/v1/decisions/{decision_id}/explanation",
    }


def parse_record(body: dict[str, Any]) -> AnyRecord:
    """A stored record of either kind, by its schema version."""
    if body.get("schema_version") == HUMAN_DECISION_SCHEMA:
        return HumanDecisionRecord.model_validate(body)
    return ExplanationRecordV1.model_validate(body)


def response_of(record: AnyRecord) -> dict[str, Any]:
    """What the stored response of a record must be (recomputed by ``audit verify``)."""
    if isinstance(record, HumanDecisionRecord):
        return {
            "decision_id": record.decision_id,
            "kind": "human_decision",
            "reviews_decision_id": record.reviews_decision_id,
            "case_id": record.case_id,
            "application_id": record.application_id,
            "service": record.service,
            "outcome": record.outcome.value,
            "outputs": record.outputs,
            "decided_at": record.decided_at.isoformat().replace("+00:00", "Z"),
            "record_hash": record.record_hash,
        }
    return decision_response(record)


class RulesetRef(BaseModel):
    service: str
    version: str
    content_hash: str


class DecisionResponse(BaseModel):
    """What ``POST /v1/decisions`` answers (and what a retry with the same key gets again)."""

    decision_id: str
    application_id: str
    service: str
    outcome: Outcome
    outputs: dict[str, JsonValue] | None
    """Amounts and other outputs; exact decimals are strings (``"32666.67"``)."""
    failed_criteria: list[str]
    unknown_criteria: list[str]
    reasons: list[dict[str, Any]]
    ruleset: RulesetRef
    application_date: dt.date
    decided_at: dt.datetime
    record_hash: str
    explanation_url: str
    access_token: str | None = None
    """Opens the decision and its explanation for the citizen; the API adds it (never stored)."""


def decision_response(record: ExplanationRecordV1) -> dict[str, Any]:
    """What the platform is told about a decision: derived from the record alone.

    Because it is a pure function of the sealed record, ``audit verify`` can recompute it
    and detect any change to a stored response. Its shape is ``DecisionResponse``.
    """
    data = record.model_dump(mode="json", include=_RESPONSE_FIELDS)
    return _response_of_dump(data, record.record_hash)


@dataclass(frozen=True, slots=True, kw_only=True)
class Chained:
    """What the store reads off a sealed record to write its rows: an automated decision's
    fields as the commit process has them (``Encoded.seal``), without the record's model.

    ``case`` is the referral case the decision opens (a row of ``review_cases``), if any."""

    seq: int
    prev_hash: str
    record_hash: str
    decision_id: str
    application_id: str
    service: str
    ruleset_version: str
    outcome: Outcome
    decided_at: dt.datetime
    case: dict[str, Any] | None

    @classmethod
    def of(
        cls,
        fields: tuple[str, str, str, str, Outcome, dt.datetime],
        seq: int,
        prev_hash: str,
        record_hash: str,
        case: dict[str, Any] | None,
    ) -> Chained:
        """From a decision row's fields as ``Unsealed`` and ``Encoded`` carry them."""
        decision_id, application_id, service, version, outcome, decided_at = fields
        return cls(
            seq=seq,
            prev_hash=prev_hash,
            record_hash=record_hash,
            decision_id=decision_id,
            application_id=application_id,
            service=service,
            ruleset_version=version,
            outcome=outcome,
            decided_at=decided_at,
            case=case,
        )


@dataclass(frozen=True, slots=True)
class Encoded:
    """An automated decision's record as a worker sends it to the commit process: the text
    ``Unsealed`` encoded, the fields of its rows, and its response but for ``record_hash``.

    ``seal`` assembles the text exactly as ``Unsealed.seal`` does (``join_parts``), so the
    chain holds the same bytes whichever process sealed them. ``to_wire``/``from_wire`` are
    what the two exchange besides ``parts``, which travel as raw text
    (``explanations.committer``).
    """

    parts: tuple[bytes, bytes, bytes]
    seq_at: int
    fields: tuple[str, str, str, str, Outcome, dt.datetime]
    response: dict[str, Any]
    case: dict[str, Any] | None

    @classmethod
    def of(cls, unsealed: Unsealed, case: dict[str, Any] | None) -> Encoded | None:
        """The encoded form of an automated decision's record (None if it must be sealed
        whole, where it was made: its markers stand in its content, or it is a human one)."""
        if unsealed.parts is None or unsealed.response is None or unsealed.fields is None:
            return None
        return cls(unsealed.parts, unsealed.seq_at, unsealed.fields, unsealed.response, case)

    def to_wire(self) -> dict[str, Any]:
        decision_id, application_id, service, version, outcome, decided_at = self.fields
        case = self.case
        if case is not None:
            case = {
                **case,
                "opened_at": case["opened_at"].isoformat(),
                "due_on": case["due_on"].isoformat(),
            }
        return {
            "q": self.seq_at,
            "f": [decision_id, application_id, service, version, outcome.value],
            "t": decided_at.isoformat(),
            "r": self.response,
            "c": case,
        }

    @classmethod
    def from_wire(cls, data: dict[str, Any], parts: tuple[bytes, bytes, bytes]) -> Encoded:
        a, b, c = parts
        seq_at = data["q"]
        if seq_at not in (1, 2):
            raise ValueError("seq goes in gap 1 or 2")
        decision_id, application_id, service, version, outcome = data["f"]
        case = data["c"]
        if case is not None:
            case = {
                **case,
                "opened_at": dt.datetime.fromisoformat(case["opened_at"]),
                "due_on": dt.date.fromisoformat(case["due_on"]),
            }
        decided_at = dt.datetime.fromisoformat(data["t"])
        fields = (
            str(decision_id),
            str(application_id),
            str(service),
            str(version),
            Outcome(outcome),
            decided_at,
        )
        response = data["r"]
        if not isinstance(response, dict):
            raise ValueError("the response must be an object")
        return cls((a, b, c), seq_at, fields, response, case)

    def seal(self, seq: int, prev_hash: str) -> tuple[Chained, str, dict[str, Any]]:
        """As ``Unsealed.seal``: the record's fields at ``seq``, its text, its response
        (``UnicodeDecodeError``, a ``ValueError``, if the parts are not UTF-8)."""
        body, record_hash = sealed_text(join_parts(self.parts, self.seq_at, seq, prev_hash))
        sealed = Chained.of(self.fields, seq, prev_hash, record_hash, self.case)
        return sealed, body, {**self.response, "record_hash": record_hash}
