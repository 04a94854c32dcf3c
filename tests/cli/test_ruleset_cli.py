"""The ``miaopi ruleset`` and ``miaopi decide`` commands, run as a user runs them."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MIAOPI = [sys.executable, "-m", "api.cli"]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*MIAOPI, *args], cwd=ROOT, capture_output=True, text=True, timeout=120)


def test_validate_accepts_the_shipped_rulesets() -> None:
    """`ruleset validate rulesets` prints OK with the content hash for both versions."""
    result = run("ruleset", "validate", "rulesets")
    assert 0 == result.returncode, result.stderr
    assert "OK talent-housing-subsidy@2016" in result.stdout
    assert "OK talent-housing-subsidy@2026" in result.stdout
    assert "sha256:" in result.stdout


def test_validate_names_file_line_and_column_of_an_error(tmp_path: Path) -> None:
    """A broken condition is reported as file:line:column and the command exits 1."""
    source = (ROOT / "rulesets/talent-housing-subsidy/2016.yaml").read_text(encoding="utf-8")
    broken = source.replace(
        "condition: not subsidy_history.received_before",
        "condition: not subsidy_histroy.received_before",
    )
    folder = tmp_path / "talent-housing-subsidy"
    folder.mkdir()
    path = folder / "2016.yaml"
    path.write_text(broken, encoding="utf-8")
    line = next(i for i, text in enumerate(broken.splitlines(), 1) if "subsidy_histroy" in text)
    column = broken.splitlines()[line - 1].index("subsidy_histroy") + 1
    result = run("ruleset", "validate", str(path))
    assert 1 == result.returncode
    assert f"{path}:{line}:{column}:" in result.stderr
    assert "did you mean 'subsidy_history.received_before'" in result.stderr


def test_ruleset_test_runs_every_named_example() -> None:
    """`ruleset test` runs the examples of both versions and they all pass."""
    result = run("ruleset", "test", "rulesets")
    assert 0 == result.returncode, result.stdout + result.stderr
    assert "48 passed, 0 failed" in result.stdout


def test_ruleset_test_fails_when_an_expectation_is_wrong(tmp_path: Path) -> None:
    """An example whose expected amount is wrong makes `ruleset test` fail and say why."""
    source = (ROOT / "rulesets/talent-housing-subsidy/2016.yaml").read_text(encoding="utf-8")
    path = tmp_path / "2016.yaml"
    path.write_text(
        source.replace("outputs: {amount_yuan: 25000}", "outputs: {amount_yuan: 26000}"),
        encoding="utf-8",
    )
    result = run("ruleset", "test", str(path))
    assert 1 == result.returncode
    assert "output amount_yuan: expected 26000, got 25000" in result.stdout


def test_decide_is_a_dry_run_that_prints_the_decision(demo_dir: Path) -> None:
    """`decide FILE` prints the JSON decision and the Chinese explanation."""
    sample = demo_dir / "applications" / "approved-master-2016.json"
    result = run("decide", str(sample), "--data-dir", str(demo_dir))
    assert 0 == result.returncode, result.stderr
    decision = json.loads(result.stdout[: result.stdout.index("\n}\n") + 2])
    assert "APPROVED" == decision["outcome"]
    assert 25000 == decision["outputs"]["amount_yuan"]
    assert "予以批准" in result.stdout


def test_decide_refuses_an_application_dated_in_the_future_as_the_service_does(
    demo_dir: Path, tmp_path: Path
) -> None:
    """A dry run applies the service's date window: a date next year is refused (exit 2,
    the window's message on stderr), never decided."""
    body = json.loads(
        (demo_dir / "applications" / "approved-master-2016.json").read_text(encoding="utf-8")
    )
    body["submitted_at"] = f"{dt.date.today().year + 1}-03-01T10:00:00+08:00"
    path = tmp_path / "future.json"
    path.write_text(json.dumps(body, ensure_ascii=False), encoding="utf-8")
    result = run("decide", str(path), "--data-dir", str(demo_dir))
    assert 2 == result.returncode, result.stdout
    assert "" == result.stdout
    assert "future" in result.stderr


def test_decide_refuses_a_file_that_is_not_an_application(tmp_path: Path) -> None:
    """A malformed application file is refused with exit code 2 and a message."""
    path = tmp_path / "bad.json"
    path.write_text("{not json", encoding="utf-8")
    result = run("decide", str(path))
    assert 2 == result.returncode
    assert "cannot read the application" in result.stderr


def test_audit_schema_prints_the_record_json_schema() -> None:
    """`audit schema` prints the generated JSON Schema of ExplanationRecordV1 with its hash fields."""
    result = run("audit", "schema")
    assert 0 == result.returncode, result.stderr
    schema = json.loads(result.stdout)
    assert "ExplanationRecordV1" == schema["title"]
    assert {"prev_hash", "record_hash", "ruleset_hash", "criteria", "evidence"} <= set(
        schema["properties"]
    )
