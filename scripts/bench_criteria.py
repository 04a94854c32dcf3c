"""Benchmark: the cost of one criterion, on synthetic schema-version-2 rulesets.

For each size (default 8, 32 and 128 criteria) a ruleset is generated in memory and compiled
with ``engine.parse_ruleset`` against the real registry catalogue. Its criteria have the
shapes the shipped rulesets use, cycled with different thresholds: registry facts compared
with constants and with the form, ``age_on``/``years_before``/``days_between``, membership in
lists, ``and``/``or``/``not``, exact decimals (form amounts, arithmetic, a dated parameter and
a named value), over 13 evidence fields of six catalogued registries and eight form fields.
A pool of synthetic applications (about half fully eligible, the rest with a fact or two
failing or a registry record missing) is decided on durable_rules and on the reference
evaluator, which must agree on every criterion.

Reported per size and evaluator: microseconds per decision and per criterion; for
durable_rules, where a decision's time goes — parameters and named values (prepare_env), the
fact built for the Rete network (derived terms), durable_rules itself
(``engine._durable.get_engine().fire``: JSON encoding, assert, fire, delete) and Python
assembling the explanation (criterion results, compared values, reason texts, outcome,
output table, the Evaluation). The marginal cost of a criterion is the slope between the
smallest and largest size.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import random
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

from bench import machine  # the sibling script: scripts/ is on sys.path when run as one

import engine.decision as decision_module
from engine import Ruleset, evaluate, get_engine, parse_ruleset
from engine.decision import application_env
from engine.registries import load_catalogue

# --- the synthetic ruleset --------------------------------------------------------------

HEADER = """\
schema_version: 2
service: bench-criteria-{n}
version: "1"
name: {{zh: 基准测试事项{n}, en: Benchmark service with {n} criteria}}
authority: {{zh: 基准测试机关, en: Benchmark authority}}
effective_from: 2016-01-01
status: published
legal_basis:
  - id: basis
    title: 基准测试办法
    issuer: 基准测试机关
    doc_number: null
    article: 第一条
inputs:
  - {{name: degree, type: enum, values: [专科, 本科, 硕士, 博士], title: {{zh: 申报学历, en: Declared degree}}}}
  - {{name: certificate_number, type: string, title: {{zh: 学历证书编号, en: Degree certificate number}}}}
  - {{name: district, type: string, title: {{zh: 居住区, en: District}}}}
  - {{name: monthly_rent, type: number, title: {{zh: 月租金, en: Monthly rent}}}}
  - {{name: annual_income, type: number, title: {{zh: 年收入, en: Annual income}}}}
  - {{name: area_m2, type: number, title: {{zh: 住房面积, en: Floor area}}}}
  - {{name: household_size, type: integer, title: {{zh: 家庭人数, en: Household size}}}}
  - {{name: has_children, type: boolean, title: {{zh: 有未成年子女, en: Has minor children}}}}
evidence:
  - id: population
    registry: population
    mode: fetch
    key: applicant.id_number
    fields: {{birth_date: date, gender: string, hukou_city: string, hukou_since: date}}
  - id: education
    registry: education
    mode: fetch
    key: form.certificate_number
    fields: {{holder_id_number: string, degree: string, study_mode: string, graduation_date: date}}
  - id: social_insurance
    registry: social_insurance
    mode: fetch
    key: applicant.id_number
    fields: {{city: string, status: string, months_contributed: integer, employer_credit_code: string}}
  - id: employer
    registry: business_registry
    mode: fetch
    key: social_insurance.employer_credit_code
    fields: {{registered_city: string, status: string, established_date: date}}
  - id: subsidy_history
    registry: subsidy_history
    mode: verify
    key: applicant.id_number
    params: {{service: talent-housing-subsidy}}
    fields: {{received_before: boolean}}
  - id: property
    registry: property
    mode: verify
    key: applicant.id_number
    params: {{city: 深圳市}}
    fields: {{owns_housing: boolean, rents_public_housing: boolean}}
parameters:
  rent_cap:
    title: {{zh: 租金上限, en: Rent cap}}
    type: number
    unit: 元
    values:
      - {{from: 2016-01-01, value: 6000.00, legal_basis: [basis]}}
      - {{from: 2024-07-01, value: 8000.00, legal_basis: [basis]}}
values:
  rent_share:
    title: {{zh: 租金收入比, en: Rent to income}}
    legal_basis: [basis]
    expr: round(form.monthly_rent * 12 / form.annual_income, 4)
criteria:
"""

OUTPUTS = """\
outputs:
  id: subsidy
  title: {zh: 补贴金额, en: Subsidy amount}
  legal_basis: [basis]
  hit_policy: UNIQUE
  columns:
    amount_yuan: {type: number, unit: 元}
    months: integer
  rules:
    - when: form.household_size >= 2
      then: {amount_yuan: "round(form.monthly_rent * 0.5, 2)", months: 24}
    - when: form.household_size < 2
      then: {amount_yuan: "round(min(form.monthly_rent * 0.3, 1500.00), 2)", months: 12}
"""

AGE = "age_on(population.birth_date, application.date)"


def _templates(k: int) -> list[tuple[str, str, str]]:
    """(condition, reason, on_fail) shapes; ``k`` (0, 1, 2…) varies the thresholds."""
    return [
        (
            'education.holder_id_number == applicant.id_number and education.study_mode == "全日制"'
            ' and education.degree in ["本科", "硕士", "博士"]',
            "学历为{education.study_mode}{education.degree}",
            "reject",
        ),
        (f"{AGE} < {35 + k % 10}", f"申请日已满{{{AGE}}}周岁", "reject"),
        (
            f"form.monthly_rent <= rent_cap - {100 * (k % 20)}",
            "月租金{form.monthly_rent:money}元，上限{rent_cap:money}元",
            "reject",
        ),
        (
            'social_insurance.city == "深圳市" and social_insurance.status == "正常缴费"'
            f" and social_insurance.months_contributed >= {1 + k % 24}",
            "社保{social_insurance.city}{social_insurance.status}{social_insurance.months_contributed}个月",
            "reject",
        ),
        (
            'form.district in ["福田区", "罗湖区", "南山区", "宝安区", "龙岗区", "龙华区"]',
            "居住区为{form.district}",
            "reject",
        ),
        (
            f"form.annual_income * 0.{30 + k % 10} >= form.monthly_rent * 12",
            "年收入{form.annual_income:money}元，月租金{form.monthly_rent:money}元",
            "refer",
        ),
        (
            "not property.owns_housing and not property.rents_public_housing",
            "自有住房={property.owns_housing}，公共住房={property.rents_public_housing}",
            "reject",
        ),
        (
            f"form.household_size >= 1 and (form.area_m2 / form.household_size < {20 + k % 15}.5"
            " or form.has_children)",
            "面积{form.area_m2}平方米，{form.household_size}人",
            "reject",
        ),
        (
            'population.hukou_city == "深圳市" and population.hukou_since >= '
            f"years_before(application.date, {1 + k % 3})",
            "户籍{population.hukou_city}，迁入{population.hukou_since}",
            "reject",
        ),
        (
            'employer.registered_city == "深圳市" and employer.status in ["存续", "在业"]',
            "单位注册地{employer.registered_city}，状态{employer.status}",
            "reject",
        ),
        ("not subsidy_history.received_before", "已领取过补贴", "reject"),
        ("form.degree == education.degree", "申报{form.degree}，学历库{education.degree}", "refer"),
        (
            f"days_between(education.graduation_date, application.date) <= {365 * (3 + k % 3)}",
            "毕业于{education.graduation_date}",
            "reject",
        ),
        (
            f"employer.established_date <= years_before(application.date, {1 + k % 2})"
            f" or social_insurance.months_contributed >= {36 + k}",
            "单位成立于{employer.established_date}",
            "refer",
        ),
        (
            f"rent_share <= 0.{30 + k % 10}",
            "租金收入比{rent_share}",
            "refer",
        ),
        (
            f'not (population.gender == "男" and {AGE} >= {60 + k % 5})'
            f" and (social_insurance.months_contributed >= {6 + k % 6} or form.has_children)",
            "{population.gender}，{social_insurance.months_contributed}个月",
            "reject",
        ),
    ]


SHAPES = len(_templates(0))


def ruleset_text(n: int) -> str:
    lines = [HEADER.format(n=n)]
    for i in range(n):
        condition, reason, on_fail = _templates(i // SHAPES)[i % SHAPES]
        lines.append(
            f"  - id: C{i + 1}\n"
            f"    title: {{zh: 条件{i + 1}, en: Criterion {i + 1}}}\n"
            f"    legal_basis: [basis]\n"
            f"    condition: {json.dumps(condition, ensure_ascii=False)}\n"
            f"    on_fail: {on_fail}\n"
            f"    reason: {{zh: {json.dumps(reason, ensure_ascii=False)}, en: {json.dumps(reason, ensure_ascii=False)}}}\n"
        )
    lines.append(OUTPUTS)
    return "".join(lines)


def build_ruleset(n: int, catalogue_path: Path) -> Ruleset:
    return parse_ruleset(
        ruleset_text(n), file=f"<synthetic {n} criteria>", sources=load_catalogue(catalogue_path)
    )


# --- synthetic applications ---------------------------------------------------------------

DISTRICTS = ["福田区", "罗湖区", "南山区", "宝安区", "龙岗区", "龙华区"]


def applications(count: int, seed: int) -> list[dict[str, object]]:
    """About half eligible on every criterion; the rest with a fact or two off, or missing."""
    rng = random.Random(seed)
    out: list[dict[str, object]] = []
    for i in range(count):
        day = dt.date(2024, 1, 1) + dt.timedelta(days=rng.randrange(900))
        birth = day - dt.timedelta(days=rng.randrange(22 * 365, 33 * 365))
        rent = rng.randrange(1500, 4000)
        degree = rng.choice(["本科", "硕士", "博士"])
        id_number = f"4403{rng.randrange(10**13):013d}X"
        form: dict[str, object] = {
            "degree": degree,
            "certificate_number": f"{rng.randrange(10**17):018d}",
            "district": rng.choice(DISTRICTS),
            "monthly_rent": Decimal(f"{rent}.{rng.randrange(100):02d}"),
            "annual_income": Decimal(f"{rng.randrange(200_000, 400_000)}.00"),
            "area_m2": Decimal(f"{rng.randrange(30, 60)}.{rng.randrange(10)}"),
            "household_size": rng.randrange(2, 5),
            "has_children": True,
        }
        evidence: dict[str, dict[str, object] | None] = {
            "population": {
                "birth_date": birth,
                "gender": rng.choice(["男", "女"]),
                "hukou_city": "深圳市",
                "hukou_since": day - dt.timedelta(days=rng.randrange(1, 330)),
            },
            "education": {
                "holder_id_number": id_number,
                "degree": degree,
                "study_mode": "全日制",
                "graduation_date": day - dt.timedelta(days=rng.randrange(30, 700)),
            },
            "social_insurance": {
                "city": "深圳市",
                "status": "正常缴费",
                "months_contributed": rng.randrange(24, 60),
                "employer_credit_code": "91440300MA5DTEST01",
            },
            "employer": {
                "registered_city": "深圳市",
                "status": rng.choice(["存续", "在业"]),
                "established_date": day - dt.timedelta(days=rng.randrange(800, 5000)),
            },
            "subsidy_history": {"received_before": False},
            "property": {"owns_housing": False, "rents_public_housing": False},
        }
        if i % 2:  # spoil one or two facts, or lose a registry record
            for _ in range(rng.randrange(1, 3)):
                _spoil(rng, form, evidence, day)
        out.append(
            application_env(
                application_date=day,
                id_number=id_number,
                name="测试",
                form=form,
                evidence=evidence,
            )
        )
    return out


def _spoil(
    rng: random.Random,
    form: dict[str, object],
    evidence: dict[str, dict[str, object] | None],
    day: dt.date,
) -> None:
    def registry(eid: str, field: str, v: object) -> None:
        record = evidence[eid]
        if record is not None:
            record[field] = v

    choice = rng.randrange(12)
    if choice == 0:
        evidence[rng.choice(["population", "education", "social_insurance", "employer"])] = None
    elif choice == 1:
        registry("population", "birth_date", day - dt.timedelta(days=rng.randrange(36, 70) * 365))
    elif choice == 2:
        form["monthly_rent"] = Decimal(f"{rng.randrange(6000, 12000)}.00")
    elif choice == 3:
        registry("social_insurance", "status", "暂停缴费")
    elif choice == 4:
        form["district"] = "大鹏新区"
    elif choice == 5:
        form["annual_income"] = Decimal(f"{rng.randrange(40_000, 90_000)}.00")
    elif choice == 6:
        registry("property", "owns_housing", True)
    elif choice == 7:
        registry("population", "hukou_city", "广州市")
    elif choice == 8:
        registry("employer", "status", "注销")
    elif choice == 9:
        form["degree"] = "博士" if form["degree"] != "博士" else "硕士"
    elif choice == 10:
        registry("subsidy_history", "received_before", True)
    else:
        registry("education", "graduation_date", day - dt.timedelta(days=rng.randrange(2000, 4000)))


# --- timing -------------------------------------------------------------------------------


def _loop(fn: Callable[[int], object], n: int) -> float:
    """Seconds for ``n`` calls of ``fn(i)``."""
    t0 = time.perf_counter()
    for i in range(n):
        fn(i)
    return time.perf_counter() - t0


def timed(
    rs: Ruleset,
    envs: list[dict[str, object]],
    n: int,
    evaluator: Literal["durable_rules", "reference"],
) -> float:
    """Seconds for ``n`` plain evaluate() calls over the pool."""
    return _loop(lambda i: evaluate(rs, envs[i % len(envs)], evaluator=evaluator), n)


@dataclass
class Parts:
    prepare: float = 0.0
    fact: float = 0.0
    fire: float = 0.0
    total: float = 0.0


def instrumented(rs: Ruleset, envs: list[dict[str, object]], n: int) -> Parts:
    """One pass of evaluate() with timers around its three calls (about 0.5 µs of overhead).

    ``prepare_env`` (parameters and values), ``compiled.fact`` (the Rete fact with derived
    terms) and ``get_engine().fire`` (durable_rules) are wrapped on this process's objects;
    whatever remains of evaluate() is Python assembling the explanation.
    """
    parts = Parts()
    clock = time.perf_counter
    engine = get_engine()
    real_fire, real_fact = engine.fire, rs.compiled.fact
    real_prepare = decision_module.prepare_env

    def fire(*args: Any) -> list[str]:
        t = clock()
        try:
            return real_fire(*args)
        finally:
            parts.fire += clock() - t

    def fact(*args: Any) -> dict[str, object]:
        t = clock()
        try:
            return real_fact(*args)
        finally:
            parts.fact += clock() - t

    def prepare(*args: Any) -> decision_module.Prepared:
        t = clock()
        try:
            return real_prepare(*args)
        finally:
            parts.prepare += clock() - t

    engine.fire = fire  # type: ignore[method-assign]
    rs.compiled.fact = fact  # type: ignore[method-assign]
    decision_module.prepare_env = prepare
    try:
        parts.total = _loop(lambda i: evaluate(rs, envs[i % len(envs)]), n)
    finally:
        del engine.fire
        del rs.compiled.fact
        decision_module.prepare_env = real_prepare
    return parts


def check_agreement(rs: Ruleset, envs: list[dict[str, object]]) -> dict[str, int]:
    """Both evaluators decide every synthetic application alike; the outcome mix."""
    outcomes: dict[str, int] = {}
    for env in envs:
        a = evaluate(rs, env)
        b = evaluate(rs, env, evaluator="reference")
        if [c.status for c in a.criteria] != [c.status for c in b.criteria] or (
            a.outcome,
            a.outputs,
        ) != (b.outcome, b.outputs):
            raise SystemExit(f"evaluators disagree on {rs.key}: {env}")
        outcomes[a.outcome.value] = outcomes.get(a.outcome.value, 0) + 1
    return outcomes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[8, 32, 128])
    parser.add_argument(
        "--decisions", type=int, default=1000, help="decisions per size and evaluator"
    )
    parser.add_argument("--repeat", type=int, default=3, help="timed passes; the median is shown")
    parser.add_argument("--applications", type=int, default=500)
    parser.add_argument("--seed", type=int, default=20161)
    parser.add_argument("--registries", type=Path, default=Path("rulesets/registries.yaml"))
    args = parser.parse_args()

    print(machine())
    envs = applications(args.applications, args.seed)
    rows: list[dict[str, float]] = []
    for size in args.sizes:
        t0 = time.perf_counter()
        rs = build_ruleset(size, args.registries)
        compile_s = time.perf_counter() - t0
        outcomes = check_agreement(rs, envs)  # also warms durable_rules' ruleset handle
        statuses = [c.status.value for env in envs for c in evaluate(rs, env).criteria]
        not_pass = sum(s != "PASS" for s in statuses) / len(statuses)
        n = args.decisions

        durable = statistics.median(timed(rs, envs, n, "durable_rules") for _ in range(args.repeat))
        reference = statistics.median(timed(rs, envs, n, "reference") for _ in range(args.repeat))
        parts = [instrumented(rs, envs, n) for _ in range(args.repeat)]
        share = {
            k: statistics.median(getattr(p, k) / p.total for p in parts)
            for k in ("prepare", "fact", "fire")
        }
        share["explain"] = 1 - share["prepare"] - share["fact"] - share["fire"]
        us_d, us_r = durable / n * 1e6, reference / n * 1e6
        rows.append({"size": size, "durable": us_d, "reference": us_r, **share})
        print(
            f"{size:>4} criteria ({len(rs.compiled.definition)} Rete rules, "
            f"{len(rs.compiled.derived)} derived terms, compiled in {compile_s:.2f}s): "
            f"{n:,} decisions × {args.repeat}; {outcomes}; {not_pass:.0%} of criteria not PASS; "
            f"timers add {statistics.median(p.total for p in parts) / durable - 1:+.1%}",
            flush=True,
        )

    print()
    print(
        "criteria | durable_rules µs/decision | µs/criterion | reference µs/decision | µs/criterion "
        "| fire (durable_rules) | fact | values/params | explanation"
    )
    for r in rows:
        size = int(r["size"])
        print(
            f"{size:>8} | {r['durable']:>25,.1f} | {r['durable'] / size:>12.2f} | "
            f"{r['reference']:>21,.1f} | {r['reference'] / size:>12.2f} | {r['fire']:>20.1%} | "
            f"{r['fact']:>4.1%} | {r['prepare']:>13.1%} | {r['explain']:>11.1%}"
        )
    if len(rows) >= 2:
        lo, hi = rows[0], rows[-1]
        span = hi["size"] - lo["size"]
        slope_d = (hi["durable"] - lo["durable"]) / span
        slope_r = (hi["reference"] - lo["reference"]) / span
        print(
            f"marginal cost of a criterion ({int(lo['size'])} → {int(hi['size'])}): "
            f"durable_rules {slope_d:.2f} µs, reference {slope_r:.2f} µs; fixed cost per decision "
            f"durable_rules {lo['durable'] - slope_d * lo['size']:.1f} µs, "
            f"reference {lo['reference'] - slope_r * lo['size']:.1f} µs"
        )


if __name__ == "__main__":
    main()
