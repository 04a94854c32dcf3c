"""One source per fact (一数一源): the catalogue names each fact's authoritative registry, and a
rejection may not rest on another registry's copy of that fact, which may only corroborate."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers_engine import RULESETS

from engine import RulesetError, RulesetInvalid, parse_ruleset
from engine.registries import RegistryCatalogue, load_catalogue

CATALOGUE = """\
schema_version: 1
facts:
  name: population
  degree: education
registries:
  - id: population
    name: {zh: 人口库, en: Population registry}
    holder: {zh: 市公安局, en: Public Security Bureau}
    kind: csv
    location: population.csv
    key: [id_number]
    fields:
      id_number: {type: string, personal: id_number}
      name: {type: string, personal: name, fact: name}
    modes: [fetch]
    no_record: unknown
  - id: education
    name: {zh: 学历库, en: Education registry}
    holder: {zh: 学信网, en: CHSI}
    kind: csv
    location: education.csv
    key: [certificate_number]
    fields:
      certificate_number: string
      holder_name: {type: string, personal: name, fact: name}
      degree: {type: string, fact: degree}
    modes: [fetch, verify]
    no_record: unknown
    answers:
      named_zhang: holder_name == "张三"
"""

RULESET = """\
schema_version: 2
service: one-source
version: "1"
name: {{zh: 一数一源, en: One source per fact}}
authority: {{zh: 测试机关, en: Test authority}}
effective_from: 2026-01-01
status: draft
legal_basis:
  - id: basis
    title: 测试办法
    issuer: 测试机关
inputs:
  - name: certificate_number
    type: string
    title: {{zh: 证书编号, en: Certificate number}}
evidence:
  - id: population
    registry: population
    mode: fetch
    key: applicant.id_number
    fields: {{name: string}}
  - id: edu
    registry: education
    mode: fetch
    key: form.certificate_number
    fields: {{holder_name: string, degree: string}}
  - id: edu_check
    registry: education
    mode: verify
    key: form.certificate_number
    fields: {{named_zhang: boolean}}
values:
  same_name:
    title: {{zh: 姓名一致, en: Same name}}
    expr: edu.holder_name == applicant.name
criteria:
  - id: C1
    title: {{zh: 本科及以上, en: A degree}}
    legal_basis: [basis]
    condition: edu.degree in ["本科", "硕士", "博士"]
    on_fail: reject
    reason: {{zh: 学历不符。, en: Degree does not qualify.}}
  - id: C9
    title: {{zh: 证书姓名与申请人一致, en: Certificate name matches}}
    legal_basis: [basis]
    condition: {condition}
    on_fail: {on_fail}
    reason: {{zh: 证书姓名不一致。, en: Names differ.}}
"""


def _catalogue_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "registries.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def _refused_catalogue(tmp_path: Path, text: str) -> list[RulesetError]:
    with pytest.raises(RulesetInvalid) as info:
        load_catalogue(_catalogue_file(tmp_path, text))
    return info.value.errors


@pytest.fixture
def sources(tmp_path: Path) -> RegistryCatalogue:
    return load_catalogue(_catalogue_file(tmp_path, CATALOGUE))


def _ruleset_errors(sources: RegistryCatalogue, condition: str, on_fail: str) -> list[RulesetError]:
    text = RULESET.format(condition=condition, on_fail=on_fail)
    try:
        parse_ruleset(text, file="one-source.yaml", sources=sources)
    except RulesetInvalid as exc:
        return exc.errors
    return []


def _line_of(text: str, needle: str) -> int:
    """The first line of ``text`` holding ``needle``."""
    return next(i for i, line in enumerate(text.splitlines(), 1) if needle in line)


def test_a_catalogue_with_facts_loads(sources: RegistryCatalogue) -> None:
    """Facts map to their authoritative registry; another registry's copy is corroborating."""
    assert {"name": "population", "degree": "education"} == sources.facts
    assert "name" == sources.get("education").fact("holder_name")  # type: ignore[union-attr]
    found = sources.corroborating("education", "holder_name")
    assert found is not None
    assert ("name", "population") == (found[0], found[1].id)
    assert sources.corroborating("population", "name") is None
    assert sources.corroborating("education", "degree") is None


@pytest.mark.parametrize(
    ("bad", "key", "message"),
    [
        pytest.param(
            ("  degree: education\n", "  degree: educaton\n"),
            "facts.degree",
            "the authoritative source 'educaton' of fact 'degree' is not a registry in the "
            "catalogue; did you mean 'education'?",
            id="a fact's source is not a registry",
        ),
        pytest.param(
            ("  name: population\n", "  name: population\n  gender: population\n"),
            "facts.gender",
            "registry population has no field carrying fact 'gender'",
            id="a fact's source has no field carrying it",
        ),
        pytest.param(
            ("certificate_number: string", "certificate_number: {type: string, fact: degre}"),
            "registries.education.fields.certificate_number.fact",
            "fact 'degre' is not declared in facts; did you mean 'degree'?",
            id="a field's fact is not declared",
        ),
    ],
)
def test_a_bad_fact_refuses_the_catalogue(
    tmp_path: Path, bad: tuple[str, str], key: str, message: str
) -> None:
    """A fact naming no registry (or none carrying it), or an undeclared fact, is located."""
    old, new = bad
    assert old in CATALOGUE
    text = CATALOGUE.replace(old, new, 1)
    errors = _refused_catalogue(tmp_path, text)
    line = _line_of(text, new.splitlines()[-1].strip())
    assert [key] == [e.key for e in errors]
    assert line == errors[0].line
    assert errors[0].column is not None
    assert message in errors[0].message
    assert str(errors[0]).startswith(f"{tmp_path / 'registries.yaml'}:{line}:")


def test_rejecting_on_a_corroborating_source_is_refused(sources: RegistryCatalogue) -> None:
    """A reject criterion comparing the education registry's copy of the name is refused."""
    condition = "edu.holder_name == applicant.name"
    errors = _ruleset_errors(sources, condition, "reject")
    assert 1 == len(errors)
    error = errors[0]
    assert "criteria.C9.condition" == error.key
    assert "one-source.yaml" == error.file
    text = RULESET.format(condition=condition, on_fail="reject")
    assert _line_of(text, f"condition: {condition}") == error.line
    assert error.column is not None
    assert error.message.startswith("学历库的 holder_name 只能佐证，不能据以否决")
    assert "“name”的权威来源是人口库" in error.message
    assert "education.holder_name may only corroborate, not reject" in error.message
    assert "criterion C9" in error.message
    assert "the authoritative source of name is population" in error.message


def test_the_same_comparison_may_refer(sources: RegistryCatalogue) -> None:
    """A mismatch between two sources may send the case to a person: refer is accepted."""
    assert [] == _ruleset_errors(sources, "edu.holder_name == applicant.name", "refer")


def test_the_authoritative_source_may_reject(sources: RegistryCatalogue) -> None:
    """The population registry holds the name: rejecting on it is allowed."""
    assert [] == _ruleset_errors(sources, "population.name == applicant.name", "reject")


def test_rejecting_through_a_named_value_is_refused(sources: RegistryCatalogue) -> None:
    """A named value reading the corroborating field does not launder it into a rejection."""
    errors = _ruleset_errors(sources, "same_name", "reject")
    assert ["criteria.C9.condition"] == [e.key for e in errors]
    assert "education.holder_name may only corroborate" in errors[0].message
    assert "reads edu.holder_name" in errors[0].message


def test_rejecting_on_a_verify_answer_over_a_corroborating_field_is_refused(
    sources: RegistryCatalogue,
) -> None:
    """A catalogue answer comparing the corroborating field counts as reading it."""
    errors = _ruleset_errors(sources, "not edu_check.named_zhang", "reject")
    assert ["criteria.C9.condition"] == [e.key for e in errors]
    assert "education.holder_name may only corroborate" in errors[0].message


def test_shipped_rulesets_validate_against_the_shipped_facts() -> None:
    """Every shipped ruleset keeps to one source per fact under the shipped catalogue."""
    shipped = load_catalogue(RULESETS / "registries.yaml")
    assert "population" == shipped.facts["name"]
    for path in sorted(RULESETS.glob("*/*.yaml")):
        if path.name == "guide.yml":
            continue
        parse_ruleset(path.read_text(encoding="utf-8"), file=path.name, sources=shipped)
