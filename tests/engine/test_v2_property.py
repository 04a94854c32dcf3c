"""Ruleset language v2 under generated applications, with facts randomly missing.

For every construct v2 added (exact decimals, the functions, ``if … then … else``, named values
computed by expressions and by decision tables, dated parameters, and every hit policy), over
applications generated around the boundaries of synthetic rulesets (``fixtures/v2/``) and over
rulesets made of randomly generated well-typed conditions:

1. durable_rules and the reference evaluator agree on everything an evaluation records;
2. every criterion's status is the Kleene truth of its condition on the prepared facts;
3. an UNKNOWN criterion always refers, and a rejection rests on the facts present: knowing
   the missing facts never overturns a PASS or a FAIL;
4. numbers stay exact: no binary float anywhere in an evaluation, and rounding, sums and
   comparisons agree with Python's ``decimal`` module;
5. a decision table never gives a result that a missing fact could change: whenever it gives
   one, every way its UNKNOWN rules could turn out gives the same (DMN 1.5's hit policies,
   written independently in ``helpers_v2``).

Examples per test: the defaults below, or ``MIAOPI_PROPERTY_EXAMPLES`` (e.g. 10000) for each.
A few tests at the end run a decision in a child process: durable_rules kills the process on
some inputs, and a test must outlive the crash to report it.
"""

from __future__ import annotations

import datetime as dt
import decimal
import os
import subprocess
import sys
from collections.abc import Callable, Mapping
from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

import pytest
from helpers_v2 import (
    FIXTURES_V2,
    OUTPUT_FIXTURES,
    POOL_SIZE,
    STATUS_OF_TRUTH,
    Case,
    Verdict,
    canon,
    canon_json,
    cases,
    comparable,
    completions,
    default_value,
    env_of,
    expected_age,
    expected_anniversary,
    expressions,
    fixture,
    floats_in,
    generated,
    generated_text,
    in_force,
    nodes_of,
    random_forms,
    row_truths,
    row_value,
    statuses,
)
from hypothesis import HealthCheck, Phase, event, given, note, settings
from hypothesis import strategies as st

from engine import (
    CriterionStatus,
    Evaluation,
    Outcome,
    ReasonCode,
    Ruleset,
    evaluate,
    get_engine,
)
from engine._compiled import CheckedTable
from engine._semantics import FUNCTIONS, MISSING, truth
from engine.decision import Prepared, prepare_env
from engine.examples import run_examples
from engine.expr import Call, If, Literal

REPO = Path(__file__).resolve().parents[2]
PASS, FAIL, UNKNOWN = CriterionStatus.PASS, CriterionStatus.FAIL, CriterionStatus.UNKNOWN


def examples(default: int) -> int:
    """The number of examples of one property test: ``default``, or the environment's."""
    return int(os.environ.get("MIAOPI_PROPERTY_EXAMPLES") or default)


def property_settings(default: int) -> settings:
    """``default`` examples (see ``examples``), no deadline, and no explain phase: explaining
    a failure of the generated rulesets can take a minute, shrinking takes seconds."""
    return settings(
        max_examples=examples(default),
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        phases=[p for p in Phase if p is not Phase.explain],
    )


# --- the invariants ------------------------------------------------------------------------------


def check_decision(
    ruleset: Ruleset, day: dt.date, form: Mapping[str, object], complete: Mapping[str, object]
) -> tuple[Evaluation, Prepared]:
    """Decide ``form`` on both evaluators and assert invariants 1–5 (``complete`` is the same
    application with every optional input given)."""
    env = env_of(day, form)
    durable = evaluate(ruleset, env, evaluator="durable_rules")
    reference = evaluate(ruleset, env, evaluator="reference")
    event(f"outcome {durable.outcome}")

    # 1. the Rete engine and the reference evaluator agree on everything recorded
    assert comparable(reference) == comparable(durable)

    # 4. no binary float anywhere, in Python or in JSON form
    assert [] == floats_in(durable.model_dump())
    assert [] == floats_in(durable.model_dump(mode="json"))

    # 2. each status is the Kleene truth of the condition on the prepared facts
    prepared = prepare_env(ruleset, env)
    kleene = {
        c.id: STATUS_OF_TRUTH[truth(c.condition, prepared.env, prepared.tables)]
        for c in ruleset.criteria
    }
    assert kleene == statuses(durable)

    # 3. UNKNOWN refers; REJECTED only when decided, a reject criterion failed and no refer one
    on_fail = {c.id: c.on_fail for c in ruleset.doc.criteria}
    failed = [cid for cid, s in kleene.items() if s is FAIL]
    if UNKNOWN in kleene.values():
        assert Outcome.REFERRED == durable.outcome
    rejected = (
        UNKNOWN not in kleene.values()
        and all(on_fail[c] == "reject" for c in failed)
        and bool(failed)
    )
    assert rejected == (durable.outcome is Outcome.REJECTED)
    # ... and a rejection rests on the facts present: knowing the missing ones changes no
    # PASS and no FAIL (Kleene monotonicity), so no FAIL behind a rejection depends on them
    known = statuses(evaluate(ruleset, env_of(day, complete), evaluator="durable_rules"))
    for c in durable.criteria:
        if c.status is not UNKNOWN:
            assert c.status == known[c.id], c.id
        if c.status is FAIL and c.on_fail == "reject" and c.missing_facts:
            event("a reject criterion FAILs on the facts present while others are missing")

    check_parameters(ruleset, day, durable)
    check_value_tables(ruleset, prepared, durable)
    check_outputs_table(ruleset, prepared, durable, kleene)
    return durable, prepared


def check_parameters(ruleset: Ruleset, day: dt.date, evaluation: Evaluation) -> None:
    """Each parameter used is the period in force on the application day, as the file says."""
    types = {name: p.type for name, p in ruleset.doc.parameters.items()}
    used = {
        p.name: (p.effective_from, p.effective_to, canon_json(p.value, types[p.name]))
        for p in evaluation.parameters
    }
    expected = {
        name: (start, end, canon(v)) for name, (start, end, v) in in_force(ruleset, day).items()
    }
    assert expected == used


def observed_table(reasons: list[Any], title_en: str, outputs: Verdict | None) -> str:
    """``ok`` or the reason a table gave no result, from an evaluation's reasons."""
    if outputs is not None:
        return "ok"
    codes = {r.code for r in reasons if r.message_en.startswith(f"{title_en}:")}
    if ReasonCode.OUTPUT_AMBIGUOUS in codes:
        return "ambiguous"
    if ReasonCode.OUTPUT_NO_MATCH in codes:
        return "no_match"
    if ReasonCode.OUTPUT_UNKNOWN in codes:
        return "unknown"
    return "no_match or unknown"


def check_table(
    table: CheckedTable,
    prepared: Prepared,
    shown: Verdict | None,
    status: str,
    rules: list[int] | None,
) -> None:
    """5: what the engine gave for ``table`` (``shown``: ``ok`` with outputs, or nothing and
    why) against DMN under every way its UNKNOWN rules could turn out."""
    env, tables = prepared.env, prepared.tables
    truths = row_truths(table, env, tables)
    if rules is not None:
        assert [i + 1 for i, t in enumerate(truths) if t is True] == rules
    verdicts = completions(
        table, truths, row_value(table, env, tables), default_value(table, env, tables)
    )
    if shown is not None:
        # a result is given only when no missing fact could change it
        assert all(shown == v for v in verdicts), (shown, verdicts)
    if None not in truths:
        # every rule decided: exactly DMN's result
        (expected,) = verdicts
        if status == "no_match or unknown":
            assert expected.status in ("no_match", "unknown")
        else:
            assert (expected.status, expected.outputs) == (status, shown and shown.outputs)
    else:
        event(f"{table.hit_policy}: a rule is UNKNOWN; the table gave {status}")


def check_value_tables(ruleset: Ruleset, prepared: Prepared, evaluation: Evaluation) -> None:
    """5, for every named value computed by a decision table."""
    results = {v.name: v for v in evaluation.values}
    for named in ruleset.values:
        if named.table is None:
            continue
        got = results[named.name]
        shown = (
            None
            if got.missing
            else Verdict("ok", ((named.name, canon_json(got.value, named.type)),))
        )
        status = observed_table(evaluation.reasons, named.title.en, shown)
        check_table(named.table, prepared, shown, status, got.rules)


def check_outputs_table(
    ruleset: Ruleset,
    prepared: Prepared,
    evaluation: Evaluation,
    kleene: Mapping[str, CriterionStatus],
) -> None:
    """5, for the outputs table, which decides only once every criterion has passed."""
    table = ruleset.outputs
    if table is None:
        return
    if any(s is not PASS for s in kleene.values()):
        assert (None, []) == (evaluation.outputs, evaluation.output_rules)
        return
    types = {c.name: c.type for c in table.columns}
    outputs = evaluation.outputs
    shown = (
        None
        if outputs is None
        else Verdict("ok", tuple((c, canon_json(outputs[c], types[c])) for c in types))
    )
    assert (evaluation.outcome is Outcome.APPROVED) == (shown is not None)
    status = observed_table(evaluation.reasons, table.title.en, shown)
    assert status != "no_match or unknown", evaluation.reasons
    check_table(table, prepared, shown, status, evaluation.output_rules)


# --- the fixtures --------------------------------------------------------------------------------

FIXTURE_NAMES = ["allowance", "exact", *OUTPUT_FIXTURES]


@pytest.mark.parametrize("name", FIXTURE_NAMES)
def test_each_fixture_decides_its_own_examples(name: str) -> None:
    """Every fixture loads and decides its hand-computed examples on both evaluators."""
    failures = {r.name: r.problems for r in run_examples(fixture(name)) if not r.ok}
    assert {} == failures


def test_the_fixtures_cover_every_v2_construct() -> None:
    """The fixtures hold every hit policy, in values and in outputs, and dated parameters."""
    rulesets = [fixture(n) for n in FIXTURE_NAMES]
    assert sorted(FIXTURE_NAMES) == sorted(p.stem for p in FIXTURES_V2.glob("*.yaml"))
    outputs = {r.outputs.hit_policy for r in rulesets if r.outputs is not None}
    values = {v.table.hit_policy for r in rulesets for v in r.values if v.table is not None}
    assert 11 == len(outputs)
    assert {
        "UNIQUE",
        "ANY",
        "FIRST",
        "PRIORITY",
        "COLLECT SUM",
        "COLLECT MIN",
        "COLLECT MAX",
        "COLLECT COUNT",
    } == values
    params = fixture("allowance").parameters
    assert {"number", "integer", "date", "boolean"} <= {p.type for p in params}
    assert any(p.mapping for p in params)
    assert all(len(p.periods) >= 2 for p in params)
    nodes = [n for r in rulesets for e in expressions(r) for n in nodes_of(e)]
    assert set(FUNCTIONS) == {n.func for n in nodes if isinstance(n, Call)}
    assert any(isinstance(n, If) for n in nodes)
    assert any(isinstance(n, Literal) and isinstance(n.value, Decimal) for n in nodes)


def allowance_values(
    form: Mapping[str, object], day: dt.date, ruleset: Ruleset
) -> dict[str, object]:
    """The expression values of ``allowance.yaml``, computed with Python's ``decimal`` module
    and the date rules of the language reference (MISSING where a fact they need is)."""
    params = {name: v for name, (_, _, v) in in_force(ruleset, day).items()}
    out: dict[str, object] = {}
    ctx = decimal.Context(prec=34)

    def need(*xs: object) -> bool:
        return all(x is not MISSING for x in xs)

    def get(name: str) -> Any:
        return form.get(name, MISSING)

    birth, size, income, deductions = (
        get("birth_date"),
        get("household_size"),
        get("monthly_income"),
        get("deductions"),
    )
    city, disabled, since = get("city"), get("disabled"), get("unemployed_since")
    line = params["income_line"]
    out["age"] = expected_age(birth, day) if need(birth) else MISSING
    per_capita: Any = MISSING
    if need(income, size) and size != 0:
        per_capita = ctx.divide(Decimal(income), Decimal(size))
    out["per_capita"] = per_capita
    net = income - deductions if need(income, deductions) else MISSING
    out["net_income"] = net
    out["income_gap"] = abs(income - line) if need(income) else MISSING
    if need(per_capita):
        out["per_capita_2"] = per_capita.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
        out["per_capita_floor"] = per_capita.quantize(Decimal("0.1"), rounding=ROUND_FLOOR)
        out["per_capita_ceil"] = int(per_capita.quantize(Decimal(1), rounding=ROUND_CEILING))
    else:
        out["per_capita_2"] = out["per_capita_floor"] = out["per_capita_ceil"] = MISSING
    shortfall = max(line * size - net, 0) if need(size, net) else MISSING
    out["shortfall"] = shortfall
    # `if form.disabled and disability_bonus_on …`: Kleene `and`, UNKNOWN only if it matters
    bonus_on = params["disability_bonus_on"]
    condition = (
        False if bonus_on is False or disabled is False else (True if need(disabled) else None)
    )
    bonus: Any = MISSING if condition is None else (Decimal("300.5") if condition else 0)
    out["disability_bonus"] = bonus
    factor = params["city_factor"].get(city, MISSING) if need(city) else MISSING
    base: Any = MISSING
    if need(shortfall, factor):
        base = (shortfall * factor).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
    out["base_amount"] = base
    cap = params["city_cap"].get(city, MISSING) if need(city) else MISSING
    out["capped_amount"] = min(base + bonus, cap) if need(base, bonus, cap) else MISSING
    out["unemployed_days"] = (day - since).days if need(since) else MISSING
    out["review_day"] = (
        expected_anniversary(since, 1) + dt.timedelta(days=30) if need(since) else MISSING
    )
    return out


@property_settings(500)
@given(case=cases("allowance"))
def test_allowance_decides_alike_by_kleene_logic_and_exactly(case: Case) -> None:
    """Over generated applications, the v2 allowance ruleset satisfies invariants 1–5, and
    its values equal the same computations done with Python's decimal module."""
    ruleset = fixture("allowance")
    durable, _ = check_decision(ruleset, case.day, case.partial, case.complete)
    expected = allowance_values(case.partial, case.day, ruleset)
    types = {v.name: v.type for v in ruleset.values}
    got = {
        v.name: MISSING if v.missing else canon_json(v.value, types[v.name])
        for v in durable.values
        if v.name in expected
    }
    assert {k: canon(v) for k, v in expected.items()} == got


@pytest.mark.parametrize("name", OUTPUT_FIXTURES)
@property_settings(100)
@given(data=st.data())
def test_every_hit_policy_decides_alike_and_never_on_a_missing_fact(
    name: str, data: st.DataObject
) -> None:
    """For each outputs hit policy, generated applications satisfy invariants 1–5: the
    table gives an output only when no missing fact could change it."""
    ruleset = fixture(name)
    case = data.draw(cases(name), label="case")
    check_decision(ruleset, case.day, case.partial, case.complete)


# --- exact decimals ------------------------------------------------------------------------------

NUMBERS = st.one_of(
    st.sampled_from(
        [Decimal(s) for s in ("0.1", "0.2", "0.3", "1.005", "2.345", "2.5", "-2.5", "-0.005")]
    ),
    st.decimals(min_value=-10_000_000, max_value=10_000_000, places=6),
    st.integers(-1000, 1000).map(lambda n: Decimal(n) / 1000),
    st.integers(-100, 100).map(lambda n: Decimal(n) + Decimal("0.5")),
)


def half_up(x: Decimal, places: int) -> Decimal:
    return x.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)


@property_settings(300)
@given(
    a=NUMBERS,
    b=NUMBERS,
    c_kind=st.sampled_from(("sum", "near", "other")),
    other=NUMBERS,
    k=st.integers(-1000, 1000),
    gone=st.sets(st.sampled_from(("a", "b", "c", "k")), max_size=2),
)
def test_decimal_arithmetic_is_exact(
    a: Decimal, b: Decimal, c_kind: str, other: Decimal, k: int, gone: set[str]
) -> None:
    """Sums, products, quotients, half-up rounding, floor, ceil, abs, min and max equal
    Python's decimal module (0.1 + 0.2 == 0.3), and identities that fail in binary floats
    hold; both evaluators agree."""
    ruleset = fixture("exact")
    c = {"sum": a + b, "near": a + b + Decimal("0.000001"), "other": other}[c_kind]
    complete = {"declared": True, "a": a, "b": b, "c": c, "k": k}
    form = {n: v for n, v in complete.items() if n not in gone}
    durable, _ = check_decision(ruleset, dt.date(2024, 3, 1), form, complete)
    got = {v.name: (MISSING if v.missing else v.value) for v in durable.values}
    status = statuses(durable)
    ctx = decimal.Context(prec=34)

    assert True is got["tenths"]
    if "a" in form:
        assert str(int(half_up(a, 0))) == str(got["round_0"])
        assert half_up(a, 1) == Decimal(got["round_1"])
        assert half_up(a, 2) == Decimal(got["round_2"])
        assert int(a.quantize(Decimal(1), rounding=ROUND_FLOOR)) == got["floor_0"]
        assert int(a.quantize(Decimal(1), rounding=ROUND_CEILING)) == got["ceil_0"]
        assert a.quantize(Decimal("0.01"), rounding=ROUND_FLOOR) == Decimal(got["floor_2"])
        assert a.quantize(Decimal("0.01"), rounding=ROUND_CEILING) == Decimal(got["ceil_2"])
        assert abs(a) == Decimal(got["abs_a"])
        assert -a == Decimal(got["neg_a"])
        # identities of exact arithmetic (1.005 × 100 is 100.49999… in binary floating point)
        for identity in ("TENTHS", "SCALE", "BRACKET", "ABS"):
            assert PASS == status[identity], identity
    if {"a", "b"} <= form.keys():
        assert a + b == Decimal(got["sum_ab"])
        assert a - b == Decimal(got["diff_ab"])
        assert a * b == Decimal(got["prod_ab"])
        assert half_up(a * b, 3) == Decimal(got["round_prod_3"])
        if b != 0:
            assert ctx.divide(a, b) == Decimal(got["quot_ab"])
        assert (a - b if a >= b else Decimal("0.01")) == Decimal(got["picked"])
        assert PASS == status["DIFF"]
    if {"a", "b", "c"} <= form.keys():
        assert min(a, b, c) == Decimal(got["smallest"])
        assert (PASS if a + b == c else FAIL) == status["SUM"]
        event(f"SUM {status['SUM']}")
    if {"a", "b", "k"} <= form.keys():
        assert max(a, b, Decimal(k)) == Decimal(got["largest"])
    if {"a", "k"} <= form.keys():
        assert a + k == Decimal(got["sum_ak"])
    if "k" in form:
        assert abs(k) == got["abs_k"]


# --- random conditions ---------------------------------------------------------------------------


def fired(ruleset: Ruleset, prepared: Prepared) -> dict[tuple[str, int], bool]:
    """(kind, index) → fired, for every rule of the ruleset's durable_rules definition."""
    names = get_engine().fire(
        ruleset.engine_name,
        ruleset.compiled.definition,
        ruleset.compiled.fact(prepared.env, prepared.tables),
    )
    refs = ruleset.compiled.rules
    out = {(ref.kind, ref.index): False for ref in refs.values()}
    for name in names:
        out[(refs[name].kind, refs[name].index)] = True
    return out


@property_settings(400)
@given(index=st.integers(0, POOL_SIZE - 1), application=random_forms())
def test_generated_conditions_decide_alike_and_by_kleene_logic(
    index: int, application: tuple[dt.date, dict[str, object], tuple[str, ...]]
) -> None:
    """Rulesets of random well-typed conditions (numbers, integers, dates, strings,
    functions, ``if``, tables, parameters and values) satisfy invariants 1–5, and the Rete
    network fires each outputs rule's hit rule exactly when its condition is TRUE."""
    ruleset = generated(generated_text(index))
    note(
        "\n".join(
            [f"{c.id}: {c.condition_text}" for c in ruleset.criteria]
            + [f"rule {i + 1}: {r.when_text}" for i, r in enumerate(ruleset.outputs.rows)]  # type: ignore[union-attr]
            + [f"{v.name} = {v.text}" for v in ruleset.values]
        )
    )
    day, complete, gone = application
    form = {k: v for k, v in complete.items() if k not in gone}
    _, prepared = check_decision(ruleset, day, form, complete)
    rules = fired(ruleset, prepared)
    for i, row in enumerate(ruleset.rows):
        t = truth(row, prepared.env, prepared.tables)
        assert (t is True) == rules[("hit", i)], f"rule {i + 1}"
        if ("miss", i) in rules:
            assert (t is False) == rules[("miss", i)], f"rule {i + 1}"


# --- limits of durable_rules ---------------------------------------------------------------------

LIMITS = """\
schema_version: 2
service: v2-limits
version: "1"
name: {zh: 极限, en: Limits}
authority: {zh: 测试机关, en: Test authority}
effective_from: 2020-01-01
status: draft
legal_basis:
  - {id: basis, title: 测试, issuer: 测试机关}
inputs:
  - {name: declared, type: boolean, title: {zh: 承诺, en: Declared}}
  - {name: n, type: integer, required: false, title: {zh: n, en: n}}
  - {name: m, type: integer, required: false, title: {zh: m, en: m}}
  - {name: s, type: string, required: false, title: {zh: s, en: s}}
criteria:
"""


def criteria_yaml(conditions: list[str]) -> str:
    """Criteria C0, C1, … of ``LIMITS``, one per condition, each on reject."""
    return "".join(
        f"  - id: C{i}\n    title: {{zh: 条件{i}, en: Condition {i}}}\n    legal_basis: [basis]\n"
        f"    condition: '{c}'\n    on_fail: reject\n    reason: {{zh: 不符合, en: Not met}}\n"
        for i, c in enumerate(conditions)
    )


LONG_CONDITIONS: dict[str, Callable[[int], str]] = {
    "in": lambda n: "form.s in [" + ", ".join(f'"v{i}"' for i in range(n)) + "]",
    "not in": lambda n: "form.s not in [" + ", ".join(f'"v{i}"' for i in range(n)) + "]",
    "or": lambda n: " or ".join(f"form.n == {i}" for i in range(n)),
    "and of ors": lambda n: " and ".join(f"(form.n != {i} or form.m != {i})" for i in range(n)),
}


@property_settings(60)
@given(
    kind=st.sampled_from(sorted(LONG_CONDITIONS)),
    n=st.integers(1, 20),
    s=st.sampled_from(("v0", "v13", "v19", "w")),
    number=st.integers(-1, 20),
)
def test_long_conditions_compile_for_durable_rules(kind: str, n: int, s: str, number: int) -> None:
    """A criterion listing up to twenty values, or chaining up to twenty alternatives (up to
    eight conjoined pairs), decides on durable_rules as on the reference evaluator."""
    size = min(n, 8) if kind == "and of ors" else n
    condition = LONG_CONDITIONS[kind](size)
    note(condition)
    ruleset = generated(LIMITS + criteria_yaml(["form.declared", condition]))
    form = {"declared": True, "n": number, "m": number, "s": s}
    check_decision(ruleset, dt.date(2024, 3, 1), form, form)


INTEGER_CRITERIA = [
    "form.declared",
    "form.n == form.m",
    "form.n < form.m",
    "form.n >= form.m",
    "form.n <= 9223372036854775807",
    "form.n >= -9223372036854775808",
    "form.n * form.m > 0",
    "form.n - form.m != 0",
    "abs(form.n) > 5",
    "-form.m < 0",
]
INT64 = st.one_of(
    st.sampled_from((2**53 + 1, 2**62, 2**63 - 1, -(2**63), -(2**63) + 1, 3037000500)),
    st.integers(-(2**63), 2**63 - 1),
    st.integers(-5, 5),
)


@property_settings(150)
@given(n=INT64, m=INT64)
def test_64_bit_integers_compare_exactly_and_overflow_is_unknown_on_both_evaluators(
    n: int, m: int
) -> None:
    """Integers are 64-bit (as durable_rules compares them): at the limits both evaluators
    agree, and a product or difference beyond them is UNKNOWN on both, never wrapped."""
    ruleset = generated(LIMITS + criteria_yaml(INTEGER_CRITERIA))
    form = {"declared": True, "n": n, "m": m}
    check_decision(ruleset, dt.date(2024, 3, 1), form, form)


def test_integers_beyond_64_bits_are_refused_where_they_enter() -> None:
    """A constant beyond 64 bits is a located error at validate time, a form value beyond
    them is refused by the form, and a registry cell beyond them makes the file malformed."""
    from engine import RulesetInvalid
    from engine.registries import convert_text

    with pytest.raises(RulesetInvalid) as info:
        generated(LIMITS + criteria_yaml(["form.n >= 18446744073709551616"]))
    assert "64-bit range" in info.value.errors[0].message
    ruleset = generated(LIMITS + criteria_yaml(INTEGER_CRITERIA))
    with pytest.raises(ValueError, match="less than or equal to 9223372036854775807"):
        ruleset.form_model.model_validate({"declared": True, "n": 2**63, "m": 1})
    with pytest.raises(ValueError, match="64-bit"):
        convert_text(str(2**64), "integer")


CHILD = """
import datetime as dt, sys
from engine import application_env, evaluate, parse_ruleset
ruleset = parse_ruleset(sys.stdin.read(), file="<stdin>")
env = application_env(application_date=dt.date(2024, 3, 1), id_number="440304199505010018",
                      name="测试申请人", form=FORM, evidence={})
for _ in range(20):
    print(evaluate(ruleset, env, evaluator="durable_rules").outcome.value, flush=True)
"""


def decide_in_a_child(text: str, form: Mapping[str, object]) -> tuple[int, list[str], str]:
    """Decide ``form`` twenty times on durable_rules in a child process: its exit code (−11
    or −6 when it was killed by a signal), the outcomes it printed, and its stderr's end."""
    child = subprocess.run(
        [sys.executable, "-c", CHILD.replace("FORM", repr(dict(form)))],
        input=text,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return child.returncode, child.stdout.split(), child.stderr[-600:]


def test_a_decision_where_no_rule_fires_is_referred_not_a_crash() -> None:
    """When every criterion is UNKNOWN (so no durable_rules rule fires), the application is
    referred and the process lives on."""
    code, outcomes, stderr = decide_in_a_child(LIMITS + criteria_yaml(["form.n >= 60"]), {})
    assert (0, ["REFERRED"] * 20) == (code, outcomes), stderr


def test_a_decision_where_65_rules_fire_does_not_crash() -> None:
    """A ruleset of 65 criteria, all passing (65 durable_rules rules fire), is approved and
    the process lives on."""
    conditions = [f"form.n != {i}" for i in range(65)]
    code, outcomes, stderr = decide_in_a_child(LIMITS + criteria_yaml(conditions), {"n": -1})
    assert (0, ["APPROVED"] * 20) == (code, outcomes), stderr
