"""Every exception the engine raises, each saying when it is raised."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

__all__ = [
    "EngineError",
    "EngineFault",
    "ExpressionError",
    "NoVersionInForce",
    "RulesetError",
    "RulesetInvalid",
    "ServiceUnavailable",
    "UnknownService",
]


class EngineError(Exception):
    """Base class of every error raised by ``engine``."""


class RulesetError(EngineError):
    """One problem in a ruleset file, located by file, line and column (both 1-based).

    ``key`` is the dotted path of the offending YAML key (``criteria.2.condition``) when
    known. The message says what was expected and what was found.
    """

    def __init__(
        self,
        message: str,
        *,
        file: str,
        line: int | None = None,
        column: int | None = None,
        key: str | None = None,
    ) -> None:
        self.message = message
        self.file = file
        self.line = line
        self.column = column
        self.key = key
        super().__init__(str(self))

    def __str__(self) -> str:
        where = self.file
        if self.line is not None:
            where += f":{self.line}"
            if self.column is not None:
                where += f":{self.column}"
        key = f" [{self.key}]" if self.key else ""
        return f"{where}:{key} {self.message}"


class RulesetInvalid(EngineError):
    """Raised when a ruleset is refused; carries every ``RulesetError`` found, in file order."""

    def __init__(self, errors: Sequence[RulesetError]) -> None:
        self.errors = list(errors)
        super().__init__("\n".join(str(e) for e in self.errors))


class ExpressionError(EngineError):
    """A syntax or type error inside one condition; ``offset`` is 0-based within the text.

    The ruleset loader converts it into a ``RulesetError`` with the file position.
    """

    def __init__(self, message: str, *, text: str, offset: int) -> None:
        self.message = message
        self.text = text
        self.offset = offset
        super().__init__(f"{message} (at offset {offset} in {text!r})")


class UnknownService(EngineError):
    """Raised when no ruleset at all exists for a service code."""

    def __init__(self, service: str, *, known: Sequence[str]) -> None:
        self.service = service
        self.known = list(known)
        super().__init__(
            f"未知的事项编码 / unknown service {service!r}; known: {', '.join(self.known) or '-'}"
        )


class NoVersionInForce(EngineError):
    """Raised when a service has rulesets but none is in force on the application date."""

    def __init__(self, service: str, *, on: dt.date) -> None:
        self.service = service
        self.on = on
        super().__init__(
            f"{on.isoformat()} 无有效的规则版本 / no published ruleset version of {service!r} "
            f"is in force on the application date {on.isoformat()}"
        )


class ServiceUnavailable(EngineError):
    """Raised when a service cannot decide now: one of its ruleset files is broken, or the
    version in force needs a registry that is not available. Nothing is decided or stored."""

    def __init__(self, service: str, *, reasons: Sequence[str], version: str | None = None) -> None:
        self.service = service
        self.version = version
        self.reasons = list(reasons)
        which = f"{service}@{version}" if version else service
        super().__init__(
            f"事项 {which} 暂不可用 / service {which} cannot decide now: "
            + "; ".join(self.reasons[:3])
        )


class EngineFault(EngineError):
    """An internal inconsistency (e.g. the Rete engine and the ruleset disagree).

    A decision that meets one is REFERRED, never rejected.
    """
