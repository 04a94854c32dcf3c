"""The schema is made and changed only by the shipped migrations, on SQLite and PostgreSQL."""

from __future__ import annotations

import importlib
import json
import pkgutil
import re
import shutil
import sqlite3
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from fastapi.testclient import TestClient
from sqlmodel import SQLModel
from support import server_env

import api
import explanations
from api.app import create_app
from api.auth import KeyStore
from api.settings import Settings
from explanations import DecisionStore, migrate, text_hash
from explanations.log import load_public_keys

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "schema-429ccb6"
EXPECTED = json.loads((FIXTURE / "expected.json").read_text(encoding="utf-8"))
TABLES = [
    "api_keys", "chain_head", "decisions", "explanation_records", "log_heads", "log_nodes",
    "review_cases", "staff_actions",
]  # fmt: skip
BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]

Cli = Callable[..., "subprocess.CompletedProcess[str]"]


# --- helpers ------------------------------------------------------------------------------


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """``sqlite`` or ``postgres``."""
    name: str = request.param
    return name


@pytest.fixture
def empty_url(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    """An empty database of ``backend``: a SQLite file not yet made, or a fresh schema."""
    if backend == "sqlite":
        return f"sqlite:///{tmp_path}/m.db"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
def legacy_url(backend: str, empty_url: str) -> str:
    """A database made by the code before migrations (the fixture of commit 429ccb6)."""
    load_fixture(backend, empty_url)
    return empty_url


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


def schema_name(url: str) -> str:
    """The schema a test's PostgreSQL URL puts first on the ``search_path``."""
    options = sa.engine.make_url(url).query["options"]
    assert isinstance(options, str)
    return options.split("search_path=", 1)[1]


def load_fixture(backend: str, url: str) -> None:
    """Load the fixture's dump of ``backend`` into the empty database at ``url``."""
    if backend == "sqlite":
        path = sa.engine.make_url(url).database
        assert path is not None
        con = sqlite3.connect(path)
        con.executescript((FIXTURE / "sqlite.sql").read_text(encoding="utf-8"))
        con.close()
        return
    schema = schema_name(url)
    dump = (FIXTURE / "postgres.sql").read_text(encoding="utf-8")
    dump = dump.replace(f"CREATE SCHEMA {EXPECTED['postgres_schema']};", "")
    dump = dump.replace(f"{EXPECTED['postgres_schema']}.", f"{schema}.")
    libpq = sa.engine.make_url(url).set(drivername="postgresql", query={})
    subprocess.run(
        ["psql", "-q", "-v", "ON_ERROR_STOP=1", libpq.render_as_string(hide_password=False)],
        input=dump,
        text=True,
        check=True,
        capture_output=True,
    )


def all_rows(url: str) -> dict[str, list[tuple[str | None, ...]]]:
    """Every row of every table, each value as text, in key order."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            inspector = sa.inspect(conn)
            rows = {}
            for table in TABLES:
                columns = [c["name"] for c in inspector.get_columns(table)]
                order = inspector.get_pk_constraint(table)["constrained_columns"]
                query = sa.text(
                    "SELECT "
                    + ", ".join(f"CAST({c} AS TEXT)" for c in columns)
                    + f" FROM {table} ORDER BY "
                    + ", ".join(order)
                )
                rows[table] = [tuple(r) for r in conn.execute(query)]
            return rows
    finally:
        engine.dispose()


def model_metadata() -> sa.MetaData:
    """Every table model of the product (every module of ``api`` and ``explanations``)."""
    for package in (api, explanations):
        for module in pkgutil.iter_modules(package.__path__):
            if module.name not in {"main", "migrations"}:  # main builds an app from the env
                importlib.import_module(f"{package.__name__}.{module.name}")
    return SQLModel.metadata


def schema_of(url: str) -> list[tuple[str, ...]]:
    """The schema as the database describes it: tables, columns, types, keys, indexes.

    ``alembic_version`` left out; on PostgreSQL the schema's own name is replaced by ``S``.
    """
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            if conn.dialect.name == "sqlite":
                rows = conn.execute(
                    sa.text(
                        "SELECT type, name, tbl_name, sql FROM sqlite_master "
                        "WHERE tbl_name <> 'alembic_version' ORDER BY type, name"
                    )
                )
                return [(t, n, tb, " ".join((sql or "").split())) for t, n, tb, sql in rows]
            schema = conn.execute(sa.text("SELECT current_schema()")).scalar_one()
            queries = [
                "SELECT table_name, column_name, data_type, "
                "CAST(character_maximum_length AS TEXT), is_nullable, column_default "
                "FROM information_schema.columns WHERE table_schema = :s "
                "AND table_name <> 'alembic_version' ORDER BY table_name, ordinal_position",
                "SELECT tablename, indexname, indexdef FROM pg_indexes WHERE schemaname = :s "
                "AND tablename <> 'alembic_version' ORDER BY tablename, indexname",
                "SELECT table_name, constraint_name, constraint_type "
                "FROM information_schema.table_constraints WHERE table_schema = :s "
                "AND table_name <> 'alembic_version' AND constraint_type <> 'CHECK' "
                "ORDER BY table_name, constraint_name",
                "SELECT sequence_name, data_type, start_value, increment "
                "FROM information_schema.sequences WHERE sequence_schema = :s "
                "ORDER BY sequence_name",
            ]
            found = []
            for q in queries:
                for row in conn.execute(sa.text(q), {"s": schema}):
                    found.append(tuple(re.sub(rf"\b{schema}\.", "S.", str(v)) for v in row))
            return found
    finally:
        engine.dispose()


# --- the baseline is today's schema ------------------------------------------------------------


def test_an_empty_database_migrated_to_head_matches_the_table_models(empty_url: str) -> None:
    """Alembic's autogenerate comparison finds no difference between the migrated database
    and the models: every table, column, type, nullability, index and unique index."""
    migrate.upgrade(empty_url)
    engine = sa.create_engine(empty_url)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            differences = compare_metadata(context, model_metadata())
            tables = set(sa.inspect(conn).get_table_names())
    finally:
        engine.dispose()
    assert [] == differences
    assert {*TABLES, "alembic_version"} == tables


def test_the_baseline_makes_exactly_the_schema_create_all_made_before(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """Column by column, index by index (and on PostgreSQL sequence by sequence), a database
    migrated from empty is the database the code before migrations made."""
    if backend == "sqlite":
        legacy, fresh = f"sqlite:///{tmp_path}/old.db", f"sqlite:///{tmp_path}/new.db"
    else:
        legacy = request.getfixturevalue("postgres_url")
        fresh = _another_schema(request, legacy)
    load_fixture(backend, legacy)
    migrate.upgrade(fresh)
    assert schema_of(legacy) == schema_of(fresh)
    assert len(schema_of(fresh)) > 8


def _another_schema(request: pytest.FixtureRequest, url: str) -> str:
    """A second fresh PostgreSQL schema beside ``url``'s, dropped after the test."""
    schema = schema_name(url) + "_b"
    admin = sa.create_engine(url)
    with admin.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))

    def drop() -> None:
        with admin.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        admin.dispose()

    request.addfinalizer(drop)
    return url.replace(f"search_path%3D{schema_name(url)}", f"search_path%3D{schema}")


def test_the_migrated_database_starts_its_chain_at_the_genesis_row(empty_url: str) -> None:
    """The baseline writes the chain's head (seq 0, the all-zero hash) and records revision
    0001; the first append links to it."""
    done = migrate.upgrade(empty_url)
    assert (None, False, "0001") == (done.before.revision, done.before.legacy, done.after)
    engine = sa.create_engine(empty_url)
    try:
        with engine.connect() as conn:
            head = conn.execute(sa.text("SELECT id, seq, record_hash FROM chain_head")).all()
    finally:
        engine.dispose()
    assert [(1, 0, "sha256:" + "0" * 64)] == [tuple(r) for r in head]


# --- upgrade: empty, today's schema, at head, newer --------------------------------------------


def test_upgrade_from_todays_schema_keeps_every_record_verifiable(
    backend: str,
    legacy_url: str,
    miaopi: Cli,
    demo_dir: Path,
    rulesets_dir: Path,
) -> None:
    """`miaopi db upgrade` (a process) adopts the database the code before migrations made:
    every row reads back unchanged, every record still hashes to its stored hash,
    `miaopi audit verify` passes with the log's public key and the checkpoint saved
    before, and the service then appends to the same chain."""
    expected = EXPECTED[backend]
    before = all_rows(legacy_url)
    assert expected["counts"] == {t: len(r) for t, r in before.items()}
    assert 1 == miaopi("db", "current", "--database-url", legacy_url).returncode

    upgraded = miaopi("db", "upgrade", "--database-url", legacy_url)

    assert 0 == upgraded.returncode, upgraded.stderr
    assert "adopted the database from before migrations and upgraded it to 0001" in upgraded.stdout
    assert before == all_rows(legacy_url)
    store = DecisionStore(legacy_url)
    try:
        for want in expected["records"]:
            record = store.get_any_record(want["decision_id"])
            assert record is not None
            assert (want["seq"], want["record_hash"]) == (record.seq, record.record_hash)
        stored = {r.decision_id: r for r in store.iter_records()}
        assert [w["decision_id"] for w in expected["records"]] == list(stored)
        for want in expected["records"]:
            row = stored[want["decision_id"]]
            assert want["record_hash"] == row.record_hash == text_hash(row.record_json)
    finally:
        store.dispose()
    checkpoints = FIXTURE / f"checkpoints-{backend}.jsonl"
    verify = ("audit", "verify", "--database-url", legacy_url)
    keys = ("--public-key", FIXTURE / "public-key.pem", "--checkpoint", checkpoints)
    verified = miaopi(*verify, *keys)
    assert 0 == verified.returncode, verified.stdout + verified.stderr
    assert (
        "verified: 35 records, chain and log intact, signatures checked, consistent with 1 "
        "saved checkpoint(s)"
    ) in verified.stdout
    assert 0 == miaopi("db", "current", "--database-url", legacy_url).returncode

    # The service starts on it (no schema work left) and extends the same chain and log.
    app = create_app(
        Settings(
            data_dir=demo_dir,
            rulesets_dir=rulesets_dir,
            database_url=legacy_url,
            pseudonym_key=EXPECTED["pseudonym_key"],
            signing_key_file=FIXTURE / "signing-key.pem",
            migrate=False,
        )
    )
    try:
        platform = KeyStore(app.state.ctx.store.engine).create("platform")[1]
        body = json.loads((demo_dir / "applications" / "approved-old-age-90.json").read_text())
        with TestClient(app) as client:
            answer = client.post(
                "/v1/decisions",
                json={**body, "application_id": "after-upgrade"},
                headers={"Authorization": f"Bearer {platform}", "Idempotency-Key": "after-1"},
            )
        assert 201 == answer.status_code, answer.text
        count, problems = app.state.ctx.store.verify(
            keys=load_public_keys([FIXTURE / "public-key.pem"])
        )
    finally:
        app.state.service.close()
        app.state.ctx.store.dispose()
    assert (36, []) == (count, problems)
    verified = miaopi(*verify, *keys)
    assert 0 == verified.returncode, verified.stdout + verified.stderr


def test_a_database_at_head_is_only_read(empty_url: str, miaopi: Cli) -> None:
    """The second upgrade finds the database at head and changes nothing."""
    migrate.upgrade(empty_url)
    rows = all_rows(empty_url)
    done = migrate.upgrade(empty_url)
    assert ("0001", False) == (done.before.revision, done.changed)
    again = miaopi("db", "upgrade", "--database-url", empty_url)
    assert (0, "数据库已是最新 / already at head: 0001\n") == (again.returncode, again.stdout)
    assert rows == all_rows(empty_url)


def test_a_database_a_newer_program_migrated_is_refused(empty_url: str, miaopi: Cli) -> None:
    """A revision this program does not ship is not touched: upgrade and `--no-migrate` refuse."""
    migrate.upgrade(empty_url)
    engine = sa.create_engine(empty_url)
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE alembic_version SET version_num = '9999'"))
    engine.dispose()
    with pytest.raises(migrate.SchemaNotCurrent) as refused:
        migrate.upgrade(empty_url)
    assert "revision 9999 is newer than this program's head 0001" in str(refused.value)
    shown = miaopi("db", "upgrade", "--database-url", empty_url)
    assert 1 == shown.returncode
    assert 1 == len(shown.stderr.splitlines()), shown.stderr
    assert "9999" == migrate.current(empty_url).revision


def test_the_baseline_adds_the_tables_an_old_database_lacked(tmp_path: Path) -> None:
    """A database only `miaopi keys create` had touched before migrations may lack some tables:
    the baseline keeps the tables it finds (and their rows) and adds the others."""
    url = f"sqlite:///{tmp_path}/partial.db"
    con = sqlite3.connect(tmp_path / "partial.db")
    dump = (FIXTURE / "sqlite.sql").read_text(encoding="utf-8")
    con.executescript(dump)
    con.executescript("DROP TABLE review_cases; DROP TABLE staff_actions;")
    con.close()
    keys_before = all_rows_of(url, "api_keys")
    done = migrate.upgrade(url)
    assert (True, "0001") == (done.before.legacy, done.after)
    assert keys_before == all_rows_of(url, "api_keys")
    assert schema_of(url) == schema_of(_fresh_sqlite(tmp_path))


def all_rows_of(url: str, table: str) -> list[tuple[Any, ...]]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return [tuple(r) for r in conn.execute(sa.text(f"SELECT * FROM {table}"))]
    finally:
        engine.dispose()


def _fresh_sqlite(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path}/fresh.db"
    migrate.upgrade(url)
    return url


def test_a_following_revision_runs_after_the_baseline_on_an_old_database(
    legacy_url: str, tmp_path: Path
) -> None:
    """With a second revision shipped, a database from before migrations is adopted at the
    baseline and then upgraded by the next revision, in one step, its rows kept."""
    location = tmp_path / "migrations"
    shutil.copytree(
        Path(migrate.__file__).parent / "migrations",
        location,
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    (location / "versions" / "0002_add_a_note.py").write_text(
        '"""Add a note table."""\n'
        "import sqlalchemy as sa\n"
        "from alembic import op\n\n"
        'revision = "0002"\n'
        'down_revision = "0001"\n'
        "branch_labels = None\n"
        "depends_on = None\n\n\n"
        "def upgrade() -> None:\n"
        '    op.create_table("notes", sa.Column("id", sa.Integer(), primary_key=True))\n'
        '    with op.batch_alter_table("api_keys") as batch:\n'
        '        batch.add_column(sa.Column("note", sa.String(length=20), nullable=True))\n',
        encoding="utf-8",
    )
    before = all_rows(legacy_url)
    done = migrate.upgrade(legacy_url, script_location=str(location))
    assert (None, True, "0002") == (done.before.revision, done.before.legacy, done.after)
    assert "0002" == migrate.current(legacy_url, script_location=str(location)).revision
    engine = sa.create_engine(legacy_url)
    try:
        with engine.connect() as conn:
            inspector = sa.inspect(conn)
            assert "notes" in inspector.get_table_names()
            assert "note" in [c["name"] for c in inspector.get_columns("api_keys")]
            keys = conn.execute(sa.text("SELECT id, role, note FROM api_keys ORDER BY id")).all()
    finally:
        engine.dispose()
    assert sorted((r[0], r[2], None) for r in before["api_keys"]) == sorted(
        (k.id, k.role, k.note) for k in keys
    )
    assert before["decisions"] == all_rows(legacy_url)["decisions"]


# --- several at once -----------------------------------------------------------------------------


def test_eight_upgrades_at_the_same_instant_on_an_empty_database_all_succeed(
    empty_url: str,
) -> None:
    """Eight threads, each with its own connection, upgrade one empty database at once: none
    fails, exactly one did the work, the schema is whole and has one genesis row."""
    barrier = threading.Barrier(8)
    results: list[migrate.Upgraded] = []
    errors: list[BaseException] = []

    def run() -> None:
        barrier.wait()
        try:
            results.append(migrate.upgrade(empty_url))
        except BaseException as exc:  # collected: a failure in any thread fails the test
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert [] == errors
    assert 8 == len(results)
    assert ["0001"] * 8 == [r.after for r in results]
    assert 1 == sum(r.changed for r in results)
    assert [(1, 0, "sha256:" + "0" * 64)] == all_rows_of(empty_url, "chain_head")
    assert {*TABLES, "alembic_version"} == set(_tables(empty_url))


def _tables(url: str) -> list[str]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return sa.inspect(conn).get_table_names()
    finally:
        engine.dispose()


# --- the command line ----------------------------------------------------------------------------


def test_db_current_creates_no_database_file(tmp_path: Path, miaopi: Cli) -> None:
    """`miaopi db current` on a missing SQLite file says so in one line and makes no file."""
    path = tmp_path / "absent" / "none.db"
    shown = miaopi("db", "current", "--database-url", f"sqlite:///{path}")
    assert 2 == shown.returncode
    (line,) = shown.stderr.splitlines()  # one line, in the CLI's error shape
    assert line.startswith("错误 / error:") and f"no database at {path}" in line
    assert not path.parent.exists()


@pytest.mark.postgres
def test_db_current_on_an_empty_postgres_schema_creates_no_table(
    postgres_url: str, miaopi: Cli
) -> None:
    """On an empty schema `miaopi db current` says it is empty (exit 1) and leaves it empty;
    after `miaopi db upgrade` it shows the head (exit 0)."""
    shown = miaopi("db", "current", "--database-url", postgres_url)
    assert 1 == shown.returncode
    assert "empty, head is 0001" in shown.stdout
    engine = sa.create_engine(postgres_url)
    with engine.connect() as conn:
        assert [] == sa.inspect(conn).get_table_names()
    engine.dispose()
    upgraded = miaopi("db", "upgrade", "--database-url", postgres_url)
    assert (0, "已升级 / upgraded: (empty) → 0001 (head)\n") == (
        upgraded.returncode,
        upgraded.stdout,
    )
    shown = miaopi("db", "current", "--database-url", postgres_url)
    assert (0, "0001 (head)") == (shown.returncode, shown.stdout.split(" 数据库")[0])


def test_serve_no_migrate_refuses_an_old_schema_in_one_line(
    tmp_path: Path, miaopi_bin: Path, demo_dir: Path
) -> None:
    """`miaopi serve --no-migrate` on a database from before migrations does not start: one
    line names the state and the command to run; the database is left as it was."""
    url = f"sqlite:///{tmp_path}/old.db"
    load_fixture("sqlite", url)
    before = all_rows(url)
    result = subprocess.run(
        [
            str(miaopi_bin), "serve", "--no-migrate", "--port", "1", "--data-dir", str(demo_dir),
            "--database-url", url,
        ],
        env=server_env(url),
        capture_output=True,
        text=True,
        timeout=120,
    )  # fmt: skip
    assert 2 == result.returncode
    assert 1 == len(result.stderr.splitlines()), result.stderr
    assert "run `miaopi db upgrade` first" in result.stderr
    assert "tables from before migrations" in result.stderr
    assert before == all_rows(url)
