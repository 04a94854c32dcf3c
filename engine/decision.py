"""Evaluating one application against a ruleset: criterion results, outcome, outputs."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Final, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from engine._compiled import CheckedTable, CheckedValue, json_value, typed_json
from engine._durable import get_engine
from engine._semantics import MISSING, Env, Memo, Tables
from engine.errors import EngineFault
from engine.ruleset import Ruleset
from engine.tables import TableResult, decide_table

__all__ = [
    "ComparedValue",
    "CriterionResult",
    "CriterionStatus",
    "Evaluation",
    "Outcome",
    "ParameterUse",
    "Reason",
    "ReasonCode",
    "ValueResult",
    "application_env",
    "evaluate",
    "json_value",
    "prepare_env",
    "unvalidated",
    "warm_up",
]


class Outcome(StrEnum):
    APPROVED = "APPROVED"
    REJECTED = "REJECTED"
    REFERRED = "REFERRED"


class CriterionStatus(StrEnum):
    PASS = "PASS"
    FAIL = "FAIL"
    UNKNOWN = "UNKNOWN"


class ReasonCode(StrEnum):
    """The closed set of reasons a decision is not an approval. Stable: clients match on them."""

    CRITERION_NOT_MET = "CRITERION_NOT_MET"
    """A ``reject`` criterion is FALSE on verified facts."""
    CRITERION_NEEDS_REVIEW = "CRITERION_NEEDS_REVIEW"
    """A ``refer`` criterion is FALSE (e.g. declared and registry values differ)."""
    FACT_UNKNOWN = "FACT_UNKNOWN"
    """A criterion could not be decided: a fact it needs is missing or unverifiable."""
    EVIDENCE_NOT_FOUND = "EVIDENCE_NOT_FOUND"
    """A registry has no record for the key (where that is not itself an answer)."""
    EVIDENCE_UNAVAILABLE = "EVIDENCE_UNAVAILABLE"
    """A registry could not be asked: down, timed out, over quota."""
    OUTPUT_NO_MATCH = "OUTPUT_NO_MATCH"
    """No rule of a single-hit decision table matches (and it has no default)."""
    OUTPUT_AMBIGUOUS = "OUTPUT_AMBIGUOUS"
    """A UNIQUE table has several matching rules, or an ANY table's give different outputs."""
    OUTPUT_UNKNOWN = "OUTPUT_UNKNOWN"
    """An output (or a value it needs) cannot be computed: a fact it reads is missing."""
    ENGINE_FAULT = "ENGINE_FAULT"


class Reason(BaseModel):
    model_config = ConfigDict(frozen=True)

    code: ReasonCode
    criterion: str | None = None
    evidence: str | None = None
    source: str | None = None
    """The registry an evidence reason is about."""
    outcome: str | None = None
    """The adapter outcome behind an evidence reason (``TIMEOUT``, ``QUOTA_EXHAUSTED`` …)."""
    message_zh: str
    message_en: str


JsonScalar = str | int | float | bool | None
"""A value in JSON. Exact decimals are written as strings (``"1234.50"``); ``float`` appears
only when reading a record written before decimals existed."""
JsonValue = JsonScalar | list[JsonScalar]


@dataclass(slots=True)
class ComparedValue:
    """One value a criterion compared: the term as written and what it evaluated to.

    A plain dataclass (pydantic validates and serialises it inside the record): there are
    dozens per decision, and a model instance costs ten times as much to build. Not frozen:
    a frozen dataclass's constructor costs twice as much, and nothing changes it after.
    """

    expression: str
    value: JsonScalar
    missing: bool = False
    source: str | None = None
    """Where the value comes from: ``declared`` (申请人申报), ``registry:<id>``, ``value``,
    ``parameter``, ``application``, or ``computed`` for an expression."""


class CriterionResult(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: str
    title_zh: str
    title_en: str
    status: CriterionStatus
    on_fail: Literal["reject", "refer"]
    legal_basis: list[str]
    condition: str
    values: list[ComparedValue]
    missing_facts: list[str]
    reason_zh: str | None = None
    reason_en: str | None = None


class ValueResult(BaseModel):
    """A named intermediate value as computed for one decision, with the inputs it read."""

    model_config = ConfigDict(frozen=True)

    name: str
    title_zh: str
    title_en: str
    expression: str
    value: JsonScalar
    missing: bool
    unit: str | None = None
    legal_basis: list[str] = Field(default_factory=list)
    inputs: list[ComparedValue] = Field(default_factory=list)
    rules: list[int] | None = None
    """For a value computed by a decision table: the rules (numbered from 1) that matched."""


class ParameterUse(BaseModel):
    """A dated parameter: the value in force on the application date and its period."""

    model_config = ConfigDict(frozen=True)

    name: str
    title_zh: str
    title_en: str
    value: JsonScalar | dict[str, JsonScalar]
    unit: str | None = None
    effective_from: dt.date
    effective_to: dt.date | None
    legal_basis: list[str]
    note: str | None = None


class Evaluation(BaseModel):
    """What the engine concluded; the explanation record wraps it with provenance."""

    model_config = ConfigDict(frozen=True)

    outcome: Outcome
    criteria: list[CriterionResult]
    outputs: dict[str, JsonValue] | None
    reasons: list[Reason]
    evaluator: Literal["durable_rules", "reference"]
    values: list[ValueResult] = Field(default_factory=list)
    parameters: list[ParameterUse] = Field(default_factory=list)
    output_rules: list[int] = Field(default_factory=list)
    """The rules of the outputs table (numbered from 1) that matched."""

    @property
    def failed(self) -> list[str]:
        return [c.id for c in self.criteria if c.status is CriterionStatus.FAIL]

    @property
    def unknown(self) -> list[str]:
        return [c.id for c in self.criteria if c.status is CriterionStatus.UNKNOWN]


def application_env(
    *,
    application_date: dt.date,
    id_number: str,
    name: str,
    form: Mapping[str, object],
    evidence: Mapping[str, Mapping[str, object] | None],
) -> dict[str, object]:
    """The flat name → value map conditions read. Missing evidence simply has no entries."""
    env: dict[str, object] = {
        "application.date": application_date,
        "applicant.id_number": id_number,
        "applicant.name": name,
    }
    for k, v in form.items():
        if v is not None:
            env[f"form.{k}"] = v
    for eid, values in evidence.items():
        for k, v in (values or {}).items():
            if v is not None:
                env[f"{eid}.{k}"] = v
    return env


def _scalar_typed_json(v: object, type_name: str) -> JsonScalar:
    """A single value of a declared type in JSON (``number`` as a decimal string)."""
    out = typed_json(v, type_name)
    assert not isinstance(out, list)
    return out


@dataclass
class Prepared:
    """An application's facts with the parameters in force and the computed values added."""

    env: Mapping[str, object]
    tables: Mapping[str, Mapping[str, object]]
    parameters: list[ParameterUse]
    values: list[ValueResult]
    reasons: list[Reason]


def prepare_env(ruleset: Ruleset, env: Mapping[str, object]) -> Prepared:
    """Add the parameters in force on the application date and every named value."""
    if not ruleset.parameters and not ruleset.values:
        return Prepared(env, ruleset.tables, [], [], [])
    out: dict[str, object] = dict(env)
    tables: dict[str, Mapping[str, object]] = dict(ruleset.tables)
    day = env.get("application.date")
    uses: list[ParameterUse] = []
    for param in ruleset.parameters:
        period = param.in_force(day) if isinstance(day, dt.date) else None
        if period is None:
            continue
        if param.mapping:
            assert isinstance(period.value, dict)
            tables[param.name] = {str(k): v for k, v in period.value.items()}
            shown: JsonScalar | dict[str, JsonScalar] = {
                str(k): _scalar_typed_json(v, param.type) for k, v in period.value.items()
            }
        else:
            out[param.name] = period.value
            shown = _scalar_typed_json(period.value, param.type)
        uses.append(
            unvalidated(
                ParameterUse,
                _PARAMETER_SET,
                {
                    "name": param.name,
                    "title_zh": param.title.zh,
                    "title_en": param.title.en,
                    "value": shown,
                    "unit": param.unit,
                    "effective_from": period.start,
                    "effective_to": period.end,
                    "legal_basis": list(period.legal_basis),
                    "note": period.note,
                },
            )
        )
    results: list[ValueResult] = []
    reasons: list[Reason] = []
    for named in ruleset.values:
        rules: list[int] | None = None
        if named.expr_fn is not None:
            v = named.expr_fn(out, tables, {})
        else:
            assert named.table is not None
            res = _value_table(named, named.table, out, tables)
            rules = [i + 1 for i in res.hits]
            v = MISSING
            if res.status == "ok" and res.outputs is not None:
                v = res.outputs[named.name]
            elif res.status == "ambiguous":
                reasons.append(
                    Reason(
                        code=ReasonCode.OUTPUT_AMBIGUOUS,
                        message_zh=f"{named.title.zh}：决策表{res.detail.replace('rules', '规则').replace('all match', '同时匹配').replace('give different outputs', '结果不同')}，转人工审核。",
                        message_en=f"{named.title.en}: decision table {res.detail}; referred to a person.",
                    )
                )
        if v is not MISSING and v is not None:
            out[named.name] = v
        results.append(
            unvalidated(
                ValueResult,
                _VALUE_SET,
                {
                    "name": named.name,
                    "title_zh": named.title.zh,
                    "title_en": named.title.en,
                    "expression": named.text,
                    "value": _scalar_typed_json(v, named.type),
                    "missing": v is MISSING or v is None,
                    "unit": named.unit,
                    "legal_basis": list(named.legal_basis),
                    "inputs": [
                        ComparedValue(
                            expression=name,
                            value=json_value(out.get(name, MISSING)),  # type: ignore[arg-type]
                            missing=name not in out,
                            source=ruleset.sources.get(name, "computed"),
                        )
                        for name in named.inputs
                        if name not in tables
                    ],
                    "rules": rules,
                },
            )
        )
    return Prepared(out, tables, uses, results, reasons)


def _value_table(named: CheckedValue, table: CheckedTable, env: Env, tables: Tables) -> TableResult:
    memo: Memo = {}  # one per value: the values after it are not in ``env`` yet
    statuses = [r.when_fn(env, tables, memo) for r in table.rows]
    defaults = table.default_fns
    return decide_table(
        table,
        statuses,
        lambda row, col: row.cell_fns[col](env, tables, memo),
        (lambda col: defaults[col](env, tables, memo)) if table.default else None,
    )


def evaluate(
    ruleset: Ruleset,
    env: Mapping[str, object],
    *,
    evaluator: Literal["durable_rules", "reference"] = "durable_rules",
) -> Evaluation:
    """Decide every criterion and the outputs for ``env``.

    With ``durable_rules`` the Rete engine fires the pass/fail and hit/miss rules;
    ``reference`` is the plain-Python Kleene evaluator the engine is tested against. Named
    values and parameters are computed first, the same way for both. An engine fault never
    becomes a rejection: the outcome is REFERRED with ``ENGINE_FAULT``.

    Every term is compiled once per ruleset and computed once per decision (``memo``): the
    fact asserted, the values compared and the reason texts share them. The results are
    built without validation (``unvalidated``): every value put in them is already of its
    type.
    """
    if ruleset.parameters or ruleset.values:
        prepared = prepare_env(ruleset, env)
        env, tables = prepared.env, prepared.tables
        computed, in_force, notes = prepared.values, prepared.parameters, prepared.reasons
    else:  # a version-1 ruleset: nothing to compute before the criteria
        tables = ruleset.tables
        computed, in_force, notes = [], [], []
    memo: Memo = {}
    n = len(ruleset.criteria)
    statuses: list[CriterionStatus] = []
    row_status: list[bool | None] = []
    fault: str | None = None
    out_rows = ruleset.outputs.rows if ruleset.outputs is not None else ()
    n_rows = len(out_rows)
    if evaluator == "durable_rules":
        compiled = ruleset.compiled
        try:
            fact = compiled.fact(env, tables, memo)
            fired = get_engine().fire(ruleset.engine_name, compiled.definition, fact)
            passed: set[int] = set()
            failed: set[int] = set()
            hit: set[int] = set()
            rules = compiled.rules
            for rule in fired:
                ref = rules[rule]
                if ref.kind == "pass":
                    passed.add(ref.index)
                elif ref.kind == "fail":
                    failed.add(ref.index)
                else:
                    hit.add(ref.index)
            both = passed & failed
            if both:
                raise EngineFault(f"criteria both passed and failed: {sorted(both)}")
            statuses = [
                _PASS if i in passed else _FAIL if i in failed else _UNKNOWN for i in range(n)
            ]
            # A rule that did not fire is FALSE if every fact key it reads was asserted (the
            # network decides over present facts two-valuedly); otherwise a fact it reads is
            # missing and the reference evaluator says whether it is FALSE or UNKNOWN.
            row_keys = compiled.row_keys
            asserted = fact.keys()
            row_status = [
                True
                if i in hit
                else False
                if row_keys[i] <= asserted
                else out_rows[i].when_fn(env, tables, memo)
                for i in range(n_rows)
            ]
        except EngineFault as exc:
            fault = str(exc)
            statuses = [_UNKNOWN] * n
            row_status = [None] * n_rows
    else:
        for crit in ruleset.criteria:
            t = crit.truth_fn(env, tables, memo)
            statuses.append(_UNKNOWN if t is None else _PASS if t else _FAIL)
        row_status = [row.when_fn(env, tables, memo) for row in out_rows]

    results: list[CriterionResult] = []
    reasons: list[Reason] = list(notes)
    docs = ruleset.doc.criteria
    unknown = refer = reject = False
    for crit, status in zip(ruleset.criteria, statuses, strict=True):
        doc = docs[crit.index]
        values = []
        for fn, text, source in crit.term_plan:
            v = fn(env, tables, memo)
            values.append(ComparedValue(text, json_value(v), v is MISSING, source))  # type: ignore[arg-type]
        missing = [name for name in crit.facts if env.get(name, MISSING) is MISSING]
        reason_zh = reason_en = None
        if status is not _PASS:
            reason_zh = crit.reason_zh.render(env, tables, lang="zh", memo=memo)
            reason_en = crit.reason_en.render(env, tables, lang="en", memo=memo)
        if status is _FAIL:
            if doc.on_fail == "reject":
                reject = True
                code = ReasonCode.CRITERION_NOT_MET
            else:
                refer = True
                code = ReasonCode.CRITERION_NEEDS_REVIEW
            reasons.append(
                unvalidated(
                    Reason,
                    _CRITERION_REASON_SET,
                    {
                        "code": code,
                        "criterion": doc.id,
                        "evidence": None,
                        "source": None,
                        "outcome": None,
                        "message_zh": reason_zh or "",
                        "message_en": reason_en or "",
                    },
                )
            )
        elif status is _UNKNOWN:
            unknown = True
            if fault is None:
                reasons.append(
                    unvalidated(
                        Reason,
                        _CRITERION_REASON_SET,
                        {
                            "code": ReasonCode.FACT_UNKNOWN,
                            "criterion": doc.id,
                            "evidence": None,
                            "source": None,
                            "outcome": None,
                            "message_zh": f"{doc.title.zh}：缺少或无法核验所需数据（{'、'.join(missing) or '—'}），转人工审核。",
                            "message_en": f"{doc.title.en}: required data missing or unverifiable ({', '.join(missing) or '-'}); referred to a person.",
                        },
                    )
                )
        title = doc.title
        results.append(
            unvalidated(
                CriterionResult,
                _CRITERION_SET,
                {
                    "id": doc.id,
                    "title_zh": title.zh,
                    "title_en": title.en,
                    "status": status,
                    "on_fail": doc.on_fail,
                    "legal_basis": list(doc.legal_basis),
                    "condition": crit.condition_text,
                    "values": values,
                    "missing_facts": missing,
                    "reason_zh": reason_zh,
                    "reason_en": reason_en,
                },
            )
        )
    if fault is not None:
        reasons.append(
            Reason(
                code=ReasonCode.ENGINE_FAULT,
                message_zh="规则引擎内部错误，转人工审核。",
                message_en=f"Rule engine fault; referred to a person. ({fault})",
            )
        )

    outputs: dict[str, JsonValue] | None = None
    output_rules: list[int] = []
    if unknown or refer or fault is not None:
        outcome = Outcome.REFERRED
    elif reject:
        outcome = Outcome.REJECTED
    else:
        outcome = Outcome.APPROVED
        table = ruleset.outputs
        quick = _single_constant_row(table, row_status) if table is not None else None
        if quick is not None:
            output_rules, outputs = quick
        elif table is not None:
            res = decide_table(
                table,
                row_status,
                lambda row, col: row.cell_fns[col](env, tables, memo),
                (lambda col: table.default_fns[col](env, tables, memo)) if table.default else None,
            )
            output_rules = [i + 1 for i in res.hits]
            if res.status == "ok" and res.outputs is not None:
                types = table.column_types
                outputs = {k: typed_json(v, types[k]) for k, v in res.outputs.items()}
            else:
                outcome = Outcome.REFERRED
                reasons.append(_output_reason(table, res))
    return unvalidated(
        Evaluation,
        _EVALUATION_SET,
        {
            "outcome": outcome,
            "criteria": results,
            "outputs": outputs,
            "reasons": reasons,
            "evaluator": evaluator,
            "values": computed,
            "parameters": in_force,
            "output_rules": output_rules,
        },
    )


_PASS, _FAIL, _UNKNOWN = CriterionStatus.PASS, CriterionStatus.FAIL, CriterionStatus.UNKNOWN
_CRITERION_SET: Final = frozenset(CriterionResult.model_fields)
_CRITERION_REASON_SET: Final = frozenset({"code", "criterion", "message_zh", "message_en"})
_EVALUATION_SET: Final = frozenset(Evaluation.model_fields)
_VALUE_SET: Final = frozenset(ValueResult.model_fields)
_PARAMETER_SET: Final = frozenset(ParameterUse.model_fields)
_Model = TypeVar("_Model", bound=BaseModel)
_new = object.__new__
_set = object.__setattr__


def unvalidated(cls: type[_Model], fields_set: frozenset[str], values: dict[str, object]) -> _Model:
    """An instance of ``cls`` holding ``values`` (every field, in order), without validation.

    What ``model_construct`` does, without its per-field alias and default handling: ten
    times cheaper, and results are built dozens of times per decision. ``fields_set`` is
    what validating the same keyword arguments would record. Tests check that these
    instances equal validated ones, field sets included.
    """
    m = _new(cls)
    _set(m, "__dict__", values)
    _set(m, "__pydantic_fields_set__", set(fields_set))
    _set(m, "__pydantic_extra__", None)
    _set(m, "__pydantic_private__", None)
    return m


def warm_up(ruleset: Ruleset) -> None:
    """Create the ruleset in durable_rules now (kept for its decisions).

    Raises ``EngineFault`` when durable_rules refuses it, so that a ruleset it cannot run is
    reported when it is validated or loaded, not on its first application.
    """
    get_engine().check(ruleset.engine_name, ruleset.compiled.definition)


def _single_constant_row(
    table: CheckedTable, statuses: list[bool | None]
) -> tuple[list[int], dict[str, JsonValue]] | None:
    """The common case without the general machinery: a UNIQUE or FIRST table, every rule
    decided, the chosen rule's cells constants. Its rules matched and its outputs, or None."""
    if table.hit_policy not in ("UNIQUE", "FIRST") or None in statuses:
        return None
    matched = [i for i, s in enumerate(statuses) if s]
    if not matched or (table.hit_policy == "UNIQUE" and len(matched) > 1):
        return None
    constant = table.rows[matched[0]].constant_json
    if constant is None:
        return None
    return [i + 1 for i in matched], dict(constant)


def _output_reason(table: CheckedTable, res: TableResult) -> Reason:
    title = table.title
    rules = "、".join(str(i + 1) for i in res.hits)
    if res.status == "no_match":
        return Reason(
            code=ReasonCode.OUTPUT_NO_MATCH,
            message_zh=f"{title.zh}：决策表无匹配行，转人工审核。",
            message_en=f"{title.en}: no row of the decision table matches; referred to a person.",
        )
    if res.status == "ambiguous":
        return Reason(
            code=ReasonCode.OUTPUT_AMBIGUOUS,
            message_zh=f"{title.zh}：决策表第{rules}条规则同时匹配（{table.hit_policy}），转人工审核。",
            message_en=f"{title.en}: {res.detail} under hit policy {table.hit_policy}; referred to a person.",
        )
    return Reason(
        code=ReasonCode.OUTPUT_UNKNOWN,
        message_zh=f"{title.zh}：缺少计算所需的数据，无法确定，转人工审核。",
        message_en=f"{title.en}: data needed to compute it is missing; referred to a person.",
    )
