"""Benchmark: in-process decisions/s and resident memory over many decisions.

Three figures:
  engine   — evaluate() on durable_rules for pre-gathered applications (the Rete path that
             must not leak: one session per decision, deleted afterwards), over --decisions;
  rete     — durable_rules alone (assert the fact, collect the fired rules, delete the session);
  service  — the whole in-process path without HTTP or storage (validation, evidence from
             the catalogued file registries, evaluation, record building and hashing), over
             --service.
RSS is sampled every 10% so growth is visible. Report the figures with the machine.
The per-criterion cost on synthetic rulesets is scripts/bench_criteria.py.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import psutil

from api.deployment import load_deployment
from api.service import DecisionRequest, DecisionService, RequestRejected
from engine import evaluate, get_engine
from engine.decision import prepare_env


def machine() -> str:
    """CPU model, cores, RAM and Python (version and build): print it with every figure."""
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f"machine: {model}, {os.cpu_count()} cores, "
        f"{psutil.virtual_memory().total / 2**30:.1f} GiB, Python {platform.python_version()} "
        f"({getattr(sys, '_base_executable', sys.executable)})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--decisions", type=int, default=1_000_000)
    parser.add_argument("--service", type=int, default=20_000)
    parser.add_argument("--data-dir", type=Path, default=Path("var/demo"))
    parser.add_argument("--rulesets", type=Path, default=Path("rulesets"))
    parser.add_argument(
        "--registries",
        type=Path,
        default=None,
        help="the registry catalogue (default: registries.yaml beside the rulesets)",
    )
    args = parser.parse_args()

    proc = psutil.Process(os.getpid())
    deployment = load_deployment(
        rulesets_dir=args.rulesets, data_dir=args.data_dir, registries=args.registries
    )
    if not deployment.healthy:
        # Reported, not fatal: only the services the sampled applications need must decide.
        print(
            "bench: deployment degraded: "
            + json.dumps(
                {
                    "catalogue": deployment.catalogue_problem,
                    "registries": deployment.registry_problems,
                    "rulesets": [s for s in deployment.rulesets.status() if s.get("problems")],
                },
                ensure_ascii=False,
                default=str,
            ),
            file=sys.stderr,
        )
    service = DecisionService(
        catalog=deployment.rulesets,
        adapters=deployment.adapters,
        registries=deployment.registries,
        store=None,
        pseudonym_key="bench",
    )
    bodies = [
        json.loads(line)
        for line in (args.data_dir / "applications.jsonl").read_text(encoding="utf-8").splitlines()
    ]
    requests = [DecisionRequest.model_validate(b) for b in bodies[:2000]]

    print(machine())

    # Gather evidence once per distinct application; the engine loop then re-decides them.
    prepared = []
    for req in requests:
        try:
            p = service.prepare(req)
        except RequestRejected as exc:
            # Figures over undecidable applications would mean nothing.
            sys.exit(
                f"bench: {req.application_id} cannot be decided ({exc.code}: {exc} {exc.fields}); "
                "generate the data first: miaopi demo generate --out <data dir>"
            )
        decided = service.decide_prepared(p)
        prepared.append((p.ruleset, decided.env))

    n = args.decisions
    step = max(1, n // 10)
    rss0 = proc.memory_info().rss
    outcomes: dict[str, int] = {}
    t0 = time.perf_counter()
    for i in range(n):
        ruleset, env = prepared[i % len(prepared)]
        result = evaluate(ruleset, env)
        outcomes[result.outcome.value] = outcomes.get(result.outcome.value, 0) + 1
        if (i + 1) % step == 0:
            elapsed = time.perf_counter() - t0
            print(
                f"engine  {i + 1:>9,} decisions  {(i + 1) / elapsed:>9,.0f}/s  RSS {proc.memory_info().rss / 2**20:7.1f} MiB",
                flush=True,
            )
    elapsed = time.perf_counter() - t0
    rss1 = proc.memory_info().rss
    print(
        f"engine: {n:,} decisions in {elapsed:.1f}s = {n / elapsed:,.0f}/s; RSS {rss0 / 2**20:.1f} → {rss1 / 2**20:.1f} MiB; {outcomes}"
    )

    # The Rete engine alone: assert the prepared fact, collect fired rules, delete the session.
    # The fact is built as evaluate() builds it: after parameters and named values are added.
    engine = get_engine()
    facts = []
    for rs, env in prepared:
        ready = prepare_env(rs, env)
        facts.append(
            (rs.engine_name, rs.compiled.definition, rs.compiled.fact(ready.env, ready.tables))
        )
    k = min(n, 200_000)
    t0 = time.perf_counter()
    for i in range(k):
        engine.fire(*facts[i % len(facts)])
    elapsed = time.perf_counter() - t0
    print(
        f"rete: {k:,} durable_rules assert+fire+delete in {elapsed:.1f}s = {k / elapsed:,.0f}/s; live sessions {engine.live_sessions()}"
    )

    m = args.service
    t0 = time.perf_counter()
    for i in range(m):
        service.decide_unstored(requests[i % len(requests)])
    elapsed = time.perf_counter() - t0
    print(
        f"service: {m:,} decisions (validation + evidence + engine + record) in {elapsed:.1f}s = {m / elapsed:,.0f}/s; "
        f"RSS {proc.memory_info().rss / 2**20:.1f} MiB"
    )
    service.close()


if __name__ == "__main__":
    main()
