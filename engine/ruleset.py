"""Loading, checking and compiling one ruleset file; the content hash of its canonical form."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from typing import Literal as TypingLiteral

import pydantic
from pydantic import BaseModel, ConfigDict, Field, create_model

from engine._semantics import MISSING, Scope, check, names_in, terms_in, truth, value
from engine._yaml import Located, load_located
from engine.compiler import CompiledRules, compile_rules
from engine.errors import ExpressionError, RulesetError, RulesetInvalid
from engine.expr import Expr, Literal, Name, parse, unparse
from engine.model import EvidenceSpec, InputField, RulesetDoc

__all__ = ["APPLICATION_NAMES", "Ruleset", "load_ruleset", "parse_ruleset"]

APPLICATION_NAMES: dict[str, str] = {
    "applicant.id_number": "string",
    "applicant.name": "string",
    "application.date": "date",
}
_PLACEHOLDER = re.compile(r"\{([^{}]+)\}")


@dataclass(frozen=True)
class Template:
    """A citizen-facing text with ``{expression}`` placeholders for the compared values."""

    text: str
    parts: tuple[str | Expr, ...]

    def render(
        self, env: Mapping[str, object], tables: Mapping[str, Mapping[str, object]], *, lang: str
    ) -> str:
        out: list[str] = []
        for part in self.parts:
            if isinstance(part, str):
                out.append(part)
            else:
                out.append(format_value(value(part, env, tables), lang=lang))
        return "".join(out)


def format_value(v: object, *, lang: str) -> str:
    """A value as a citizen reads it."""
    if v is MISSING or v is None:
        return "（无记录）" if lang == "zh" else "(no record)"
    if isinstance(v, bool):
        return ("是" if v else "否") if lang == "zh" else ("yes" if v else "no")
    if isinstance(v, dt.date):
        return v.isoformat()
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


@dataclass(frozen=True)
class CheckedCriterion:
    index: int
    id: str
    condition: Expr
    names: tuple[str, ...]
    terms: tuple[Expr, ...]
    reason_zh: Template
    reason_en: Template
    condition_text: str = ""
    term_texts: tuple[str, ...] = ()


@dataclass(frozen=True)
class Ruleset:
    """A checked, compiled ruleset: the unit a decision is made with."""

    doc: RulesetDoc
    path: str
    content_hash: str
    criteria: tuple[CheckedCriterion, ...]
    rows: tuple[Expr, ...]
    tables: dict[str, dict[str, object]]
    compiled: CompiledRules
    evidence_order: tuple[EvidenceSpec, ...]
    evidence_keys: dict[str, Name]
    form_model: type[BaseModel]
    names: dict[str, str] = field(default_factory=dict)

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

    def in_force_on(self, day: dt.date) -> bool:
        return self.doc.effective_from <= day and (
            self.doc.effective_to is None or day <= self.doc.effective_to
        )


def canonical_form(doc: RulesetDoc) -> dict[str, Any]:
    """What the content hash covers: everything but the lifecycle ``status``."""
    return doc.model_dump(mode="json", exclude={"status"})


def content_hash(doc: RulesetDoc) -> str:
    payload = json.dumps(
        canonical_form(doc), sort_keys=True, ensure_ascii=False, separators=(",", ":")
    )
    return "sha256:" + hashlib.sha256(payload.encode("utf-8")).hexdigest()


def load_ruleset(path: Path | str, *, in_service_folder: bool = False) -> Ruleset:
    """Read, validate, type-check and compile the ruleset at ``path``.

    The file must be named ``<version>.yaml``; with ``in_service_folder`` (as in a rulesets
    tree) its folder must also be named after the service. Raises ``RulesetInvalid`` listing
    every problem with file, line and column.
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise RulesetInvalid(
            [RulesetError(f"文件不是UTF-8编码 / not UTF-8: {exc.reason}", file=str(p))]
        ) from None
    ruleset = parse_ruleset(text, file=str(p))
    errors: list[RulesetError] = []
    if in_service_folder and p.parent.name != ruleset.service:
        errors.append(
            RulesetError(
                f"folder {p.parent.name!r} must be named after the service {ruleset.service!r}",
                file=str(p),
                line=1,
                column=1,
                key="service",
            )
        )
    if p.stem != ruleset.version:
        errors.append(
            RulesetError(
                f"file name {p.name!r} must be the version: expected {ruleset.version}.yaml",
                file=str(p),
                line=1,
                column=1,
                key="version",
            )
        )
    if errors:
        raise RulesetInvalid(errors)
    return ruleset


def parse_ruleset(text: str, *, file: str) -> Ruleset:
    """Validate and compile ruleset YAML ``text``; ``file`` is used in error messages."""
    try:
        located = load_located(text, file=file)
    except RulesetError as exc:
        raise RulesetInvalid([exc]) from None
    if not isinstance(located.data, dict):
        raise RulesetInvalid([located.error("a ruleset must be a mapping of keys", ())])
    try:
        doc = RulesetDoc.model_validate(located.data)
    except pydantic.ValidationError as exc:
        raise RulesetInvalid(_pydantic_errors(exc, located)) from None
    return _Checker(doc, located).run()


def _pydantic_errors(exc: pydantic.ValidationError, located: Located) -> list[RulesetError]:
    out = []
    for err in exc.errors():
        path = tuple(
            p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-"))
        )
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = f"未知的键 / unexpected key {path[-1]!r}"
        elif err["type"] == "missing":
            msg = f"缺少必填键 / missing required key {path[-1]!r}"
        else:
            msg = f"{msg}; got {err.get('input')!r}"
        out.append(located.error(msg, path, at_key=err["type"] == "extra_forbidden"))
    out.sort(key=lambda e: (e.line or 0, e.column or 0))
    return out


class _Checker:
    def __init__(self, doc: RulesetDoc, located: Located) -> None:
        self.doc = doc
        self.loc = located
        self.errors: list[RulesetError] = []

    def err(self, message: str, *path: str | int, offset: int | None = None) -> None:
        self.errors.append(self.loc.error(message, path, offset=offset))

    def expr(self, text: str, scope: Scope, *path: str | int, want: str | None) -> Expr | None:
        try:
            node = parse(text)
            got = check(node, scope, text=text)
        except ExpressionError as exc:
            self.err(exc.message, *path, offset=exc.offset)
            return None
        if want is not None and got != want:
            self.err(f"expected a {want} expression, got a {got}", *path, offset=0)
            return None
        return node

    def run(self) -> Ruleset:
        doc = self.doc
        if doc.effective_to is not None and doc.effective_to < doc.effective_from:
            self.err(
                f"effective_to {doc.effective_to} is before effective_from {doc.effective_from}",
                "effective_to",
            )
        basis_ids = self._unique([b.id for b in doc.legal_basis], "legal_basis", "legal basis id")
        self._unique([f.name for f in doc.inputs], "inputs", "input field")
        self._unique([e.id for e in doc.evidence], "evidence", "evidence id")
        self._unique([c.id for c in doc.criteria], "criteria", "criterion id")

        names: dict[str, str] = dict(APPLICATION_NAMES)
        enums: dict[str, tuple[str, ...]] = {}
        for i, f in enumerate(doc.inputs):
            if f.type == "enum":
                if not f.values:
                    self.err("an enum field needs a non-empty 'values' list", "inputs", i, "type")
                enums[f"form.{f.name}"] = tuple(f.values or ())
                names[f"form.{f.name}"] = "string"
            else:
                names[f"form.{f.name}"] = f.type
            if f.pattern is not None:
                try:
                    re.compile(f.pattern)
                except re.error as exc:
                    self.err(f"invalid regular expression: {exc}", "inputs", i, "pattern")
        for ev in doc.evidence:
            for fname, ftype in ev.fields.items():
                names[f"{ev.id}.{fname}"] = ftype
        tables: dict[str, dict[str, object]] = {}
        table_types: dict[str, tuple[str, Mapping[str, object]]] = {}
        for tname, table in doc.tables.items():
            kinds = {type(v).__name__ for v in table.values.values()}
            if len(kinds) > 1:
                self.err(
                    f"all values of table {tname!r} must have one type, got {sorted(kinds)}",
                    "tables",
                    tname,
                    "values",
                )
            sample = next(iter(table.values.values()))
            vtype = {"bool": "boolean", "int": "integer", "float": "number"}.get(
                type(sample).__name__, "string"
            )
            tables[tname] = dict(table.values)
            table_types[tname] = (vtype, tables[tname])
            self._cites(table.legal_basis, basis_ids, "tables", tname, "legal_basis")
        scope = Scope(names=names, enums=enums, tables=table_types)

        evidence_keys = self._evidence(scope)
        order = self._evidence_order(evidence_keys)

        criteria: list[CheckedCriterion] = []
        for i, crit in enumerate(doc.criteria):
            if not crit.legal_basis:
                self.err(f"criterion {crit.id} cites no legal basis", "criteria", i, "legal_basis")
            self._cites(crit.legal_basis, basis_ids, "criteria", i, "legal_basis")
            node = self.expr(crit.condition, scope, "criteria", i, "condition", want="boolean")
            zh = self._template(crit.reason.zh, scope, "criteria", i, "reason", "zh")
            en = self._template(crit.reason.en, scope, "criteria", i, "reason", "en")
            if node is None or zh is None or en is None:
                continue
            constant = truth(node, {}, tables)
            if constant is True:
                self.err(
                    f"criterion {crit.id} is always true: it checks nothing",
                    "criteria",
                    i,
                    "condition",
                    offset=0,
                )
                continue
            if constant is False:
                self.err(
                    f"criterion {crit.id} can never be met (unreachable approval)",
                    "criteria",
                    i,
                    "condition",
                    offset=0,
                )
                continue
            terms = tuple(dict.fromkeys(t for t in terms_in(node) if not _is_literal(t)))
            criteria.append(
                CheckedCriterion(
                    i,
                    crit.id,
                    node,
                    tuple(dict.fromkeys(names_in(node))),
                    terms,
                    zh,
                    en,
                    unparse(node),
                    tuple(unparse(t) for t in terms),
                )
            )

        rows: list[Expr] = []
        if doc.outputs is not None:
            out = doc.outputs
            self._cites(out.legal_basis, basis_ids, "outputs", "legal_basis")
            if not out.legal_basis:
                self.err("the outputs table cites no legal basis", "outputs", "legal_basis")
            for r, row in enumerate(out.rules):
                node = self.expr(row.when, scope, "outputs", "rules", r, "when", want="boolean")
                if node is not None:
                    rows.append(node)
                missing = set(out.columns) - set(row.then)
                extra = set(row.then) - set(out.columns)
                if missing:
                    self.err(
                        f"row {r} sets no value for {sorted(missing)}",
                        "outputs",
                        "rules",
                        r,
                        "then",
                    )
                if extra:
                    self.err(
                        f"row {r} sets unknown columns {sorted(extra)}; columns are {sorted(out.columns)}",
                        "outputs",
                        "rules",
                        r,
                        "then",
                    )
                for col, v in row.then.items():
                    want = out.columns.get(col)
                    got = {"bool": "boolean", "int": "integer", "float": "number"}.get(
                        type(v).__name__, "string"
                    )
                    if want and got != want and not (want == "number" and got == "integer"):
                        self.err(
                            f"column {col} is {want}, got {got} {v!r}",
                            "outputs",
                            "rules",
                            r,
                            "then",
                            col,
                        )

        for t, ex in enumerate(doc.tests):
            unknown = set(ex.evidence) - {e.id for e in doc.evidence}
            if unknown:
                self.err(
                    f"test evidence names unknown evidence ids {sorted(unknown)}",
                    "tests",
                    t,
                    "evidence",
                )
            ids = {c.id for c in doc.criteria}
            for listname in ("failed", "unknown"):
                bad = set(getattr(ex.expect, listname)) - ids
                if bad:
                    self.err(
                        f"expect.{listname} names unknown criteria {sorted(bad)}",
                        "tests",
                        t,
                        "expect",
                        listname,
                    )

        if self.errors:
            self.errors.sort(key=lambda e: (e.line or 0, e.column or 0))
            raise RulesetInvalid(self.errors)

        chash = content_hash(doc)
        compiled = compile_rules(
            criteria=[c.condition for c in criteria],
            rows=rows,
            tables=tables,
        )
        return Ruleset(
            doc=doc,
            path=self.loc.file,
            content_hash=chash,
            criteria=tuple(criteria),
            rows=tuple(rows),
            tables=tables,
            compiled=compiled,
            evidence_order=order,
            evidence_keys=evidence_keys,
            form_model=form_model(doc.inputs, name=f"Form_{doc.service}_{doc.version}"),
            names=names,
        )

    def _unique(self, ids: list[str], section: str, what: str) -> set[str]:
        seen: set[str] = set()
        for i, ident in enumerate(ids):
            if ident in seen:
                self.err(f"duplicate {what} {ident!r}", section, i)
            seen.add(ident)
        return seen

    def _cites(self, refs: list[str], known: set[str], *path: str | int) -> None:
        for j, ref in enumerate(refs):
            if ref not in known:
                self.err(f"cites unknown legal basis {ref!r}; known: {sorted(known)}", *path, j)

    def _template(self, text: str, scope: Scope, *path: str | int) -> Template | None:
        parts: list[str | Expr] = []
        pos = 0
        ok = True
        for m in _PLACEHOLDER.finditer(text):
            parts.append(text[pos : m.start()])
            inner = m.group(1)
            try:
                node = parse(inner)
                check(node, scope, text=inner)
                parts.append(node)
            except ExpressionError as exc:
                self.err(
                    f"in placeholder {{{inner}}}: {exc.message}",
                    *path,
                    offset=m.start(1) + exc.offset,
                )
                ok = False
            pos = m.end()
        parts.append(text[pos:])
        return Template(text, tuple(p for p in parts if p != "")) if ok else None

    def _evidence(self, scope: Scope) -> dict[str, Name]:
        keys: dict[str, Name] = {}
        for i, ev in enumerate(self.doc.evidence):
            try:
                node = parse(ev.key)
            except ExpressionError as exc:
                self.err(exc.message, "evidence", i, "key", offset=exc.offset)
                continue
            if not isinstance(node, Name) or len(node.parts) != 2:
                self.err(
                    "an evidence key must be one name such as applicant.id_number",
                    "evidence",
                    i,
                    "key",
                )
                continue
            if node.dotted not in scope.names:
                self.err(
                    f"unknown name {node.dotted!r}{scope.suggest(node.dotted)}",
                    "evidence",
                    i,
                    "key",
                    offset=0,
                )
                continue
            if node.parts[0] == ev.id:
                self.err("evidence cannot be keyed by itself", "evidence", i, "key")
                continue
            keys[ev.id] = node
        return keys

    def _evidence_order(self, keys: dict[str, Name]) -> tuple[EvidenceSpec, ...]:
        by_id = {e.id: e for e in self.doc.evidence}
        order: list[EvidenceSpec] = []
        state: dict[str, int] = {}

        def visit(eid: str, chain: tuple[str, ...]) -> None:
            if state.get(eid) == 2:
                return
            if state.get(eid) == 1:
                i = [e.id for e in self.doc.evidence].index(eid)
                self.err(
                    f"evidence keys form a cycle: {' -> '.join((*chain, eid))}",
                    "evidence",
                    i,
                    "key",
                )
                return
            state[eid] = 1
            key = keys.get(eid)
            if key is not None and key.parts[0] in by_id:
                visit(key.parts[0], (*chain, eid))
            state[eid] = 2
            order.append(by_id[eid])

        for ev in self.doc.evidence:
            visit(ev.id, ())
        return tuple(order)


def _is_literal(node: Expr) -> bool:
    return isinstance(node, Literal)


def form_model(inputs: list[InputField], *, name: str) -> type[BaseModel]:
    """A pydantic model of the application form, refusing unknown fields."""
    fields: dict[str, Any] = {}
    for f in inputs:
        annotation: Any
        constraints: dict[str, Any] = {"title": f"{f.title.zh} / {f.title.en}"}
        if f.type == "enum":
            annotation = TypingLiteral[tuple(f.values or ())]
        elif f.type == "string":
            annotation = str
            if f.pattern:
                constraints["pattern"] = f.pattern
            if f.max_length:
                constraints["max_length"] = f.max_length
        elif f.type == "integer":
            annotation = int
        elif f.type == "number":
            annotation = float
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
        if f.required:
            fields[f.name] = (annotation, Field(**constraints))
        else:
            fields[f.name] = (annotation | None, Field(default=None, **constraints))
    model: type[BaseModel] = create_model(
        name, __config__=ConfigDict(extra="forbid", strict=True), **fields
    )
    return model
