"""Tests for the CSV-backed registries in adapters.files."""

from __future__ import annotations

import csv
import datetime as dt
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest
import yaml

from adapters.base import Adapter, AdapterFailure, Lookup, LookupMode, raw_hash
from adapters.files import (
    CSV_COLUMNS,
    PopulationRegistry,
    PropertyRegistry,
    RegistryFileError,
    SubsidyHistoryRegistry,
    load_file_registries,
)

NOW = dt.datetime(2025, 6, 1, 10, 0, tzinfo=dt.UTC)
RULESET = Path(__file__).resolve().parents[2] / "rulesets" / "talent-housing-subsidy" / "2016.yaml"

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
    """A directory holding all six registry files with a few records each."""
    for file_name, columns in CSV_COLUMNS.items():
        write_csv(tmp_path / file_name, ROWS[file_name], columns)
    return tmp_path


@pytest.fixture
def registries(data_dir: Path) -> dict[str, Adapter]:
    """The six registries loaded from ``data_dir``."""
    return load_file_registries(data_dir)


def ask(
    adapter: Adapter,
    key: str,
    fields: Sequence[str],
    *,
    mode: LookupMode = "fetch",
    params: Mapping[str, str] | None = None,
) -> Lookup:
    """Look ``key`` up with the fixed test clock."""
    return adapter.lookup(key, fields=fields, mode=mode, params=params or {}, now=NOW)


def test_load_returns_one_adapter_per_source(registries: dict[str, Adapter]) -> None:
    """All six sources are loaded, each an Adapter whose source matches its key."""
    expected = [
        "population",
        "education",
        "social_insurance",
        "business_registry",
        "property",
        "subsidy_history",
    ]
    assert expected == list(registries)
    for source, adapter in registries.items():
        assert isinstance(adapter, Adapter)
        assert source == adapter.source
        assert "files-1" == adapter.version


def test_registries_serve_every_evidence_entry_of_the_ruleset(
    registries: dict[str, Adapter],
) -> None:
    """Each evidence entry in the 2016 ruleset names an adapter, mode and fields that exist."""
    ruleset = yaml.safe_load(RULESET.read_text(encoding="utf-8"))
    for evidence in ruleset["evidence"]:
        adapter = registries[evidence["adapter"]]
        assert adapter.supports(evidence["mode"])
        for name, type_name in evidence["fields"].items():
            assert type_name == adapter.fields[name]


def test_fetch_found_returns_typed_values_and_provenance(registries: dict[str, Adapter]) -> None:
    """A found record yields typed values and provenance hashing exactly the raw row."""
    lookup = ask(registries["population"], "440305199603159012", ["birth_date", "hukou_since"])
    assert "found" == lookup.status
    assert {
        "birth_date": dt.date(1996, 3, 15),
        "hukou_since": dt.date(2025, 3, 1),
    } == lookup.values
    p = lookup.provenance
    assert ("population", "files.PopulationRegistry", "files-1") == (
        p.source,
        p.adapter,
        p.adapter_version,
    )
    assert "POP2" == p.reference
    assert NOW == p.retrieved_at
    assert raw_hash([ROWS["population.csv"][1]]) == p.raw_sha256


def test_fetch_returns_only_requested_fields(registries: dict[str, Adapter]) -> None:
    """Only the fields asked for come back, and empty cells are empty strings."""
    lookup = ask(registries["population"], "440305199603159012", ["hukou_city"])
    assert {"hukou_city": ""} == lookup.values


def test_fetch_converts_integers(registries: dict[str, Adapter]) -> None:
    """Integer columns are returned as int."""
    lookup = ask(
        registries["social_insurance"],
        "440305199603159012",
        ["months_contributed", "employer_credit_code"],
    )
    assert {"months_contributed": 6, "employer_credit_code": "91440300MA5F000001"} == lookup.values


@pytest.mark.parametrize(
    ("source", "key", "fields"),
    [
        ("population", "440305199603159013", ["birth_date"]),
        ("education", "999999999999", ["degree"]),
        ("social_insurance", "11010519491231002X", ["city"]),
        ("business_registry", "91440300MA5F000009", ["status"]),
    ],
)
def test_fetch_not_found(
    registries: dict[str, Adapter], source: str, key: str, fields: list[str]
) -> None:
    """A key with no record is not_found, with no values, reference or hash."""
    lookup = ask(registries[source], key, fields)
    assert "not_found" == lookup.status
    assert {} == lookup.values
    assert lookup.provenance.reference is None
    assert lookup.provenance.raw_sha256 is None


def test_property_verify_answers_only_booleans(registries: dict[str, Adapter]) -> None:
    """Property verification returns booleans only, from the person's rows in that city."""
    lookup = ask(
        registries["property"],
        "440305199603159012",
        ["owns_housing", "rents_public_housing"],
        mode="verify",
        params={"city": "深圳市"},
    )
    assert "found" == lookup.status
    assert {"owns_housing": True, "rents_public_housing": False} == lookup.values
    assert "PRP1,PRP3" == lookup.provenance.reference
    rows = ROWS["property.csv"]
    assert raw_hash([rows[0], rows[2]]) == lookup.provenance.raw_sha256


def test_property_verify_other_city(registries: dict[str, Adapter]) -> None:
    """Rows in another city answer for that city only."""
    lookup = ask(
        registries["property"],
        "440305199603159012",
        ["rents_public_housing"],
        mode="verify",
        params={"city": "广州市"},
    )
    assert {"rents_public_housing": True} == lookup.values
    assert "PRP2" == lookup.provenance.reference


def test_property_no_record_is_a_verified_negative(registries: dict[str, Adapter]) -> None:
    """No property record is found-False, with the hash of the empty record list."""
    lookup = ask(
        registries["property"],
        "11010519491231002X",
        ["owns_housing", "rents_public_housing"],
        mode="verify",
        params={"city": "深圳市"},
    )
    assert "found" == lookup.status
    assert {"owns_housing": False, "rents_public_housing": False} == lookup.values
    assert lookup.provenance.reference is None
    assert raw_hash([]) == lookup.provenance.raw_sha256


@pytest.mark.parametrize(
    ("key", "received", "reference"),
    [
        ("11010519491231002X", True, "SUB2"),
        ("440305199603159012", False, None),  # only another service's subsidy
        ("440305199603159013", False, None),  # no rows at all
    ],
)
def test_subsidy_history_verify(
    registries: dict[str, Adapter], key: str, received: bool, reference: str | None
) -> None:
    """received_before is true only for a row of the asked-for service."""
    lookup = ask(
        registries["subsidy_history"],
        key,
        ["received_before"],
        mode="verify",
        params={"service": "talent-housing-subsidy"},
    )
    assert "found" == lookup.status
    assert {"received_before": received} == lookup.values
    assert reference == lookup.provenance.reference
    assert lookup.provenance.raw_sha256 is not None


@pytest.mark.parametrize(
    ("source", "mode", "params"),
    [
        ("population", "fetch", {}),
        ("education", "fetch", {}),
        ("social_insurance", "fetch", {}),
        ("business_registry", "fetch", {}),
        ("property", "verify", {"city": "深圳市"}),
        ("subsidy_history", "verify", {"service": "talent-housing-subsidy"}),
    ],
)
def test_unknown_field_raises(
    registries: dict[str, Adapter], source: str, mode: LookupMode, params: dict[str, str]
) -> None:
    """Asking for a field the registry does not have is a ValueError naming the field."""
    with pytest.raises(ValueError, match="no_such_field"):
        ask(registries[source], "440305199603159012", ["no_such_field"], mode=mode, params=params)


@pytest.mark.parametrize(
    ("source", "mode"),
    [("population", "verify"), ("property", "fetch"), ("subsidy_history", "fetch")],
)
def test_unsupported_mode_raises(
    registries: dict[str, Adapter], source: str, mode: LookupMode
) -> None:
    """A mode the registry does not support is refused, and supports() says so."""
    adapter = registries[source]
    assert not adapter.supports(mode)
    with pytest.raises(ValueError, match="does not support mode"):
        ask(adapter, "440305199603159012", [], mode=mode)


def test_verify_requires_its_params(registries: dict[str, Adapter]) -> None:
    """Property verification without a city is a ValueError naming the parameter."""
    with pytest.raises(ValueError, match="city"):
        ask(registries["property"], "440305199603159012", ["owns_housing"], mode="verify")


@pytest.mark.parametrize(("file_name", "columns"), list(CSV_COLUMNS.items()))
def test_missing_column_error_names_file_and_column(
    data_dir: Path, file_name: str, columns: tuple[str, ...]
) -> None:
    """A file lacking a column fails to load with the file and column named."""
    dropped = columns[-1]
    rows = [{k: v for k, v in r.items() if k != dropped} for r in ROWS[file_name]]
    write_csv(data_dir / file_name, rows, columns[:-1])
    with pytest.raises(RegistryFileError) as caught:
        load_file_registries(data_dir)
    assert (dropped,) == caught.value.missing_columns
    assert data_dir / file_name == caught.value.path
    assert file_name in str(caught.value)
    assert dropped in str(caught.value)


def test_missing_file_error_names_the_file(data_dir: Path) -> None:
    """A missing registry file fails to load with the file named."""
    (data_dir / "education.csv").unlink()
    with pytest.raises(RegistryFileError, match=r"education\.csv") as caught:
        load_file_registries(data_dir)
    assert CSV_COLUMNS["education.csv"] == caught.value.missing_columns


def test_empty_file_error_names_the_file(data_dir: Path) -> None:
    """An empty registry file (no header) fails to load with the file named."""
    (data_dir / "property.csv").write_text("", encoding="utf-8")
    with pytest.raises(RegistryFileError, match=r"property\.csv"):
        load_file_registries(data_dir)


def test_header_only_file_loads_empty(data_dir: Path) -> None:
    """A file with only a header is an empty registry, not an error."""
    write_csv(data_dir / "population.csv", [], CSV_COLUMNS["population.csv"])
    registry = PopulationRegistry.from_csv(data_dir / "population.csv")
    assert 0 == len(registry)
    assert "not_found" == ask(registry, "440305199603159012", ["gender"]).status


def test_byte_order_mark_is_tolerated(data_dir: Path) -> None:
    """A UTF-8 file saved with a byte-order mark (as by Excel) still loads."""
    path = data_dir / "subsidy_history.csv"
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    registry = SubsidyHistoryRegistry.from_csv(path)
    assert 2 == len(registry)


def test_malformed_value_fails_only_that_record(data_dir: Path) -> None:
    """A bad date makes that record's lookup an ADAPTER_BAD_DATA failure naming the line."""
    rows = [dict(r) for r in ROWS["population.csv"]]
    rows[0]["birth_date"] = "1949-13-01"
    write_csv(data_dir / "population.csv", rows, CSV_COLUMNS["population.csv"])
    registry = PopulationRegistry.from_csv(data_dir / "population.csv")
    with pytest.raises(AdapterFailure) as caught:
        ask(registry, "11010519491231002X", ["gender"])
    assert "ADAPTER_BAD_DATA" == caught.value.code
    assert "line 2" in caught.value.message
    assert "birth_date" in caught.value.message
    assert "found" == ask(registry, "440305199603159012", ["gender"]).status


def test_duplicate_fetch_key_is_a_failure(data_dir: Path) -> None:
    """Two records under one fetch key are ambiguous: ADAPTER_BAD_DATA naming both lines."""
    rows = [*ROWS["population.csv"], {**ROWS["population.csv"][1], "record_id": "POP3"}]
    write_csv(data_dir / "population.csv", rows, CSV_COLUMNS["population.csv"])
    registry = PopulationRegistry.from_csv(data_dir / "population.csv")
    with pytest.raises(AdapterFailure, match="3, 4") as caught:
        ask(registry, "440305199603159012", ["gender"])
    assert "ADAPTER_BAD_DATA" == caught.value.code


def test_in_memory_rows_check_columns() -> None:
    """Building a registry from rows without a required column names the column."""
    with pytest.raises(RegistryFileError, match="right_type"):
        PropertyRegistry([{"record_id": "P1", "id_number": "x", "city": "深圳市"}])
