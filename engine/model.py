"""The ruleset file format as pydantic models (schema versions 1 and 2).

Version 2 adds registries by catalogue id with composite keys and verify claims, dated
``parameters``, named ``values``, expression cells and every DMN hit policy in decision
tables, and richer test expectations. A version-1 file uses none of these, and its content
hash is computed exactly as before (see ``engine.ruleset.canonical_form``).
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = [
    "HIT_POLICIES",
    "Approx",
    "CellExpr",
    "ColumnSpec",
    "Criterion",
    "DecisionTable",
    "EvidenceSpec",
    "Example",
    "ExampleExpect",
    "InputField",
    "LegalBasis",
    "LookupTable",
    "NamedValue",
    "Parameter",
    "ParameterPeriod",
    "RulesetDoc",
    "Sensitivity",
    "TableRule",
    "Text",
    "ValueRule",
    "ValueTable",
]

Scalar = str | int | Decimal | bool
"""A constant written in YAML. Decimal literals are read as ``Decimal``, never as floats."""
DatedScalar = str | int | Decimal | bool | dt.date
FieldType = Literal["string", "integer", "number", "boolean", "date"]
InputType = Literal["string", "integer", "number", "boolean", "date", "enum"]
Sensitivity = Literal["public", "personal", "contact", "sensitive"]
"""How personal a form field is, which decides what a decision record keeps of it (see
``InputField.sensitivity`` and docs/ruleset-language.md)."""
HitPolicy = Literal[
    "UNIQUE",
    "ANY",
    "FIRST",
    "PRIORITY",
    "RULE ORDER",
    "OUTPUT ORDER",
    "COLLECT",
    "COLLECT SUM",
    "COLLECT MIN",
    "COLLECT MAX",
    "COLLECT COUNT",
]
HIT_POLICIES: tuple[str, ...] = HitPolicy.__args__  # type: ignore[attr-defined]
SERVICE_PATTERN = r"^[a-z][a-z0-9-]{1,62}$"
ID_PATTERN = r"^[A-Za-z][A-Za-z0-9_-]{0,62}$"
NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Text(_Strict):
    """User-facing text: Simplified Chinese first, English second."""

    zh: str = Field(min_length=1)
    en: str = Field(min_length=1)


class LegalBasis(_Strict):
    """One legal document (or article of one) that criteria cite by ``id``."""

    id: str = Field(pattern=ID_PATTERN)
    title: str = Field(min_length=1)
    issuer: str = Field(min_length=1)
    doc_number: str | None = None
    """文号, or ``null`` when it is not known (never invented)."""
    article: str | None = None
    url: str | None = None


class InputField(_Strict):
    """One field of the application form (what the applicant declares: 申请人申报)."""

    name: str = Field(pattern=NAME_PATTERN)
    type: InputType
    required: bool = True
    title: Text
    values: list[str] | None = None
    minimum: Decimal | None = None
    maximum: Decimal | None = None
    pattern: str | None = None
    max_length: int | None = Field(default=None, gt=0)
    sensitivity: Sensitivity = Field(
        default="personal",
        description=(
            "个人信息敏感程度，决定决定记录保存什么 / how personal the field is, which decides "
            "what a decision record keeps of it. public: says nothing about a person (kept when "
            "a rule reads it); personal (default): 个人信息, kept only when a rule reads it, as "
            "a keyed pseudonym when it only serves to ask a registry; contact: a way to reach "
            "the applicant, which no rule may read and no record keeps; sensitive: 敏感个人信息 "
            "(PIPL art. 28), which a rule must need, else it may not be collected."
        ),
    )
    """``public`` (says nothing about a person), ``personal`` (个人信息, the default),
    ``contact`` (a way to reach the applicant: never read by a rule, never recorded) or
    ``sensitive`` (敏感个人信息: collected only when a rule needs it). A record keeps a field
    only when a rule reads it; see docs/ruleset-language.md. Not part of the content hash: it
    governs what records keep, not what is decided."""


class EvidenceSpec(_Strict):
    """A fact group the decision needs: which registry, keyed by what, fetched or verified.

    ``key`` is one expression (the registry's one remaining key field) or, in version 2, a
    mapping from each key field to an expression. ``params`` gives key fields as constants.
    In ``verify`` mode each field is a claim the registry answers yes or no: named in the
    catalogue, or written under ``claims`` (version 2).
    """

    id: str = Field(pattern=NAME_PATTERN)
    adapter: str | None = Field(default=None, min_length=1)
    """Version 1's name for ``registry``."""
    registry: str | None = Field(default=None, min_length=1)
    key: str | dict[str, str]
    mode: Literal["fetch", "verify"] = "fetch"
    params: dict[str, str | int | bool | dt.date] = Field(default_factory=dict)
    fields: dict[str, FieldType]
    claims: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _one_source(self) -> EvidenceSpec:
        if (self.adapter is None) == (self.registry is None):
            raise ValueError(
                "写 registry（登记库编号）其中之一 / give exactly one of 'registry' (version 2) "
                "or 'adapter' (version 1)"
            )
        return self

    @property
    def source(self) -> str:
        """The catalogue id of the registry asked."""
        return self.registry or self.adapter or ""


class LookupTable(_Strict):
    """A named mapping usable in conditions as ``name[key]`` and ``key in name``."""

    title: Text
    legal_basis: list[str] = Field(min_length=1)
    values: dict[str, Scalar] = Field(min_length=1)


class ParameterPeriod(_Strict):
    """A parameter's value from one effective date until the next period starts."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    from_: dt.date = Field(alias="from")
    value: DatedScalar | dict[str, DatedScalar]
    legal_basis: list[str] = Field(min_length=1)
    note: str | None = None


class Parameter(_Strict):
    """A dated parameter (in the manner of OpenFisca): values by effective date, each cited."""

    title: Text
    type: FieldType
    """The type of the value (of each value of a mapping)."""
    unit: str | None = None
    values: list[ParameterPeriod] = Field(min_length=1)


class CellExpr(_Strict):
    """An explicit expression cell: ``{expr: "…"}`` (needed in ``string`` columns)."""

    expr: str = Field(min_length=1)


Cell = CellExpr | Scalar | dt.date
"""A decision-table cell: a constant, or an expression (a string in a non-string column)."""


class ValueRule(_Strict):
    when: str | None = Field(default=None, min_length=1)
    then: Cell


class ValueTable(_Strict):
    """A single-output decision table that computes a named value."""

    hit_policy: HitPolicy
    type: FieldType
    values: list[Scalar] | None = None
    """Output values in decreasing priority (PRIORITY, OUTPUT ORDER)."""
    default: Cell | None = None
    """The result when no rule matches (DMN: null)."""
    rules: list[ValueRule] = Field(min_length=1)


class NamedValue(_Strict):
    """A named intermediate value, computed by an expression or a decision table."""

    title: Text
    unit: str | None = None
    legal_basis: list[str] = Field(default_factory=list)
    expr: str | None = Field(default=None, min_length=1)
    table: ValueTable | None = None

    @model_validator(mode="after")
    def _one_definition(self) -> NamedValue:
        if (self.expr is None) == (self.table is None):
            raise ValueError("写 expr 或 table 其中之一 / give exactly one of 'expr' or 'table'")
        return self


class Criterion(_Strict):
    """One approval criterion: a condition that must hold, citing its legal basis."""

    id: str = Field(pattern=ID_PATTERN)
    title: Text
    legal_basis: list[str]
    condition: str = Field(min_length=1)
    on_fail: Literal["reject", "refer"]
    reason: Text


class ColumnSpec(_Strict):
    """An output column: its type, and optionally a title, unit and priority-ordered values."""

    type: Literal["string", "integer", "number", "boolean", "date"]
    title: Text | None = None
    unit: str | None = None
    values: list[Scalar] | None = None
    """Output values in decreasing priority (PRIORITY, OUTPUT ORDER)."""


class TableRule(_Strict):
    when: str | None = Field(default=None, min_length=1)
    """The rule's condition; omitted, the rule always matches (version 2)."""
    then: dict[str, Cell]


class DecisionTable(_Strict):
    """The outputs of an approval, as a decision table with a DMN hit policy."""

    id: str = Field(pattern=ID_PATTERN)
    title: Text
    legal_basis: list[str]
    hit_policy: HitPolicy
    columns: dict[str, Literal["string", "integer", "number", "boolean", "date"] | ColumnSpec]
    rules: list[TableRule] = Field(min_length=1)
    default: dict[str, Cell] | None = None
    """The outputs when no rule matches (single-hit policies; DMN default output entries)."""


class Approx(_Strict):
    """A numeric expectation with an absolute tolerance."""

    value: Decimal
    tolerance: Decimal = Field(ge=0)


Expectation = Approx | Scalar | dt.date | list[Scalar | dt.date] | None


class ExampleExpect(_Strict):
    outcome: Literal["APPROVED", "REJECTED", "REFERRED"]
    failed: list[str] = Field(default_factory=list)
    unknown: list[str] = Field(default_factory=list)
    outputs: dict[str, Expectation] | None = None
    values: dict[str, Expectation] | None = None
    """Expected named values (version 2)."""
    tolerance: Decimal | None = Field(default=None, ge=0)
    """Absolute tolerance for every numeric output and value of this test (version 2)."""


class Example(_Strict):
    """A named example: an application and registry facts with the expected decision."""

    name: str = Field(min_length=1)
    application: dict[str, object]
    evidence: dict[str, dict[str, Scalar | dt.date | None] | None]
    expect: ExampleExpect


class RulesetDoc(_Strict):
    """A whole ruleset file, as policy staff write it."""

    schema_version: Literal[1, 2]
    service: str = Field(pattern=SERVICE_PATTERN)
    version: str = Field(pattern=r"^[0-9A-Za-z][0-9A-Za-z._-]{0,31}$")
    name: Text
    authority: Text
    effective_from: dt.date
    effective_to: dt.date | None = None
    status: Literal["draft", "approved", "published", "retired"]
    legal_basis: list[LegalBasis] = Field(min_length=1)
    inputs: list[InputField] = Field(min_length=1)
    evidence: list[EvidenceSpec] = Field(default_factory=list)
    tables: dict[str, LookupTable] = Field(default_factory=dict)
    parameters: dict[str, Parameter] = Field(default_factory=dict)
    values: dict[str, NamedValue] = Field(default_factory=dict)
    criteria: list[Criterion] = Field(min_length=1)
    outputs: DecisionTable | None = None
    tests: list[Example] = Field(default_factory=list)

    @field_validator("effective_from", "effective_to", mode="before")
    @classmethod
    def _dates_not_datetimes(cls, value: object) -> object:
        if isinstance(value, dt.datetime):
            raise ValueError("expected a date (YYYY-MM-DD), got a date and time")
        return value
