"""Every named example that the shipped rulesets carry is decided as it says."""

from __future__ import annotations

from functools import cache

import pytest
from helpers_engine import catalog

from engine.examples import ExampleResult, run_examples

EXAMPLES = [
    pytest.param(
        ruleset.service, ruleset.version, example.name, id=f"{ruleset.key}: {example.name}"
    )
    for ruleset in catalog()
    for example in ruleset.doc.tests
]


@cache
def results(service: str, version: str) -> dict[str, ExampleResult]:
    """run_examples on one shipped version, by example name (run once per version)."""
    ruleset = catalog().get(service, version)
    assert ruleset is not None
    return {r.name: r for r in run_examples(ruleset)}


def test_every_shipped_ruleset_carries_uniquely_named_examples() -> None:
    """Each shipped version has named examples, and no two of one version share a name."""
    names = [tuple(p.values) for p in EXAMPLES]
    versions = {(s, v) for s, v, _ in names}
    assert {
        ("talent-housing-subsidy", "2016"),
        ("talent-housing-subsidy", "2026"),
        ("old-age-allowance", "2024"),
        ("maternity-allowance", "2016"),
        ("beijing-points-hukou", "2018"),
    } == versions
    assert len(names) == len(set(names))
    for service, version in versions:
        assert sum(1 for s, v, _ in names if (s, v) == (service, version)) >= 2


@pytest.mark.parametrize(("service", "version", "name"), EXAMPLES)
def test_named_example_passes(service: str, version: str, name: str) -> None:
    """The example's expected outcome, criteria, outputs and values are what both evaluators decide."""
    result = results(service, version)[name]
    assert ([], True) == (result.problems, result.ok)
