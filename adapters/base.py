"""The common interface every shared-data adapter implements, and the evidence it returns."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Literal, Protocol, runtime_checkable

__all__ = [
    "Adapter",
    "AdapterFailure",
    "ClaimValues",
    "FactValue",
    "Lookup",
    "LookupMode",
    "LookupStatus",
    "Provenance",
    "canonical_rows",
    "raw_hash",
]

FactValue = str | int | Decimal | bool | dt.date | None
LookupMode = Literal["fetch", "verify"]
LookupStatus = Literal["found", "not_found", "error"]
ClaimValues = Mapping[str, object]
"""A claim to verify: registry field → the value claimed (all must hold on one record)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Provenance:
    """Where one piece of evidence came from, precisely enough for an auditor to re-ask.

    A plain dataclass, as ``Lookup``: adapters make one per registry call from values they
    have already checked (a file's typed cells, a remote answer validated on arrival), and a
    validating model cost ~5 µs a call for nothing."""

    source: str
    """The registry's catalogue id, e.g. ``population`` (人口库)."""
    adapter: str
    """The kind of adapter that answered, e.g. ``files.csv``."""
    adapter_version: str
    reference: str | None
    """The registry's own record identifier(s), comma separated; ``None`` when nothing matched."""
    retrieved_at: dt.datetime
    raw_sha256: str | None
    """SHA-256 over the canonical JSON of the raw record(s) the answer was derived from."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Lookup:
    """An adapter's answer for one key: the requested facts, or why there are none."""

    status: LookupStatus
    mode: LookupMode
    values: dict[str, FactValue]
    """Only the requested fields (``None`` for an empty cell); in ``verify`` mode only the
    yes/no answers. Empty when nothing is known."""
    provenance: Provenance
    error_code: str | None = None
    """A stable code when ``status == "error"``: ``ADAPTER_TIMEOUT``, ``ADAPTER_UNAVAILABLE`` …"""
    error_message: str | None = None


class AdapterFailure(Exception):
    """Raised by an adapter when the registry could not answer (down, timed out, bad data).

    The gatherer turns it into a ``Lookup`` with ``status="error"``; it never becomes a
    rejection.
    """

    def __init__(self, *, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


@runtime_checkable
class Adapter(Protocol):
    """One shared-data source, as its registry catalogue entry declares it.

    ``lookup`` is keyed by every key field (a composite key has several). In ``fetch`` mode it
    returns the requested fields of the one record under the key. In ``verify`` mode it answers
    each claim yes or no and returns nothing else: ``claims`` maps an answer's name to the
    field values claimed, or to ``None`` for an answer the catalogue names.
    """

    source: str
    version: str

    @property
    def fields(self) -> Mapping[str, str]: ...

    # Optional: ``in_memory = True`` on an adapter that never blocks (a local index) lets the
    # gatherer call it inline instead of through the time-boxed thread pool.

    def supports(self, mode: LookupMode) -> bool: ...

    def lookup(
        self,
        key: Mapping[str, object],
        *,
        fields: Sequence[str],
        mode: LookupMode,
        claims: Mapping[str, ClaimValues | None] | None = None,
        now: dt.datetime,
    ) -> Lookup: ...


def canonical_rows(records: Sequence[Mapping[str, object]]) -> str:
    """The canonical JSON of raw registry records (a list; keys sorted, UTF-8 kept)."""
    return json.dumps(
        list(records), sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str
    )


def raw_hash(records: Sequence[Mapping[str, object]]) -> str:
    """SHA-256 of the canonical JSON of raw registry records (keys sorted, UTF-8)."""
    return hashlib.sha256(canonical_rows(records).encode("utf-8")).hexdigest()
