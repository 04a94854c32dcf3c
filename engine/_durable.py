"""The only module that touches durable_rules: one caller at a time, one session per decision.

What we measured (DESIGN.md): the C engine is not thread-safe and never releases the GIL; the
``durable.lang`` host runs background timer threads that call into it concurrently; a
ruleset holds at most 1,024 live sessions and the process dies at the 1,025th. So we call the
C extension directly (no host, no timer threads), every call under one process-wide lock so
that no two threads are ever inside it, and each decision gets its own session id whose
state is deleted before the lock is released. (A dedicated engine thread gave the same
safety at about three times the cost per decision: the hand-off between threads dominated.)
"""

from __future__ import annotations

import functools
import itertools
import json
import threading
from collections.abc import Mapping
from importlib import metadata
from typing import Any

from engine.errors import EngineFault

__all__ = ["DurableEngine", "durable_version", "get_engine"]

MAX_LIVE_SESSIONS = 8
"""Far below durable_rules' 1,024: we only ever have one session alive at a time."""


@functools.cache
def durable_version() -> str:
    try:
        return metadata.version("durable-rules")
    except metadata.PackageNotFoundError:  # pragma: no cover - installed with the project
        return "unknown"


class DurableEngine:
    """Owns the durable_rules rulesets of this process and serialises every call to them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._handles: dict[str, int] = {}
        self._sessions = itertools.count(1)
        self._live = 0
        self.decisions = 0

    def fire(
        self, name: str, definition: Mapping[str, Any], fact: Mapping[str, object]
    ) -> list[str]:
        """Assert ``fact`` in a fresh session of ruleset ``name``; return the rules that fired.

        Serialised: callers on other threads wait for the lock.
        """
        with self._lock:
            return self._fire(name, definition, dict(fact))

    def live_sessions(self) -> int:
        return self._live

    # --- everything below runs with the lock held -----------------------------------------

    def _handle(self, name: str, definition: Mapping[str, Any]) -> int:
        import durable_rules_engine as dre

        handle = self._handles.get(name)
        if handle is None:
            handle = dre.create_ruleset(name, json.dumps(definition, ensure_ascii=False))
            self._handles[name] = handle
        return handle

    def _fire(self, name: str, definition: Mapping[str, Any], fact: dict[str, object]) -> list[str]:
        import durable_rules_engine as dre

        handle = self._handle(name, definition)
        sid = str(next(self._sessions))
        if self._live >= MAX_LIVE_SESSIONS:
            raise EngineFault(f"{self._live} durable_rules sessions alive; refusing to open more")
        fired: list[str] = []
        self._live += 1
        try:
            fact["sid"] = sid
            fact["id"] = "application"
            result = dre.assert_fact(handle, json.dumps(fact, ensure_ascii=False))
            if result[0] not in (0, 1):  # 1: no rule matched (every criterion UNKNOWN)
                raise EngineFault(f"durable_rules refused the fact (code {result[0]})")
            state_handle = result[1]
            started = dre.start_action_for_state(handle, state_handle) if result[0] == 0 else None
            message = started[1] if started else None
            while message:
                # A message is {"<rule>": {...the fact...}}; rule names are [a-z0-9_] only.
                fired.append(message[2 : message.index('"', 2)])
                message = dre.complete_and_start_action(handle, state_handle)
        except EngineFault:
            raise
        except Exception as exc:  # the C extension raises bare Exceptions
            raise EngineFault(f"durable_rules failed: {exc}") from exc
        finally:
            try:
                dre.delete_state(handle, sid)
            finally:
                self._live -= 1
        self.decisions += 1
        return fired


_engine: DurableEngine | None = None
_engine_lock = threading.Lock()


def get_engine() -> DurableEngine:
    """The process's one engine (created on first use, never at import)."""
    global _engine
    with _engine_lock:
        if _engine is None:
            _engine = DurableEngine()
        return _engine
