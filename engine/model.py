"""The ruleset file format as pydantic models (schema version 1)."""

from __future__ import annotations

import datetime as dt
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = [
    "Criterion",
    "DecisionTable",
    "EvidenceSpec",
    "Example",
    "InputField",
    "LegalBasis",
    "LookupTable",
    "RulesetDoc",
    "TableRule",
    "Text",
]

Scalar = str | int | float | bool
FieldType = Literal["string", "integer", "number", "boolean", "date"]
InputType = Literal["string", "integer", "number", "boolean", "date", "enum"]
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
    article: str | None = None
    url: str | None = None


class InputField(_Strict):
    """One field of the application form."""

    name: str = Field(pattern=NAME_PATTERN)
    type: InputType
    required: bool = True
    title: Text
    values: list[str] | None = None
    minimum: float | None = None
    maximum: float | None = None
    pattern: str | None = None
    max_length: int | None = Field(default=None, gt=0)


class EvidenceSpec(_Strict):
    """A fact group the decision needs: which adapter, keyed by what, fetched or verified."""

    id: str = Field(pattern=NAME_PATTERN)
    adapter: str = Field(min_length=1)
    key: str = Field(min_length=1)
    mode: Literal["fetch", "verify"] = "fetch"
    params: dict[str, str] = Field(default_factory=dict)
    fields: dict[str, FieldType]


class LookupTable(_Strict):
    """A named mapping usable in conditions as ``name[key]`` and ``key in name``."""

    title: Text
    legal_basis: list[str] = Field(min_length=1)
    values: dict[str, Scalar] = Field(min_length=1)


class Criterion(_Strict):
    """One approval criterion: a condition that must hold, citing its legal basis."""

    id: str = Field(pattern=ID_PATTERN)
    title: Text
    legal_basis: list[str]
    condition: str = Field(min_length=1)
    on_fail: Literal["reject", "refer"]
    reason: Text


class TableRule(_Strict):
    when: str = Field(min_length=1)
    then: dict[str, Scalar]


class DecisionTable(_Strict):
    """The outputs of an approval, as a decision table with a DMN hit policy."""

    id: str = Field(pattern=ID_PATTERN)
    title: Text
    legal_basis: list[str]
    hit_policy: Literal["UNIQUE", "FIRST"]
    columns: dict[str, Literal["string", "integer", "number", "boolean"]]
    rules: list[TableRule] = Field(min_length=1)


class ExampleExpect(_Strict):
    outcome: Literal["APPROVED", "REJECTED", "REFERRED"]
    failed: list[str] = Field(default_factory=list)
    unknown: list[str] = Field(default_factory=list)
    outputs: dict[str, Scalar] | None = None


class Example(_Strict):
    """A named example: an application and registry facts with the expected decision."""

    name: str = Field(min_length=1)
    application: dict[str, object]
    evidence: dict[str, dict[str, Scalar] | None]
    expect: ExampleExpect


class RulesetDoc(_Strict):
    """A whole ruleset file, as policy staff write it."""

    schema_version: Literal[1]
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
    criteria: list[Criterion] = Field(min_length=1)
    outputs: DecisionTable | None = None
    tests: list[Example] = Field(default_factory=list)

    @field_validator("effective_from", "effective_to", mode="before")
    @classmethod
    def _dates_not_datetimes(cls, value: object) -> object:
        if isinstance(value, dt.datetime):
            raise ValueError("expected a date (YYYY-MM-DD), got a date and time")
        return value
