"""Records keep only what the decision used: no contact number, unread fields named but not
kept, lookup-only fields as pseudonyms, the birth date as the age; every sample still replays."""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from adapters.base import Adapter
from engine import RulesetCatalog
from engine.dates import age_on
from explanations.guide import ServiceGuide
from explanations.page import render_page
from explanations.record import ExplanationRecordV1, parse_record, text_hash
from explanations.render import render_text
from explanations.replay import replay

FIXTURES = Path(__file__).parent / "fixtures"
OLD_RECORDS = FIXTURES / "records-v3-main.jsonl"
"""Six records exported (``audit export`` lines) from a SQLite store written by the code of
main before record version 4 (commit 429ccb6): talent 2016 and 2026, maternity, old age,
Beijing points, and a referral without a population record."""
ID_PSEUDONYM = re.compile(r"^\*{18}~[0-9a-f]{12}$")


def _birth_date(registries: dict[str, Adapter], id_number: str) -> dt.date | None:
    """The population registry's birth date for ``id_number`` (None without a record)."""
    found = registries["population"].lookup(
        {"id_number": id_number},
        fields=["birth_date"],
        mode="fetch",
        now=dt.datetime(2026, 3, 6, tzinfo=dt.UTC),
    )
    born = found.values.get("birth_date")
    return born if isinstance(born, dt.date) else None


def test_no_record_holds_the_contact_number(
    decide: Callable[[str], ExplanationRecordV1], demo_samples: dict[str, Any]
) -> None:
    """A phone number given on the form is named as omitted and appears nowhere in the record."""
    with_phone = 0
    for name, sample in demo_samples.items():
        record = decide(name)
        phone = sample.body["form"].get("phone")
        assert "phone" not in record.form, name
        if phone:
            with_phone += 1
            assert phone not in record.body_json(), name
            assert "form.phone" in record.omitted_fields, name
    assert with_phone > 0


def test_fields_no_rule_reads_are_named_as_omitted_and_not_kept(
    decide: Callable[[str], ExplanationRecordV1],
    demo_samples: dict[str, Any],
    ruleset_catalog: RulesetCatalog,
) -> None:
    """Every field the applicant gave is either kept (a rule reads it) or listed as omitted."""
    for name, sample in demo_samples.items():
        record = decide(name)
        ruleset = ruleset_catalog.get(record.service, record.ruleset_version)
        assert ruleset is not None
        given = {k for k, v in sample.body["form"].items() if v not in (None, "")}
        unread = {k for k, how in ruleset.recording.form.items() if how == "omit"}
        assert sorted(f"form.{k}" for k in given & unread) == sorted(record.omitted_fields), name
        assert not unread & set(record.form), name
        for k in given & unread:
            assert f'"{sample.body["form"][k]}"' not in record.body_json(), (name, k)


def test_old_age_records_keep_no_payment_choices_the_rules_never_read(
    decide: Callable[[str], ExplanationRecordV1],
) -> None:
    """The old-age allowance reads no form field: the record keeps none and names all three."""
    record = decide("approved-old-age-86.json")
    assert {} == record.form
    assert ["form.payment_method", "form.applied_by", "form.phone"] == record.omitted_fields


def test_a_certificate_number_used_only_to_ask_the_registry_is_a_pseudonym(
    decide: Callable[[str], ExplanationRecordV1], demo_samples: dict[str, Any]
) -> None:
    """The certificate number is the education registry's key and nothing else: the form and the
    evidence key hold the same keyed pseudonym, never the number."""
    record = decide("approved-master-2016.json")
    number = demo_samples["approved-master-2016.json"].body["form"]["certificate_number"]
    pseudonym = record.form["certificate_number"]
    assert isinstance(pseudonym, str) and re.fullmatch(r"\*\*\*~[0-9a-f]{12}", pseudonym)
    assert "form.certificate_number" in record.masked_fields
    education = next(e for e in record.evidence if e.id == "education")
    assert pseudonym == education.key
    assert number not in record.body_json()


def test_the_birth_date_is_kept_as_the_age_on_the_application_date(
    decide: Callable[[str], ExplanationRecordV1],
    demo_samples: dict[str, Any],
    demo_registries: dict[str, Adapter],
    ruleset_catalog: RulesetCatalog,
) -> None:
    """Population evidence holds the whole years (周岁), and neither the birth date nor the ID
    number's digits are anywhere in the record: not in values, reasons or counterfactuals."""
    checked = 0
    for name, sample in demo_samples.items():
        record = decide(name)
        id_number = sample.body["applicant"]["id_number"]
        assert ID_PSEUDONYM.match(record.applicant.id_number), name
        body = record.body_json()
        assert id_number not in body and id_number[6:14] not in body, name
        born = _birth_date(demo_registries, id_number)
        population = next((e for e in record.evidence if e.source == "population"), None)
        ruleset = ruleset_catalog.get(record.service, record.ruleset_version)
        assert ruleset is not None
        reads_it = "population.birth_date" in ruleset.recording.age_fields
        if born is None or population is None or population.status != "found" or not reads_it:
            continue
        assert "birth_date" not in population.values, name
        assert {"birth_date": age_on(born, record.application_date)} == population.ages, name
        assert born.isoformat() not in body, name
        checked += 1
    assert checked >= 20


def test_every_shipped_sample_replays_identically_from_its_minimised_record(
    decide: Callable[[str], ExplanationRecordV1],
    demo_samples: dict[str, Any],
    ruleset_catalog: RulesetCatalog,
) -> None:
    """Re-deciding from the stored JSON (a date of the recorded age, no omitted field) gives the
    recorded outcome, outputs, criteria and values, and the outcome each sample expects."""
    for name, sample in demo_samples.items():
        record = decide(name)
        stored = parse_record(json.loads(record.body_json()))
        assert isinstance(stored, ExplanationRecordV1)
        ruleset = ruleset_catalog.get(stored.service, stored.ruleset_version)
        assert ruleset is not None
        result = replay(stored, ruleset)
        assert (True, []) == (result.identical, result.differences), name
        assert sample.expected["outcome"] == stored.outcome.value, name


def test_the_citizen_reads_the_age_where_the_rule_printed_the_birth_date(
    decide: Callable[[str], ExplanationRecordV1], guides: dict[str, ServiceGuide]
) -> None:
    """The old-age rule's reason names the birth date; the text and page say the age instead."""
    record = decide("rejected-old-age-79.json")
    zh = render_text(record, lang="zh", counterfactuals=record.counterfactuals)
    en = render_text(record, lang="en", counterfactuals=record.counterfactuals)
    page = render_page(
        record,
        lang="zh",
        token="t",
        guide=guides[record.service],
        counterfactuals=record.counterfactuals,
    )
    assert "原因：申请日为79周岁；须年满80周岁，即自80周岁生日的次日起方可申请。" in zh
    assert "申请日周岁：79周岁" in zh
    assert "Aged 79 on the application date; applicants must be 80" in en
    assert "需申请日周岁至少为80周岁，当前为79周岁" in page
    for text in (zh, en, page):
        assert "****" not in text
        assert "1945" not in text


def test_records_written_before_version_4_still_read_hash_and_replay(
    ruleset_catalog: RulesetCatalog,
) -> None:
    """Records stored by main (version 3: the form as received, the birth date, ID pseudonyms
    showing 7 digits) parse, still match their stored hash and replay identically."""
    rows = [json.loads(line) for line in OLD_RECORDS.read_text(encoding="utf-8").splitlines()]
    assert 6 == len(rows)
    for row in rows:
        body = row["record"]
        assert row["record_hash"] == text_hash(
            json.dumps(body, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
        )
        record = parse_record({**body, "record_hash": row["record_hash"]})
        assert isinstance(record, ExplanationRecordV1)
        assert "miaopi.explanation-record/3" == record.schema_version
        ruleset = ruleset_catalog.get(record.service, record.ruleset_version)
        assert ruleset is not None
        result = replay(record, ruleset)
        assert (True, []) == (result.identical, result.differences), record.application_id
    old_age = next(r["record"] for r in rows if r["record"]["service"] == "old-age-allowance")
    assert "birth_date" in old_age["evidence"][0]["values"]  # what version 4 no longer keeps


@pytest.mark.parametrize(
    ("service", "version"),
    [
        ("talent-housing-subsidy", "2016"),
        ("talent-housing-subsidy", "2026"),
        ("old-age-allowance", "2024"),
        ("beijing-points-hukou", "2018"),
    ],
)
def test_every_ruleset_reading_the_birth_date_reads_it_as_an_age(
    ruleset_catalog: RulesetCatalog, service: str, version: str
) -> None:
    """The shipped rulesets that read the population birth date record it as an age."""
    ruleset = ruleset_catalog.get(service, version)
    assert ruleset is not None
    assert frozenset({"population.birth_date"}) == ruleset.recording.age_fields
