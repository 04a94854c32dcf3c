"""Refused rulesets: one fixture file per failure mode, each error located by file, line and column."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from helpers_engine import FIXTURES

from engine import RulesetError, RulesetInvalid, parse_ruleset

INVALID = FIXTURES / "invalid"
STYLES = FIXTURES / "scalar_styles"


@dataclass(frozen=True)
class Expected:
    """Where the first error must point, its YAML key path and a part of its message."""

    line: int
    column: int
    key: str | None
    message: str


def first_error(path_name: str, folder: str = "invalid") -> RulesetError:
    """Parse a fixture, expecting it to be refused, and return the first error."""
    path = FIXTURES / folder / path_name
    with pytest.raises(RulesetInvalid) as info:
        parse_ruleset(path.read_text(encoding="utf-8"), file=path.name)
    assert info.value.errors, "RulesetInvalid carries no errors"
    return info.value.errors[0]


CASES = [
    pytest.param(
        "duplicate_key.yaml",
        Expected(16, 5, "inputs.0.type", "duplicate key 'type'"),
        id="duplicate key",
    ),
    pytest.param(
        "unknown_top_level_key.yaml",
        Expected(9, 1, "extras", "unexpected key 'extras'"),
        id="unknown top-level key",
    ),
    pytest.param(
        "wrong_date.yaml", Expected(7, 17, "effective_from", "'2026/01/01'"), id="wrong date format"
    ),
    pytest.param(
        "impossible_date.yaml",
        Expected(7, 17, "effective_from", "2026-02-30"),
        id="impossible calendar date",
    ),
    pytest.param(
        "unknown_name.yaml",
        Expected(
            29,
            18,
            "criteria.C1.condition",
            "unknown name 'populaton.birth_date'; did you mean 'population.birth_date'?",
        ),
        id="unknown name in a condition, with a suggestion",
    ),
    pytest.param(
        "type_error.yaml",
        Expected(29, 11, "criteria.C1.condition", "cannot compare date with string"),
        id="type error: a date compared with a string",
    ),
    pytest.param(
        "syntax_error.yaml",
        Expected(29, 64, "criteria.C1.condition", "缺少右括号 / expected ')'"),
        id="syntax error: unclosed parenthesis",
    ),
    pytest.param(
        "enum_value.yaml",
        Expected(28, 22, "criteria.C1.condition", "'博士' 不是 form.degree 的可选值"),
        id="enum value not among the input's values",
    ),
    pytest.param(
        "unknown_legal_basis.yaml",
        Expected(26, 26, "criteria.C1.legal_basis.1", "unknown legal basis 'law-2099'"),
        id="criterion citing an unknown legal basis",
    ),
    pytest.param(
        "no_legal_basis.yaml",
        Expected(26, 18, "criteria.C1.legal_basis", "criterion C1 cites no legal basis"),
        id="criterion citing no legal basis",
    ),
    pytest.param(
        "always_true.yaml",
        Expected(27, 16, "criteria.C1.condition", "criterion C1 is always true"),
        id="always-true criterion",
    ),
    pytest.param(
        "never_true.yaml",
        Expected(28, 7, "criteria.C1.condition", "criterion C1 can never be met"),
        id="never-true criterion",
    ),
    pytest.param(
        "unknown_function.yaml",
        Expected(
            29, 11, "criteria.C1.condition", "unknown function 'agee_on'; did you mean 'age_on'?"
        ),
        id="unknown function, with a suggestion",
    ),
    pytest.param(
        "evidence_cycle.yaml",
        Expected(21, 10, "evidence.population.key", "cycle: population -> employer -> population"),
        id="evidence keys forming a cycle",
    ),
    pytest.param(
        "unknown_placeholder.yaml",
        Expected(
            32,
            24,
            "criteria.C1.reason.zh",
            "unknown name 'population.birthdate'; did you mean 'population.birth_date'?",
        ),
        id="reason placeholder with an unknown name",
    ),
    pytest.param(
        "row_missing_column.yaml",
        Expected(42, 13, "outputs.rules.0.then", "sets no value for ['months']"),
        id="decision-table row missing a column",
    ),
]


@pytest.mark.parametrize(("fixture", "expected"), CASES)
def test_each_failure_mode_is_refused_with_file_line_column_and_message(
    fixture: str, expected: Expected
) -> None:
    """The first error names the file, points at the offending spot and says what is wrong."""
    error = first_error(fixture)
    assert (fixture, expected.line, expected.column, expected.key) == (
        error.file,
        error.line,
        error.column,
        error.key,
    )
    assert expected.message in error.message


def test_every_invalid_fixture_has_a_case() -> None:
    """No fixture under fixtures/invalid/ is left unchecked."""
    named = {p.values[0] for p in CASES}
    assert sorted(p.name for p in INVALID.glob("*.yaml")) == sorted(named)


def test_an_unknown_top_level_key_is_refused_and_named() -> None:
    """Whatever its position, the unexpected key is refused with its name and file."""
    error = first_error("unknown_top_level_key.yaml")
    assert ("unknown_top_level_key.yaml", "extras") == (error.file, error.key)
    assert "unexpected key 'extras'" in error.message


def test_the_error_text_names_file_line_column_and_key() -> None:
    """str() of an error reads file:line:column: [key] message, as editors and CI expect."""
    error = first_error("unknown_function.yaml")
    assert str(error).startswith("unknown_function.yaml:29:11: [criteria.C1.condition] ")


def test_the_minimal_valid_ruleset_loads() -> None:
    """The fixture every invalid one is derived from is itself valid."""
    path = FIXTURES / "minimal.yaml"
    ruleset = parse_ruleset(path.read_text(encoding="utf-8"), file=path.name)
    assert ("minimal-service", "1", ["C1"]) == (
        ruleset.service,
        ruleset.version,
        [c.id for c in ruleset.doc.criteria],
    )


STYLE_CASES = [
    pytest.param("folded.yaml", 29, 11, id="folded >- block scalar"),
    pytest.param("folded_more_indented.yaml", 29, 13, id="folded block with a more-indented line"),
    pytest.param("literal.yaml", 29, 11, id="literal | block scalar"),
    pytest.param("plain_one_line.yaml", 27, 40, id="plain scalar on one line"),
    pytest.param("single_quoted.yaml", 27, 41, id="single-quoted scalar"),
    pytest.param(
        "folded_blank_line.yaml",
        30,
        11,
        id="folded block with a blank line",
    ),
    pytest.param(
        "plain_multi_line.yaml",
        28,
        11,
        id="plain scalar over two lines",
    ),
    pytest.param(
        "double_quoted_escapes.yaml",
        27,
        43,
        id="double-quoted scalar with escapes",
    ),
]


@pytest.mark.parametrize(("fixture", "line", "column"), STYLE_CASES)
def test_an_error_inside_a_condition_points_at_the_file_position_in_every_scalar_style(
    fixture: str, line: int, column: int
) -> None:
    """The offset of agee_on inside the condition maps to its line and column in the file."""
    error = first_error(fixture, folder="scalar_styles")
    assert (line, column) == (error.line, error.column)
    assert "unknown function 'agee_on'" in error.message
