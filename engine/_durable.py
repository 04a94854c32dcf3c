"""The only module that touches durable_rules: one caller at a time, one session per decision.

What we measured (DESIGN.md, and the property tests of language v2): the C engine is not
thread-safe and never releases the GIL; the ``durable.lang`` host runs background timer
threads that call into it concurrently; a ruleset holds at most 1,024 live sessions and the
process dies at the 1,025th. So we call the C extension directly (no host, no timer
threads), every call under one process-wide lock so that no two threads are ever inside it,
and each decision gets its own session id whose state is deleted before the lock is
released. (A dedicated engine thread gave the same safety at about three times the cost per
decision: the hand-off between threads dominated.)

Three more hazards of durable-rules 2.0.28, each guarded here:

- Deleting the state of an assertion that matched no rule at all can corrupt the heap (a
  segfault or "double free", depending on memory layout). Every ruleset therefore carries a
  rule that always fires (``zz__seen``, dropped from the answer): some rule always matches.
- When more sibling tests pass at once than its stack holds (``ERR_MAX_STACK_SIZE``, 303;
  65 rules on one field were enough), the assertion fails, and deleting that state aborts the
  process. After any failure we delete the whole ruleset instead (that is safe) and never its
  state; on 303 the ruleset is split in two parts, each asserted in turn, and the split is
  kept for the next decisions. A single rule never overflows (the compiler bounds ``$or``).
- A rule whose ``$or`` has too many branches is refused at creation (``ERR_EXPRESSION_LIMIT_
  EXCEEDED``, 113; 15 branches were enough): the compiler computes such sub-conditions before
  asserting (see ``engine.compiler``), and ``check`` reports any refusal at validate time.
"""

from __future__ import annotations

import functools
import itertools
import json
import re
import threading
from collections.abc import Mapping
from importlib import metadata
from typing import Any

import orjson

from engine.errors import EngineFault

__all__ = ["DurableEngine", "durable_version", "get_engine"]

MAX_LIVE_SESSIONS = 8
"""Far below durable_rules' 1,024: we only ever have one session alive at a time."""
SENTINEL = "zz__seen"
_SENTINEL_RULE = {"all": [{"m": {"$ex": {"id": 1}}}]}
_STACK_OVERFLOW = 303
_CODE = re.compile(r"error code: (\d+)")
_ENCODER = json.JSONEncoder(ensure_ascii=False)
"""``json.dumps(fact, ensure_ascii=False)`` without building an encoder per decision."""


def _fact_json(fact: Mapping[str, object]) -> str:
    """The fact as JSON text for durable_rules: orjson's (~3× json's speed) when every value
    is a string, an int or a bool, as compiled facts are (dates go as day numbers); json's
    otherwise, so that anything else (a float, a type json refuses) fails or passes exactly
    as it always has."""
    for v in fact.values():
        t = type(v)
        if t is not str and t is not int and t is not bool:
            return _ENCODER.encode(fact)
    return orjson.dumps(fact).decode("utf-8")


@functools.cache
@functools.cache  # read once: the installed package does not change under a process
def durable_version() -> str:
    try:
        return metadata.version("durable-rules")
    except metadata.PackageNotFoundError:  # pragma: no cover - installed with the project
        return "unknown"


def _code(exc: BaseException) -> int | None:
    found = _CODE.search(str(exc))
    return int(found.group(1)) if found else None


class DurableEngine:
    """Owns the durable_rules rulesets of this process and serialises every call to them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._handles: dict[str, int] = {}
        self._parts: dict[str, list[dict[str, Any]]] = {}
        """Ruleset name → its rules split into parts, once one overflowed the stack."""
        self._sessions = itertools.count(1)
        self._live = 0
        self.decisions = 0

    def fire(
        self, name: str, definition: Mapping[str, Any], fact: Mapping[str, object]
    ) -> list[str]:
        """Assert ``fact`` in a fresh session of ruleset ``name``; return the rules that fired.

        Serialised: callers on other threads wait for the lock. Raises ``EngineFault`` when
        durable_rules fails; the decision is then referred, never decided on a guess.
        """
        message = dict(fact)
        message["id"] = "application"
        with self._lock:
            parts = self._parts.get(name)
            if parts is None:
                parts = [dict(definition)]
            fired: list[str] = []
            i = 0
            while i < len(parts):
                part_name = name if len(parts) == 1 else f"{name}/{i}-of-{len(parts)}"
                try:
                    fired.extend(self._fire(part_name, parts[i], message))
                    i += 1
                except _Overflow:
                    if len(parts[i]) <= 1:
                        raise EngineFault(
                            "durable_rules: a single rule overflowed its stack"
                        ) from None
                    rules = list(parts[i].items())
                    half = len(rules) // 2
                    self._forget_parts(name, len(parts))
                    parts[i : i + 1] = [dict(rules[:half]), dict(rules[half:])]
                    self._parts[name] = parts
                    fired.clear()
                    i = 0  # part names changed: assert every part again, in a fresh session
            self.decisions += 1
            return fired

    def check(self, name: str, definition: Mapping[str, Any]) -> None:
        """Create the ruleset now (it is kept for decisions); raise ``EngineFault`` if refused."""
        with self._lock:
            self._handle(name, definition)

    def live_sessions(self) -> int:
        return self._live

    # --- everything below runs with the lock held -----------------------------------------

    def _forget_parts(self, name: str, count: int) -> None:
        import durable_rules_engine as dre

        names = [name] if count == 1 else [f"{name}/{i}-of-{count}" for i in range(count)]
        for part_name in names:
            handle = self._handles.pop(part_name, None)
            if handle is not None:
                dre.delete_ruleset(handle)

    def _handle(self, name: str, definition: Mapping[str, Any]) -> int:
        import durable_rules_engine as dre

        handle = self._handles.get(name)
        if handle is None:
            rules = {**definition, SENTINEL: _SENTINEL_RULE}
            try:
                handle = dre.create_ruleset(name, json.dumps(rules, ensure_ascii=False))
            except Exception as exc:  # the C extension raises bare Exceptions
                raise EngineFault(
                    f"durable_rules refused the ruleset (code {_code(exc)}): {exc}"
                ) from None
            self._handles[name] = handle
        return handle

    def _fire(self, name: str, definition: Mapping[str, Any], fact: dict[str, object]) -> list[str]:
        import durable_rules_engine as dre

        handle = self._handle(name, definition)
        if self._live >= MAX_LIVE_SESSIONS:
            raise EngineFault(f"{self._live} durable_rules sessions alive; refusing to open more")
        sid = str(next(self._sessions))
        fact["sid"] = sid
        fired: list[str] = []
        self._live += 1
        try:
            try:
                result = dre.assert_fact(handle, _fact_json(fact))
                state_handle = result[1]
                started = dre.start_action_for_state(handle, state_handle)
                message = started[1] if started else None
                while message:
                    # A message is {"<rule>": {...}}; rule names are [a-z0-9_] only.
                    rule = message[2 : message.index('"', 2)]
                    if rule != SENTINEL:
                        fired.append(rule)
                    message = dre.complete_and_start_action(handle, state_handle)
            except Exception as exc:  # the C extension raises bare Exceptions
                # The session's state may be corrupt: deleting it can abort the process, so
                # the whole ruleset goes (safely) and is created again when next needed.
                self._handles.pop(name, None)
                dre.delete_ruleset(handle)
                if _code(exc) == _STACK_OVERFLOW:
                    raise _Overflow from None
                raise EngineFault(f"durable_rules failed: {exc}") from None
            dre.delete_state(handle, sid)
        finally:
            self._live -= 1
        return fired


class _Overflow(Exception):
    """durable_rules' stack overflowed for one assertion (the ruleset is split and retried)."""


_engine: DurableEngine | None = None
_engine_lock = threading.Lock()


def get_engine() -> DurableEngine:
    """The process's one engine (created on first use, never at import)."""
    global _engine
    with _engine_lock:
        if _engine is None:
            _engine = DurableEngine()
        return _engine
