"""Prometheus metrics: decisions, their latency, evidence outcomes, HTTP requests, the store.

What a label may carry is a closed or configured set, never anything about a person: a
service code and a registry id (from the rulesets and the catalogue), an outcome (a closed
set), a route *template* (``/v1/decisions/{decision_id}``, never the path asked for), an
HTTP method and status. Chain length and open review cases are read from the database when
``/metrics`` is scraped (two indexed reads), so every process reports the same figures.

Several worker processes (``miaopi serve --workers N``) share one set of figures through
prometheus_client's multiprocess mode: ``serve`` gives each start a fresh folder in
``PROMETHEUS_MULTIPROC_DIR`` before any worker imports this module, and a scrape answered
by any worker sums the files of all of them.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from typing import Any

import sqlalchemy as sa
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from explanations.review import CASES
from explanations.store import ChainHead

__all__ = [
    "CONTENT_TYPE_LATEST",
    "DECISIONS",
    "DECISION_SECONDS",
    "EVIDENCE",
    "HTTP_REQUESTS",
    "HTTP_SECONDS",
    "METHODS",
    "UNMATCHED_ROUTE",
    "observe_decision",
    "observe_request",
    "render",
]

# No ``*_created`` series: they would double the output and tell nothing needed here.
disable_created_metrics()  # type: ignore[no-untyped-call]

DECISION_BUCKETS = (
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 0.8, 1.0, 2.0, 5.0,
)  # fmt: skip
"""Seconds: a decision takes 5–500 ms; 0.8 is the default evidence budget."""
HTTP_BUCKETS = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 0.8, 1.0, 2.5, 5.0,
)  # fmt: skip
"""Seconds: most routes answer in a few milliseconds; a decision in 5–500 ms."""

METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
"""Methods kept as labels; any other is counted as ``OTHER`` (a client chooses the method)."""
UNMATCHED_ROUTE = "<unmatched>"
"""The route label of a request no route matched (a 404 for any path: never the path)."""

DECISIONS = Counter(
    "miaopi_decisions",
    "Decisions stored, by service and outcome (idempotent replays are not counted again)",
    ["service", "outcome"],
)
DECISION_SECONDS = Histogram(
    "miaopi_decision_duration_seconds",
    "Time to decide and store one decision (evidence, evaluation, record, commit), by service",
    ["service"],
    buckets=DECISION_BUCKETS,
)
EVIDENCE = Counter(
    "miaopi_evidence",
    "Evidence items of stored decisions by registry and outcome (FOUND, NOT_FOUND, MATCH, "
    "NO_MATCH, ERROR, TIMEOUT, MALFORMED, CIRCUIT_OPEN, QUOTA_EXHAUSTED, SKIPPED)",
    ["registry", "outcome"],
)
HTTP_REQUESTS = Counter(
    "miaopi_http_requests",
    "HTTP requests by method, route template and status",
    ["method", "route", "status"],
)
HTTP_SECONDS = Histogram(
    "miaopi_http_request_duration_seconds",
    "Time from receiving a request to sending the last byte of its answer, by route template",
    ["method", "route"],
    buckets=HTTP_BUCKETS,
)


_children: dict[tuple[object, ...], Any] = {}


def _child(metric: Counter | Histogram, *values: str) -> Any:
    """``metric.labels(*values)``, remembered: the labels are closed sets (module doc), and
    ``labels()`` checks its arguments and takes a lock every time (~10 calls a decision)."""
    key = (id(metric), *values)
    found = _children.get(key)
    if found is None:
        found = _children[key] = metric.labels(*values)
    return found


def observe_decision(
    *, service: str, outcome: str, seconds: float, evidence: Iterable[tuple[str, str]]
) -> None:
    """Count one stored decision, its latency, and each ``(registry, outcome)`` it asked."""
    _child(DECISIONS, service, outcome).inc()
    _child(DECISION_SECONDS, service).observe(seconds)
    for registry, result in evidence:
        _child(EVIDENCE, registry, result).inc()


def observe_request(*, method: str, route: str, status: int, seconds: float) -> None:
    """Count one HTTP request and its latency (``route`` is the template, never the path)."""
    _child(HTTP_REQUESTS, method, route, str(status)).inc()
    _child(HTTP_SECONDS, method, route).observe(seconds)


class StoreCollector(Collector):
    """Figures read from the database at scrape time: chain length and open review cases."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine

    def collect(self) -> Iterator[Metric]:
        chain = GaugeMetricFamily(
            "miaopi_chain_length", "Records in the hash chain (the chain head's sequence number)"
        )
        cases = GaugeMetricFamily(
            "miaopi_review_cases_open",
            "Review cases not yet resolved, by kind (referral, objection, human_decision) "
            "and status (open, in_review)",
            labels=["kind", "status"],
        )
        up = GaugeMetricFamily(
            "miaopi_store_up", "1 when the database answered this scrape's reads, else 0"
        )
        try:
            head = ChainHead.__table__  # type: ignore[attr-defined]
            with self.engine.connect() as conn:
                seq = conn.execute(sa.select(head.c.seq).where(head.c.id == 1)).scalar()
                rows = conn.execute(
                    sa.select(CASES.c.kind, CASES.c.status, sa.func.count())
                    .where(CASES.c.status != "resolved")
                    .group_by(CASES.c.kind, CASES.c.status)
                ).all()
        except sa.exc.SQLAlchemyError:
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        chain.add_metric([], int(seq or 0))
        for kind, status, n in rows:
            cases.add_metric([str(kind), str(status)], int(n))
        yield up
        yield chain
        yield cases


def multiprocess_dir() -> str | None:
    """The folder shared by the worker processes, when running several."""
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


def render(engine: sa.Engine) -> bytes:
    """The text exposition of every metric: this process's (or all workers') and the store's."""
    if multiprocess_dir() is not None:
        workers = CollectorRegistry(auto_describe=False)
        multiprocess.MultiProcessCollector(workers)  # type: ignore[no-untyped-call]
    else:
        workers = REGISTRY
    store = CollectorRegistry(auto_describe=False)
    store.register(StoreCollector(engine))
    return generate_latest(workers) + generate_latest(store)
