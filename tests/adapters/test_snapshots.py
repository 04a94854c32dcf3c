"""Snapshots that cannot silently lie: a damaged registry file is refused at start-up, or every
decision made on it is the one the undamaged data gives, or REFERRED — never another approval or
rejection.

Each damaged variant is a copy of the session's demo folder (links to the untouched files, real
copies of the damaged ones), loaded the way the service starts (``load_deployment``); then the
whole demo application set (2,000 bulk applications and every shipped sample) is decided on it
and compared with the decisions on the undamaged data.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from adapters.demo import DEMO_AS_OF, demo_is_current
from adapters.files import (
    STALE_SNAPSHOT,
    RegistryFileError,
    load_registries,
    load_registry,
    write_manifest,
)
from api.deployment import Deployment, load_deployment
from api.service import DecisionRequest, DecisionService, RequestRejected
from engine.errors import RulesetInvalid
from engine.registries import RegistrySpec, load_catalogue

ROOT = Path(__file__).resolve().parents[2]
RULESETS = ROOT / "rulesets"
CATALOGUE = load_catalogue(RULESETS / "registries.yaml")
NOW = dt.datetime(2026, 3, 2, 2, 0, tzinfo=dt.UTC)
"""The decision clock: the day after the demo snapshots were exported."""
UNAVAILABLE = "503 SERVICE_UNAVAILABLE"
FULL_WIDTH = str.maketrans("0123456789X", "０１２３４５６７８９Ｘ")


def spec(registry_id: str, **changes: Any) -> RegistrySpec:
    """A shipped catalogue entry, with ``changes``."""
    found = CATALOGUE.get(registry_id)
    assert found is not None
    return found.model_copy(update=changes)


# --- damaging a copy of the demo folder ----------------------------------------------------


def copy_of(demo: Path, into: Path) -> Path:
    """A data folder whose files link to the demo's; ``rewrite`` replaces one with a copy."""
    into.mkdir()
    for path in demo.iterdir():
        if path.is_file():
            (into / path.name).symlink_to(path)
    return into


def rewrite(path: Path, text: str) -> None:
    """Replace a file (first dropping the link, never writing through it into the demo)."""
    path.unlink(missing_ok=True)
    path.write_text(text, encoding="utf-8", newline="")


def read_rows(path: Path) -> tuple[list[str], list[list[str]]]:
    with path.open(encoding="utf-8", newline="") as handle:
        header, *rows = list(csv.reader(handle))
    return header, rows


def write_rows(path: Path, header: list[str], rows: list[list[str]]) -> None:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    rewrite(path, out.getvalue())


def edit_column(data: Path, name: str, column: str, change: Callable[[str], str]) -> None:
    """Change every non-empty cell of ``column``."""
    header, rows = read_rows(data / name)
    i = header.index(column)
    for row in rows:
        row[i] = change(row[i]) if row[i] else row[i]
    write_rows(data / name, header, rows)


def swap_header(data: Path, name: str, a: str, b: str) -> None:
    """Swap two column names in the header (the cells stay where they are)."""
    header, rows = read_rows(data / name)
    i, j = header.index(a), header.index(b)
    header[i], header[j] = b, a
    write_rows(data / name, header, rows)


def header_only(data: Path, name: str) -> None:
    """An empty or failed export: the header and nothing else."""
    header, _ = read_rows(data / name)
    write_rows(data / name, header, [])


def cut_rows(data: Path, name: str, n: int) -> None:
    """The last ``n`` records cut off (a transfer that stopped early)."""
    header, rows = read_rows(data / name)
    write_rows(data / name, header, rows[:-n])


def cut_mid_line(data: Path, name: str) -> None:
    """The file cut off in the middle of its last line."""
    text = (data / name).read_text(encoding="utf-8")
    last = text.rstrip("\n").rfind("\n")
    rewrite(data / name, text[: last + 12])


def drop_manifest(data: Path, name: str) -> None:
    (data / f"{name}.meta.json").unlink()


def reexport(data: Path, name: str) -> None:
    """A manifest made for the damaged file, as if the damage came with the export itself."""
    drop_manifest(data, name)
    write_manifest(data / name, as_of=DEMO_AS_OF)


def no_manifest(name: str, step: Callable[[Path], None]) -> Callable[[Path], None]:
    """``step``, on a file that came without its manifest."""

    def damage(data: Path) -> None:
        step(data)
        drop_manifest(data, name)

    return damage


def at_source(*steps: Callable[[Path], None], files: tuple[str, ...]) -> Callable[[Path], None]:
    """Damage done before the export: the manifests describe the damaged files."""

    def damage(data: Path) -> None:
        for step in steps:
            step(data)
        for name in files:
            reexport(data, name)

    return damage


def pad(value: str) -> str:
    return f" {value}"


@dataclass(frozen=True)
class Variant:
    """One damaged snapshot as an operator might ship it, and what must come of it."""

    id: str
    damage: Callable[[Path], None]
    refused: str | None = None
    """The registry refused at start-up (its problem names its file); ``None``: it loads."""
    says: str = ""
    """Words the one-line problem must contain."""
    same: bool = False
    """Every decision equals the undamaged one (the damage is normalised away)."""


VARIANTS = [
    Variant(
        "padded values in the export are trimmed",
        at_source(
            lambda d: edit_column(d, "population.csv", "hukou_city", pad),
            lambda d: edit_column(d, "social_insurance.csv", "city", lambda v: f"{v}\u3000"),
            lambda d: edit_column(d, "social_insurance.csv", "status", pad),
            lambda d: edit_column(d, "education.csv", "study_mode", lambda v: f"{v} "),
            lambda d: edit_column(d, "business_registry.csv", "status", pad),
            lambda d: edit_column(d, "property.csv", "city", pad),
            files=(
                "population.csv",
                "social_insurance.csv",
                "education.csv",
                "business_registry.csv",
                "property.csv",
            ),
        ),
        same=True,
    ),
    Variant(
        "full-width digits in the keys are made half-width",
        at_source(
            lambda d: edit_column(
                d, "population.csv", "id_number", lambda v: v.translate(FULL_WIDTH)
            ),
            lambda d: edit_column(
                d, "property.csv", "id_number", lambda v: v.translate(FULL_WIDTH)
            ),
            lambda d: edit_column(
                d, "subsidy_history.csv", "id_number", lambda v: v.translate(FULL_WIDTH)
            ),
            files=("population.csv", "property.csv", "subsidy_history.csv"),
        ),
        same=True,
    ),
    Variant(
        "a value padded after the export no longer matches the manifest",
        lambda d: edit_column(d, "population.csv", "hukou_city", pad),
        refused="population",
        says="SHA-256",
    ),
    Variant(
        "population hukou_city and hukou_district swapped in the export",
        at_source(
            lambda d: swap_header(d, "population.csv", "hukou_city", "hukou_district"),
            files=("population.csv",),
        ),
        refused="population",
        says="fits column hukou_city",
    ),
    Variant(
        "population hukou_city and hukou_district swapped, no manifest",
        no_manifest(
            "population.csv",
            lambda d: swap_header(d, "population.csv", "hukou_city", "hukou_district"),
        ),
        refused="population",
        says="hukou_city",
    ),
    Variant(
        "population header swapped after the export",
        lambda d: swap_header(d, "population.csv", "hukou_city", "hukou_district"),
        refused="population",
        says="population.csv",
    ),
    Variant(
        "social insurance city and status swapped in the export",
        at_source(
            lambda d: swap_header(d, "social_insurance.csv", "city", "status"),
            files=("social_insurance.csv",),
        ),
        refused="social_insurance",
        says="columns city and status look swapped",
    ),
    Variant(
        "social insurance months and employer name swapped in the export",
        at_source(
            lambda d: swap_header(d, "social_insurance.csv", "months_contributed", "employer_name"),
            files=("social_insurance.csv",),
        ),
        refused="social_insurance",
        says="months_contributed",
    ),
    Variant(
        "education degree and study mode swapped in the export",
        at_source(
            lambda d: swap_header(d, "education.csv", "degree", "study_mode"),
            files=("education.csv",),
        ),
        refused="education",
        says="look swapped",
    ),
    Variant(
        "header-only property file without a manifest",
        no_manifest("property.csv", lambda d: header_only(d, "property.csv")),
        refused="property",
        says="no_record: negative",
    ),
    Variant(
        "header-only property file whose manifest says many rows",
        lambda d: header_only(d, "property.csv"),
        refused="property",
        says="the file has 0",
    ),
    Variant(
        "header-only subsidy history without a manifest",
        no_manifest("subsidy_history.csv", lambda d: header_only(d, "subsidy_history.csv")),
        refused="subsidy_history",
        says="manifest subsidy_history.csv.meta.json",
    ),
    Variant(
        "header-only subsidy history whose manifest says many rows",
        lambda d: header_only(d, "subsidy_history.csv"),
        refused="subsidy_history",
        says="the file has 0",
    ),
    Variant(
        "truncated property file",
        lambda d: cut_rows(d, "property.csv", 20),
        refused="property",
        says="rows",
    ),
    Variant(
        "truncated population file",
        lambda d: cut_rows(d, "population.csv", 300),
        refused="population",
        says="rows",
    ),
    Variant(
        "population file cut in the middle of a line, no manifest",
        no_manifest("population.csv", lambda d: cut_mid_line(d, "population.csv")),
        refused="population",
        says="cut-off line",
    ),
    Variant(
        "truncated population file without a manifest refers the missing people",
        no_manifest("population.csv", lambda d: cut_rows(d, "population.csv", 300)),
    ),
    Variant(
        "a property column named twice",
        at_source(
            lambda d: write_rows(
                d / "property.csv",
                [*read_rows(d / "property.csv")[0], "city"],
                [[*row, "广州市"] for row in read_rows(d / "property.csv")[1]],
            ),
            files=("property.csv",),
        ),
        refused="property",
        says="twice",
    ),
]


# --- deciding the whole application set ----------------------------------------------------


@dataclass(frozen=True)
class Application:
    key: str
    service: str
    request: DecisionRequest


@pytest.fixture(scope="module")
def applications(
    bulk_bodies: list[dict[str, Any]], demo_samples: dict[str, Any]
) -> list[Application]:
    """The 2,000 bulk applications and every shipped sample, validated once."""
    bodies = [(f"bulk {i}", b) for i, b in enumerate(bulk_bodies)]
    bodies += [(name, sample.body) for name, sample in demo_samples.items()]
    return [Application(k, b["service"], DecisionRequest.model_validate(b)) for k, b in bodies]


def decide_all(
    deployment: Deployment, applications: list[Application], *, now: dt.datetime = NOW
) -> dict[str, str]:
    """Every application's outcome, or ``UNAVAILABLE`` when its service answers 503."""
    service = DecisionService(
        catalog=deployment.rulesets,
        adapters=deployment.adapters,
        registries=deployment.registries,
        store=None,
        pseudonym_key="tests-pseudonym-key",
        clock=lambda: now,
    )
    outcomes: dict[str, str] = {}
    try:
        for app in applications:
            try:
                decided = service.decide_prepared(service.prepare(app.request))
            except RequestRejected as exc:
                assert 503 == exc.status, (app.key, exc.code)
                outcomes[app.key] = UNAVAILABLE
                continue
            outcomes[app.key] = str(decided.evaluation.outcome)
    finally:
        service.close()
    return outcomes


@pytest.fixture(scope="module")
def baseline(demo_dir: Path, applications: list[Application]) -> dict[str, str]:
    """The decisions on the undamaged demo data (every service available)."""
    deployment = load_deployment(rulesets_dir=RULESETS, data_dir=demo_dir)
    assert {} == deployment.registry_problems
    outcomes = decide_all(deployment, applications)
    assert UNAVAILABLE not in outcomes.values()
    return outcomes


def wrong_decisions(outcomes: dict[str, str], baseline: dict[str, str]) -> list[str]:
    """Decisions that are neither the undamaged one, nor REFERRED, nor refused (503)."""
    return [
        f"{key}: {baseline[key]} -> {got}"
        for key, got in outcomes.items()
        if got not in (baseline[key], "REFERRED", UNAVAILABLE)
    ]


def services_using(deployment: Deployment, registry: str) -> set[str]:
    return {rs.service for rs in deployment.rulesets if registry in rs.registries}


# --- tests -------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: v.id)
def test_a_damaged_snapshot_is_refused_at_start_or_never_decides_wrongly(
    variant: Variant,
    tmp_path: Path,
    demo_dir: Path,
    applications: list[Application],
    baseline: dict[str, str],
) -> None:
    """Refused: its services answer 503 and the others decide as before; loaded: no decision
    differs from the undamaged one except to become REFERRED."""
    data = copy_of(demo_dir, tmp_path / "data")
    variant.damage(data)
    deployment = load_deployment(rulesets_dir=RULESETS, data_dir=data)
    outcomes = decide_all(deployment, applications)

    assert [] == wrong_decisions(outcomes, baseline)
    if variant.refused is None:
        assert {} == deployment.registry_problems
    else:
        assert [variant.refused] == list(deployment.registry_problems)
        problem = deployment.registry_problems[variant.refused]
        location = spec(variant.refused).location
        assert problem.startswith(str(data / location)), problem
        assert variant.says in problem and "\n" not in problem
        blocked = services_using(deployment, variant.refused)
        assert blocked
        for app in applications:
            want = UNAVAILABLE if app.service in blocked else baseline[app.key]
            assert want == outcomes[app.key], app.key
    if variant.same:
        assert baseline == outcomes


def test_a_truncated_file_without_manifest_refers_the_people_it_lost(
    tmp_path: Path, demo_dir: Path, applications: list[Application], baseline: dict[str, str]
) -> None:
    """Population answers 'no record' as unknown: the 300 people cut off are referred, and
    the missing manifest is named in the load notes (health details)."""
    data = copy_of(demo_dir, tmp_path / "data")
    cut_rows(data, "population.csv", 300)
    drop_manifest(data, "population.csv")
    loaded = load_registries(CATALOGUE, data)
    assert {} == loaded.problems
    assert "population.csv.meta.json" in loaded.notes["population"]
    assert ["population"] == list(loaded.notes)
    outcomes = decide_all(load_deployment(rulesets_dir=RULESETS, data_dir=data), applications)
    changed = {outcomes[k] for k in outcomes if outcomes[k] != baseline[k]}
    assert {"REFERRED"} == changed


def test_a_stale_snapshot_refers_instead_of_answering(
    tmp_path: Path,
    demo_dir: Path,
    applications: list[Application],
    baseline: dict[str, str],
    demo_samples: dict[str, Any],
) -> None:
    """Past max_age_days every property lookup is STALE_SNAPSHOT: the criteria needing it are
    unknown and the approvals become REFERRED; on the last allowed day nothing changes."""
    catalogue = tmp_path / "registries.yaml"
    text = (RULESETS / "registries.yaml").read_text(encoding="utf-8")
    marker = "    location: property.csv\n"
    catalogue.write_text(text.replace(marker, f"{marker}    max_age_days: 30\n"), encoding="utf-8")
    deployment = load_deployment(rulesets_dir=RULESETS, data_dir=demo_dir, registries=catalogue)
    assert {} == deployment.registry_problems
    last_day = dt.datetime.combine(DEMO_AS_OF + dt.timedelta(days=30), dt.time(23), tzinfo=dt.UTC)
    stale = last_day + dt.timedelta(days=1)

    assert baseline == decide_all(deployment, applications, now=last_day - dt.timedelta(hours=8))
    outcomes = decide_all(deployment, applications, now=stale)
    assert [] == wrong_decisions(outcomes, baseline)
    approved = [k for k, v in baseline.items() if v == "APPROVED" and k.startswith("bulk")]
    assert {"REFERRED"} == {outcomes[k] for k in approved}

    service = DecisionService(
        catalog=deployment.rulesets,
        adapters=deployment.adapters,
        registries=deployment.registries,
        store=None,
        pseudonym_key="tests-pseudonym-key",
        clock=lambda: stale,
    )
    try:
        body = demo_samples["approved-master-2016.json"].body
        decided = service.decide_prepared(service.prepare(DecisionRequest.model_validate(body)))
    finally:
        service.close()
    assert "REFERRED" == decided.evaluation.outcome
    errors = {e.source: e.error_code for e in decided.evidence if e.status == "error"}
    assert {"property": STALE_SNAPSHOT} == errors
    assert any(r.evidence == "property" for r in decided.extra_reasons)


@pytest.fixture
def small(tmp_path: Path) -> Path:
    """A data folder with a three-person population file and its manifest."""
    rows = [
        [
            "POP1",
            "440305199603159012",
            "陈思远",
            "1996-03-15",
            "男",
            "深圳市",
            "2025-03-01",
            "南山区",
        ],
        [
            "POP2",
            "11010519491231002X",
            "张三",
            "1949-12-31",
            "女",
            "广州市",
            "1949-12-31",
            "天河区",
        ],
        [
            "POP3",
            "440305199001019013",
            "李四",
            "1990-01-01",
            "男",
            "深圳市",
            "2020-01-01",
            "南山区",
        ],
    ]
    header = [
        "record_id", "id_number", "name", "birth_date", "gender", "hukou_city", "hukou_since",
        "hukou_district",
    ]  # fmt: skip
    write_rows(tmp_path / "population.csv", header, rows)
    write_manifest(tmp_path / "population.csv", as_of=DEMO_AS_OF, holder="市公安局")
    return tmp_path


def load_error(registry: RegistrySpec, data: Path) -> RegistryFileError:
    with pytest.raises(RegistryFileError) as info:
        load_registry(registry, data)
    assert "\n" not in str(info.value)
    return info.value


def test_a_swapped_header_names_file_row_column_and_the_other_column(small: Path) -> None:
    """The first cell outside its vocabulary is named, with the column it seems to belong to."""
    swap_header(small, "population.csv", "hukou_city", "hukou_district")
    reexport(small, "population.csv")
    err = load_error(spec("population"), small)
    assert (2, "hukou_city") == (err.row, err.column)
    assert str(err).startswith(f"{small / 'population.csv'}:2: ")
    assert "columns hukou_city and hukou_district look swapped" in str(err)


def test_without_normalisation_a_padded_value_is_refused_by_its_vocabulary(small: Path) -> None:
    """``normalize: false`` keeps cells as written: ' 深圳市' is not a city."""
    edit_column(small, "population.csv", "hukou_city", pad)
    reexport(small, "population.csv")
    err = load_error(spec("population", normalize=False), small)
    assert (2, "hukou_city") == (err.row, err.column)
    assert "' 深圳市' is not one of the declared values" in str(err)


def test_without_normalisation_full_width_digits_fail_the_key_pattern(small: Path) -> None:
    """A full-width ID number does not match ``[0-9]{17}[0-9X]`` when kept as written."""
    edit_column(small, "population.csv", "id_number", lambda v: v.translate(FULL_WIDTH))
    reexport(small, "population.csv")
    err = load_error(spec("population", normalize=False), small)
    assert (2, "id_number") == (err.row, err.column)
    assert "does not match the declared pattern" in str(err)


def test_normalised_cells_and_keys_meet(small: Path) -> None:
    """Cells are trimmed and NFKC-normalised, and so is the key asked: both sides meet."""
    edit_column(small, "population.csv", "id_number", lambda v: v.translate(FULL_WIDTH))
    edit_column(small, "population.csv", "hukou_city", lambda v: f"\u3000{v}\u200b")
    reexport(small, "population.csv")
    registry = load_registry(spec("population"), small)
    for asked in ("11010519491231002X", " １１０１０５１９４９１２３１００２Ｘ"):
        found = registry.lookup({"id_number": asked}, fields=["hukou_city"], mode="fetch", now=NOW)
        assert ("found", {"hukou_city": "广州市"}) == (found.status, found.values)


def test_a_manifest_that_does_not_describe_the_file_is_refused(small: Path) -> None:
    """Row count, checksum and holder must all match."""
    manifest = small / "population.csv.meta.json"
    text = manifest.read_text(encoding="utf-8")
    rewrite(manifest, text.replace('"市公安局"', '"市民政局"'))
    assert "holder" in str(load_error(spec("population"), small))
    rewrite(manifest, text.replace('"rows": 3', '"rows": 4'))
    assert "the manifest says 4 rows, the file has 3" in str(load_error(spec("population"), small))
    rewrite(manifest, '{"as_of": "2026-02-30", "rows": 3}')
    err = load_error(spec("population"), small)
    assert (manifest, "as_of") == (err.path, err.column)


@pytest.mark.parametrize(
    ("days_after", "status"),
    [(0, "found"), (10, "found"), (11, "error"), (-1, "error")],
    ids=["export day", "last allowed day", "one day too old", "dated after today"],
)
def test_a_snapshot_older_than_max_age_days_answers_stale(
    small: Path, days_after: int, status: str
) -> None:
    """The age is counted in Shanghai days from the manifest's as_of to the lookup's now."""
    registry = load_registry(spec("population", max_age_days=10), small)
    day = DEMO_AS_OF + dt.timedelta(days=days_after)
    now = dt.datetime.combine(day, dt.time(23, 30), tzinfo=dt.timezone(dt.timedelta(hours=8)))
    found = registry.lookup(
        {"id_number": "440305199603159012"}, fields=["hukou_city"], mode="fetch", now=now
    )
    assert status == found.status
    if status == "error":
        assert (STALE_SNAPSHOT, {}) == (found.error_code, found.values)


def test_a_freshness_limit_needs_a_manifest(small: Path) -> None:
    """max_age_days without as_of is refused at load, even where no record means unknown."""
    drop_manifest(small, "population.csv")
    load_registry(spec("population"), small)  # allowed: no_record unknown, no limit
    assert "max_age_days" in str(load_error(spec("population", max_age_days=10), small))


def test_the_demo_writes_a_manifest_for_every_registry_file(demo_dir: Path, tmp_path: Path) -> None:
    """Every data file the demo writes is vouched for; a folder missing one is regenerated."""
    files = sorted(p.name for p in demo_dir.glob("*.csv"))
    assert {s.location for s in CATALOGUE} == set(files)
    loaded = load_registries(CATALOGUE, demo_dir)
    assert ({}, {}) == (loaded.problems, loaded.notes)
    assert {DEMO_AS_OF} == {s.as_of for s in loaded.snapshots.values()}
    assert demo_is_current(demo_dir, RULESETS)
    data = copy_of(demo_dir, tmp_path / "data")
    drop_manifest(data, "death_registry.csv")
    assert not demo_is_current(data, RULESETS)


@pytest.mark.parametrize(
    ("field", "complaint"),
    [
        ("gender: {type: integer, values: ['1']}", "values applies to string fields"),
        ("gender: {type: string, values: [' 男']}", "write the value normalised"),
        ("gender: {type: string, pattern: '[男'}", "not a valid regular expression"),
        ("gender: {type: string, values: [男, 女], pattern: '男'}", "does not match the field's"),
    ],
    ids=["values on an integer", "unnormalised value", "bad pattern", "value outside pattern"],
)
def test_a_vocabulary_that_cannot_hold_is_refused_in_the_catalogue(
    tmp_path: Path, field: str, complaint: str
) -> None:
    """The catalogue names the line of a vocabulary or pattern no cell could satisfy."""
    text = (RULESETS / "registries.yaml").read_text(encoding="utf-8")
    line = "      gender: {type: string, values: [男, 女]}"
    assert line in text
    path = tmp_path / "registries.yaml"
    path.write_text(text.replace(line, f"      {field}"), encoding="utf-8")
    with pytest.raises(RulesetInvalid) as info:
        load_catalogue(path)
    (error,) = info.value.errors
    assert complaint in error.message
    assert text.splitlines().index(line) + 1 == error.line
