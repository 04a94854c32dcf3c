"""Tests for the deterministic demo data generator in adapters.demo."""

from __future__ import annotations

import csv
import datetime as dt
import json
import re
from collections import Counter
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from adapters.base import Adapter
from adapters.demo import CSV_COLUMNS, SERVICE, DemoSummary, generate_demo_data
from adapters.files import load_registries
from engine.privacy import id_number_problem
from engine.registries import RegistryCatalogue, load_catalogue

SHIPPED = load_catalogue(Path(__file__).resolve().parents[2] / "rulesets" / "registries.yaml")
CATALOGUE = RegistryCatalogue([s for s in SHIPPED if s.location in CSV_COLUMNS])
"""The registries the talent-housing generator writes (the other services add their own)."""


def load_file_registries(folder: Path) -> dict[str, Adapter]:
    """Every catalogued registry loaded from ``folder``; none may fail."""
    loaded = load_registries(CATALOGUE, folder)
    assert {} == loaded.problems
    return loaded.adapters


SHANGHAI = ZoneInfo("Asia/Shanghai")
NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
CERTIFICATE = re.compile(r"^[0-9]{12,18}$")
SAMPLES = (
    "approved-master-2016",
    "approved-doctor-2016",
    "approved-bachelor-2026",
    "rejected-many",
    "referred-no-population",
    "referred-degree-mismatch",
    "version-boundary-2025-12-31",
    "version-boundary-2026-01-01",
    "version-boundary-utc",
    "age-birthday-today",
    "age-day-after-birthday",
    "age-feb29-common-year",
    "age-feb29-day-after",
    "rejected-deregistered-employer",
    "referred-no-social-insurance",
    "rejected-part-time",
)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, DemoSummary]:
    """The default 10,000-person demo, generated once for the module."""
    out = tmp_path_factory.mktemp("demo")
    return out, generate_demo_data(out, rulesets_dir=None)


@pytest.fixture(scope="module")
def registries(demo: tuple[Path, DemoSummary]) -> dict[str, Adapter]:
    """The demo's registries loaded through the file adapters."""
    return load_file_registries(demo[0])


def read_csv(path: Path) -> list[dict[str, str]]:
    """All rows of a CSV file as dicts."""
    with path.open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def files_of(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` by relative path, with its bytes."""
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


# -- a small independent evaluator of the ruleset, to check the data says what it claims --


def _anniversary(birth: dt.date, year: int) -> dt.date:
    """The birthday in ``year`` (29 February falls on 28 February in common years)."""
    try:
        return birth.replace(year=year)
    except ValueError:
        return dt.date(year, 2, 28)


def age_on(birth: dt.date, on: dt.date) -> int:
    """周岁: N is reached on the day after the Nth birthday."""
    return on.year - birth.year - (1 if _anniversary(birth, on.year) >= on else 0)


def evaluate(body: dict[str, object], registries: dict[str, Adapter]) -> dict[str, object]:
    """Decide an application as the rulesets describe, with three-valued criteria."""
    applicant = body["applicant"]
    form = body["form"]
    assert isinstance(applicant, dict) and isinstance(form, dict)
    submitted = dt.datetime.fromisoformat(str(body["submitted_at"]))
    day = submitted.astimezone(SHANGHAI).date()
    version = "2026" if day >= dt.date(2026, 1, 1) else "2016"
    person = applicant["id_number"]

    def fetch(source: str, key: dict[str, object], fields: list[str]) -> dict[str, object] | None:
        found = registries[source].lookup(key, fields=fields, mode="fetch", now=NOW)
        return dict(found.values) if found.status == "found" else None

    def verify(source: str, key: dict[str, object], fields: list[str]) -> dict[str, object]:
        found = registries[source].lookup(key, fields=fields, mode="verify", now=NOW)
        assert "found" == found.status
        return dict(found.values)

    pop = fetch("population", {"id_number": person}, ["birth_date", "hukou_city", "hukou_since"])
    edu = fetch(
        "education",
        {"certificate_number": form["certificate_number"]},
        ["holder_id_number", "degree", "study_mode"],
    )
    si = fetch(
        "social_insurance",
        {"id_number": person},
        ["city", "status", "months_contributed", "employer_credit_code"],
    )
    employer = (
        fetch(
            "business_registry",
            {"credit_code": si["employer_credit_code"]},
            ["registered_city", "status"],
        )
        if si
        else None
    )
    history = verify(
        "subsidy_history", {"id_number": person, "service": SERVICE}, ["received_before"]
    )
    prop = verify(
        "property",
        {"id_number": person, "city": "深圳市"},
        ["owns_housing", "rents_public_housing"],
    )

    # 2016: the limit depends on the registry degree (none for other degrees); 2026: 35 for all.
    limits_2016 = {"本科": 30, "硕士": 35, "博士": 40}
    limit: int | None = 35
    if version == "2016":
        limit = None if edu is None else limits_2016.get(str(edu["degree"]), 0)
    c: dict[str, bool | None] = {}
    c["C1"] = (
        None
        if edu is None
        else (
            edu["holder_id_number"] == person
            and edu["study_mode"] == "全日制"
            and edu["degree"] in ("本科", "硕士", "博士")
        )
    )
    if limit == 0:
        c["C2"] = True  # a degree without an age limit
    elif limit is None or pop is None:
        c["C2"] = None
    else:
        birth = pop["birth_date"]
        assert isinstance(birth, dt.date)
        c["C2"] = age_on(birth, day) < limit
    if pop is None:
        c["C3"] = None
    else:
        since = pop["hukou_since"]
        assert isinstance(since, dt.date)
        c["C3"] = pop["hukou_city"] == "深圳市" and since >= _anniversary(day, day.year - 1)
    c["C4"] = (
        None
        if si is None
        else (
            si["city"] == "深圳市"
            and si["status"] == "正常缴费"
            and int(str(si["months_contributed"])) >= 1
        )
    )
    c["C5"] = (
        None
        if employer is None
        else (employer["registered_city"] == "深圳市" and employer["status"] in ("存续", "在业"))
    )
    c["C6"] = not history["received_before"]
    c["C7"] = not prop["owns_housing"] and not prop["rents_public_housing"]
    c["C8"] = None if edu is None else form["degree"] == edu["degree"]

    failed = [k for k, v in c.items() if v is False]
    unknown = [k for k, v in c.items() if v is None]
    if unknown or c["C8"] is False:
        outcome = "REFERRED"
    elif failed:
        outcome = "REJECTED"
    else:
        outcome = "APPROVED"
    amount = None
    if outcome == "APPROVED":
        assert edu is not None
        amount = {"本科": 15000, "硕士": 25000, "博士": 30000}[str(edu["degree"])]
        amount = amount if version == "2016" else 1250 * 24
    return {
        "outcome": outcome,
        "failed": failed,
        "unknown": unknown,
        "version": version,
        "amount_yuan": amount,
    }


# -- tests ------------------------------------------------------------------------------------


def test_generation_is_byte_for_byte_deterministic(
    demo: tuple[Path, DemoSummary], tmp_path: Path
) -> None:
    """A second run with the same seed writes identical files."""
    out, summary = demo
    again = generate_demo_data(tmp_path / "again", rulesets_dir=None)
    assert summary == again
    assert files_of(out) == files_of(tmp_path / "again")


def test_generating_again_into_the_same_folder_gives_the_same_files(tmp_path: Path) -> None:
    """A second run over an earlier demo folder rewrites it instead of appending twice."""
    rulesets = Path(__file__).resolve().parents[2] / "rulesets"
    first = generate_demo_data(tmp_path / "demo", people=50, rulesets_dir=rulesets)
    files = files_of(tmp_path / "demo")
    second = generate_demo_data(tmp_path / "demo", people=50, rulesets_dir=rulesets)
    assert first == second
    assert files == files_of(tmp_path / "demo")
    assert 1 == first.rows["death_registry.csv"]


def test_samples_do_not_depend_on_the_seed(demo: tuple[Path, DemoSummary], tmp_path: Path) -> None:
    """The hand-crafted samples are the same for any seed and population size."""
    out, _ = demo
    small = generate_demo_data(tmp_path / "small", people=50, seed=7, rulesets_dir=None)
    assert SAMPLES == small.samples
    assert files_of(out / "applications") == files_of(tmp_path / "small" / "applications")


def test_summary_counts_match_the_files(demo: tuple[Path, DemoSummary]) -> None:
    """At least 10,000 people, and the summary's row counts are the files' row counts."""
    out, summary = demo
    assert summary.people >= 10_000
    assert 10_000 == summary.bulk_applications
    lines = (out / "applications.jsonl").read_text(encoding="utf-8").splitlines()
    assert summary.bulk_applications == len(lines)
    assert list(CSV_COLUMNS) == list(summary.rows)
    for file_name, columns in CSV_COLUMNS.items():
        with (out / file_name).open(encoding="utf-8", newline="") as handle:
            header, *rows = list(csv.reader(handle))
        assert list(columns) == header
        assert summary.rows[file_name] == len(rows)
    assert summary.rows["population.csv"] >= 9_500
    assert sum(summary.profiles.values()) == summary.people
    assert sum(summary.expected_outcomes.values()) == summary.people


def test_files_use_unix_line_endings(demo: tuple[Path, DemoSummary]) -> None:
    """No file contains a carriage return."""
    out, _ = demo
    for name, data in files_of(out).items():
        assert b"\r" not in data, name


def test_all_resident_id_numbers_are_valid(demo: tuple[Path, DemoSummary]) -> None:
    """Every ID number in every registry and application passes the GB 11643 checks."""
    out, _ = demo
    numbers = [r["id_number"] for r in read_csv(out / "population.csv")]
    numbers += [r["holder_id_number"] for r in read_csv(out / "education.csv")]
    for file_name in ("social_insurance.csv", "property.csv", "subsidy_history.csv"):
        numbers += [r["id_number"] for r in read_csv(out / file_name)]
    for line in (out / "applications.jsonl").read_text(encoding="utf-8").splitlines():
        numbers.append(json.loads(line)["applicant"]["id_number"])
    for path in (out / "applications").glob("*.json"):
        if path.name != "expected.json":
            numbers.append(json.loads(path.read_text(encoding="utf-8"))["applicant"]["id_number"])
    assert len(numbers) > 40_000
    bad = [n for n in numbers if id_number_problem(n) is not None]
    assert [] == bad


def test_gender_matches_the_id_number(demo: tuple[Path, DemoSummary]) -> None:
    """The 17th digit is odd for 男 and even for 女, and the birth date is embedded."""
    out, _ = demo
    for row in read_csv(out / "population.csv"):
        number = row["id_number"]
        assert ("男" if int(number[16]) % 2 else "女") == row["gender"]
        assert row["birth_date"].replace("-", "") == number[6:14]


def test_keys_are_unique_and_well_formed(demo: tuple[Path, DemoSummary]) -> None:
    """ID numbers, certificate numbers and credit codes are unique; certificates match the form."""
    out, _ = demo
    ids = [r["id_number"] for r in read_csv(out / "population.csv")]
    certificates = [r["certificate_number"] for r in read_csv(out / "education.csv")]
    codes = [r["credit_code"] for r in read_csv(out / "business_registry.csv")]
    si_people = [r["id_number"] for r in read_csv(out / "social_insurance.csv")]
    for keys in (ids, certificates, codes, si_people):
        assert len(keys) == len(set(keys))
    assert all(CERTIFICATE.match(c) for c in certificates)
    assert all(len(c) == 18 for c in codes)


def test_expected_json_lists_every_sample(demo: tuple[Path, DemoSummary]) -> None:
    """expected.json names exactly the sample files, with the agreed keys."""
    out, summary = demo
    assert SAMPLES == summary.samples
    expected = json.loads((out / "applications" / "expected.json").read_text(encoding="utf-8"))
    on_disk = sorted(p.name for p in (out / "applications").glob("*.json"))
    assert sorted([*expected, "expected.json"]) == on_disk
    assert [f"{name}.json" for name in SAMPLES] == list(expected)
    for entry in expected.values():
        assert {"outcome", "failed", "unknown", "version", "amount_yuan"} <= set(entry)


@pytest.mark.parametrize("name", SAMPLES)
def test_sample_data_supports_its_expected_decision(
    demo: tuple[Path, DemoSummary], registries: dict[str, Adapter], name: str
) -> None:
    """Evaluating the sample against the registries gives exactly its expected decision."""
    out, _ = demo
    body = json.loads((out / "applications" / f"{name}.json").read_text(encoding="utf-8"))
    expected = json.loads((out / "applications" / "expected.json").read_text(encoding="utf-8"))
    want = {k: v for k, v in expected[f"{name}.json"].items() if k != "description"}
    assert SERVICE == body["service"]
    assert CERTIFICATE.match(body["form"]["certificate_number"])
    assert want == evaluate(body, registries)


def test_sample_specifics(demo: tuple[Path, DemoSummary]) -> None:
    """Details the samples promise: missing records, the degree mismatch, the boundary times."""
    out, _ = demo

    def body(name: str) -> Any:
        return json.loads((out / "applications" / f"{name}.json").read_text(encoding="utf-8"))

    population = {r["id_number"] for r in read_csv(out / "population.csv")}
    insured = {r["id_number"] for r in read_csv(out / "social_insurance.csv")}
    assert body("referred-no-population")["applicant"]["id_number"] not in population
    assert body("referred-no-social-insurance")["applicant"]["id_number"] not in insured
    assert "博士" == body("referred-degree-mismatch")["form"]["degree"]
    boundary = [body(f"version-boundary-{s}") for s in ("2025-12-31", "2026-01-01", "utc")]
    assert 1 == len({b["applicant"]["id_number"] for b in boundary})
    assert ["2025-12-31T23:30:00+08:00", "2026-01-01T00:10:00+08:00", "2025-12-31T16:30:00Z"] == [
        b["submitted_at"] for b in boundary
    ]
    assert "19880229" == body("age-feb29-common-year")["applicant"]["id_number"][6:14]


def test_bulk_outcomes_match_the_summary(tmp_path: Path) -> None:
    """Evaluating every bulk application reproduces the summary's outcome counts."""
    summary = generate_demo_data(tmp_path, people=2_000, seed=11, rulesets_dir=None)
    registries = load_file_registries(tmp_path)
    outcomes: Counter[str] = Counter()
    for line in (tmp_path / "applications.jsonl").read_text(encoding="utf-8").splitlines():
        outcomes[str(evaluate(json.loads(line), registries)["outcome"])] += 1
    assert summary.expected_outcomes == dict(outcomes)
    assert outcomes["APPROVED"] > outcomes["REJECTED"] > outcomes["REFERRED"] > 0


def test_negative_people_is_refused(tmp_path: Path) -> None:
    """A negative population size is a ValueError."""
    with pytest.raises(ValueError, match="people"):
        generate_demo_data(tmp_path, people=-1)
