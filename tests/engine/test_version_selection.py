"""Which ruleset version is in force on an application date, and what the content hash covers."""

from __future__ import annotations

import datetime as dt

import pytest
from helpers_engine import RULESETS, SERVICE

from engine import NoVersionInForce, RulesetCatalog, UnknownService, parse_ruleset

D = dt.date


@pytest.fixture(scope="module")
def fresh_catalog() -> RulesetCatalog:
    """The shipped rulesets, loaded by path from the repository root."""
    return RulesetCatalog.load(RULESETS)


@pytest.mark.parametrize(
    ("day", "version"),
    [
        pytest.param(D(2016, 1, 1), "2016", id="2016 is in force from its first day"),
        pytest.param(D(2020, 7, 1), "2016", id="2016 is in force in the middle of its period"),
        pytest.param(D(2025, 12, 31), "2016", id="2016 is in force on its last day"),
        pytest.param(D(2026, 1, 1), "2026", id="2026 takes over on 1 January 2026"),
        pytest.param(D(2099, 12, 31), "2026", id="2026 has no end date and stays in force"),
    ],
)
def test_the_version_in_force_on_the_application_date_is_chosen(
    fresh_catalog: RulesetCatalog, day: dt.date, version: str
) -> None:
    """in_force picks the published version whose effective period contains the date."""
    assert version == fresh_catalog.in_force(SERVICE, day).version


def test_before_the_first_version_no_version_is_in_force(fresh_catalog: RulesetCatalog) -> None:
    """On 2015-12-31 there is no version; the error names the service and the date."""
    with pytest.raises(NoVersionInForce) as info:
        fresh_catalog.in_force(SERVICE, D(2015, 12, 31))
    assert (SERVICE, D(2015, 12, 31), True) == (
        info.value.service,
        info.value.on,
        "2015-12-31" in str(info.value),
    )


def test_an_unknown_service_is_refused_naming_the_known_ones(
    fresh_catalog: RulesetCatalog,
) -> None:
    """A service code with no rulesets raises UnknownService, which lists the known services."""
    with pytest.raises(UnknownService) as info:
        fresh_catalog.in_force("no-such-service", D(2026, 1, 1))
    assert "no-such-service" == info.value.service
    assert SERVICE in info.value.known
    assert info.value.known == sorted(info.value.known)


def test_every_shipped_ruleset_has_a_sha256_content_hash(fresh_catalog: RulesetCatalog) -> None:
    """Each content hash is 'sha256:' and 64 hex digits, and the two versions differ."""
    hashes = {rs.version: rs.content_hash for rs in fresh_catalog.versions(SERVICE)}
    assert ["2016", "2026"] == sorted(hashes)
    assert all(rs.content_hash.startswith("sha256:") for rs in fresh_catalog)
    assert all(h.startswith("sha256:") and len(h) == len("sha256:") + 64 for h in hashes.values())
    assert hashes["2016"] != hashes["2026"]


def shipped_text(version: str) -> str:
    return (RULESETS / SERVICE / f"{version}.yaml").read_text(encoding="utf-8")


def hash_of(text: str, version: str) -> str:
    return parse_ruleset(text, file=f"{version}.yaml").content_hash


@pytest.mark.parametrize("version", ["2016", "2026"])
def test_the_content_hash_is_the_same_for_the_same_text(
    fresh_catalog: RulesetCatalog, version: str
) -> None:
    """Parsing the file text again gives the hash the catalog holds."""
    expected = fresh_catalog.get(SERVICE, version)
    assert expected is not None
    assert expected.content_hash == hash_of(shipped_text(version), version)


EDITS = [
    pytest.param(
        "and social_insurance.months_contributed >= 1",
        "and social_insurance.months_contributed >= 2",
        id="a condition's threshold",
    ),
    pytest.param(
        'and social_insurance.status == "正常缴费"',
        'and  social_insurance.status == "正常缴费"',
        id="whitespace inside a condition",
    ),
    pytest.param("每人限领一次。", "每人仅限领取一次。", id="a reason text in Chinese"),
    pytest.param(
        "title: {zh: 首次申领, en: First application}",
        "title: {zh: 首次申领, en: First-time application}",
        id="a criterion's English title",
    ),
    pytest.param("on_fail: refer", "on_fail: reject", id="what failing a criterion does"),
    pytest.param(
        "condition: not subsidy_history.received_before",
        "condition: subsidy_history.received_before == false",
        id="a condition rewritten to an equivalent one",
    ),
]


@pytest.mark.parametrize("version", ["2016", "2026"])
@pytest.mark.parametrize(("old", "new"), EDITS)
def test_any_change_to_a_criterion_changes_the_content_hash(
    version: str, old: str, new: str
) -> None:
    """Editing any criterion text gives a different hash, so decisions name exactly what ran."""
    text = shipped_text(version)
    assert 1 == text.count(old)
    assert hash_of(text, version) != hash_of(text.replace(old, new), version)


@pytest.mark.parametrize("version", ["2016", "2026"])
@pytest.mark.parametrize("status", ["draft", "approved", "retired"])
def test_changing_only_the_status_keeps_the_content_hash(version: str, status: str) -> None:
    """The lifecycle status is not content: publishing or retiring keeps the hash."""
    text = shipped_text(version)
    assert 1 == text.count("status: published\n")
    assert hash_of(text, version) == hash_of(
        text.replace("status: published\n", f"status: {status}\n"), version
    )


def test_comments_and_layout_do_not_change_the_content_hash() -> None:
    """The hash covers the parsed content, not YAML comments."""
    text = shipped_text("2026")
    assert hash_of(text, "2026") == hash_of("# reviewed again\n" + text, "2026")


def test_a_retired_version_is_not_in_force() -> None:
    """Only published versions are chosen: with 2016 retired, 2020 has no version in force."""
    retired = parse_ruleset(
        shipped_text("2016").replace("status: published\n", "status: retired\n"), file="2016.yaml"
    )
    current = parse_ruleset(shipped_text("2026"), file="2026.yaml")
    with pytest.raises(NoVersionInForce):
        RulesetCatalog([retired, current]).in_force(SERVICE, D(2020, 1, 1))
