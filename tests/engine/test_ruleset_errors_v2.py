"""Refused version-2 rulesets: one fixture per failure mode, each error located by file, line,
column and key, with a bilingual message that says what is wrong and what was meant."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache

import pytest
from helpers_engine import FIXTURES, RULESETS

from engine import RulesetError, RulesetInvalid, parse_ruleset
from engine.registries import RegistryCatalogue, load_catalogue

INVALID = FIXTURES / "invalid_v2"
MINIMAL = FIXTURES / "minimal_v2.yaml"
TEST = "tests.硕士育有一孩获批"
"""The key of the one test in minimal_v2.yaml (list items are named by their name)."""
_CHINESE_THEN_ENGLISH = re.compile(r"^[^/]*[\u4e00-\u9fff][^/]* / .*[A-Za-z]")


@cache
def catalogue() -> RegistryCatalogue:
    """The shipped registry catalogue, which the fixtures' evidence is checked against."""
    return load_catalogue(RULESETS / "registries.yaml")


@dataclass(frozen=True)
class Expected:
    """Where the first error must point, its key path and the parts its message must contain."""

    line: int
    column: int
    key: str
    message: tuple[str, ...]


def errors_of(fixture: str) -> list[RulesetError]:
    """Parse a fixture against the catalogue, expecting it to be refused; every error in order."""
    path = INVALID / fixture
    with pytest.raises(RulesetInvalid) as info:
        parse_ruleset(path.read_text(encoding="utf-8"), file=path.name, sources=catalogue())
    assert info.value.errors, "RulesetInvalid carries no errors"
    return info.value.errors


CASES = [
    pytest.param(
        "syntax_unclosed_parenthesis.yaml",
        Expected(55, 57, "values.age.expr", ("缺少右括号 / expected ')'",)),
        id="syntax error: unclosed parenthesis, at the end of the expression",
    ),
    pytest.param(
        "syntax_single_equals.yaml",
        Expected(
            97,
            25,
            "outputs.rules.0.when",
            ("无法识别的字符“=”", "比较是否相等请写 ==", "unexpected character '='", "write =="),
        ),
        id="syntax error: a single = hints ==",
    ),
    pytest.param(
        "syntax_fullwidth_parenthesis.yaml",
        Expected(
            75,
            16,
            "criteria.C1.condition",
            ("请用英文括号 ( )", "unexpected character '（'", "use ASCII parentheses"),
        ),
        id="syntax error: full-width parentheses hint ASCII ones",
    ),
    pytest.param(
        "unknown_function.yaml",
        Expected(
            59,
            11,
            "values.base.expr",
            (
                "未知的函数 / unknown function 'rnd'; did you mean 'round'?",
                "available: abs(x), age_on(birth, day), ceil(x[, places])",
                "years_after(day, n), years_before(day, n)",
            ),
        ),
        id="unknown function, listing the available ones",
    ),
    pytest.param(
        "table_key_misspelt.yaml",
        Expected(
            59,
            35,
            "values.base.expr",
            ("table city_rate has no key '深训市'", "did you mean '深圳市'?"),
        ),
        id="misspelt lookup-table key, with a suggestion",
    ),
    pytest.param(
        "evidence_params_key_misspelt.yaml",
        Expected(
            33,
            14,
            "evidence.property.params.ctiy",
            ("'ctiy' is not a key field of registry property; did you mean 'city'?",),
        ),
        id="misspelt evidence params key, at the key, with a suggestion",
    ),
    pytest.param(
        "evidence_unknown_registry.yaml",
        Expected(
            25,
            15,
            "evidence.population.registry",
            (
                "registry 'populaton' is not in the catalogue; did you mean 'population'?",
                "birth_certificates",
            ),
        ),
        id="evidence naming a registry not in the catalogue",
    ),
    pytest.param(
        "evidence_field_missing.yaml",
        Expected(
            28,
            32,
            "evidence.population.fields.hukou_town",
            ("registry population has no field 'hukou_town'; did you mean 'hukou_city'?",),
        ),
        id="fetched field the registry lacks, at the field name",
    ),
    pytest.param(
        "evidence_field_type.yaml",
        Expected(
            28,
            26,
            "evidence.population.fields.birth_date",
            ("field birth_date is a date in registry population, declared here as string",),
        ),
        id="fetched field of the wrong type",
    ),
    pytest.param(
        "evidence_mode_not_allowed.yaml",
        Expected(
            31,
            11,
            "evidence.property.mode",
            ("registry property does not allow mode 'fetch' (allowed: verify)",),
        ),
        id="mode the registry does not allow",
    ),
    pytest.param(
        "verify_field_unknown.yaml",
        Expected(
            34,
            14,
            "evidence.property.fields.owns_house",
            (
                "registry property has no named answer 'owns_house'; did you mean 'owns_housing'?",
                "write it under 'claims'",
            ),
        ),
        id="verify field neither a claim nor a catalogue answer, at the field name",
    ),
    pytest.param(
        "parameter_starts_late.yaml",
        Expected(
            46,
            15,
            "parameters.max_age.values.0.from",
            (
                "parameter max_age has no value before 2026-02-01",
                "in force from 2026-01-01",
            ),
        ),
        id="parameter whose first period starts after effective_from",
    ),
    pytest.param(
        "parameter_periods_out_of_order.yaml",
        Expected(
            49,
            15,
            "parameters.max_age.values.1.from",
            ("periods must be in increasing order", "2026-01-01 then 2025-07-01"),
        ),
        id="parameter periods out of order",
    ),
    pytest.param(
        "parameter_value_type.yaml",
        Expected(50, 16, "parameters.max_age.values.1.value", ("参数值的类型应为整数", "'四十'")),
        id="parameter value of the wrong type",
    ),
    pytest.param(
        "value_cycle.yaml",
        Expected(
            53, 3, "values.age", ("values refer to each other in a cycle: age -> base -> age",)
        ),
        id="values forming a cycle, at the value's name",
    ),
    pytest.param(
        "value_table_multi_hit.yaml",
        Expected(
            63,
            19,
            "values.points.table.hit_policy",
            ("a value's table must give one result; COLLECT gives a list",),
        ),
        id="value table with a multi-result hit policy",
    ),
    pytest.param(
        "priority_without_values.yaml",
        Expected(94, 5, "outputs.columns", ("PRIORITY needs the output values", "'values'")),
        id="PRIORITY without any column values",
    ),
    pytest.param(
        "collect_sum_two_columns.yaml",
        Expected(
            92,
            15,
            "outputs.hit_policy",
            ("COLLECT SUM aggregates one output column only", "this table has 2"),
        ),
        id="COLLECT SUM over two columns",
    ),
    pytest.param(
        "cell_type.yaml",
        Expected(
            98,
            27,
            "outputs.rules.0.then.amount_yuan",
            ("应为数字表达式，实际为字符串 / expected a number expression, got a string",),
        ),
        id="cell expression of the wrong type",
    ),
    pytest.param(
        "test_date_outside_period.yaml",
        Expected(
            104,
            13,
            f"{TEST}.application.date",
            ("the test is dated 2027-03-01, outside this version's effective period",),
        ),
        id="test dated outside the effective period",
    ),
    pytest.param(
        "test_expect_unknown_output.yaml",
        Expected(
            112,
            17,
            f"{TEST}.expect.outputs.amount",
            ("'amount' is not an output column (columns: amount_yuan, months)",),
        ),
        id="test expecting an output column that does not exist, at its name",
    ),
    pytest.param(
        "test_expect_unknown_value.yaml",
        Expected(
            113,
            16,
            f"{TEST}.expect.values.score",
            ("'score' is not a value (values: age, base, points)",),
        ),
        id="test expecting a value that does not exist, at its name",
    ),
    pytest.param(
        "test_evidence_unknown_field.yaml",
        Expected(
            108,
            44,
            f"{TEST}.evidence.population.hukou_cty",
            ("evidence population has no field 'hukou_cty'; did you mean 'hukou_city'?",),
        ),
        id="test evidence naming a field the evidence lacks, at its name",
    ),
    pytest.param(
        "test_evidence_wrong_type.yaml",
        Expected(
            108,
            32,
            f"{TEST}.evidence.population.birth_date",
            ("population", "birth_date", "1995"),
        ),
        id="test evidence value of the wrong type",
    ),
    pytest.param(
        "test_form_invalid.yaml",
        Expected(
            106,
            22,
            f"{TEST}.application.form.degree",
            ("the test's form field degree is invalid", "'本科' or '硕士'", "got '博士'"),
        ),
        id="test form failing the input schema",
    ),
    pytest.param(
        "v1_file_with_v2_constructs.yaml",
        Expected(
            25,
            15,
            "evidence.population.registry",
            ("registry 需要 schema_version: 2 / registry needs schema_version: 2",),
        ),
        id="version-2 construct in a schema_version 1 file",
    ),
    pytest.param(
        "sensitivity_contact_read.yaml",
        Expected(
            19,
            18,
            "inputs.degree.sensitivity",
            ("联系方式只用于联系申请人，不能用于审批", "value points reads form.degree"),
        ),
        id="a contact field that a rule reads, at its sensitivity",
    ),
    pytest.param(
        "sensitivity_sensitive_unused.yaml",
        Expected(
            27,
            18,
            "inputs.diagnosis.sensitivity",
            ("敏感个人信息只能在审批必需时收集", "no rule reads form.diagnosis"),
        ),
        id="a sensitive field no rule needs",
    ),
    pytest.param(
        "sensitivity_public_key.yaml",
        Expected(
            27,
            18,
            "inputs.spouse_id_number.sensitivity",
            ("标为 public", "looks up population.id_number, which identifies a person"),
        ),
        id="a public field used as a key that identifies a person",
    ),
    pytest.param(
        "sensitivity_unknown.yaml",
        Expected(
            23,
            18,
            "inputs.children.sensitivity",
            ("'public', 'personal', 'contact' or 'sensitive'", "got 'secret'"),
        ),
        id="a sensitivity that is not one of the four",
    ),
    pytest.param(
        "age_field_read_as_a_date.yaml",
        Expected(
            83,
            46,
            "criteria.C2.condition",
            ("只按周岁记录（record: age）", "age_on(population.birth_date, application.date)"),
        ),
        id="a birth date recorded as an age, compared as a date, at the name",
    ),
    pytest.param(
        "age_field_in_a_reason.yaml",
        Expected(
            78,
            30,
            "criteria.C1.reason.zh",
            ("说明中只能写 {population.birth_date}", "a reason may show it only as"),
        ),
        id="a reason printing the year of a birth date recorded as an age",
    ),
    pytest.param(
        "unknown_format.yaml",
        Expected(86, 40, "criteria.C2.reason.zh", ("unknown format 'euro'", "formats: money")),
        id="unknown placeholder format",
    ),
]


@pytest.mark.parametrize(("fixture", "expected"), CASES)
def test_each_failure_mode_is_refused_with_file_line_column_key_and_message(
    fixture: str, expected: Expected
) -> None:
    """The first error names the file, points at the offending spot and says what is wrong."""
    error = errors_of(fixture)[0]
    assert (fixture, expected.line, expected.column, expected.key) == (
        error.file,
        error.line,
        error.column,
        error.key,
    ), error.message
    assert [] == [part for part in expected.message if part not in error.message], error.message
    assert _CHINESE_THEN_ENGLISH.match(error.message), error.message


def test_every_invalid_v2_fixture_has_a_case() -> None:
    """No fixture under fixtures/invalid_v2/ is left unchecked."""
    named = {p.values[0] for p in CASES}
    assert sorted(p.name for p in INVALID.glob("*.yaml")) == sorted(named)


def test_the_minimal_v2_ruleset_loads_against_the_catalogue() -> None:
    """The fixture every invalid one is derived from is itself valid, evidence included."""
    ruleset = parse_ruleset(
        MINIMAL.read_text(encoding="utf-8"), file=MINIMAL.name, sources=catalogue()
    )
    assert ("minimal-v2", "1", ["C1", "C2"], ["age", "base", "points"]) == (
        ruleset.service,
        ruleset.version,
        [c.id for c in ruleset.doc.criteria],
        sorted(v.name for v in ruleset.values),
    )


def test_a_version_1_file_names_every_version_2_construct_it_uses() -> None:
    """Every error in a v1 file using v2 constructs says the construct needs schema_version 2."""
    errors = errors_of("v1_file_with_v2_constructs.yaml")
    assert [] == [str(e) for e in errors if "needs schema_version: 2" not in e.message]
    assert {
        "evidence.population.registry",
        "evidence.property.registry",
        "parameters",
        "values",
        "outputs.columns.amount_yuan",
        "outputs.rules.0.then.amount_yuan",
        f"{TEST}.expect.values",
    } <= {e.key for e in errors}


@pytest.mark.parametrize(
    ("fixture", "name"),
    [
        pytest.param("syntax_unclosed_parenthesis.yaml", "age", id="a value with a syntax error"),
        pytest.param("parameter_value_type.yaml", "max_age", id="a parameter with a bad value"),
    ],
)
def test_a_broken_definition_is_not_also_reported_as_an_unknown_name_where_it_is_used(
    fixture: str, name: str
) -> None:
    """A declared value or parameter with an error is not called an 'unknown name' where used."""
    errors = errors_of(fixture)
    assert [] == [str(e) for e in errors if f"unknown name {name!r}" in e.message]
