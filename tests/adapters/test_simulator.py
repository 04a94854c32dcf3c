"""Tests for the registry simulator in adapters.simulator, run as a real process on loopback."""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from support import running_simulator

from adapters.base import Adapter
from adapters.simulator import FaultSettings, _options

ROOT = Path(__file__).resolve().parents[2]
CATALOGUE = ROOT / "rulesets" / "registries.yaml"
TOKEN = "sim-token-0123"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
AS_OF = "2025-06-01"
NOW = dt.datetime(2025, 6, 1, 10, 0, tzinfo=dt.UTC)
PROVENANCE = ("reference", "as_of", "raw_sha256")


def free_port() -> int:
    """A TCP port nobody listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Simulator:
    """A running simulator process and the client the tests call it with."""

    base: str
    process: subprocess.Popen[bytes]
    log: Path
    client: httpx.Client

    def faults(self, **settings: object) -> dict[str, Any]:
        """POST ``settings`` to /_control/faults and return the settings now in force."""
        r = self.client.post("/_control/faults", json=settings)
        assert 200 == r.status_code, r.text
        body: dict[str, Any] = r.json()
        return body

    def fetch(self, registry: str, key: Mapping[str, str], **params: str) -> httpx.Response:
        query = {f"key.{k}": v for k, v in key.items()} | params
        return self.client.get(f"/v1/registries/{registry}/records", params=query, headers=AUTH)

    def stats(self) -> dict[str, Any]:
        body: dict[str, Any] = self.client.get("/_control/stats").json()
        return body


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory, demo_dir: Path) -> Iterator[Simulator]:
    """One simulator on the demo data with a token, started once for this module."""
    log = tmp_path_factory.mktemp("simulator") / "simulator.log"
    with (
        running_simulator(demo_dir, log, "--token", TOKEN, "--as-of", AS_OF, "--seed", "11") as (
            base,
            process,
        ),
        httpx.Client(base_url=base, timeout=5) as client,
    ):
        yield Simulator(base, process, log, client)
    if process.returncode not in (0, -15):
        pytest.fail(f"simulator ended with {process.returncode}:\n{log.read_text()}")


@pytest.fixture(autouse=True)
def _clean(sim: Simulator) -> None:
    """Every test starts from the start-up settings with empty statistics."""
    assert 200 == sim.client.post("/_control/reset").status_code


def rows_of(demo_dir: Path, registry: str) -> list[dict[str, str]]:
    with (demo_dir / f"{registry}.csv").open(encoding="utf-8-sig", newline="") as f:
        return list(csv.DictReader(f))


def sample_keys(demo_dir: Path, registry: str, key: list[str]) -> list[dict[str, str]]:
    """The keys of the first, a middle and the last row, and one key no row has."""
    rows = rows_of(demo_dir, registry)
    picked = [rows[0], rows[len(rows) // 2], rows[-1]]
    keys = [{k: row[k] for k in key} for row in picked]
    return [*keys, {**keys[0], key[0]: keys[0][key[0]][:-1] + "Z"}]


def wire(v: object) -> object:
    """A fact as the protocol writes it in JSON."""
    if isinstance(v, dt.date):
        return v.isoformat()
    if isinstance(v, Decimal):
        return format(v, "f")
    return v


# --- process ---------------------------------------------------------------------------


def test_the_process_logs_one_line_naming_its_address(sim: Simulator) -> None:
    """Start-up prints exactly 'simulator listening on http://host:port' and nothing else."""
    assert [f"simulator listening on {sim.base}"] == sim.log.read_text().splitlines()


def test_healthz_lists_every_catalogued_registry(sim: Simulator) -> None:
    """/healthz answers without a token and names every registry served."""
    from engine.registries import load_catalogue

    r = sim.client.get("/healthz")
    assert 200 == r.status_code
    assert {"status": "ok", "registries": load_catalogue(CATALOGUE).ids()} == r.json()


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--data-dir", "/nonexistent/demo"], "data folder not found: /nonexistent/demo"),
        (["--registries", "/nonexistent/registries.yaml"], "catalogue not found"),
    ],
)
def test_startup_fails_with_one_line_for_a_missing_input(
    demo_dir: Path, args: list[str], says: str
) -> None:
    """A missing data folder or catalogue stops the process with one line on stderr."""
    argv = ["--data-dir", str(demo_dir), *args]
    done = subprocess.run(
        [sys.executable, "-m", "adapters.simulator", *argv, "--port", str(free_port())],
        cwd=ROOT,
        capture_output=True,
        timeout=30,
    )
    lines = done.stderr.decode().splitlines()
    assert (2, b"") == (done.returncode, done.stdout)
    assert 1 == len(lines) and says in lines[0], lines


def test_command_line_sets_the_start_up_faults_and_the_token_comes_from_the_environment(
    demo_dir: Path,
) -> None:
    """Fault flags become the start-up settings; MIAOPI_SIM_TOKEN stands in for --token."""
    argv = ["--data-dir", str(demo_dir), "--registries", str(CATALOGUE), "--latency-ms", "20,50"]
    argv += ["--error-rate", "0.1", "--quota-per-day", "7", "--seed", "3"]
    opts = _options(argv, {"MIAOPI_SIM_TOKEN": "from-env"})
    expected = FaultSettings(latency_ms=(20, 50), error_rate=0.1, quota_per_day=7, seed=3)
    assert (expected, "from-env") == (opts.faults, opts.token)
    assert "flag" == _options([*argv, "--token", "flag"], {"MIAOPI_SIM_TOKEN": "env"}).token


def test_the_faults_option_gives_overrides_and_flags_win_over_its_top_level(
    demo_dir: Path,
) -> None:
    """--faults JSON carries per-registry overrides; a flag given beside it takes precedence."""
    spec = {"error_rate": 0.5, "seed": 9, "registries": {"education": {"outage": True}}}
    argv = ["--data-dir", str(demo_dir), "--registries", str(CATALOGUE), "--seed", "0"]
    opts = _options([*argv, "--faults", json.dumps(spec)], {})
    expected = (FaultSettings(error_rate=0.5, seed=0), {"education": {"outage": True}})
    assert expected == (opts.faults, opts.overrides)


def test_an_http_registry_is_served_from_its_id_csv_and_start_up_overrides_survive_reset(
    demo_dir: Path,
) -> None:
    """A ``kind: http`` entry is served from ``<id>.csv``; reset returns to the start-up overrides."""
    from fastapi.testclient import TestClient

    from adapters.simulator import create_app, load_simulated
    from engine.registries import RegistryCatalogue, load_catalogue

    shipped = load_catalogue(CATALOGUE).get("population")
    assert shipped is not None
    http = shipped.model_copy(update={"kind": "http", "location": "http://127.0.0.1:1"})
    served = load_simulated(RegistryCatalogue([http]), demo_dir, as_of=dt.date(2025, 1, 2))
    app = create_app(served, overrides={"population": {"error_rate": 1}})
    row = rows_of(demo_dir, "population")[0]
    with TestClient(app) as client:
        assert (
            500
            == client.get(
                "/v1/registries/population/records", params={"key.id_number": row["id_number"]}
            ).status_code
        )
        client.post("/_control/faults", json={"registries": {"population": None}})
        r = client.get(
            "/v1/registries/population/records", params={"key.id_number": row["id_number"]}
        )
        assert (200, "2025-01-02") == (r.status_code, r.json()["as_of"])
        settings = client.post("/_control/reset").json()
    assert {"population": {"error_rate": 1.0}} == settings["registries"]


# --- answers match the file registries ----------------------------------------------------


@pytest.mark.parametrize(
    "registry",
    [
        "population",
        "education",
        "social_insurance",
        "si_monthly",
        "employer_wages",
        "birth_certificates",
    ],
)
def test_fetch_answers_what_the_file_registry_answers(
    sim: Simulator, demo_dir: Path, demo_registries: dict[str, Adapter], registry: str
) -> None:
    """Found and not-found keys, composite and typed keys, give the FileRegistry's answer."""
    from engine.registries import load_catalogue

    spec = load_catalogue(CATALOGUE).get(registry)
    assert spec is not None
    adapter = demo_registries[registry]
    fields = list(spec.fields)
    statuses = []
    for key in sample_keys(demo_dir, registry, spec.key):
        r = sim.fetch(registry, key)
        expected = adapter.lookup(key, fields=fields, mode="fetch", now=NOW)
        statuses.append(expected.status)
        if expected.status == "not_found":
            assert (404, {"status": "not_found"}) == (r.status_code, r.json())
            continue
        assert 200 == r.status_code, r.text
        assert {
            "status": "found",
            "values": {k: wire(v) for k, v in expected.values.items()},
            "reference": expected.provenance.reference,
            "as_of": AS_OF,
            "raw_sha256": expected.provenance.raw_sha256,
        } == r.json()
    assert ["found", "found", "found", "not_found"] == statuses


def test_fetch_returns_only_the_requested_fields_in_their_json_types(
    sim: Simulator, demo_dir: Path
) -> None:
    """``fields`` selects the values; integers stay integers, decimals become strings."""
    row = rows_of(demo_dir, "employer_wages")[0]
    key = {"credit_code": row["credit_code"], "year": row["year"]}
    r = sim.fetch("employer_wages", key, fields="year,avg_monthly_wage")
    assert 200 == r.status_code
    values = r.json()["values"]
    assert {
        "year": int(row["year"]),
        "avg_monthly_wage": str(Decimal(row["avg_monthly_wage"])),
    } == values


def test_a_key_that_cannot_have_the_declared_type_is_not_found(sim: Simulator) -> None:
    """An integer key field given as letters matches nothing, as in the file adapter."""
    r = sim.fetch("employer_wages", {"credit_code": "91440300MA5F000001", "year": "twenty"})
    assert (404, {"status": "not_found"}) == (r.status_code, r.json())


def test_unknown_registry_is_not_the_same_as_not_found(sim: Simulator) -> None:
    """An id the catalogue lacks is 404 with error unknown_registry, not status not_found."""
    r = sim.fetch("populaton", {"id_number": "110105194912310021"})
    assert (404, {"error": "unknown_registry"}) == (r.status_code, r.json())


@pytest.mark.parametrize(
    ("registry", "key", "params", "error"),
    [
        ("population", {}, {}, "bad_request"),
        ("population", {"id_number": "1", "city": "x"}, {}, "bad_request"),
        ("population", {"id_number": "1"}, {"fields": "name,shoe_size"}, "bad_request"),
        ("population", {"id_number": "1"}, {"limit": "3"}, "bad_request"),
        ("property", {"id_number": "1", "city": "深圳市"}, {}, "unsupported_mode"),
    ],
    ids=["no-key", "extra-key-field", "unknown-field", "unknown-parameter", "verify-only"],
)
def test_malformed_fetches_are_refused_with_400(
    sim: Simulator, registry: str, key: dict[str, str], params: dict[str, str], error: str
) -> None:
    """A call the registry cannot answer as asked gets 400 naming why, not a fault."""
    r = sim.fetch(registry, key, **params)
    assert (400, error) == (r.status_code, r.json()["error"]), r.text
    assert 1 == sim.stats()["by_outcome"][registry]["bad_request"]


VERIFY_CASES = [
    ("property", ["id_number", "city"], {"owns_housing": None, "rents_public_housing": None}),
    ("property", ["id_number", "city"], {"claimed": {"right_type": "产权"}}),
    ("subsidy_history", ["id_number", "service"], {"received_before": None}),
    ("death_registry", ["id_number"], {"deceased": None, "on": {"death_date": "2025-03-01"}}),
]


@pytest.mark.parametrize(("registry", "key_fields", "claims"), VERIFY_CASES)
def test_verify_answers_what_the_file_registry_answers_and_nothing_more(
    sim: Simulator,
    demo_dir: Path,
    demo_registries: dict[str, Adapter],
    registry: str,
    key_fields: list[str],
    claims: dict[str, dict[str, str] | None],
) -> None:
    """Named and explicit claims get the FileRegistry's yes/no answers; no field value leaks."""
    adapter = demo_registries[registry]
    rows = rows_of(demo_dir, registry)
    for key in sample_keys(demo_dir, registry, key_fields):
        r = sim.client.post(
            f"/v1/registries/{registry}/verify", json={"key": key, "claims": claims}, headers=AUTH
        )
        expected = adapter.lookup(key, fields=list(claims), mode="verify", claims=claims, now=NOW)
        assert 200 == r.status_code, r.text
        body = r.json()
        assert {
            "status": expected.status,
            "answers": expected.values,
            "reference": expected.provenance.reference,
            "as_of": AS_OF,
            "raw_sha256": expected.provenance.raw_sha256,
        } == body
        assert all(isinstance(v, bool) for v in body["answers"].values())
        secrets = {v for row in rows for k, v in row.items() if k not in (*key_fields, "record_id")}
        assert not secrets & {str(v) for v in body.values()}


def test_verify_with_no_record_in_a_negative_registry_answers_no(sim: Simulator) -> None:
    """For ``no_record: negative`` a missing record is a verified "no" to every claim."""
    key = {"id_number": "000000000000000000", "city": "深圳市"}
    r = sim.client.post(
        "/v1/registries/property/verify",
        json={"key": key, "claims": {"owns_housing": None}},
        headers=AUTH,
    )
    assert {"owns_housing": False} == r.json()["answers"]


def test_verify_refuses_a_fetch_only_registry_and_an_unknown_answer(sim: Simulator) -> None:
    """Verify on a registry that only allows fetch, or for an unnamed answer, is a 400."""
    r = sim.client.post(
        "/v1/registries/population/verify",
        json={"key": {"id_number": "1"}, "claims": {"exists": None}},
        headers=AUTH,
    )
    assert (400, "unsupported_mode") == (r.status_code, r.json()["error"])
    r = sim.client.post(
        "/v1/registries/death_registry/verify",
        json={"key": {"id_number": "1"}, "claims": {"alive": None}},
        headers=AUTH,
    )
    assert (400, "bad_request") == (r.status_code, r.json()["error"])


# --- authentication -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TOKEN}"}]
)
def test_every_v1_call_needs_the_token(sim: Simulator, headers: dict[str, str]) -> None:
    """Without ``Authorization: Bearer <token>`` a /v1 call is 401, fetch and verify alike."""
    get = sim.client.get(
        "/v1/registries/population/records", params={"key.id_number": "1"}, headers=headers
    )
    post = sim.client.post(
        "/v1/registries/property/verify", json={"key": {}, "claims": {}}, headers=headers
    )
    assert [401, 401] == [get.status_code, post.status_code]
    assert {"error": "unauthorized"} == get.json()
    assert "Bearer" == get.headers["WWW-Authenticate"]
    assert 1 == sim.stats()["by_outcome"]["population"]["unauthorized"]


# --- faults --------------------------------------------------------------------------------

KEY = {"id_number": "110105194912310021"}


def test_error_rate_one_answers_500(sim: Simulator) -> None:
    """At error_rate 1 every call is a 500."""
    sim.faults(error_rate=1)
    assert [500, 500, 500] == [sim.fetch("population", KEY).status_code for _ in range(3)]
    assert 3 == sim.stats()["by_outcome"]["population"]["error"]


def test_an_outage_answers_503_everywhere_but_the_controls(sim: Simulator) -> None:
    """During an outage /v1 and /healthz are 503; the control routes still switch it off."""
    sim.faults(outage=True)
    assert 503 == sim.fetch("education", {"certificate_number": "x"}).status_code
    assert 503 == sim.client.get("/healthz").status_code
    sim.faults(outage=False)
    assert 200 == sim.client.get("/healthz").status_code
    assert 1 == sim.stats()["by_outcome"]["education"]["outage"]


def test_malformed_bodies_alternate_broken_json_and_the_wrong_shape(sim: Simulator) -> None:
    """At malformed_rate 1 a 200 carries invalid JSON, then valid JSON of the wrong shape."""
    sim.faults(malformed_rate=1)
    first, second = (sim.fetch("population", KEY) for _ in range(2))
    assert [200, 200] == [first.status_code, second.status_code]
    with pytest.raises(json.JSONDecodeError):
        json.loads(first.content)
    shape = json.loads(second.content)
    assert shape.get("status") not in ("found", "not_found") or not isinstance(
        shape.get("values"), dict
    )
    assert 2 == sim.stats()["by_outcome"]["population"]["malformed"]


def test_the_quota_answers_429_with_retry_after_once_spent(sim: Simulator) -> None:
    """With quota_per_day 3 the fourth call of the day is a 429 saying when to come back."""
    sim.faults(quota_per_day=3)
    answers = [sim.fetch("population", KEY) for _ in range(4)]
    assert [404, 404, 404, 429] == [r.status_code for r in answers]
    assert 0 < int(answers[-1].headers["Retry-After"]) <= 86_400
    assert 1 == sim.stats()["by_outcome"]["population"]["quota"]


def test_latency_stays_within_the_configured_band(sim: Simulator) -> None:
    """Each call waits between lo and hi milliseconds (plus a little for the round trip)."""
    sim.faults(latency_ms=[150, 250])
    for _ in range(4):
        start = time.perf_counter()
        assert 404 == sim.fetch("population", KEY).status_code
        assert 0.15 <= time.perf_counter() - start < 0.45


def test_a_hang_is_a_timeout_for_the_client_and_blocks_no_one_else(sim: Simulator) -> None:
    """At hang_rate 1 a client with a 0.5 s timeout times out; other registries still answer."""
    sim.faults(registries={"population": {"hang_rate": 1}})
    start = time.perf_counter()
    with pytest.raises(httpx.TimeoutException):
        sim.client.get(
            "/v1/registries/population/records",
            params={"key.id_number": "1"},
            headers=AUTH,
            timeout=0.5,
        )
    assert time.perf_counter() - start < 1.5
    assert 404 == sim.fetch("social_insurance", KEY).status_code
    assert 1 == sim.stats()["by_outcome"]["population"]["hang"]


def test_a_slow_body_sends_headers_at_once_and_the_body_over_two_seconds(
    sim: Simulator, demo_dir: Path
) -> None:
    """At slow_body_rate 1 the status comes at once and the (correct) body trickles in."""
    row = rows_of(demo_dir, "population")[0]
    normal = sim.fetch("population", {"id_number": row["id_number"]}).json()
    sim.faults(slow_body_rate=1)
    start = time.perf_counter()
    params = {"key.id_number": row["id_number"]}
    with sim.client.stream(
        "GET", "/v1/registries/population/records", params=params, headers=AUTH
    ) as r:
        headers_after = time.perf_counter() - start
        body = r.read()
    body_after = time.perf_counter() - start
    assert 200 == r.status_code
    assert headers_after < 0.5 and 1.5 < body_after < 4, (headers_after, body_after)
    assert normal == json.loads(body)
    assert 1 == sim.stats()["by_outcome"]["population"]["slow"]


def test_a_per_registry_override_affects_only_that_registry(sim: Simulator) -> None:
    """An override for education makes only education fail, and reads back under registries."""
    settings = sim.faults(registries={"education": {"error_rate": 1}})
    assert {"education": {"error_rate": 1.0}} == settings["registries"]
    assert 0.0 == settings["error_rate"]
    assert 500 == sim.fetch("education", {"certificate_number": "x"}).status_code
    assert 404 == sim.fetch("population", KEY).status_code


def test_faults_are_reproducible_for_a_seed(sim: Simulator) -> None:
    """The same settings and calls after a reset give the same sequence of faults."""

    def run() -> list[int]:
        sim.faults(error_rate=0.5, seed=5)
        return [sim.fetch("population", KEY).status_code for _ in range(20)]

    first = run()
    sim.client.post("/_control/reset")
    assert first == run()
    assert {404, 500} == set(first)


def test_reset_restores_the_start_up_settings_and_clears_statistics(sim: Simulator) -> None:
    """After a reset the settings are those of the command line and no call is counted."""
    started = sim.client.get("/_control/faults").json()
    assert 11 == started["seed"] and {} == started["registries"]
    sim.faults(error_rate=1, latency_ms=[1, 2], registries={"education": {"outage": True}})
    sim.fetch("population", KEY)
    assert started == sim.client.post("/_control/reset").json()
    assert started == sim.client.get("/_control/faults").json()
    stats = sim.stats()
    assert 0 == sum(stats["calls"].values())
    assert 0 == sum(n for counts in stats["by_outcome"].values() for n in counts.values())


def test_stats_count_calls_per_registry_and_outcome(sim: Simulator) -> None:
    """Every call is counted once under its registry and how it ended."""
    for _ in range(3):
        sim.fetch("population", KEY)
    sim.fetch("education", {"certificate_number": "x"})
    stats = sim.stats()
    assert (3, 1, 0) == tuple(stats["calls"][r] for r in ("population", "education", "property"))
    assert 3 == stats["by_outcome"]["population"]["ok"]
    assert {"ok", "error", "malformed", "hang", "quota", "outage", "slow"} <= set(
        stats["by_outcome"]["population"]
    )


@pytest.mark.parametrize(
    "settings",
    [
        {"error_rate": 2},
        {"latency_ms": [50, 10]},
        {"flakiness": 0.5},
        {"registries": {"nowhere": {"outage": True}}},
    ],
    ids=["rate-above-one", "inverted-band", "unknown-setting", "unknown-registry"],
)
def test_invalid_fault_settings_are_refused_and_change_nothing(
    sim: Simulator, settings: dict[str, object]
) -> None:
    """Invalid settings get 422 naming the problem; the settings in force stay as they were."""
    before = sim.client.get("/_control/faults").json()
    r = sim.client.post("/_control/faults", json=settings)
    assert (422, "invalid_faults") == (r.status_code, r.json()["error"])
    assert before == sim.client.get("/_control/faults").json()


def test_a_registry_that_answers_an_error_is_a_503_carrying_its_code(
    demo_registries: dict[str, Adapter],
) -> None:
    """A lookup answered with ``status: error`` (a stale snapshot) is 503 with the adapter's code."""
    from fastapi.testclient import TestClient

    from adapters.base import Lookup
    from adapters.simulator import SimulatedRegistries, create_app
    from engine.registries import load_catalogue

    class Stale:
        source = "population"
        version = "stale-1"
        fields = demo_registries["population"].fields

        def supports(self, mode: str) -> bool:
            return mode == "fetch"

        def lookup(self, key: object, **options: Any) -> Lookup:
            answer = demo_registries["population"].lookup({"id_number": "1"}, **options)
            return dataclasses.replace(
                answer, status="error", error_code="STALE_SNAPSHOT", error_message="old"
            )

    catalogue = load_catalogue(CATALOGUE)
    served = SimulatedRegistries(catalogue, {"population": Stale()}, {}, {"population": None})
    with TestClient(create_app(served)) as client:
        r = client.get("/v1/registries/population/records", params={"key.id_number": "1"})
        stats = client.get("/_control/stats").json()
    expected = {"error": "lookup_error", "code": "STALE_SNAPSHOT", "message": "old"}
    assert (503, expected) == (r.status_code, r.json())
    assert 1 == stats["by_outcome"]["population"]["error"]
