"""durable_rules under concurrency: many threads deciding at once, and sessions always released."""

from __future__ import annotations

import random
import threading

from helpers_engine import Application, comparable, random_application, shipped

from engine import Outcome, Ruleset, evaluate
from engine._durable import get_engine

THREADS = 8
CALLS_PER_THREAD = 500


def workload(seed: int, count: int) -> list[tuple[Ruleset, Application]]:
    """``count`` generated applications alternating between the shipped versions, from ``seed``."""
    rng = random.Random(seed)
    rulesets = [shipped("2016"), shipped("2026")]
    out = []
    for i in range(count):
        ruleset = rulesets[i % 2]
        out.append((ruleset, random_application(rng, ruleset)))
    return out


def test_concurrent_decisions_equal_the_reference_and_leave_no_session() -> None:
    """8 threads × 500 concurrent durable_rules decisions all equal the reference evaluator's."""
    jobs = [workload(seed, CALLS_PER_THREAD) for seed in range(THREADS)]
    expected = [
        [comparable(evaluate(rs, app.env(), evaluator="reference")) for rs, app in job]
        for job in jobs
    ]
    engine = get_engine()
    before = engine.decisions
    actual: list[list[dict[str, object]]] = [[] for _ in range(THREADS)]
    errors: list[BaseException] = []
    start = threading.Barrier(THREADS)

    def work(t: int) -> None:
        try:
            start.wait()
            for rs, app in jobs[t]:
                actual[t].append(comparable(evaluate(rs, app.env(), evaluator="durable_rules")))
        except BaseException as exc:  # reported below; a thread cannot fail the test itself
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert [] == errors
    mismatches = [
        (t, i)
        for t in range(THREADS)
        for i in range(CALLS_PER_THREAD)
        if expected[t][i] != actual[t][i]
    ]
    assert [] == mismatches
    assert (0, THREADS * CALLS_PER_THREAD) == (engine.live_sessions(), engine.decisions - before)


def test_the_generated_workload_reaches_every_outcome() -> None:
    """The concurrent workload is varied: approvals, rejections and referrals all occur."""
    outcomes = {
        evaluate(rs, app.env(), evaluator="reference").outcome for rs, app in workload(0, 500)
    }
    assert set(Outcome) == outcomes


def test_thousands_of_decisions_in_a_row_delete_their_sessions() -> None:
    """2,000 decisions one after another (past durable_rules' 1,024-session limit) leave 0 alive."""
    engine = get_engine()
    before = engine.decisions
    for rs, app in workload(1234, 2000):
        evaluate(rs, app.env(), evaluator="durable_rules")
    assert (0, 2000) == (engine.live_sessions(), engine.decisions - before)
