"""The registry catalogue: every shared-data source declared as data (the types adapters share).

A catalogue file (``rulesets/registries.yaml`` by default) declares each registry: its id,
names, the agency that holds it (提供部门), the kind of source and where it is, its key fields
(composite keys allowed), its typed fields, the modes it allows (``fetch`` returns fields;
``verify`` answers only match / no match / not found for a claim), and what "no record" means
(``unknown``, or a verified ``negative``). Adding a registry is a catalogue entry and a data
file. Rulesets are checked against the catalogue; adapters serve from it.
"""

from __future__ import annotations

import datetime as dt
import difflib
import re
import unicodedata
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Literal

import pydantic
from pydantic import BaseModel, ConfigDict, Field

from engine._yaml import Located, load_located, validation_errors
from engine.errors import ExpressionError, RulesetError, RulesetInvalid
from engine.expr import And, Compare, Expr, Name, parse
from engine.expr import Literal as LiteralNode
from engine.model import Text

__all__ = [
    "CATALOGUE_FILE",
    "Claim",
    "FieldSpec",
    "HttpOptions",
    "Quota",
    "RegistryCatalogue",
    "RegistrySpec",
    "convert_text",
    "find_catalogue",
    "load_catalogue",
    "normalize_text",
    "parse_claim",
]

CATALOGUE_FILE = "registries.yaml"
"""The catalogue's file name, looked for beside the rulesets."""

FieldType = Literal["string", "integer", "number", "boolean", "date"]
NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"

_TRUE = {"true", "是", "1", "y", "yes"}
_FALSE = {"false", "否", "0", "n", "no"}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FieldSpec(_Strict):
    """One field of a registry record."""

    type: FieldType
    title: Text | None = None
    personal: Literal["id_number", "name"] | None = None
    """Identifies a person: pseudonymised in records and masked in logs."""
    values: list[str] | None = Field(default=None, min_length=1)
    """A string field's vocabulary: a cell holding anything else refuses the file (checked
    after normalisation, so write the values normalised)."""
    pattern: str | None = Field(default=None, min_length=1)
    """A regular expression every non-empty cell must match in full (a string field's value
    after normalisation; other types: the cell's text without surrounding blanks). ``\\d``
    also matches full-width digits: write ``[0-9]``."""
    normalize: bool | None = None
    """Trim and Unicode NFKC this string field's cells (and the keys and claims compared with
    them); ``None``: the registry's ``normalize``."""
    fact: str | None = Field(default=None, pattern=NAME_PATTERN)
    """The fact this field carries (一数一源): a name the catalogue's ``facts`` declares. On a
    registry other than the fact's authoritative source the field may only corroborate."""
    record: Literal["value", "age"] = Field(
        default="value",
        description=(
            "决定记录保存什么 / what a decision record keeps of the field: its value (default), "
            "or for a date of birth the age (周岁) on the application date; rulesets may then "
            "read it only as age_on(<field>, application.date)."
        ),
    )
    """What a decision record keeps of the field: its ``value`` (the default), or for a date
    (a birth date) only the ``age``: the whole years (周岁) on the application date. A ruleset
    may then read it only as ``age_on(<field>, application.date)``; replay rebuilds a date of
    that age, which every such rule decides alike."""


class Quota(_Strict):
    """How often and when a source may be called (enforced here, before calling)."""

    per_day: int | None = Field(default=None, ge=1)
    """Calls per calendar day (Asia/Shanghai)."""
    windows: list[str] = Field(default_factory=list)
    """Allowed times of day, ``HH:MM-HH:MM`` (Asia/Shanghai); empty: any time."""

    @pydantic.field_validator("windows")
    @classmethod
    def _windows(cls, v: list[str]) -> list[str]:
        for w in v:
            start, sep, end = w.partition("-")
            try:
                dt.time.fromisoformat(start)
                dt.time.fromisoformat(end)
            except ValueError:
                raise ValueError(f"window {w!r}: expected HH:MM-HH:MM") from None
            if not sep:
                raise ValueError(f"window {w!r}: expected HH:MM-HH:MM")
        return v


class HttpOptions(_Strict):
    """How to call a registry served over HTTP (``kind: http``)."""

    path: str | None = None
    """Below ``location``; default ``/v1/registries/<id>``."""
    location_env: str | None = Field(default=None, pattern=r"^[A-Z][A-Z0-9_]*$")
    """An environment variable that, when set, replaces ``location`` (the base URL)."""
    token_env: str | None = Field(default=None, pattern=r"^[A-Z][A-Z0-9_]*$")
    """The environment variable holding the bearer token (never the token itself)."""
    timeout_ms: int = Field(default=300, ge=1, le=60_000)
    """One attempt's time-out."""
    retries: int = Field(default=1, ge=0, le=5)
    """Further attempts after a time-out or a 5xx, jittered; lookups are idempotent reads."""
    concurrency: int = Field(default=8, ge=1, le=256)
    """At most this many calls in flight to the source (a bulkhead)."""
    breaker_failures: int = Field(default=5, ge=1)
    """Consecutive failures that open the circuit breaker."""
    breaker_reset_s: float = Field(default=10.0, gt=0)
    """How long an open breaker refuses calls before trying one again."""
    cache_ttl_s: float = Field(default=30.0, ge=0)
    """How long an answer is reused for the same source and subject (0: never)."""
    quota: Quota | None = None


class RegistrySpec(_Strict):
    """One shared-data source, as the catalogue declares it."""

    id: str = Field(pattern=NAME_PATTERN)
    name: Text
    holder: Text
    """The agency that holds the data (提供部门)."""
    kind: Literal["csv", "parquet", "http"]
    location: str = Field(min_length=1)
    """The data file, relative to the data folder (or absolute); for ``http``, the base URL."""
    http: HttpOptions | None = None
    """Calling options for ``kind: http``."""
    key: list[str] = Field(min_length=1)
    """The fields a lookup is keyed by; several for a composite key (e.g. ID number + city)."""
    record_id: str | None = None
    """The column holding the registry's own record identifier (cited as the reference)."""
    fields: dict[str, FieldType | FieldSpec] = Field(min_length=1)
    modes: list[Literal["fetch", "verify"]] = Field(min_length=1)
    no_record: Literal["unknown", "negative"]
    """What a key with no record means: ``unknown`` (facts missing) or a verified ``negative``
    (every verify answer is "no")."""
    answers: dict[str, str] = Field(default_factory=dict)
    """Named verify claims a ruleset may ask for by name: ``exists`` or
    ``field == constant [and …]``."""
    description: str | None = None
    normalize: bool = True
    """Trim and Unicode NFKC string cells (full-width → half-width), unless a field says
    ``normalize: false``; keys and claimed values asked of string fields are normalised alike."""
    manifest: str | None = None
    """The snapshot's manifest (``as_of``, ``rows``, ``sha256``, ``holder``), relative to the
    data folder; default ``<location>.meta.json``. Required when ``no_record: negative`` or
    ``max_age_days`` is declared; file registries only."""
    max_age_days: int | None = Field(default=None, ge=0)
    """How old (days from the manifest's ``as_of`` to the lookup's date, Asia/Shanghai) the
    snapshot may be; older, every lookup answers the error ``STALE_SNAPSHOT``. File registries
    only."""

    @property
    def manifest_required(self) -> bool:
        """Whether the snapshot must come with a manifest to be served.

        A ``negative`` registry turns "no record" into a verified "no", so an empty or failed
        export would silently answer "no" for everyone; a freshness limit needs ``as_of``; a
        manifest the catalogue names is expected to be there.
        """
        return (
            self.no_record == "negative"
            or self.max_age_days is not None
            or self.manifest is not None
        )

    def field_spec(self, name: str) -> FieldSpec | None:
        """The field's declaration (a bare type name as a ``FieldSpec``)."""
        spec = self.fields.get(name)
        return FieldSpec(type=spec) if isinstance(spec, str) else spec

    def normalizes(self, name: str) -> bool:
        """Whether the string field ``name`` is trimmed and NFKC-normalised."""
        spec = self.fields.get(name)
        if isinstance(spec, FieldSpec) and spec.normalize is not None:
            return spec.normalize
        return self.normalize

    def field_type(self, name: str) -> str | None:
        spec = self.fields.get(name)
        if spec is None:
            return None
        return spec if isinstance(spec, str) else spec.type

    def personal(self, name: str) -> str | None:
        spec = self.fields.get(name)
        return spec.personal if isinstance(spec, FieldSpec) else None

    def fact(self, name: str) -> str | None:
        """The fact the field ``name`` carries, if the catalogue says."""
        spec = self.fields.get(name)
        return spec.fact if isinstance(spec, FieldSpec) else None

    def recorded_as(self, name: str) -> str:
        """What a record keeps of the field ``name``: ``value`` or ``age``."""
        spec = self.fields.get(name)
        return spec.record if isinstance(spec, FieldSpec) else "value"

    @property
    def field_types(self) -> dict[str, str]:
        return {n: (s if isinstance(s, str) else s.type) for n, s in self.fields.items()}


class _CatalogueDoc(_Strict):
    schema_version: Literal[1]
    facts: dict[str, str] = Field(default_factory=dict)
    """One source per fact (一数一源): fact name → the id of the registry that holds it
    authoritatively. Another registry's field carrying the fact may only corroborate."""
    registries: list[RegistrySpec] = Field(min_length=1)


@dataclass(frozen=True)
class Claim:
    """What a verify call asks: that a record exists, or that one has these field values."""

    equals: tuple[tuple[str, Expr], ...] = ()
    """``(registry field, expression)`` pairs that must all hold on one record; none = exists."""

    @property
    def exists(self) -> bool:
        return not self.equals


def parse_claim(text: str, *, fields: Mapping[str, str] | None) -> Claim:
    """Parse ``exists`` or ``field == expr [and field == expr …]``; raise ``ExpressionError``.

    Only the shape and the registry fields are checked here; the right-hand expressions are
    type-checked by whoever knows their scope (constants in the catalogue, application facts
    in a ruleset).
    """
    if text.strip() == "exists":
        return Claim()
    node = parse(text)
    parts = node.items if isinstance(node, And) else (node,)
    pairs: list[tuple[str, Expr]] = []
    for part in parts:
        if not (
            isinstance(part, Compare)
            and part.op == "=="
            and isinstance(part.left, Name)
            and len(part.left.parts) == 1
        ):
            raise ExpressionError(
                "核验声明须写作 exists 或“字段 == 值”，多个用 and 连接 / a claim is 'exists' or "
                "'<registry field> == <value>' joined by 'and'",
                text=text,
                offset=part.offset,
            )
        field = part.left.dotted
        if fields is not None and field not in fields:
            close = difflib.get_close_matches(field, list(fields), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ExpressionError(
                f"登记库没有字段 {field!r} / the registry has no field {field!r}{hint} "
                f"(fields: {', '.join(fields)})",
                text=text,
                offset=part.left.offset,
            )
        pairs.append((field, part.right))
    return Claim(tuple(pairs))


_EDGES = re.compile(r"^[\s\u200b-\u200d\u2060\ufeff]+|[\s\u200b-\u200d\u2060\ufeff]+$")


def normalize_text(text: str) -> str:
    """``text`` in Unicode NFKC (full-width letters, digits and spaces → half-width), without
    blanks or zero-width characters at either end."""
    if text.isascii():
        return text.strip()
    return _EDGES.sub("", unicodedata.normalize("NFKC", text))


def convert_text(text: str, type_name: str) -> object:
    """A registry cell (text) as a typed value; raise ``ValueError`` when it is not one.

    Integers are plain digits; numbers exact decimals; dates ``YYYY-MM-DD``; booleans
    ``true/false``, ``是/否`` or ``1/0``. The caller treats an empty cell as missing.
    """
    if type_name == "string":
        return text
    if type_name == "integer":
        stripped = text.strip()
        body = stripped[1:] if stripped[:1] in "+-" else stripped
        if not body.isascii() or not body.isdigit():
            raise ValueError("not an integer")
        number = int(stripped)
        if not -(2**63) <= number <= 2**63 - 1:
            raise ValueError("an integer outside the 64-bit range")
        return number
    if type_name == "number":
        try:
            d = Decimal(text.strip())
        except InvalidOperation:
            raise ValueError("not a number") from None
        if not d.is_finite():
            raise ValueError("not a finite number")
        return d
    if type_name == "date":
        return dt.date.fromisoformat(text.strip())
    if type_name == "boolean":
        low = text.strip().lower()
        if low in _TRUE:
            return True
        if low in _FALSE:
            return False
        raise ValueError("not a boolean (true/false)")
    raise ValueError(f"unknown type {type_name}")


class RegistryCatalogue:
    """The registries of one catalogue file, by id."""

    def __init__(
        self,
        registries: list[RegistrySpec],
        *,
        path: str = "<memory>",
        facts: Mapping[str, str] | None = None,
    ) -> None:
        self.path = path
        self._by_id = {r.id: r for r in registries}
        self.facts: dict[str, str] = dict(facts or {})
        """Fact name → the id of its authoritative registry (一数一源)."""

    def __contains__(self, registry_id: object) -> bool:
        return registry_id in self._by_id

    def __iter__(self) -> Iterator[RegistrySpec]:
        return iter(self._by_id.values())

    def __len__(self) -> int:
        return len(self._by_id)

    def get(self, registry_id: str) -> RegistrySpec | None:
        return self._by_id.get(registry_id)

    def ids(self) -> list[str]:
        return list(self._by_id)

    def corroborating(self, registry_id: str, field: str) -> tuple[str, RegistrySpec] | None:
        """``(fact, authoritative registry)`` when ``field`` of ``registry_id`` carries a fact
        another registry holds authoritatively: such a field may only corroborate."""
        reg = self.get(registry_id)
        fact = reg.fact(field) if reg is not None else None
        source = self.facts.get(fact) if fact is not None else None
        if fact is None or source is None or source == registry_id or source not in self:
            return None
        return fact, self._by_id[source]

    def suggest(self, wanted: str) -> str:
        close = difflib.get_close_matches(wanted, self.ids(), n=1)
        return f"; did you mean {close[0]!r}?" if close else ""


def find_catalogue(start: Path) -> Path | None:
    """The catalogue beside ``start`` (a file or folder) or in a folder above it."""
    folder = start if start.is_dir() else start.parent
    for candidate in (folder, *folder.resolve().parents):
        path = candidate / CATALOGUE_FILE
        if path.is_file():
            return path
    return None


def load_catalogue(path: Path | str) -> RegistryCatalogue:
    """Read and check a catalogue file; raise ``RulesetInvalid`` naming file, line and column."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RulesetInvalid(
            [RulesetError("找不到登记库目录文件 / registry catalogue not found", file=str(p))]
        ) from None
    except UnicodeDecodeError as exc:
        raise RulesetInvalid(
            [RulesetError(f"文件不是UTF-8编码 / not UTF-8: {exc.reason}", file=str(p))]
        ) from None
    try:
        located = load_located(text, file=str(p))
    except RulesetError as exc:
        raise RulesetInvalid([exc]) from None
    try:
        doc = _CatalogueDoc.model_validate(located.data)
    except pydantic.ValidationError as exc:
        raise RulesetInvalid(validation_errors(exc, located)) from None
    errors = _check(doc, located)
    if errors:
        raise RulesetInvalid(errors)
    return RegistryCatalogue(doc.registries, path=str(p), facts=doc.facts)


def _check(doc: _CatalogueDoc, loc: Located) -> list[RulesetError]:
    errors: list[RulesetError] = []
    seen: set[str] = set()
    for i, reg in enumerate(doc.registries):
        at = ("registries", i)
        if reg.id in seen:
            errors.append(
                loc.error(f"重复的登记库编号 / duplicate registry id {reg.id!r}", (*at, "id"))
            )
        seen.add(reg.id)
        for k, key in enumerate(reg.key):
            if key not in reg.fields:
                errors.append(
                    loc.error(
                        f"键字段 {key!r} 未在 fields 中声明 / key field {key!r} is not declared "
                        f"in fields",
                        (*at, "key", k),
                    )
                )
        if len(set(reg.key)) != len(reg.key):
            errors.append(loc.error("键字段重复 / a key field is listed twice", (*at, "key")))
        if reg.answers and "verify" not in reg.modes:
            errors.append(
                loc.error(
                    "声明了核验答案但不允许 verify 方式 / answers are declared but the registry "
                    "does not allow mode 'verify'",
                    (*at, "answers"),
                )
            )
        errors.extend(_check_fields(reg, loc, at))
        for name in reg.fields:
            fact = reg.fact(name)
            if fact is not None and fact not in doc.facts:
                close = difflib.get_close_matches(fact, list(doc.facts), n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                errors.append(
                    loc.error(
                        f"事实 {fact!r} 未在 facts 中声明权威来源 / fact {fact!r} is not declared "
                        f"in facts{hint} (declared: {', '.join(doc.facts) or 'none'})",
                        (*at, "fields", name, "fact"),
                    )
                )
        types = reg.field_types
        for name, text in reg.answers.items():
            try:
                claim = parse_claim(text, fields=types)
            except ExpressionError as exc:
                errors.append(loc.error(exc.message, (*at, "answers", name), offset=exc.offset))
                continue
            for field, expr in claim.equals:
                problem = _constant_problem(expr, types[field])
                if problem:
                    errors.append(loc.error(problem, (*at, "answers", name), offset=expr.offset))
    errors.extend(_check_facts(doc, loc))
    return errors


def _check_facts(doc: _CatalogueDoc, loc: Located) -> list[RulesetError]:
    """Each declared fact names a registry that exists and has a field carrying the fact."""
    errors: list[RulesetError] = []
    by_id = {r.id: r for r in doc.registries}
    for fact, source in doc.facts.items():
        reg = by_id.get(source)
        if reg is None:
            close = difflib.get_close_matches(source, list(by_id), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            errors.append(
                loc.error(
                    f"事实 {fact!r} 的权威来源 {source!r} 不在目录中 / the authoritative source "
                    f"{source!r} of fact {fact!r} is not a registry in the catalogue{hint}",
                    ("facts", fact),
                )
            )
        elif not any(reg.fact(name) == fact for name in reg.fields):
            errors.append(
                loc.error(
                    f"登记库 {source} 没有承载事实 {fact!r} 的字段 / registry {source} has no "
                    f"field carrying fact {fact!r} (mark one with 'fact: {fact}')",
                    ("facts", fact),
                )
            )
    return errors


def _check_fields(reg: RegistrySpec, loc: Located, at: tuple[str | int, ...]) -> list[RulesetError]:
    """Vocabularies and patterns that can hold; snapshot options only on file registries."""
    errors: list[RulesetError] = []
    if reg.kind == "http":
        for option in ("manifest", "max_age_days"):
            if getattr(reg, option) is not None:
                errors.append(
                    loc.error(
                        f"{option} 仅适用于文件快照（csv、parquet）/ {option} applies to file "
                        f"snapshots (kind csv or parquet) only",
                        (*at, option),
                        at_key=True,
                    )
                )
    for name, spec in reg.fields.items():
        if isinstance(spec, str):
            continue
        where = (*at, "fields", name)
        if spec.record == "age" and (spec.type != "date" or name in reg.key):
            errors.append(
                loc.error(
                    f"只有日期字段（且不是键字段）可以按周岁记录 / record: age applies to a date "
                    f"field that is not a key field; {name!r} is "
                    + ("a key field" if name in reg.key else f"a {spec.type}"),
                    (*where, "record"),
                )
            )
        compiled: re.Pattern[str] | None = None
        if spec.pattern is not None:
            try:
                compiled = re.compile(spec.pattern)
            except re.error as exc:
                errors.append(
                    loc.error(
                        f"正则表达式无效 / not a valid regular expression: {exc}",
                        (*where, "pattern"),
                    )
                )
        if spec.values is None:
            continue
        if spec.type != "string":
            errors.append(
                loc.error(
                    f"取值表只用于字符串字段 / values applies to string fields; {name!r} is "
                    f"{spec.type}",
                    (*where, "values"),
                    at_key=True,
                )
            )
            continue
        for i, value in enumerate(spec.values):
            if reg.normalizes(name) and normalize_text(value) != value:
                errors.append(
                    loc.error(
                        f"取值须写成规范化后的形式 / write the value normalised (trimmed, NFKC): "
                        f"{normalize_text(value)!r}, not {value!r}",
                        (*where, "values", i),
                    )
                )
            elif compiled is not None and not compiled.fullmatch(value):
                errors.append(
                    loc.error(
                        f"取值不符合本字段的 pattern / {value!r} does not match the field's "
                        f"pattern {spec.pattern!r}",
                        (*where, "values", i),
                    )
                )
        if len(set(spec.values)) != len(spec.values):
            errors.append(loc.error("取值重复 / a value is listed twice", (*where, "values")))
    return errors


def _constant_problem(expr: Expr, type_name: str) -> str | None:
    if not isinstance(expr, LiteralNode):
        return "目录中的核验值须为常量 / a catalogue answer compares with constants only"
    v = expr.value
    ok = {
        "string": isinstance(v, str),
        "integer": isinstance(v, int) and not isinstance(v, bool),
        "number": isinstance(v, int | Decimal) and not isinstance(v, bool),
        "boolean": isinstance(v, bool),
        "date": isinstance(v, dt.date),
    }[type_name]
    return None if ok else f"值的类型应为 {type_name} / expected a {type_name} constant, got {v!r}"
