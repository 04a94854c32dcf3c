"""Checking a parsed ruleset document: names, types, legal citations, evidence, tables, tests.

Every problem is collected (not only the first) and located by file, line and column, with
list items named by their id (``criteria.C5.condition``). Messages are Chinese, then English.
"""

from __future__ import annotations

import datetime as dt
import difflib
import itertools
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from typing import Any

import pydantic

from engine._compiled import (
    CheckedCriterion,
    CheckedParameter,
    CheckedRow,
    CheckedTable,
    CheckedValue,
    Column,
    EvidencePlan,
    Period,
    Template,
    typed_json,
)
from engine._semantics import (
    ANY,
    NUMERIC,
    Scope,
    TableInfo,
    check,
    literal_type,
    names_in,
    tables_in,
    terms_in,
    truth,
)
from engine._yaml import Located
from engine.errors import ExpressionError
from engine.expr import Expr, Literal, Name, parse, unparse
from engine.model import (
    Approx,
    CellExpr,
    ColumnSpec,
    DecisionTable,
    EvidenceSpec,
    RulesetDoc,
    ValueTable,
)
from engine.recording import AGE_MASK, FormHandling, RecordingPlan, age_reads_elsewhere
from engine.registries import Claim, RegistryCatalogue, RegistrySpec, parse_claim

__all__ = ["APPLICATION_NAMES", "Checked", "Checker"]

APPLICATION_NAMES: dict[str, str] = {
    "applicant.id_number": "string",
    "applicant.name": "string",
    "application.date": "date",
}
_RESERVED = {
    "form",
    "applicant",
    "application",
    "true",
    "false",
    "if",
    "then",
    "else",
    "and",
    "or",
    "not",
    "in",
}
_PLACEHOLDER = re.compile(r"\{([^{}]+)\}")

_FORMATS = {"money"}
_SINGLE_RESULT = {
    "UNIQUE",
    "ANY",
    "FIRST",
    "PRIORITY",
    "COLLECT SUM",
    "COLLECT MIN",
    "COLLECT MAX",
    "COLLECT COUNT",
}
_V1_POLICIES = {"UNIQUE", "FIRST"}
_ZH_TYPE = {
    "string": "字符串",
    "integer": "整数",
    "number": "数字",
    "boolean": "布尔值",
    "date": "日期",
}


def _fits(got: str, want: str) -> bool:
    """Whether a value of type ``got`` may stand where ``want`` is declared."""
    return got == want or (want == "number" and got == "integer") or ANY in (got, want)


class Checked:
    """Everything the checker derived, handed to ``Ruleset`` (plain attributes)."""

    def __init__(self) -> None:
        self.criteria: list[CheckedCriterion] = []
        self.outputs: CheckedTable | None = None
        self.tables: dict[str, dict[str, object]] = {}
        self.static_keys: dict[str, list[str]] = {}
        self.parameters: list[CheckedParameter] = []
        self.values: list[CheckedValue] = []
        self.evidence: list[EvidencePlan] = []
        self.names: dict[str, str] = {}
        self.types: dict[Expr, str] = {}
        self.sources: dict[str, str] = {}
        """Name (or name prefix) → where its value comes from, for explanations."""
        self.recording = RecordingPlan()
        """What a record keeps of each input (see ``engine.recording``)."""


class Checker:
    """Checks one ``RulesetDoc``; ``sources`` (the registry catalogue) checks its evidence."""

    def __init__(
        self, doc: RulesetDoc, located: Located, *, sources: RegistryCatalogue | None = None
    ) -> None:
        self.doc = doc
        self.loc = located
        self.sources = sources
        self.errors: list[Any] = []
        self.out = Checked()
        self.basis_ids: set[str] = set()
        self.corroborating: dict[str, list[tuple[RegistrySpec, str, str, RegistrySpec]]] = {}
        """Evidence name (``id.field``) → ``(registry, field, fact, authoritative registry)`` for
        each registry field behind it that may only corroborate (一数一源)."""
        self.age_fields: frozenset[str] = self._age_fields()
        """Evidence names the catalogue records as an age (``record: age``)."""

    # --- helpers -----------------------------------------------------------------------------

    def err(
        self, message: str, *path: str | int, offset: int | None = None, at_key: bool = False
    ) -> None:
        """Report a problem at ``path`` (at the key itself with ``at_key``, for a misnamed key)."""
        self.errors.append(self.loc.error(message, path, offset=offset, at_key=at_key))

    def expr(
        self, text: str, scope: Scope, *path: str | int, want: str | None
    ) -> tuple[Expr, str] | None:
        """Parse and type-check ``text``; report problems at ``path``."""
        try:
            node = parse(text)
            got = check(node, scope, text=text, types=self.out.types)
        except ExpressionError as exc:
            self.err(exc.message, *path, offset=exc.offset)
            return None
        if want is not None and not _fits(got, want):
            self.err(
                f"应为{_ZH_TYPE.get(want, want)}表达式，实际为{_ZH_TYPE.get(got, got)} / "
                f"expected a {want} expression, got a {got}",
                *path,
                offset=0,
            )
            return None
        if not self._reads_ages_rightly(node, *path):
            return None
        return node, got

    def _reads_ages_rightly(self, node: Expr, *path: str | int) -> bool:
        """A field recorded as an age is read only as ``age_on(<field>, application.date)``."""
        wrong = age_reads_elsewhere(node, self.age_fields)
        for name in wrong:
            self.err(
                f"登记库目录规定 {name.dotted} 只按周岁记录（record: age），规则只能写作 "
                f"age_on({name.dotted}, application.date) / the registry catalogue records "
                f"{name.dotted} as an age (record: age): a rule may read it only as "
                f"age_on({name.dotted}, application.date), which replay can decide again",
                *path,
                offset=name.offset,
            )
        return not wrong

    def _unique(self, ids: list[str], section: str, what_zh: str, what_en: str) -> set[str]:
        seen: set[str] = set()
        for i, ident in enumerate(ids):
            if ident in seen:
                self.err(f"重复的{what_zh} / duplicate {what_en} {ident!r}", section, i)
            seen.add(ident)
        return seen

    def _cites(self, refs: Iterable[str], *path: str | int) -> None:
        for j, ref in enumerate(refs):
            if ref not in self.basis_ids:
                close = difflib.get_close_matches(ref, sorted(self.basis_ids), n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                self.err(
                    f"引用了未声明的法律依据 / cites unknown legal basis {ref!r}{hint}; "
                    f"known: {sorted(self.basis_ids)}",
                    *path,
                    j,
                )

    # --- what records keep ---------------------------------------------------------------

    def _age_fields(self) -> frozenset[str]:
        """``<evidence id>.<field>`` of every fetched field the catalogue records as an age."""
        if self.sources is None:
            return frozenset()
        out: set[str] = set()
        for ev in self.doc.evidence:
            reg = self.sources.get(ev.source)
            if reg is None or ev.mode != "fetch":
                continue
            out.update(f"{ev.id}.{f}" for f in ev.fields if reg.recorded_as(f) == "age")
        return frozenset(out)

    def _reads(self) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
        """Who reads each name: by value (criteria, reasons, values, outputs) and to ask a
        registry (evidence keys and claims), as ``name → ["criterion C3", …]``."""
        by_value: dict[str, list[str]] = {}
        to_ask: dict[str, list[str]] = {}

        def note(reads: dict[str, list[str]], nodes: Iterable[Expr | None], who: str) -> None:
            for node in nodes:
                if node is not None:
                    for name in names_in(node):
                        reads.setdefault(name, []).append(who)

        def table_nodes(table: CheckedTable) -> list[Expr | None]:
            nodes: list[Expr | None] = []
            for row in table.rows:
                nodes += [row.when, *row.cells.values()]
            return nodes + list((table.default or {}).values())

        for crit in self.out.criteria:
            templates = [
                p[0] for t in (crit.reason_zh, crit.reason_en) for p in t.parts if type(p) is tuple
            ]
            note(by_value, [crit.condition, *templates], f"criterion {crit.id}")
        for named in self.out.values:
            nodes: list[Expr | None] = [named.expr]
            if named.table is not None:
                nodes += table_nodes(named.table)
            note(by_value, nodes, f"value {named.name}")
        if self.out.outputs is not None:
            note(by_value, table_nodes(self.out.outputs), "outputs")
        for plan in self.out.evidence:
            claims = [e for c in plan.claims.values() if c is not None for _, e in c.equals]
            note(to_ask, [*plan.key.values(), *claims], f"evidence {plan.id}")
        return by_value, to_ask

    def _recording(self) -> RecordingPlan:
        """How records hold each input; refuses a sensitivity its use contradicts."""
        by_value, to_ask = self._reads()
        form: dict[str, FormHandling] = {}
        for i, f in enumerate(self.doc.inputs):
            name = f"form.{f.name}"
            readers = [*by_value.get(name, ()), *to_ask.get(name, ())]
            at = ("inputs", i, "sensitivity")
            if f.sensitivity == "contact" and readers:
                self.err(
                    f"联系方式只用于联系申请人，不能用于审批：{readers[0]} 读取了 {name} / "
                    f"contact details are for reaching the applicant, never for deciding: "
                    f"{readers[0]} reads {name}",
                    *at,
                )
            if f.sensitivity == "sensitive" and not readers:
                self.err(
                    f"敏感个人信息只能在审批必需时收集，但没有规则读取 {name} / sensitive "
                    f"personal information may be collected only when the decision needs it; no "
                    f"rule reads {name}",
                    *at,
                )
            if not readers:
                form[f.name] = "omit"
            elif name in by_value or f.sensitivity == "public":
                form[f.name] = "keep"
            else:
                form[f.name] = "pseudonym"
        plans: list[EvidencePlan] = []
        for plan in self.out.evidence:
            reg = self.sources.get(plan.source) if self.sources is not None else None
            hidden: set[str] = set()
            for key_field, node in plan.key.items():
                if key_field is None:
                    continue
                read = [n[5:] for n in names_in(node) if n.startswith("form.")]
                if any(form.get(n) == "pseudonym" for n in read):
                    hidden.add(key_field)
                personal = reg.personal(key_field) if reg is not None else None
                for n in read:
                    i = next(j for j, f in enumerate(self.doc.inputs) if f.name == n)
                    if self.doc.inputs[i].sensitivity == "public" and personal is not None:
                        self.err(
                            f"form.{n} 标为 public，却用作登记库 {plan.source} 的键 {key_field}"
                            f"（可识别个人） / form.{n} is marked public but looks up "
                            f"{plan.source}.{key_field}, which identifies a person",
                            "inputs",
                            i,
                            "sensitivity",
                        )
            plans.append(replace(plan, pseudonym_keys=frozenset(hidden)) if hidden else plan)
        self.out.evidence = plans
        return RecordingPlan(form, self.age_fields)

    # --- the whole document --------------------------------------------------------------

    def run(self) -> Checked:
        doc = self.doc
        if doc.schema_version == 1:
            self._v1_only()
        if doc.effective_to is not None and doc.effective_to < doc.effective_from:
            self.err(
                f"effective_to {doc.effective_to} 早于 effective_from / is before "
                f"effective_from {doc.effective_from}",
                "effective_to",
            )
        self.basis_ids = self._unique(
            [b.id for b in doc.legal_basis], "legal_basis", "法律依据编号", "legal basis id"
        )
        self._unique([f.name for f in doc.inputs], "inputs", "申请表字段", "input field")
        self._unique([e.id for e in doc.evidence], "evidence", "证据编号", "evidence id")
        self._unique([c.id for c in doc.criteria], "criteria", "条件编号", "criterion id")

        scope = self._base_scope()
        self._bare_names(scope)
        self._parameters(scope)
        self._evidence(scope)
        self._values(scope)
        self._criteria(scope)
        if doc.outputs is not None:
            self.out.outputs = self._outputs(doc.outputs, scope)
        self.out.recording = self._recording()
        self._tests()
        self.out.names = dict(scope.names)
        return self.out

    def _v1_only(self) -> None:
        """Version-2 constructs in a version-1 file are refused, naming the construct."""

        def needs_v2(what: str, *path: str | int) -> None:
            self.err(f"{what} 需要 schema_version: 2 / {what} needs schema_version: 2", *path)

        doc = self.doc
        if doc.parameters:
            needs_v2("parameters", "parameters")
        if doc.values:
            needs_v2("values", "values")
        for i, ev in enumerate(doc.evidence):
            if ev.registry is not None:
                needs_v2("registry", "evidence", i, "registry")
            if ev.claims:
                needs_v2("claims", "evidence", i, "claims")
            if isinstance(ev.key, dict):
                needs_v2("a composite key", "evidence", i, "key")
        out = doc.outputs
        if out is not None:
            if out.hit_policy not in _V1_POLICIES:
                needs_v2(f"hit policy {out.hit_policy}", "outputs", "hit_policy")
            if out.default is not None:
                needs_v2("default", "outputs", "default")
            for name, col in out.columns.items():
                if isinstance(col, ColumnSpec):
                    needs_v2("a column specification", "outputs", "columns", name)
            for r, row in enumerate(out.rules):
                if row.when is None:
                    needs_v2("a rule without 'when'", "outputs", "rules", r)
                for col_name, cell in row.then.items():
                    if isinstance(cell, CellExpr) or isinstance(cell, dt.date):
                        needs_v2(
                            "an expression or date cell", "outputs", "rules", r, "then", col_name
                        )
        for t, ex in enumerate(doc.tests):
            if ex.expect.values is not None:
                needs_v2("expect.values", "tests", t, "expect", "values")
            if ex.expect.tolerance is not None:
                needs_v2("expect.tolerance", "tests", t, "expect", "tolerance")
            for k, v in (ex.expect.outputs or {}).items():
                if isinstance(v, Approx | list):
                    needs_v2("a tolerance or list expectation", "tests", t, "expect", "outputs", k)

    # --- names ---------------------------------------------------------------------------

    def _base_scope(self) -> Scope:
        names: dict[str, str] = dict(APPLICATION_NAMES)
        enums: dict[str, tuple[str, ...]] = {}
        sources = self.out.sources
        sources.update({n: "application" for n in APPLICATION_NAMES})
        for i, f in enumerate(self.doc.inputs):
            if f.type == "enum":
                if not f.values:
                    self.err(
                        "枚举字段需要非空的 values 列表 / an enum field needs a non-empty "
                        "'values' list",
                        "inputs",
                        i,
                        "type",
                    )
                enums[f"form.{f.name}"] = tuple(f.values or ())
                names[f"form.{f.name}"] = "string"
            else:
                names[f"form.{f.name}"] = f.type
            sources[f"form.{f.name}"] = "declared"
            if f.pattern is not None:
                try:
                    re.compile(f.pattern)
                except re.error as exc:
                    self.err(
                        f"正则表达式无效 / invalid regular expression: {exc}",
                        "inputs",
                        i,
                        "pattern",
                    )
        for ev in self.doc.evidence:
            for fname, ftype in ev.fields.items():
                names[f"{ev.id}.{fname}"] = ftype
                sources[f"{ev.id}.{fname}"] = f"registry:{ev.source}"
        tables: dict[str, TableInfo] = {}
        for tname, table in self.doc.tables.items():
            kinds = {literal_type(v) for v in table.values.values()}
            if len(kinds) > 1:
                self.err(
                    f"表 {tname!r} 的值须为同一类型 / all values of table {tname!r} must have one "
                    f"type, got {sorted(kinds)}",
                    "tables",
                    tname,
                    "values",
                )
            vtype = next(iter(kinds)) if len(kinds) == 1 else "string"
            self.out.tables[tname] = dict(table.values)
            self.out.static_keys[tname] = list(table.values)
            tables[tname] = TableInfo(vtype, frozenset(table.values))
            sources[tname] = "table"
            self._cites(table.legal_basis, "tables", tname, "legal_basis")
        return Scope(names=names, enums=enums, tables=tables)

    def _bare_names(self, scope: Scope) -> None:
        """Tables, parameters and values share one namespace of bare names."""
        seen: dict[str, str] = {t: "tables" for t in self.doc.tables}
        evidence_ids = {e.id for e in self.doc.evidence}
        for section, names in (("parameters", self.doc.parameters), ("values", self.doc.values)):
            for name in names:
                if name in seen:
                    self.err(
                        f"名称 {name!r} 已在 {seen[name]} 中使用 / the name {name!r} is already "
                        f"used in {seen[name]}",
                        section,
                        name,
                        at_key=True,
                    )
                seen[name] = section
        for name, section in seen.items():
            if name in evidence_ids or name in _RESERVED:
                self.err(
                    f"名称 {name!r} 与证据编号或保留字冲突 / the name {name!r} clashes with an "
                    "evidence id or a reserved word",
                    section,
                    name,
                    at_key=True,
                )

    # --- parameters ----------------------------------------------------------------------

    def _parameters(self, scope: Scope) -> None:
        doc = self.doc
        for name, param in doc.parameters.items():
            at = ("parameters", name)
            periods = param.values
            ok = True
            for j, (a, b) in enumerate(itertools.pairwise(periods)):
                if b.from_ <= a.from_:
                    self.err(
                        f"各期须按生效日期递增 / periods must be in increasing order of 'from' "
                        f"({a.from_} then {b.from_})",
                        *at,
                        "values",
                        j + 1,
                        "from",
                    )
                    ok = False
            if periods[0].from_ > doc.effective_from:
                self.err(
                    f"参数 {name} 的第一期 {periods[0].from_} 晚于规则生效日 {doc.effective_from} / "
                    f"parameter {name} has no value before {periods[0].from_}, but the ruleset is "
                    f"in force from {doc.effective_from}",
                    *at,
                    "values",
                    0,
                    "from",
                )
                ok = False
            mapping = isinstance(periods[0].value, dict)
            keysets: list[frozenset[str]] = []
            for j, period in enumerate(periods):
                self._cites(period.legal_basis, *at, "values", j, "legal_basis")
                if isinstance(period.value, dict) != mapping:
                    self.err(
                        "各期的值须同为单值或同为映射 / every period's value must be a single value "
                        "or every one a mapping",
                        *at,
                        "values",
                        j,
                        "value",
                    )
                    ok = False
                    continue
                items = (
                    period.value.items() if isinstance(period.value, dict) else [("", period.value)]
                )
                if isinstance(period.value, dict):
                    keysets.append(frozenset(period.value))
                for key, v in items:
                    if not _fits(literal_type(v), param.type):
                        self.err(
                            f"参数值的类型应为{_ZH_TYPE[param.type]} / expected "
                            f"{'an' if param.type[0] in 'ai' else 'a'} {param.type} value, "
                            f"got {v!r}",
                            *at,
                            "values",
                            j,
                            "value",
                            *((key,) if key else ()),
                        )
                        ok = False
            if not ok:
                if isinstance(periods[0].value, dict):
                    scope.tables[name] = TableInfo(ANY, frozenset(), dated=True)
                else:
                    scope.names[name] = ANY
                continue
            checked_periods = []
            for j, period in enumerate(periods):
                end = periods[j + 1].from_ - dt.timedelta(days=1) if j + 1 < len(periods) else None
                checked_periods.append(
                    Period(period.from_, end, period.value, tuple(period.legal_basis), period.note)
                )
            self.out.parameters.append(
                CheckedParameter(
                    name, param.title, param.type, param.unit, tuple(checked_periods), mapping
                )
            )
            self.out.sources[name] = "parameter"
            if mapping:
                all_keys = frozenset().union(*keysets)
                dated = len(set(keysets)) > 1
                scope.tables[name] = TableInfo(param.type, all_keys, dated=dated)
                if not dated:
                    self.out.static_keys[name] = sorted(all_keys)
            else:
                scope.names[name] = param.type

    # --- evidence ------------------------------------------------------------------------

    def _key_scope(self, scope: Scope) -> Scope:
        """Evidence keys may read application facts, other evidence, tables and parameters."""
        values = set(self.doc.values)
        names = {n: t for n, t in scope.names.items() if n not in values}
        return Scope(names=names, enums=scope.enums, tables=dict(scope.tables))

    def _evidence(self, scope: Scope) -> None:
        key_scope = self._key_scope(scope)
        plans: dict[str, EvidencePlan] = {}
        for i, ev in enumerate(self.doc.evidence):
            plan = self._evidence_item(i, ev, key_scope)
            if plan is not None:
                plans[ev.id] = plan
        self.out.evidence = self._order(plans)

    def _evidence_item(self, i: int, ev: EvidenceSpec, scope: Scope) -> EvidencePlan | None:
        at = ("evidence", i)
        source_key = "registry" if ev.registry is not None else "adapter"
        reg = None
        if self.sources is not None:
            reg = self.sources.get(ev.source)
            if reg is None:
                self.err(
                    f"登记库目录中没有 {ev.source!r} / registry {ev.source!r} is not in the "
                    f"catalogue{self.sources.suggest(ev.source)} (catalogue {self.sources.path}: "
                    f"{', '.join(self.sources.ids())})",
                    *at,
                    source_key,
                )
                return None
            if ev.mode not in reg.modes:
                self.err(
                    f"登记库 {reg.id} 不允许 {ev.mode} 方式 / registry {reg.id} does not allow mode "
                    f"{ev.mode!r} (allowed: {', '.join(reg.modes)})",
                    *at,
                    "mode",
                )
        ok = True
        # key → expressions per key field
        key: dict[str | None, Expr] = {}
        deps: list[str] = []
        key_fields = list(reg.key) if reg is not None else None
        key_types = reg.field_types if reg is not None else {}
        given: list[str] = []
        if isinstance(ev.key, str):
            parsed = self._key_expr(ev.key, scope, ev, *at, "key")
            if parsed is None:
                return None
            key[None] = parsed
        else:
            for field, text in ev.key.items():
                parsed = self._key_expr(text, scope, ev, *at, "key", field)
                if parsed is None:
                    ok = False
                    continue
                key[field] = parsed
                given.append(field)
        for field, constant in ev.params.items():
            key[field] = Literal(constant, 0)
            given.append(field)
        for node in key.values():
            deps.extend(n.split(".")[0] for n in names_in(node) if "." in n)
        if key_fields is not None:
            unknown = [f for f in given if f not in key_fields]
            for f in unknown:
                close = difflib.get_close_matches(f, key_fields, n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                where = ("params", f) if f in ev.params else ("key", f)
                self.err(
                    f"{f!r} 不是登记库 {ev.source} 的键字段 / {f!r} is not a key field of registry "
                    f"{ev.source}{hint} (key fields: {', '.join(key_fields)})",
                    *at,
                    *where,
                    at_key=True,
                )
                ok = False
            remaining = [f for f in key_fields if f not in given]
            expected_remaining = 1 if None in key else 0
            if len(remaining) != expected_remaining and not unknown:
                self.err(
                    f"登记库 {ev.source} 的键为 {', '.join(key_fields)}，未给出 / registry "
                    f"{ev.source} is keyed by {', '.join(key_fields)}; not given: "
                    f"{', '.join(remaining) or '—'}"
                    + (" (one key expression can only give one key field)" if None in key else ""),
                    *at,
                    "key",
                )
                ok = False
            elif None in key and remaining:
                key[remaining[0]] = key.pop(None)
            for key_field, node in key.items():
                if key_field is None or key_field not in key_types:
                    continue
                field = key_field
                got = self.out.types.get(node) or literal_type(getattr(node, "value", ""))
                if not _fits(got, key_types[field]) and not (
                    key_types[field] == "string" and got in ("string",)
                ):
                    self.err(
                        f"键字段 {field} 为{_ZH_TYPE.get(key_types[field])}，表达式为"
                        f"{_ZH_TYPE.get(got, got)} / key field {field} is a {key_types[field]}, "
                        f"the expression gives a {got}",
                        *at,
                        "params" if field in ev.params else "key",
                        *(() if isinstance(ev.key, str) and field not in ev.params else (field,)),
                    )
                    ok = False
        # fields, claims
        claims: dict[str, Claim | None] = {}
        if ev.claims and ev.mode != "verify":
            self.err("只有 verify 方式才能写 claims / 'claims' needs mode: verify", *at, "claims")
            ok = False
        for name in ev.claims:
            if name not in ev.fields:
                self.err(
                    f"claims 中的 {name!r} 未在 fields 中声明 / claim {name!r} is not one of the "
                    f"fields (declare it as {name}: boolean)",
                    *at,
                    "claims",
                    name,
                    at_key=True,
                )
                ok = False
        for fname, ftype in ev.fields.items():
            if ev.mode == "verify":
                if ftype != "boolean":
                    self.err(
                        f"核验结果 {fname} 须为 boolean / a verify answer is a boolean, "
                        f"{fname} is declared {ftype}",
                        *at,
                        "fields",
                        fname,
                    )
                    ok = False
                if fname in ev.claims:
                    claim = self._claim(ev, fname, reg, scope, *at)
                    if claim is None:
                        ok = False
                    else:
                        claims[fname] = claim
                        for _, node in claim.equals:
                            deps.extend(n.split(".")[0] for n in names_in(node) if "." in n)
                elif reg is not None and fname not in reg.answers:
                    close = difflib.get_close_matches(fname, list(reg.answers), n=1)
                    hint = f"; did you mean {close[0]!r}?" if close else ""
                    self.err(
                        f"登记库 {reg.id} 没有名为 {fname!r} 的核验答案 / registry {reg.id} has no "
                        f"named answer {fname!r}{hint} (answers: "
                        f"{', '.join(reg.answers) or 'none'}); write it under 'claims'",
                        *at,
                        "fields",
                        fname,
                        at_key=True,
                    )
                    ok = False
                else:
                    claims[fname] = None
            elif reg is not None:
                have = reg.field_type(fname)
                if have is None:
                    close = difflib.get_close_matches(fname, list(reg.fields), n=1)
                    hint = f"; did you mean {close[0]!r}?" if close else ""
                    self.err(
                        f"登记库 {reg.id} 没有字段 {fname!r} / registry {reg.id} has no field "
                        f"{fname!r}{hint} (fields: {', '.join(reg.fields)})",
                        *at,
                        "fields",
                        fname,
                        at_key=True,
                    )
                    ok = False
                elif have != ftype:
                    self.err(
                        f"字段 {fname} 在登记库 {reg.id} 中为 {have}，此处写作 {ftype} / field "
                        f"{fname} is a {have} in registry {reg.id}, declared here as {ftype}",
                        *at,
                        "fields",
                        fname,
                    )
                    ok = False
        if not ok:
            return None
        if reg is not None:
            self._note_corroborating(ev, reg, claims)
        return EvidencePlan(
            id=ev.id,
            source=ev.source,
            mode=ev.mode,
            key=key,
            fields=dict(ev.fields),
            claims=claims,
            depends_on=tuple(dict.fromkeys(d for d in deps if d != ev.id)),
            key_text=ev.key
            if isinstance(ev.key, str)
            else ", ".join(f"{k}={v}" for k, v in ev.key.items()),
        )

    def _note_corroborating(
        self, ev: EvidenceSpec, reg: RegistrySpec, claims: Mapping[str, Claim | None]
    ) -> None:
        """Remember which evidence names read a field whose fact another registry holds."""
        assert self.sources is not None
        for fname in ev.fields:
            read = [fname]
            if ev.mode == "verify":
                claim = claims.get(fname)
                if claim is None and fname in reg.answers:
                    claim = parse_claim(reg.answers[fname], fields=None)
                read = [f for f, _ in claim.equals] if claim is not None else []
            for field in read:
                found = self.sources.corroborating(reg.id, field)
                if found is not None:
                    fact, source = found
                    entry = (reg, field, fact, source)
                    self.corroborating.setdefault(f"{ev.id}.{fname}", []).append(entry)

    def _key_expr(self, text: str, scope: Scope, ev: EvidenceSpec, *path: str | int) -> Expr | None:
        if self.doc.schema_version == 1:
            try:
                node = parse(text)
            except ExpressionError as exc:
                self.err(exc.message, *path, offset=exc.offset)
                return None
            if not isinstance(node, Name) or len(node.parts) != 2:
                self.err(
                    "证据的键须为一个名称，如 applicant.id_number / an evidence key must be one "
                    "name such as applicant.id_number",
                    *path,
                )
                return None
            if node.dotted not in scope.names:
                self.err(
                    f"未知的名称 / unknown name {node.dotted!r}{scope.suggest(node.dotted)}",
                    *path,
                    offset=0,
                )
                return None
            self.out.types[node] = scope.names[node.dotted]
            if not self._reads_ages_rightly(node, *path):
                return None
        else:
            result = self.expr(text, scope, *path, want=None)
            if result is None:
                return None
            node = result[0]
        if any(n.split(".")[0] == ev.id for n in names_in(node)):
            self.err("证据不能以自身为键 / evidence cannot be keyed by itself", *path)
            return None
        return node

    def _claim(
        self, ev: EvidenceSpec, fname: str, reg: Any, scope: Scope, *at: str | int
    ) -> Claim | None:
        text = ev.claims[fname]
        fields = reg.field_types if reg is not None else None
        try:
            claim = parse_claim(text, fields=fields)
        except ExpressionError as exc:
            self.err(exc.message, *at, "claims", fname, offset=exc.offset)
            return None
        for field, node in claim.equals:
            snippet = unparse(node)
            try:
                got = check(node, scope, text=text, types=self.out.types)
            except ExpressionError as exc:
                self.err(exc.message, *at, "claims", fname, offset=exc.offset)
                return None
            if not self._reads_ages_rightly(node, *at, "claims", fname):
                return None
            want = fields.get(field) if fields else None
            if want is not None and not (_fits(got, want) or _fits(want, got)):
                self.err(
                    f"{field} 为{_ZH_TYPE.get(want)}，{snippet} 为{_ZH_TYPE.get(got, got)} / "
                    f"{field} is a {want} but {snippet} is a {got}",
                    *at,
                    "claims",
                    fname,
                    offset=node.offset,
                )
                return None
        return claim

    def _order(self, plans: dict[str, EvidencePlan]) -> list[EvidencePlan]:
        """Evidence in an order where each item comes after those its key reads; levels set."""
        ids = [e.id for e in self.doc.evidence]
        order: list[EvidencePlan] = []
        state: dict[str, int] = {}
        level: dict[str, int] = {}

        def visit(eid: str, chain: tuple[str, ...]) -> None:
            if state.get(eid) == 2 or eid not in plans:
                return
            if state.get(eid) == 1:
                self.err(
                    f"证据的键形成循环 / evidence keys form a cycle: {' -> '.join((*chain, eid))}",
                    "evidence",
                    ids.index(eid),
                    "key",
                )
                return
            state[eid] = 1
            plan = plans[eid]
            for dep in plan.depends_on:
                if dep in ids:
                    visit(dep, (*chain, eid))
            state[eid] = 2
            deps = [level[d] for d in plan.depends_on if d in level]
            level[eid] = max(deps) + 1 if deps else 0
            order.append(
                EvidencePlan(
                    plan.id,
                    plan.source,
                    plan.mode,
                    plan.key,
                    plan.fields,
                    plan.claims,
                    plan.depends_on,
                    level[eid],
                    plan.key_text,
                )
            )

        for eid in ids:
            visit(eid, ())
        return order

    # --- values --------------------------------------------------------------------------

    def _value_deps(self, name: str) -> list[str]:
        value = self.doc.values[name]
        texts: list[str] = []
        if value.expr is not None:
            texts.append(value.expr)
        elif value.table is not None:
            texts.extend(r.when for r in value.table.rules if r.when)
            cells = [r.then for r in value.table.rules]
            if value.table.default is not None:
                cells.append(value.table.default)
            for cell in cells:
                if isinstance(cell, CellExpr):
                    texts.append(cell.expr)
                elif isinstance(cell, str) and value.table.type != "string":
                    texts.append(cell)
        deps: list[str] = []
        for text in texts:
            try:
                node = parse(text)
            except ExpressionError:
                continue  # reported when the value is checked
            deps.extend(n for n in names_in(node) if n in self.doc.values)
            deps.extend(t for t in tables_in(node) if t in self.doc.values)
        return list(dict.fromkeys(deps))

    def _values(self, scope: Scope) -> None:
        names = list(self.doc.values)
        deps = {n: self._value_deps(n) for n in names}
        order: list[str] = []
        state: dict[str, int] = {}
        cyclic: set[str] = set()

        def visit(n: str, chain: tuple[str, ...]) -> None:
            if state.get(n) == 2:
                return
            if state.get(n) == 1:
                loop = (*chain[chain.index(n) :], n)
                cyclic.update(loop)
                self.err(
                    f"中间值相互引用形成循环 / values refer to each other in a cycle: "
                    f"{' -> '.join(loop)}",
                    "values",
                    n,
                    at_key=True,
                )
                return
            state[n] = 1
            for d in deps[n]:
                visit(d, (*chain, n))
            state[n] = 2
            order.append(n)

        for n in names:
            visit(n, ())
        for n in cyclic:
            scope.names[n] = ANY
        for n in order:
            checked = None if n in cyclic else self._value(n, scope)
            if checked is not None:
                self.out.values.append(checked)
                scope.names[n] = checked.type
                self.out.sources[n] = "value"
            else:  # its error is reported; its uses are not reported again
                scope.names[n] = ANY
        for n in names:
            scope.names.setdefault(n, ANY)

    def _value(self, name: str, scope: Scope) -> CheckedValue | None:
        value = self.doc.values[name]
        at = ("values", name)
        self._cites(value.legal_basis, *at, "legal_basis")
        if value.expr is not None:
            result = self.expr(value.expr, scope, *at, "expr", want=None)
            if result is None:
                return None
            node, vtype = result
            if vtype == "table":
                self.err("中间值不能是表 / a value cannot be a table", *at, "expr")
                return None
            inputs = tuple(dict.fromkeys([*names_in(node), *tables_in(node)]))
            return CheckedValue(
                name,
                value.title,
                vtype,
                value.unit,
                tuple(value.legal_basis),
                node,
                None,
                unparse(node),
                inputs,
            )
        assert value.table is not None
        table = self._value_table(name, value.table, scope, *at, "table")
        if table is None:
            return None
        read: list[str] = []
        for row in table.rows:
            for cell in (row.when, *row.cells.values()):
                if cell is not None:
                    read.extend(names_in(cell))
                    read.extend(tables_in(cell))
        result_type = "integer" if table.hit_policy == "COLLECT COUNT" else value.table.type
        return CheckedValue(
            name,
            value.title,
            result_type,
            value.unit,
            tuple(value.legal_basis),
            None,
            table,
            f"decision table ({table.hit_policy})",
            tuple(dict.fromkeys(read)),
        )

    def _value_table(
        self, name: str, spec: ValueTable, scope: Scope, *at: str | int
    ) -> CheckedTable | None:
        if spec.hit_policy not in _SINGLE_RESULT:
            self.err(
                f"中间值的决策表须只给出一个结果，{spec.hit_policy} 给出列表 / a value's table must "
                f"give one result; {spec.hit_policy} gives a list (use it in outputs)",
                *at,
                "hit_policy",
            )
            return None
        if spec.hit_policy == "COLLECT COUNT" and spec.type != "integer":
            self.err(
                "COLLECT COUNT 的结果是整数 / COLLECT COUNT gives an integer: declare type: integer",
                *at,
                "type",
            )
            return None
        column = Column(name, spec.type, None, None, tuple(spec.values) if spec.values else None)
        rows = [({name: rule.then}, rule.when) for rule in spec.rules]
        default = {name: spec.default} if spec.default is not None else None
        return self._table(
            table_id=name,
            title=self.doc.values[name].title,
            hit_policy=spec.hit_policy,
            columns=(column,),
            rules=rows,
            default=default,
            scope=scope,
            at=at,
            single_cell=True,
        )

    # --- decision tables -----------------------------------------------------------------

    def _outputs(self, out: DecisionTable, scope: Scope) -> CheckedTable | None:
        self._cites(out.legal_basis, "outputs", "legal_basis")
        if not out.legal_basis:
            self.err(
                "输出决策表未引用法律依据 / the outputs table cites no legal basis",
                "outputs",
                "legal_basis",
            )
        columns = []
        for cname, col in out.columns.items():
            if isinstance(col, ColumnSpec):
                columns.append(
                    Column(
                        cname,
                        col.type,
                        col.title,
                        col.unit,
                        tuple(col.values) if col.values else None,
                    )
                )
            else:
                columns.append(Column(cname, col))
        return self._table(
            table_id=out.id,
            title=out.title,
            hit_policy=out.hit_policy,
            columns=tuple(columns),
            rules=[(dict(r.then), r.when) for r in out.rules],
            default=dict(out.default) if out.default is not None else None,
            scope=scope,
            at=("outputs",),
            single_cell=False,
        )

    def _table(
        self,
        *,
        table_id: str,
        title: Any,
        hit_policy: str,
        columns: tuple[Column, ...],
        rules: list[tuple[dict[str, Any], str | None]],
        default: dict[str, Any] | None,
        scope: Scope,
        at: tuple[str | int, ...],
        single_cell: bool,
    ) -> CheckedTable | None:
        ok = True
        by_name = {c.name: c for c in columns}
        priority_policy = hit_policy in ("PRIORITY", "OUTPUT ORDER")
        if priority_policy and not any(c.priority for c in columns):
            self.err(
                f"{hit_policy} 需要至少一个输出列按优先级列出 values / {hit_policy} needs the "
                "output values of at least one column in priority order ('values')",
                *at,
                *(("columns",) if not single_cell else ("values",)),
            )
            ok = False
        for c in columns:
            for v in c.priority or ():
                if not _fits(literal_type(v), c.type):
                    self.err(
                        f"values 中的 {v!r} 不是{_ZH_TYPE.get(c.type)} / {v!r} in values is not a "
                        f"{c.type}",
                        *at,
                        *(("columns", c.name) if not single_cell else ()),
                        "values",
                    )
                    ok = False
        if hit_policy.startswith("COLLECT ") and len(columns) != 1:
            self.err(
                f"{hit_policy} 只能用于单个输出列（DMN） / {hit_policy} aggregates one output column "
                f"only (DMN); this table has {len(columns)}",
                *at,
                "hit_policy",
            )
            ok = False
        if hit_policy == "COLLECT SUM" and columns[0].type not in NUMERIC:
            self.err(
                "COLLECT SUM 需要数字列 / COLLECT SUM needs a numeric column", *at, "hit_policy"
            )
            ok = False
        if hit_policy in ("COLLECT MIN", "COLLECT MAX") and columns[0].type not in (
            *NUMERIC,
            "date",
        ):
            self.err(
                f"{hit_policy} 需要数字或日期列 / {hit_policy} needs a number or date column",
                *at,
                "hit_policy",
            )
            ok = False
        if default is not None and hit_policy not in _SINGLE_RESULT - {"COLLECT COUNT"}:
            self.err(
                f"{hit_policy} 不使用 default / {hit_policy} takes no default (no match gives an "
                "empty list or a count of 0)",
                *at,
                "default",
            )
            ok = False
        rows: list[CheckedRow] = []
        for r, (then, when) in enumerate(rules):
            rat = (*at, "rules", r)
            when_node: Expr | None = None
            if when is not None:
                result = self.expr(when, scope, *rat, "when", want="boolean")
                if result is None:
                    ok = False
                else:
                    when_node = result[0]
            cells = self._cells(then, by_name, scope, rat, single_cell, priority_policy)
            if cells is None:
                ok = False
                continue
            literals = {c: n for c, n in cells.items() if isinstance(n, Literal)}
            constant: dict[str, object] | None = (
                {c: n.value for c, n in literals.items()} if len(literals) == len(cells) else None
            )
            constant_json = (
                {c: typed_json(v, by_name[c].type) for c, v in constant.items()}
                if constant is not None
                else None
            )
            rows.append(
                CheckedRow(
                    r,
                    when_node,
                    unparse(when_node) if when_node else "true",
                    cells,
                    constant,
                    constant_json,
                )
            )
        default_cells = None
        if default is not None:
            default_cells = self._cells(
                default,
                by_name,
                scope,
                (*at, "default"),
                single_cell,
                priority_policy,
                default=True,
            )
            ok = ok and default_cells is not None
        if not ok:
            return None
        return CheckedTable(table_id, title, hit_policy, columns, tuple(rows), default_cells)

    def _cells(
        self,
        then: dict[str, Any],
        columns: Mapping[str, Column],
        scope: Scope,
        at: tuple[str | int, ...],
        single_cell: bool,
        priority_policy: bool,
        *,
        default: bool = False,
    ) -> dict[str, Expr] | None:
        ok = True
        where = at if default and not single_cell else (*at, "then")
        if not single_cell:
            missing = [c for c in columns if c not in then]
            extra = [c for c in then if c not in columns]
            if missing:
                self.err(
                    f"未给出输出列 {missing} 的值 / sets no value for {sorted(missing)}", *where
                )
                ok = False
            if extra:
                self.err(
                    f"未知的输出列 {sorted(extra)} / sets unknown columns {sorted(extra)}; "
                    f"columns are {sorted(columns)}",
                    *where,
                )
                ok = False
        cells: dict[str, Expr] = {}
        for cname, raw in then.items():
            col = columns.get(cname)
            if col is None:
                continue
            cat = where if single_cell else (*where, cname)
            node = self._cell(raw, col, scope, cat, priority_policy)
            if node is None:
                ok = False
            else:
                cells[cname] = node
        return cells if ok else None

    def _cell(
        self,
        raw: Any,
        col: Column,
        scope: Scope,
        at: tuple[str | int, ...],
        priority_policy: bool,
    ) -> Expr | None:
        if isinstance(raw, CellExpr) or (isinstance(raw, str) and col.type != "string"):
            if self.doc.schema_version == 1:
                self.err(
                    f"列 {col.name} 为{_ZH_TYPE.get(col.type)}，表达式单元格 {raw!r} 需要 "
                    f"schema_version: 2 / an expression cell needs schema_version: 2 (column "
                    f"{col.name} is {col.type}, got string {raw!r})",
                    *at,
                )
                return None
            text = raw.expr if isinstance(raw, CellExpr) else raw
            if priority_policy and col.priority:
                self.err(
                    "按优先级的输出须为 values 中的常量 / a PRIORITY or OUTPUT ORDER cell must be "
                    "one of the column's values, not an expression",
                    *at,
                )
                return None
            path = (*at, "expr") if isinstance(raw, CellExpr) else at
            result = self.expr(text, scope, *path, want=col.type)
            return None if result is None else result[0]
        got = literal_type(raw)
        if not _fits(got, col.type):
            self.err(
                f"列 {col.name} 为{_ZH_TYPE.get(col.type)}，得到{_ZH_TYPE.get(got)} {raw!r} / "
                f"column {col.name} is {col.type}, got {got} {raw!r}",
                *at,
            )
            return None
        if priority_policy and col.priority is not None and raw not in col.priority:
            self.err(
                f"{raw!r} 不在列 {col.name} 的 values 中 / {raw!r} is not one of the column's "
                f"values {list(col.priority)}",
                *at,
            )
            return None
        return Literal(raw, 0)

    # --- criteria ------------------------------------------------------------------------

    def _facts_of(self, names: Iterable[str]) -> tuple[str, ...]:
        """The application and registry facts behind ``names``, through values."""
        by_name = {v.name: v for v in self.out.values}
        out: list[str] = []
        seen: set[str] = set()

        def walk(n: str) -> None:
            if n in seen:
                return
            seen.add(n)
            if n in by_name:
                for i in by_name[n].inputs:
                    walk(i)
            elif "." in n:
                out.append(n)

        for n in names:
            walk(n)
        return tuple(out)

    def _criteria(self, scope: Scope) -> None:
        tables = self.out.tables
        for i, crit in enumerate(self.doc.criteria):
            at = ("criteria", i)
            if not crit.legal_basis:
                self.err(
                    f"条件 {crit.id} 未引用法律依据 / criterion {crit.id} cites no legal basis",
                    *at,
                    "legal_basis",
                )
            self._cites(crit.legal_basis, *at, "legal_basis")
            result = self.expr(crit.condition, scope, *at, "condition", want="boolean")
            zh = self._template(crit.reason.zh, scope, *at, "reason", "zh")
            en = self._template(crit.reason.en, scope, *at, "reason", "en")
            if result is None or zh is None or en is None:
                continue
            node = result[0]
            constant = truth(node, {}, tables)
            if constant is True:
                self.err(
                    f"条件 {crit.id} 恒为真，什么也没有检查 / criterion {crit.id} is always true: "
                    "it checks nothing",
                    *at,
                    "condition",
                    offset=0,
                )
                continue
            if constant is False:
                self.err(
                    f"条件 {crit.id} 永远无法满足 / criterion {crit.id} can never be met "
                    "(unreachable approval)",
                    *at,
                    "condition",
                    offset=0,
                )
                continue
            terms = tuple(dict.fromkeys(t for t in terms_in(node) if not isinstance(t, Literal)))
            names = tuple(dict.fromkeys(names_in(node)))
            facts = self._facts_of([*names, *tables_in(node)])
            if crit.on_fail == "reject":
                self._one_source(crit.id, facts, *at, "condition")
            self.out.criteria.append(
                CheckedCriterion(
                    i,
                    crit.id,
                    node,
                    names,
                    terms,
                    zh,
                    en,
                    unparse(node),
                    tuple(unparse(t) for t in terms),
                    facts,
                    tuple(self.out.sources.get(unparse(t), "computed") for t in terms),
                )
            )

    def _one_source(self, crit_id: str, facts: Iterable[str], *path: str | int) -> None:
        """一数一源: a rejection rests on no field that may only corroborate."""
        for name in facts:
            for reg, field, fact, source in self.corroborating.get(name, ()):
                self.err(
                    f"{reg.name.zh}的 {field} 只能佐证，不能据以否决（条件 {crit_id} 读取 {name}）；"
                    f"“{fact}”的权威来源是{source.name.zh} / {reg.id}.{field} may only "
                    f"corroborate, not reject (criterion {crit_id} reads {name}): the "
                    f"authoritative source of {fact} is {source.id}",
                    *path,
                    offset=0,
                )

    def _template(self, text: str, scope: Scope, *path: str | int) -> Template | None:
        parts: list[str | tuple[Expr, str | None]] = []
        pos = 0
        ok = True
        for m in _PLACEHOLDER.finditer(text):
            parts.append(text[pos : m.start()])
            inner = m.group(1)
            fmt: str | None = None
            if ":" in inner:
                inner, _, fmt = inner.rpartition(":")
                if fmt.strip() not in _FORMATS:
                    self.err(
                        f"未知的格式 {fmt!r} / unknown format {fmt!r}; formats: "
                        f"{', '.join(sorted(_FORMATS))}",
                        *path,
                        offset=m.start(1) + len(inner) + 1,
                    )
                    ok = False
                    pos = m.end()
                    continue
                fmt = fmt.strip()
            try:
                node = parse(inner)
                check(node, scope, text=inner)
                wrong = age_reads_elsewhere(node, self.age_fields)
                if isinstance(node, Name) and wrong:
                    parts.append(AGE_MASK)  # the record keeps the age, not this date
                elif wrong:
                    self.err(
                        f"登记库目录规定 {wrong[0].dotted} 只按周岁记录（record: age），说明中只能"
                        f"写 {{{wrong[0].dotted}}}（显示为 {AGE_MASK}）或 age_on({wrong[0].dotted}, "
                        f"application.date) / the catalogue records {wrong[0].dotted} as an age: a "
                        f"reason may show it only as {{{wrong[0].dotted}}} (printed {AGE_MASK}) or "
                        f"as age_on({wrong[0].dotted}, application.date)",
                        *path,
                        offset=m.start(1) + wrong[0].offset,
                    )
                    ok = False
                else:
                    parts.append((node, fmt))
            except ExpressionError as exc:
                self.err(
                    f"占位符 {{{inner}}} 中 / in placeholder {{{inner}}}: {exc.message}",
                    *path,
                    offset=m.start(1) + exc.offset,
                )
                ok = False
            pos = m.end()
        parts.append(text[pos:])
        return Template(text, tuple(p for p in parts if p != "")) if ok else None

    # --- tests ---------------------------------------------------------------------------

    def _tests(self) -> None:
        doc = self.doc
        from engine.ruleset import form_model

        form = form_model(doc.inputs, name=f"TestForm_{doc.service}")
        evidence = {e.id: e for e in doc.evidence}
        criteria = {c.id for c in doc.criteria}
        columns = set(doc.outputs.columns) if doc.outputs is not None else set()
        values = set(doc.values)
        for t, ex in enumerate(doc.tests):
            at = ("tests", t)
            self._test_date(ex.application.get("date"), *at)
            raw_form = ex.application.get("form") or {}
            try:
                form.model_validate(raw_form)
            except pydantic.ValidationError as exc:
                for e in exc.errors():
                    form_field = ".".join(str(p) for p in e["loc"]) or "form"
                    got = f"，得到 {e['input']!r}" if e["type"] != "missing" else ""
                    self.err(
                        f"测试的申请表字段 {form_field} 不符合输入要求{got} / the test's form "
                        f"field {form_field} is invalid: {e['msg']}"
                        + (f"; got {e['input']!r}" if e["type"] != "missing" else ""),
                        *at,
                        "application",
                        "form",
                        *[p for p in e["loc"] if isinstance(p, str)][:1],
                    )
            extra_keys = set(ex.application) - {"date", "applicant", "form"}
            for k in sorted(extra_keys):
                self.err(
                    f"未知的键 / unexpected key {k!r} (application takes date, applicant, form)",
                    *at,
                    "application",
                    k,
                )
            for eid, vals in ex.evidence.items():
                if eid not in evidence:
                    self.err(
                        f"测试引用了未知的证据 {eid!r} / test evidence names unknown evidence id "
                        f"{eid!r}; known: {sorted(evidence)}",
                        *at,
                        "evidence",
                        eid,
                        at_key=True,
                    )
                    continue
                for field, given in (vals or {}).items():
                    declared = evidence[eid].fields.get(field)
                    if declared is not None and not _test_value_fits(given, declared):
                        self.err(
                            f"测试证据 {eid}.{field} 应为{_ZH_TYPE[declared]}，得到 {given!r} / "
                            f"test evidence {eid}.{field} must be a {declared}"
                            + (" (YYYY-MM-DD)" if declared == "date" else "")
                            + f", got {given!r}",
                            *at,
                            "evidence",
                            eid,
                            field,
                        )
                    if field not in evidence[eid].fields:
                        close = difflib.get_close_matches(field, list(evidence[eid].fields), n=1)
                        hint = f"; did you mean {close[0]!r}?" if close else ""
                        self.err(
                            f"证据 {eid} 没有字段 {field!r} / evidence {eid} has no field "
                            f"{field!r}{hint}",
                            *at,
                            "evidence",
                            eid,
                            field,
                            at_key=True,
                        )
            for listname in ("failed", "unknown"):
                bad = [c for c in getattr(ex.expect, listname) if c not in criteria]
                if bad:
                    self.err(
                        f"expect.{listname} 中有未知的条件 / names unknown criteria {bad}; "
                        f"criteria: {sorted(criteria)}",
                        *at,
                        "expect",
                        listname,
                    )
            for key in ex.expect.outputs or {}:
                if key not in columns:
                    self.err(
                        f"expect.outputs 中的 {key!r} 不是输出列 / {key!r} is not an output column"
                        f" (columns: {', '.join(sorted(columns)) or 'none'})",
                        *at,
                        "expect",
                        "outputs",
                        key,
                        at_key=True,
                    )
            for key in ex.expect.values or {}:
                if key not in values:
                    self.err(
                        f"expect.values 中的 {key!r} 不是中间值 / {key!r} is not a value"
                        f" (values: {', '.join(sorted(values)) or 'none'})",
                        *at,
                        "expect",
                        "values",
                        key,
                        at_key=True,
                    )

    def _test_date(self, raw: object, *at: str | int) -> None:
        doc = self.doc
        day: dt.date | None = None
        if isinstance(raw, dt.date) and not isinstance(raw, dt.datetime):
            day = raw
        elif isinstance(raw, str):
            try:
                day = dt.date.fromisoformat(raw)
            except ValueError:
                day = None
        if day is None:
            self.err(
                f"测试需要申请日期 application.date（YYYY-MM-DD），得到 {raw!r} / a test needs "
                f"application.date as YYYY-MM-DD, got {raw!r}",
                *at,
                "application",
                *(("date",) if raw is not None else ()),
            )
            return
        if day < doc.effective_from or (doc.effective_to is not None and day > doc.effective_to):
            period = f"{doc.effective_from}…{doc.effective_to or ''}"
            self.err(
                f"测试日期 {day} 不在本版本的生效期间 {period} 内 / the test is dated {day}, "
                f"outside this version's effective period {period}",
                *at,
                "application",
                "date",
            )


def _test_value_fits(v: object, type_name: str) -> bool:
    """Whether a test's evidence value can stand for a registry value of ``type_name``."""
    if v is None:
        return True
    if type_name == "string":
        return isinstance(v, str)
    if isinstance(v, str):
        from engine.registries import convert_text

        try:
            convert_text(v, type_name)
        except ValueError:
            return False
        return True
    return _fits(literal_type(v), type_name)


def checker_errors_sorted(errors: list[Any]) -> list[Any]:
    return sorted(errors, key=lambda e: (e.line or 0, e.column or 0))


Callback = Callable[[], None]
