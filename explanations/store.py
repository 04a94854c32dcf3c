"""The append-only, hash-chained store of decisions and explanation records (sqlmodel)."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import fcntl
import json
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import sqlalchemy as sa
import structlog
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from sqlalchemy import event
from sqlmodel import Field, Session, SQLModel, create_engine, select

from explanations import merkle
from explanations.log import (
    HEAD_INSERT,
    HEADS,
    NODES,
    Checkpoint,
    DbNodes,
    LeafEntry,
    Receipt,
    append_checkpoint_file,
    head_for,
    latest_head,
    receipt_from,
)
from explanations.record import (
    AnyRecord,
    Chained,
    Encoded,
    ExplanationRecordV1,
    Unsealed,
    parse_record,
    response_of,
    text_hash,
)

__all__ = [
    "ChainHead",
    "DecisionRow",
    "DecisionStore",
    "IdempotencyConflict",
    "RecordRow",
    "StoredDecision",
    "VerifyProblem",
]

if TYPE_CHECKING:
    from explanations.committer import CommitProcessClient

GENESIS = "sha256:" + "0" * 64
log = structlog.get_logger("miaopi.store")


class DecisionRow(SQLModel, table=True):
    """What the platform was told, keyed by its idempotency key."""

    __tablename__ = "decisions"

    id: str = Field(primary_key=True, max_length=40)
    idempotency_key: str = Field(unique=True, index=True, max_length=200)
    request_sha256: str = Field(max_length=80)
    application_id: str = Field(index=True, max_length=64)
    service: str = Field(max_length=64)
    ruleset_version: str = Field(max_length=32)
    outcome: str = Field(max_length=16)
    created_at: dt.datetime
    response_json: str = Field(sa_type=sa.Text)


class RecordRow(SQLModel, table=True):
    """One explanation record exactly as hashed."""

    __tablename__ = "explanation_records"

    seq: int = Field(primary_key=True)
    decision_id: str = Field(unique=True, index=True, max_length=40)
    record_json: str = Field(sa_type=sa.Text)
    prev_hash: str = Field(max_length=80)
    record_hash: str = Field(max_length=80)


class ChainHead(SQLModel, table=True):
    """The last link of the chain; its row lock serialises appends across processes."""

    __tablename__ = "chain_head"

    id: int = Field(primary_key=True)
    seq: int
    record_hash: str = Field(max_length=80)


class IdempotencyConflict(Exception):
    """Raised when an idempotency key is reused with a different request body."""

    def __init__(self, key: str) -> None:
        super().__init__(f"Idempotency-Key {key!r} was already used with a different request body")
        self.key = key


@dataclass(frozen=True)
class StoredDecision:
    decision_id: str
    response: dict[str, Any]
    replayed: bool
    receipt: Receipt | None = None
    """Proof of inclusion in the signed log (None when the store has no signing key)."""


_FOUND_COLUMNS = (
    "id", "idempotency_key", "request_sha256", "application_id", "service", "ruleset_version",
    "outcome", "created_at", "response_json",
)  # fmt: skip
"""The columns ``_HotSql.find`` selects, in order."""


class _HotSql:
    """The statements of every append, written once per dialect and run as they are.

    Building a SQLAlchemy statement per call, then its cache key and parameters, cost more
    CPU than the database did; these run on the driver's own cursor (inside the transaction
    SQLAlchemy began on that connection): SQLAlchemy's per-statement events and result
    objects were ~10% of a decision's CPU.
    """

    def __init__(self, *, sqlite: bool) -> None:
        p = "?" if sqlite else "%s"
        self.p = p
        self.head = "SELECT seq, record_hash FROM chain_head WHERE id = 1" + (
            "" if sqlite else " FOR UPDATE"
        )
        self.by_key = (
            "SELECT id, idempotency_key, request_sha256, response_json FROM decisions "
            "WHERE idempotency_key IN "
        )
        self.insert_decision = (
            "INSERT INTO decisions (id, idempotency_key, request_sha256, application_id, "
            "service, ruleset_version, outcome, created_at, response_json) "
            f"VALUES ({', '.join([p] * 9)})"
        )
        self.insert_record = (
            "INSERT INTO explanation_records (seq, decision_id, record_json, prev_hash, "
            f"record_hash) VALUES ({', '.join([p] * 5)})"
        )
        self.update_head = f"UPDATE chain_head SET seq = {p}, record_hash = {p} WHERE id = 1"
        self.insert_log_head = (
            f"INSERT INTO log_heads (size, root, time, key_id, signature) VALUES ({p}, {p}, {p}, "
            f"{p}, {p})"
        )
        self.find = (
            "SELECT id, idempotency_key, request_sha256, application_id, service, "
            "ruleset_version, outcome, created_at, response_json FROM decisions "
            f"WHERE idempotency_key = {p}"
        )
        self.sqlite = sqlite

    def keys(self, n: int) -> str:
        return self.by_key + "(" + ", ".join([self.p] * n) + ")"

    def created_at(self, when: dt.datetime) -> object:
        """As SQLAlchemy writes a DateTime: on SQLite, UTC text to the microsecond."""
        if self.sqlite:
            return (
                when.astimezone(dt.UTC)
                .replace(tzinfo=None)
                .isoformat(sep=" ", timespec="microseconds")
            )
        return when


class _Prior(NamedTuple):
    """A decision already stored under a key of the batch (``_HotSql.keys``' columns)."""

    id: str
    idempotency_key: str
    request_sha256: str
    response_json: str


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():  # a cancelled wait (the server stopping) has nobody to tell
        waiter.set_result(None)


class _Pending:
    """One append waiting for its group commit: a thread that leads or waits (``append``), or
    a coroutine woken on its event loop once the group is committed (``append_async``)."""

    __slots__ = (
        "build",
        "done",
        "key",
        "on_stored",
        "record",
        "request_sha256",
        "result",
        "waiter",
    )

    def __init__(
        self,
        key: str,
        request_sha256: str,
        build: Callable[[int, str], AnyRecord] | None,
        record: Unsealed | Encoded | None,
        on_stored: Callable[[sa.Connection, Any], None] | None,
        waiter: tuple[asyncio.AbstractEventLoop, asyncio.Future[None]] | None = None,
    ) -> None:
        self.key = key
        self.request_sha256 = request_sha256
        self.build = build
        self.record = record
        self.on_stored = on_stored
        self.done = False
        self.result: StoredDecision | Exception | None = None
        self.waiter = waiter

    def settle(self, result: StoredDecision | Exception) -> None:
        self.result = result
        self.done = True
        if self.waiter is not None:
            loop, future = self.waiter
            with contextlib.suppress(RuntimeError):  # the loop is closed: the server stopped
                loop.call_soon_threadsafe(_wake, future)

    def fail(self, exc: Exception) -> None:
        self.settle(exc)

    def outcome(self) -> StoredDecision:
        if isinstance(self.result, Exception):
            raise self.result
        assert self.result is not None
        return self.result


@dataclass(frozen=True)
class VerifyProblem:
    seq: int | None
    decision_id: str | None
    message: str


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cur = dbapi_connection.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=FULL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


class DecisionStore:
    """Decisions and their records, committed together in one transaction.

    With a ``signing_key`` every append also extends the Merkle log and signs its new head;
    every ``checkpoint_every`` leaves (and on ``write_checkpoint()``) the signed head is
    appended to ``checkpoint_file``, outside the database.
    """

    def __init__(
        self,
        url: str,
        *,
        signing_key: Ed25519PrivateKey | None = None,
        origin: str = "miaopi",
        checkpoint_file: Path | None = None,
        checkpoint_every: int = 1000,
        max_batch: int = 256,
    ) -> None:
        self.url = url
        self.signing_key = signing_key
        self.origin = origin
        self.checkpoint_file = checkpoint_file
        self.checkpoint_every = checkpoint_every
        self._last_filed = -1
        self.max_batch = max_batch
        self._queue: list[_Pending] = []
        self._queue_lock = threading.Lock()
        self._leader = threading.Lock()
        """Held by the thread writing a group; the others queue behind it (see ``append``)."""
        self._draining = False
        """Whether a group-commit job for ``append_async`` is queued or running (under
        ``_queue_lock``): an append that finds none starts one."""
        self._committer: ThreadPoolExecutor | None = None
        self._commit_process: CommitProcessClient | None = None
        self._remote_hook: Callable[[sa.Connection, AnyRecord], None] | None = None
        self._case_of: Callable[[Chained], dict[str, Any] | None] | None = None
        self._writer: sa.Connection | None = None
        """The connection groups are written on, kept between them (held under ``_leader``):
        a pool check-out and check-in per group cost ~10% of a decision's CPU. Dropped after
        any failure, so the next group (or the single retries) starts on a fresh one."""
        self._nodes: dict[tuple[int, int], bytes] = {}
        """Committed tree nodes, read by the next proofs (bounded; see ``_remember_nodes``)."""
        self._lock_path: Path | None = None
        self._lock_file: Any = None
        self.is_sqlite = url.startswith("sqlite")
        if self.is_sqlite:
            path = url.split("///", 1)[-1].split("?", 1)[0]
            if path and path != ":memory:" and not path.startswith("file:"):
                Path(path).parent.mkdir(parents=True, exist_ok=True)
                self._lock_path = Path(path + "-append.lock")
            # As many pooled connections as the server has request threads: a connection
            # opened past the pool is closed after use, and reopening one (WAL pragmas,
            # the file) costs more than the statement it runs.
            self.engine = create_engine(
                url,
                connect_args={"check_same_thread": False, "isolation_level": None},
                pool_size=40,
                max_overflow=40,
            )
            event.listen(self.engine, "connect", _sqlite_pragmas)

            @event.listens_for(self.engine, "begin")
            def _begin(conn: Any) -> None:
                # Writers take the lock up front so two appends never deadlock upgrading.
                # Sent on the driver's own connection: SQLAlchemy has begun its transaction
                # by now, and running the statement through it (events, a result) cost
                # ~12 µs a transaction, every group commit and every read.
                conn.connection.driver_connection.execute(
                    "BEGIN IMMEDIATE" if conn.info.get("write") else "BEGIN"
                )

        else:
            self.engine = create_engine(url, pool_size=15, max_overflow=5, pool_pre_ping=True)
        self._sql = _HotSql(sqlite=self.is_sqlite)

    def create_schema(self, *, migrate: bool = True) -> None:
        """Bring the schema to head with the shipped migrations (``explanations.migrate``).

        With ``migrate=False`` the schema is only checked: ``SchemaNotCurrent`` unless it is
        at head. Then records stored before the log existed are entered into it.
        """
        from explanations import migrate as migrations

        if migrate:
            migrations.upgrade(self.engine)
        else:
            migrations.require_head(self.engine)
        if self.signing_key is not None:
            self._catch_up()

    def _catch_up(self) -> None:
        """Enter records stored before the log existed (a database from an earlier version)."""
        with self.engine.connect() as conn:
            conn.info["write"] = True
            try:
                with conn.begin():
                    head_q = sa.select(ChainHead.__table__.c.seq).where(  # type: ignore[attr-defined]
                        ChainHead.__table__.c.id == 1  # type: ignore[attr-defined]
                    )
                    if not self.is_sqlite:
                        head_q = head_q.with_for_update()
                    chain_seq = conn.execute(head_q).scalar_one()
                    size = self._log_size(conn)
                    if size >= chain_seq:
                        return
                    leaves = [
                        self._leaf_of(conn, seq).leaf_hash()
                        for seq in range(size + 1, chain_seq + 1)
                    ]
                    self._extend(conn, size, leaves)
            finally:
                conn.info.pop("write", None)
        log.info("log_caught_up", leaves=chain_seq - size)

    @staticmethod
    def _log_size(conn: sa.Connection) -> int:
        return int(
            conn.execute(
                sa.select(sa.func.count()).select_from(NODES).where(NODES.c.level == 0)
            ).scalar_one()
        )

    def _leaf_of(self, conn: sa.Connection, seq: int) -> LeafEntry:
        records = RecordRow.__table__  # type: ignore[attr-defined]
        decisions = DecisionRow.__table__  # type: ignore[attr-defined]
        row = conn.execute(
            sa.select(
                records.c.decision_id,
                records.c.record_hash,
                decisions.c.idempotency_key,
                decisions.c.request_sha256,
            )
            .join(decisions, decisions.c.id == records.c.decision_id)
            .where(records.c.seq == seq)
        ).one()
        return LeafEntry.of(
            seq=seq,
            decision_id=row.decision_id,
            record_hash=row.record_hash,
            idempotency_key=row.idempotency_key,
            request_sha256=row.request_sha256,
        )

    def _extend(
        self, conn: sa.Connection, size: int, leaves: list[bytes], *, cursor: Any = None
    ) -> tuple[DbNodes, Checkpoint]:
        """Add ``leaves`` after the first ``size`` and sign the new head: one tree update.

        Several records can share one update (one signature, one head row); each leaf's
        receipt is then proven against that head.
        """
        assert self.signing_key is not None
        nodes = DbNodes(conn, self._nodes, cursor=cursor, placeholder=self._sql.p)
        nodes.extend(size, leaves)
        new_size = size + len(leaves)
        head = Checkpoint.sign(
            origin=self.origin,
            size=new_size,
            root=merkle.root_from(new_size, nodes.get),
            key=self.signing_key,
            time=dt.datetime.now(dt.UTC),
        )
        if cursor is not None:
            cursor.execute(self._sql.insert_log_head, tuple(head.to_row().values()))
        else:
            conn.execute(HEAD_INSERT, head.to_row())
        return nodes, head

    def dispose(self) -> None:
        if self._committer is not None:
            self._committer.shutdown(wait=True)  # every queued append is written first
        with self._leader:
            self._drop_writer()
        self.engine.dispose()

    def _drop_writer(self) -> None:
        writer, self._writer = self._writer, None
        if writer is not None:
            with contextlib.suppress(Exception):  # a broken connection is thrown away anyway
                writer.info.pop("write", None)  # back in the pool, it serves readers
                writer.close()

    # --- reading -------------------------------------------------------------------------

    def find_by_key(self, key: str) -> DecisionRow | None:
        """The decision stored under an idempotency key (a plain indexed read, no ORM session)."""
        with self.engine.connect() as conn:
            cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
            try:
                cursor.execute(self._sql.find, (key,))
                row = cursor.fetchone()
            finally:
                cursor.close()
        if row is None:
            return None
        return DecisionRow.model_validate(dict(zip(_FOUND_COLUMNS, row, strict=True)))

    def get_decision(self, decision_id: str) -> DecisionRow | None:
        with Session(self.engine) as s:
            return s.get(DecisionRow, decision_id)

    def get_record(self, decision_id: str) -> ExplanationRecordV1 | None:
        """The automated decision's explanation record (None for a human decision's id)."""
        record = self.get_any_record(decision_id)
        return record if isinstance(record, ExplanationRecordV1) else None

    def get_any_record(self, decision_id: str) -> AnyRecord | None:
        with Session(self.engine) as s:
            row = s.exec(select(RecordRow).where(RecordRow.decision_id == decision_id)).first()
            if row is None:
                return None
            return parse_record({**json.loads(row.record_json), "record_hash": row.record_hash})

    def count(self) -> int:
        with Session(self.engine) as s:
            return int(s.exec(select(sa.func.count()).select_from(RecordRow)).one())

    # --- writing -------------------------------------------------------------------------

    def append(
        self,
        *,
        idempotency_key: str,
        request_sha256: str,
        build: Callable[[int, str], AnyRecord] | None = None,
        record: Unsealed | None = None,
        on_stored: Callable[[sa.Connection, AnyRecord], None] | None = None,
    ) -> StoredDecision:
        """Store one decision and its record atomically, extending the hash chain.

        The record comes encoded (``record``, built and encoded by the caller outside any
        lock) or as ``build(seq, prev_hash)``, called once the chain is locked. Either way it
        is hashed here, once, over exactly the text that is stored. If the key is already
        stored (a concurrent retry), the stored response is returned; with a different
        request body, ``IdempotencyConflict`` is raised.

        Group commit: appends that arrive while another is being written wait, then go
        together in the next transaction (one fsync, one tree update, one signed head);
        each returns only once its own transaction has committed.
        """
        assert (build is None) != (record is None), "give build or record"
        item = _Pending(idempotency_key, request_sha256, build, record, on_stored)
        self.write_group([item])
        return item.outcome()

    def commit_through(
        self,
        client: CommitProcessClient,
        *,
        hook: Callable[[sa.Connection, AnyRecord], None],
        case_of: Callable[[Chained], dict[str, Any] | None],
    ) -> None:
        """Send ``append_async``'s automated decisions to the server's commit process
        (``explanations.committer``). ``hook`` is the ``on_stored`` it stands for: the commit
        process opens the referral case ``case_of`` gives, in the same transaction."""
        self._commit_process, self._remote_hook, self._case_of = client, hook, case_of

    async def append_async(
        self,
        *,
        idempotency_key: str,
        request_sha256: str,
        record: Unsealed,
        on_stored: Callable[[sa.Connection, AnyRecord], None] | None = None,
    ) -> StoredDecision:
        """``append`` for a coroutine: the event loop goes on while the group is written.

        With a commit process (``commit_through``) the record goes there, encoded: one
        process writes the groups of every worker of the server. When it cannot be reached,
        or answers anything but a decision or a conflict, the append is written here, as
        without one: the key decides, so a decision it did commit is found and answered.

        Otherwise the append is queued for the group-commit thread, which writes every queued
        append (of coroutines and of ``append``'s threads alike) in the next transaction; this
        returns once that transaction has committed. No thread of the pool is held meanwhile.
        """
        client = self._commit_process
        if client is not None and (on_stored is None or on_stored == self._remote_hook):
            case = None
            unchained = record.unchained()
            if on_stored is not None and self._case_of is not None and unchained is not None:
                case = self._case_of(unchained)
            encoded = Encoded.of(record, case)
            if encoded is not None:
                stored = await client.append(idempotency_key, request_sha256, encoded)
                if stored is not None:
                    return stored
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        item = _Pending(idempotency_key, request_sha256, None, record, on_stored, (loop, waiter))
        with self._queue_lock:
            self._queue.append(item)
            start, self._draining = not self._draining, True
        if start:
            if self._committer is None:
                self._committer = ThreadPoolExecutor(1, thread_name_prefix="group-commit")
            self._committer.submit(self._drain)
        await waiter
        return item.outcome()

    def write_group(self, items: Sequence[_Pending]) -> None:
        """Write ``items`` in the next group(s) and return once each is settled (``append``'s
        and the commit process's way in): the thread that gets ``_leader`` writes whatever is
        queued, its own and others', until its items are done."""
        with self._queue_lock:
            self._queue.extend(items)
        with self._leader:
            while not all(item.done for item in items):
                with self._queue_lock:
                    batch = self._queue[: self.max_batch]
                    del self._queue[: self.max_batch]
                self._commit(batch)

    def _drain(self) -> None:
        """Write groups until the queue is empty (the group-commit thread's job)."""
        with self._leader:
            while True:
                with self._queue_lock:
                    batch = self._queue[: self.max_batch]
                    del self._queue[: self.max_batch]
                    if not batch:
                        self._draining = False  # under the lock: the next append starts a job
                        return
                try:
                    self._commit(batch)
                except BaseException as exc:  # _commit settles every Exception itself
                    log.error("group_commit_interrupted", error=repr(exc))
                    for item in batch:  # nobody waits for ever; the job goes on with the next
                        if not item.done:
                            item.fail(RuntimeError(f"group commit interrupted: {exc!r}"))

    def _commit(self, batch: list[_Pending]) -> None:
        """Write ``batch`` in one transaction; if that fails, each on its own."""
        try:
            self._write(batch, top_up=True)
        except Exception as exc:
            batch = [item for item in batch if not item.done]  # never undo a told success
            if len(batch) <= 1:
                for item in batch:
                    item.fail(exc)
                return
            log.warning("group_commit_retried_singly", size=len(batch), error=type(exc).__name__)
            for item in batch:
                try:
                    self._write([item])
                except Exception as single:
                    item.fail(single)

    @contextlib.contextmanager
    def _cross_process_lock(self) -> Iterator[None]:
        """On a SQLite file, queue writers of all processes in the kernel (flock) rather than
        in SQLite's busy handler, which sleeps and polls (tens of ms of tail latency)."""
        if self._lock_path is None:
            yield
            return
        if self._lock_file is None:
            self._lock_file = self._lock_path.open("a+b")
        fcntl.flock(self._lock_file, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(self._lock_file, fcntl.LOCK_UN)

    def _write(self, batch: list[_Pending], *, top_up: bool = False) -> None:
        """Write ``batch`` on the kept connection. One that fails after serving earlier groups
        may have died in between (a database restart; there is no ping at check-out for a
        connection that is never checked in): the batch goes once more on a fresh one."""
        reused = self._writer is not None
        try:
            self._write_on(self._writer_connection(), batch, top_up=top_up)
        except Exception as exc:
            if not reused or any(item.done for item in batch):
                raise
            log.info("writer_reconnected", error=type(exc).__name__)
            self._write_on(self._writer_connection(), batch)

    def _writer_connection(self) -> sa.Connection:
        if self._writer is None or self._writer.closed or self._writer.invalidated:
            self._drop_writer()
            self._writer = self.engine.connect()
            self._writer.info["write"] = True  # BEGIN IMMEDIATE on SQLite (see _begin)
        return self._writer

    def _write_on(
        self, conn: sa.Connection, batch: list[_Pending], *, top_up: bool = False
    ) -> None:
        sql = self._sql
        done: list[tuple[_Pending, StoredDecision | Exception]] = []
        written: list[tuple[_Pending, AnyRecord | Chained, dict[str, Any]]] = []
        nodes: DbNodes | None = None
        with self._cross_process_lock():
            try:
                with conn.begin():
                    cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
                    cursor.execute(sql.head)
                    head_seq, head_hash = cursor.fetchone()
                    # The chain is ours now. Appends queued while we waited for it (another
                    # process or server was writing) join this group rather than wait for the
                    # next: with two workers taking turns, groups grow instead of the queue.
                    if top_up and len(batch) < self.max_batch:
                        with self._queue_lock:
                            more = self._queue[: self.max_batch - len(batch)]
                            del self._queue[: len(more)]
                        batch.extend(more)
                    keys = list({item.key for item in batch})
                    cursor.execute(sql.keys(len(keys)), tuple(keys))
                    existing = {row[1]: _Prior(*row) for row in cursor.fetchall()}
                    fresh: dict[str, tuple[_Pending, AnyRecord | Chained, dict[str, Any]]] = {}
                    decision_rows: list[tuple[object, ...]] = []
                    record_rows: list[tuple[object, ...]] = []
                    for item in batch:
                        prior = existing.get(item.key)
                        if prior is not None:
                            if prior.request_sha256 != item.request_sha256:
                                done.append((item, IdempotencyConflict(item.key)))
                            else:
                                done.append(
                                    (
                                        item,
                                        StoredDecision(
                                            prior.id,
                                            json.loads(prior.response_json),
                                            True,
                                            self._receipt(conn, prior.id),
                                        ),
                                    )
                                )
                            continue
                        if item.key in fresh:  # the same key twice in one batch: a retry
                            continue  # answered below, once the first has its receipt
                        if item.record is not None:
                            record, body, response = item.record.seal(head_seq + 1, head_hash)
                        else:
                            assert item.build is not None
                            record, body = item.build(head_seq + 1, head_hash).sealed()
                            response = response_of(record)
                        head_seq, head_hash = record.seq, record.record_hash
                        fresh[item.key] = (item, record, response)
                        written.append((item, record, response))
                        decision_rows.append(
                            (
                                record.decision_id,
                                item.key,
                                item.request_sha256,
                                record.application_id,
                                record.service,
                                record.ruleset_version,
                                record.outcome.value,
                                sql.created_at(record.decided_at),
                                json.dumps(response, ensure_ascii=False),
                            )
                        )
                        record_rows.append(
                            (
                                record.seq,
                                record.decision_id,
                                body,
                                record.prev_hash,
                                record.record_hash,
                            )
                        )
                    if written:
                        cursor.executemany(sql.insert_decision, decision_rows)
                        cursor.executemany(sql.insert_record, record_rows)
                        cursor.execute(sql.update_head, (head_seq, head_hash))
                        for item, record, _ in written:
                            if item.on_stored is not None:
                                item.on_stored(conn, record)
                    receipts: dict[str, Receipt | None] = {}
                    if written and self.signing_key is not None:
                        leaves = [
                            LeafEntry.of(
                                seq=record.seq,
                                decision_id=record.decision_id,
                                record_hash=record.record_hash,
                                idempotency_key=item.key,
                                request_sha256=item.request_sha256,
                            )
                            for item, record, _ in written
                        ]
                        size = written[0][1].seq - 1
                        nodes, head = self._extend(
                            conn, size, [leaf.leaf_hash() for leaf in leaves], cursor=cursor
                        )
                        for leaf in leaves:
                            receipts[leaf.decision_id] = receipt_from(nodes.get, leaf, head)
                    for item, record, response in written:
                        done.append(
                            (
                                item,
                                StoredDecision(
                                    record.decision_id,
                                    response,
                                    False,
                                    receipts.get(record.decision_id),
                                ),
                            )
                        )
                    for item in batch:  # the second of a key in this batch: a retry of the first
                        first = fresh.get(item.key)
                        if first is None or first[0] is item:
                            continue
                        first_item, record, response = first
                        if first_item.request_sha256 != item.request_sha256:
                            done.append((item, IdempotencyConflict(item.key)))
                        else:
                            receipt = receipts.get(record.decision_id)
                            done.append(
                                (item, StoredDecision(record.decision_id, response, True, receipt))
                            )
            except BaseException:
                self._drop_writer()
                raise
        # Committed: only now may anyone be told.
        if nodes is not None:
            self._remember_nodes(nodes.cache)
        for item, result in done:
            item.settle(result)
        if written and self.signing_key is not None and self.checkpoint_file is not None:
            last = next(
                (
                    r.receipt
                    for _, r in reversed(done)
                    if isinstance(r, StoredDecision) and r.receipt
                ),
                None,
            )
            if (
                last is not None
                and last.checkpoint.size - self._last_filed >= self.checkpoint_every
            ):
                try:
                    self._file(last.checkpoint)
                except (
                    OSError
                ) as exc:  # stored and answered: a failed filing is reported, not raised
                    log.error("checkpoint_not_filed", size=last.checkpoint.size, error=str(exc))

    def _remember_nodes(self, committed: dict[tuple[int, int], bytes]) -> None:
        """Keep committed tree nodes for the next proofs (they never change once written)."""
        if len(self._nodes) > 8192:
            self._nodes.clear()  # the right edge comes back on the next read
        self._nodes.update(committed)

    # --- the log ---------------------------------------------------------------------------

    def _file(self, checkpoint: Checkpoint) -> None:
        assert self.checkpoint_file is not None
        append_checkpoint_file(self.checkpoint_file, checkpoint)
        self._last_filed = checkpoint.size

    def _receipt(self, conn: sa.Connection, decision_id: str) -> Receipt | None:
        records = RecordRow.__table__  # type: ignore[attr-defined]
        seq = conn.execute(
            sa.select(records.c.seq).where(records.c.decision_id == decision_id)
        ).scalar()
        if seq is None:
            return None
        head = head_for(conn, seq)
        if head is None:
            return None
        nodes = DbNodes(conn)
        return receipt_from(
            nodes.get, self._leaf_of(conn, seq), Checkpoint.from_row(head, self.origin)
        )

    def receipt(self, decision_id: str) -> Receipt | None:
        """The decision's receipt exactly as first issued (proof against the head it joined)."""
        with self.engine.connect() as conn:
            return self._receipt(conn, decision_id)

    def checkpoint(self) -> Checkpoint | None:
        """The latest signed head."""
        with self.engine.connect() as conn:
            head = latest_head(conn)
        return None if head is None else Checkpoint.from_row(head, self.origin)

    def write_checkpoint(self) -> Checkpoint | None:
        """Append the latest signed head to the checkpoint file (if any) and return it."""
        head = self.checkpoint()
        if head is not None and self.checkpoint_file is not None and head.size != self._last_filed:
            self._file(head)
        return head

    def consistency_proof(self, old_size: int, new_size: int) -> list[bytes]:
        with self.engine.connect() as conn:
            return merkle.consistency_proof_from(old_size, new_size, DbNodes(conn).get)

    def inclusion_proof(self, seq: int, size: int) -> list[bytes]:
        with self.engine.connect() as conn:
            return merkle.inclusion_proof_from(seq - 1, size, DbNodes(conn).get)

    # --- verification --------------------------------------------------------------------

    def iter_records(self, batch: int = 1000) -> Iterator[RecordRow]:
        last = 0
        while True:
            with Session(self.engine) as s:
                rows = s.exec(
                    select(RecordRow)
                    .where(RecordRow.seq > last)
                    .order_by(sa.asc(sa.column("seq")))
                    .limit(batch)
                ).all()
            if not rows:
                return
            yield from rows
            last = rows[-1].seq

    def verify(
        self,
        *,
        keys: dict[str, Ed25519PublicKey] | None = None,
        checkpoints: Sequence[Checkpoint] = (),
        progress: Callable[[int], None] | None = None,
    ) -> tuple[int, list[VerifyProblem]]:
        """Check every stored row against every other, the log, and the signed heads.

        Re-hashes each record, walks the hash chain, recomputes each response, compares the
        decision row's columns with its record, rebuilds the Merkle tree from the rows and
        compares it with the stored nodes and every signed head. With ``keys`` the head
        signatures are checked; each of ``checkpoints`` (saved outside the database) must be
        signed and must be a prefix of the log as it is now. Returns the count of records
        and every problem found.
        """
        decisions = self._decision_rows()
        problems: list[VerifyProblem] = []
        leaves: list[bytes] = []
        leaf_ids: list[str] = []
        stored_leaves = self._stored_nodes()
        prev = GENESIS
        expected_seq = 1
        n = 0
        for row in self.iter_records():
            n += 1
            if progress is not None and n % 1000 == 0:
                progress(n)

            def problem(message: str, row: RecordRow = row) -> None:
                problems.append(VerifyProblem(row.seq, row.decision_id, message))

            if row.seq != expected_seq:
                problem(f"records {expected_seq}…{row.seq - 1} are missing")
            expected_seq = row.seq + 1
            if text_hash(row.record_json) != row.record_hash:
                problem("record content does not match its hash (altered)")
            if row.prev_hash != prev:
                problem("prev_hash does not link to the previous record")
            prev = row.record_hash
            leaf_ids.append(row.decision_id)
            decision = decisions.pop(row.decision_id, None)
            if decision is None:
                problem("no decision row for this record (removed, or its id altered)")
                leaves.append(bytes(32))
            else:
                leaves.append(
                    LeafEntry.of(
                        seq=row.seq,
                        decision_id=row.decision_id,
                        record_hash=row.record_hash,
                        idempotency_key=decision["idempotency_key"],
                        request_sha256=decision["request_sha256"],
                    ).leaf_hash()
                )
            try:
                body = json.loads(row.record_json)
                record = parse_record({**body, "record_hash": row.record_hash})
            except ValueError:
                problem("record is not a valid explanation record (altered)")
                continue
            if (record.prev_hash, record.seq, record.decision_id) != (
                row.prev_hash,
                row.seq,
                row.decision_id,
            ):
                problem("record columns disagree with the hashed content")
            if decision is not None:
                for message in _decision_row_problems(decision, record, exact_times=self.is_sqlite):
                    problem(message)
        for decision_id in decisions:
            problems.append(
                VerifyProblem(None, decision_id, "decision row without a record (added or altered)")
            )
        with Session(self.engine) as s:
            head = s.get(ChainHead, 1)
        if head is None and n:
            problems.append(
                VerifyProblem(None, None, "the chain head row is missing (removed or altered)")
            )
        if head is not None and (head.seq != expected_seq - 1 or head.record_hash != prev):
            problems.append(
                VerifyProblem(
                    head.seq,
                    None,
                    f"chain head says {head.seq} records ending in {head.record_hash[:19]}…, found {expected_seq - 1} ending in {prev[:19]}… (records removed or altered)",
                )
            )
        problems.extend(self._verify_log(leaves, stored_leaves, keys, checkpoints, leaf_ids))
        return n, problems

    def _decision_rows(self) -> dict[str, dict[str, str]]:
        """Every decision row, each column read as text (a damaged value must not stop the check)."""
        table = DecisionRow.__table__  # type: ignore[attr-defined]
        columns = [sa.cast(c, sa.Text).label(c.name) for c in table.columns]
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(*columns)).mappings().all()
        return {r["id"]: dict(r) for r in rows}

    def _stored_nodes(self) -> dict[tuple[int, int], str]:
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(NODES.c.level, NODES.c.idx, NODES.c.hash)).all()
        return {(r.level, r.idx): r.hash for r in rows}

    def _verify_log(
        self,
        leaves: list[bytes],
        stored: dict[tuple[int, int], str],
        keys: dict[str, Ed25519PublicKey] | None,
        checkpoints: Sequence[Checkpoint],
        leaf_ids: Sequence[str] = (),
    ) -> list[VerifyProblem]:
        """The Merkle log rebuilt from the rows against the stored nodes and signed heads."""
        problems: list[VerifyProblem] = []
        tree = merkle.MemoryNodes()
        for leaf in leaves:
            tree.append(leaf)
        n = len(leaves)
        if not stored and not n:
            return problems
        with self.engine.connect() as conn:
            heads = [
                Checkpoint.from_row(r, self.origin)
                for r in conn.execute(sa.select(HEADS).order_by(HEADS.c.size))
            ]
        if not heads and n:
            problems.append(VerifyProblem(None, None, "the log has no signed head"))
        rebuilt: dict[tuple[int, int], str] = {}
        for index in range(n):
            rebuilt[(0, index)] = leaves[index].hex()
            for level, idx in merkle.perfect_nodes_completed(index):
                rebuilt[(level, idx)] = tree.get(level, idx).hex()
        for node in sorted(set(stored) | set(rebuilt)):
            if stored.get(node) != rebuilt.get(node):
                level, idx = node
                what = (
                    "missing"
                    if node not in stored
                    else "extra"
                    if node not in rebuilt
                    else "altered"
                )
                seq = idx + 1 if level == 0 else None
                problems.append(
                    VerifyProblem(
                        seq,
                        leaf_ids[idx] if level == 0 and 0 <= idx < len(leaf_ids) else None,
                        f"log node (level {level}, index {idx}) {what}"
                        + (
                            " (the record, its idempotency key or request hash changed)"
                            if level == 0 and what == "altered"
                            else ""
                        ),
                    )
                )
                if len(problems) > 1000:
                    break
        for head in heads:
            if head.size < 1:
                problems.append(
                    VerifyProblem(
                        None, None, f"signed head of impossible size {head.size} (altered)"
                    )
                )
            elif head.size > n:
                problems.append(
                    VerifyProblem(
                        None,
                        None,
                        f"signed head of size {head.size} but the log has {n} records (records removed)",
                    )
                )
            elif _root(tree, head.size) != head.root:
                problems.append(
                    VerifyProblem(
                        None,
                        None,
                        f"signed head of size {head.size}: root differs from the rows (log rewritten)",
                    )
                )
            if keys is not None and (why := head.problem(keys)):
                problems.append(VerifyProblem(None, None, f"signed head: {why}"))
        if heads and heads[-1].size != n:
            problems.append(
                VerifyProblem(
                    None,
                    None,
                    f"the newest signed head covers {heads[-1].size} records, the log has {n}",
                )
            )
        for cp in checkpoints:
            if keys is not None and (why := cp.problem(keys)):
                problems.append(VerifyProblem(None, None, f"saved checkpoint: {why}"))
            if cp.size > n:
                problems.append(
                    VerifyProblem(
                        None,
                        None,
                        f"saved checkpoint of size {cp.size}, the log now has {n} records (newest records removed)",
                    )
                )
            elif _root(tree, cp.size) != cp.root:
                problems.append(
                    VerifyProblem(
                        None,
                        None,
                        f"saved checkpoint of size {cp.size}: the log's first {cp.size} records no longer give its root (history rewritten)",
                    )
                )
        return problems


def _root(tree: merkle.MemoryNodes, size: int) -> str:
    """The root of the first ``size`` leaves; a size no tree has gives no root."""
    if size < 0 or size > tree.size:
        return "(no such tree size)"
    return merkle.root_from(size, tree.get).hex()


def _same_instant(text: str | None, when: dt.datetime, *, exact: bool) -> bool:
    """Whether a stored created_at is ``when``; on SQLite, also written exactly as SQLAlchemy
    writes it (a text column: any other spelling of the same instant is an edit)."""
    utc = when.astimezone(dt.UTC)
    if exact:
        return text == utc.replace(tzinfo=None).isoformat(sep=" ", timespec="microseconds")
    try:
        stored = dt.datetime.fromisoformat(str(text))
    except ValueError:
        return False
    return (stored if stored.tzinfo else stored.replace(tzinfo=dt.UTC)) == utc


def _decision_row_problems(
    row: dict[str, str], record: AnyRecord, *, exact_times: bool
) -> list[str]:
    """Each column of a decision row that disagrees with its (hashed) record."""
    problems = []
    expected = {
        "application_id": record.application_id,
        "service": record.service,
        "ruleset_version": record.ruleset_version,
        "outcome": record.outcome.value,
    }
    for column, want in expected.items():
        if row.get(column) != want:
            problems.append(f"decision row {column} differs from its record (altered)")
    if not _same_instant(row.get("created_at"), record.decided_at, exact=exact_times):
        problems.append("decision row created_at differs from its record (altered)")
    text = row.get("response_json") or ""
    try:
        stored = json.loads(text)
        # The same response, written as the store writes it (any key order: JSON objects
        # have none, and records written before version 3 kept the outputs' table order).
        same = stored == response_of(record) and json.dumps(stored, ensure_ascii=False) == text
    except ValueError:
        same = False
    if not same:
        problems.append("stored response differs from the one its record implies (altered)")
    return problems
