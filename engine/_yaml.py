"""A safe YAML loader that refuses duplicate keys and remembers where every node was."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

import pydantic
import yaml

from engine.errors import RulesetError

__all__ = ["FastSafeLoader", "Located", "Span", "display_key", "load_located", "validation_errors"]

Path = tuple[str | int, ...]


@dataclass(frozen=True)
class Span:
    """Where a scalar sits in its file, enough to map an offset inside it to line and column."""

    line: int
    column: int
    style: str | None
    raw: str

    def position_of(self, offset: int, value: str) -> tuple[int, int]:
        """File line and column (1-based) of character ``offset`` of the scalar's ``value``.

        YAML folds line breaks, drops indentation and resolves escapes, so the value is aligned
        with the source greedily: every value character is matched to the next identical
        source character, skipping what YAML removed.
        """
        raw = self.raw
        j = 0
        if self.style in (">", "|"):
            j = raw.find("\n") + 1 if "\n" in raw else len(raw)
        elif self.style in ("'", '"'):
            j = 1
        target = j
        for i, ch in enumerate(value):
            while j < len(raw) and raw[j] != ch:
                j += 1
            if j >= len(raw):
                break
            if i == offset:
                target = j
                break
            j += 1
        else:
            target = j
        if offset >= len(value):
            target = min(j, len(raw))
        newlines = raw.count("\n", 0, target)
        if newlines == 0:
            return self.line, self.column + target
        return self.line + newlines, target - raw.rfind("\n", 0, target)


@dataclass(frozen=True)
class Located:
    """A loaded document with the span of each node, keyed by its path of keys and indexes."""

    data: Any
    spans: dict[Path, Span]
    file: str
    key_spans: dict[Path, tuple[int, int]]
    """Where each mapping key itself starts (for errors about the key, not its value)."""

    def where(self, path: Path) -> tuple[int | None, int | None]:
        """Line and column of the deepest existing node on ``path``."""
        probe = tuple(path)
        while probe not in self.spans and probe:
            probe = probe[:-1]
        span = self.spans.get(probe)
        return (span.line, span.column) if span else (None, None)

    def error(
        self, message: str, path: Path, *, offset: int | None = None, at_key: bool = False
    ) -> RulesetError:
        """A ``RulesetError`` at ``path`` (its key with ``at_key``, or ``offset`` inside it)."""
        span = self.spans.get(tuple(path))
        line: int | None
        column: int | None
        if at_key and tuple(path) in self.key_spans:
            line, column = self.key_spans[tuple(path)]
        elif span is not None and offset is not None:
            line, column = span.position_of(offset, _value_at(self.data, path))
        else:
            line, column = self.where(path)
        return RulesetError(
            message, file=self.file, line=line, column=column, key=display_key(self.data, path)
        )


def display_key(data: Any, path: Path) -> str | None:
    """The dotted key of ``path``, naming list items by their ``id`` or ``name`` when they have
    one: ``criteria.C5.condition`` rather than ``criteria.4.condition``."""
    parts: list[str] = []
    node = data
    for p in path:
        label = str(p)
        if isinstance(p, int) and isinstance(node, list) and 0 <= p < len(node):
            item = node[p]
            if isinstance(item, dict):
                ident = item.get("id", item.get("name"))
                if isinstance(ident, str) and ident and len(ident) <= 40 and "." not in ident:
                    label = ident
            node = item
        elif isinstance(node, dict) and p in node:
            node = node[p]
        else:
            node = None
        parts.append(label)
    return ".".join(parts) or None


def _value_at(data: Any, path: Path) -> str:
    for p in path:
        data = data[p]
    return str(data)


_MEMBER_WORDS = {
    "str": "a string",
    "int": "an integer",
    "decimal": "a number",
    "bool": "a boolean",
    "date": "a date (YYYY-MM-DD)",
    "dict": "a mapping",
    "list": "a list",
    "none": "null",
}


def validation_errors(exc: pydantic.ValidationError, located: Located) -> list[RulesetError]:
    """pydantic's errors as located ruleset errors, bilingual, one per place, in file order."""
    grouped: dict[tuple[Path, bool], list[tuple[str, Any]]] = {}
    for err in exc.errors():
        extra = err["type"] == "extra_forbidden"
        path, members = _data_path(located.data, err["loc"], keep_last=extra)
        member = members[-1] if members else ""
        grouped.setdefault((path, extra), []).append((member, err))
    out = []
    for (path, extra), errs in grouped.items():
        err = errs[0][1]
        if extra:
            msg = f"未知的键 / unexpected key {path[-1]!r}"
        elif err["type"] == "missing":
            msg = f"缺少必填键 / missing required key {err['loc'][-1]!r}"
        elif len(errs) > 1:
            words = []
            for member, _ in errs:
                word = _MEMBER_WORDS.get(member.split("[")[0].lower(), member)
                if word and word not in words:
                    words.append(word)
            msg = f"取值无效 / invalid value {err.get('input')!r}: expected {' or '.join(words)}"
        else:
            msg = f"取值无效 / {err['msg']}; got {err.get('input')!r}"
        out.append(located.error(msg, path, at_key=extra))
    return sorted(out, key=lambda e: (e.line or 0, e.column or 0))


def _data_path(data: Any, loc: tuple[Any, ...], *, keep_last: bool) -> tuple[Path, list[str]]:
    """The part of a pydantic location that exists in the data; the rest names union members."""
    path: list[str | int] = []
    members: list[str] = []
    node = data
    for i, p in enumerate(loc):
        if isinstance(p, str) and p.startswith("function-"):
            continue
        if isinstance(node, dict) and p in node:
            node = node[p]
            path.append(p)
        elif isinstance(node, list) and isinstance(p, int) and 0 <= p < len(node):
            node = node[p]
            path.append(p)
        elif keep_last and i == len(loc) - 1:
            path.append(p)
        else:
            members.append(str(p))
    return tuple(path), members


def _exists(data: Any, path: Path) -> bool:
    for p in path:
        if isinstance(data, dict) and p in data:
            data = data[p]
        elif isinstance(data, list) and isinstance(p, int) and 0 <= p < len(data):
            data = data[p]
        else:
            return False
    return True


class _Loader(yaml.SafeLoader):  # type: ignore[misc]
    pass


FastSafeLoader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
"""libyaml's parser where PyYAML was built with it: the same documents ~5× faster (rulesets
are parsed by every worker at start)."""


class _FastLoader(FastSafeLoader):  # type: ignore[misc]
    pass


def _decimal(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> Decimal:
    """YAML floats are read as exact decimals (``0.1`` is 1/10, not a binary fraction)."""
    text = str(loader.construct_scalar(node)).replace("_", "")
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise ValueError(f"not a decimal number: {text!r}") from None
    if not value.is_finite():
        raise ValueError(f"not a finite number: {text!r}")
    return value


_Loader.add_constructor("tag:yaml.org,2002:float", _decimal)
_FastLoader.add_constructor("tag:yaml.org,2002:float", _decimal)


def load_located(text: str, *, file: str) -> Located:
    """Parse ``text`` as one YAML document; refuse duplicate keys and non-string keys.

    libyaml composes the nodes (the same nodes, marks and styles as PyYAML's own parser on
    every YAML file of this repository); a document it refuses is parsed again by PyYAML's
    parser, whose words and position the error has always given."""
    fast = _FastLoader(text)
    try:
        return _located(fast, fast.get_single_node(), text, file)
    except yaml.YAMLError:
        pass  # parsed again below, for the error
    finally:
        fast.dispose()
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        raise RulesetError(
            f"YAML 语法错误 / invalid YAML: {exc.problem or exc.context}",
            file=file,
            line=mark.line + 1 if mark else None,
            column=mark.column + 1 if mark else None,
        ) from exc
    finally:
        loader.dispose()
    return _located(loader, node, text, file)


def _located(loader: yaml.SafeLoader, node: yaml.Node | None, text: str, file: str) -> Located:
    """The document of ``node`` with the span of every value and key (``load_located``)."""
    if node is None:
        raise RulesetError("文件为空 / the file is empty", file=file, line=1, column=1)
    spans: dict[Path, Span] = {}
    key_spans: dict[Path, tuple[int, int]] = {}

    def walk(n: yaml.Node, path: Path) -> Any:
        raw = text[n.start_mark.index : n.end_mark.index]
        style = getattr(n, "style", None) or None  # plain: None (libyaml says "")
        spans[path] = Span(n.start_mark.line + 1, n.start_mark.column + 1, style, raw)
        if isinstance(n, yaml.MappingNode):
            out: dict[str, Any] = {}
            for key_node, value_node in n.value:
                key = loader.construct_object(key_node, deep=True)
                if not isinstance(key, str):
                    key = str(key)
                if key in out:
                    raise RulesetError(
                        f"重复的键 / duplicate key {key!r}",
                        file=file,
                        line=key_node.start_mark.line + 1,
                        column=key_node.start_mark.column + 1,
                        key=".".join(str(p) for p in (*path, key)),
                    )
                key_spans[(*path, key)] = (
                    key_node.start_mark.line + 1,
                    key_node.start_mark.column + 1,
                )
                out[key] = walk(value_node, (*path, key))
            return out
        if isinstance(n, yaml.SequenceNode):
            return [walk(item, (*path, i)) for i, item in enumerate(n.value)]
        try:
            return loader.construct_object(n, deep=True)
        except ValueError as exc:  # e.g. 2026-02-30: YAML reads it as a date that cannot exist
            raise RulesetError(
                f"无效的值 / invalid value {raw!r}: {exc}",
                file=file,
                line=n.start_mark.line + 1,
                column=n.start_mark.column + 1,
                key=".".join(str(p) for p in path) or None,
            ) from None

    return Located(walk(node, ()), spans, file, key_spans)
