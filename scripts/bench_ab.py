"""This checkout against another commit, over HTTP, in interleaved runs on one machine.

A change of a few percent cannot be read off two ``bench_wrk`` runs taken one after the
other: on this project's 2-core machines the same code has given 639 and 808 decisions/s
within the hour, and a protocol change that looked like +2 to +9% in such runs measured
nothing once its runs were interleaved. This takes ``--rounds`` pairs of runs, one of
``--ref`` and one of this checkout (its working tree, uncommitted changes included), in the
order A B, B A, A B … so that a drift of the machine falls on both alike. Each run is
``bench_wrk``'s own: a fresh server on a fresh SQLite file, a 2 s warm-up, then ``wrk``
posting ``/v1/decisions`` at ``--connections`` for ``--seconds``, every request a new
Idempotency-Key. It prints every run, then the median of each side and the ratio of each
pair.

``--ref`` runs from a git worktree in ``var/ab/<commit>`` with this venv's libraries, so it
must be a commit of this generation (the same dependencies, ``/livez``, API keys). For the
code the speed target was set on, use ``bench_baseline.py``, which builds it a venv of its own.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
import bench_wrk  # noqa: E402
from bench import machine  # noqa: E402


def worktree(ref: str) -> tuple[Path, str]:
    """A detached worktree of ``ref`` under ``var/ab`` (made once per commit), and its short id."""
    found = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}"],
        capture_output=True,
        text=True,
    )
    if found.returncode != 0:
        raise SystemExit(f"bench-ab: {ref!r} is not a commit of this repository")
    sha = found.stdout.strip()
    tree = ROOT / "var" / "ab" / sha
    if not (tree / ".git").exists():
        print(f"bench-ab: git worktree of {sha[:7]} in {tree}", file=sys.stderr, flush=True)
        tree.parent.mkdir(parents=True, exist_ok=True)
        made = subprocess.run(
            ["git", "-C", str(ROOT), "worktree", "add", "--detach", str(tree), sha],
            capture_output=True,
            text=True,
        )
        if made.returncode != 0:
            raise SystemExit(f"bench-ab: git worktree add failed: {made.stderr.strip()}")
    return tree, sha[:7]


def one_run(label: str, code: Path | None, args: argparse.Namespace) -> tuple[float, float, str]:
    """One fresh server of ``code`` (None: this checkout) measured once: decisions/s, server
    CPU ms a decision, and ``bench_wrk``'s line."""
    with tempfile.TemporaryDirectory(prefix="miaopi-ab-") as tmp:
        work = Path(tmp)
        bench_wrk.prepare(work, args.data_dir)
        url = f"sqlite:///{work / 'bench.db'}"
        with bench_wrk.running_server(label, url, args, work, code=code) as (base, pid, wrk_env):
            script = work / "decide.lua"
            bench_wrk.wrk(base + "/v1/decisions", 8, 2, script, wrk_env)  # warm-up
            cpu0 = bench_wrk.server_cpu(pid)
            r = bench_wrk.wrk(
                base + "/v1/decisions", args.connections, args.seconds, script, wrk_env
            )
            cpu = bench_wrk.server_cpu(pid) - cpu0
    if r["non2xx"]:  # its server's log went with the run's folder: run bench_wrk to read one
        raise SystemExit(f"bench-ab: {label} answered {int(r['non2xx'])} non-2xx")
    line = bench_wrk.decide_line(label, args.connections, r, cpu)
    return r["rps"], bench_wrk.cpu_ms_per_decision(r, cpu), line


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--ref", required=True, help="the commit to compare with (e.g. HEAD~1)")
    parser.add_argument("--rounds", type=int, default=4, help="pairs of runs (default 4)")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--data-dir", type=Path, default=ROOT / "var" / "bench")
    args = parser.parse_args()
    args.data_dir = args.data_dir.resolve()  # the servers of --ref run in their own folder
    if shutil.which("wrk") is None:
        print("bench-ab: wrk is not installed (scripts/ensure-wrk.sh)", file=sys.stderr)
        return 2
    if not (args.data_dir / "applications.jsonl").exists():
        print(
            f"bench-ab: no demo data in {args.data_dir} (make bench-wrk makes it)", file=sys.stderr
        )
        return 2
    if args.rounds < 1:
        print("bench-ab: --rounds must be at least 1", file=sys.stderr)
        return 2
    tree, short = worktree(args.ref)
    print(machine())
    print(
        f"{short} against this checkout, {args.rounds} pairs at c={args.connections}, "
        f"{args.seconds} s a run, workers {args.workers}, load average {os.getloadavg()[0]:.2f}",
        flush=True,
    )
    sides: dict[str, list[tuple[float, float]]] = {short: [], "this": []}
    for i in range(args.rounds):
        order = [(short, tree), ("this", None)]
        for label, code in order if i % 2 == 0 else reversed(order):
            rps, per, line = one_run(label, code, args)
            sides[label].append((rps, per))
            print(line, flush=True)
    for label, runs in sides.items():
        print(
            f"{label:<10} median   {statistics.median(r for r, _ in runs):8,.0f} dec/s  "
            f"server CPU {statistics.median(p for _, p in runs):.2f} ms/decision"
        )
    pairs = [b[0] / a[0] for a, b in zip(sides[short], sides["this"], strict=True)]
    print(
        f"this ÷ {short}: median {statistics.median(pairs):.3f}, "
        f"pairs {' '.join(f'{p:.3f}' for p in pairs)}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
