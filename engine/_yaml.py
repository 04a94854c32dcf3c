"""A safe YAML loader that refuses duplicate keys and remembers where every node was."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import yaml

from engine.errors import RulesetError

__all__ = ["Located", "Span", "load_located"]

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
        key = ".".join(str(p) for p in path) or None
        return RulesetError(message, file=self.file, line=line, column=column, key=key)


def _value_at(data: Any, path: Path) -> str:
    for p in path:
        data = data[p]
    return str(data)


class _Loader(yaml.SafeLoader):  # type: ignore[misc]
    pass


def load_located(text: str, *, file: str) -> Located:
    """Parse ``text`` as one YAML document; refuse duplicate keys and non-string keys."""
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
    if node is None:
        raise RulesetError("文件为空 / the file is empty", file=file, line=1, column=1)
    spans: dict[Path, Span] = {}
    key_spans: dict[Path, tuple[int, int]] = {}

    def walk(n: yaml.Node, path: Path) -> Any:
        raw = text[n.start_mark.index : n.end_mark.index]
        style = getattr(n, "style", None)
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
