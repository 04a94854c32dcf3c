"""Service guides (办事指南): the shipped ones load and match their rulesets; broken ones are reported."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from engine import RulesetCatalog
from engine.catalog import ruleset_files
from explanations.guide import (
    GUIDE_FILE,
    GuideError,
    ServiceGuide,
    _ruleset_authorities,
    load_guide,
    load_guides,
)

REPO = Path(__file__).resolve().parents[2]

VALID = """\
schema_version: 1
service: demo-service
authority:
  name: {zh: 示例市民政局, en: Demo Civil Affairs Bureau}
  phone: "0755-12345"
  url: https://example.gov.cn
review:
  body:
    name: {zh: 示例市民政局, en: Demo Civil Affairs Bureau}
  working_days: 10
  prepare:
    - {zh: 居民身份证, en: Resident identity card}
reconsideration:
  name: {zh: 示例市人民政府, en: Demo Municipal People's Government}
court:
  name: {zh: 示例市有管辖权的人民法院, en: People's court with jurisdiction in Demo}
"""

RULESET_STUB = "service: demo-service\nversion: '2024'\nauthority: {zh: 示例市民政局, en: Demo}\n"


def _service(root: Path, guide_text: str | None, *, name: str = "demo-service") -> Path:
    folder = root / name
    folder.mkdir(parents=True)
    (folder / "2024.yaml").write_text(RULESET_STUB.replace("demo-service", name), "utf-8")
    if guide_text is not None:
        (folder / GUIDE_FILE).write_text(guide_text, encoding="utf-8")
    return folder


def test_every_shipped_service_has_a_guide_that_loads_without_problems(
    rulesets_dir: Path, ruleset_catalog: RulesetCatalog
) -> None:
    """The four shipped services each have a valid guide; nothing is reported."""
    guides, problems = load_guides(rulesets_dir)
    assert [] == problems
    assert set(ruleset_catalog.services()) == set(guides)
    assert {
        "talent-housing-subsidy",
        "old-age-allowance",
        "maternity-allowance",
        "beijing-points-hukou",
    } <= set(guides)


def test_each_shipped_guide_names_its_rulesets_authority_a_12345_line_and_every_body(
    rulesets_dir: Path, ruleset_catalog: RulesetCatalog
) -> None:
    """Authority as in every ruleset version; the city's 12345 hotline; reviewer, reconsideration
    body and court named in both languages; money services say how they pay."""
    guides, _ = load_guides(rulesets_dir)
    hotline = {
        "talent-housing-subsidy": "0755-12345",
        "maternity-allowance": "0755-12345",
        "old-age-allowance": "020-12345",
        "beijing-points-hukou": "010-12345",
    }
    for service, guide in guides.items():
        authorities = {rs.doc.authority.zh for rs in ruleset_catalog if rs.service == service}
        assert {guide.authority.name.zh} == authorities, service
        assert hotline[service] == guide.authority.phone
        assert guide.review.working_days > 0
        assert guide.review.prepare, service
        assert guide.reconsideration.name.zh.endswith("人民政府")
        assert "人民法院" in guide.court.name.zh
        if service == "beijing-points-hukou":
            assert guide.payment is None and guide.after_approval is not None
        else:
            assert guide.payment is not None, service


def test_unconfirmed_details_are_marked_in_the_shipped_guides(rulesets_dir: Path) -> None:
    """Working days and the reviewers' names are not yet confirmed: each line says so."""
    for path in sorted(rulesets_dir.glob(f"*/{GUIDE_FILE}")):
        lines = path.read_text(encoding="utf-8").splitlines()
        working = next(line for line in lines if line.strip().startswith("working_days:"))
        assert "# to confirm with the authority" in working, path


def test_the_ruleset_catalogue_does_not_read_guides_as_rulesets(rulesets_dir: Path) -> None:
    """A guide beside the versions is not a ruleset file (it would block its service)."""
    assert [] == [p for p in ruleset_files(rulesets_dir) if p.name == GUIDE_FILE]


def test_the_documented_example_is_a_valid_guide() -> None:
    """The YAML example in docs/service-guide.md validates against the model."""
    text = (REPO / "docs" / "service-guide.md").read_text(encoding="utf-8")
    example = re.findall(r"```yaml\n(.*?)```", text, re.S)[0]
    guide = ServiceGuide.model_validate(yaml.safe_load(example))
    assert 15 == guide.review.working_days


def test_a_service_without_a_guide_gives_none(tmp_path: Path) -> None:
    """No guide file: ``load_guide`` answers None and ``load_guides`` reports it."""
    folder = _service(tmp_path, None)
    assert load_guide(folder) is None
    guides, problems = load_guides(tmp_path)
    assert {} == guides
    assert 1 == len(problems)
    assert str(folder / GUIDE_FILE) in problems[0]


def test_a_valid_guide_loads(tmp_path: Path) -> None:
    """The minimal guide loads with its defaults: no payment, no objection period."""
    guide = load_guide(_service(tmp_path, VALID))
    assert guide is not None
    assert (None, None, 10) == (
        guide.payment,
        guide.review.objection_working_days,
        guide.review.working_days,
    )


BROKEN = {
    "duplicate key": (
        VALID.replace("  working_days: 10\n", "  working_days: 10\n  working_days: 12\n"),
        11,
        "duplicate key 'working_days'",
    ),
    "unexpected key": (
        VALID.replace('  phone: "0755-12345"\n', '  phone: "0755-12345"\n  fax: "1"\n'),
        6,
        "unexpected key 'fax'",
    ),
    "missing review": (
        VALID.replace(VALID[VALID.index("review:") : VALID.index("reconsideration:")], ""),
        1,
        "missing required key 'review'",
    ),
    "wrong type": (
        VALID.replace("working_days: 10", "working_days: ten"),
        10,
        "[review.working_days]",
    ),
    "bad url": (
        VALID.replace("https://example.gov.cn", "javascript:alert(1)"),
        6,
        "[authority.url]",
    ),
    "invalid yaml": (VALID.replace("service: demo-service", "service: [demo"), 3, "invalid YAML"),
    "service of another folder": (
        VALID.replace("service: demo-service", "service: other-service"),
        2,
        "does not match its folder",
    ),
    "authority not in the rulesets": (
        VALID.replace(
            "zh: 示例市民政局, en: Demo Civil Affairs Bureau}\n  phone",
            "zh: 别的局, en: Other}\n  phone",
        ),
        4,
        "is not the authority of any ruleset version",
    ),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_a_broken_guide_is_reported_with_file_and_line_never_raised(
    tmp_path: Path, case: str
) -> None:
    """``load_guides`` reports each failure mode as one line naming file:line and the fault;
    the other services' guides still load."""
    text, line, fragment = BROKEN[case]
    broken = _service(tmp_path, text)
    _service(tmp_path, VALID.replace("demo-service", "good-service"), name="good-service")
    guides, problems = load_guides(tmp_path)
    assert ["good-service"] == list(guides)
    assert 1 == len(problems), problems
    assert problems[0].startswith(f"{broken / GUIDE_FILE}:{line}:"), problems[0]
    assert fragment in problems[0]
    with pytest.raises(GuideError) as raised:
        load_guide(broken)
    assert str(broken / GUIDE_FILE) == raised.value.file
    assert list(raised.value.problems) == problems


@pytest.mark.parametrize(
    ("ruleset", "authorities"),
    [
        (RULESET_STUB, {"示例市民政局"}),
        ("authority:\n  zh: 甲局\n  en: A\n", {"甲局"}),
        ("authority:\n  zh: 甲局\nauthority:\n  zh: 乙局\n", {"乙局"}),  # the last, as loaded
        ("authority:\n  zh: 123\n", set()),  # not text
        ("authority:\n  zh: !!str 123\n", {"123"}),
        ("authority:\n  zh: ~\n", set()),
        ("authority: 甲局\n", set()),
        ("- authority\n", set()),
        ("authority: {zh: [甲局\n", set()),  # not YAML: the ruleset catalogue reports it
    ],
)
def test_the_authorities_a_guide_is_checked_against_are_read_as_the_rulesets_load(
    tmp_path: Path, ruleset: str, authorities: set[str]
) -> None:
    (tmp_path / "2024.yaml").write_text(ruleset, encoding="utf-8")
    assert authorities == _ruleset_authorities(tmp_path)
