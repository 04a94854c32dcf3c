"""Benchmark: our engine decision with its full explanation vs zen-engine with its trace.

On the same machine, in one run, over the same prepared applications (the talent subsidy's
bulk applications of ``miaopi demo generate``, their evidence gathered once through
DecisionService as scripts/bench.py does):

  ours     — ``evaluate(ruleset, env)``: every criterion's status, the values it compared,
             its reasons, the outcome and the amounts (the Evaluation a record is built from);
  zen      — zen-engine (GoRules) evaluating the JDM graph that scripts/zen_jdm.py generates
             from the same compiled ruleset, with ``trace=True`` (every node's input, output
             and expression results);
  durable  — the durable_rules call alone (assert the prepared fact, collect the fired
             rules, delete the session), as ``evaluate`` makes it;
  floor    — zen-engine on a graph from input straight to output, with trace: what a call
             costs before any rule, so no graph of the ruleset, however written, is faster.

Each ruleset version is measured on its own: 2016 on the applications as submitted (2025),
2026 on the same facts one year later. Before timing, zen's outcome, criterion statuses and
amounts are checked against ours for every application (the run fails on any
disagreement). Each figure is the best of ``--repeat`` rounds, the three engines taking turns
within each round, as decisions per CPU second of this process (steady on a shared, loaded
machine; everything here runs on one thread) and per wall-clock second.

Needs the ``bench`` extra: ``pip install -e '.[bench]'``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

import zen
from bench import machine
from zen_jdm import to_jdm, zen_context, zen_decision

from api.deployment import load_deployment
from api.service import DecisionRequest, DecisionService
from engine import Ruleset, evaluate, get_engine
from engine.dates import anniversary
from engine.decision import Evaluation, prepare_env

SERVICE = "talent-housing-subsidy"
_EMPTY_GRAPH = {
    "nodes": [
        {"id": "input", "type": "inputNode", "name": "input", "position": {"x": 0, "y": 0}},
        {"id": "output", "type": "outputNode", "name": "output", "position": {"x": 200, "y": 0}},
    ],
    "edges": [{"id": "e0", "sourceId": "input", "targetId": "output", "type": "edge"}],
}
"""Input straight to output: what zen-engine costs per call before any rule."""


def _rates(run: Callable[[int], None], n: int) -> tuple[float, float]:
    """Decisions per CPU second of this process, and per second of wall-clock time."""
    c0, t0 = time.process_time(), time.perf_counter()
    run(n)
    return n / (time.process_time() - c0), n / (time.perf_counter() - t0)


def _agree(ours: Evaluation, theirs: Mapping[str, Any]) -> list[str]:
    """What differs between our decision and zen's (empty when they agree)."""
    outcome, criteria, outputs = zen_decision(theirs)
    diffs = []
    if outcome != ours.outcome.value:
        diffs.append(f"outcome {outcome} != ours {ours.outcome.value}")
    mine = {c.id: c.status.value for c in ours.criteria}
    if criteria != mine:
        diffs.append(f"criteria {criteria} != ours {mine}")
    if ours.outputs is not None:
        got = {k: None if v is None else Decimal(str(v)) for k, v in outputs.items()}
        want = {k: None if v is None else Decimal(str(v)) for k, v in ours.outputs.items()}
        if got != want:
            diffs.append(f"outputs {got} != ours {want}")
    return diffs


def _envs(data_dir: Path, rulesets: Path, count: int) -> list[tuple[Ruleset, dict[str, object]]]:
    """Each application's facts as ``evaluate`` receives them (evidence gathered once)."""
    deployment = load_deployment(rulesets_dir=rulesets, data_dir=data_dir, registries=None)
    service = DecisionService(
        catalog=deployment.rulesets,
        adapters=deployment.adapters,
        registries=deployment.registries,
        store=None,
        pseudonym_key="bench",
    )
    out = []
    lines = (data_dir / "applications.jsonl").read_text(encoding="utf-8").splitlines()
    for line in lines:
        body = json.loads(line)
        if body["service"] != SERVICE:
            continue
        prepared = service.prepare(DecisionRequest.model_validate(body))
        out.append((prepared.ruleset, service.decide_prepared(prepared).env))
        if len(out) == count:
            break
    service.close()
    return out


def _measure(
    label: str,
    ruleset: Ruleset,
    envs: Sequence[dict[str, object]],
    *,
    decisions: int,
    repeat: int,
) -> float:
    decision = zen.ZenEngine().create_decision(json.dumps(to_jdm(ruleset), ensure_ascii=False))
    contexts = [zen_context(env) for env in envs]
    trace: zen.DecisionEvaluateOptions = {"trace": True}
    disagree = 0
    outcomes: dict[str, int] = {}
    for env, ctx in zip(envs, contexts, strict=True):
        ours = evaluate(ruleset, env)
        outcomes[ours.outcome.value] = outcomes.get(ours.outcome.value, 0) + 1
        diffs = _agree(ours, decision.evaluate(ctx, trace))
        if diffs:
            disagree += 1
            if disagree <= 5:
                print(f"  DISAGREE: {'; '.join(diffs)}", file=sys.stderr)
    print(
        f"{label}: zen agrees with ours on {len(envs) - disagree:,} of {len(envs):,} applications "
        f"(outcome, every criterion's status, amounts); ours: {outcomes}"
    )
    if disagree:
        sys.exit(f"bench: zen and ours disagree on {disagree} applications")

    engine = get_engine()
    facts = []
    for env in envs:
        ready = prepare_env(ruleset, env)
        facts.append(ruleset.compiled.fact(ready.env, ready.tables))
    name, definition = ruleset.engine_name, ruleset.compiled.definition
    k = len(envs)

    def ours_run(n: int) -> None:
        for i in range(n):
            evaluate(ruleset, envs[i % k])

    def zen_run(n: int) -> None:
        for i in range(n):
            decision.evaluate(contexts[i % k], trace)

    def durable_run(n: int) -> None:
        for i in range(n):
            engine.fire(name, definition, facts[i % k])

    empty = zen.ZenEngine().create_decision(json.dumps(_EMPTY_GRAPH))

    def floor_run(n: int) -> None:
        for i in range(n):
            empty.evaluate(contexts[i % k], trace)

    ours_run(min(decisions, 1000))  # warm up (durable_rules creates the ruleset)
    runs = {"ours": ours_run, "zen": zen_run, "durable": durable_run, "floor": floor_run}
    cpu = dict.fromkeys(runs, 0.0)
    wall = dict.fromkeys(runs, 0.0)
    for _ in range(repeat):
        for key, run in runs.items():
            c, w = _rates(run, decisions)
            cpu[key], wall[key] = max(cpu[key], c), max(wall[key], w)
    print(
        f"{label}: best of {repeat} rounds × {decisions:,} decisions over {k:,} applications\n"
        f"                                      per CPU second   per wall second\n"
        f"  ours (evaluate + full explanation)  {cpu['ours']:>10,.0f}/s   {wall['ours']:>10,.0f}/s\n"
        f"  zen-engine with trace               {cpu['zen']:>10,.0f}/s   {wall['zen']:>10,.0f}/s\n"
        f"  durable_rules call alone            {cpu['durable']:>10,.0f}/s   {wall['durable']:>10,.0f}/s\n"
        f"  zen-engine, empty graph with trace  {cpu['floor']:>10,.0f}/s   {wall['floor']:>10,.0f}/s"
        "   (the least any graph costs)\n"
        f"  ours / zen = {cpu['ours'] / cpu['zen']:.2f}× (CPU), {wall['ours'] / wall['zen']:.2f}× (wall);"
        f"  durable alone / zen = {cpu['durable'] / cpu['zen']:.2f}× (CPU);"
        f"  ours / zen's empty graph = {cpu['ours'] / cpu['floor']:.2f}× (CPU)",
        flush=True,
    )
    return cpu["ours"] / cpu["zen"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, default=Path("var/bench"))
    parser.add_argument("--rulesets", type=Path, default=Path("rulesets"))
    parser.add_argument("--applications", type=int, default=2000)
    parser.add_argument("--decisions", type=int, default=20_000, help="per engine and round")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    print(machine())
    print(f"zen-engine {_zen_version()}")
    gathered = _envs(args.data_dir, args.rulesets, args.applications)
    if not gathered:
        sys.exit(f"bench: no {SERVICE} applications in {args.data_dir}/applications.jsonl")
    by_version: dict[str, tuple[Ruleset, list[dict[str, object]]]] = {}
    for rs, env in gathered:
        by_version.setdefault(rs.version, (rs, []))[1].append(env)
    catalog_rs = {rs.version: rs for rs, _ in gathered}
    later = _later_ruleset(args.rulesets, catalog_rs)
    if later is not None and later.version not in by_version:
        moved = []
        for _, env in gathered:
            env = dict(env)
            env["application.date"] = anniversary(env["application.date"], 1)  # type: ignore[arg-type]
            if later.in_force_on(env["application.date"]):  # type: ignore[arg-type]
                moved.append(env)
        by_version[later.version] = (later, moved)
    for _, (rs, envs) in sorted(by_version.items()):
        note = "" if rs.version in catalog_rs else ", the same facts one year later"
        _measure(f"{rs.key}{note}", rs, envs, decisions=args.decisions, repeat=args.repeat)


def _later_ruleset(rulesets: Path, seen: dict[str, Ruleset]) -> Ruleset | None:
    """The talent subsidy's newest version (2026), to decide the same facts a year later."""
    from engine import RulesetCatalog
    from engine.registries import load_catalogue

    catalog = RulesetCatalog.load(rulesets, sources=load_catalogue(rulesets / "registries.yaml"))
    versions = [rs for rs in catalog if rs.service == SERVICE]
    newest = max(versions, key=lambda rs: rs.doc.effective_from, default=None)
    if newest is None or newest.version in seen:
        return None
    return newest


def _zen_version() -> str:
    from importlib import metadata

    return metadata.version("zen-engine")


if __name__ == "__main__":
    main()
