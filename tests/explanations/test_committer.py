"""The commit process: the workers of a server send their records to one writer.

A ``CommitServer`` on a real Unix socket and a real database (here in a thread; ``miaopi
serve`` runs it as a process of its own, which the server tests drive), and a worker's
store that sends through ``CommitProcessClient``. What it writes is what the worker would
have written itself, byte for byte; when it is gone, the worker writes for itself and the
idempotency key keeps each decision single.
"""

from __future__ import annotations

import asyncio
import dataclasses
import socket
import struct
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import sqlalchemy as sa
from support import signing_key_path

from api.secrets import load_signing_key
from api.service import DecisionRequest, DecisionService, request_sha256
from engine import Outcome
from explanations import DecisionStore, IdempotencyConflict, StoredDecision, Unsealed
from explanations.committer import CommitProcessClient, CommitServer
from explanations.log import HEADS, public_key_id, verify_receipt
from explanations.record import Encoded
from explanations.review import CASES, ReviewStore


class _Running:
    def __init__(self, server: CommitServer, thread: threading.Thread) -> None:
        self.server, self.thread = server, thread

    def stop(self) -> None:
        self.server.stop()
        self.thread.join(timeout=30)
        assert not self.thread.is_alive()


@pytest.fixture
def commit_server(db_url: str, tmp_path: Path) -> Iterator[Callable[..., _Running]]:
    """Start a commit server (its own store on ``db_url``) in a thread; stopped at the end."""
    started: list[_Running] = []
    stores: list[DecisionStore] = []

    def start(server_class: type[CommitServer] = CommitServer) -> _Running:
        store = DecisionStore(db_url, signing_key=load_signing_key(signing_key_path()))
        store.create_schema()
        stores.append(store)
        server = server_class(store, str(tmp_path / f"commit-{len(started)}.sock"))
        thread = threading.Thread(target=server.serve, daemon=True)
        thread.start()
        running = _Running(server, thread)
        started.append(running)
        return running

    yield start
    for running in started:
        if running.thread.is_alive():
            running.stop()
    for store in stores:
        store.dispose()


def _worker(
    make_service: Callable[[str | None], DecisionService], db_url: str, socket_path: str
) -> tuple[DecisionService, DecisionStore]:
    """A worker's service whose store sends its decisions to the commit server."""
    service = make_service(db_url)
    store = service.store
    assert store is not None
    reviews = ReviewStore(store, clock=service.clock)
    service.on_stored = reviews.referral_hook
    store.commit_through(
        CommitProcessClient(socket_path), hook=reviews.referral_hook, case_of=reviews.referral_case
    )
    return service, store


async def _decide_all(
    service: DecisionService, bodies: list[dict[str, Any]], prefix: str
) -> list[StoredDecision]:
    requests = [DecisionRequest.model_validate(b) for b in bodies]
    return await asyncio.gather(
        *(
            service.decide_async(
                r,
                idempotency_key=f"{prefix}-{i}",
                body_sha256=request_sha256(r.model_dump(mode="json")),
            )
            for i, r in enumerate(requests)
        )
    )


def test_two_workers_decisions_are_written_by_the_commit_process_as_they_would_write_them(
    db_url: str,
    commit_server: Callable[..., _Running],
    make_service: Callable[[str | None], DecisionService],
    bulk_bodies: list[dict[str, Any]],
) -> None:
    """Two workers (two stores, two event loops) send 60 decisions each at once: 120
    records, one chain that verifies, grouped (fewer signed heads than records), each stored
    text exactly ``Unsealed``'s at its place, every receipt proving its record, a referral
    case for each REFERRED decision, and neither worker wrote a group of its own."""
    running = commit_server()
    workers = [_worker(make_service, db_url, running.server.path) for _ in range(2)]
    answers: dict[int, list[StoredDecision]] = {}

    def run(n: int) -> None:
        answers[n] = asyncio.run(
            _decide_all(workers[n][0], bulk_bodies[n * 60 : n * 60 + 60], f"w{n}")
        )

    threads = [threading.Thread(target=run, args=(n,)) for n in range(2)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=120)
    stored = answers[0] + answers[1]
    assert 120 == len({s.decision_id for s in stored})
    assert not any(s.replayed for s in stored)
    for _, store in workers:
        assert store._writer is None, "a worker wrote a group itself"
    store = workers[0][1]
    assert (120, []) == store.verify()
    key = load_signing_key(signing_key_path()).public_key()
    keys = {public_key_id(key): key}
    for s in stored:
        assert s.receipt is not None and [] == verify_receipt(s.receipt, keys)
        assert s.receipt.leaf.record_hash == s.response["record_hash"]
    with store.engine.connect() as conn:
        heads = conn.execute(sa.select(sa.func.count()).select_from(HEADS)).scalar_one()
        cases = conn.execute(sa.select(CASES.c.decision_id, CASES.c.kind)).all()
        rows = conn.execute(
            sa.text("SELECT decision_id, seq, prev_hash, record_json FROM explanation_records")
        ).all()
    assert heads < 120
    referred = {s.decision_id for s in stored if s.response["outcome"] == Outcome.REFERRED}
    assert referred, "the sample has no referral to open a case for"
    assert referred == {d for d, kind in cases if kind == "referral"}
    # The text the commit process chained is the one the worker's own seal gives.
    for decision_id, seq, prev_hash, text in rows[:20]:
        record = store.get_record(decision_id)
        assert record is not None
        _, body, _ = Unsealed(record).seal(seq, prev_hash)
        assert body == text


def test_a_retried_key_gets_its_decision_and_another_body_is_refused_through_the_process(
    db_url: str,
    commit_server: Callable[..., _Running],
    make_service: Callable[[str | None], DecisionService],
    bulk_bodies: list[dict[str, Any]],
) -> None:
    running = commit_server()
    service, store = _worker(make_service, db_url, running.server.path)
    first, other = (DecisionRequest.model_validate(b) for b in bulk_bodies[:2])

    async def go() -> tuple[StoredDecision, StoredDecision]:
        digest = request_sha256(first.model_dump(mode="json"))
        a = await service.decide_async(first, idempotency_key="r-1", body_sha256=digest)
        b = await service.decide_async(first, idempotency_key="r-1", body_sha256=digest)
        with pytest.raises(IdempotencyConflict):
            await service.decide_async(
                other,
                idempotency_key="r-1",
                body_sha256=request_sha256(other.model_dump(mode="json")),
            )
        return a, b

    a, b = asyncio.run(go())
    assert (a.decision_id, a.response) == (b.decision_id, b.response)
    assert b.replayed and not a.replayed
    assert (1, []) == store.verify()
    assert store._writer is None


class _CommitsThenHangsUp(CommitServer):
    """Writes each group, then drops the connection before answering (it died)."""

    def _send(self, peer: Any, answer: dict[str, Any]) -> None:
        self._drop(peer)


def test_a_decision_committed_by_a_process_that_died_before_answering_is_answered_once(
    db_url: str,
    commit_server: Callable[..., _Running],
    make_service: Callable[[str | None], DecisionService],
    bulk_bodies: list[dict[str, Any]],
) -> None:
    """The commit process writes a group of the 10 decisions sent and is gone before it
    answers: the worker writes each itself. What the process committed is found under its
    key and answered (marked replayed); what it never read is written now: 10 records."""
    running = commit_server(_CommitsThenHangsUp)
    service, store = _worker(make_service, db_url, running.server.path)
    stored = asyncio.run(_decide_all(service, bulk_bodies[:10], "h"))
    assert any(s.replayed for s in stored), "the process committed none of them"
    assert (10, []) == store.verify()
    with store.engine.connect() as conn:
        ids = set(conn.execute(sa.text("SELECT id FROM decisions")).scalars())
    assert ids == {s.decision_id for s in stored}


def test_without_a_commit_process_the_worker_writes_its_own_decisions(
    db_url: str,
    commit_server: Callable[..., _Running],
    make_service: Callable[[str | None], DecisionService],
    bulk_bodies: list[dict[str, Any]],
) -> None:
    """The process stops (or never was): the next decisions are written by the worker, the
    chain goes on from where the process left it."""
    running = commit_server()
    service, store = _worker(make_service, db_url, running.server.path)
    before = asyncio.run(_decide_all(service, bulk_bodies[:5], "a"))
    assert store._writer is None
    running.stop()
    after = asyncio.run(_decide_all(service, bulk_bodies[5:15], "b"))
    assert store._writer is not None, "the worker did not write for itself"
    assert not any(s.replayed for s in before + after)
    assert (15, []) == store.verify()


def _request_frame(number: int, key: str, body: dict[str, Any], record: Encoded) -> bytes:
    """One request as ``CommitProcessClient.append`` frames it."""
    message = record.to_wire()
    message["i"], message["k"], message["s"] = number, key, request_sha256(body)
    message["n"] = [len(part) for part in record.parts]
    header = orjson.dumps(message)
    size = 4 + len(header) + sum(message["n"])
    return b"".join(
        (struct.pack("!I", size), struct.pack("!I", len(header)), header, *record.parts)
    )


def test_a_record_that_is_not_utf8_is_refused_alone_and_its_group_is_written(
    db_url: str,
    commit_server: Callable[..., _Running],
    make_service: Callable[[str | None], DecisionService],
    bulk_bodies: list[dict[str, Any]],
) -> None:
    """The parts travel as bytes and are decoded only when sealed, inside the group's
    transaction. One whose bytes are not UTF-8, sent in one write with two good ones, is
    answered ``x`` (the worker then writes it itself) and nothing of it is stored; the two
    good ones are written and the chain verifies."""
    running = commit_server()
    service = make_service(db_url)
    frames = []
    for n, body in enumerate(bulk_bodies[:3]):
        request = DecisionRequest.model_validate(body)
        _, unsealed = service._decided(service.prepare(request))
        record = Encoded.of(unsealed, None)
        assert record is not None
        if n == 1:
            a, b, c = record.parts
            record = dataclasses.replace(record, parts=(a, b[:-1] + b"\xff", c))
        frames.append(_request_frame(n, f"u-{n}", request.model_dump(mode="json"), record))
    answers: dict[int, dict[str, Any]] = {}
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(30)
        sock.connect(running.server.path)
        sock.sendall(b"".join(frames))
        buffer = b""
        while len(answers) < 3:
            buffer += sock.recv(1 << 16)
            while len(buffer) >= 4 and len(buffer) >= 4 + struct.unpack("!I", buffer[:4])[0]:
                size = struct.unpack("!I", buffer[:4])[0]
                answer = orjson.loads(buffer[4 : 4 + size])
                answers[answer["i"]] = answer
                buffer = buffer[4 + size :]
    assert "d" in answers[0] and "d" in answers[2]
    assert "x" in answers[1] and "utf-8" in answers[1]["x"].lower()
    store = service.store
    assert store is not None
    assert (2, []) == store.verify()
    with store.engine.connect() as conn:
        keys = set(conn.execute(sa.text("SELECT idempotency_key FROM decisions")).scalars())
    assert keys == {"u-0", "u-2"}
