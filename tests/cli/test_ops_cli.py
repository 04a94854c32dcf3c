"""The CLI as an operator meets it: --version, one-line errors instead of tracebacks, read-only
commands that create nothing, progress bars on stderr only."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import uuid
from importlib import metadata
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from support import TEST_SECRET_KEY, bearer, make_key, signing_key_path

from api.app import create_app
from api.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
ERROR_LINE = re.compile(r"^错误 / error: .+ / .+ — 提示 / hint: .+ / .+$")


def run(
    *args: str, cwd: Path = ROOT, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``python -m api.cli ARGS`` with no MIAOPI_* or DATABASE_URL from our environment."""
    clean = {
        k: v for k, v in os.environ.items() if not k.startswith("MIAOPI_") and k != "DATABASE_URL"
    }
    return subprocess.run(
        [sys.executable, "-m", "api.cli", *args],
        cwd=cwd,
        env={**clean, **(env or {})},
        capture_output=True,
        text=True,
        timeout=180,
    )


def assert_one_line_error(result: subprocess.CompletedProcess[str], code: int) -> str:
    """Exit ``code``, nothing on stdout, exactly one line on stderr in the error shape."""
    assert "Traceback" not in result.stderr + result.stdout
    assert code == result.returncode, result.stderr
    assert "" == result.stdout
    lines = result.stderr.strip().splitlines()
    assert 1 == len(lines), result.stderr
    assert ERROR_LINE.match(lines[0]), lines[0]
    return lines[0]


@pytest.mark.parametrize("flag", ["--version", "-V"])
def test_version_prints_miaopi_and_durable_rules_versions(flag: str) -> None:
    """`miaopi --version` and `-V`: one line with both versions, exit 0."""
    result = run(flag)
    assert 0 == result.returncode
    expected = (
        f"miaopi {metadata.version('miaopi')} (durable_rules {metadata.version('durable-rules')})\n"
    )
    assert expected == result.stdout


@pytest.fixture(scope="module")
def pg_refused() -> str:
    """A PostgreSQL URL nobody answers at (port 1), with a password that must not be shown."""
    return "postgresql+psycopg://miaopi:s3cret-pw@127.0.0.1:1/miaopi"


@pytest.mark.parametrize(
    ("args", "env", "code", "says"),
    [
        pytest.param(
            ["audit", "verify", "--database-url", "mysql+nodriver://h/db"],
            {},
            2,
            "invalid database URL",
            id="unknown database scheme",
        ),
        pytest.param(
            ["audit", "verify", "--database-url", "var/miaopi.db"],
            {},
            2,
            "invalid database URL",
            id="not a URL",
        ),
        pytest.param(
            ["keys", "create", "--role", "platform", "--database-url", "mysql://h/db"],
            {},
            2,
            "is not installed",
            id="database driver missing",
        ),
        pytest.param(
            ["audit", "verify", "--database-url", "PG"],
            {},
            1,
            "cannot open or use the database",
            id="unreachable database server",
        ),
        pytest.param(
            ["audit", "verify", "--database-url", "sqlite:///no/such.db"],
            {},
            2,
            "no database at no/such.db",
            id="missing SQLite file, read-only",
        ),
        pytest.param(
            [
                "serve",
                "--rulesets",
                "rulesets",
                "--data-dir",
                "DEMO",
                "--database-url",
                "sqlite:///",
            ],
            {},
            2,
            "MIAOPI_PSEUDONYM_KEY",
            id="missing secrets",
        ),
        pytest.param(
            ["decide", "DEMO/applications/approved-master-2016.json", "--data-dir", "/no/data"],
            {},
            2,
            "no registry data folder at /no/data",
            id="bad data folder",
        ),
        pytest.param(
            ["ruleset", "list", "--rulesets", "/no/rulesets"],
            {},
            2,
            "no rulesets folder at /no/rulesets",
            id="bad rulesets folder",
        ),
        pytest.param(
            ["ruleset", "list", "--data-dir", "DEMO"],
            {"MIAOPI_MAX_BODY_BYTES": "lots"},
            2,
            "max_body_bytes",
            id="invalid setting",
        ),
        pytest.param(
            ["audit", "verify", "--database-url", "sqlite:///DB", "--checkpoint", "/no/cp.json"],
            {},
            2,
            "cannot read the checkpoint /no/cp.json",
            id="unreadable checkpoint",
        ),
        pytest.param(
            ["keys", "public-key", "DEMO/demo.json"],
            {},
            2,
            "cannot read the signing key",
            id="unreadable signing key",
        ),
        pytest.param(
            ["decide", "/no/application.json", "--data-dir", "DEMO"],
            {},
            2,
            "cannot read the application /no/application.json",
            id="unreadable application",
        ),
        pytest.param(
            ["ruleset", "validate", "/no/ruleset.yaml"],
            {},
            2,
            "not found: /no/ruleset.yaml",
            id="missing ruleset",
        ),
        pytest.param(
            ["keys", "create", "--role", "boss", "--database-url", "sqlite:///DB"],
            {},
            2,
            "unknown role 'boss'",
            id="unknown role",
        ),
    ],
)
def test_each_error_family_is_one_line_with_a_hint_and_no_traceback(
    args: list[str],
    env: dict[str, str],
    code: int,
    says: str,
    pg_refused: str,
    demo_dir: Path,
    tmp_path: Path,
) -> None:
    """What a user gets wrong is one line `错误 / error: … — 提示 / hint: …` on stderr, exit 2
    for a usage mistake and 1 for a failure while running; a password is never shown."""
    db = tmp_path / "k.db"
    make_key(f"sqlite:///{db}", "ops")
    args = [
        a.replace("DEMO", str(demo_dir)).replace("PG", pg_refused).replace("DB", str(db))
        for a in args
    ]
    line = assert_one_line_error(run(*args, env=env), code)
    assert says in line
    assert "s3cret-pw" not in line


def test_a_non_utf8_ruleset_is_reported_in_one_line_without_a_traceback(tmp_path: Path) -> None:
    """`ruleset validate` on a file that is not UTF-8 names the file; exit 1, no traceback."""
    path = tmp_path / "2016.yaml"
    path.write_bytes(b"\xff\xfeservice: x\n")
    result = run("ruleset", "validate", str(path), "--registries", "rulesets/registries.yaml")
    assert 1 == result.returncode
    assert "Traceback" not in result.stderr
    assert f"{path}: 文件不是UTF-8编码 / not UTF-8" in result.stderr


@pytest.mark.parametrize("how", ["--debug", "MIAOPI_DEBUG=1"])
def test_debug_shows_the_traceback(how: str) -> None:
    """With --debug or MIAOPI_DEBUG=1 the same mistake shows the whole traceback."""
    args = ["audit", "verify", "--database-url", "mysql+nodriver://h/db"]
    if how == "--debug":
        result = run("--debug", *args)
    else:
        result = run(*args, env={"MIAOPI_DEBUG": "1"})
    assert 1 == result.returncode
    assert "Traceback" in result.stderr
    assert "NoSuchModuleError" in result.stderr


READ_ONLY = [
    ["audit", "verify"],
    ["audit", "export"],
    ["audit", "replay"],
    ["keys", "list"],
    ["log", "checkpoint"],
]


@pytest.mark.parametrize("args", READ_ONLY, ids=" ".join)
@pytest.mark.parametrize("where", ["default", "explicit"])
def test_a_read_only_command_on_a_missing_sqlite_database_creates_nothing(
    args: list[str], where: str, tmp_path: Path
) -> None:
    """In an empty folder, with the default database (var/miaopi.db) or one named in a folder
    that does not exist: one line, exit 2, and no file or folder appears (no var/, no secrets)."""
    work = tmp_path / "work"
    work.mkdir()
    rulesets = ["--rulesets", str(ROOT / "rulesets")] if args[1] == "replay" else []
    url = ["--database-url", f"sqlite:///{work}/sub/x.db"] if where == "explicit" else []
    line = assert_one_line_error(run(*args, *url, *rulesets, cwd=work), 2)
    assert "no database at" in line
    assert [] == list(work.rglob("*"))


@pytest.mark.parametrize("where", ["default", "explicit"])
def test_revoking_a_key_in_a_missing_sqlite_database_creates_nothing(
    where: str, tmp_path: Path
) -> None:
    """No database, so no such key: one line, exit 1, and no file or folder appears."""
    work = tmp_path / "work"
    work.mkdir()
    url = ["--database-url", f"sqlite:///{work}/sub/x.db"] if where == "explicit" else []
    line = assert_one_line_error(run("keys", "revoke", "mpk_0000", *url, cwd=work), 1)
    assert "no key mpk_0000" in line and "no database at" in line
    assert [] == list(work.rglob("*"))


def test_receipt_verify_without_a_key_creates_nothing(tmp_path: Path) -> None:
    """`receipt verify` in an empty folder: one line, exit 2, nothing made."""
    work = tmp_path / "work"
    work.mkdir()
    assert_one_line_error(run("receipt", "verify", "r.json", cwd=work), 2)
    assert [] == list(work.rglob("*"))


# --- progress bars ------------------------------------------------------------------------


def test_demo_generate_shows_a_bar_on_stderr_when_forced_and_keeps_stdout_clean(
    tmp_path: Path,
) -> None:
    """MIAOPI_PROGRESS=1: the bar (its steps and 100%) is on stderr; stdout is the summary JSON
    alone. Without it (not a terminal) stderr stays empty."""
    forced = run(
        "demo", "generate", "--out", str(tmp_path / "a"), "--people", "3000",
        env={"MIAOPI_PROGRESS": "1"},
    )  # fmt: skip
    assert 0 == forced.returncode, forced.stderr
    summary = json.loads(forced.stdout)
    assert 3000 == summary["people"]
    assert "\x1b" not in forced.stdout
    assert "写入登记库文件 / files" in forced.stderr and "100%" in forced.stderr
    quiet = run("demo", "generate", "--out", str(tmp_path / "b"), "--people", "3000")
    assert 0 == quiet.returncode
    assert "" == quiet.stderr
    assert summary == json.loads(quiet.stdout)


@pytest.fixture(scope="module")
def stored(tmp_path_factory: pytest.TempPathFactory, demo_dir: Path) -> tuple[str, int]:
    """A SQLite database holding the decisions of 30 bulk applications (through the API)."""
    db = tmp_path_factory.mktemp("cli-db") / "m.db"
    settings = Settings(
        data_dir=demo_dir,
        rulesets_dir=ROOT / "rulesets",
        database_url=f"sqlite:///{db}",
        pseudonym_key=TEST_SECRET_KEY,
        signing_key_file=signing_key_path(),
    )
    app = create_app(settings)
    key = make_key(settings.database_url, "platform")
    lines = (demo_dir / "applications.jsonl").read_text(encoding="utf-8").splitlines()[:30]
    try:
        with TestClient(app, headers=bearer(key)) as c:
            for line in lines:
                body = json.loads(line)
                r = c.post(
                    "/v1/decisions", json=body, headers={"Idempotency-Key": uuid.uuid4().hex}
                )
                assert 201 == r.status_code, r.text
    finally:
        app.state.service.close()
        app.state.service.store.dispose()
    return settings.database_url, len(lines)


@pytest.mark.parametrize("command", [["audit", "export"], ["audit", "verify"]], ids=" ".join)
def test_audit_bars_go_to_stderr_and_data_to_stdout(
    command: list[str], stored: tuple[str, int]
) -> None:
    """With bars forced, `audit export` writes exactly the records as JSON lines on stdout and
    `audit verify` its verdict; the bar is on stderr only."""
    url, n = stored
    key = ["--public-key", str(signing_key_path())] if command[1] == "verify" else []
    result = run(*command, "--database-url", url, *key, env={"MIAOPI_PROGRESS": "1"})
    assert 0 == result.returncode, result.stderr
    assert "\x1b" not in result.stdout and "100%" in result.stderr
    if command[1] == "export":
        records = [json.loads(line) for line in result.stdout.splitlines()]
        assert list(range(1, n + 1)) == [r["seq"] for r in records]
        assert all(r["record"]["decision_id"] and r["record_hash"] for r in records)
        assert "导出记录 / exporting records" in result.stderr
    else:
        assert f"校验通过 / verified: {n} records" in result.stdout
        assert "校验记录 / verifying records" in result.stderr


def test_audit_export_to_a_file_refuses_to_overwrite(
    stored: tuple[str, int], tmp_path: Path
) -> None:
    """`audit export --out FILE` writes the file once; a second run refuses in one line."""
    url, n = stored
    out = tmp_path / "records.jsonl"
    first = run("audit", "export", "--database-url", url, "--out", str(out))
    assert 0 == first.returncode, first.stderr
    assert n == len(out.read_text(encoding="utf-8").splitlines())
    assert_one_line_error(run("audit", "export", "--database-url", url, "--out", str(out)), 2)


def test_keys_create_on_a_fresh_database_prints_only_the_key_on_stdout(tmp_path: Path) -> None:
    """Scripts read the new key from stdout (the crash harness does): creating the schema on
    the way logs nothing there, and the human note goes to stderr."""
    result = run(
        "keys", "create", "--role", "platform", "--label", "script",
        "--database-url", f"sqlite:///{tmp_path / 'fresh.db'}",
    )  # fmt: skip
    assert 0 == result.returncode, result.stderr
    assert re.fullmatch(r"mpk_[0-9a-f]{12}_[A-Za-z0-9_-]+\n", result.stdout), result.stdout
    assert "schema_upgraded" not in result.stdout


def test_a_key_made_on_the_command_line_is_revoked_there(tmp_path: Path) -> None:
    """create, then revoke by its id: exit 0, and the listing shows it revoked."""
    url = ["--database-url", f"sqlite:///{tmp_path / 'keys.db'}"]
    made = run("keys", "create", "--role", "reviewer", *url)
    key_id = made.stdout.strip().split("_")[1]  # mpk_<id>_<secret>
    revoked = run("keys", "revoke", key_id, *url)
    assert (0, f"已吊销 / revoked {key_id}\n") == (revoked.returncode, revoked.stdout)
    listed = run("keys", "list", *url)
    assert key_id in listed.stdout and "revoked" in listed.stdout


def test_logging_writes_to_the_stderr_of_the_moment_even_after_a_captured_one_closed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A command run in-process (a CLI runner, an embedding application) configures logging
    while stderr is a buffer it closes afterwards. Later log lines go to the stderr in place
    then, masked, and never raise in the code that logs (it failed 16 registry tests in CI)."""
    import io

    import structlog

    from api.logging import configure_logging

    captured = io.StringIO()
    monkeypatch.setattr(sys, "stderr", captured)
    configure_logging("WARNING")
    captured.close()
    later = io.StringIO()
    monkeypatch.setattr(sys, "stderr", later)
    try:
        structlog.get_logger("t").warning("adapter_failed", id_number="440301199001011234")
    finally:
        configure_logging("INFO")  # as the application configures it
    line = json.loads(later.getvalue())
    assert "adapter_failed" == line["event"] and "440301199001011234" not in later.getvalue()
