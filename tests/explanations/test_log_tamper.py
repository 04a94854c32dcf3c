"""Tampering with stored decisions is caught: byte edits, truncation, rewritten history, swapped keys, forged receipts."""

from __future__ import annotations

import base64
import contextlib
import copy
import datetime as dt
import json
import random
import shutil
import sqlite3
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pytest
import sqlalchemy as sa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from support import signing_key_path
from typer.testing import CliRunner

from adapters.base import Adapter
from api.cli import app as cli_app
from api.secrets import load_signing_key
from api.service import DecisionRequest, DecisionService, request_sha256
from engine import RulesetCatalog
from engine.registries import RegistryCatalogue
from explanations import DecisionStore, canonical_json, merkle, text_hash
from explanations.log import (
    Checkpoint,
    LeafEntry,
    Receipt,
    append_checkpoint_file,
    load_public_keys,
    public_key_id,
    public_key_pem,
    read_checkpoints,
    verify_receipt,
)
from explanations.record import parse_record, response_of

DECISIONS = 30
"""Decisions in each populated log: enough for a tree of depth 5 with partial subtrees."""
GENESIS = "sha256:" + "0" * 64

Cli = Callable[..., "subprocess.CompletedProcess[str]"]


# --- fixtures and helpers ------------------------------------------------------------------


@pytest.fixture(scope="session")
def public_key_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The public half of the tests' signing key, as an auditor holds it (PEM)."""
    path = tmp_path_factory.mktemp("auditor") / "log-public-key.pem"
    path.write_text(public_key_pem(load_signing_key(signing_key_path())), encoding="ascii")
    return path


@pytest.fixture(scope="session")
def keys(public_key_file: Path) -> dict[str, Ed25519PublicKey]:
    """The auditor's trusted keys by id (only the service's)."""
    return load_public_keys([public_key_file])


@pytest.fixture
def miaopi(repo_root: Path, miaopi_bin: Path) -> Cli:
    """Run the real ``miaopi`` console script with the arguments given."""

    def run(*args: str | Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(miaopi_bin), *map(str, args)],
            cwd=repo_root,
            capture_output=True,
            text=True,
            timeout=300,
        )

    return run


def _decide_all(
    service: DecisionService, bodies: list[dict[str, Any]], *, first: int = 0
) -> list[str]:
    """Decide and store every body under its own idempotency key; return the decision ids."""
    ids = []
    for i, body in enumerate(bodies, start=first):
        request = DecisionRequest.model_validate(body)
        stored = service.decide(
            request,
            idempotency_key=f"tamper-{i:04d}",
            body_sha256=request_sha256(request.model_dump(mode="json")),
        )
        ids.append(stored.decision_id)
    return ids


def _pin(service: DecisionService, *, seed: int) -> None:
    """Make the service's decision ids and times follow from ``seed`` (a reproducible store)."""
    ids = random.Random(seed)
    ticks = iter(range(1_000_000))
    start = dt.datetime(2026, 1, 5, 9, 30, 0, 123456, tzinfo=dt.UTC)
    service.new_id = lambda: str(uuid.UUID(int=ids.getrandbits(128), version=4))
    service.clock = lambda: start + dt.timedelta(seconds=1.5 * next(ticks))


@dataclass(frozen=True)
class Logged:
    """A store holding ``DECISIONS`` signed decisions, and the service that decided them."""

    url: str
    service: DecisionService
    store: DecisionStore
    ids: list[str]


@pytest.fixture
def logged(
    db_url: str,
    make_service: Callable[[str | None], DecisionService],
    bulk_bodies: list[dict[str, Any]],
) -> Logged:
    """``DECISIONS`` bulk applications decided and logged (approved, rejected and referred)."""
    service = make_service(db_url)
    assert service.store is not None
    return Logged(db_url, service, service.store, _decide_all(service, bulk_bodies[:DECISIONS]))


@contextlib.contextmanager
def _dba(url: str) -> Iterator[sa.Connection]:
    """The database administrator's own connection, one transaction, behind the service's back."""
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            yield conn
    finally:
        engine.dispose()


def _sql(conn: sa.Connection, sql: str, **params: Any) -> list[Any]:
    result = conn.execute(sa.text(sql), params)
    return list(result) if result.returns_rows else []


def _save_checkpoint(miaopi: Cli, url: str, out: Path) -> Checkpoint:
    """``miaopi log checkpoint --out FILE``: the auditor's copy of the newest signed head."""
    result = miaopi("log", "checkpoint", "--database-url", url, "--out", out)
    assert 0 == result.returncode, result.stdout + result.stderr
    return Checkpoint.model_validate_json(result.stdout.strip())


# --- an untouched log ----------------------------------------------------------------------


def test_an_untouched_log_verifies_clean_with_signatures_and_a_saved_checkpoint(
    logged: Logged,
    keys: dict[str, Ed25519PublicKey],
    public_key_file: Path,
    miaopi: Cli,
    tmp_path: Path,
) -> None:
    """A log nobody touched has 0 problems in process and through the CLI, and every receipt holds."""
    saved = tmp_path / "checkpoints.jsonl"
    checkpoint = _save_checkpoint(miaopi, logged.url, saved)
    assert DECISIONS == checkpoint.size
    assert checkpoint == logged.store.checkpoint()
    assert [checkpoint] == read_checkpoints(saved)
    assert (DECISIONS, []) == logged.store.verify(keys=keys, checkpoints=[checkpoint])
    receipts = {d: logged.store.receipt(d) for d in logged.ids}
    assert {d: [] for d in logged.ids} == {
        d: verify_receipt(r, keys) if r is not None else ["no receipt"] for d, r in receipts.items()
    }
    result = miaopi(
        "audit", "verify", "--database-url", logged.url,
        "--public-key", public_key_file, "--checkpoint", saved,
    )  # fmt: skip
    assert 0 == result.returncode, result.stdout + result.stderr
    assert "TAMPERED" not in result.stdout
    assert f"{DECISIONS} records" in result.stdout
    assert "signatures checked" in result.stdout
    assert "consistent with 1 saved checkpoint(s)" in result.stdout


def test_a_store_from_before_the_log_catches_up_and_verifies(
    db_url: str,
    ruleset_catalog: RulesetCatalog,
    demo_registries: dict[str, Adapter],
    registry_catalogue: RegistryCatalogue,
    bulk_bodies: list[dict[str, Any]],
    keys: dict[str, Ed25519PublicKey],
) -> None:
    """Records stored without a log (no log tables at all) enter it when a signing store opens them."""

    def service_on(store: DecisionStore) -> DecisionService:
        return DecisionService(
            catalog=ruleset_catalog,
            adapters=demo_registries,
            registries=registry_catalogue,
            store=store,
            pseudonym_key="tests-pseudonym-key",
        )

    unsigned = DecisionStore(db_url)
    unsigned.create_schema()
    service = service_on(unsigned)
    try:
        early = _decide_all(service, bulk_bodies[:10])
        assert unsigned.receipt(early[0]) is None
    finally:
        service.close()
        unsigned.dispose()
    with _dba(db_url) as conn:  # as an earlier version left it: no log tables, no migrations
        _sql(conn, "DROP TABLE log_heads")
        _sql(conn, "DROP TABLE log_nodes")
        _sql(conn, "DROP TABLE alembic_version")

    signed = DecisionStore(db_url, signing_key=load_signing_key(signing_key_path()))
    signed.create_schema()
    service = service_on(signed)
    try:
        assert (10, []) == signed.verify(keys=keys)
        caught_up = signed.checkpoint()
        assert caught_up is not None and 10 == caught_up.size
        first = signed.receipt(early[0])
        assert first is not None and [] == verify_receipt(first, keys)
        late = _decide_all(service, bulk_bodies[10:15], first=10)
        assert (15, []) == signed.verify(keys=keys, checkpoints=[caught_up])
        receipts = [signed.receipt(d) for d in early + late]
        assert [[]] * 15 == [verify_receipt(r, keys) if r else ["none"] for r in receipts]
    finally:
        service.close()
        signed.dispose()


# --- 1,000 single-byte edits -----------------------------------------------------------------

TAMPER_SEED = 6962
TRIALS = 1000
COLUMNS: dict[str, list[str]] = {
    "explanation_records": ["seq", "decision_id", "record_json", "prev_hash", "record_hash"],
    "decisions": [
        "id",
        "idempotency_key",
        "request_sha256",
        "application_id",
        "service",
        "ruleset_version",
        "outcome",
        "created_at",
        "response_json",
    ],
    "chain_head": ["id", "seq", "record_hash"],
    "log_nodes": ["level", "idx", "hash"],
    "log_heads": ["size", "root", "time", "key_id", "signature"],
}
"""Every column of every table the log protects (checked against the schema, so a new column
must be added here)."""
REPLACEMENTS = (
    [chr(c) for c in range(0x20, 0x7F)]
    + ["\x00", "\t", "\n", "\r", "\x7f"]
    + ["é", "ß", "\u00a0", "\u200b", "\u3000", "Ａ", "中", "审", "批", "\U0001f600"]
)
"""What a changed character becomes: every printable ASCII byte, control bytes, non-ASCII."""


def _edit_text(value: str, rng: random.Random) -> tuple[str, str]:
    """``value`` with one character replaced by a different one, and a description."""
    at = rng.randrange(len(value))
    new = rng.choice([c for c in REPLACEMENTS if c != value[at]])
    return value[:at] + new + value[at + 1 :], f"char {at} {value[at]!r}→{new!r}"


def _tamper_once(path: Path, table: str, column: str, rows: list[Any], rng: random.Random) -> str:
    """Change one value in the SQLite file at ``path``; return what was changed.

    Text loses one character to another; an integer moves by a random nonzero amount (another
    amount is tried when the new value would collide with a key, as the statement must succeed).
    """
    con = sqlite3.connect(path)
    try:
        for _ in range(50):
            rowid, value = rng.choice(rows)
            if isinstance(value, int):
                delta = rng.choice([-1, 1]) * rng.choice([1, 1, 2, 3, rng.randrange(4, 1000)])
                new: Any = value + delta
                what = f"{value}→{new}"
            else:
                new, what = _edit_text(str(value), rng)
            try:
                con.execute(f"UPDATE {table} SET {column} = ? WHERE rowid = ?", (new, rowid))
            except sqlite3.IntegrityError:
                continue
            con.commit()
            return f"{table}.{column} rowid={rowid}: {what}"
        raise AssertionError(f"no valid one-value change found for {table}.{column}")
    finally:
        con.close()


def _remove_sqlite_file(path: Path) -> None:
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


def test_a_thousand_random_single_byte_edits_are_all_detected(
    make_service: Callable[[str | None], DecisionService],
    bulk_bodies: list[dict[str, Any]],
    keys: dict[str, Ed25519PublicKey],
    tmp_path: Path,
) -> None:
    """1,000 seeded one-character edits to any column of any protected row: verify reports every one."""
    template = tmp_path / "template.db"
    service = make_service(f"sqlite:///{template}")
    _pin(service, seed=TAMPER_SEED)  # the same rows, hence the same edits, on every run
    _decide_all(service, bulk_bodies[:DECISIONS])
    assert service.store is not None
    service.store.dispose()
    con = sqlite3.connect(template)
    try:
        con.execute("PRAGMA journal_mode=DELETE")  # one self-contained file to copy
        for table, columns in COLUMNS.items():
            schema = [r[1] for r in con.execute(f"PRAGMA table_info({table})")]
            assert sorted(columns) == sorted(schema), table
        values = {
            (table, column): con.execute(f"SELECT rowid, {column} FROM {table}").fetchall()
            for table, columns in COLUMNS.items()
            for column in columns
        }
    finally:
        con.close()

    work = tmp_path / "work.db"

    def fresh_copy() -> None:
        _remove_sqlite_file(work)
        shutil.copyfile(template, work)

    def verify_work() -> tuple[int, list[Any]]:
        store = DecisionStore(f"sqlite:///{work}")
        try:
            return store.verify(keys=keys)
        finally:
            store.dispose()

    fresh_copy()
    assert (DECISIONS, []) == verify_work()

    rng = random.Random(TAMPER_SEED)
    pairs = sorted(values)
    trials: Counter[str] = Counter()
    caught: Counter[str] = Counter()
    undetected: list[str] = []
    crashed: list[str] = []
    started = time.perf_counter()
    for _ in range(TRIALS):
        table, column = rng.choice(pairs)
        name = f"{table}.{column}"
        trials[name] += 1
        fresh_copy()
        what = _tamper_once(work, table, column, values[(table, column)], rng)
        try:
            _, problems = verify_work()
        except Exception as exc:  # verify must report a problem, not raise
            crashed.append(f"{what} → {exc.__class__.__name__}: {exc}")
            continue
        if problems:
            caught[name] += 1
        else:
            undetected.append(what)
    elapsed = time.perf_counter() - started
    _remove_sqlite_file(work)

    summary = "\n".join(
        f"  {name}: {caught[name]}/{trials[name]} caught" for name in sorted(trials)
    )
    assert set(trials) == {f"{t}.{c}" for t, c in pairs}, "every column is tried"
    assert ([], []) == (undetected, crashed), (
        f"{len(undetected)} undetected and {len(crashed)} crashed of {TRIALS} edits "
        f"(seed {TAMPER_SEED}, {elapsed:.1f} s):\n{summary}\n"
        "undetected:\n  "
        + "\n  ".join(undetected[:40])
        + "\ncrashed:\n  "
        + "\n  ".join(crashed[:20])
    )


def _noncanonical_base64(text: str) -> str:
    """Another spelling of the same bytes: the unused low bits of the last character set."""
    raw = base64.b64decode(text)
    stem, pad = text.rstrip("="), "=" * (len(text) - len(text.rstrip("=")))
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    for char in alphabet:
        other = stem[:-1] + char + pad
        if other != text and base64.b64decode(other, validate=True) == raw:
            return other
    raise AssertionError(f"{text!r} has no other spelling")


def _one_space_to_tab(conn: sa.Connection, decision_id: str) -> None:
    (text,) = _sql(conn, "SELECT response_json FROM decisions WHERE id = :d", d=decision_id)[0]
    assert ', "' in text
    _sql(
        conn,
        "UPDATE decisions SET response_json = :j WHERE id = :d",
        j=text.replace(', "', ',\t"', 1),
        d=decision_id,
    )


def _respell_signature(conn: sa.Connection, _: str) -> None:
    (sig,) = _sql(conn, "SELECT signature FROM log_heads WHERE size = 5")[0]
    _sql(conn, "UPDATE log_heads SET signature = :s WHERE size = 5", s=_noncanonical_base64(sig))


def _run(sql: str) -> Callable[[sa.Connection, str], None]:
    """An edit that is one statement (``:d`` is a decision id)."""

    def edit(conn: sa.Connection, decision_id: str) -> None:
        _sql(conn, sql, **({"d": decision_id} if ":d" in sql else {}))

    return edit


EDITS_ON_PURPOSE: dict[str, Callable[[sa.Connection, str], None]] = {
    "created_at's date-time separator (space) becomes T": _run(
        "UPDATE decisions SET created_at = substr(created_at, 1, 10) || 'T' || "
        "substr(created_at, 12) WHERE id = :d"
    ),
    "created_at's decimal point becomes a comma": _run(
        "UPDATE decisions SET created_at = replace(created_at, '.', ',') WHERE id = :d"
    ),
    "a space between response_json's members becomes a tab": _one_space_to_tab,
    "a signed head's base64 signature is spelt another way": _respell_signature,
    "the chain head's id 1 becomes 2": _run("UPDATE chain_head SET id = 2"),
    "the chain head row is deleted": _run("DELETE FROM chain_head"),
    "a signed head's size 1 becomes -1": _run("UPDATE log_heads SET size = -1 WHERE size = 1"),
}
"""Edits the random run reaches rarely (or, for a deletion, never), each made on purpose. Most
read back as the same value (a date-time, JSON, base64 bytes) but are still changed bytes."""
SQLITE_ONLY = {edit for edit in EDITS_ON_PURPOSE if edit.startswith("created_at")}
"""A PostgreSQL timestamp column holds no text to respell."""


@pytest.mark.parametrize("edit", list(EDITS_ON_PURPOSE))
def test_an_edit_the_random_run_rarely_reaches_is_reported_too(
    request: pytest.FixtureRequest, db_url: str, keys: dict[str, Ed25519PublicKey], edit: str
) -> None:
    """Stored bytes are bound, not only what they parse to; verify reports (never raises on) each edit."""
    if edit in SQLITE_ONLY and not db_url.startswith("sqlite"):
        pytest.skip("a PostgreSQL timestamp column holds no text to respell")
    logged: Logged = request.getfixturevalue("logged")
    with _dba(logged.url) as conn:
        EDITS_ON_PURPOSE[edit](conn, logged.ids[3])
    count, problems = logged.store.verify(keys=keys)
    assert DECISIONS == count
    assert problems, f"verify found nothing after: {edit}"


# --- removing the newest records ------------------------------------------------------------


def _remove_newest(url: str, *, keep: int) -> None:
    """Delete every record after ``keep`` as a careful DBA would: rows, log, heads, chain head."""
    with _dba(url) as conn:
        _sql(
            conn,
            "DELETE FROM decisions WHERE id IN "
            "(SELECT decision_id FROM explanation_records WHERE seq > :k)",
            k=keep,
        )
        _sql(conn, "DELETE FROM explanation_records WHERE seq > :k", k=keep)
        _sql(conn, "DELETE FROM log_heads WHERE size > :k", k=keep)
        for level, idx in _sql(conn, "SELECT level, idx FROM log_nodes"):
            if (idx + 1) << level > keep:  # the node covers a removed leaf
                _sql(conn, "DELETE FROM log_nodes WHERE level = :l AND idx = :i", l=level, i=idx)
        _sql(
            conn,
            "UPDATE chain_head SET seq = :k, record_hash = "
            "(SELECT record_hash FROM explanation_records WHERE seq = :k) WHERE id = 1",
            k=keep,
        )


@pytest.mark.parametrize("refill", [False, True], ids=["removed", "removed-and-refilled"])
def test_removing_the_newest_records_is_caught_by_a_checkpoint_saved_before(
    logged: Logged,
    keys: dict[str, Ed25519PublicKey],
    public_key_file: Path,
    miaopi: Cli,
    bulk_bodies: list[dict[str, Any]],
    tmp_path: Path,
    refill: bool,
) -> None:
    """The last 3 records removed (and, refilled, 3 others decided in their place) contradict the saved checkpoint."""
    saved = tmp_path / "checkpoints.jsonl"
    checkpoint = _save_checkpoint(miaopi, logged.url, saved)
    assert checkpoint == logged.store.checkpoint()
    append_checkpoint_file(saved, checkpoint)  # the file may hold the same head twice
    _remove_newest(logged.url, keep=DECISIONS - 3)
    size = DECISIONS - 3
    if refill:
        _decide_all(logged.service, bulk_bodies[100:103], first=100)
        size = DECISIONS
    # The database alone is consistent again: only the saved checkpoint knows better.
    assert (size, []) == logged.store.verify(keys=keys)
    count, problems = logged.store.verify(keys=keys, checkpoints=read_checkpoints(saved))
    expected = (
        f"saved checkpoint of size {DECISIONS}: the log's first {DECISIONS} records no longer give its root (history rewritten)"
        if refill
        else f"saved checkpoint of size {DECISIONS}, the log now has {size} records (newest records removed)"
    )
    assert (size, [expected, expected]) == (count, [p.message for p in problems])

    verify = ("audit", "verify", "--database-url", logged.url, "--public-key", public_key_file)
    unaware = miaopi(*verify)
    assert 0 == unaware.returncode, unaware.stdout + unaware.stderr
    caught = miaopi(*verify, "--checkpoint", saved)
    assert 1 == caught.returncode, caught.stdout + caught.stderr
    assert f"TAMPERED log: {expected}" in caught.stdout.splitlines()


# --- rewriting history ----------------------------------------------------------------------

Heads = Literal["left-as-signed", "roots-rewritten", "re-signed-with-own-key"]


def _approve_and_rewrite(url: str, *, heads: Heads, own_key: Ed25519PrivateKey) -> tuple[int, str]:
    """Turn the first REJECTED record into APPROVED and recompute everything a DBA can.

    Re-hashes the record and every later one (re-linking prev_hash), the chain head, each
    stored response and outcome, and every log node with ``explanations.merkle``; then the
    signed heads are left, given the new roots, or signed again with a key the DBA made.
    Returns the record's seq and decision id.
    """
    with _dba(url) as conn:
        rows = _sql(
            conn,
            "SELECT r.seq, r.decision_id, r.record_json, r.record_hash, d.idempotency_key, "
            "d.request_sha256 FROM explanation_records r JOIN decisions d ON d.id = r.decision_id "
            "ORDER BY r.seq",
        )
        target = next(r for r in rows if json.loads(r.record_json)["outcome"] == "REJECTED")
        prev = GENESIS
        leaves = []
        for row in rows:
            if row.seq >= target.seq:
                body = json.loads(row.record_json)
                assert text_hash(canonical_json(body)) == row.record_hash  # same canonical form
                if row.seq == target.seq:
                    body["outcome"] = "APPROVED"
                body["prev_hash"] = prev
                text = canonical_json(body)
                record = parse_record({**body, "record_hash": text_hash(text)})
                _sql(
                    conn,
                    "UPDATE explanation_records SET record_json = :j, prev_hash = :p, "
                    "record_hash = :h WHERE seq = :s",
                    j=text, p=prev, h=record.record_hash, s=row.seq,
                )  # fmt: skip
                _sql(
                    conn,
                    "UPDATE decisions SET outcome = :o, response_json = :r WHERE id = :d",
                    o=record.outcome.value,
                    r=json.dumps(response_of(record), ensure_ascii=False),
                    d=row.decision_id,
                )
                record_hash = record.record_hash
            else:
                record_hash = row.record_hash
            prev = record_hash
            leaves.append(
                LeafEntry.of(
                    seq=row.seq,
                    decision_id=row.decision_id,
                    record_hash=record_hash,
                    idempotency_key=row.idempotency_key,
                    request_sha256=row.request_sha256,
                ).leaf_hash()
            )
        _sql(
            conn,
            "UPDATE chain_head SET seq = :s, record_hash = :h WHERE id = 1",
            s=len(rows),
            h=prev,
        )
        tree = merkle.MemoryNodes()
        for leaf in leaves:
            tree.append(leaf)
        for level, idx in _sql(conn, "SELECT level, idx FROM log_nodes"):
            _sql(
                conn,
                "UPDATE log_nodes SET hash = :h WHERE level = :l AND idx = :i",
                h=tree.get(level, idx).hex(), l=level, i=idx,
            )  # fmt: skip
        for (size,) in _sql(conn, "SELECT size FROM log_heads WHERE size >= :s", s=target.seq):
            root = merkle.root_from(size, tree.get)
            if heads == "roots-rewritten":
                _sql(conn, "UPDATE log_heads SET root = :r WHERE size = :s", r=root.hex(), s=size)
            elif heads == "re-signed-with-own-key":
                forged = Checkpoint.sign(
                    origin="miaopi", size=size, root=root, key=own_key, time=dt.datetime.now(dt.UTC)
                )
                _sql(
                    conn,
                    "UPDATE log_heads SET root = :root, time = :time, key_id = :key_id, "
                    "signature = :signature WHERE size = :size",
                    **forged.to_row(),
                )
    return target.seq, target.decision_id


@pytest.mark.parametrize("heads", ["left-as-signed", "roots-rewritten", "re-signed-with-own-key"])
def test_a_rejection_rewritten_as_an_approval_is_caught(
    logged: Logged,
    keys: dict[str, Ed25519PublicKey],
    public_key_file: Path,
    miaopi: Cli,
    tmp_path: Path,
    heads: Heads,
) -> None:
    """Re-hashing, re-linking and rebuilding the tree does not help a DBA without the signing key."""
    saved = tmp_path / "checkpoints.jsonl"
    _save_checkpoint(miaopi, logged.url, saved)
    own_key = Ed25519PrivateKey.generate()
    seq, decision_id = _approve_and_rewrite(logged.url, heads=heads, own_key=own_key)
    stored = logged.store.get_decision(decision_id)
    assert stored is not None and "APPROVED" == stored.outcome  # the forgery took effect
    assert "APPROVED" == json.loads(stored.response_json)["outcome"]
    rewritten = list(range(seq, DECISIONS + 1))  # every head from the edited record on
    own_id = public_key_id(own_key.public_key())

    unsigned_count, unsigned = logged.store.verify()
    _, signed = logged.store.verify(keys=keys)
    if heads == "left-as-signed":
        assert [
            f"signed head of size {s}: root differs from the rows (log rewritten)"
            for s in rewritten
        ] == [p.message for p in unsigned]
    else:  # rows, chain, tree and roots agree: only signatures can tell
        assert (DECISIONS, []) == (unsigned_count, unsigned)
        assert [
            f"signed head: checkpoint signed by unknown key {own_id}"
            if heads == "re-signed-with-own-key"
            else f"signed head: checkpoint of size {s}: signature does not verify"
            for s in rewritten
        ] == [p.message for p in signed]
    assert signed, "detected with the service's public key alone"

    # Against the checkpoint saved before, even an auditor who also trusted the DBA's key.
    trusting = {**keys, own_id: own_key.public_key()}
    if heads == "re-signed-with-own-key":
        assert (DECISIONS, []) == logged.store.verify(keys=trusting)
    _, against = logged.store.verify(keys=trusting, checkpoints=read_checkpoints(saved))
    history = f"saved checkpoint of size {DECISIONS}: the log's first {DECISIONS} records no longer give its root (history rewritten)"
    assert history in [p.message for p in against]

    result = miaopi(
        "audit", "verify", "--database-url", logged.url,
        "--public-key", public_key_file, "--checkpoint", saved,
    )  # fmt: skip
    assert 1 == result.returncode, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert f"TAMPERED log: {history}" in lines
    if heads == "re-signed-with-own-key":
        assert f"TAMPERED log: signed head: checkpoint signed by unknown key {own_id}" in lines


# --- swapped idempotency keys ---------------------------------------------------------------


@pytest.mark.parametrize(
    "columns",
    [("idempotency_key",), ("idempotency_key", "request_sha256")],
    ids=["keys", "keys-and-request-hashes"],
)
def test_swapping_two_decisions_idempotency_keys_is_caught(
    logged: Logged,
    keys: dict[str, Ed25519PublicKey],
    public_key_file: Path,
    miaopi: Cli,
    columns: tuple[str, ...],
) -> None:
    """A retry served another applicant's decision: both leaves change, both records are named."""
    a, b = 4, 17
    with _dba(logged.url) as conn:
        rows = {
            seq: _sql(
                conn,
                "SELECT d.id, d.idempotency_key, d.request_sha256 FROM decisions d "
                "JOIN explanation_records r ON r.decision_id = d.id WHERE r.seq = :s",
                s=seq,
            )[0]
            for seq in (a, b)
        }
        _sql(
            conn,
            "UPDATE decisions SET idempotency_key = 'being-swapped' WHERE id = :d",
            d=rows[a].id,
        )
        for mine, theirs in ((b, a), (a, b)):
            for column in columns:
                _sql(
                    conn,
                    f"UPDATE decisions SET {column} = :v WHERE id = :d",
                    v=getattr(rows[theirs], column),
                    d=rows[mine].id,
                )
    found = logged.store.find_by_key(rows[a].idempotency_key)
    assert found is not None and rows[b].id == found.id  # the swap took effect

    _, problems = logged.store.verify(keys=keys)
    named = [(p.seq, p.message) for p in problems if p.seq is not None]
    assert [
        (
            seq,
            f"log node (level 0, index {seq - 1}) altered (the record, its idempotency key or request hash changed)",
        )
        for seq in (a, b)
    ] == named
    assert [
        f"signed head of size {s}: root differs from the rows (log rewritten)"
        for s in range(a, DECISIONS + 1)
    ] == [p.message for p in problems if p.message.startswith("signed head")]
    result = miaopi(
        "audit", "verify", "--database-url", logged.url, "--public-key", public_key_file
    )
    assert 1 == result.returncode, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert {
        f"TAMPERED seq={a} decision={rows[a].id}",
        f"TAMPERED seq={b} decision={rows[b].id}",
    } == {line.split(":")[0] for line in lines if line.startswith("TAMPERED seq=")}
    assert (
        f"TAMPERED log: signed head of size {DECISIONS}: root differs from the rows (log rewritten)"
        in lines
    )


# --- receipts -------------------------------------------------------------------------------


def _flip_bit(hex_text: str, bit: int) -> str:
    raw = bytearray(bytes.fromhex(hex_text))
    raw[bit // 8 % len(raw)] ^= 1 << (bit % 8)
    return raw.hex()


def _corruptions(receipt: Receipt, rng: random.Random) -> dict[str, dict[str, Any]]:
    """Every single corruption of a receipt, by name, as receipt JSON."""
    original = receipt.model_dump(mode="json")
    proof: list[str] = original["inclusion_proof"]

    def changed(edit: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
        data: dict[str, Any] = copy.deepcopy(original)
        edit(data)
        return data

    def set_in(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
        *parents, last = path.split(".")

        def edit(data: dict[str, Any]) -> None:
            for part in parents:
                data = data[part]
            data[last] = value

        return edit

    leaf, cp = original["leaf"], original["checkpoint"]
    digest = leaf["record_hash"].removeprefix("sha256:")
    sig = bytearray(base64.b64decode(cp["signature"]))
    sig[rng.randrange(len(sig))] ^= 1 << rng.randrange(8)
    out = {
        "leaf index + 1": changed(set_in("leaf_index", original["leaf_index"] + 1)),
        "leaf index - 1": changed(set_in("leaf_index", original["leaf_index"] - 1)),
        "leaf seq + 1": changed(set_in("leaf.seq", leaf["seq"] + 1)),
        "checkpoint size + 1": changed(set_in("checkpoint.size", cp["size"] + 1)),
        "checkpoint size - 1": changed(set_in("checkpoint.size", cp["size"] - 1)),
        "root bit flipped": changed(
            set_in("checkpoint.root", _flip_bit(cp["root"], rng.randrange(256)))
        ),
        "signature bit flipped": changed(
            set_in("checkpoint.signature", base64.b64encode(bytes(sig)).decode("ascii"))
        ),
        "checkpoint time changed": changed(
            set_in("checkpoint.time", cp["time"].replace("+00:00", "+00:01"))
        ),
        "checkpoint origin changed": changed(set_in("checkpoint.origin", "miaopi2")),
        "record hash bit flipped": changed(
            set_in("leaf.record_hash", "sha256:" + _flip_bit(digest, rng.randrange(256)))
        ),
        "idempotency key hash bit flipped": changed(
            set_in(
                "leaf.idempotency_key_sha256",
                "sha256:" + _flip_bit(leaf["idempotency_key_sha256"].removeprefix("sha256:"), 3),
            )
        ),
        "request hash bit flipped": changed(
            set_in(
                "leaf.request_sha256",
                "sha256:" + _flip_bit(leaf["request_sha256"].removeprefix("sha256:"), 5),
            )
        ),
        "decision id changed": changed(set_in("leaf.decision_id", str(uuid.UUID(int=7)))),
        "proof element appended": changed(
            set_in("inclusion_proof", [*proof, rng.randbytes(32).hex()])
        ),
        "proof element prepended": changed(
            set_in("inclusion_proof", [rng.randbytes(32).hex(), *proof])
        ),
        "proof element repeated": changed(set_in("inclusion_proof", [*proof, proof[-1]])),
        "proof elements reordered": changed(set_in("inclusion_proof", [*proof[1:], proof[0]])),
    }
    for i in range(len(proof)):
        flipped = [*proof]
        flipped[i] = _flip_bit(proof[i], rng.randrange(256))
        out[f"proof element {i} bit flipped"] = changed(set_in("inclusion_proof", flipped))
        out[f"proof element {i} removed"] = changed(
            set_in("inclusion_proof", proof[:i] + proof[i + 1 :])
        )
    return out


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_a_receipt_verifies_and_every_single_corruption_of_it_is_rejected(
    logged: Logged,
    keys: dict[str, Ed25519PublicKey],
    public_key_file: Path,
    miaopi_bin: Path,
    repo_root: Path,
    tmp_path: Path,
) -> None:
    """verify_receipt and `miaopi receipt verify` accept the receipt as issued and reject each corruption."""
    receipts = {d: logged.store.receipt(d) for d in logged.ids}
    decision_id, receipt = max(
        ((d, r) for d, r in receipts.items() if r is not None),
        key=lambda dr: len(dr[1].inclusion_proof),
    )
    assert len(receipt.inclusion_proof) >= 4 and receipt.leaf_index >= 1
    assert [] == verify_receipt(receipt, keys)
    corruptions = _corruptions(receipt, random.Random(TAMPER_SEED))
    in_process = {
        name: verify_receipt(Receipt.model_validate(data), keys)
        for name, data in corruptions.items()
    }
    assert [] == [name for name, problems in in_process.items() if not problems]

    record = logged.store.get_any_record(decision_id)
    other = logged.store.get_any_record(next(d for d in logged.ids if d != decision_id))
    assert record is not None and other is not None
    body = record.model_dump(mode="json")
    flipped = "REJECTED" if body["outcome"] == "APPROVED" else "APPROVED"
    as_issued = tmp_path / "receipt.json"
    as_issued.write_text(receipt.model_dump_json(), encoding="utf-8")
    records = {
        "its record": body,
        "its record, wrapped as served": {"record": body},
        "its record with the outcome edited": {**body, "outcome": flipped},
        "another decision's record": other.model_dump(mode="json"),
    }
    runs: dict[str, list[str]] = {"the receipt as issued": [str(as_issued)]}
    for i, (name, data) in enumerate(records.items()):
        path = tmp_path / f"record-{i}.json"
        path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
        runs[f"with {name}"] = [str(as_issued), "--record", str(path)]
    for i, (name, data) in enumerate(corruptions.items()):
        path = tmp_path / f"corrupted-{i:02d}.json"
        path.write_text(json.dumps(data), encoding="utf-8")
        runs[name] = [str(path)]
    key_option = ["--public-key", str(public_key_file)]

    # Every run through the command in process; the first five also as real processes.
    runner = CliRunner()
    invoked = {
        name: runner.invoke(cli_app, ["receipt", "verify", *args, *key_option])
        for name, args in runs.items()
    }
    procs = {
        name: subprocess.Popen(
            [str(miaopi_bin), "receipt", "verify", *runs[name], *key_option],
            cwd=repo_root,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name in (*list(runs)[:5], "signature bit flipped")
    }
    processes = {
        name: (proc.communicate(timeout=300), proc.returncode) for name, proc in procs.items()
    }

    accepted = {"the receipt as issued", "with its record", "with its record, wrapped as served"}
    expected = {name: 0 if name in accepted else 1 for name in runs}
    assert expected == {name: r.exit_code for name, r in invoked.items()}, {
        name: r.output for name, r in invoked.items() if r.exit_code != expected[name]
    }
    assert {name: expected[name] for name in procs} == {
        name: code for name, (_, code) in processes.items()
    }, processes
    assert all(
        r.stdout.startswith("INVALID: ") for name, r in invoked.items() if name not in accepted
    )
    stdout = {name: out for name, ((out, _), _) in processes.items()}
    assert "receipt valid" in stdout["the receipt as issued"]
    assert (
        "INVALID: the record does not hash to the receipt's record_hash"
        in stdout["with its record with the outcome edited"].splitlines()
    )
    assert (
        "INVALID: the record is not the decision the receipt names"
        in stdout["with another decision's record"].splitlines()
    )
