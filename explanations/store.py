"""The append-only, hash-chained store of decisions and explanation records (sqlmodel)."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlmodel import Field, Session, SQLModel, create_engine, select

from explanations.record import ExplanationRecordV1, decision_response, text_hash

__all__ = [
    "ChainHead",
    "DecisionRow",
    "DecisionStore",
    "IdempotencyConflict",
    "RecordRow",
    "StoredDecision",
    "VerifyProblem",
]

GENESIS = "sha256:" + "0" * 64


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
    """Decisions and their records, committed together in one transaction."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        if self.is_sqlite:
            path = url.split("///", 1)[-1]
            if path and path != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            self.engine = create_engine(
                url, connect_args={"check_same_thread": False, "isolation_level": None}
            )
            event.listen(self.engine, "connect", _sqlite_pragmas)

            @event.listens_for(self.engine, "begin")
            def _begin(conn: Any) -> None:
                # Writers take the lock up front so two appends never deadlock upgrading.
                conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.info.get("write") else "BEGIN")

        else:
            self.engine = create_engine(url, pool_size=10, max_overflow=20, pool_pre_ping=True)

    def create_schema(self) -> None:
        SQLModel.metadata.create_all(self.engine)
        with Session(self.engine) as s:
            if s.get(ChainHead, 1) is None:
                s.add(ChainHead(id=1, seq=0, record_hash=GENESIS))
                try:
                    s.commit()
                except sa.exc.IntegrityError:
                    s.rollback()

    def dispose(self) -> None:
        self.engine.dispose()

    # --- reading -------------------------------------------------------------------------

    def find_by_key(self, key: str) -> DecisionRow | None:
        """The decision stored under an idempotency key (a plain indexed read, no ORM session)."""
        table = DecisionRow.__table__  # type: ignore[attr-defined]
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(table).where(table.c.idempotency_key == key)).first()
        return None if row is None else DecisionRow.model_validate(row._asdict())

    def get_decision(self, decision_id: str) -> DecisionRow | None:
        with Session(self.engine) as s:
            return s.get(DecisionRow, decision_id)

    def get_record(self, decision_id: str) -> ExplanationRecordV1 | None:
        with Session(self.engine) as s:
            row = s.exec(select(RecordRow).where(RecordRow.decision_id == decision_id)).first()
            if row is None:
                return None
            return ExplanationRecordV1.model_validate(
                {**json.loads(row.record_json), "record_hash": row.record_hash}
            )

    def count(self) -> int:
        with Session(self.engine) as s:
            return int(s.exec(select(sa.func.count()).select_from(RecordRow)).one())

    # --- writing -------------------------------------------------------------------------

    def append(
        self,
        *,
        idempotency_key: str,
        request_sha256: str,
        build: Callable[[int, str], ExplanationRecordV1],
    ) -> StoredDecision:
        """Store one decision and its record atomically, extending the hash chain.

        ``build(seq, prev_hash)`` makes the (unsealed) record once the chain is locked; it is
        hashed here, once, over exactly the text that is stored. If the key is already stored
        (a concurrent retry), the stored response is returned; with a different request body,
        ``IdempotencyConflict`` is raised.
        """
        decisions, records, heads = (
            DecisionRow.__table__,  # type: ignore[attr-defined]
            RecordRow.__table__,  # type: ignore[attr-defined]
            ChainHead.__table__,  # type: ignore[attr-defined]
        )
        with self.engine.connect() as conn:
            conn.info["write"] = True
            try:
                with conn.begin():
                    head_q = sa.select(heads.c.seq, heads.c.record_hash).where(heads.c.id == 1)
                    if not self.is_sqlite:
                        head_q = head_q.with_for_update()
                    head_seq, head_hash = conn.execute(head_q).one()
                    existing = conn.execute(
                        sa.select(
                            decisions.c.id, decisions.c.request_sha256, decisions.c.response_json
                        ).where(decisions.c.idempotency_key == idempotency_key)
                    ).first()
                    if existing is not None:
                        if existing.request_sha256 != request_sha256:
                            raise IdempotencyConflict(idempotency_key)
                        return StoredDecision(existing.id, json.loads(existing.response_json), True)
                    record, body = build(head_seq + 1, head_hash).sealed()
                    response = decision_response(record)
                    conn.execute(
                        decisions.insert().values(
                            id=record.decision_id,
                            idempotency_key=idempotency_key,
                            request_sha256=request_sha256,
                            application_id=record.application_id,
                            service=record.service,
                            ruleset_version=record.ruleset_version,
                            outcome=record.outcome.value,
                            created_at=record.decided_at,
                            response_json=json.dumps(response, ensure_ascii=False),
                        )
                    )
                    conn.execute(
                        records.insert().values(
                            seq=record.seq,
                            decision_id=record.decision_id,
                            record_json=body,
                            prev_hash=record.prev_hash,
                            record_hash=record.record_hash,
                        )
                    )
                    conn.execute(
                        heads.update()
                        .where(heads.c.id == 1)
                        .values(seq=record.seq, record_hash=record.record_hash)
                    )
                return StoredDecision(record.decision_id, response, False)
            finally:
                conn.info.pop("write", None)

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
        self, *, progress: Callable[[int], None] | None = None
    ) -> tuple[int, list[VerifyProblem]]:
        """Re-hash every record, walk the chain, and recompute each stored response.

        One pass over the records; returns the count checked and every problem found.
        """
        with Session(self.engine) as s:
            rows = s.exec(
                select(DecisionRow.id, DecisionRow.outcome, DecisionRow.response_json)
            ).all()
        decisions = {d: (o, r) for d, o, r in rows}
        problems: list[VerifyProblem] = []
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
            try:
                body = json.loads(row.record_json)
                record = ExplanationRecordV1.model_validate(
                    {**body, "record_hash": row.record_hash}
                )
            except ValueError:
                problem("record is not a valid explanation record (altered)")
                continue
            if (record.prev_hash, record.seq, record.decision_id) != (
                row.prev_hash,
                row.seq,
                row.decision_id,
            ):
                problem("record columns disagree with the hashed content")
            outcome, response_json = decisions.get(row.decision_id, (None, "null"))
            try:
                stored_response = json.loads(response_json)
            except ValueError:
                stored_response = None
            if stored_response != decision_response(record):
                problem("stored response differs from the one its record implies (altered)")
            if outcome != record.outcome.value:
                problem("decision row outcome differs from its record")
        with Session(self.engine) as s:
            head = s.get(ChainHead, 1)
        if head is not None and (head.seq != expected_seq - 1 or head.record_hash != prev):
            problems.append(
                VerifyProblem(
                    head.seq,
                    None,
                    f"chain head says {head.seq} records ending in {head.record_hash[:19]}…, found {expected_seq - 1} ending in {prev[:19]}… (records removed or altered)",
                )
            )
        return n, problems
