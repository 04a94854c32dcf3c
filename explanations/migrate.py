"""The database schema, made and changed only by the Alembic revisions shipped in ``migrations/``.

``upgrade(url)`` brings a database to the newest revision (head): an empty database gets
every revision from the baseline; a database made by ``create_all`` before migrations (its
tables, no ``alembic_version``) is adopted by the baseline (see ``versions/0001_baseline.py``)
and then upgraded; a database at head is only read. Any number of processes may call it at
the same instant (several servers starting together): the check and the upgrade run in one
transaction under a lock, so one process upgrades and the others then find the database at
head. On PostgreSQL the lock is a transaction-scoped advisory lock named after the schema; on
SQLite it is the database's write lock (``BEGIN IMMEDIATE``). PostgreSQL and SQLite both
change their schema transactionally, so a failed upgrade leaves the database as it was.
"""

from __future__ import annotations

import functools
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
import structlog
from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import event

__all__ = [
    "BASELINE",
    "SCRIPT_LOCATION",
    "SchemaNotCurrent",
    "SchemaState",
    "current",
    "head",
    "require_head",
    "upgrade",
]

log = structlog.get_logger("miaopi.migrate")

SCRIPT_LOCATION = "explanations:migrations"
"""The shipped revisions (a package resource: found in a checkout and in an installed wheel)."""
BASELINE = "0001"
"""The revision that made (or adopted) the schema of the code before migrations."""
VERSION_TABLE = "alembic_version"
LEGACY_TABLES = frozenset({"decisions", "explanation_records", "chain_head"})
"""Any of these without ``alembic_version``: a database made by ``create_all``."""


class SchemaNotCurrent(Exception):
    """Raised when a service must not migrate (``--no-migrate``) and the schema is not at head."""

    def __init__(self, state: SchemaState) -> None:
        self.state = state
        self.message_zh = f"数据库结构不是最新（{state.describe_zh()}）：请先运行 miaopi db upgrade"
        self.message_en = (
            f"the database schema is not at head ({state.describe_en()}): "
            "run `miaopi db upgrade` first"
        )
        super().__init__(f"{self.message_zh} / {self.message_en}")


@dataclass(frozen=True)
class SchemaState:
    """Where a database stands: its revision (None: none recorded) and the program's head."""

    revision: str | None
    head: str
    legacy: bool = False
    """Tables made before migrations, no revision recorded."""
    known: bool = True
    """The revision is one this program ships (False: a newer program migrated it)."""

    @property
    def at_head(self) -> bool:
        return self.revision == self.head

    @property
    def empty(self) -> bool:
        return self.revision is None and not self.legacy

    def describe_zh(self) -> str:
        if self.legacy:
            return f"迁移之前建立的旧结构，最新版本为 {self.head}"
        if self.revision is None:
            return f"空数据库，最新版本为 {self.head}"
        if not self.known:
            return f"版本 {self.revision} 比本程序的最新版本 {self.head} 更新"
        return f"版本 {self.revision}，最新版本为 {self.head}"

    def describe_en(self) -> str:
        if self.legacy:
            return f"tables from before migrations, head is {self.head}"
        if self.revision is None:
            return f"empty, head is {self.head}"
        if not self.known:
            return f"revision {self.revision} is newer than this program's head {self.head}"
        return f"revision {self.revision}, head is {self.head}"


def head(script_location: str = SCRIPT_LOCATION) -> str:
    """The newest revision this program ships."""
    return _head(script_location)


@functools.cache
def _script(script_location: str) -> ScriptDirectory:
    return ScriptDirectory.from_config(_config(script_location))


@functools.cache
def _head(script_location: str) -> str:
    heads = _script(script_location).get_heads()
    if len(heads) != 1:
        raise RuntimeError(f"the migrations must have exactly one head, found {heads}")
    return str(heads[0])


@functools.cache
def _revisions(script_location: str) -> frozenset[str]:
    return frozenset(s.revision for s in _script(script_location).walk_revisions())


def _config(script_location: str) -> Config:
    config = Config()
    config.set_main_option("script_location", script_location)
    return config


def _engine(target: sa.Engine | str, *, create: bool) -> sa.Engine:
    """An engine of our own (no pool), on the database ``target`` names.

    SQLite waits up to 30 s for another process's write lock. With ``create`` its folder is
    made and the file put in WAL mode, as the store does; without, a missing file is
    ``FileNotFoundError`` (a read never makes a database).
    """
    url = target.url if isinstance(target, sa.Engine) else sa.engine.make_url(target)
    if url.get_backend_name() != "sqlite":
        return sa.create_engine(url, poolclass=sa.pool.NullPool)
    if url.database and url.database != ":memory:":
        path = Path(url.database)
        if create:
            path.parent.mkdir(parents=True, exist_ok=True)
        elif not path.exists():
            raise FileNotFoundError(f"no database at {path}")
    engine = sa.create_engine(
        url,
        poolclass=sa.pool.NullPool,
        connect_args={"isolation_level": None, "timeout": 30},
    )

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_connection: Any, _record: Any) -> None:
        cur = dbapi_connection.cursor()
        cur.execute("PRAGMA busy_timeout=30000")
        if create:
            cur.execute("PRAGMA journal_mode=WAL")
        cur.close()

    return engine


def _state(conn: sa.Connection, script_location: str) -> SchemaState:
    tables = set(sa.inspect(conn).get_table_names())
    target = _head(script_location)
    if VERSION_TABLE not in tables:
        return SchemaState(None, target, legacy=bool(tables & LEGACY_TABLES))
    rows = conn.execute(sa.text(f"SELECT version_num FROM {VERSION_TABLE}")).scalars().all()
    if len(rows) > 1:
        raise RuntimeError(f"{VERSION_TABLE} holds several revisions {rows}: branches are not used")
    revision = rows[0] if rows else None
    known = revision is None or revision in _revisions(script_location)
    return SchemaState(revision, target, known=known)


def current(target: sa.Engine | str, *, script_location: str = SCRIPT_LOCATION) -> SchemaState:
    """Where the database stands; reads only (creates no file, no table)."""
    engine = _engine(target, create=False)
    try:
        with engine.connect() as conn:
            return _state(conn, script_location)
    finally:
        engine.dispose()


def require_head(target: sa.Engine | str) -> SchemaState:
    """The database's state; ``SchemaNotCurrent`` unless it is at head."""
    state = current(target)
    if not state.at_head:
        raise SchemaNotCurrent(state)
    return state


@dataclass(frozen=True)
class Upgraded:
    """What ``upgrade`` found and left."""

    before: SchemaState
    after: str

    @property
    def changed(self) -> bool:
        return self.before.revision != self.after


def upgrade(target: sa.Engine | str, *, script_location: str = SCRIPT_LOCATION) -> Upgraded:
    """Bring the database at ``target`` (an engine or a URL) to head, under the lock.

    Returns the state it found and the revision it left. A database at head is only read.
    Raises ``SchemaNotCurrent`` for a database a newer program has migrated past this
    program's head (the program is too old for it).
    """
    for attempt in range(6):
        try:
            return _upgrade_once(target, script_location)
        except sa.exc.OperationalError as exc:
            # SQLite can answer "database is locked" without waiting while a brand-new file
            # is switched to WAL by another connection; that wait is ours to make.
            if "database is locked" not in str(exc) or attempt == 5:
                raise
            time.sleep(0.05 * 2**attempt)
    raise AssertionError("unreachable")


def _upgrade_once(target: sa.Engine | str, script_location: str) -> Upgraded:
    engine = _engine(target, create=True)
    try:
        with engine.connect() as conn:
            found = _state(conn, script_location)
            conn.rollback()
            if found.at_head:
                return Upgraded(found, found.revision or "")
            with _locked(conn):
                found = _state(conn, script_location)  # another process may have done it
                if not found.at_head:
                    if not found.known:
                        raise SchemaNotCurrent(found)
                    config = _config(script_location)
                    config.attributes["connection"] = conn
                    # Alembic's own INFO lines are plain text; ours below is the JSON event.
                    logging.getLogger("alembic").setLevel(logging.WARNING)
                    command.upgrade(config, "head")
            after = _state(conn, script_location).revision or ""
            conn.rollback()
    finally:
        engine.dispose()
    if found.revision != after:
        log.info(
            "schema_upgraded",
            from_revision=found.revision,
            to_revision=after,
            adopted_legacy=found.legacy,
        )
    return Upgraded(found, after)


class _locked:
    """One transaction on ``conn`` holding the migration lock; committed on success."""

    def __init__(self, conn: sa.Connection) -> None:
        self.conn = conn

    def __enter__(self) -> sa.Connection:
        conn = self.conn
        if conn.dialect.name == "sqlite":
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        elif conn.dialect.name == "postgresql":
            conn.execute(
                sa.text(
                    "SELECT pg_advisory_xact_lock(hashtext('miaopi.migrate:' || current_schema()))"
                )
            )
        else:  # pragma: no cover - only SQLite and PostgreSQL are supported
            raise RuntimeError(f"no migration lock for {conn.dialect.name}")
        return conn

    def __exit__(self, kind: object, *_: object) -> None:
        if kind is None:
            self.conn.commit()
        else:
            self.conn.rollback()
