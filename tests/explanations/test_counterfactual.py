"""Counterfactuals: the smallest change for each failed criterion, proven by deciding again."""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Callable, Mapping
from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from api.service import DecisionRequest, DecisionService
from engine import (
    CriterionStatus,
    Evaluation,
    Ruleset,
    RulesetCatalog,
    application_env,
    evaluate,
    parse_ruleset,
)
from engine.model import Example
from engine.recording import date_of_age
from engine.registries import RegistryCatalogue, convert_text, load_catalogue
from explanations.counterfactual import Change, Counterfactual, counterfactuals

REPO = Path(__file__).resolve().parents[2]
SHIPPED_VERSIONS = [
    ("talent-housing-subsidy", "2016"),
    ("talent-housing-subsidy", "2026"),
    ("beijing-points-hukou", "2018"),
    ("maternity-allowance", "2016"),
    ("old-age-allowance", "2024"),
]


@cache
def registries() -> RegistryCatalogue:
    """The shipped registry catalogue."""
    return load_catalogue(REPO / "rulesets" / "registries.yaml")


@cache
def shipped(service: str, version: str) -> Ruleset:
    """One shipped ruleset version, checked against the catalogue."""
    ruleset = RulesetCatalog.load(REPO / "rulesets", sources=registries()).get(service, version)
    assert ruleset is not None
    return ruleset


def example_env(ruleset: Ruleset, example: Example) -> dict[str, object]:
    """The facts of one of a ruleset's named examples, typed as the registries give them."""
    app = example.application
    raw_day = app["date"]
    day = raw_day if isinstance(raw_day, dt.date) else dt.date.fromisoformat(str(raw_day))
    applicant = app.get("applicant") or {}
    assert isinstance(applicant, dict)
    form = ruleset.form_model.model_validate(app.get("form") or {}).model_dump()
    fields = {e.id: e.fields for e in ruleset.doc.evidence}
    evidence: dict[str, Mapping[str, object] | None] = {}
    for eid, record in example.evidence.items():
        if record is None:
            evidence[eid] = None
            continue
        typed: dict[str, object] = {}
        for k, v in record.items():
            kind = fields[eid].get(k, "string")
            typed[k] = convert_text(v, kind) if isinstance(v, str) and kind != "string" else v
        evidence[eid] = typed
    return application_env(
        application_date=day,
        id_number=str(applicant.get("id_number", "")),
        name=str(applicant.get("name", "")),
        form=form,
        evidence=evidence,
    )


def typed(ruleset: Ruleset, fact: str, v: object) -> object:
    """A JSON value of ``fact`` as the engine holds it (dates, exact decimals)."""
    kind = ruleset.names.get(fact)
    if kind == "date" and isinstance(v, str):
        return dt.date.fromisoformat(v)
    if kind == "number" and isinstance(v, str | int):
        return Decimal(str(v))
    return v


def satisfying(ruleset: Ruleset, change: Change) -> object:
    """The new value a change asks for: ``required``, the first allowed value for ``in``, and
    for ``not in``/``!=`` a value outside the forbidden ones."""
    listed = change.required if isinstance(change.required, list) else [change.required]
    values = [typed(ruleset, change.fact, v) for v in listed]
    if change.op == "in":
        return values[0]
    if change.op not in ("not in", "!="):
        return typed(ruleset, change.fact, change.required)
    first = values[0]
    if isinstance(first, bool):
        return not first
    if isinstance(first, int | Decimal):
        return max(values) + 1  # type: ignore[type-var, operator]
    if isinstance(first, dt.date):
        return max(values) + dt.timedelta(days=1)  # type: ignore[type-var, operator]
    return "其他取值"


AGE_TERM = re.compile(r"^age_on\(([a-z_]+\.[a-z_]+), application\.date\)$")


def age_term_fact(ruleset: Ruleset, change: Change) -> str | None:
    """The fact behind a computed ``age_on(<fact>, application.date)`` change, when the record
    keeps that fact only as an age (the one computed change a counterfactual offers then)."""
    m = AGE_TERM.match(change.fact)
    if change.source != "computed" or m is None:
        return None
    return m.group(1) if m.group(1) in ruleset.recording.age_fields else None


def applied(ruleset: Ruleset, env: Mapping[str, object], cf: Counterfactual) -> dict[str, object]:
    """``env`` with every change of ``cf`` made (an age by a birth date of that age)."""
    out = dict(env)
    for change in cf.changes:
        fact = age_term_fact(ruleset, change)
        if fact is not None:
            day = env["application.date"]
            assert isinstance(day, dt.date) and isinstance(change.required, int)
            out[fact] = date_of_age(change.required, day)
        else:
            out[change.fact] = satisfying(ruleset, change)
    return out


def status_of(evaluation: Evaluation, criterion: str) -> CriterionStatus:
    return next(c.status for c in evaluation.criteria if c.id == criterion)


def check_round_trip(ruleset: Ruleset, env: Mapping[str, object], evaluation: Evaluation) -> int:
    """Every failed criterion gets a counterfactual whose changes make it pass; the count."""
    cfs = counterfactuals(ruleset, env, evaluation)
    assert evaluation.failed == [cf.criterion for cf in cfs]
    for cf in cfs:
        assert cf.changes, cf.text_zh
        assert all(c.source != "computed" or age_term_fact(ruleset, c) for c in cf.changes), cf
        after = evaluate(ruleset, applied(ruleset, env, cf))
        assert CriterionStatus.PASS == status_of(after, cf.criterion), cf
    return len(cfs)


IDENTIFIER = re.compile(
    r"[A-Za-z]+_[A-Za-z_]+|[a-z]+\.[a-z]+|registry:[a-z]|\btrue\b|\bfalse\b|=是|=否"
)
"""What a citizen must never read: identifiers, ``registry:`` sources, raw booleans."""


# --- 1. round trip over the shipped rulesets and the demo samples ---------------------------


@pytest.mark.parametrize(("service", "version"), SHIPPED_VERSIONS)
def test_changes_make_every_failed_criterion_of_the_shipped_examples_pass(
    service: str, version: str
) -> None:
    """Applying each counterfactual's changes to a named example makes that criterion pass."""
    ruleset = shipped(service, version)
    checked = 0
    for ex in ruleset.doc.tests:
        env = example_env(ruleset, ex)
        evaluation = evaluate(ruleset, env)
        assert sorted(ex.expect.failed) == sorted(evaluation.failed), ex.name
        checked += check_round_trip(ruleset, env, evaluation)
    assert checked > 0


def test_changes_make_every_failed_criterion_of_the_demo_samples_pass(
    make_service: Callable[[str | None], DecisionService],
    demo_samples: dict[str, Any],
) -> None:
    """The same round trip over the shipped demo applications, decided on the demo registries."""
    service = make_service(None)
    checked: dict[str, int] = {}
    failing: set[str] = set()
    for sample in demo_samples.values():
        decided = service.decide_prepared(
            service.prepare(DecisionRequest.model_validate(sample.body))
        )
        ruleset = decided.prepared.ruleset
        assert sorted(sample.expected["failed"]) == sorted(decided.evaluation.failed), sample.name
        if decided.evaluation.failed:
            failing.add(ruleset.key)
        checked[ruleset.key] = checked.get(ruleset.key, 0) + check_round_trip(
            ruleset, decided.env, decided.evaluation
        )
    assert failing
    assert all(checked[key] > 0 for key in failing), checked


@pytest.mark.parametrize(("service", "version"), SHIPPED_VERSIONS)
def test_texts_of_the_shipped_examples_name_no_identifiers(service: str, version: str) -> None:
    """Texts use titles and registry names, never ``business_registry``, ``a.b`` or ``=是``."""
    ruleset = shipped(service, version)
    for ex in ruleset.doc.tests:
        env = example_env(ruleset, ex)
        for cf in counterfactuals(ruleset, env, evaluate(ruleset, env)):
            assert cf.text_zh.startswith(
                next(c.title.zh for c in ruleset.doc.criteria if c.id == cf.criterion)
            )
            assert [] == IDENTIFIER.findall(cf.text_zh), cf.text_zh
            assert [] == IDENTIFIER.findall(cf.text_en), cf.text_en


# --- 2. round trip over generated applications -----------------------------------------------

SHAPES = """
schema_version: 2
service: counterfactual-shapes
version: "1"
name: {zh: 反事实测试, en: Counterfactual shapes}
authority: {zh: 测试机关, en: Test authority}
effective_from: 2026-01-01
status: draft
legal_basis:
  - {id: basis, title: 测试办法, issuer: 测试机关}
inputs:
  - {name: kind, type: enum, values: [甲, 乙, 丙], title: {zh: 申请类别, en: Category}}
  - {name: income, type: number, title: {zh: 申报月收入, en: Declared monthly income}}
  - {name: flag, type: boolean, title: {zh: 持有证书, en: Holds a certificate}}
evidence:
  - id: si
    registry: social_insurance
    mode: fetch
    key: applicant.id_number
    fields: {months_contributed: integer, status: string, rate: number, avg_monthly_wage: number}
  - id: population
    registry: population
    mode: fetch
    key: applicant.id_number
    fields: {birth_date: date, hukou_since: date}
tables:
  min_months:
    title: {zh: 各类别最低缴费月数, en: Minimum months by category}
    legal_basis: [basis]
    values: {甲: 6, 乙: 12, 丙: 24}
values:
  points:
    title: {zh: 积分, en: Points}
    unit: 分
    legal_basis: [basis]
    table:
      hit_policy: COLLECT SUM
      type: integer
      default: 0
      rules:
        - when: si.months_contributed >= 12
          then: 5
        - when: si.status == "正常"
          then: 3
        - when: form.flag
          then: 2
        - when: si.months_contributed >= 1
          then: floor(si.months_contributed / 12)
criteria:
  - id: T1
    title: {zh: 缴费满12个月, en: Twelve months of contributions}
    legal_basis: [basis]
    condition: si.months_contributed >= 12
    on_fail: reject
    reason: {zh: 缴费不足。, en: Too few months.}
  - id: T2
    title: {zh: 月收入高于3000.50元, en: Income above 3000.50}
    legal_basis: [basis]
    condition: form.income > 3000.50
    on_fail: reject
    reason: {zh: 收入不足。, en: Income too low.}
  - id: T3
    title: {zh: 费率不超过0.35, en: Rate at most 0.35}
    legal_basis: [basis]
    condition: si.rate <= 0.35
    on_fail: reject
    reason: {zh: 费率过高。, en: Rate too high.}
  - id: W1
    title: {zh: 月平均工资不低于5000元, en: Average wage of 5000 or more}
    legal_basis: [basis]
    condition: si.avg_monthly_wage >= 5000
    on_fail: reject
    reason: {zh: 工资不足。, en: Wage too low.}
  - id: D1
    title: {zh: 两年内落户, en: Registered within two years}
    legal_basis: [basis]
    condition: population.hukou_since >= years_before(application.date, 2)
    on_fail: reject
    reason: {zh: 落户过早。, en: Registered too early.}
  - id: D2
    title: {zh: 未满40周岁, en: Under 40}
    legal_basis: [basis]
    condition: age_on(population.birth_date, application.date) < 40
    on_fail: reject
    reason: {zh: 年龄超限。, en: Too old.}
  - id: M1
    title: {zh: 类别为甲或乙, en: Category A or B}
    legal_basis: [basis]
    condition: form.kind in ["甲", "乙"]
    on_fail: reject
    reason: {zh: 类别不符。, en: Wrong category.}
  - id: M2
    title: {zh: 未注销或暂停, en: Not closed or suspended}
    legal_basis: [basis]
    condition: si.status not in ["注销", "暂停"]
    on_fail: reject
    reason: {zh: 状态不符。, en: Wrong status.}
  - id: A1
    title: {zh: 正常缴费半年或持证, en: Six months current or certified}
    legal_basis: [basis]
    condition: (si.months_contributed >= 6 and si.status == "正常") or form.flag
    on_fail: reject
    reason: {zh: 不符合。, en: Not met.}
  - id: A2
    title: {zh: 持证者须缴费满3个月, en: Certified applicants need three months}
    legal_basis: [basis]
    condition: not (form.flag and si.months_contributed < 3)
    on_fail: reject
    reason: {zh: 不符合。, en: Not met.}
  - id: X1
    title: {zh: 达到类别最低缴费月数, en: Minimum months for the category}
    legal_basis: [basis]
    condition: si.months_contributed >= min_months[form.kind]
    on_fail: reject
    reason: {zh: 不符合。, en: Not met.}
  - id: X2
    title: {zh: 积分达到8分, en: Eight points}
    legal_basis: [basis]
    condition: points >= 8
    on_fail: reject
    reason: {zh: 积分不足。, en: Too few points.}
  - id: X3
    title: {zh: 缴费满两年, en: Two full years}
    legal_basis: [basis]
    condition: floor(si.months_contributed / 12) + 1 >= 3
    on_fail: reject
    reason: {zh: 不满两年。, en: Under two years.}
"""


@cache
def shapes() -> Ruleset:
    return parse_ruleset(SHAPES, file="<shapes>")


def shapes_env(
    *,
    day: dt.date,
    kind: str,
    income: Decimal,
    flag: bool,
    months: int,
    status: str,
    rate: Decimal,
    wage: Decimal,
    birth: dt.date,
    since: dt.date,
) -> dict[str, object]:
    return application_env(
        application_date=day,
        id_number="440304199505010018",
        name="测试",
        form={"kind": kind, "income": income, "flag": flag},
        evidence={
            "si": {
                "months_contributed": months,
                "status": status,
                "rate": rate,
                "avg_monthly_wage": wage,
            },
            "population": {"birth_date": birth, "hukou_since": since},
        },
    )


FAILING_ALL = {
    "day": dt.date(2026, 6, 1),
    "kind": "丙",
    "income": Decimal("3000.50"),
    "flag": True,
    "months": 0,
    "status": "注销",
    "rate": Decimal("0.351"),
    "wage": Decimal("4999.5"),
    "birth": dt.date(1986, 5, 31),
    "since": dt.date(2024, 5, 31),
}
"""An application failing every criterion of ``SHAPES`` but A1, each on its boundary."""
FAILING_A1 = {**FAILING_ALL, "flag": False}
"""A1 fails only without the certificate (and A2 only with it)."""


@st.composite
def shape_applications(draw: st.DrawFn) -> dict[str, object]:
    day = draw(st.dates(dt.date(2026, 1, 1), dt.date(2026, 12, 31)))
    return {
        "day": day,
        "kind": draw(st.sampled_from(["甲", "乙", "丙"])),
        "income": draw(st.decimals(Decimal(0), Decimal(9000), places=2)),
        "flag": draw(st.booleans()),
        "months": draw(st.integers(0, 40)),
        "status": draw(st.sampled_from(["正常", "注销", "暂停", "欠费"])),
        "rate": draw(st.decimals(Decimal(0), Decimal(1), places=3)),
        "wage": draw(st.decimals(Decimal(0), Decimal(20000), places=2)),
        "birth": draw(st.dates(dt.date(1960, 1, 1), dt.date(2008, 12, 31))),
        "since": draw(st.dates(dt.date(2020, 1, 1), day)),
    }


def test_the_boundary_applications_fail_every_shape() -> None:
    """The explicit examples below exercise every criterion of the generated cases."""
    failed: set[str] = set()
    for app in (FAILING_ALL, FAILING_A1):
        failed |= set(evaluate(shapes(), shapes_env(**app)).failed)  # type: ignore[arg-type]
    assert {c.id for c in shapes().doc.criteria} == failed


@given(app=shape_applications())
@example(app=FAILING_ALL)
@example(app=FAILING_A1)
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_changes_make_generated_failures_pass(app: dict[str, object]) -> None:
    """Thresholds (integer, strict decimal, upper bound), dates, age, memberships, and/or/not,
    a lookup table, a decision-table value and arithmetic: every failure is undone."""
    env = shapes_env(**app)  # type: ignore[arg-type]
    check_round_trip(shapes(), env, evaluate(shapes(), env))


# --- 3. what the citizen reads --------------------------------------------------------------


def one(ruleset: Ruleset, env: Mapping[str, object], criterion: str) -> Counterfactual:
    """The counterfactual of ``criterion`` (which must fail)."""
    evaluation = evaluate(ruleset, env)
    assert CriterionStatus.FAIL == status_of(evaluation, criterion)
    return next(cf for cf in counterfactuals(ruleset, env, evaluation) if cf.criterion == criterion)


def talent_2026(**changed: object) -> dict[str, object]:
    """The approved 2026 talent-subsidy example with some facts changed."""
    ruleset = shipped("talent-housing-subsidy", "2026")
    return {**example_env(ruleset, ruleset.doc.tests[0]), **changed}


def test_no_months_of_contributions_says_at_least_one_month_and_is_actionable() -> None:
    """With 0 months in Shenzhen: at least 1 month is needed, currently 0; one can act on it."""
    cf = one(
        shipped("talent-housing-subsidy", "2026"),
        talent_2026(**{"social_insurance.months_contributed": 0}),
        "C4",
    )
    assert [
        Change(
            fact="social_insurance.months_contributed",
            source="registry:social_insurance",
            current=0,
            required=1,
            op=">=",
        )
    ] == cf.changes
    assert cf.actionable is True
    assert "在深圳缴纳社会保险：需社保库记录的缴费月数至少为1个月，当前为0个月。" == cf.text_zh
    assert "must be at least 1 (currently 0)" in cf.text_en


def test_a_36_year_old_is_told_the_age_bound_and_that_it_is_not_actionable() -> None:
    """The record keeps the age, not the birth date (``record: age``): the counterfactual asks
    for an age (周岁: under 35 is at most 34), never a date of birth or an application date,
    which would put the birth date back in the record."""
    cf = one(
        shipped("talent-housing-subsidy", "2026"),
        talent_2026(**{"population.birth_date": dt.date(1990, 1, 1)}),
        "C2",
    )
    assert [
        Change(
            fact="age_on(population.birth_date, application.date)",
            source="computed",
            current=36,
            required=34,
            op="<=",
        )
    ] == cf.changes
    assert cf.actionable is False
    assert "未满35周岁：需申请日的周岁至多为34周岁，当前为36周岁。" == cf.text_zh
    assert "1990" not in cf.text_zh + cf.text_en


def test_an_80_year_threshold_through_a_named_value_asks_for_the_age() -> None:
    """``age >= 80`` (a named value): at least 80 on the application date, currently 79."""
    ruleset = shipped("old-age-allowance", "2024")
    ex = next(e for e in ruleset.doc.tests if "C3" in e.expect.failed)
    env = example_env(ruleset, ex)
    cf = one(ruleset, env, "C3")
    (change,) = cf.changes
    assert (">=", 80) == (change.op, change.required)
    assert cf.actionable is False
    assert "年满80周岁：需申请日周岁至少为80周岁，当前为" in cf.text_zh
    assert str(env["population.birth_date"])[:4] not in cf.text_zh + cf.text_en


def test_a_birth_date_recorded_as_it_is_is_still_solved_for() -> None:
    """Without ``record: age`` (no catalogue), age is solved for the birth date itself."""
    ruleset = parse_ruleset(
        Path(shipped("talent-housing-subsidy", "2026").path).read_text(encoding="utf-8"),
        file="2026.yaml",
    )
    assert frozenset() == ruleset.recording.age_fields
    cf = one(ruleset, talent_2026(**{"population.birth_date": dt.date(1990, 1, 1)}), "C2")
    assert ["population.birth_date"] == [c.fact for c in cf.changes]
    assert "记录的出生日期不早于1991-03-01，当前为1990-01-01" in cf.text_zh


def test_a_lookup_table_criterion_names_the_row_a_change_reaches() -> None:
    """2016: a 37-year-old master's graduate (under 35 for 硕士) meets the limit with a doctorate,
    row 3; the birth date, kept only as an age, is not solved for."""
    ruleset = shipped("talent-housing-subsidy", "2016")
    env = {**example_env(ruleset, ruleset.doc.tests[0])}
    env["population.birth_date"] = dt.date(1989, 1, 1)
    cf = one(ruleset, env, "C2")
    assert 3 == cf.table_row
    assert [("education.degree", "==", "博士")] == [(c.fact, c.op, c.required) for c in cf.changes]
    assert "（依据“各学历年龄上限（未满）”表第3行）" in cf.text_zh


def test_a_registry_record_that_must_not_exist_is_said_in_words() -> None:
    """A verify answer of ``exists`` reads as a record in the named registry, not ``=是``."""
    cf = one(
        shipped("talent-housing-subsidy", "2026"),
        talent_2026(**{"subsidy_history.received_before": True}),
        "C6",
    )
    assert "首次申领：需补贴发放记录中没有相关记录，当前有记录。" == cf.text_zh
    assert cf.actionable is False  # a past payment cannot be undone


def test_a_guard_alternative_is_not_offered_when_the_rule_itself_can_be_met() -> None:
    """``highest_degree == "无" or (registry degree == declared …)``: declaring the registry's
    degree is offered, not declaring no degree at all (both are one change)."""
    ruleset = shipped("beijing-points-hukou", "2018")
    ex = next(e for e in ruleset.doc.tests if "C5" in e.expect.failed)
    cf = one(ruleset, example_env(ruleset, ex), "C5")
    assert [("form.highest_degree", "==", "本科")] == [
        (c.fact, c.op, c.required) for c in cf.changes
    ]


def test_points_below_the_score_are_met_by_the_months_the_ruleset_itself_names() -> None:
    """90.5 points: 180 months (15 years, as the next named example says) reach 93.5 points;
    the change is to rule 1 of the points table."""
    ruleset = shipped("beijing-points-hukou", "2018")
    ex = next(e for e in ruleset.doc.tests if e.name.startswith("Renting halves"))
    cf = one(ruleset, example_env(ruleset, ex), "C7")
    assert [("si.months_contributed", 180, 168)] == [
        (c.fact, c.required, c.current) for c in cf.changes
    ]
    assert 1 == cf.table_row
    assert cf.actionable is True
    assert "积分合计不小于90.75分" in cf.text_zh


def test_a_strict_decimal_bound_takes_the_next_cent_and_says_so() -> None:
    """``income > 3000.50`` asks for 3000.51 at the bound's scale; the text gives the rule."""
    cf = one(shapes(), shapes_env(**FAILING_ALL), "T2")  # type: ignore[arg-type]
    assert [("form.income", ">=", "3000.51", "3000.50")] == [
        (c.fact, c.op, c.required, c.current) for c in cf.changes
    ]
    assert "规则要求大于3000.50" in cf.text_zh


def test_an_or_takes_the_alternative_needing_the_fewest_changes() -> None:
    """``(months >= 6 and status == "正常") or flag``: one change (the certificate), not two."""
    cf = one(shapes(), shapes_env(**FAILING_A1), "A1")  # type: ignore[arg-type]
    assert [("form.flag", "==", True)] == [(c.fact, c.op, c.required) for c in cf.changes]


def test_money_is_written_with_its_unit_to_the_fen() -> None:
    """A wage bound reads ``至少为5,000元，当前为4,999.50元``."""
    cf = one(shapes(), shapes_env(**FAILING_ALL), "W1")  # type: ignore[arg-type]
    assert [("si.avg_monthly_wage", ">=", "5000", "4999.5")] == [
        (c.fact, c.op, c.required, c.current) for c in cf.changes
    ]
    assert "月平均工资至少为5,000元，当前为4,999.50元" in cf.text_zh


def test_a_membership_lists_the_allowed_values() -> None:
    """``in [...]`` gives the allowed list with op ``in``."""
    cf = one(shapes(), shapes_env(**FAILING_ALL), "M1")  # type: ignore[arg-type]
    assert [
        Change(fact="form.kind", source="declared", current="丙", required=["甲", "乙"], op="in")
    ] == cf.changes
    assert "需申请表中的“申请类别”为甲或乙之一，当前为丙" in cf.text_zh


UNSOLVABLE = SHAPES.replace(
    "criteria:\n",
    """criteria:
  - id: U1
    title: {zh: 两项相等且合计满100, en: Equal and 100 in all}
    legal_basis: [basis]
    condition: si.months_contributed + si.rate >= 100 and si.months_contributed == si.rate
    on_fail: reject
    reason: {zh: 不符合。, en: Not met.}
""",
)


def test_a_shape_no_single_change_solves_gets_no_changes_and_says_what_must_hold() -> None:
    """Two inputs that must move together: no changes, not actionable, ``需满足：…``."""
    ruleset = parse_ruleset(UNSOLVABLE, file="<unsolvable>")
    env = shapes_env(**{**FAILING_ALL, "months": 3, "rate": Decimal(3)})  # type: ignore[arg-type]
    cf = one(ruleset, env, "U1")
    assert [] == cf.changes
    assert cf.actionable is False
    assert cf.text_zh.startswith("两项相等且合计满100：需满足：")


def test_facts_of_the_wrong_type_never_raise() -> None:
    """Whatever the facts, one counterfactual per failed criterion and no exception."""
    env = shapes_env(**FAILING_ALL)  # type: ignore[arg-type]
    evaluation = evaluate(shapes(), env)
    broken = {k: [v] for k, v in env.items()}
    cfs = counterfactuals(shapes(), broken, evaluation)
    assert evaluation.failed == [cf.criterion for cf in cfs]


def test_passed_and_unknown_criteria_get_none() -> None:
    """An approved example has no counterfactuals; an unknown criterion gets none either."""
    ruleset = shipped("talent-housing-subsidy", "2016")
    for ex in ruleset.doc.tests:
        env = example_env(ruleset, ex)
        evaluation = evaluate(ruleset, env)
        got = [cf.criterion for cf in counterfactuals(ruleset, env, evaluation)]
        assert sorted(ex.expect.failed) == sorted(got)
        assert not set(got) & set(ex.expect.unknown)


def test_a_counterfactual_is_stored_as_json_and_read_back_unchanged() -> None:
    """Every field is JSON: the record can hold it and re-read it."""
    cfs = counterfactuals(
        shapes(),
        shapes_env(**FAILING_ALL),  # type: ignore[arg-type]
        evaluate(shapes(), shapes_env(**FAILING_ALL)),  # type: ignore[arg-type]
    )
    text = json.dumps([cf.model_dump(mode="json") for cf in cfs], ensure_ascii=False)
    assert cfs == [Counterfactual.model_validate(d) for d in json.loads(text)]
