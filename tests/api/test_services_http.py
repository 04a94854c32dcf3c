"""The v2 services and a registry added as data, decided by a real ``miaopi serve`` over HTTP."""

from __future__ import annotations

import re
import shutil
import subprocess
import uuid
from collections.abc import Callable
from decimal import ROUND_HALF_UP, Context, Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

NEW_SERVICES = ("old-age-allowance", "maternity-allowance", "beijing-points-hukou")


def post(http: httpx.Client, body: dict[str, Any]) -> httpx.Response:
    fresh = {**body, "application_id": f"H-{uuid.uuid4().hex[:16]}"}
    return http.post(
        "/v1/decisions", json=fresh, headers={"Idempotency-Key": f"k-{uuid.uuid4().hex}"}
    )


def explanation(http: httpx.Client, decided: dict[str, Any]) -> dict[str, Any]:
    r = http.get(decided["explanation_url"])
    assert 200 == r.status_code, r.text
    body: dict[str, Any] = r.json()
    return body


def test_each_new_service_decides_approved_rejected_and_referred_samples_over_http(
    serve: Callable[..., str], rulesets_dir: Path, demo_dir: Path, demo_samples: dict
) -> None:
    """Every sample of the three new services gets its expected outcome, criteria and outputs."""
    base = serve(rulesets=rulesets_dir, data_dir=demo_dir)
    outcomes: dict[str, set[str]] = {s: set() for s in NEW_SERVICES}
    expected, actual = {}, {}
    with httpx.Client(base_url=base, timeout=30, headers=serve.headers) as http:
        for name, sample in demo_samples.items():
            service = sample.body["service"]
            if service not in NEW_SERVICES:
                continue
            r = post(http, sample.body)
            assert 201 == r.status_code, r.text
            got = r.json()
            e = sample.expected
            expected[name] = (e["outcome"], e["failed"], e["unknown"], e["version"], e["outputs"])
            actual[name] = (
                got["outcome"],
                got["failed_criteria"],
                got["unknown_criteria"],
                got["ruleset"]["version"],
                got["outputs"],
            )
            outcomes[service].add(got["outcome"])
    assert expected == actual
    for service, seen in outcomes.items():
        assert {"APPROVED", "REJECTED", "REFERRED"} == seen, service


def test_a_maternity_record_shows_values_parameters_with_periods_and_an_amount_to_the_fen(
    serve: Callable[..., str], rulesets_dir: Path, demo_dir: Path, demo_samples: dict
) -> None:
    """Twins with a difficult birth: 143 days at last year's wage ÷ 30, exact to the fen."""
    base = serve(rulesets=rulesets_dir, data_dir=demo_dir)
    with httpx.Client(base_url=base, timeout=30, headers=serve.headers) as http:
        decided = post(http, demo_samples["approved-maternity-twins-dystocia.json"].body).json()
        exp = explanation(http, decided)
    record = exp["record"]
    wage = Decimal("11850.50")
    amount = (wage / 30 * 143).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
    assert {"amount_yuan": str(amount), "allowance_days": 143, "reward_leave_days": 80} == (
        decided["outputs"]
    )
    assert re.fullmatch(r"\d+\.\d{2}", decided["outputs"]["amount_yuan"])
    values = {v["name"]: v for v in record["values"]}
    assert 143 == values["allowance_days"]["value"]
    inputs = {
        i["expression"]: (i["value"], i["source"]) for i in values["allowance_days"]["inputs"]
    }
    assert inputs["birth.babies"] == (2, "registry:birth_certificates")
    assert inputs["birth.dystocia"] == (True, "registry:birth_certificates")
    assert inputs["dystocia_extra_days"] == (30, "parameter")
    assert Decimal(values["daily_wage"]["value"]) == Context(prec=34).divide(wage, 30)
    params = {p["name"]: p for p in record["parameters"]}
    assert ("80", "2016-09-29", None, ["gd-population-2016"]) == (
        str(params["reward_leave_days"]["value"]),
        params["reward_leave_days"]["effective_from"],
        params["reward_leave_days"]["effective_to"],
        params["reward_leave_days"]["legal_basis"],
    )
    assert "miaopi.explanation-record/4" == record["schema_version"]
    assert f"{amount:,.2f}元" in exp["text_zh"]
    assert "float" not in str(type(decided["outputs"]["amount_yuan"]))


def test_the_points_record_names_the_rules_that_scored_and_the_score_in_force(
    serve: Callable[..., str], rulesets_dir: Path, demo_dir: Path, demo_samples: dict
) -> None:
    """The COLLECT SUM table's matched rules, the total and the 2018 score are in the record."""
    base = serve(rulesets=rulesets_dir, data_dir=demo_dir)
    with httpx.Client(base_url=base, timeout=30, headers=serve.headers) as http:
        below = post(http, demo_samples["rejected-points-below-score.json"].body).json()
        record = explanation(http, below)["record"]
    points = next(v for v in record["values"] if v["name"] == "points")
    assert ("90.5", [1, 3, 6, 10]) == (points["value"], points["rules"])
    score = next(p for p in record["parameters"] if p["name"] == "qualifying_score")
    assert ("90.75", "2018-01-01") == (score["value"], score["effective_from"])
    c7 = next(c for c in record["criteria"] if c["id"] == "C7")
    assert ("FAIL", "积分合计90.5分，本年度落户分值为90.75分。") == (c7["status"], c7["reason_zh"])
    declared = [v for c in record["criteria"] for v in c["values"] if v["source"] == "declared"]
    assert declared, "declared inputs are marked as the applicant's own"


# --- a registry and a service added as data ---------------------------------------------

VETERANS_REGISTRY = """
  - id: veterans
    name: {zh: 退役军人信息库, en: Veterans registry}
    holder: {zh: 市退役军人事务局, en: Municipal Veterans Affairs Bureau}
    kind: csv
    location: veterans.csv
    key: [id_number]
    record_id: record_id
    fields:
      id_number: {type: string, personal: id_number}
      service_years: integer
      discharge_date: date
      disability_grade: string
    modes: [fetch]
    no_record: unknown
"""

VETERANS_CSV = """record_id,id_number,service_years,discharge_date,disability_grade
VET001,{approved},12,2020-09-01,
VET002,{short},1,2024-03-01,
"""

SERVICE = """
schema_version: 2
service: veteran-resettlement-grant
version: "2026"
name: {zh: 退役军人一次性安置补助, en: One-off resettlement grant for veterans}
authority: {zh: 市退役军人事务局, en: Municipal Veterans Affairs Bureau}
effective_from: 2026-01-01
status: published
legal_basis:
  - id: veterans-law
    title: 中华人民共和国退役军人保障法
    issuer: 全国人民代表大会常务委员会
    doc_number: 中华人民共和国主席令第六十三号
    article: 第二十二条
inputs:
  - name: bank_card_last4
    type: string
    pattern: "^[0-9]{4}$"
    title: {zh: 银行卡后四位, en: Last four digits of the bank card}
evidence:
  - id: veteran
    registry: veterans
    key: applicant.id_number
    fields: {service_years: integer, discharge_date: date}
parameters:
  yuan_per_year:
    title: {zh: 每服役一年补助标准, en: Grant per year of service}
    type: number
    unit: 元
    values:
      - from: 2026-01-01
        value: 1234.56
        legal_basis: [veterans-law]
values:
  grant:
    title: {zh: "补助金额（最高15,000元）", en: "Grant (at most 15,000 yuan)"}
    unit: 元
    legal_basis: [veterans-law]
    expr: round(min(veteran.service_years * yuan_per_year, 15000), 2)
criteria:
  - id: V1
    title: {zh: 服役满2年, en: Served two years or more}
    legal_basis: [veterans-law]
    condition: veteran.service_years >= 2
    on_fail: reject
    reason:
      zh: 服役{veteran.service_years}年，须满2年。
      en: Served {veteran.service_years} year(s); two are required.
outputs:
  id: grant
  title: {zh: 安置补助, en: Grant}
  legal_basis: [veterans-law]
  hit_policy: UNIQUE
  columns:
    amount_yuan: {type: number, unit: 元, title: {zh: 安置补助金额, en: Grant}}
  rules:
    - then: {amount_yuan: grant}
tests:
  - name: Twelve years of service earn the capped grant of 14,814.72 yuan
    application:
      date: 2026-03-01
      applicant: {id_number: "110101199001010019", name: 测试}
      form: {bank_card_last4: "1234"}
    evidence:
      veteran: {service_years: 12, discharge_date: 2020-09-01}
    expect: {outcome: APPROVED, outputs: {amount_yuan: "14814.72"}}
"""

BROKEN_DRAFT = """
schema_version: 2
service: veteran-resettlement-grant
version: "2027-draft"
name: {zh: 退役军人一次性安置补助（草案）, en: Grant (draft)}
authority: {zh: 市退役军人事务局, en: Veterans Affairs}
effective_from: 2027-01-01
status: draft
legal_basis:
  - {id: veterans-law, title: 中华人民共和国退役军人保障法, issuer: 全国人民代表大会常务委员会}
inputs:
  - {name: x, type: string, title: {zh: x, en: x}}
evidence:
  - id: death
    registry: death_registry_2
    key: applicant.id_number
    fields: {deceased: boolean}
criteria:
  - id: V1
    title: {zh: 草案, en: Draft}
    legal_basis: [veterans-law]
    condition: floor(death.deceased
    on_fail: reject
    reason: {zh: 草案, en: Draft}
"""


def _id(first17: str) -> str:
    from engine.privacy import check_digit

    return first17 + check_digit(first17)


def test_a_new_registry_and_service_written_only_as_yaml_and_csv_decide_through_the_api(
    tmp_path: Path,
    serve: Callable[..., str],
    rulesets_dir: Path,
    demo_dir: Path,
    demo_samples: dict,
    repo_root: Path,
    miaopi_bin: Path,
) -> None:
    """A catalogue entry, a CSV and a ruleset are enough; a broken draft beside them and a
    service whose registry file is missing stop nothing else."""
    rules, data = tmp_path / "rulesets", tmp_path / "data"
    shutil.copytree(rulesets_dir, rules, ignore=shutil.ignore_patterns("demo"))
    shutil.copytree(demo_dir, data)
    approved, short, unknown = (
        _id("11010119900101001"),
        _id("11010119920202002"),
        _id("11010119930303003"),
    )
    with (rules / "registries.yaml").open("a", encoding="utf-8") as f:
        f.write(VETERANS_REGISTRY)
    (data / "veterans.csv").write_text(
        VETERANS_CSV.format(approved=approved, short=short), encoding="utf-8"
    )
    (rules / "veteran-resettlement-grant").mkdir()
    (rules / "veteran-resettlement-grant" / "2026.yaml").write_text(SERVICE, encoding="utf-8")
    (rules / "veteran-resettlement-grant" / "next-year-draft.yaml").write_text(
        BROKEN_DRAFT, encoding="utf-8"
    )
    (data / "death_registry.csv").unlink()  # the old-age allowance loses its registry

    base = serve(rulesets=rules, data_dir=data)
    with httpx.Client(base_url=base, timeout=30, headers=serve.headers) as http:
        health = http.get("/v1/ops/health").json()  # on this machine: the full report
        public = http.get("/healthz").text

        def decide(id_number: str) -> dict[str, Any]:
            body = {
                "service": "veteran-resettlement-grant",
                "application_id": "x",
                "submitted_at": "2026-03-01T10:00:00+08:00",
                "applicant": {"id_number": id_number, "name": "测试"},
                "form": {"bank_card_last4": "1234"},
            }
            r = post(http, body)
            assert 201 == r.status_code, r.text
            return r.json()  # type: ignore[no-any-return]

        granted, refused, referred = decide(approved), decide(short), decide(unknown)
        talent = post(http, demo_samples["approved-master-2016.json"].body)
        old_age = post(http, demo_samples["approved-old-age-86.json"].body)
        maternity = post(http, demo_samples["approved-maternity-standard.json"].body)

    assert ("APPROVED", {"amount_yuan": "14814.72"}) == (granted["outcome"], granted["outputs"])
    assert ("REJECTED", ["V1"]) == (refused["outcome"], refused["failed_criteria"])
    assert ("REFERRED", ["V1"]) == (referred["outcome"], referred["unknown_criteria"])
    assert (201, "APPROVED") == (talent.status_code, talent.json()["outcome"])
    assert (201, "APPROVED") == (maternity.status_code, maternity.json()["outcome"])
    assert 503 == old_age.status_code
    error = old_age.json()["error"]
    assert "SERVICE_UNAVAILABLE" == error["code"]
    assert "death_registry" in str(error["fields"])
    assert str(tmp_path) not in old_age.text  # operators see paths; clients do not
    assert str(tmp_path) not in public and "death_registry.csv" not in public
    assert '"old-age-allowance"' in public and '"servable":false' in public

    assert "degraded" == health["status"]
    status = {(r["service"], r["version"]): r for r in health["rulesets"]}
    assert status[("veteran-resettlement-grant", "2026")]["servable"]
    draft = status[("veteran-resettlement-grant", "2027-draft")]
    assert not draft["servable"]
    assert any("next-year-draft.yaml" in p and "death_registry_2" in p for p in draft["problems"])
    assert not status[("old-age-allowance", "2024")]["servable"]
    registries = {r["id"]: r for r in health["registries"]}
    assert (True, 2) == (registries["veterans"]["loaded"], registries["veterans"]["records"])
    assert "death_registry.csv" in registries["death_registry"]["problem"]

    listing = subprocess.run(
        [str(miaopi_bin), "ruleset", "list", "--rulesets", str(rules), "--data-dir", str(data)],
        cwd=repo_root,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert 1 == listing.returncode  # not everything is servable
    assert "veteran-resettlement-grant@2026 published" in listing.stdout
    assert (
        "old-age-allowance@2024 published 2024-01-01… 不可提供服务 / NOT servable" in listing.stdout
    )
    assert "Traceback" not in listing.stdout + listing.stderr


@pytest.mark.parametrize(
    ("damage", "where"),
    [
        pytest.param(lambda t: t.replace("2020-09-01", "2020-13-01"), ":2:", id="bad date"),
        pytest.param(lambda t: t.replace("service_years", "years"), "service_years", id="header"),
    ],
)
def test_a_malformed_data_file_is_one_line_naming_file_row_and_column(
    tmp_path: Path,
    serve: Callable[..., str],
    rulesets_dir: Path,
    demo_dir: Path,
    damage: Callable[[str], str],
    where: str,
) -> None:
    """A damaged registry file is reported in one line at /v1/ops/health; its service answers 503."""
    rules, data = tmp_path / "rulesets", tmp_path / "data"
    shutil.copytree(rulesets_dir, rules, ignore=shutil.ignore_patterns("demo"))
    shutil.copytree(demo_dir, data)
    with (rules / "registries.yaml").open("a", encoding="utf-8") as f:
        f.write(VETERANS_REGISTRY)
    good = VETERANS_CSV.format(approved=_id("11010119900101001"), short=_id("11010119920202002"))
    (data / "veterans.csv").write_text(damage(good), encoding="utf-8")
    (rules / "veteran-resettlement-grant").mkdir()
    (rules / "veteran-resettlement-grant" / "2026.yaml").write_text(SERVICE, encoding="utf-8")
    base = serve(rulesets=rules, data_dir=data)
    with httpx.Client(base_url=base, timeout=30, headers=serve.headers) as http:
        problem = next(
            r for r in http.get("/v1/ops/health").json()["registries"] if r["id"] == "veterans"
        )
        public = next(r for r in http.get("/healthz").json()["registries"] if r["id"] == "veterans")
    text = problem["problem"]
    assert "veterans.csv" in text and where in text and "\n" not in text
    assert "Traceback" not in text
    assert (False, "未能加载 / did not load") == (public["loaded"], public["problem"])
