"""The JSON Schemas shipped for editors are the ones generated from the models."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import yaml

from engine.schema import catalogue_schema, ruleset_schema

RULESETS = Path(__file__).resolve().parents[2] / "rulesets"


@pytest.mark.parametrize(
    ("file", "generate"),
    [("ruleset.schema.json", ruleset_schema), ("registries.schema.json", catalogue_schema)],
)
def test_the_shipped_schema_is_the_generated_one(file: str, generate: object) -> None:
    """Regenerate with `miaopi ruleset schema [--catalogue] > rulesets/<file>` after a model change."""
    shipped = json.loads((RULESETS / file).read_text(encoding="utf-8"))
    assert generate() == shipped  # type: ignore[operator]


def test_every_shipped_ruleset_satisfies_the_schema_an_editor_uses() -> None:
    """An editor checking against the schema finds no fault in any shipped file."""
    validator = jsonschema.Draft202012Validator(ruleset_schema())
    paths = sorted(RULESETS.glob("*/*.yaml"))
    faults = []
    for path in paths:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        data = json.loads(json.dumps(data, default=str))  # dates as the editor sees them
        faults += [
            f"{path.relative_to(RULESETS)}: {e.json_path}: {e.message}"
            for e in validator.iter_errors(data)
        ]
    assert [] == faults
    assert len(paths) >= 5, "every shipped service's rulesets are checked"


def test_the_schema_lists_every_hit_policy_for_completion() -> None:
    """Editors offer the eleven DMN hit policies."""
    text = json.dumps(ruleset_schema(), ensure_ascii=False)
    for policy in ("UNIQUE", "ANY", "PRIORITY", "OUTPUT ORDER", "COLLECT SUM", "COLLECT COUNT"):
        assert f'"{policy}"' in text
