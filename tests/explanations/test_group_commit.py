"""Group commit: records encoded outside the chain's lock, several decisions per transaction.

The promises do not change: each acknowledged decision is committed before it is answered,
the chain and the log verify, a retried key gets the same decision, one failing append does
not take the others with it.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import given, settings
from hypothesis import strategies as st
from support import signing_key_path

from api.secrets import load_signing_key
from api.service import DecisionRequest, DecisionService, request_sha256
from explanations import DecisionStore, ExplanationRecordV1, IdempotencyConflict, Unsealed
from explanations.log import HEADS, public_key_id, verify_receipt
from explanations.record import (
    canonical_json,
    canonical_json_bytes_of_dump,
    response_of,
    text_hash,
)


def test_a_record_sealed_from_its_encoded_parts_is_the_record_sealed_whole(
    decide: Callable[[str], ExplanationRecordV1], demo_samples: dict
) -> None:
    """For every shipped sample: the same text, hash and response as sealing the whole record."""
    for name in demo_samples:
        record = decide(name)
        for seq, prev in ((1, "sha256:" + "0" * 64), (12345, record.record_hash or "x")):
            whole, whole_body = record.model_copy(update={"seq": seq, "prev_hash": prev}).sealed()
            parted, body, response = Unsealed(record).seal(seq, prev)
            assert (whole_body, whole.record_hash) == (body, parted.record_hash), name
            assert body == canonical_json(whole.model_dump(mode="json", exclude={"record_hash"}))
            assert text_hash(body) == parted.record_hash
            assert response_of(whole) == response, name
            assert list(response_of(whole)) == list(response), name  # same key order


def test_the_response_read_off_the_encoded_record_is_the_one_the_record_implies(
    make_service: Callable[[str | None], DecisionService], bulk_bodies: list[dict[str, Any]]
) -> None:
    """Over 300 applications of every outcome: the response an unsealed record carries is
    ``response_of`` the sealed record, key for key and in the same order."""
    service = make_service(None)
    outcomes = set()
    for body in bulk_bodies[:300]:
        _, record = service.decide_unstored(DecisionRequest.model_validate(body))
        sealed, _, response = Unsealed(record).seal(3, "sha256:" + "2" * 64)
        assert response_of(sealed) == response
        assert list(response_of(sealed)) == list(response)
        assert list(response_of(sealed)["ruleset"]) == list(response["ruleset"])
        outcomes.add(response["outcome"])
    assert {"APPROVED", "REJECTED", "REFERRED"} <= outcomes


def _requests(bodies: list[dict[str, Any]]) -> list[DecisionRequest]:
    return [DecisionRequest.model_validate(b) for b in bodies]


def _unsealed(
    service: DecisionService, bodies: list[dict[str, Any]], prefix: str
) -> list[tuple[DecisionRequest, Unsealed]]:
    """Each application decided and encoded, unstored, as decision ``<prefix>-<i>``."""
    made = []
    for i, request in enumerate(_requests(bodies)):
        decided = service.decide_prepared(service.prepare(request))
        record = service.build_record(decided, decision_id=f"{prefix}-{i}", seq=0, prev_hash="")
        made.append((request, Unsealed(record)))
    return made


def test_concurrent_appends_share_transactions_and_every_one_is_stored_and_provable(
    db_url: str,
    make_service: Callable[[str | None], DecisionService],
    bulk_bodies: list[dict[str, Any]],
) -> None:
    """16 threads × 10 decisions released at once: 160 records, seq 1…160, chain and log
    intact, fewer signed heads than records (decisions went in groups), every receipt
    proves its record against its signed head."""
    service = make_service(db_url)
    store = service.store
    assert store is not None
    requests = _requests(bulk_bodies[:160])
    start = threading.Barrier(16)
    results: dict[int, Any] = {}
    errors: list[BaseException] = []

    def worker(t: int) -> None:
        try:
            start.wait()
            for i in range(10):
                request = requests[t * 10 + i]
                results[t * 10 + i] = service.decide(
                    request,
                    idempotency_key=f"g-{t}-{i}",
                    body_sha256=request_sha256(request.model_dump(mode="json")),
                )
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(16)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=300)
    assert [] == errors
    count, problems = store.verify()
    assert (160, []) == (count, problems)
    with store.engine.connect() as conn:
        heads = conn.execute(sa.select(sa.func.count()).select_from(HEADS)).scalar_one()
        seqs = conn.execute(sa.text("SELECT seq FROM explanation_records ORDER BY seq")).all()
    assert [s for (s,) in seqs] == list(range(1, 161))
    assert heads < 160, "every decision went in a transaction of its own"
    key = load_signing_key(signing_key_path()).public_key()
    keys = {public_key_id(key): key}
    for stored in results.values():
        assert stored.replayed is False
        assert stored.receipt is not None
        assert [] == verify_receipt(stored.receipt, keys)
        assert stored.receipt.leaf.record_hash == stored.response["record_hash"]


def test_one_key_posted_by_many_threads_at_once_is_decided_once(
    db_url: str,
    make_service: Callable[[str | None], DecisionService],
    bulk_bodies: list[dict[str, Any]],
) -> None:
    """12 threads post the same key and body at once (they may land in one group): one
    decision, every answer the same, all but one marked replayed; a 13th with another body
    under that key is refused."""
    service = make_service(db_url)
    request = _requests(bulk_bodies[:1])[0]
    digest = request_sha256(request.model_dump(mode="json"))
    key = f"same-{uuid.uuid4().hex}"
    start = threading.Barrier(12)
    answers: list[Any] = []
    lock = threading.Lock()

    def worker() -> None:
        start.wait()
        stored = service.decide(request, idempotency_key=key, body_sha256=digest)
        with lock:
            answers.append(stored)

    threads = [threading.Thread(target=worker) for _ in range(12)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=120)
    assert 12 == len(answers)
    assert 1 == len({a.decision_id for a in answers})
    assert 1 == len({canonical_json(a.response) for a in answers})
    assert 11 == sum(a.replayed for a in answers)
    other = _requests(bulk_bodies[1:2])[0]
    with pytest.raises(IdempotencyConflict):
        service.decide(
            other, idempotency_key=key, body_sha256=request_sha256(other.model_dump(mode="json"))
        )
    assert service.store is not None
    assert (1, []) == service.store.verify()


def test_an_append_that_fails_takes_no_other_with_it(
    db_url: str,
    make_service: Callable[[str | None], DecisionService],
    bulk_bodies: list[dict[str, Any]],
) -> None:
    """8 threads append at once; the hook that runs inside the transaction fails for one of
    them: that one raises and is not stored, the other 7 are stored and the chain verifies."""
    service = make_service(db_url)
    store = service.store
    assert store is not None
    unsealed = _unsealed(service, bulk_bodies[:8], "d")

    def hook(conn: sa.Connection, record: Any) -> None:
        if record.decision_id == "d-3":
            raise RuntimeError("the review case for d-3 cannot be opened")

    start = threading.Barrier(8)
    outcome: dict[int, Any] = {}

    def worker(i: int) -> None:
        request, record = unsealed[i]
        start.wait()
        try:
            outcome[i] = store.append(
                idempotency_key=f"f-{i}",
                request_sha256=request_sha256(request.model_dump(mode="json")),
                record=record,
                on_stored=hook,
            )
        except RuntimeError as exc:
            outcome[i] = exc

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=120)
    assert isinstance(outcome[3], RuntimeError)
    assert all(not isinstance(outcome[i], Exception) for i in range(8) if i != 3)
    assert store.get_decision("d-3") is None
    assert {f"d-{i}" for i in range(8) if i != 3} == {
        outcome[i].decision_id for i in range(8) if i != 3
    }
    assert (7, []) == store.verify()


def _wait_for(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 30
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.005)


def test_appends_queued_while_a_group_waits_for_the_chains_lock_join_that_group(
    db_url: str,
    make_service: Callable[[str | None], DecisionService],
    bulk_bodies: list[dict[str, Any]],
) -> None:
    """Another writer (another worker process, another server) holds the chain. One append
    takes its group and waits for the lock; 7 more arrive meanwhile. Once the lock is free
    they go in that same transaction (one signed head over 8 leaves), not in a second one
    behind it: with two processes taking turns, groups grow instead of the wait."""
    service = make_service(db_url)
    store = service.store
    assert store is not None
    unsealed = _unsealed(service, bulk_bodies[:8], "q")
    outcome: dict[int, Any] = {}

    def worker(i: int) -> None:
        request, record = unsealed[i]
        digest = request_sha256(request.model_dump(mode="json"))
        outcome[i] = store.append(idempotency_key=f"q-{i}", request_sha256=digest, record=record)

    other = sa.create_engine(db_url, poolclass=sa.pool.NullPool)
    with other.connect() as holder:
        if store.is_sqlite:
            holder.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            holder.exec_driver_sql("BEGIN")
            holder.exec_driver_sql("SELECT seq FROM chain_head WHERE id = 1 FOR UPDATE")
        threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
        threads[0].start()
        # The first is the leader once it has taken its group (the queue is empty again).
        _wait_for(lambda: store._leader.locked() and not store._queue, "the first group")
        for th in threads[1:]:
            th.start()
        _wait_for(lambda: len(store._queue) == 7, "seven more appends queued")
        assert outcome == {}, "an append was answered while another writer held the chain"
        holder.exec_driver_sql("ROLLBACK")
    other.dispose()
    for th in threads:
        th.join(timeout=120)
    assert {f"q-{i}" for i in range(8)} == {outcome[i].decision_id for i in range(8)}
    with store.engine.connect() as conn:
        sizes = conn.execute(sa.select(HEADS.c.size)).scalars().all()
    assert [8] == sizes, "the appends that queued meanwhile went in a transaction of their own"
    assert (8, []) == store.verify()


@pytest.mark.postgres
def test_a_writer_connection_that_died_between_groups_costs_no_append(
    postgres_url: str,
    make_service: Callable[[str | None], DecisionService],
    bulk_bodies: list[dict[str, Any]],
) -> None:
    """The store keeps its writing connection between groups. When PostgreSQL ends that
    session (a restart, an idle timeout, an administrator), the next append is still stored
    and answered, on a new connection, and the chain verifies."""
    service = make_service(postgres_url)
    store = service.store
    assert store is not None
    first, second = _requests(bulk_bodies[:2])
    service.decide(
        first, idempotency_key="w-1", body_sha256=request_sha256(first.model_dump(mode="json"))
    )
    writer = store._writer
    assert writer is not None
    pid = writer.connection.driver_connection.info.backend_pid  # type: ignore[union-attr]
    killer = sa.create_engine(postgres_url)
    with killer.begin() as conn:
        assert conn.exec_driver_sql(f"SELECT pg_terminate_backend({int(pid)})").scalar() is True
    killer.dispose()
    stored = service.decide(
        second, idempotency_key="w-2", body_sha256=request_sha256(second.model_dump(mode="json"))
    )
    assert not stored.replayed and store.get_decision(stored.decision_id) is not None
    assert (2, []) == store.verify()


def test_a_second_store_on_the_same_sqlite_file_queues_behind_the_first(
    tmp_path: Path,
    make_service: Callable[[str | None], DecisionService],
    bulk_bodies: list[dict[str, Any]],
) -> None:
    """Two stores (as two worker processes would have) append to one SQLite file from 4
    threads each: one chain, 80 records, intact."""
    url = f"sqlite:///{tmp_path}/shared.db"
    first, second = make_service(url), make_service(url)
    requests = _requests(bulk_bodies[:80])
    errors: list[BaseException] = []

    def worker(service: DecisionService, offset: int) -> None:
        try:
            for i in range(10):
                request = requests[offset + i]
                service.decide(
                    request,
                    idempotency_key=f"s-{offset + i}",
                    body_sha256=request_sha256(request.model_dump(mode="json")),
                )
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [
        threading.Thread(target=worker, args=(first if t % 2 else second, t * 10)) for t in range(8)
    ]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=300)
    assert [] == errors
    store = DecisionStore(url, signing_key=load_signing_key(signing_key_path()))
    try:
        assert (80, []) == store.verify()
    finally:
        store.dispose()


_JSON_MODE = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(), inner, max_size=5),
    max_leaves=30,
)


@settings(max_examples=1500, deadline=None)
@given(_JSON_MODE)
def test_the_fast_canonical_encoding_is_the_canonical_encoding(data: object) -> None:
    """For any data pydantic's JSON mode can give (finite floats, any ints, any text, nested),
    the orjson path writes exactly ``canonical_json``'s text: what ``verify_receipt`` and
    external verifiers recompute."""
    assert canonical_json(data) == canonical_json_bytes_of_dump(data).decode()


def test_the_fast_canonical_encoding_spells_every_float_exponent_as_json_does() -> None:
    """Every decimal exponent a double has, with several mantissas and both signs, alone and
    as the last item of a list and an object: orjson's shortcut is taken only where its
    spelling is json's (``0.00001`` and ``1.5e-7`` are the forms where they part)."""
    floats = [
        sign * float(f"{mantissa}e{exponent}")
        for exponent in range(-323, 309)
        for mantissa in ("1", "1.5", "2.5", "5", "7.1", "9.999999", "1.2345678901234567")
        for sign in (1, -1)
        if abs(float(f"{mantissa}e{exponent}")) != float("inf")
    ]
    assert len(floats) > 8000
    for x in floats:
        for data in (
            x,
            [x],
            {"k": x},
            [x, "1e-7"],
            {"a": [x], "b": "e-1"},
            {"a": "re-entry 1e-", "b": "e-", "z": x},  # an ``e-`` before the float's
        ):
            assert canonical_json(data) == canonical_json_bytes_of_dump(data).decode(), repr(x)
