"""Tests for the CSV-backed registries in adapters.files."""

from __future__ import annotations

import csv
import datetime as dt
from collections.abc import Mapping, Sequence
from decimal import Decimal
from pathlib import Path

import pytest

from adapters.base import Adapter, AdapterFailure, ClaimValues, Lookup, LookupMode, raw_hash
from adapters.demo import CSV_COLUMNS
from adapters.files import (
    FileRegistry,
    RegistryFileError,
    load_registries,
    load_registry,
    write_manifest,
)
from engine.registries import RegistryCatalogue, RegistrySpec, load_catalogue

NOW = dt.datetime(2025, 6, 1, 10, 0, tzinfo=dt.UTC)
ROOT = Path(__file__).resolve().parents[2]
SHIPPED = load_catalogue(ROOT / "rulesets" / "registries.yaml")
TALENT_REGISTRIES = (
    "population",
    "education",
    "social_insurance",
    "business_registry",
    "property",
    "subsidy_history",
)
CATALOGUE = RegistryCatalogue(
    [spec for spec in SHIPPED if spec.id in TALENT_REGISTRIES], path=SHIPPED.path
)
"""The six registries the talent-housing files below hold."""
WAGES = RegistrySpec.model_validate(
    {
        "id": "employer_wages",
        "name": {"zh": "单位平均工资", "en": "Employer average wages"},
        "holder": {"zh": "市社保局", "en": "Social insurance bureau"},
        "kind": "csv",
        "location": "wages.csv",
        "key": ["credit_code", "year"],
        "record_id": "record_id",
        "fields": {"credit_code": "string", "year": "integer", "avg_monthly_wage": "number"},
        "modes": ["fetch"],
        "no_record": "unknown",
    }
)

ROWS: dict[str, list[dict[str, str]]] = {
    "population.csv": [
        {
            "record_id": "POP1",
            "id_number": "11010519491231002X",
            "name": "张三",
            "birth_date": "1949-12-31",
            "gender": "女",
            "hukou_city": "深圳市",
            "hukou_since": "2025-01-02",
        },
        {
            "record_id": "POP2",
            "id_number": "440305199603159012",
            "name": "陈思远",
            "birth_date": "1996-03-15",
            "gender": "男",
            "hukou_city": "",
            "hukou_since": "2025-03-01",
        },
    ],
    "education.csv": [
        {
            "record_id": "EDU1",
            "certificate_number": "105582024299000901",
            "holder_id_number": "440305199603159012",
            "holder_name": "陈思远",
            "degree": "硕士",
            "study_mode": "全日制",
            "school": "中山大学",
            "graduation_date": "2024-06-30",
        }
    ],
    "social_insurance.csv": [
        {
            "record_id": "SI1",
            "id_number": "440305199603159012",
            "city": "深圳市",
            "status": "正常缴费",
            "months_contributed": "6",
            "employer_credit_code": "91440300MA5F000001",
            "employer_name": "深圳市南山示范科技有限公司",
        }
    ],
    "business_registry.csv": [
        {
            "record_id": "BIZ1",
            "credit_code": "91440300MA5F000001",
            "name": "深圳市南山示范科技有限公司",
            "registered_city": "深圳市",
            "status": "存续",
            "established_date": "2012-05-18",
        }
    ],
    "property.csv": [
        {
            "record_id": "PRP1",
            "id_number": "440305199603159012",
            "city": "深圳市",
            "right_type": "产权",
        },
        {
            "record_id": "PRP2",
            "id_number": "440305199603159012",
            "city": "广州市",
            "right_type": "公共住房承租",
        },
        {
            "record_id": "PRP3",
            "id_number": "440305199603159012",
            "city": "深圳市",
            "right_type": "产权",
        },
    ],
    "subsidy_history.csv": [
        {
            "record_id": "SUB1",
            "id_number": "440305199603159012",
            "service": "graduate-employment-subsidy",
            "granted_date": "2020-01-01",
            "amount_yuan": "3000",
        },
        {
            "record_id": "SUB2",
            "id_number": "11010519491231002X",
            "service": "talent-housing-subsidy",
            "granted_date": "2019-08-01",
            "amount_yuan": "15000",
        },
    ],
}


def write_csv(path: Path, rows: Sequence[Mapping[str, str]], columns: Sequence[str]) -> None:
    """Write ``rows`` under a header of ``columns``."""
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(columns), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    """A directory holding all six registry files with a few records each; the two whose "no
    record" is a verified no (property, subsidy history) come with their manifests."""
    for file_name, columns in CSV_COLUMNS.items():
        write_csv(tmp_path / file_name, ROWS[file_name], columns)
    for spec in CATALOGUE:
        if spec.manifest_required:
            write_manifest(tmp_path / spec.location, as_of=NOW.date())
    return tmp_path


def load_all(data_dir: Path, catalogue: RegistryCatalogue = CATALOGUE) -> dict[str, Adapter]:
    loaded = load_registries(catalogue, data_dir)
    assert {} == loaded.problems
    return loaded.adapters


@pytest.fixture
def registries(data_dir: Path) -> dict[str, Adapter]:
    """The six catalogued registries loaded from ``data_dir``."""
    return load_all(data_dir)


def ask(
    adapter: Adapter,
    key: Mapping[str, object],
    fields: Sequence[str],
    *,
    mode: LookupMode = "fetch",
    claims: Mapping[str, ClaimValues | None] | None = None,
) -> Lookup:
    """Look ``key`` up with the fixed test clock."""
    return adapter.lookup(key, fields=fields, mode=mode, claims=claims, now=NOW)


PERSON = {"id_number": "440305199603159012"}


def test_load_returns_one_adapter_per_catalogued_registry(registries: dict[str, Adapter]) -> None:
    """Every catalogue entry is served by the one file adapter, under its catalogue id."""
    assert CATALOGUE.ids() == list(registries)
    for source, adapter in registries.items():
        assert isinstance(adapter, Adapter)
        assert (source, "files-2") == (adapter.source, adapter.version)


def test_fetch_found_returns_typed_values_and_provenance(registries: dict[str, Adapter]) -> None:
    """A found record yields typed values and provenance hashing exactly the raw row."""
    lookup = ask(registries["population"], PERSON, ["birth_date", "hukou_since"])
    assert "found" == lookup.status
    assert {
        "birth_date": dt.date(1996, 3, 15),
        "hukou_since": dt.date(2025, 3, 1),
    } == lookup.values
    p = lookup.provenance
    assert ("population", "files.csv", "files-2") == (p.source, p.adapter, p.adapter_version)
    assert "POP2" == p.reference
    assert NOW == p.retrieved_at
    written = {c: ROWS["population.csv"][1].get(c, "") for c in CSV_COLUMNS["population.csv"]}
    assert raw_hash([written]) == p.raw_sha256


def test_fetch_returns_only_requested_fields_and_an_empty_cell_is_missing(
    registries: dict[str, Adapter],
) -> None:
    """Only the fields asked for come back; an empty cell is missing (None), never ''."""
    lookup = ask(registries["population"], PERSON, ["hukou_city"])
    assert {"hukou_city": None} == lookup.values


def test_fetch_converts_integers(registries: dict[str, Adapter]) -> None:
    """Integer columns are returned as int."""
    lookup = ask(registries["social_insurance"], PERSON, ["months_contributed", "city"])
    assert {"months_contributed": 6, "city": "深圳市"} == lookup.values


def test_fetch_not_found(registries: dict[str, Adapter]) -> None:
    """A key with no record is not_found, with no values, reference or hash."""
    lookup = ask(registries["education"], {"certificate_number": "000"}, ["degree"])
    assert ("not_found", {}, None, None) == (
        lookup.status,
        lookup.values,
        lookup.provenance.reference,
        lookup.provenance.raw_sha256,
    )


def test_property_verify_answers_only_booleans_for_the_city_in_the_key(
    registries: dict[str, Adapter],
) -> None:
    """The catalogue's named answers are checked against the person's rows in that city only."""
    lookup = ask(
        registries["property"],
        {**PERSON, "city": "深圳市"},
        ["owns_housing", "rents_public_housing"],
        mode="verify",
        claims={"owns_housing": None, "rents_public_housing": None},
    )
    assert "found" == lookup.status
    assert {"owns_housing": True, "rents_public_housing": False} == lookup.values
    assert "PRP1,PRP3" == lookup.provenance.reference
    elsewhere = ask(
        registries["property"],
        {**PERSON, "city": "广州市"},
        ["owns_housing", "rents_public_housing"],
        mode="verify",
    )
    assert {"owns_housing": False, "rents_public_housing": True} == elsewhere.values


def test_no_record_in_a_negative_registry_is_a_verified_no(registries: dict[str, Adapter]) -> None:
    """no_record: negative — a person with no rows gets found/False, with no reference."""
    lookup = ask(
        registries["property"],
        {"id_number": "11010519491231002X", "city": "深圳市"},
        ["owns_housing"],
        mode="verify",
    )
    assert ("found", {"owns_housing": False}, None) == (
        lookup.status,
        lookup.values,
        lookup.provenance.reference,
    )


def test_subsidy_history_exists_answer_is_per_service(registries: dict[str, Adapter]) -> None:
    """received_before (claim: exists) is true only for a row under the asked-for service."""
    history = registries["subsidy_history"]

    def received(person: str, service: str) -> object:
        key = {"id_number": person, "service": service}
        return ask(history, key, ["received_before"], mode="verify").values["received_before"]

    assert True is received("11010519491231002X", "talent-housing-subsidy")
    assert False is received("440305199603159012", "talent-housing-subsidy")
    assert True is received("440305199603159012", "graduate-employment-subsidy")


def test_a_claim_from_the_ruleset_is_checked_with_its_values(
    registries: dict[str, Adapter],
) -> None:
    """A verify claim with values matches only a record holding all of them."""
    prop = registries["property"]
    key = {**PERSON, "city": "广州市"}

    def holds(claim: ClaimValues) -> object:
        return ask(prop, key, ["x"], mode="verify", claims={"x": claim}).values["x"]

    assert True is holds({"right_type": "公共住房承租"})
    assert False is holds({"right_type": "产权"})
    assert True is holds({})


def test_verify_in_an_unknown_no_record_registry_is_not_found(data_dir: Path) -> None:
    """no_record: unknown — a key with no rows answers nothing (the facts stay UNKNOWN)."""
    spec = CATALOGUE.get("property")
    assert spec is not None
    unsure = spec.model_copy(update={"no_record": "unknown"})
    registry = load_registry(unsure, data_dir)
    lookup = ask(registry, {"id_number": "X", "city": "深圳市"}, ["owns_housing"], mode="verify")
    assert ("not_found", {}) == (lookup.status, lookup.values)


def test_a_composite_fetch_key_with_typed_parts(tmp_path: Path) -> None:
    """Credit code + year: the year given as an int or as text finds the same record."""
    write_csv(
        tmp_path / "wages.csv",
        [
            {
                "record_id": "W1",
                "credit_code": "91A",
                "year": "2024",
                "avg_monthly_wage": "12345.60",
            },
            {"record_id": "W2", "credit_code": "91A", "year": "2025", "avg_monthly_wage": "13000"},
        ],
        ["record_id", "credit_code", "year", "avg_monthly_wage"],
    )
    registry = load_registry(WAGES, tmp_path)
    by_int = ask(registry, {"credit_code": "91A", "year": 2024}, ["avg_monthly_wage"])
    by_text = ask(registry, {"credit_code": "91A", "year": "2024"}, ["avg_monthly_wage"])
    assert {"avg_monthly_wage": Decimal("12345.60")} == by_int.values == by_text.values
    assert "W1" == by_int.provenance.reference
    assert (
        "not_found"
        == ask(registry, {"credit_code": "91A", "year": 2023}, ["avg_monthly_wage"]).status
    )


def test_a_parquet_registry_answers_like_its_csv(tmp_path: Path) -> None:
    """The same records as Parquet (native ints and dates) give the same typed answers."""
    import pandas as pd

    spec = WAGES.model_copy(update={"kind": "parquet", "location": "wages.parquet"})
    pd.DataFrame(
        {
            "record_id": ["W1"],
            "credit_code": ["91A"],
            "year": [2024],
            "avg_monthly_wage": ["12345.60"],
        }
    ).to_parquet(tmp_path / "wages.parquet")
    registry = load_registry(spec, tmp_path)
    lookup = ask(registry, {"credit_code": "91A", "year": 2024}, ["avg_monthly_wage", "year"])
    assert {"avg_monthly_wage": Decimal("12345.60"), "year": 2024} == lookup.values
    assert "files.parquet" == lookup.provenance.adapter


def test_unknown_field_raises(registries: dict[str, Adapter]) -> None:
    """Asking for a field the registry does not have is a ValueError naming the field."""
    with pytest.raises(ValueError, match="'shoe_size'"):
        ask(registries["population"], PERSON, ["shoe_size"])


def test_unsupported_mode_raises(registries: dict[str, Adapter]) -> None:
    """A mode the registry does not allow is refused, and supports() says so."""
    assert not registries["population"].supports("verify")
    with pytest.raises(ValueError, match="does not support mode 'verify'"):
        ask(registries["population"], PERSON, ["birth_date"], mode="verify")


def test_a_key_must_give_every_key_field(registries: dict[str, Adapter]) -> None:
    """Property verification without a city is a ValueError naming the key fields."""
    with pytest.raises(ValueError, match="keyed by id_number, city"):
        ask(registries["property"], PERSON, ["owns_housing"], mode="verify")


def test_missing_column_error_names_file_and_column(data_dir: Path) -> None:
    """A file lacking a declared column is refused with the file and column named."""
    columns = [c for c in CSV_COLUMNS["population.csv"] if c != "hukou_since"]
    rows = [{k: v for k, v in r.items() if k in columns} for r in ROWS["population.csv"]]
    write_csv(data_dir / "population.csv", rows, columns)
    loaded = load_registries(CATALOGUE, data_dir)
    problem = loaded.problems["population"]
    assert "population.csv" in problem and "hukou_since" in problem
    assert "\n" not in problem
    assert "education" in loaded.adapters


def test_missing_file_error_names_the_file(data_dir: Path) -> None:
    """A missing registry file is one line naming the file; the other registries load."""
    (data_dir / "education.csv").unlink()
    loaded = load_registries(CATALOGUE, data_dir)
    assert "education.csv" in loaded.problems["education"]
    assert set(loaded.adapters) == set(CATALOGUE.ids()) - {"education"}


def test_empty_file_error_names_the_file(data_dir: Path) -> None:
    """An empty registry file (no header) fails to load with the file named."""
    (data_dir / "property.csv").write_text("", encoding="utf-8")
    with pytest.raises(RegistryFileError, match=r"property\.csv"):
        load_registry(CATALOGUE.get("property"), data_dir)  # type: ignore[arg-type]


def test_header_only_file_loads_empty(data_dir: Path) -> None:
    """A file with only a header, whose manifest says 0 rows, is an empty registry."""
    write_csv(data_dir / "property.csv", [], CSV_COLUMNS["property.csv"])
    write_manifest(data_dir / "property.csv", as_of=NOW.date())
    assert 0 == len(load_registry(CATALOGUE.get("property"), data_dir))  # type: ignore[arg-type]


def test_byte_order_mark_is_tolerated(data_dir: Path) -> None:
    """A UTF-8 file saved with a byte-order mark (as by Excel) still loads."""
    path = data_dir / "population.csv"
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    registry = load_registry(CATALOGUE.get("population"), data_dir)  # type: ignore[arg-type]
    assert "found" == ask(registry, PERSON, ["birth_date"]).status


def test_a_malformed_value_refuses_the_file_naming_row_and_column(data_dir: Path) -> None:
    """A bad date is one line: the file, the row (line number) and the column, no traceback."""
    rows = [dict(r) for r in ROWS["population.csv"]]
    rows[1]["birth_date"] = "1996-02-30"
    write_csv(data_dir / "population.csv", rows, CSV_COLUMNS["population.csv"])
    with pytest.raises(RegistryFileError) as info:
        load_registry(CATALOGUE.get("population"), data_dir)  # type: ignore[arg-type]
    err = info.value
    assert (3, "birth_date") == (err.row, err.column)
    text = str(err)
    assert "population.csv:3:" in text and "birth_date" in text and "1996-02-30" in text
    assert "\n" not in text


def test_duplicate_fetch_key_is_a_failure(data_dir: Path) -> None:
    """Two records under one fetch key are ambiguous: ADAPTER_BAD_DATA naming both rows."""
    rows = [*ROWS["population.csv"], {**ROWS["population.csv"][1], "record_id": "POP3"}]
    write_csv(data_dir / "population.csv", rows, CSV_COLUMNS["population.csv"])
    registry = load_registry(CATALOGUE.get("population"), data_dir)  # type: ignore[arg-type]
    with pytest.raises(AdapterFailure) as info:
        ask(registry, PERSON, ["birth_date"])
    assert "ADAPTER_BAD_DATA" == info.value.code
    assert "3, 4" in info.value.message


def test_rows_in_memory_are_checked_like_a_file() -> None:
    """Building a registry from rows converts and checks every cell the same way."""
    spec = CATALOGUE.get("social_insurance")
    assert spec is not None
    with pytest.raises(RegistryFileError, match="months_contributed"):
        FileRegistry.from_rows(
            spec, [{**ROWS["social_insurance.csv"][0], "months_contributed": "six"}]
        )
