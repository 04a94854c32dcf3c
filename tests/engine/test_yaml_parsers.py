"""Rulesets, catalogues and guides are composed by libyaml and read exactly as PyYAML's own
parser reads them; a document libyaml refuses gets PyYAML's error, as it always did."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from engine import _yaml
from engine._yaml import load_located
from engine.errors import RulesetError

ROOT = Path(__file__).resolve().parents[2]
YAML_FILES = sorted(
    p
    for p in ROOT.rglob("*.yaml")
    if not {".venv", "var", "node_modules", ".git"} & set(p.relative_to(ROOT).parts)
)


def _python_located(text: str, file: str) -> _yaml.Located:
    """``load_located`` with PyYAML's pure-Python parser only (as before libyaml)."""
    loader = _yaml._Loader(text)
    try:
        node = loader.get_single_node()
    finally:
        loader.dispose()
    return _yaml._located(loader, node, text, file)


def test_libyaml_is_there() -> None:
    assert _yaml.FastSafeLoader is yaml.CSafeLoader, "PyYAML without libyaml: slower starts"


@pytest.mark.parametrize("path", YAML_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_yaml_file_of_the_repository_reads_the_same_with_either_parser(path: Path) -> None:
    text = path.read_text(encoding="utf-8")

    def read(parse: Callable[[], _yaml.Located]) -> object:
        try:
            located = parse()
        except RulesetError as exc:  # a duplicate key, an impossible date: the same words
            return str(exc)
        return located.data, located.spans, located.key_spans

    slow = read(lambda: _python_located(text, str(path)))
    assert slow == read(lambda: load_located(text, file=str(path)))


@pytest.mark.parametrize(
    "text",
    [
        "service: a\n  version: b\n",  # a mapping value where none may stand
        "a: [1, 2\nb: 3\n",  # an unclosed flow sequence
        "a: 'open\n",  # an unclosed quote
        "- a\nb: c\n",  # a sequence, then a mapping
    ],
)
def test_a_document_libyaml_refuses_has_pyyamls_error_and_position(text: str) -> None:
    with pytest.raises(yaml.MarkedYAMLError) as pyyaml:
        yaml.load(text, Loader=yaml.SafeLoader)
    mark = pyyaml.value.problem_mark or pyyaml.value.context_mark
    assert mark is not None
    with pytest.raises(RulesetError) as ours:
        load_located(text, file="x.yaml")
    message = str(ours.value)
    assert f"invalid YAML: {pyyaml.value.problem or pyyaml.value.context}" in message
    assert (mark.line + 1, mark.column + 1) == (ours.value.line, ours.value.column)
