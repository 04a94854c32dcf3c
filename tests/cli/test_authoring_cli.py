"""The authoring tools as a policy officer uses them: `miaopi ruleset validate|test|diff|list|
schema` and `miaopi decide`, each run as a subprocess from the project folder."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest

from engine.model import HIT_POLICIES

ROOT = Path(__file__).resolve().parents[2]
MIAOPI = [sys.executable, "-m", "api.cli"]
MINIMAL_V2 = ROOT / "tests" / "engine" / "fixtures" / "minimal_v2.yaml"
BROKEN = ROOT / "tests" / "engine" / "fixtures" / "invalid_v2" / "evidence_unknown_registry.yaml"


def run(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*MIAOPI, *map(str, args)], cwd=ROOT, capture_output=True, text=True, timeout=120
    )


def minimal_v2() -> str:
    return MINIMAL_V2.read_text(encoding="utf-8")


def edited(text: str, *changes: tuple[str, str]) -> str:
    """``text`` with each ``(old, new)`` replaced; every ``old`` must occur exactly once."""
    for old, new in changes:
        assert 1 == text.count(old), old
        text = text.replace(old, new)
    return text


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def demo_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Demo registries for 50 people and the samples, made with `miaopi demo generate`."""
    out = tmp_path_factory.mktemp("demo-cli")
    result = run("demo", "generate", "--out", out, "--people", "50")
    assert 0 == result.returncode, result.stderr
    return out


# --- validate ---------------------------------------------------------------------------


def test_validating_a_service_folder_prints_an_ok_line_per_version() -> None:
    """`ruleset validate rulesets/<service>/` says OK for each version in the folder."""
    result = run("ruleset", "validate", "rulesets/talent-housing-subsidy/")
    assert 0 == result.returncode, result.stderr
    ok_lines = [line for line in result.stdout.splitlines() if line.startswith("OK ")]
    assert ["talent-housing-subsidy@2016", "talent-housing-subsidy@2026"] == [
        line.split()[1] for line in ok_lines
    ]


def test_a_draft_under_any_name_in_any_folder_validates(tmp_path: Path) -> None:
    """A draft saved as my-draft.yaml in an arbitrary folder validates, alone or with its folder."""
    draft = write(tmp_path / "work" / "notes" / "my-draft.yaml", minimal_v2())
    for target in (draft, tmp_path / "work"):
        result = run("ruleset", "validate", target)
        assert (0, "") == (result.returncode, result.stderr), target
        assert result.stdout.startswith("OK minimal-v2@1 draft sha256:"), result.stdout
        assert "注意" not in result.stdout


def test_a_published_file_under_a_wrong_name_validates_with_a_note(tmp_path: Path) -> None:
    """A published file under a wrong name validates, with a note that it would not be served."""
    published = edited(minimal_v2(), ("status: draft", "status: published"))
    path = write(tmp_path / "minimal-v2" / "my-copy.yaml", published)
    result = run("ruleset", "validate", path)
    assert 0 == result.returncode, result.stderr
    assert "OK minimal-v2@1 published" in result.stdout
    assert (
        "my-copy.yaml 须命名为 1.yaml 才会提供服务 / note: served only as 1.yaml" in result.stdout
    )


def test_validation_errors_exit_1_and_read_file_line_column_key_message(tmp_path: Path) -> None:
    """A broken file reads file:line:column: [key] message and exits 1; a good one is still OK."""
    write(tmp_path / "drafts" / "good.yaml", minimal_v2())
    broken = write(tmp_path / "drafts" / "broken.yaml", BROKEN.read_text(encoding="utf-8"))
    result = run("ruleset", "validate", tmp_path / "drafts")
    assert 1 == result.returncode
    assert (
        f"{broken}:25:15: [evidence.population.registry] 登记库目录中没有 'populaton' / "
        "registry 'populaton' is not in the catalogue; did you mean 'population'?"
    ) in result.stderr
    assert "1 个错误 / error(s)" in result.stderr
    assert "OK minimal-v2@1 draft" in result.stdout


# --- test and coverage ------------------------------------------------------------------

COVERAGE_TESTS = """\
  - name: 超过年龄上限的不予批准
    application:
      date: 2026-03-01
      applicant: {id_number: "440304198505010018", name: 测试乙}
      form: {degree: 硕士, children: 0}
    evidence:
      population: {birth_date: 1985-05-01, hukou_city: 深圳市}
      property: {owns_housing: false}
    expect: {outcome: REJECTED, failed: [C1]}
  - name: 人口库无记录的转人工处理
    application:
      date: 2026-03-01
      applicant: {id_number: "440304199505010018", name: 测试甲}
      form: {degree: 硕士, children: 0}
    evidence:
      population: null
      property: {owns_housing: false}
    expect: {outcome: REFERRED, unknown: [C1]}
  - name: 有自有住房的不予批准
    application:
      date: 2026-03-01
      applicant: {id_number: "440304199505010018", name: 测试甲}
      form: {degree: 硕士, children: 0}
    evidence:
      population: {birth_date: 1995-05-01, hukou_city: 深圳市}
      property: {owns_housing: true}
    expect: {outcome: REJECTED, failed: [C2]}
"""


def test_coverage_lists_the_statuses_never_reached_and_the_rules_never_matched(
    tmp_path: Path,
) -> None:
    """The report names C2 as never UNKNOWN and the 本科 rule as never matched, nothing for C1."""
    path = write(tmp_path / "coverage.yaml", minimal_v2() + COVERAGE_TESTS)
    result = run("ruleset", "test", path, "--coverage")
    assert 0 == result.returncode, result.stdout + result.stderr
    lines = [line.strip() for line in result.stdout.splitlines()]
    assert "4 passed, 0 failed" in lines
    assert "条件 / criteria: PASS 2/2, FAIL 2/2, UNKNOWN 1/2" in lines
    assert ["C2 在深圳市无自有住房: 从未 / never UNKNOWN"] == [
        line for line in lines if "从未 / never" in line and line.startswith("C")
    ]
    assert "输出表 / outputs table subsidy (UNIQUE): 1/2 条规则命中过 / rules matched" in lines
    assert '规则 / rule 1 从未命中 / never matched: when form.degree == "本科"' in lines
    assert "全部覆盖 / everything covered" not in lines


def test_coverage_of_the_shipped_rulesets_runs() -> None:
    """`ruleset test rulesets --coverage` passes and reports coverage for every shipped version."""
    result = run("ruleset", "test", "rulesets", "--coverage")
    assert 0 == result.returncode, result.stdout + result.stderr
    reported = [
        line.split()[3]
        for line in result.stdout.splitlines()
        if line.startswith("覆盖率 / coverage")
    ]
    assert [
        "beijing-points-hukou@2018",
        "maternity-allowance@2016",
        "old-age-allowance@2024",
        "talent-housing-subsidy@2016",
        "talent-housing-subsidy@2026",
    ] == reported


TOLERANCE = """\
schema_version: 2
service: tolerance-check
version: "1"
name: {zh: 容差检查, en: Tolerance check}
authority: {zh: 测试机关, en: Test authority}
effective_from: 2026-01-01
status: draft
legal_basis:
  - {id: basis, title: 测试办法, issuer: 测试机关}
inputs:
  - {name: amount, type: number, title: {zh: 金额, en: Amount}}
criteria:
  - id: C1
    title: {zh: 金额为正, en: Positive amount}
    legal_basis: [basis]
    condition: form.amount > 0
    on_fail: reject
    reason: {zh: "金额为{form.amount}元。", en: "The amount is {form.amount}."}
outputs:
  id: payment
  title: {zh: 发放金额, en: Payment}
  legal_basis: [basis]
  hit_policy: UNIQUE
  columns:
    amount_yuan: {type: number, unit: 元}
  rules:
    - then: {amount_yuan: form.amount}
tests:
"""


def tolerance_test(name: str, amount: str, expect: str) -> str:
    return (
        f"  - name: {name}\n"
        f"    application: {{date: 2026-03-01, applicant: {{id_number: "
        f'"440304199505010018", name: 测试甲}}, form: {{amount: {amount}}}}}\n'
        f"    evidence: {{}}\n"
        f"    expect: {{outcome: APPROVED, {expect}}}\n"
    )


@pytest.fixture(scope="module")
def tolerance_run(tmp_path_factory: pytest.TempPathFactory) -> subprocess.CompletedProcess[str]:
    """`ruleset test` on four examples: 1.005 and 1.02 against 1.00 with a tolerance of 0.01,
    written on the output (``{value, tolerance}``) and as ``expect.tolerance``."""
    per_output = "outputs: {amount_yuan: {value: 1.00, tolerance: 0.01}}"
    per_test = "outputs: {amount_yuan: 1.00}, tolerance: 0.01"
    text = TOLERANCE + "".join(
        [
            tolerance_test("output tolerance met", "1.005", per_output),
            tolerance_test("output tolerance exceeded", "1.02", per_output),
            tolerance_test("test tolerance met", "1.005", per_test),
            tolerance_test("test tolerance exceeded", "1.02", per_test),
        ]
    )
    path = write(tmp_path_factory.mktemp("tolerance") / "tolerance.yaml", text)
    return run("ruleset", "test", path)


def test_numeric_expectations_pass_within_their_tolerance_and_fail_outside_it(
    tolerance_run: subprocess.CompletedProcess[str],
) -> None:
    """1.005 meets 1.00 ± 0.01 and 1.02 does not, per output or per test; a miss exits 1."""
    lines = tolerance_run.stdout.splitlines()
    assert [
        "PASS tolerance-check@1: output tolerance met",
        "FAIL tolerance-check@1: output tolerance exceeded",
        "PASS tolerance-check@1: test tolerance met",
        "FAIL tolerance-check@1: test tolerance exceeded",
    ] == [line for line in lines if line.startswith(("PASS", "FAIL"))]
    assert (1, "2 passed, 2 failed") == (tolerance_run.returncode, lines[-1])


def test_a_missed_numeric_expectation_names_the_output_and_both_values_as_written(
    tolerance_run: subprocess.CompletedProcess[str],
) -> None:
    """A miss names the output and shows expected and actual as numbers, not Decimal('1.00')."""
    problems = [line.strip() for line in tolerance_run.stdout.splitlines() if line[:5] == " " * 5]
    assert 2 == len(problems), tolerance_run.stdout
    assert "output amount_yuan: expected 1.00 ± 0.01, got" in problems[0]
    for problem in problems:
        assert problem.startswith("output amount_yuan: expected 1.00"), problem
        assert "1.02" in problem.split(", got", 1)[1], problem
        assert "Decimal(" not in problem, problem


def test_a_test_evidence_value_of_the_wrong_type_is_an_error_not_a_traceback(
    tmp_path: Path,
) -> None:
    """An impossible date in test evidence is a located error (exit 1), never a traceback."""
    text = edited(
        minimal_v2(),
        (
            "population: {birth_date: 1995-05-01, hukou_city: 深圳市}",
            'population: {birth_date: "1995-13-01", hukou_city: 深圳市}',
        ),
    )
    path = write(tmp_path / "draft.yaml", text)
    result = run("ruleset", "test", path)
    assert 1 == result.returncode
    assert "Traceback" not in result.stdout + result.stderr, result.stderr[-400:]
    assert f"{path}:109:32: [tests.硕士育有一孩获批.evidence.population.birth_date]" in (
        result.stderr
    )


# --- diff -------------------------------------------------------------------------------


def test_diff_describes_each_change_in_words(tmp_path: Path) -> None:
    """Condition, parameter period, removed rule and hit policy changes are each named."""
    new = edited(
        minimal_v2(),
        ('version: "1"', 'version: "2"'),
        ("    condition: age < max_age\n", "    condition: age <= max_age\n"),
        (
            "        value: 40\n        legal_basis: [basis]\n",
            "        value: 40\n        legal_basis: [basis]\n"
            "      - from: 2026-10-01\n        value: 45\n        legal_basis: [basis]\n",
        ),
        ("  hit_policy: UNIQUE\n", "  hit_policy: FIRST\n"),
        (
            '    - when: form.degree == "硕士"\n'
            "      then: {amount_yuan: base + points * 100, months: 24}\n",
            "",
        ),
    )
    result = run("ruleset", "diff", MINIMAL_V2, write(tmp_path / "2.yaml", new))
    assert 0 == result.returncode, result.stderr
    lines = [line.strip() for line in result.stdout.splitlines()]
    assert "minimal-v2: 1 → 2" == lines[0]
    expected = [
        "~ 修改 / changed C1:",
        "条件 / condition: age < max_age → age <= max_age",
        "~ 修改 / changed max_age:",
        "+ 2026-10-01 起取值 / from 2026-10-01: 45 (依据 / basis basis)",
        "命中策略 / hit policy: UNIQUE → FIRST",
        "规则数 / rules: 2 → 1",
        '- 删除规则 / removed rule 2: when form.degree == "硕士" then {amount_yuan: base + points * 100, '
        "months: 24}",
    ]
    assert [] == [line for line in expected if line not in lines], result.stdout


def test_diff_of_identical_files_says_no_change() -> None:
    """`ruleset diff` of a file against itself says 无变化 / no change and exits 0."""
    same = run("ruleset", "diff", MINIMAL_V2, MINIMAL_V2)
    assert (0, ["minimal-v2: 1 → 1", "  无变化 / no change"]) == (
        same.returncode,
        same.stdout.splitlines(),
    )


def test_diff_names_the_removed_rule_when_an_earlier_rule_is_removed(tmp_path: Path) -> None:
    """Removing rule 1 of 2 is reported as rule 1 removed, not rule 1 rewritten and 2 removed."""
    new = edited(
        minimal_v2(),
        ('    - when: form.degree == "本科"\n      then: {amount_yuan: base, months: 12}\n', ""),
    )
    result = run("ruleset", "diff", MINIMAL_V2, write(tmp_path / "new.yaml", new))
    assert 0 == result.returncode, result.stderr
    lines = [line.strip() for line in result.stdout.splitlines()]
    assert (
        '- 删除规则 / removed rule 1: when form.degree == "本科" then {amount_yuan: base, months: 12}'
        in lines
    ), result.stdout
    assert [] == [line for line in lines if line.startswith("规则 1 条件")], result.stdout


# --- list, schema, decide ---------------------------------------------------------------


def test_list_names_a_missing_registry_and_the_rulesets_it_makes_unservable(
    tmp_path: Path, demo_data: Path
) -> None:
    """A deleted registry file is named; only the rulesets that need it are NOT servable."""
    rulesets = tmp_path / "rulesets"
    shutil.copytree(ROOT / "rulesets", rulesets)
    data = tmp_path / "data"
    shutil.copytree(demo_data, data)
    (data / "birth_certificates.csv").unlink()
    result = run("ruleset", "list", "--rulesets", rulesets, "--data-dir", data)
    assert 1 == result.returncode, result.stdout + result.stderr
    lines = [line.strip() for line in result.stdout.splitlines()]
    registry = next(line for line in lines if line.startswith("birth_certificates "))
    assert "不可用 / UNAVAILABLE" in registry
    assert "data file of registry birth_certificates not found" in registry
    states = {
        line.split()[0]: line.endswith("不可提供服务 / NOT servable")
        for line in lines
        if line.endswith("servable")
    }
    assert {
        "beijing-points-hukou@2018": False,
        "maternity-allowance@2016": True,
        "old-age-allowance@2024": False,
        "talent-housing-subsidy@2016": False,
        "talent-housing-subsidy@2026": False,
    } == states
    after = lines[lines.index(next(x for x in lines if x.startswith("maternity-allowance@"))) + 1]
    assert "registry birth_certificates is not available" in after


def test_schema_prints_the_ruleset_and_catalogue_json_schemas() -> None:
    """`ruleset schema` is JSON listing every hit policy; `--catalogue` is the catalogue's."""
    ruleset = run("ruleset", "schema")
    assert 0 == ruleset.returncode, ruleset.stderr
    schema = json.loads(ruleset.stdout)
    assert "秒批规则集 / Miaopi ruleset" == schema["title"]
    assert (list(HIT_POLICIES), list(HIT_POLICIES)) == (
        schema["$defs"]["DecisionTable"]["properties"]["hit_policy"]["enum"],
        schema["$defs"]["ValueTable"]["properties"]["hit_policy"]["enum"],
    )
    catalogue = run("ruleset", "schema", "--catalogue")
    assert 0 == catalogue.returncode, catalogue.stderr
    cat_schema = json.loads(catalogue.stdout)
    assert "秒批登记库目录 / Miaopi registry catalogue" == cat_schema["title"]
    assert {"schema_version", "registries", "facts"} == set(cat_schema["properties"])
    assert {"key", "fields", "modes", "no_record", "answers"} <= set(
        cat_schema["$defs"]["RegistrySpec"]["properties"]
    )


def test_decide_prints_the_maternity_allowance_and_its_chinese_explanation(
    demo_data: Path,
) -> None:
    """`decide` on the standard maternity sample prints the amount and the text in Chinese."""
    sample = demo_data / "applications" / "approved-maternity-standard.json"
    expected = json.loads((demo_data / "applications" / "expected.json").read_text("utf-8"))[
        sample.name
    ]
    result = run("decide", sample, "--data-dir", demo_data)
    assert 0 == result.returncode, result.stderr
    decision = json.loads(result.stdout[: result.stdout.index("\n}\n") + 2])
    amount = expected["amount_yuan"]
    assert ("APPROVED", amount) == (decision["outcome"], decision["outputs"]["amount_yuan"])
    text = result.stdout[result.stdout.index("\n}\n") + 3 :]
    assert "“生育津贴”申请" in text
    assert "予以批准" in text
    assert f"生育津贴金额：{Decimal(amount):,}元" in text


def test_validate_checks_the_registry_catalogue_itself(tmp_path: Path) -> None:
    """The catalogue file validates on its own; a key field it does not declare is located."""
    good = run("ruleset", "validate", "rulesets/registries.yaml")
    assert 0 == good.returncode, good.stderr
    assert "OK rulesets/registries.yaml: 13" in good.stdout
    text = (ROOT / "rulesets" / "registries.yaml").read_text(encoding="utf-8")
    broken = write(
        tmp_path / "registries.yaml",
        text.replace("key: [credit_code, year]", "key: [credit_code, yaer]"),
    )
    line = next(i for i, t in enumerate(text.splitlines(), 1) if "key: [credit_code, year]" in t)
    bad = run("ruleset", "validate", broken)
    assert 1 == bad.returncode
    assert f"{broken}:{line}:" in bad.stderr and "'yaer'" in bad.stderr
