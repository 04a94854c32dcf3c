"""The brute-force attack on ID pseudonyms (scripts/pseudonym_attack.py), given the key: what a
version-3 record gave away and what a version-4 record leaves to try."""

from __future__ import annotations

import importlib.util
import json
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from explanations.record import ExplanationRecordV1

REPO = Path(__file__).resolve().parents[2]
OLD_RECORDS = Path(__file__).parent / "fixtures" / "records-v3-main.jsonl"
OLD_KEY = b"old-records-key-0123456789abcdefghijkl"
"""The pseudonym key the fixture's records were written with (by main's code)."""
NEW_KEY = b"tests-explanations"
"""The pseudonym key of the ``decide`` fixture."""


@pytest.fixture(scope="module")
def attack() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "pseudonym_attack", REPO / "scripts" / "pseudonym_attack.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_a_version_3_record_with_its_birth_date_gives_the_id_number_up_in_a_few_tries(
    attack: ModuleType,
) -> None:
    """The birth date and the mask's 7 digits leave 1,000 candidates, 1 in 11 with the right
    check digit: every record holding a birth date is recovered in a few dozen HMACs."""
    rows = [json.loads(line) for line in OLD_RECORDS.read_text(encoding="utf-8").splitlines()]
    results = [
        attack.attack(target, OLD_KEY, regions=None, budget=10_000)
        for target in (attack.target_of(r["record"]) for r in rows)
        if target is not None and target.disclosed == "birth date"
    ]
    assert len(results) >= 4
    for result in results:
        assert 1_000 == result.candidates
        assert result.found is not None and result.tried <= 200
        assert result.found.startswith(result.target.prefix)


def test_a_version_4_record_leaves_hundreds_of_billions_of_candidates(
    attack: ModuleType,
    decide: Callable[[str], ExplanationRecordV1],
    demo_samples: dict[str, Any],
    demo_dir: Path,
) -> None:
    """With the age instead of the date and no digit in the mask, a person is one of about
    365,000 x the number of region codes tried: 3.65e11 without knowing where applicants come
    from, 3.65e5 per region code of the demo population."""
    regions = attack.demo_regions(demo_dir)
    aged = 0
    for name in demo_samples:
        target = attack.target_of(json.loads(decide(name).body_json()))
        assert target is not None and "" == target.prefix + target.suffix
        if target.disclosed != "age":
            continue
        aged += 1
        blind = attack.attack(target, NEW_KEY, regions=None, budget=0)
        assert 365 * 10**9 <= blind.candidates <= 366 * 10**9
        informed = attack.attack(target, NEW_KEY, regions=regions, budget=0)
        assert informed.candidates == len(regions) * blind.candidates // 10**6
    assert aged >= 20


def test_with_the_key_and_the_applicant_s_region_an_age_still_gives_the_number_up(
    attack: ModuleType, decide: Callable[[str], ExplanationRecordV1], demo_samples: dict[str, Any]
) -> None:
    """The honest limit: an attacker holding the key who also knows the region code tries about
    365,000 numbers and finds the one. The key, kept out of the database, is what protects."""
    name = "approved-master-2016.json"
    target = attack.target_of(json.loads(decide(name).body_json()))
    id_number = demo_samples[name].body["applicant"]["id_number"]
    result = attack.attack(target, NEW_KEY, regions=[id_number[:6]], budget=400_000)
    assert id_number == result.found
    assert result.candidates <= 366_000
