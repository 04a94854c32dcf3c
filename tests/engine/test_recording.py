"""What records keep of each input: the plan the checker derives from sensitivity and use."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import pytest
from helpers_engine import RULESETS
from hypothesis import given
from hypothesis import strategies as st

from engine import RulesetCatalog, RulesetInvalid, parse_ruleset
from engine.dates import age_on
from engine.expr import parse
from engine.recording import AGE_MASK, age_reads_elsewhere, date_of_age
from engine.registries import RegistryCatalogue, load_catalogue

SENSITIVITY_LINE = re.compile(r"^\s*sensitivity: .*\n", re.MULTILINE)


@pytest.fixture(scope="module")
def shipped() -> RulesetCatalog:
    return RulesetCatalog.load(RULESETS, sources=load_catalogue(RULESETS / "registries.yaml"))


def test_the_talent_subsidy_keeps_the_degree_pseudonymises_the_certificate_and_drops_the_rest(
    shipped: RulesetCatalog,
) -> None:
    """Read by a rule: kept; only the education registry's key: a pseudonym (there and in the
    evidence key); read by nothing (employer name, phone): omitted; the birth date: an age."""
    ruleset = shipped.get("talent-housing-subsidy", "2026")
    assert ruleset is not None
    assert {
        "degree": "keep",
        "certificate_number": "pseudonym",
        "employer_name": "omit",
        "phone": "omit",
    } == dict(ruleset.recording.form)
    assert frozenset({"population.birth_date"}) == ruleset.recording.age_fields
    education = next(p for p in ruleset.evidence if p.id == "education")
    assert frozenset({"certificate_number"}) == education.pseudonym_keys


def test_every_shipped_contact_field_is_omitted(shipped: RulesetCatalog) -> None:
    """Each shipped phone number is marked ``contact``; no record keeps it."""
    with_phone = 0
    for ruleset in shipped:
        phone = [f for f in ruleset.doc.inputs if f.name == "phone"]
        contact = [f.name for f in ruleset.doc.inputs if f.sensitivity == "contact"]
        assert [f.name for f in phone] == contact, ruleset.key
        for f in phone:
            with_phone += 1
            assert "omit" == ruleset.recording.handling(f.name)
    assert 4 == with_phone


def test_declaring_sensitivity_leaves_every_shipped_content_hash_unchanged(
    shipped: RulesetCatalog,
) -> None:
    """The same file without its ``sensitivity`` lines has the same content hash: records made
    before sensitivity was declared still name the ruleset they were decided by."""
    catalogue = load_catalogue(RULESETS / "registries.yaml")
    for ruleset in shipped:
        text = Path(ruleset.path).read_text(encoding="utf-8")
        assert SENSITIVITY_LINE.search(text), ruleset.key
        bare = parse_ruleset(SENSITIVITY_LINE.sub("", text), file=ruleset.path, sources=catalogue)
        assert ruleset.content_hash == bare.content_hash, ruleset.key


def test_the_old_age_reason_prints_no_birth_date() -> None:
    """The old-age rule's reason names ``{population.birth_date}``; recorded as an age, it is
    printed masked (the text around it is the ruleset's)."""
    catalogue = load_catalogue(RULESETS / "registries.yaml")
    path = RULESETS / "old-age-allowance" / "2024.yaml"
    ruleset = parse_ruleset(path.read_text(encoding="utf-8"), file=str(path), sources=catalogue)
    c3 = next(c for c in ruleset.criteria if c.id == "C3")
    assert AGE_MASK in c3.reason_zh.parts
    without = parse_ruleset(path.read_text(encoding="utf-8"), file=str(path))
    assert AGE_MASK not in next(c for c in without.criteria if c.id == "C3").reason_zh.parts


@pytest.mark.parametrize(
    ("text", "wrong"),
    [
        ("age_on(population.birth_date, application.date) < 35", []),
        ("age < 35 or age_on(population.birth_date, application.date) >= 80", []),
        ('population.birth_date < date("1990-01-01")', ["population.birth_date"]),
        ("year(population.birth_date) >= 1990", ["population.birth_date"]),
        ('age_on(population.birth_date, date("2026-01-01")) < 35', ["population.birth_date"]),
        ("age_on(permit.residence_since, application.date) >= 5", []),
    ],
)
def test_a_field_recorded_as_an_age_may_be_read_only_through_its_age(
    text: str, wrong: list[str]
) -> None:
    """Only ``age_on(<field>, application.date)`` reads a birth date that replay can rebuild."""
    found = age_reads_elsewhere(parse(text), frozenset({"population.birth_date"}))
    assert wrong == [n.dotted for n in found]


@given(
    age=st.integers(min_value=0, max_value=120),
    on=st.dates(min_value=dt.date(1900, 1, 1), max_value=dt.date(2200, 12, 31)),
)
def test_a_date_of_the_recorded_age_has_exactly_that_age(age: int, on: dt.date) -> None:
    """Replay's birth date is of the recorded age (周岁) and the earliest one: the day before is
    a year older (29 February and month ends included)."""
    born = date_of_age(age, on)
    assert age == age_on(born, on)
    assert age + 1 == age_on(born - dt.timedelta(days=1), on)


def _catalogue_with(tmp_path: Path, old: str, new: str) -> Path:
    text = (RULESETS / "registries.yaml").read_text(encoding="utf-8")
    assert 1 == text.count(old)
    path = tmp_path / "registries.yaml"
    path.write_text(text.replace(old, new), encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        (
            "gender: {type: string, values: [男, 女]}",
            "gender: {type: string, values: [男, 女], record: age}",
            "'gender' is a string",
        ),
        (
            "      birth_date: date\n      babies: integer",
            "      birth_date: {type: date, record: age}\n      babies: integer",
            "'birth_date' is a key field",
        ),
    ],
    ids=["a string field", "a key field"],
)
def test_the_catalogue_records_only_a_date_that_is_not_a_key_as_an_age(
    tmp_path: Path, old: str, new: str, message: str
) -> None:
    """``record: age`` on anything but a non-key date is refused at the declaration."""
    path = _catalogue_with(tmp_path, old, new)
    with pytest.raises(RulesetInvalid) as info:
        load_catalogue(path)
    (error,) = info.value.errors
    assert error.key is not None and error.key.endswith(".record")
    assert error.line is not None and error.column is not None
    assert message in error.message
    assert "只有日期字段" in error.message


def test_a_catalogue_without_record_age_keeps_the_birth_date_readable(tmp_path: Path) -> None:
    """Without the declaration a ruleset may compare the birth date itself (nothing to refuse)."""
    path = _catalogue_with(
        tmp_path,
        "birth_date: {type: date, fact: birth_date, record: age}",
        "birth_date: {type: date, fact: birth_date}",
    )
    catalogue: RegistryCatalogue = load_catalogue(path)
    fixture = Path(__file__).parent / "fixtures" / "invalid_v2" / "age_field_read_as_a_date.yaml"
    ruleset = parse_ruleset(fixture.read_text(encoding="utf-8"), file="x.yaml", sources=catalogue)
    assert frozenset() == ruleset.recording.age_fields
