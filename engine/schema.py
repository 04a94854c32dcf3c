"""JSON Schemas of the ruleset file and the registry catalogue, generated from their models.

Editors (VS Code's YAML extension, JetBrains) use them for completion and checking: put
``# yaml-language-server: $schema=../ruleset.schema.json`` at the top of a ruleset file.
The shipped copies (``rulesets/*.schema.json``) are checked against these by the tests.
"""

from __future__ import annotations

from typing import Any

from engine.model import RulesetDoc
from engine.registries import _CatalogueDoc

__all__ = ["catalogue_schema", "ruleset_schema"]


def ruleset_schema() -> dict[str, Any]:
    schema = RulesetDoc.model_json_schema(by_alias=True)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = "https://miaopi.example/schemas/ruleset.schema.json"
    schema["title"] = "秒批规则集 / Miaopi ruleset"
    return schema


def catalogue_schema() -> dict[str, Any]:
    schema = _CatalogueDoc.model_json_schema(by_alias=True)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = "https://miaopi.example/schemas/registries.schema.json"
    schema["title"] = "秒批登记库目录 / Miaopi registry catalogue"
    return schema
