"""Server instructions a decision, counted by valgrind: a speed figure the machine's drift
does not move.

On this project's 2-core machines the same code has run at 1.4 and at 3.6 ms of server CPU
a decision on different days, and ±15% within the hour, so ``bench_wrk`` and even the
interleaved ``bench_ab`` cannot see a change of a few percent. The number of instructions
the server executes is nearly the same from run to run. This starts ``miaopi serve`` (one
worker and the commit process, on a fresh SQLite file) under ``valgrind --tool=callgrind``,
posts ``--warm-up`` decisions, zeroes every process's counters (``callgrind_control -z``),
posts ``--decisions`` more at 8 concurrent clients (every one a new Idempotency-Key), dumps
the counters (``callgrind_control -d``) and prints the instructions (Ir) a decision, in all
and by process: the HTTP workers and the commit process. Instructions are not time: a cache
miss costs more than an add, and valgrind runs the server ~50× slower (a run takes minutes).
Use it to compare code (``--ref``: another commit of this generation, measured the same way
just before), and ``bench_wrk`` for what a machine does.

One worker by default: with more, uvicorn's supervisor pings each worker and restarts one
that takes over 5 s to answer, which a worker under valgrind (its threads run one at a time)
does. A decision's work is the same in one worker as in two, but for the metrics, which two
workers keep in shared files. Crypto counts as valgrind's CPU runs it: without SHA extensions,
so hashing a record weighs more here than on the machine.

Needs valgrind (Debian: ``apt-get install valgrind``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import shutil
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import httpx
import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
import bench_wrk  # noqa: E402
from bench import machine  # noqa: E402
from bench_ab import worktree  # noqa: E402

_TOTALS = re.compile(rb"^(?:totals|summary):\s*(\d+)", re.MULTILINE)


async def post(base: str, key: str, bodies: list[bytes], n: int, clients: int) -> None:
    """``n`` decisions, ``clients`` at a time; ``SystemExit`` on any answer but 2xx."""
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    nonce = uuid.uuid4().hex[:8]
    queue = iter(range(n))

    async def client(http: httpx.AsyncClient) -> None:
        for i in queue:
            r = await http.post(
                "/v1/decisions",
                content=bodies[i % len(bodies)],
                headers={**headers, "Idempotency-Key": f"ir-{nonce}-{i}"},
            )
            if r.status_code >= 300:
                raise SystemExit(f"bench-ir: decision answered {r.status_code}: {r.text[:300]}")

    async with httpx.AsyncClient(base_url=base, timeout=600) as http:
        await asyncio.gather(*(client(http) for _ in range(clients)))


def family(pid: int) -> list[psutil.Process]:
    proc = psutil.Process(pid)
    return [proc, *proc.children(recursive=True)]


def role(proc: psutil.Process) -> str:
    cmd = " ".join(proc.cmdline())
    if "commit_process" in cmd:
        return "commit process"
    if "multiprocessing" in cmd or "spawn_main" in cmd:
        return "HTTP workers"
    return "HTTP worker" if "serve" in cmd else "other"


def callgrind_control(flag: str, pid: int) -> None:
    subprocess.run(["callgrind_control", flag, str(pid)], check=True, capture_output=True)


def measure(label: str, code: Path | None, args: argparse.Namespace) -> dict[str, int]:
    """Instructions of each role of one server of ``code`` (None: this checkout) over
    ``args.decisions`` decisions."""
    with tempfile.TemporaryDirectory(prefix="miaopi-ir-") as tmp:
        work = Path(tmp)
        bench_wrk.prepare(work, args.data_dir)
        bodies = (work / "bodies.jsonl").read_bytes().splitlines()
        url = f"sqlite:///{work / 'bench.db'}"
        out = work / "cg"
        out.mkdir()
        prefix = (
            "valgrind",
            "--tool=callgrind",
            "--trace-children=yes",
            f"--callgrind-out-file={out}/%p",
        )
        with bench_wrk.running_server(
            label, url, args, work, code=code, prefix=prefix, ready_s=900
        ) as (base, pid, wrk_env):
            key = wrk_env["BENCH_KEY"]
            asyncio.run(post(base, key, bodies, args.warm_up, 8))
            procs = {
                p.pid: role(p)
                for p in family(pid)
                if p.name().startswith(("valgrind", "memcheck", "callgrind"))
            }
            if not procs:  # valgrind names its processes after the tool on some systems
                procs = {p.pid: role(p) for p in family(pid)}
            for p in procs:
                callgrind_control("-z", p)
            print(
                f"bench-ir: {label}: counting {args.decisions} decisions",
                file=sys.stderr,
                flush=True,
            )
            asyncio.run(post(base, key, bodies, args.decisions, 8))
            for p in procs:
                callgrind_control("-d", p)
            if "commit process" not in procs.values():
                raise SystemExit(f"bench-ir: {label}: the commit process did not start in time")
            totals: dict[str, int] = {}
            for p, who in procs.items():
                for dump in out.glob(f"{p}.*"):
                    if args.keep is not None:
                        args.keep.mkdir(parents=True, exist_ok=True)
                        shutil.copy(
                            dump, args.keep / f"{label}-{who.replace(' ', '-')}-{dump.name}"
                        )
                    found = _TOTALS.search(dump.read_bytes())
                    if found:
                        totals[who] = totals.get(who, 0) + int(found.group(1))
    return totals


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, default=Path("var/bench"))
    parser.add_argument("--decisions", type=int, default=300)
    parser.add_argument("--warm-up", type=int, default=100)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--ref", help="another commit of this generation, measured alike")
    parser.add_argument(
        "--keep", type=Path, help="copy the counted dumps here (for callgrind_annotate)"
    )
    args = parser.parse_args()
    args.data_dir = args.data_dir.resolve()  # the server of --ref runs in its own folder
    if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        raise SystemExit("bench-ir: valgrind is not installed (Debian: apt-get install valgrind)")
    if not (args.data_dir / "applications.jsonl").exists():
        raise SystemExit(
            f"bench-ir: no {args.data_dir}/applications.jsonl; run `miaopi demo generate --out {args.data_dir}`"
        )
    runs: list[tuple[str, Path | None]] = [("this", None)]
    if args.ref:
        tree, short = worktree(args.ref)
        runs.insert(0, (short, tree))
    print(machine())
    print(
        f"valgrind callgrind, {args.decisions} decisions counted after {args.warm_up}, 8 clients, workers {args.workers}"
    )
    results = [measure(label, code, args) for label, code in runs]
    per: dict[str, float] = {}
    for (label, _), totals in zip(runs, results, strict=True):
        per[label] = sum(totals.values()) / args.decisions
        parts = ", ".join(
            f"{who} {n / args.decisions / 1e6:.3f}M" for who, n in sorted(totals.items())
        )
        print(f"{label:<8} {per[label] / 1e6:7.3f}M instructions a decision ({parts})")
    if args.ref:
        ref, this = per[runs[0][0]], per["this"]
        print(f"this ÷ {runs[0][0]}: {this / ref:.3f}")
    print(json.dumps({k: round(v) for k, v in per.items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
