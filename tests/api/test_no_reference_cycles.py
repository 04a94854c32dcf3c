"""A decision frees what it makes by reference counting: it leaves no reference cycles.

The server collects garbage rarely (``gc.set_threshold`` in ``create_app``), which is only
cheap while nothing a decision makes needs the collector to be freed. The counterfactual
solver once did: a closure that called itself, and a solver and its words pointing at each
other, on every adverse decision.
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from api.service import DecisionRequest, DecisionService
from engine import Outcome
from engine.decision import CriterionStatus
from explanations.record import Encoded
from tests.conftest import DemoSample


@pytest.fixture
def saved_garbage() -> Iterator[list[Any]]:
    """``gc.garbage`` filled with what each collection finds unreachable (instead of freed)."""
    gc.collect()
    gc.garbage.clear()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        yield gc.garbage
    finally:
        gc.set_debug(0)
        gc.garbage.clear()


def test_deciding_leaves_no_reference_cycles(
    make_service: Callable[[str | None], DecisionService],
    demo_samples: dict[str, DemoSample],
    bulk_bodies: list[dict[str, Any]],
    saved_garbage: list[Any],
) -> None:
    """Every shipped sample (every service and outcome, counterfactuals, referrals) and 300
    bulk applications, through what a worker does for each: validate, prepare, decide,
    write the record and encode it for the commit process."""
    service = make_service(None)
    bodies = [s.body for s in demo_samples.values()] + bulk_bodies[:300]
    for body in bodies:  # once first: what is looked up once a process (versions) is not sought
        service._decided(service.prepare(DecisionRequest.model_validate(body)))
    gc.collect()
    saved_garbage.clear()
    outcomes: set[Outcome] = set()
    adverse = 0
    for body in bodies:
        decided, unsealed = service._decided(service.prepare(DecisionRequest.model_validate(body)))
        encoded = Encoded.of(unsealed, None)
        assert encoded is not None
        encoded.to_wire()
        outcomes.add(decided.evaluation.outcome)
        adverse += any(c.status is CriterionStatus.FAIL for c in decided.evaluation.criteria)
        del decided, unsealed, encoded
    assert outcomes == set(Outcome) and adverse >= 50  # the solver ran, many times
    gc.collect()
    ours = sorted({_name(o) for o in saved_garbage if _ours(o)})
    assert ours == [], f"cycles through the project's objects and functions: {ours[:20]}"


_PACKAGES = frozenset({"api", "engine", "explanations", "adapters"})
_ROOT = Path(__file__).resolve().parents[2]


def _ours(o: object) -> bool:
    """Whether ``o`` is an instance, or a function, of the project's own code (a cycle that
    a decision makes runs through one; the interpreter's and the test runner's do not)."""
    code = getattr(o, "__code__", None)
    if code is not None:
        path = Path(code.co_filename)
        return path.is_relative_to(_ROOT) and path.relative_to(_ROOT).parts[0] in _PACKAGES
    return type(o).__module__.partition(".")[0] in _PACKAGES


def _name(o: object) -> str:
    return getattr(o, "__qualname__", None) or type(o).__qualname__
