"""Every named example that the shipped rulesets carry is decided as it says."""

from __future__ import annotations

from functools import cache

import pytest
from helpers_engine import catalog, shipped

from engine.examples import ExampleResult, run_examples

EXAMPLES = [
    pytest.param(ruleset.version, example.name, id=f"{ruleset.version}: {example.name}")
    for ruleset in catalog()
    for example in ruleset.doc.tests
]


@cache
def results(version: str) -> dict[str, ExampleResult]:
    """run_examples on one shipped version, by example name (run once per version)."""
    return {r.name: r for r in run_examples(shipped(version))}


def test_every_shipped_ruleset_carries_uniquely_named_examples() -> None:
    """Each shipped version has named examples, and no two share a name."""
    names = [(p.values[0], p.values[1]) for p in EXAMPLES]
    assert ({"2016", "2026"}, len(names)) == ({v for v, _ in names}, len(set(names)))


@pytest.mark.parametrize(("version", "name"), EXAMPLES)
def test_named_example_passes(version: str, name: str) -> None:
    """The example's expected outcome, criteria and outputs are what both evaluators decide."""
    result = results(version)[name]
    assert ([], True) == (result.problems, result.ok)
