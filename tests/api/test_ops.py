"""Operations: /metrics moves by what was decided and tells nothing personal; /readyz says
which check fails; /healthz tells nothing private; several workers report one set of figures."""

from __future__ import annotations

import collections
import re
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from fastapi import FastAPI
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from support import TEST_SECRET_KEY, bearer, make_key, running_simulator, server_env
from support import signing_key_path as signing_key

from api.app import create_app
from api.service import OUTCOMES
from api.settings import Settings

from .conftest import free_port, wait_until_up

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(text: str) -> Samples:
    """Every sample of a Prometheus text exposition, keyed by name and labels."""
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def _fresh(body: dict[str, Any]) -> dict[str, Any]:
    return {**body, "application_id": f"OPS-{uuid.uuid4().hex[:12]}"}


@pytest.fixture(scope="module")
def ops_key(role_keys: dict[str, str]) -> dict[str, str]:
    return bearer(role_keys["ops"])


def test_metrics_move_by_what_was_decided_and_carry_nothing_personal(
    client: TestClient, api_app: FastAPI, ops_key: dict[str, str], demo_samples: dict
) -> None:
    """Every shipped sample decided once (and one retried): decisions, latency, evidence and
    request counters move by exactly those amounts; chain length and open cases match the store;
    no ID number, name, application id, decision id or token appears anywhere."""
    before = scrape(client.get("/metrics", headers=ops_key).text)
    decided: collections.Counter[tuple[str, str]] = collections.Counter()
    evidence: collections.Counter[tuple[str, str]] = collections.Counter()
    secrets: list[str] = []
    for sample in demo_samples.values():
        body = _fresh(sample.body)
        r = client.post("/v1/decisions", json=body, headers={"Idempotency-Key": uuid.uuid4().hex})
        assert 201 == r.status_code, r.text
        answer = r.json()
        decided[(answer["service"], answer["outcome"])] += 1
        record = client.get(
            f"/v1/decisions/{answer['decision_id']}/explanation",
            params={"token": answer["access_token"]},
        ).json()["record"]
        evidence.update((e["source"], e["outcome"]) for e in record["evidence"])
        secrets += [body["applicant"]["id_number"], body["applicant"]["name"]]
        secrets += [body["application_id"], answer["decision_id"], answer["access_token"]]
    retry = _fresh(demo_samples["approved-master-2016.json"].body)
    for _ in range(2):  # the second is an idempotent replay: not a new decision
        r = client.post("/v1/decisions", json=retry, headers={"Idempotency-Key": "ops-retry-1"})
        assert 201 == r.status_code
    decided[("talent-housing-subsidy", "APPROVED")] += 1
    evidence.update(
        (e["source"], e["outcome"])
        for e in client.get(
            f"/v1/decisions/{r.json()['decision_id']}/explanation",
            params={"token": r.json()["access_token"]},
        ).json()["record"]["evidence"]
    )
    response = client.get("/metrics", headers=ops_key)
    after = scrape(response.text)
    assert response.headers["content-type"].startswith("text/plain")

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    for (service, outcome), n in decided.items():
        assert n == delta("miaopi_decisions_total", service=service, outcome=outcome)
    assert sum(decided.values()) == sum(
        v - before.get((name, labels), 0.0)
        for (name, labels), v in after.items()
        if name == "miaopi_decisions_total"
    )
    per_service = collections.Counter(s for (s, _), n in decided.items() for _ in range(n))
    for service, n in per_service.items():
        assert n == delta("miaopi_decision_duration_seconds_count", service=service)
        assert 0 < delta("miaopi_decision_duration_seconds_sum", service=service) < n * 5
    for (registry, outcome), n in evidence.items():
        assert n == delta("miaopi_evidence_total", registry=registry, outcome=outcome)
    posts = len(demo_samples) + 2
    assert posts == delta(
        "miaopi_http_requests_total", method="POST", route="/v1/decisions", status="201"
    )
    assert posts == delta(
        "miaopi_http_request_duration_seconds_count", method="POST", route="/v1/decisions"
    )
    ctx = api_app.state.ctx
    assert ctx.store.count() == value(after, "miaopi_chain_length")
    assert 1 == value(after, "miaopi_store_up")
    open_referrals = len(ctx.reviews.queue(status="open", kind="referral", limit=100_000))
    assert open_referrals == value(
        after, "miaopi_review_cases_open", kind="referral", status="open"
    )
    assert open_referrals >= decided[("talent-housing-subsidy", "REFERRED")]

    leaked = [s for s in secrets if s in response.text]
    assert [] == leaked
    services = set(ctx.service.catalog.services())
    registries = {spec.id for spec in ctx.service.registries}
    allowed: dict[str, set[str] | re.Pattern[str]] = {
        "service": services,
        "registry": registries,
        "outcome": set(OUTCOMES) | {"APPROVED", "REJECTED", "REFERRED"},
        "method": {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "OTHER"},
        "status": re.compile(r"^[1-5]\d\d$"),
        "route": re.compile(r"^(/[a-z0-9_.{}-]*)+$|^<unmatched>$"),
        "kind": {"referral", "objection", "human_decision"},
        "le": re.compile(r"^([0-9.]+|\+Inf)$"),
    }
    for name, labels in after:
        if not name.startswith("miaopi_"):
            continue
        for key, text in labels:
            rule = allowed.get(key)
            if (name, key) == ("miaopi_review_cases_open", "status"):
                rule = {"open", "in_review"}
            assert rule is not None, f"unexpected label {key} on {name}"
            ok = text in rule if isinstance(rule, set) else bool(rule.match(text))
            assert ok, f"{name}{{{key}={text!r}}}"


def test_a_path_no_route_matches_is_counted_without_the_path(
    client: TestClient, ops_key: dict[str, str]
) -> None:
    """A 404 for any path is counted under the route ``<unmatched>``; the path never appears."""
    probe = "/v1/people/440301199001011234/张三"
    before = scrape(client.get("/metrics", headers=ops_key).text)
    assert 404 == client.get(probe).status_code
    text = client.get("/metrics", headers=ops_key).text
    after = scrape(text)
    labels = {"method": "GET", "route": "<unmatched>", "status": "404"}
    assert 1 == value(after, "miaopi_http_requests_total", **labels) - value(
        before, "miaopi_http_requests_total", **labels
    )
    assert "440301199001011234" not in text and "张三" not in text and "/v1/people" not in text


def test_metrics_need_an_ops_or_auditor_key_off_this_machine_unless_open(
    api_app: FastAPI, role_keys: dict[str, str]
) -> None:
    """From elsewhere: no key 401, a platform or reviewer key 403, ops or auditor 200;
    with MIAOPI_METRICS_ACCESS=open anyone reads /metrics but not /v1/ops/health."""
    ctx = api_app.state.ctx
    with TestClient(api_app) as c:
        assert 401 == c.get("/metrics").status_code
        assert 401 == c.get("/v1/ops/health").status_code
        for role, want in [("platform", 403), ("reviewer", 403), ("ops", 200), ("auditor", 200)]:
            assert want == c.get("/metrics", headers=bearer(role_keys[role])).status_code, role
        settings = ctx.settings
        ctx.settings = settings.model_copy(update={"metrics_access": "open"})
        try:
            assert 200 == c.get("/metrics").status_code
            assert 401 == c.get("/v1/ops/health").status_code
        finally:
            ctx.settings = settings


def test_healthz_tells_nothing_private_and_staff_get_the_full_report(
    tmp_path: Path, demo_dir: Path, rulesets_dir: Path
) -> None:
    """With a registry file missing: /healthz has no decision count, no path, no row count,
    no file name; /v1/ops/health (ops key) has all of them."""
    data = tmp_path / "data"
    shutil.copytree(demo_dir, data)
    (data / "death_registry.csv").unlink()
    settings = Settings(
        data_dir=data,
        rulesets_dir=rulesets_dir,
        database_url=f"sqlite:///{tmp_path}/h.db",
        pseudonym_key=TEST_SECRET_KEY,
        signing_key_file=signing_key(),
    )
    app = create_app(settings)
    try:
        key = make_key(settings.database_url, "ops")
        with TestClient(app) as c:
            public = c.get("/healthz")
            full = c.get("/v1/ops/health", headers=bearer(key))
    finally:
        app.state.service.close()
        app.state.service.store.dispose()
    assert 200 == public.status_code
    body = public.json()
    assert "degraded" == body["status"]
    assert "decisions" not in body
    for secret in (str(tmp_path), str(rulesets_dir), "death_registry.csv", '"records"', '"path"'):
        assert secret not in public.text, secret
    death = next(r for r in body["registries"] if r["id"] == "death_registry")
    assert (False, "未能加载 / did not load") == (death["loaded"], death["problem"])
    old_age = [r for r in body["rulesets"] if r["service"] == "old-age-allowance"]
    assert old_age and not any(r["servable"] for r in old_age)
    assert all("death_registry" in " ".join(r["problems"]) for r in old_age)

    assert 200 == full.status_code
    report = full.json()
    assert 0 == report["decisions"]
    assert "death_registry.csv" in next(
        r["problem"] for r in report["registries"] if r["id"] == "death_registry"
    )
    assert str(rulesets_dir) in full.text


# --- readiness ----------------------------------------------------------------------------


def test_readyz_is_200_when_database_rulesets_and_sources_are_fine(client: TestClient) -> None:
    """The shipped rulesets on the demo data with a working store: ready."""
    r = client.get("/readyz")
    assert 200 == r.status_code
    checks = r.json()["checks"]
    assert "ready" == r.json()["status"]
    assert all(c["ok"] for c in checks.values())
    assert checks["rulesets"]["servable"] >= 5


def test_readyz_is_503_naming_rulesets_and_sources_when_no_registry_loaded(
    tmp_path: Path, rulesets_dir: Path
) -> None:
    """An empty data folder: no ruleset can decide and every registry is NOT_LOADED; the
    database check still passes; no path in the answer."""
    empty = tmp_path / "empty"
    empty.mkdir()
    settings = Settings(
        data_dir=empty,
        rulesets_dir=rulesets_dir,
        database_url=f"sqlite:///{tmp_path}/r.db",
        pseudonym_key=TEST_SECRET_KEY,
        signing_key_file=signing_key(),
    )
    app = create_app(settings)
    try:
        with TestClient(app) as c:
            r = c.get("/readyz")
    finally:
        app.state.service.close()
        app.state.service.store.dispose()
    assert 503 == r.status_code
    checks = r.json()["checks"]
    assert "not_ready" == r.json()["status"]
    assert checks["database"]["ok"]
    assert (False, "NO_SERVABLE_RULESET") == (checks["rulesets"]["ok"], checks["rulesets"]["code"])
    assert "SOURCES_UNAVAILABLE" == checks["sources"]["code"]
    failing = {f["registry"]: f["problem"] for f in checks["sources"]["registries"]}
    assert "NOT_LOADED" == failing["population"] == failing["death_registry"]
    assert str(tmp_path) not in r.text


@pytest.fixture
def doomed_database(_postgres_base_url: str) -> Iterator[tuple[str, sa.Engine]]:
    """A PostgreSQL database of its own, which the test may drop; dropped afterwards anyway."""
    name = f"miaopi_ops_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(_postgres_base_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    base = sa.engine.make_url(_postgres_base_url)
    try:
        yield base.set(database=name).render_as_string(hide_password=False), admin
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.mark.postgres
def test_readyz_is_503_when_the_database_is_gone(
    doomed_database: tuple[str, sa.Engine], demo_dir: Path, rulesets_dir: Path
) -> None:
    """Ready on a PostgreSQL database; once the database is dropped: 503 DATABASE_UNAVAILABLE,
    without the database's name or host; the other checks still pass."""
    url, admin = doomed_database
    settings = Settings(
        data_dir=demo_dir,
        rulesets_dir=rulesets_dir,
        database_url=url,
        pseudonym_key=TEST_SECRET_KEY,
        signing_key_file=signing_key(),
    )
    app = create_app(settings)
    try:
        c = TestClient(app)  # no lifespan: its shutdown would file a checkpoint from the database
        assert 200 == c.get("/readyz").status_code
        name = sa.engine.make_url(url).database
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE "{name}" WITH (FORCE)'))
        r = c.get("/readyz")
    finally:
        app.state.service.close()
        app.state.service.store.dispose()
    assert 503 == r.status_code
    checks = r.json()["checks"]
    assert (False, "DATABASE_UNAVAILABLE") == (checks["database"]["ok"], checks["database"]["code"])
    assert checks["rulesets"]["ok"] and checks["sources"]["ok"]
    assert str(name) not in r.text and "127.0.0.1" not in r.text


def test_readyz_is_503_while_a_remote_registrys_breaker_is_open(
    tmp_path: Path, demo_dir: Path, rulesets_dir: Path, demo_samples: dict
) -> None:
    """Registries over HTTP (the simulator); the education registry goes down: after the
    breaker opens, /readyz answers 503 naming education CIRCUIT_OPEN; decisions are referred."""
    with running_simulator(demo_dir, tmp_path / "sim.log") as (sim, _):
        settings = Settings(
            data_dir=demo_dir,
            rulesets_dir=rulesets_dir,
            database_url=f"sqlite:///{tmp_path}/b.db",
            pseudonym_key=TEST_SECRET_KEY,
            signing_key_file=signing_key(),
            registry_url=sim,
        )
        app = create_app(settings)
        try:
            key = make_key(settings.database_url, "platform")
            with TestClient(app, headers=bearer(key)) as c:
                assert 200 == c.get("/readyz").status_code
                down = {"registries": {"education": {"outage": True}}}
                assert 200 == httpx.post(f"{sim}/_control/faults", json=down).status_code
                body = demo_samples["approved-master-2016.json"].body
                outcomes = []
                for _ in range(8):
                    r = c.post(
                        "/v1/decisions",
                        json=_fresh(body),
                        headers={"Idempotency-Key": uuid.uuid4().hex},
                    )
                    outcomes.append(r.json()["outcome"])
                    ready = c.get("/readyz")
                    if ready.status_code == 503:
                        break
        finally:
            app.state.service.close()
            app.state.service.store.dispose()
    assert set(outcomes) == {"REFERRED"}
    assert 503 == ready.status_code, ready.text
    sources = ready.json()["checks"]["sources"]
    assert [{"registry": "education", "problem": "CIRCUIT_OPEN"}] == sources["registries"]
    assert ready.json()["checks"]["database"]["ok"]


# --- a real server, on this machine, with two workers -------------------------------------


def test_two_workers_report_one_set_of_figures_and_this_machine_reads_without_a_key(
    tmp_path: Path, repo_root: Path, miaopi_bin: Path, demo_dir: Path, rulesets_dir: Path,
    demo_samples: dict,
) -> None:  # fmt: skip
    """`miaopi serve --workers 2`: after 12 decisions every scrape (whichever worker answers)
    counts 12; a caller on loopback reads /metrics without a key unless a proxy header says it
    forwards someone; the workers' shared folder is removed when the server stops."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    db_url = f"sqlite:///{tmp_path}/w.db"
    temp = tmp_path / "tmp"
    temp.mkdir()
    env = {**server_env(db_url), "TMPDIR": str(temp)}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    log = tmp_path / "server.log"
    with log.open("wb") as out:
        server = subprocess.Popen(
            [
                str(miaopi_bin), "serve", "--port", str(port), "--workers", "2",
                "--rulesets", str(rulesets_dir), "--data-dir", str(demo_dir),
            ],
            cwd=repo_root, env=env, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        wait_until_up(base, server, log)
        shared = list(temp.glob("miaopi-metrics-*"))
        assert 1 == len(shared)
        headers = bearer(make_key(db_url, "platform"))
        body = demo_samples["approved-master-2016.json"].body
        for _ in range(12):  # a new connection each: the kernel spreads them over the workers
            r = httpx.post(
                f"{base}/v1/decisions",
                json=_fresh(body),
                headers={**headers, "Idempotency-Key": uuid.uuid4().hex},
                timeout=30,
            )
            assert 201 == r.status_code, r.text
        counts = set()
        for _ in range(8):
            text = httpx.get(f"{base}/metrics", timeout=30).text
            samples = scrape(text)
            counts.add(
                value(
                    samples,
                    "miaopi_decisions_total",
                    service="talent-housing-subsidy",
                    outcome="APPROVED",
                )
            )
        assert {12.0} == counts
        assert 12 == value(samples, "miaopi_chain_length")
        forwarded = httpx.get(f"{base}/metrics", headers={"X-Forwarded-For": "203.0.113.9"})
        assert 401 == forwarded.status_code
        assert 200 == httpx.get(f"{base}/v1/ops/health", timeout=30).status_code
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
    deadline = time.monotonic() + 10
    while list(temp.glob("miaopi-metrics-*")) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert [] == list(temp.glob("miaopi-metrics-*"))
