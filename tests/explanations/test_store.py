"""The hash-chained decision store on SQLite and PostgreSQL: audit verify (real CLI), tampering, replay."""

from __future__ import annotations

import copy
import hashlib
import json
import sqlite3
import subprocess
import threading
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from support import TEST_SECRET_KEY, bearer, signing_key_path

from api.app import create_app
from api.auth import KeyStore
from api.service import DecisionRequest, DecisionService, request_sha256
from api.settings import Settings
from engine import RulesetCatalog
from explanations import DecisionStore, ExplanationRecordV1, replay


def _execute(url: str, sql: str, params: dict[str, Any] | None = None) -> list[tuple[Any, ...]]:
    """Run one statement behind the application's back (sqlite3 for SQLite files)."""
    if url.startswith("sqlite"):
        con = sqlite3.connect(url.split("///", 1)[1])
        try:
            rows = con.execute(sql, params or {}).fetchall()
            con.commit()
            return rows
        finally:
            con.close()
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            result = conn.execute(sa.text(sql), params or {})
            return [tuple(r) for r in result] if result.returns_rows else []
    finally:
        engine.dispose()


def _decide_all(service: DecisionService, bodies: list[dict[str, Any]]) -> list[str]:
    """Decide and store every body under a fresh idempotency key; return the decision ids."""
    ids = []
    for body in bodies:
        request = DecisionRequest.model_validate(body)
        stored = service.decide(
            request,
            idempotency_key=f"k-{uuid.uuid4().hex}",
            body_sha256=request_sha256(request.model_dump(mode="json")),
        )
        ids.append(stored.decision_id)
    return ids


@pytest.fixture
def filled(
    db_url: str,
    make_service: Callable[[str | None], DecisionService],
    demo_samples: dict,
    bulk_bodies: list[dict[str, Any]],
) -> tuple[str, DecisionService, list[str]]:
    """A store holding every shipped sample (all services) and 4 bulk applications."""
    service = make_service(db_url)
    bodies = [s.body for s in demo_samples.values()] + bulk_bodies[:4]
    assert len(demo_samples) + 4 == len(bodies) >= 37
    return db_url, service, _decide_all(service, bodies)


@pytest.fixture
def audit_verify(
    repo_root: Path, miaopi_bin: Path
) -> Callable[[str], subprocess.CompletedProcess[str]]:
    """Run ``miaopi audit verify --database-url URL`` as a real process."""

    def run(url: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(miaopi_bin), "audit", "verify", "--database-url", url],
            cwd=repo_root,
            capture_output=True,
            text=True,
            timeout=300,
        )

    return run


def _flip_one_byte(record_json: str) -> str:
    """Change one digit of the first amount (25000 → 25001, say): the smallest possible edit."""
    marker = '"amount_yuan":'
    at = record_json.index(marker) + len(marker)
    digit = record_json[at]
    assert digit.isdigit()
    return record_json[:at] + str((int(digit) + 1) % 10) + record_json[at + 1 :]


# --- verify ----------------------------------------------------------------------------


def test_an_untouched_store_verifies(
    filled: tuple[str, DecisionService, list[str]], audit_verify: Callable[[str], Any]
) -> None:
    """audit verify exits 0 and counts every record on an untouched store."""
    url, service, ids = filled
    n = len(ids)
    assert n == service.store.count()  # type: ignore[union-attr]
    assert n == len(set(ids))
    assert [(s,) for s in range(1, n + 1)] == _execute(
        url, "SELECT seq FROM explanation_records ORDER BY seq"
    )
    result = audit_verify(url)
    assert 0 == result.returncode, result.stdout + result.stderr
    assert f"{n} records" in result.stdout


def test_one_changed_byte_in_a_record_is_found_and_named(
    filled: tuple[str, DecisionService, list[str]], audit_verify: Callable[[str], Any]
) -> None:
    """Changing one byte of one stored record makes verify exit 1 naming that record's seq and id."""
    url, _, _ = filled
    seq, decision_id, record_json = _execute(
        url,
        "SELECT seq, decision_id, record_json FROM explanation_records "
        "WHERE record_json LIKE :pattern ORDER BY seq LIMIT 1",
        {"pattern": '%"amount_yuan":2%'},
    )[0]
    altered = _flip_one_byte(record_json)
    assert len(record_json) == len(altered)
    assert 1 == sum(a != b for a, b in zip(record_json, altered, strict=True))
    _execute(
        url,
        "UPDATE explanation_records SET record_json = :j WHERE seq = :s",
        {"j": altered, "s": seq},
    )
    result = audit_verify(url)
    assert 1 == result.returncode, result.stdout + result.stderr
    tampered = [line for line in result.stdout.splitlines() if line.startswith("TAMPERED")]
    assert tampered, result.stdout
    assert all(f"seq={seq} decision={decision_id}" in line for line in tampered), result.stdout


def test_deleting_the_last_record_is_found(
    filled: tuple[str, DecisionService, list[str]], audit_verify: Callable[[str], Any]
) -> None:
    """Removing the newest record (which no later link covers) is caught by the chain head."""
    url, _, ids = filled
    _execute(url, "DELETE FROM explanation_records WHERE seq = :s", {"s": len(ids)})
    result = audit_verify(url)
    assert 1 == result.returncode, result.stdout + result.stderr
    assert f"TAMPERED seq={len(ids)}" in result.stdout


def test_deleting_a_middle_record_is_found(
    filled: tuple[str, DecisionService, list[str]], audit_verify: Callable[[str], Any]
) -> None:
    """A gap in the chain is reported at the record after it."""
    url, _, _ = filled
    _execute(url, "DELETE FROM explanation_records WHERE seq = 7")
    result = audit_verify(url)
    assert 1 == result.returncode, result.stdout + result.stderr
    assert "records 7…7 are missing" in result.stdout


def test_editing_a_decision_rows_outcome_is_found(
    filled: tuple[str, DecisionService, list[str]], audit_verify: Callable[[str], Any]
) -> None:
    """Turning a stored REJECTED into APPROVED in the decisions table is caught and named."""
    url, _, _ = filled
    (decision_id,), *_ = _execute(
        url, "SELECT id FROM decisions WHERE outcome = 'REJECTED' ORDER BY id"
    )
    seq = _execute(
        url, "SELECT seq FROM explanation_records WHERE decision_id = :d", {"d": decision_id}
    )[0][0]
    _execute(url, "UPDATE decisions SET outcome = 'APPROVED' WHERE id = :d", {"d": decision_id})
    result = audit_verify(url)
    assert 1 == result.returncode, result.stdout + result.stderr
    assert (
        f"TAMPERED seq={seq} decision={decision_id}: decision row outcome differs" in result.stdout
    )


def test_editing_a_stored_response_amount_is_found(
    filled: tuple[str, DecisionService, list[str]], audit_verify: Callable[[str], Any]
) -> None:
    """Raising the amount in the stored response (what GET and retries serve) is caught and named."""
    url, _, _ = filled
    decision_id, response_json = _execute(
        url,
        "SELECT id, response_json FROM decisions WHERE response_json LIKE :p ORDER BY id LIMIT 1",
        {"p": '%"amount_yuan": 2%'},
    )[0]
    seq = _execute(
        url, "SELECT seq FROM explanation_records WHERE decision_id = :d", {"d": decision_id}
    )[0][0]
    altered = response_json.replace('"amount_yuan": 2', '"amount_yuan": 9', 1)
    _execute(
        url,
        "UPDATE decisions SET response_json = :j WHERE id = :d",
        {"j": altered, "d": decision_id},
    )
    result = audit_verify(url)
    assert 1 == result.returncode, result.stdout + result.stderr
    assert f"TAMPERED seq={seq} decision={decision_id}: stored response differs" in result.stdout


def test_a_rehashed_record_still_breaks_the_next_link(
    filled: tuple[str, DecisionService, list[str]],
) -> None:
    """Editing a record and recomputing its own hash is caught by the following record's prev_hash."""
    url, service, _ = filled
    seq, record_json = _execute(
        url, "SELECT seq, record_json FROM explanation_records WHERE seq = 5"
    )[0]
    altered = record_json.replace('"outcome":"', '"outcome":"X', 1)
    digest = "sha256:" + hashlib.sha256(altered.encode("utf-8")).hexdigest()
    _execute(
        url,
        "UPDATE explanation_records SET record_json = :j, record_hash = :h WHERE seq = :s",
        {"j": altered, "h": digest, "s": seq},
    )
    count, problems = service.store.verify()  # type: ignore[union-attr]
    assert service.store.count() == count  # type: ignore[union-attr]
    assert 6 in {p.seq for p in problems if "prev_hash" in p.message}


def test_a_repeated_key_is_stored_once(
    filled: tuple[str, DecisionService, list[str]], demo_samples: dict
) -> None:
    """Deciding the same key and body twice stores one decision and returns the same id."""
    _, service, ids = filled
    request = DecisionRequest.model_validate(demo_samples["approved-master-2016.json"].body)
    sha = request_sha256(request.model_dump(mode="json"))
    first = service.decide(request, idempotency_key="same", body_sha256=sha)
    second = service.decide(request, idempotency_key="same", body_sha256=sha)
    assert (first.decision_id, False, True) == (second.decision_id, first.replayed, second.replayed)
    assert len(ids) + 1 == service.store.count()  # type: ignore[union-attr]


# --- replay ----------------------------------------------------------------------------


def _stored_records(service: DecisionService, ids: list[str]) -> list[ExplanationRecordV1]:
    records = [service.store.get_record(d) for d in ids]  # type: ignore[union-attr]
    assert all(r is not None for r in records)
    return records  # type: ignore[return-value]


def test_every_stored_record_replays_identically(
    filled: tuple[str, DecisionService, list[str]], ruleset_catalog: RulesetCatalog
) -> None:
    """Re-deciding from the stored record and its recorded ruleset gives the same decision."""
    _, service, ids = filled
    results = {}
    for record in _stored_records(service, ids):
        ruleset = ruleset_catalog.get(record.service, record.ruleset_version)
        assert ruleset is not None
        results[record.decision_id] = replay(record, ruleset)
    assert {d: (True, []) for d in ids} == {
        d: (r.identical, r.differences) for d, r in results.items()
    }


def test_a_record_with_edited_evidence_no_longer_replays(
    filled: tuple[str, DecisionService, list[str]], ruleset_catalog: RulesetCatalog
) -> None:
    """An approval whose recorded age (the record keeps the age, not the birth date) is raised
    to 76 replays as a rejection on C2."""
    _, service, ids = filled
    record = next(r for r in _stored_records(service, ids) if r.outcome.value == "APPROVED")
    evidence = []
    for item in record.evidence:
        if item.id == "population":
            assert "birth_date" not in item.values
            ages = copy.deepcopy(item.ages)
            ages["birth_date"] = 76
            item = item.model_copy(update={"ages": ages})
        evidence.append(item)
    edited = record.model_copy(update={"evidence": evidence})
    ruleset = ruleset_catalog.get(record.service, record.ruleset_version)
    assert ruleset is not None
    result = replay(edited, ruleset)
    assert not result.identical
    assert any(d.startswith("outcome") for d in result.differences)
    assert any(d.startswith("criterion C2") for d in result.differences)


def test_a_record_replayed_against_another_version_is_refused(
    filled: tuple[str, DecisionService, list[str]], ruleset_catalog: RulesetCatalog
) -> None:
    """Replay against a ruleset other than the recorded one says the hashes differ."""
    _, service, ids = filled
    record = next(r for r in _stored_records(service, ids) if r.ruleset_version == "2016")
    other = ruleset_catalog.get(record.service, "2026")
    assert other is not None
    result = replay(record, other)
    assert not result.identical
    assert record.ruleset_hash in result.differences[0]


# --- concurrency -----------------------------------------------------------------------


@pytest.mark.postgres
def test_eight_threads_posting_at_once_leave_one_unbroken_chain(
    postgres_url: str,
    demo_dir: Path,
    rulesets_dir: Path,
    bulk_bodies: list[dict[str, Any]],
    audit_verify: Callable[[str], Any],
) -> None:
    """8 threads × 25 applications through one app on PostgreSQL: 200 records, seq 1…200, chain intact."""
    app = create_app(
        Settings(
            data_dir=demo_dir,
            rulesets_dir=rulesets_dir,
            database_url=postgres_url,
            pseudonym_key=TEST_SECRET_KEY,
            signing_key_file=signing_key_path(),
        )
    )
    platform = bearer(KeyStore(app.state.ctx.store.engine).create("platform")[1])
    statuses: list[int] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def worker(t: int, client: TestClient) -> None:
        try:
            for i in range(25):
                body = {**bulk_bodies[t * 25 + i], "application_id": f"PG-{t}-{i}"}
                r = client.post(
                    "/v1/decisions", json=body, headers={"Idempotency-Key": f"pg-{t}-{i}"}
                )
                with lock:
                    statuses.append(r.status_code)
        except BaseException as exc:  # reported below
            errors.append(exc)

    try:
        with TestClient(app, headers=platform) as client:
            threads = [threading.Thread(target=worker, args=(t, client)) for t in range(8)]
            for th in threads:
                th.start()
            for th in threads:
                th.join(timeout=300)
        store: DecisionStore = app.state.service.store
        count, problems = store.verify()
    finally:
        app.state.service.close()
        app.state.service.store.dispose()
    assert [] == errors
    assert [201] * 200 == statuses
    assert (200, []) == (count, problems)
    assert [(s,) for s in range(1, 201)] == _execute(
        postgres_url, "SELECT seq FROM explanation_records ORDER BY seq"
    )
    assert [(200, 200)] == _execute(
        postgres_url, "SELECT count(*), count(DISTINCT application_id) FROM decisions"
    )
    result = audit_verify(postgres_url)
    assert 0 == result.returncode, result.stdout + result.stderr


def test_audit_replay_re_decides_every_stored_record_and_names_one_that_differs(
    filled: tuple[str, DecisionService, list[str]], repo_root: Path, miaopi_bin: Path
) -> None:
    """`audit replay` finds every record identical; after a recorded age is edited it names that decision."""
    url, _, ids = filled

    def replay_cli(*extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(miaopi_bin), "audit", "replay", *extra, "--database-url", url],
            cwd=repo_root,
            capture_output=True,
            text=True,
            timeout=300,
        )

    clean = replay_cli()
    assert 0 == clean.returncode, clean.stdout + clean.stderr
    assert f"replayed: {len(ids)} records, all identical" in clean.stdout
    seq, decision_id, record_json = _execute(
        url,
        "SELECT seq, decision_id, record_json FROM explanation_records "
        "WHERE record_json LIKE :p ORDER BY seq LIMIT 1",
        {"p": '%"outcome":"APPROVED"%'},
    )[0]
    body = json.loads(record_json)
    for item in body["evidence"]:
        if item["id"] == "population":
            item["ages"]["birth_date"] = 76
    _execute(
        url,
        "UPDATE explanation_records SET record_json = :j WHERE seq = :s",
        {"j": json.dumps(body, ensure_ascii=False), "s": seq},
    )
    one = replay_cli(decision_id)
    assert 1 == one.returncode, one.stdout + one.stderr
    assert f"DIFFERS {decision_id}: outcome" in one.stdout
    everything = replay_cli()
    assert 1 == everything.returncode
    assert f"1 of {len(ids)} records differ" in everything.stdout
