"""Where a decision's server CPU goes: ``py-spy`` samples ``miaopi serve`` under ``wrk`` load.

Starts the server as ``bench_wrk.py`` does (a fresh SQLite file or PostgreSQL schema, demo
registries from ``--data-dir``), drives ``POST /v1/decisions`` at ``--connections`` for
``--seconds`` and samples every worker with ``py-spy record --format raw`` (the stacks of
thread holding the GIL: Python's own CPU, not waits on a lock, the disk or the network). It prints the share of samples by stage of the
decision (inclusive: a stage counts every sample with one of its frames on the stack) and the
functions with the most samples of their own. ``--raw FILE`` keeps the collapsed stacks (for
a flame graph). py-spy comes with the ``bench`` extra; it needs ptrace (root or
``kernel.yama.ptrace_scope=0``).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
sys.path.insert(0, str(ROOT / "scripts"))
from bench import machine  # noqa: E402
from bench_wrk import fresh_postgres, prepare, running_server, wrk  # noqa: E402

STAGES: list[tuple[str, str]] = [
    # (label, regex on a frame "function (file:line)"); a sample counts for every match
    ("HTTP, middleware, routing (outside the handler)", r"uvicorn|starlette|fastapi/routing"),
    ("request body: strict JSON + pydantic", r"api/strictjson\.py|parse_body|validate_json"),
    ("authentication", r"api/auth\.py|KeyStore"),
    ("idempotency look-up", r"find_by_key|_replay|idempotent"),
    ("evidence gathering (adapters)", r"DecisionService\.gather|adapters/"),
    ("rules: durable_rules", r"engine/_durable\.py|durable_rules"),
    ("evaluation and explanation", r"engine/decision\.py|engine/_compiled|engine/_semantics"),
    ("counterfactuals", r"counterfactual|engine/solve"),
    (
        "record: build + seal",
        r"build_record|explanations/record\.py|explanations/minimise|canonical",
    ),
    ("store: append, group commit", r"explanations/store\.py"),
    ("SQL driver", r"sqlalchemy|sqlite3|psycopg"),
    ("signing", r"cryptography|sign"),
    ("response encoding", r"render|orjson|jsonable_encoder|serialize_response"),
    ("logging", r"structlog|api/logging\.py|logging/"),
]


def frames_of(stack: str) -> list[str]:
    return stack.split(";")


def summarize(raw: str, top: int) -> list[str]:
    """Stage shares and the top self-time functions of py-spy's collapsed stacks."""
    samples: Counter[str] = Counter()
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            samples[stack] += int(count)
    total = sum(samples.values()) or 1
    by_stage: Counter[str] = Counter()
    own: Counter[str] = Counter()
    compiled = [(label, re.compile(rx)) for label, rx in STAGES]
    for stack, n in samples.items():
        frames = frames_of(stack)
        for label, rx in compiled:
            if any(rx.search(f) for f in frames):
                by_stage[label] += n
        leaf = re.sub(r":\d+\)$", ")", frames[-1])
        own[leaf] += n
    out = [f"{total:,} samples of the thread holding the GIL"]
    out.append("by stage (inclusive; stages nest, so shares add to more than 100%):")
    for label, _ in STAGES:
        out.append(f"  {by_stage[label] / total:6.1%}  {label}")
    out.append(f"top {top} functions by own samples:")
    for name, n in own.most_common(top):
        out.append(f"  {n / total:6.1%}  {name}")
    return out


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data-dir", type=Path, default=Path("var/bench"))
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--database", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument(
        "--postgres-url", default="postgresql+psycopg://postgres@127.0.0.1:5432/test"
    )
    parser.add_argument("--rate", type=int, default=250, help="py-spy samples per second")
    parser.add_argument("--top", type=int, default=40)
    parser.add_argument("--raw", type=Path, help="also write the collapsed stacks here")
    args = parser.parse_args()
    spy = BIN / "py-spy"
    if not spy.exists():
        print("profile-http: py-spy is not installed (pip install -e '.[bench]')", file=sys.stderr)
        return 2
    print(machine())
    with tempfile.TemporaryDirectory(prefix="miaopi-profile-") as tmp:
        work = Path(tmp)
        prepare(work, args.data_dir)
        url = f"sqlite:///{work / 'profile.db'}"
        if args.database == "postgres":
            url = fresh_postgres(args.postgres_url) or ""
            if not url:
                return 2
        with running_server(args.database, url, args, work) as (base, pid, env):
            script = work / "decide.lua"
            wrk(base + "/v1/decisions", args.connections, 3, script, env)  # warm-up
            workers = [p.pid for p in psutil.Process(pid).children(recursive=True)] or [pid]
            raws = [work / f"spy-{w}.txt" for w in workers]
            spies = []
            for w, out in zip(workers, raws, strict=True):
                argv = [
                    str(spy), "record", "--pid", str(w), "--format", "raw", "--nonblocking",
                    "--rate", str(args.rate), "--duration", str(args.seconds), "--gil",
                    "--output", str(out),
                ]  # fmt: skip
                spies.append(
                    subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                )
            result = wrk(base + "/v1/decisions", args.connections, args.seconds, script, env)
            for s in spies:
                s.wait(timeout=60)
        raw = "".join(p.read_text(encoding="utf-8") for p in raws if p.exists())
    if args.raw:
        args.raw.write_text(raw, encoding="utf-8")
    print(
        f"{args.database}: {result['rps']:,.0f} decisions/s at c={args.connections}, "
        f"p99 {result.get('p99', 0):.1f} ms, {len(workers)} worker(s) sampled"
    )
    print("\n".join(summarize(raw, args.top)))
    print(json.dumps({"decisions_per_s": result["rps"], "p99_ms": result.get("p99")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
