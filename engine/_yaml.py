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

    def position_of(self, offset: int) -> tuple[int, int]:
        """File line and column (1-based) of character ``offset`` of the scalar's value."""
        if self.style in (">", "|"):
            lines = self.raw.split("\n")[1:]
            indent = min((len(s) - len(s.lstrip(" ")) for s in lines if s.strip()), default=0)
            remaining = offset
            for i, text in enumerate(lines):
                content = text[indent:]
                if remaining <= len(content):
                    return self.line + 1 + i, indent + remaining + 1
                remaining -= len(content) + 1
            return self.line, self.column
        quote = 1 if self.style in ("'", '"') else 0
        return self.line, self.column + quote + offset


@dataclass(frozen=True)
class Located:
    """A loaded document with the span of each node, keyed by its path of keys and indexes."""

    data: Any
    spans: dict[Path, Span]
    file: str

    def where(self, path: Path) -> tuple[int | None, int | None]:
        """Line and column of the deepest existing node on ``path``."""
        probe = tuple(path)
        while probe not in self.spans and probe:
            probe = probe[:-1]
        span = self.spans.get(probe)
        return (span.line, span.column) if span else (None, None)

    def error(self, message: str, path: Path, *, offset: int | None = None) -> RulesetError:
        """A ``RulesetError`` located at ``path`` (and ``offset`` inside its scalar)."""
        span = self.spans.get(tuple(path))
        if span is not None and offset is not None:
            line: int | None
            column: int | None
            line, column = span.position_of(offset)
        else:
            line, column = self.where(path)
        key = ".".join(str(p) for p in path) or None
        return RulesetError(message, file=self.file, line=line, column=column, key=key)


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
                out[key] = walk(value_node, (*path, key))
            return out
        if isinstance(n, yaml.SequenceNode):
            return [walk(item, (*path, i)) for i, item in enumerate(n.value)]
        return loader.construct_object(n, deep=True)

    return Located(walk(node, ()), spans, file)
