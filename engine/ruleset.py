"""Loading, checking and compiling one ruleset file; the content hash of its canonical form."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass, field
from decimal import Decimal
from functools import cached_property
from pathlib import Path
from typing import Any
from typing import Literal as TypingLiteral

import pydantic
from pydantic import BaseModel, ConfigDict, Field, create_model

from engine._checker import APPLICATION_NAMES, Checker
from engine._compiled import (
    CheckedCriterion,
    CheckedParameter,
    CheckedTable,
    CheckedValue,
    EvidencePlan,
    Template,
    format_value,
)
from engine._yaml import load_located, validation_errors
from engine.compiler import CompiledRules, compile_rules
from engine.errors import RulesetError, RulesetInvalid
from engine.expr import Expr, Literal
from engine.model import InputField, RulesetDoc
from engine.recording import RecordingPlan
from engine.registries import RegistryCatalogue
from engine.text import SingleLine

__all__ = [
    "APPLICATION_NAMES",
    "Ruleset",
    "Template",
    "canonical_form",
    "content_hash",
    "format_value",
    "load_ruleset",
    "parse_ruleset",
]

_ALWAYS = Literal(True, 0)


@dataclass(frozen=True)
class Ruleset:
    """A checked, compiled ruleset: the unit a decision is made with."""

    doc: RulesetDoc
    path: str
    content_hash: str
    criteria: tuple[CheckedCriterion, ...]
    outputs: CheckedTable | None
    tables: dict[str, dict[str, object]]
    parameters: tuple[CheckedParameter, ...]
    values: tuple[CheckedValue, ...]
    compiled: CompiledRules
    evidence: tuple[EvidencePlan, ...]
    """Evidence items in gathering order (each after those its key reads)."""
    form_model: type[BaseModel]
    names: dict[str, str] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)
    """Name → where its value comes from: ``declared``, ``registry:<id>``, ``value``…"""
    recording: RecordingPlan = field(default_factory=RecordingPlan)
    """What a decision record keeps of each input (omitted, pseudonymised, an age)."""

    @property
    def service(self) -> str:
        return self.doc.service

    @property
    def version(self) -> str:
        return self.doc.version

    @property
    def key(self) -> str:
        return f"{self.doc.service}@{self.doc.version}"

    @property
    def engine_name(self) -> str:
        """The durable_rules ruleset name: unique per content, so edits never collide."""
        return f"{self.key}#{self.content_hash[:16]}"

    @cached_property
    def rows(self) -> tuple[Expr, ...]:
        """The conditions of the outputs table's rules (a rule without one always matches)."""
        if self.outputs is None:
            return ()
        return tuple(r.when if r.when is not None else _ALWAYS for r in self.outputs.rows)

    @cached_property
    def memo(self) -> dict[object, object]:
        """Analyses of this ruleset's own expressions, kept by whoever computes them (the
        counterfactual solver's, which every adverse decision would otherwise redo)."""
        return {}

    @cached_property
    def partial_form_model(self) -> type[BaseModel]:
        """The form model with every field optional: reads a recorded form, which keeps only
        the fields the rules read (replay)."""
        return form_model(
            self.doc.inputs, name=f"PartialForm_{self.doc.service}_{self.doc.version}", partial=True
        )

    @property
    def registries(self) -> tuple[str, ...]:
        """The catalogue ids of the registries this ruleset asks."""
        return tuple(dict.fromkeys(p.source for p in self.evidence))

    def in_force_on(self, day: dt.date) -> bool:
        return self.doc.effective_from <= day and (
            self.doc.effective_to is None or day <= self.doc.effective_to
        )


_V2_EXCLUDE: dict[str, Any] = {
    "status": True,
    "inputs": {"__all__": {"sensitivity"}},
    "parameters": True,
    "values": True,
    "evidence": {"__all__": {"registry", "claims"}},
    "outputs": {"default"},
    "tests": {"__all__": {"expect": {"values", "tolerance"}}},
}


_NOT_HASHED: dict[str, Any] = {"status": True, "inputs": {"__all__": {"sensitivity"}}}


def canonical_form(doc: RulesetDoc) -> dict[str, Any]:
    """What the content hash covers: everything but the lifecycle ``status`` and the inputs'
    ``sensitivity``.

    A version-1 file cannot use version-2 keys (the checker refuses them), so they are left out
    of its canonical form: the content hash of a version-1 file is what it always was.
    ``sensitivity`` decides what a record keeps of a field, never what is decided, and each
    record lists the fields it omitted or pseudonymised; leaving it out keeps the hash (and
    the replay of records made before it was declared) unchanged.
    """
    if doc.schema_version == 1:
        return doc.model_dump(mode="json", exclude=_V2_EXCLUDE)
    return doc.model_dump(mode="json", exclude=_NOT_HASHED, by_alias=True)


def content_hash(doc: RulesetDoc) -> str:
    payload = json.dumps(
        canonical_form(doc), sort_keys=True, ensure_ascii=False, separators=(",", ":")
    )
    return "sha256:" + hashlib.sha256(payload.encode("utf-8")).hexdigest()


def load_ruleset(
    path: Path | str,
    *,
    in_service_folder: bool = False,
    sources: RegistryCatalogue | None = None,
) -> Ruleset:
    """Read, validate, type-check and compile the ruleset at ``path``.

    Any file name will do for a draft being checked. With ``in_service_folder`` (as in the
    served rulesets tree) its folder must be named after the service, and a version that is
    not a draft must be in ``<version>.yaml``. ``sources`` (the registry catalogue) checks
    the evidence. Raises ``RulesetInvalid`` listing every problem with file, line and column.
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise RulesetInvalid(
            [RulesetError(f"文件不是UTF-8编码 / not UTF-8: {exc.reason}", file=str(p))]
        ) from None
    except OSError as exc:
        raise RulesetInvalid(
            [RulesetError(f"无法读取文件 / cannot read the file: {exc.strerror}", file=str(p))]
        ) from None
    ruleset = parse_ruleset(text, file=str(p), sources=sources)
    errors: list[RulesetError] = []
    if in_service_folder and p.parent.name != ruleset.service:
        errors.append(
            RulesetError(
                f"文件夹 {p.parent.name!r} 须以事项编码命名 / folder {p.parent.name!r} must be "
                f"named after the service {ruleset.service!r}",
                file=str(p),
                line=1,
                column=1,
                key="service",
            )
        )
    if in_service_folder and ruleset.doc.status != "draft" and p.stem != ruleset.version:
        errors.append(
            RulesetError(
                f"文件名 {p.name!r} 须为版本号 / file name {p.name!r} must be the version: "
                f"expected {ruleset.version}.yaml (only drafts may be named otherwise)",
                file=str(p),
                line=1,
                column=1,
                key="version",
            )
        )
    if errors:
        raise RulesetInvalid(errors)
    return ruleset


def parse_ruleset(text: str, *, file: str, sources: RegistryCatalogue | None = None) -> Ruleset:
    """Validate and compile ruleset YAML ``text``; ``file`` is used in error messages."""
    try:
        located = load_located(text, file=file)
    except RulesetError as exc:
        raise RulesetInvalid([exc]) from None
    if not isinstance(located.data, dict):
        raise RulesetInvalid(
            [located.error("规则集须为键值映射 / a ruleset must be a mapping of keys", ())]
        )
    try:
        doc = RulesetDoc.model_validate(located.data)
    except pydantic.ValidationError as exc:
        raise RulesetInvalid(validation_errors(exc, located)) from None
    checker = Checker(doc, located, sources=sources)
    checked = checker.run()
    if checker.errors:
        raise RulesetInvalid(sorted(checker.errors, key=lambda e: (e.line or 0, e.column or 0)))
    rows = []
    if checked.outputs is not None:
        rows = [r.when if r.when is not None else _ALWAYS for r in checked.outputs.rows]
    compiled = compile_rules(
        criteria=[c.condition for c in checked.criteria],
        rows=rows,
        static_keys=checked.static_keys,
        types=checked.types,
    )
    return Ruleset(
        doc=doc,
        path=file,
        content_hash=content_hash(doc),
        criteria=tuple(checked.criteria),
        outputs=checked.outputs,
        tables=checked.tables,
        parameters=tuple(checked.parameters),
        values=tuple(checked.values),
        compiled=compiled,
        evidence=tuple(checked.evidence),
        form_model=form_model(doc.inputs, name=f"Form_{doc.service}_{doc.version}"),
        names=checked.names,
        sources=checked.sources,
        recording=checked.recording,
    )


def form_model(inputs: list[InputField], *, name: str, partial: bool = False) -> type[BaseModel]:
    """A pydantic model of the application form, refusing unknown fields (``partial``: every
    field optional)."""
    fields: dict[str, Any] = {}
    for f in inputs:
        annotation: Any
        constraints: dict[str, Any] = {"title": f"{f.title.zh} / {f.title.en}"}
        if f.type == "enum":
            annotation = TypingLiteral[tuple(f.values or ())]
        elif f.type == "string":
            annotation = SingleLine  # no control, format or bidi characters (engine.text)
            if f.pattern:
                constraints["pattern"] = f.pattern
            if f.max_length:
                constraints["max_length"] = f.max_length
        elif f.type == "integer":
            annotation = int
            constraints["ge"] = -(2**63)  # integers are 64-bit (as durable_rules compares them)
            constraints["le"] = 2**63 - 1
        elif f.type == "number":
            annotation = Decimal
            constraints["strict"] = False  # JSON numbers and numeric strings; never a float
            constraints["allow_inf_nan"] = False
        elif f.type == "boolean":
            annotation = bool
        else:
            annotation = dt.date
            constraints["strict"] = False  # JSON carries dates as "YYYY-MM-DD" strings
        if f.type in ("integer", "number"):
            if f.minimum is not None:
                constraints["ge"] = f.minimum
            if f.maximum is not None:
                constraints["le"] = f.maximum
        if f.required and not partial:
            fields[f.name] = (annotation, Field(**constraints))
        else:
            fields[f.name] = (annotation | None, Field(default=None, **constraints))
    model: type[BaseModel] = create_model(
        name, __config__=ConfigDict(extra="forbid", strict=True), **fields
    )
    return model
