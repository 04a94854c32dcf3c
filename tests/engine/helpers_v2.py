"""Helpers for ``test_v2_property``: its fixtures, application generators and oracles.

The oracles are written from the language reference (docs/ruleset-language.md), not from the
engine's code: DMN 1.5's hit policies, dated parameters, and Python's ``decimal`` module.
The generator of random expressions builds well-typed conditions over a fixed form; the
rulesets made of them come from a fixed, seeded pool, so that a run compiles a bounded number
of durable_rules rulesets whatever its number of examples.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import decimal
import itertools
import json
import random
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import Any

from hypothesis import strategies as st

from engine import CriterionStatus, Evaluation, Ruleset, application_env, load_ruleset
from engine import parse_ruleset as engine_parse_ruleset
from engine._compiled import CheckedTable
from engine._semantics import MISSING, truth, value
from engine.dates import anniversary
from engine.expr import And, Compare, Expr, In, ListLit, Literal, Not, Or, parse
from engine.model import HIT_POLICIES, InputField
from engine.text import text_problem

__all__ = [
    "APPLICANT_ID",
    "DATES",
    "DECIMALS",
    "ENUM_VALUES",
    "FIXTURES_V2",
    "GENERATED_FORM",
    "HALVES",
    "HERE",
    "INTS",
    "LAST_DAY",
    "MAX_RULE_SIZE",
    "OPS",
    "OUTPUT_FIXTURES",
    "POLICIES",
    "POOL_SIZE",
    "STATUS_OF_TRUTH",
    "STRINGS",
    "Case",
    "Constants",
    "ExprGen",
    "Verdict",
    "application_days",
    "baseline",
    "canon",
    "canon_json",
    "cases",
    "comparable",
    "completions",
    "constants",
    "default_value",
    "dmn_verdict",
    "env_of",
    "expected_age",
    "expected_anniversary",
    "expressions",
    "fixture",
    "floats_in",
    "generated",
    "generated_text",
    "in_force",
    "input_values",
    "nodes_of",
    "random_forms",
    "rete_size",
    "row_truths",
    "row_value",
    "statuses",
]

HERE = Path(__file__).resolve().parent
FIXTURES_V2 = HERE / "fixtures" / "v2"
APPLICANT_ID = "440304199505010018"
POLICIES = HIT_POLICIES
OUTPUT_FIXTURES = tuple("outputs-" + p.lower().replace(" ", "-") for p in POLICIES)
STATUS_OF_TRUTH = {
    True: CriterionStatus.PASS,
    False: CriterionStatus.FAIL,
    None: CriterionStatus.UNKNOWN,
}
LAST_DAY = dt.date(2026, 12, 31)
"""Application dates are drawn up to here for a version without ``effective_to``."""


# --- rulesets ----------------------------------------------------------------------------------


@cache
def fixture(name: str) -> Ruleset:
    """A fixture under ``fixtures/v2/``, loaded (and compiled) once per session."""
    return load_ruleset(FIXTURES_V2 / f"{name}.yaml")


_GENERATED: dict[str, Ruleset] = {}


def generated(text: str) -> Ruleset:
    """A generated ruleset, loaded once per distinct text (loading compiles it)."""
    ruleset = _GENERATED.get(text)
    if ruleset is None:
        ruleset = _GENERATED[text] = engine_parse_ruleset(text, file="<generated>")
    return ruleset


def env_of(day: dt.date, form: Mapping[str, object]) -> dict[str, object]:
    """The facts of an application with this form and no registry evidence."""
    return application_env(
        application_date=day, id_number=APPLICANT_ID, name="测试申请人", form=form, evidence={}
    )


def comparable(evaluation: Evaluation) -> dict[str, object]:
    """Everything an evaluation concluded, without the name of the evaluator."""
    return evaluation.model_dump(mode="json", exclude={"evaluator"})


def statuses(evaluation: Evaluation) -> dict[str, CriterionStatus]:
    """Criterion id → status."""
    return {c.id: c.status for c in evaluation.criteria}


def floats_in(obj: object, path: str = "$") -> list[str]:
    """Where in a dumped evaluation a binary float appears (none may)."""
    if isinstance(obj, float):
        return [f"{path} = {obj!r}"]
    if isinstance(obj, Mapping):
        return [p for k, v in obj.items() for p in floats_in(v, f"{path}.{k}")]
    if isinstance(obj, list | tuple):
        return [p for i, v in enumerate(obj) for p in floats_in(v, f"{path}[{i}]")]
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return floats_in(dataclasses.asdict(obj), path)
    return []


# --- independent oracles -----------------------------------------------------------------------


def expected_anniversary(day: dt.date, years: int) -> dt.date:
    """The day ``years`` after ``day``; 29 February falls on 28 February in common years."""
    try:
        return day.replace(year=day.year + years)
    except ValueError:
        return dt.date(day.year + years, 2, 28)


def expected_age(birth: dt.date, day: dt.date) -> int:
    """Full years (周岁) on ``day``: N years only from the day after the Nth birthday."""
    years = day.year - birth.year
    return years if day > expected_anniversary(birth, years) else years - 1


def in_force(ruleset: Ruleset, day: dt.date) -> dict[str, tuple[dt.date, dt.date | None, object]]:
    """Each parameter's period in force on ``day``, read from the document: start, last day,
    value (the latest period starting on or before ``day``)."""
    out: dict[str, tuple[dt.date, dt.date | None, object]] = {}
    for name, param in ruleset.doc.parameters.items():
        periods = list(param.values)
        for j, period in enumerate(periods):
            nxt = periods[j + 1].from_ if j + 1 < len(periods) else None
            if period.from_ <= day and (nxt is None or day < nxt):
                end = nxt - dt.timedelta(days=1) if nxt is not None else None
                out[name] = (period.from_, end, period.value)
    return out


def canon(v: object) -> object:
    """A computed value, comparable across representations: numbers as ``Decimal``."""
    if isinstance(v, bool) or v is MISSING or v is None:
        return v
    if isinstance(v, int | Decimal):
        return Decimal(v)
    if isinstance(v, list | tuple):
        return tuple(canon(i) for i in v)
    if isinstance(v, Mapping):
        return {str(k): canon(i) for k, i in v.items()}
    return v


def canon_json(v: object, type_name: str) -> object:
    """A value as recorded in JSON (numbers as strings, dates as ISO text), made comparable."""
    if isinstance(v, list):
        return tuple(canon_json(i, type_name) for i in v)
    if isinstance(v, Mapping):
        return {str(k): canon_json(i, type_name) for k, i in v.items()}
    if v is None or isinstance(v, bool):
        return v
    if type_name in ("integer", "number") and isinstance(v, str | int):
        return Decimal(v)
    if type_name == "date" and isinstance(v, str):
        return dt.date.fromisoformat(v)
    return v


@dataclass(frozen=True)
class Verdict:
    """What a decision table gives: ``ok`` with outputs, ``no_match``, ``ambiguous`` or
    ``unknown`` (an output it needs reads a missing fact)."""

    status: str
    outputs: tuple[tuple[str, object], ...] | None = None


Cell = Callable[[int, str], object]


def dmn_verdict(
    table: CheckedTable,
    matched: Sequence[bool],
    cell: Cell,
    default: Callable[[str], object] | None,
) -> Verdict:
    """The table's result under DMN 1.5 when each rule's condition is known (``matched``).

    ``cell(rule, column)`` computes an output (``MISSING`` when it reads a missing fact).
    Written from the language reference's table of hit policies, not from engine.tables.
    """
    columns = [c.name for c in table.columns]
    hits = [i for i, m in enumerate(matched) if m]
    policy = table.hit_policy

    def outputs_of(i: int) -> dict[str, object] | None:
        out = {c: cell(i, c) for c in columns}
        return None if any(v is MISSING for v in out.values()) else out

    def ok(out: Mapping[str, object]) -> Verdict:
        return Verdict("ok", tuple((c, canon(out[c])) for c in columns))

    def rank(i: int) -> tuple[int, ...]:
        row = table.rows[i]
        ranked = [
            list(c.priority).index(row.cells[c.name].value)  # type: ignore[union-attr]
            for c in table.columns
            if c.priority
        ]
        return (*ranked, i)

    def nothing() -> Verdict:
        if table.default is None or default is None:
            return Verdict("no_match")
        out = {c: default(c) for c in columns}
        return Verdict("unknown") if any(v is MISSING for v in out.values()) else ok(out)

    if policy == "COLLECT COUNT":
        return ok({columns[0]: len(hits)})
    if policy in ("RULE ORDER", "OUTPUT ORDER", "COLLECT"):
        order = sorted(hits, key=rank) if policy == "OUTPUT ORDER" else hits
        rows = [outputs_of(i) for i in order]
        if any(r is None for r in rows):
            return Verdict("unknown")
        return ok({c: [r[c] for r in rows if r is not None] for c in columns})
    if not hits:
        return nothing()
    if policy == "UNIQUE" and len(hits) > 1:
        return Verdict("ambiguous")
    if policy in ("UNIQUE", "FIRST", "PRIORITY"):
        chosen = min(hits, key=rank) if policy == "PRIORITY" else hits[0]
        out = outputs_of(chosen)
        return Verdict("unknown") if out is None else ok(out)
    rows = [outputs_of(i) for i in hits]
    if any(r is None for r in rows):
        return Verdict("unknown")
    present = [r for r in rows if r is not None]
    if policy == "ANY":
        if any(canon(r) != canon(present[0]) for r in present[1:]):
            return Verdict("ambiguous")
        return ok(present[0])
    values = [r[columns[0]] for r in present]
    if policy == "COLLECT SUM":
        with decimal.localcontext(decimal.Context(prec=34)):
            total = sum((Decimal(v) for v in values), Decimal(0))  # type: ignore[arg-type]
        return ok({columns[0]: total})
    pick = min if policy == "COLLECT MIN" else max
    return ok({columns[0]: pick(values)})  # type: ignore[type-var]


def completions(
    table: CheckedTable,
    row_truth: Sequence[bool | None],
    cell: Cell,
    default: Callable[[str], object] | None,
) -> list[Verdict]:
    """The table's result for every way its UNKNOWN rules could turn out."""
    unknown = [i for i, t in enumerate(row_truth) if t is None]
    verdicts = []
    for guess in itertools.product((False, True), repeat=len(unknown)):
        matched = [bool(t) for t in row_truth]
        for i, g in zip(unknown, guess, strict=True):
            matched[i] = g
        verdicts.append(dmn_verdict(table, matched, cell, default))
    return verdicts


def row_truths(table: CheckedTable, env: Mapping[str, object], tables: Any) -> list[bool | None]:
    """Each rule's Kleene truth (a rule without a condition always matches)."""
    return [True if r.when is None else truth(r.when, env, tables) for r in table.rows]


# --- applications --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """An application with every optional input given, and the same one with some left out."""

    day: dt.date
    complete: dict[str, object]
    left_out: tuple[str, ...]

    @property
    def partial(self) -> dict[str, object]:
        return {k: v for k, v in self.complete.items() if k not in self.left_out}


def nodes_of(node: Expr) -> Iterator[Expr]:
    """The node and every node under it."""
    yield node
    for f in dataclasses.fields(node):
        v = getattr(node, f.name)
        for item in v if isinstance(v, tuple) else (v,):
            if dataclasses.is_dataclass(item) and not isinstance(item, type):
                yield from nodes_of(item)  # type: ignore[arg-type]


def expressions(ruleset: Ruleset) -> Iterator[Expr]:
    """Every expression of a ruleset: conditions, values, table rules, cells and defaults."""
    yield from (c.condition for c in ruleset.criteria)
    tables = [v.table for v in ruleset.values if v.table is not None]
    yield from (v.expr for v in ruleset.values if v.expr is not None)
    if ruleset.outputs is not None:
        tables.append(ruleset.outputs)
    for table in tables:
        for row in table.rows:
            if row.when is not None:
                yield row.when
            yield from row.cells.values()
        yield from (table.default or {}).values()


@dataclass(frozen=True)
class Constants:
    """The constants a ruleset compares with: generated values cluster around them."""

    ints: tuple[int, ...]
    decimals: tuple[Decimal, ...]
    dates: tuple[dt.date, ...]


def constants(ruleset: Ruleset) -> Constants:
    """The ruleset's constants (cached by content)."""
    known = _CONSTANTS.get(ruleset.content_hash)
    if known is None:
        known = _CONSTANTS[ruleset.content_hash] = _constants(ruleset)
    return known


_CONSTANTS: dict[str, Constants] = {}


def _constants(ruleset: Ruleset) -> Constants:
    found: list[object] = []
    for expr in expressions(ruleset):
        found.extend(n.value for n in nodes_of(expr) if isinstance(n, Literal))
    for param in ruleset.parameters:
        for period in param.periods:
            v = period.value
            found.extend(v.values() if isinstance(v, dict) else [v])
    ints = sorted({v for v in found if isinstance(v, int) and not isinstance(v, bool)})
    decimals = sorted({v for v in found if isinstance(v, Decimal)})
    days = sorted({v for v in found if isinstance(v, dt.date)})
    return Constants(tuple(ints) or (0,), tuple(decimals) or (Decimal(0),), tuple(days))


def application_days(ruleset: Ruleset) -> st.SearchStrategy[dt.date]:
    """Days in the version's period: anywhere, or within two days of a period boundary."""
    start = ruleset.doc.effective_from
    end = ruleset.doc.effective_to or LAST_DAY
    edges = sorted({start} | {p.start for param in ruleset.parameters for p in param.periods})
    near = st.tuples(st.sampled_from(edges), st.integers(-2, 2)).map(
        lambda t: min(max(t[0] + dt.timedelta(days=t[1]), start), end)
    )
    return st.one_of(near, st.dates(min_value=start, max_value=end))


HALVES = tuple(
    Decimal(s)
    for s in ("0.5", "2.5", "-2.5", "1.005", "2.345", "0.05", "-0.005", "1049.325", "0.0005")
)
"""Numbers that sit on a rounding half: half-up and banker's rounding differ on most."""


def _bounded(field: InputField, lo: int, hi: int) -> tuple[Decimal, Decimal]:
    low = field.minimum if field.minimum is not None else Decimal(lo)
    high = field.maximum if field.maximum is not None else Decimal(hi)
    return low, high


def typed_text(size: int) -> st.SearchStrategy[str]:
    """Text a person can type into a form string (``engine.text`` refuses control, format and
    bidi characters, surrogates and noncharacters)."""
    alphabet = st.characters(exclude_categories=("Cc", "Cs", "Cf", "Zl", "Zp"))
    return st.text(alphabet, max_size=size).filter(lambda s: text_problem(s) is None)


def input_values(field: InputField, day: dt.date, known: Constants) -> st.SearchStrategy[object]:
    """Values of one form input, spread over its range and clustered around the constants."""
    if field.type == "boolean":
        return st.booleans()
    if field.type == "enum":
        return st.sampled_from(tuple(field.values or ()))
    if field.type == "string":
        size = field.max_length or 20
        return st.one_of(
            st.sampled_from(("张三", "", 'O"Brien', "李\\四")).map(lambda s: s[:size]),
            typed_text(size),
        )
    if field.type == "integer":
        low, high = _bounded(field, -1000, 1000)
        lo, hi = int(low), int(high)
        near = st.tuples(st.sampled_from(known.ints), st.integers(-1, 1)).map(sum)
        small = st.integers(max(lo, -3), max(min(hi, 12), max(lo, -3)))
        return st.one_of(small, near, st.integers(lo, hi)).map(lambda n: min(max(n, lo), hi))
    if field.type == "number":
        low, high = _bounded(field, -1_000_000, 1_000_000)
        steps = st.sampled_from([Decimal(s) for s in ("0", "0.01", "-0.01", "0.005", "1", "-1")])
        near = st.tuples(st.sampled_from(known.decimals + tuple(map(Decimal, known.ints))), steps)
        anywhere = st.integers(0, 4).flatmap(
            lambda places: st.decimals(
                min_value=low, max_value=high, places=places, allow_nan=False
            )
        )
        return st.one_of(
            near.map(lambda t: t[0] + t[1]),
            st.sampled_from(HALVES),
            st.decimals(
                min_value=max(low, Decimal(0)), max_value=min(high, Decimal(5000)), places=2
            ),
            anywhere,
        ).map(lambda d: min(max(d, low), high))
    # date: around the application day, around a birthday N years ago, around the constants
    years = [n for n in known.ints if 0 < n <= 100] or [1]
    around_years = st.tuples(st.sampled_from(years), st.integers(-2, 2)).map(
        lambda t: anniversary(day, -t[0]) + dt.timedelta(days=t[1])
    )
    around_dates = st.tuples(st.sampled_from(known.dates or (day,)), st.integers(-2, 2)).map(
        lambda t: t[0] + dt.timedelta(days=t[1])
    )
    leap = st.sampled_from((dt.date(1984, 2, 29), dt.date(2000, 2, 29), dt.date(2020, 2, 29)))
    return st.one_of(
        st.integers(-800, 400).map(lambda n: day + dt.timedelta(days=n)),
        around_years,
        around_dates,
        leap,
        st.dates(min_value=dt.date(1940, 1, 1), max_value=dt.date(2030, 12, 31)),
    )


def baseline(ruleset: Ruleset) -> tuple[dt.date, dict[str, object]]:
    """The ruleset's first test: an application (mostly approvable) that cases start from."""
    example = ruleset.doc.tests[0]
    raw_day = example.application["date"]
    day = raw_day if isinstance(raw_day, dt.date) else dt.date.fromisoformat(str(raw_day))
    form = ruleset.form_model.model_validate(example.application.get("form") or {})
    return day, {k: v for k, v in form.model_dump().items() if v is not None}


def _some(names: Sequence[str], most: int) -> st.SearchStrategy[list[str]]:
    """None of ``names`` about half the time, otherwise up to ``most`` of them."""
    return st.one_of(
        st.just([]), st.lists(st.sampled_from(names), min_size=1, max_size=most, unique=True)
    )


@st.composite
def cases(draw: st.DrawFn, name: str, *, vary: int = 3, leave_out: int = 4) -> Case:
    """An application to fixture ``name``: its first test moved to a generated day (its
    dates moved along), up to ``vary`` inputs drawn from their whole range, and up to
    ``leave_out`` optional inputs left out (missing)."""
    ruleset = fixture(name)
    base_day, base_form = baseline(ruleset)
    known = constants(ruleset)
    day = draw(application_days(ruleset), label="application.date")
    shift = day - base_day
    form: dict[str, object] = {}
    for f in ruleset.doc.inputs:
        v = base_form.get(f.name)
        if isinstance(v, dt.date):
            try:
                v = v + shift
            except OverflowError:
                v = None
        form[f.name] = v if v is not None else draw(input_values(f, day, known), label=f.name)
    names = [f.name for f in ruleset.doc.inputs]
    by_name = {f.name: f for f in ruleset.doc.inputs}
    for name in draw(_some(names, vary), label="vary"):
        form[name] = draw(input_values(by_name[name], day, known), label=name)
    complete = ruleset.form_model.model_validate(form).model_dump()
    optional = [f.name for f in ruleset.doc.inputs if not f.required]
    gone = draw(_some(optional, leave_out), label="missing")
    return Case(day, complete, tuple(gone))


# --- random expressions --------------------------------------------------------------------------

ENUM_VALUES = ("甲", "乙", "丙")
STRINGS = ("甲", "abc", "", "深圳市")
DECIMALS = ("0.1", "0.2", "0.3", "0.5", "1.5", "2.25", "0.005", "100.01", "2.345", "10.0")
INTS = ("0", "1", "2", "3", "5", "7", "12", "30", "60", "365")
DATES = ("2020-02-29", "2021-12-31", "2022-07-01", "2023-01-01", "2024-02-29", "2025-06-30")
OPS = ("==", "!=", "<", "<=", ">", ">=")
GENERATED_FORM = {
    "i1": "integer",
    "i2": "integer",
    "n1": "number",
    "n2": "number",
    "n3": "number",
    "d1": "date",
    "d2": "date",
    "s1": "enum",
    "s2": "string",
    "b1": "boolean",
    "b2": "boolean",
}
POOL_SIZE = 120
"""Distinct generated rulesets: each is compiled once, whatever the number of examples."""
MAX_RULE_SIZE = 12
"""Upper bound on a generated condition's size in the Rete network (``rete_size``): durable_rules
refuses an expression of more than 32 steps (MAX_SEQUENCE_EXPRESSIONS). Longer conditions are
the subject of test_long_conditions_compile_for_durable_rules."""


class ExprGen:
    """Well-typed expression text over the generated form, its parameters and values.

    Every composite term is parenthesised, so the text parses to exactly the tree built.
    """

    def __init__(self, rng: random.Random, *, values: bool) -> None:
        self.r = rng
        self.values = values
        self.vocab: list[str] = []

    def _one(self, *makers: Callable[[], str]) -> str:
        return self.r.choice(makers)()

    def num(self, d: int) -> str:
        r = self.r
        if d <= 0 or r.random() < 0.3:
            return self._one(
                lambda: r.choice(("form.n1", "form.n2", "form.n3")),
                lambda: r.choice(DECIMALS),
                lambda: "(-" + r.choice(DECIMALS) + ")",
                lambda: "p_num",
                lambda: "rate[form.s1]",
                lambda: "p_map[form.s1]",
                lambda: "v_num" if self.values else "form.n1",
                lambda: self.int_(0),
            )
        a = lambda: self.num(d - 1)  # noqa: E731
        return self._one(
            lambda: f"({a()} + {a()})",
            lambda: f"({a()} - {a()})",
            lambda: f"({a()} * {r.choice(DECIMALS + INTS)})",
            lambda: f"({a()} / {a()})",
            lambda: f"{r.choice(('round', 'floor', 'ceil'))}({a()}, {r.randrange(4)})",
            lambda: f"abs({a()})",
            lambda: f"{r.choice(('min', 'max'))}({a()}, {a()})",
            lambda: f"(if {self.boolean(d - 1)} then {a()} else {a()})",
            lambda: f"(-{a()})",
        )

    def int_(self, d: int) -> str:
        r = self.r
        if d <= 0 or r.random() < 0.3:
            return self._one(
                lambda: r.choice(("form.i1", "form.i2")),
                lambda: r.choice(INTS),
                lambda: "p_int",
                lambda: f"{r.choice(('year', 'month', 'day'))}({self.date(0)})",
                lambda: f"age_on({self.date(0)}, application.date)",
                lambda: f"days_between({self.date(0)}, {self.date(0)})",
            )
        a = lambda: self.int_(d - 1)  # noqa: E731
        return self._one(
            lambda: f"({a()} + {a()})",
            lambda: f"({a()} - {a()})",
            lambda: f"({a()} * {r.choice(INTS)})",
            lambda: f"{r.choice(('round', 'floor', 'ceil'))}({self.num(d - 1)})",
            lambda: f"abs({a()})",
            lambda: f"{r.choice(('min', 'max'))}({a()}, {a()}, {a()})",
            lambda: f"(if {self.boolean(d - 1)} then {a()} else {a()})",
            lambda: f"({self.date(d - 1)} - {self.date(d - 1)})",
        )

    def date(self, d: int) -> str:
        r = self.r
        if d <= 0 or r.random() < 0.4:
            return self._one(
                lambda: r.choice(("form.d1", "form.d2")),
                lambda: "application.date",
                lambda: f'date("{r.choice(DATES)}")',
                lambda: "p_day",
            )
        a = lambda: self.date(d - 1)  # noqa: E731
        small = lambda: r.choice((*INTS, "form.i1", "p_int"))  # noqa: E731
        return self._one(
            lambda: f"({a()} + {small()})",
            lambda: f"({a()} - {small()})",
            lambda: f"{r.choice(('years_after', 'years_before'))}({a()}, {small()})",
            lambda: f"{r.choice(('min', 'max'))}({a()}, {a()})",
            lambda: f"(if {self.boolean(d - 1)} then {a()} else {a()})",
        )

    def combo(self) -> str:
        """A sum or difference of vocabulary terms, in either association."""
        v = lambda: self.r.choice(self.vocab)  # noqa: E731
        return self._one(
            v,
            lambda: f"({v()} - {v()})",
            lambda: f"({v()} + {v()})",
            lambda: f"(({v()} - {v()}) - {v()})",
            lambda: f"({v()} - ({v()} - {v()}))",
        )

    def atom(self, d: int) -> str:
        r = self.r
        op = r.choice(OPS)
        makers: list[Callable[[], str]] = [
            lambda: f"{self.num(d)} {op} {self.num(d)}",
            lambda: f"{self.int_(d)} {op} {self.int_(d)}",
            lambda: f"{self.date(d)} {op} {self.date(d)}",
            lambda: f'form.s1 {r.choice(("==", "!="))} "{r.choice(ENUM_VALUES)}"',
            lambda: f'form.s2 {op} "{r.choice(STRINGS)}"',
            lambda: f"form.s1 {op} form.s2",
            lambda: (
                "form.s1 "
                + r.choice(("in", "not in"))
                + " ["
                + ", ".join(f'"{v}"' for v in r.sample(ENUM_VALUES, r.randint(1, 3)))
                + "]"
            ),
            lambda: f"form.s1 {r.choice(('in', 'not in'))} {r.choice(('rate', 'p_map'))}",
            lambda: r.choice(("form.b1", "form.b2", "p_flag")),
            lambda: f"form.b1 {r.choice(('==', '!='))} {r.choice(('true', 'false', 'form.b2'))}",
        ]
        if self.values:
            makers.append(lambda: "v_flag")
        if self.vocab:
            makers += [lambda: self.rearranged(op)] * 8
        return r.choice(makers)()

    def rearranged(self, op: str) -> str:
        """A comparison over the ruleset's three vocabulary terms, with a term moved across
        the comparison (``x < y - z``, ``x - y < z``) or combined either way: rearranged
        comparisons share derived terms, which the compiler names by their text."""
        r = self.r
        x, y, z = self.vocab if r.random() < 0.75 else r.sample(self.vocab, 3)
        return r.choice(
            (
                f"{x} {op} ({y} - {z})",
                f"({x} - {y}) {op} {z}",
                f"({x} + {y}) {op} {z}",
                f"{x} {op} ({y} + {z})",
                f"{self.combo()} {op} {self.combo()}",
            )
        )

    def boolean(self, d: int) -> str:
        r = self.r
        if d <= 0 or r.random() < 0.4:
            return self.atom(max(d, 1) if r.random() < 0.5 else 0)
        a = lambda: self.boolean(d - 1)  # noqa: E731
        return self._one(
            lambda: f"({a()} and {a()})",
            lambda: f"({a()} or {a()})",
            lambda: f"({a()} and {a()} or {a()})",
            lambda: f"(not {a()})",
            lambda: f"(if {a()} then {a()} else {a()})",
        )


def rete_size(node: Expr, positive: bool = True) -> int:
    """About how many steps a condition takes in one durable_rules expression (see the
    compiler: each comparison is an ``$and`` of guards and a test, ``in`` an ``$or`` of them)."""
    match node:
        case And(items=items) | Or(items=items):
            return 1 + sum(rete_size(i, positive) for i in items)
        case Not(operand=o):
            return rete_size(o, not positive)
        case In(haystack=h):
            return 1 + 2 * len(h.items) if isinstance(h, ListLit) else 1 + 2 * len(ENUM_VALUES)
        case Literal():
            return 1
        case Compare():
            return 2
    return 2


def _usable(text: str) -> bool:
    """Small enough for durable_rules, and not constant (the checker refuses those)."""
    node = parse(text)
    if max(rete_size(node, True), rete_size(node, False)) > MAX_RULE_SIZE:
        return False
    return truth(node, {}, {"rate": dict.fromkeys(ENUM_VALUES, Decimal(1))}) is None


def _condition(gen: ExprGen) -> str:
    while True:
        text = gen.boolean(gen.r.randint(1, 3))
        if _usable(text):
            return text


def _yaml(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


_GENERATED_HEAD = """\
schema_version: 2
service: v2-generated
version: "g{index}"
name: {{zh: 生成的规则集, en: Generated ruleset}}
authority: {{zh: 测试机关, en: Test authority}}
effective_from: 2020-01-01
status: draft
legal_basis:
  - {{id: basis, title: 生成的规则, issuer: 测试机关}}
inputs:
  - {{name: run, type: boolean, title: {{zh: 运行, en: Run}}}}
  - {{name: i1, type: integer, required: false, title: {{zh: i1, en: i1}}}}
  - {{name: i2, type: integer, required: false, title: {{zh: i2, en: i2}}}}
  - {{name: n1, type: number, required: false, title: {{zh: n1, en: n1}}}}
  - {{name: n2, type: number, required: false, title: {{zh: n2, en: n2}}}}
  - {{name: n3, type: number, required: false, title: {{zh: n3, en: n3}}}}
  - {{name: d1, type: date, required: false, title: {{zh: d1, en: d1}}}}
  - {{name: d2, type: date, required: false, title: {{zh: d2, en: d2}}}}
  - {{name: s1, type: enum, values: [甲, 乙, 丙], required: false, title: {{zh: s1, en: s1}}}}
  - {{name: s2, type: string, required: false, title: {{zh: s2, en: s2}}}}
  - {{name: b1, type: boolean, required: false, title: {{zh: b1, en: b1}}}}
  - {{name: b2, type: boolean, required: false, title: {{zh: b2, en: b2}}}}
tables:
  rate:
    title: {{zh: 系数, en: Rate}}
    legal_basis: [basis]
    values: {{甲: 1.5, 乙: 0.75, 丙: 2.0}}
parameters:
  p_num:
    title: {{zh: 数, en: Number}}
    type: number
    values:
      - {{from: 2020-01-01, value: 10.5, legal_basis: [basis]}}
      - {{from: 2023-01-01, value: 12.25, legal_basis: [basis]}}
  p_int:
    title: {{zh: 整数, en: Integer}}
    type: integer
    values:
      - {{from: 2020-01-01, value: 3, legal_basis: [basis]}}
      - {{from: 2023-01-01, value: 5, legal_basis: [basis]}}
  p_day:
    title: {{zh: 日, en: Day}}
    type: date
    values:
      - {{from: 2020-01-01, value: 2020-06-30, legal_basis: [basis]}}
      - {{from: 2023-01-01, value: 2023-06-30, legal_basis: [basis]}}
  p_flag:
    title: {{zh: 开关, en: Flag}}
    type: boolean
    values:
      - {{from: 2020-01-01, value: false, legal_basis: [basis]}}
      - {{from: 2023-01-01, value: true, legal_basis: [basis]}}
  p_map:
    title: {{zh: 分档系数, en: Rate by class}}
    type: number
    values:
      - {{from: 2020-01-01, value: {{甲: 1.1, 乙: 0.9}}, legal_basis: [basis]}}
      - {{from: 2023-01-01, value: {{甲: 1.2, 乙: 1.0, 丙: 0.5}}, legal_basis: [basis]}}
values:
  v_num:
    title: {{zh: 中间数, en: Intermediate number}}
    expr: {v_num}
  v_flag:
    title: {{zh: 中间条件, en: Intermediate condition}}
    expr: {v_flag}
criteria:
  - id: RUN
    title: {{zh: 运行, en: Run}}
    legal_basis: [basis]
    condition: form.run
    on_fail: refer
    reason: {{zh: 未运行, en: Not run}}
"""


@cache
def generated_text(index: int) -> str:
    """Generated ruleset number ``index`` of the pool: a few random criteria (sharing a few
    number terms, so that equal and nearly equal terms meet in one ruleset), random values, and
    an outputs table whose hit policy cycles through every policy."""
    rng = random.Random(20_260_000 + index)
    plain = ExprGen(rng, values=False)
    v_num, v_flag = plain.num(2), _condition(plain)
    gen = ExprGen(rng, values=True)
    gen.vocab = [gen.num(rng.choice((0, 0, 1))) for _ in range(3)]
    lines = [_GENERATED_HEAD.format(index=index, v_num=_yaml(v_num), v_flag=_yaml(v_flag))]
    for k in range(rng.randint(3, 6)):
        lines.append(
            f"  - id: G{k + 1}\n"
            f"    title: {{zh: 条件{k + 1}, en: Condition {k + 1}}}\n"
            f"    legal_basis: [basis]\n"
            f"    condition: {_yaml(_condition(gen))}\n"
            f"    on_fail: {rng.choice(('reject', 'refer'))}\n"
            f"    reason: {{zh: 不符合, en: Not met}}\n"
        )
    policy = POLICIES[index % len(POLICIES)]
    ranked = policy in ("PRIORITY", "OUTPUT ORDER")
    lines.append(
        "outputs:\n  id: out\n  title: {zh: 输出, en: Output}\n  legal_basis: [basis]\n"
        f"  hit_policy: {policy}\n"
        "  columns:\n"
        f"    out: {{type: integer{', values: [3, 2, 1]' if ranked else ''}}}\n"
    )
    if policy in ("UNIQUE", "ANY", "FIRST", "PRIORITY") and rng.random() < 0.5:
        lines.append("  default: {out: 1}\n")
    lines.append("  rules:\n")
    for _ in range(rng.randint(2, 4)):
        if ranked or policy == "COLLECT COUNT" or rng.random() < 0.5:
            cell = str(rng.choice((1, 2, 3)))
        else:
            cell = _yaml(gen.int_(1))
        when = "" if rng.random() < 0.1 else f"when: {_yaml(_condition(gen))}, "
        lines.append(f"    - {{{when}then: {{out: {cell}}}}}\n")
    return "".join(lines)


@st.composite
def random_forms(draw: st.DrawFn) -> tuple[dt.date, dict[str, object], tuple[str, ...]]:
    """A day and a complete form over the generated inputs, and which inputs to leave out."""
    day = draw(
        st.one_of(
            st.sampled_from((dt.date(2022, 12, 31), dt.date(2023, 1, 1), dt.date(2024, 2, 29))),
            st.dates(min_value=dt.date(2020, 1, 1), max_value=LAST_DAY),
        ),
        label="application.date",
    )
    ints = st.one_of(
        st.integers(-3, 12), st.sampled_from((30, 60, 365, -365)), st.integers(-1000, 1000)
    )
    numbers = st.one_of(
        st.sampled_from([Decimal(s) for s in DECIMALS] + list(HALVES)),
        st.integers(-3, 12).map(Decimal),
        st.decimals(min_value=-10_000, max_value=10_000, places=3),
    )
    days = st.one_of(
        st.integers(-800, 400).map(lambda n: day + dt.timedelta(days=n)),
        st.sampled_from([dt.date.fromisoformat(s) for s in DATES]),
        st.dates(min_value=dt.date(1940, 1, 1), max_value=dt.date(2030, 12, 31)),
    )
    strategies: dict[str, st.SearchStrategy[Any]] = {
        "integer": ints,
        "number": numbers,
        "date": days,
        "enum": st.sampled_from(ENUM_VALUES),
        "string": st.one_of(st.sampled_from(STRINGS), typed_text(8)),
        "boolean": st.booleans(),
    }
    form: dict[str, object] = {"run": True}
    for name, type_name in GENERATED_FORM.items():
        form[name] = draw(strategies[type_name], label=name)
    gone = draw(_some(sorted(GENERATED_FORM), 5), label="missing")
    return day, form, tuple(gone)


def row_value(table: CheckedTable, env: Mapping[str, object], tables: Any) -> Cell:
    """``cell(rule, column)`` for a table under ``env``."""
    return lambda i, c: value(table.rows[i].cells[c], env, tables)


def default_value(
    table: CheckedTable, env: Mapping[str, object], tables: Any
) -> Callable[[str], object] | None:
    if table.default is None:
        return None
    default = table.default
    return lambda c: value(default[c], env, tables)
