"""What stands between a decision and a slow, failing or rationed registry.

- ``Quota``: calls per day and allowed times of day, enforced here before calling, so a
  source's limits are never exceeded and an out-of-window call is never made.
- ``CircuitBreaker``: after N consecutive failures the source is not called for a while;
  then one trial call decides whether it is back.
- ``TtlCache``: a short-lived cache keyed by source and subject, so one decision's repeated
  questions, or a retry, do not call twice.

Each is per source and per process (several processes each keep their own counts: give each
its share of the daily quota, e.g. by dividing ``per_day`` by the number of workers).
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, Literal, TypeVar
from zoneinfo import ZoneInfo

__all__ = ["CircuitBreaker", "QuotaGate", "TtlCache"]

SHANGHAI = ZoneInfo("Asia/Shanghai")
V = TypeVar("V")


class QuotaGate:
    """Calls per day (Asia/Shanghai) and allowed windows, counted before each call."""

    def __init__(self, *, per_day: int | None, windows: list[str]) -> None:
        self.per_day = per_day
        self.windows = [
            (dt.time.fromisoformat(a), dt.time.fromisoformat(b))
            for a, _, b in (w.partition("-") for w in windows)
        ]
        self._day: dt.date | None = None
        self._used = 0
        self._lock = threading.Lock()

    def take(self, now: dt.datetime) -> Literal["ok", "exhausted", "outside_window"]:
        """Count one call at ``now``, or say why it may not be made."""
        local = now.astimezone(SHANGHAI)
        if self.windows and not any(
            (a <= local.time() < b) if a <= b else (local.time() >= a or local.time() < b)
            for a, b in self.windows
        ):
            return "outside_window"
        with self._lock:
            if self._day != local.date():
                self._day, self._used = local.date(), 0
            if self.per_day is not None and self._used >= self.per_day:
                return "exhausted"
            self._used += 1
        return "ok"

    def state(self) -> dict[str, object]:
        return {
            "per_day": self.per_day,
            "used_today": self._used,
            "windows": [f"{a:%H:%M}-{b:%H:%M}" for a, b in self.windows],
        }


class CircuitBreaker:
    """closed → (N failures in a row) → open → (after ``reset_s``) → half-open: one trial."""

    def __init__(
        self,
        *,
        failures: int,
        reset_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.threshold = failures
        self.reset_s = reset_s
        self.clock = clock
        self._failures = 0
        self._opened_at: float | None = None
        self._trial_running = False
        self._lock = threading.Lock()

    @property
    def state(self) -> Literal["closed", "open", "half_open"]:
        if self._opened_at is None:
            return "closed"
        if self.clock() - self._opened_at >= self.reset_s:
            return "half_open"
        return "open"

    def allow(self) -> bool:
        """Whether a call may go out now (in half-open state, only one at a time)."""
        with self._lock:
            state = self.state
            if state == "closed":
                return True
            if state == "half_open" and not self._trial_running:
                self._trial_running = True
                return True
            return False

    def release(self) -> None:
        """The call allowed by ``allow`` was not made or not finished: no verdict on the source."""
        with self._lock:
            self._trial_running = False

    def record(self, ok: bool) -> None:
        with self._lock:
            self._trial_running = False
            if ok:
                self._failures = 0
                self._opened_at = None
                return
            self._failures += 1
            if self._failures >= self.threshold or self._opened_at is not None:
                self._opened_at = self.clock()

    def snapshot(self) -> dict[str, object]:
        return {"state": self.state, "consecutive_failures": self._failures}


class TtlCache(Generic[V]):
    """At most ``size`` answers, each for ``ttl_s`` seconds (0: nothing is kept)."""

    def __init__(
        self, *, ttl_s: float, size: int = 10_000, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.ttl_s = ttl_s
        self.size = size
        self.clock = clock
        self._items: OrderedDict[Hashable, tuple[float, V]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable) -> V | None:
        if self.ttl_s <= 0:
            return None
        with self._lock:
            found = self._items.get(key)
            if found is None:
                return None
            expires, value = found
            if self.clock() >= expires:
                del self._items[key]
                return None
            return value

    def put(self, key: Hashable, value: V) -> None:
        if self.ttl_s <= 0:
            return
        with self._lock:
            self._items[key] = (self.clock() + self.ttl_s, value)
            self._items.move_to_end(key)
            while len(self._items) > self.size:
                self._items.popitem(last=False)
