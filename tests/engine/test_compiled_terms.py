"""The compiled closures the decision path uses compute exactly what ``value`` and ``truth``
(the tree walkers) compute, for every sub-expression, with one memo shared across a decision;
and results built without validation equal validated ones.

Over rulesets of randomly generated well-typed conditions (every v2 construct), the v2
fixtures with applications around their boundaries, and the shipped talent rulesets with
varied applications (records and fields missing).
"""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Iterator, Mapping

import pytest
from helpers_engine import catalog, random_application
from helpers_v2 import (
    FIXTURES_V2,
    POOL_SIZE,
    cases,
    env_of,
    expressions,
    fixture,
    generated,
    generated_text,
    nodes_of,
    random_forms,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from engine import Ruleset, evaluate
from engine._semantics import MISSING, Memo, compile_truth, compile_value, truth, value
from engine.decision import (
    CriterionResult,
    Evaluation,
    ParameterUse,
    Reason,
    ValueResult,
    prepare_env,
)
from engine.examples import run_examples
from engine.expr import Expr, ListLit, Name

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _same(want: object, got: object) -> bool:
    """Equal and of the same type (``True == 1`` and ``Decimal(2) == 2`` are not enough)."""
    return type(want) is type(got) and (want is got or want == got)


def _walk(ruleset: Ruleset) -> Iterator[Expr]:
    """Every sub-expression of every expression of a ruleset, and its templates' terms."""
    seen: set[int] = set()
    roots = list(expressions(ruleset))
    for crit in ruleset.criteria:
        roots.extend(crit.terms)
        for template in (crit.reason_zh, crit.reason_en):
            roots.extend(p[0] for p in template.parts if not isinstance(p, str))
    for root in roots:
        for node in nodes_of(root):
            if id(node) not in seen:
                seen.add(id(node))
                yield node


def _check_all(ruleset: Ruleset, env: Mapping[str, object]) -> None:
    """Compiled value and truth of every node equal the walkers', through one shared memo
    (as in a decision) and through a fresh one."""
    prepared = prepare_env(ruleset, env)
    facts, tables = prepared.env, prepared.tables
    memo: Memo = {}
    for node in _walk(ruleset):
        if isinstance(node, ListLit) or (isinstance(node, Name) and node.dotted in tables):
            continue  # not a value: only the haystack of 'in'
        want = value(node, facts, tables)
        for m in (memo, {}):
            got = compile_value(node)(facts, tables, m)
            assert _same(want, got), f"value of {node!r}: {want!r} != {got!r}"
        try:
            want_t: object = truth(node, facts, tables)
        except TypeError:  # not a boolean: the compiled truth refuses it too
            with pytest.raises(TypeError):
                compile_truth(node)(facts, tables, {})
            continue
        for m in (memo, {}):
            got_t = compile_truth(node)(facts, tables, m)
            assert _same(want_t, got_t), f"truth of {node!r}: {want_t!r} != {got_t!r}"


@SETTINGS
@given(index=st.integers(0, POOL_SIZE - 1), application=random_forms())
def test_compiled_terms_of_generated_conditions_equal_the_walkers(
    index: int, application: tuple[dt.date, dict[str, object], tuple[str, ...]]
) -> None:
    """Random well-typed conditions, values, tables and parameters, inputs missing at random."""
    day, complete, gone = application
    _check_all(
        generated(generated_text(index)),
        env_of(day, {k: v for k, v in complete.items() if k not in gone}),
    )


@pytest.mark.parametrize("name", sorted(p.stem for p in FIXTURES_V2.glob("*.yaml")))
@SETTINGS
@given(data=st.data())
def test_compiled_terms_of_the_v2_fixtures_equal_the_walkers(
    name: str, data: st.DataObject
) -> None:
    """Every v2 construct (exact decimals, functions, ``if``, values, parameters, tables)."""
    case = data.draw(cases(name))
    _check_all(fixture(name), env_of(case.day, case.partial))


def test_compiled_terms_of_the_shipped_rulesets_equal_the_walkers() -> None:
    """The shipped talent rulesets over 400 varied applications each."""
    rng = random.Random(20260301)
    for ruleset in catalog():
        if ruleset.service != "talent-housing-subsidy":
            continue
        for _ in range(400):
            _check_all(ruleset, random_application(rng, ruleset).env())


def test_missing_is_the_same_sentinel_for_both() -> None:
    """A missing fact is ``MISSING`` through both, never ``None``."""
    node = Name(("population", "birth_date"), 0)
    assert compile_value(node)({}, {}, {}) is MISSING is value(node, {}, {})


GIVEN = {
    CriterionResult: set(CriterionResult.model_fields),
    ValueResult: set(ValueResult.model_fields),
    ParameterUse: set(ParameterUse.model_fields),
    Reason: {"code", "criterion", "message_zh", "message_en"},
    Evaluation: set(Evaluation.model_fields),
}
"""The fields the engine gives each result it builds (as keyword arguments it once did)."""


def test_results_built_without_validation_equal_validated_ones() -> None:
    """Each criterion result, criterion reason, named value, parameter and evaluation equals
    the one pydantic validates from the same keyword arguments: fields, values and the set of
    fields given (every shipped and v2 fixture example, varied talent applications)."""
    rng = random.Random(7)
    rulesets = [*catalog(), *(fixture(p.stem) for p in sorted(FIXTURES_V2.glob("*.yaml")))]
    evaluations = [r.evaluation for rs in rulesets for r in run_examples(rs)]
    for ruleset in catalog():
        if ruleset.service == "talent-housing-subsidy":
            for _ in range(50):
                env = random_application(rng, ruleset).env()
                evaluations.append(evaluate(ruleset, env))
                evaluations.append(evaluate(ruleset, env, evaluator="reference"))
    built: list[BaseModel] = []
    for ev in evaluations:
        assert ev is not None
        built.extend(ev.criteria)
        built.extend(ev.values)
        built.extend(ev.parameters)
        built.extend(r for r in ev.reasons if r.criterion is not None)
        built.append(ev)
    for model in built:
        given = GIVEN[type(model)]
        validated = type(model).model_validate({k: getattr(model, k) for k in given})
        assert validated == model
        assert given == validated.model_fields_set == model.model_fields_set
        assert validated.model_dump() == model.model_dump()
