"""Decisions on the event loop: ``decide_async`` and the store's ``append_async``.

A decision whose evidence is all in memory is decided on the event loop and waits for its
group commit without holding a thread; one that asks a remote registry goes to the thread
pool, so a slow registry never stalls the loop. The promises are those of ``append``: each
answer only after its own commit, one chain, a retried key gets the stored decision.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from support import signing_key_path

from adapters.base import Adapter
from api.secrets import load_signing_key
from api.service import DecisionRequest, DecisionService, RequestRejected, request_sha256
from engine import RulesetCatalog
from engine.registries import RegistryCatalogue
from explanations import DecisionStore, IdempotencyConflict, StoredDecision, Unsealed
from explanations.log import HEADS, public_key_id, verify_receipt


def _requests(bodies: list[dict[str, Any]]) -> list[DecisionRequest]:
    return [DecisionRequest.model_validate(b) for b in bodies]


def _digest(request: DecisionRequest) -> str:
    return request_sha256(request.model_dump(mode="json"))


def test_coroutines_and_threads_share_group_commits_and_every_decision_is_provable(
    db_url: str,
    make_service: Callable[[str | None], DecisionService],
    bulk_bodies: list[dict[str, Any]],
) -> None:
    """60 coroutines on one loop and 4 threads × 5 decide at once: 80 records, seq 1…80,
    fewer signed heads than records, every receipt proves its record, the chain verifies."""
    service = make_service(db_url)
    store = service.store
    assert store is not None
    requests = _requests(bulk_bodies[:80])
    threaded: dict[int, StoredDecision] = {}
    errors: list[BaseException] = []
    go = threading.Event()

    def worker(t: int) -> None:
        go.wait()
        try:
            for i in range(60 + t * 5, 65 + t * 5):
                threaded[i] = service.decide(
                    requests[i], idempotency_key=f"a-{i}", body_sha256=_digest(requests[i])
                )
        except BaseException as exc:  # reported below
            errors.append(exc)

    async def main() -> list[StoredDecision]:
        go.set()
        return await asyncio.gather(
            *(
                service.decide_async(
                    requests[i], idempotency_key=f"a-{i}", body_sha256=_digest(requests[i])
                )
                for i in range(60)
            )
        )

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(4)]
    for th in threads:
        th.start()
    awaited = asyncio.run(main())
    for th in threads:
        th.join(timeout=120)
    assert [] == errors
    results = [*awaited, *threaded.values()]
    assert 80 == len({r.decision_id for r in results})
    assert not any(r.replayed for r in results)
    assert (80, []) == store.verify()
    with store.engine.connect() as conn:
        heads = conn.execute(sa.select(sa.func.count()).select_from(HEADS)).scalar_one()
    assert heads < 80, "every decision went in a transaction of its own"
    key = load_signing_key(signing_key_path()).public_key()
    keys = {public_key_id(key): key}
    for stored in results:
        assert stored.receipt is not None
        assert [] == verify_receipt(stored.receipt, keys)
        assert stored.receipt.leaf.record_hash == stored.response["record_hash"]
        assert store.get_decision(stored.decision_id) is not None


def test_a_retried_key_gets_its_decision_even_when_the_service_can_no_longer_decide(
    tmp_path: Path,
    make_service: Callable[[str | None], DecisionService],
    bulk_bodies: list[dict[str, Any]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The in-memory path does not look the key up before deciding. A retry still gets the
    stored decision (marked replayed), also once the service refuses new applications (503);
    the same key with another body is refused; a new key is refused with the 503."""
    service = make_service(f"sqlite:///{tmp_path}/store.db")
    first, other = _requests(bulk_bodies[:2])

    async def decide(request: DecisionRequest, key: str) -> StoredDecision:
        return await service.decide_async(
            request, idempotency_key=key, body_sha256=_digest(request)
        )

    stored = asyncio.run(decide(first, "r-1"))
    again = asyncio.run(decide(first, "r-1"))
    assert (again.decision_id, again.response, again.replayed) == (
        stored.decision_id,
        stored.response,
        True,
    )
    with pytest.raises(IdempotencyConflict):
        asyncio.run(decide(other, "r-1"))

    def paused(request: DecisionRequest) -> Any:
        raise RequestRejected(503, "SERVICE_UNAVAILABLE", "暂时无法办理", "cannot decide now")

    monkeypatch.setattr(service, "prepare", paused)
    during = asyncio.run(decide(first, "r-1"))
    assert (during.decision_id, during.replayed) == (stored.decision_id, True)
    with pytest.raises(RequestRejected) as refused:
        asyncio.run(decide(first, "r-2"))
    assert 503 == refused.value.status
    assert service.store is not None
    assert (1, []) == service.store.verify()


def test_an_append_that_fails_reaches_its_own_coroutine_only(
    tmp_path: Path,
    make_service: Callable[[str | None], DecisionService],
    bulk_bodies: list[dict[str, Any]],
) -> None:
    """8 coroutines append at once; the in-transaction hook fails for one: that coroutine
    gets the error and nothing is stored for it, the other 7 are stored."""
    service = make_service(f"sqlite:///{tmp_path}/store.db")
    store = service.store
    assert store is not None
    records = []
    for i, request in enumerate(_requests(bulk_bodies[:8])):
        decided = service.decide_prepared(service.prepare(request))
        record = service.build_record(decided, decision_id=f"d-{i}", seq=0, prev_hash="")
        records.append((request, Unsealed(record)))

    def hook(conn: sa.Connection, record: Any) -> None:
        if record.decision_id == "d-3":
            raise RuntimeError("the review case for d-3 cannot be opened")

    async def main() -> list[Any]:
        return await asyncio.gather(
            *(
                store.append_async(
                    idempotency_key=f"f-{i}",
                    request_sha256=_digest(request),
                    record=record,
                    on_stored=hook,
                )
                for i, (request, record) in enumerate(records)
            ),
            return_exceptions=True,
        )

    outcome = asyncio.run(main())
    assert isinstance(outcome[3], RuntimeError)
    assert [f"d-{i}" for i in range(8) if i != 3] == [
        o.decision_id for i, o in enumerate(outcome) if i != 3
    ]
    assert store.get_decision("d-3") is None
    assert (7, []) == store.verify()


class _Remote:
    """A demo registry answering 200 ms late, as a registry over the network would."""

    in_memory = False

    def __init__(self, inner: Adapter) -> None:
        self.inner = inner

    def lookup(self, *args: Any, **kwargs: Any) -> Any:
        time.sleep(0.2)
        return self.inner.lookup(*args, **kwargs)


def test_a_decision_that_asks_a_remote_registry_leaves_the_event_loop_free(
    tmp_path: Path,
    ruleset_catalog: RulesetCatalog,
    demo_registries: dict[str, Adapter],
    registry_catalogue: RegistryCatalogue,
    bulk_bodies: list[dict[str, Any]],
) -> None:
    """With every registry 200 ms away, 8 decisions at once take about one wait, not eight,
    and the loop keeps ticking meanwhile (it would stall ~1.6 s if they ran on it)."""
    store = DecisionStore(
        f"sqlite:///{tmp_path}/store.db", signing_key=load_signing_key(signing_key_path())
    )
    store.create_schema()
    service = DecisionService(
        catalog=ruleset_catalog,
        adapters={k: _Remote(v) for k, v in demo_registries.items()},  # type: ignore[misc]
        registries=registry_catalogue,
        store=store,
        pseudonym_key="tests-pseudonym-key",
    )
    requests = _requests(bulk_bodies[:8])
    assert all(service.prepare(r).ruleset.evidence for r in requests)

    async def main() -> tuple[list[StoredDecision], float, float]:
        gaps: list[float] = []
        done = False

        async def ticker() -> None:
            last = time.perf_counter()
            while not done:
                await asyncio.sleep(0.005)
                now = time.perf_counter()
                gaps.append(now - last)
                last = now

        tick = asyncio.create_task(ticker())
        started = time.perf_counter()
        results = await asyncio.gather(
            *(
                service.decide_async(r, idempotency_key=f"x-{i}", body_sha256=_digest(r))
                for i, r in enumerate(requests)
            )
        )
        elapsed = time.perf_counter() - started
        done = True
        await tick
        return results, elapsed, max(gaps)

    try:
        results, elapsed, worst_gap = asyncio.run(main())
        assert 8 == len({r.decision_id for r in results})
        assert worst_gap < 0.15, f"the loop stalled {worst_gap * 1000:.0f} ms"
        assert elapsed < 1.2, f"8 decisions took {elapsed:.2f} s: they waited one after another"
        assert (8, []) == store.verify()
    finally:
        service.close()
        store.dispose()
