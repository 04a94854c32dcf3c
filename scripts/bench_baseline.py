"""The speed of an earlier version on this machine, measured the way ``bench_wrk.py`` measures
main: what "ten times the speed" is against, whatever machine runs it.

Decisions/s depend on the machine as much as on the code (the same main made 400–1,100/s at
8 connections on three 2-core machines). This puts a figure of main beside a figure of an
earlier commit, taken on the same machine minutes apart. The default ``--ref`` is fb91dd9,
main as it stood when the issues asking for production grade were filed (the 54–79
decisions/s and 10–12 ms of CPU per decision they measured).

The first run makes a git worktree of ``--ref`` in ``--tree`` (``var/baseline/<ref>``), a
virtualenv in it with every library pinned at the version this project's venv has (so the
comparison is of code, not of library releases), and its own demo data (the same generator
and seed: the applications main posts). Later runs reuse them. Then, as ``bench_wrk`` does on
SQLite: the old ``miaopi serve`` (``--workers``, default one per core) on a fresh file, a 2 s
warm-up, and ``wrk`` posting ``/v1/decisions`` at each of ``--connections`` for ``--seconds``,
every request a new Idempotency-Key. It prints the same lines as ``bench_wrk``.

What the old commit lacks is left out: API keys (its POST takes none, so the Lua script sends
no ``Authorization``), ``/livez`` (readiness is its ``/healthz``), PostgreSQL and the RSS run.
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import IO

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
import bench_wrk  # noqa: E402
from bench import machine  # noqa: E402

FILED = "fb91dd9"
"""Main when the issues were filed (the figures the speed target multiplies)."""

_AUTH_LINE = '  headers["Authorization"] = "Bearer " .. key\n'


def _run(argv: list[str], *, cwd: Path | None = None, what: str) -> None:
    done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True)
    if done.returncode != 0:
        tail = (done.stderr or done.stdout)[-2000:]
        raise SystemExit(f"bench-baseline: {what} failed ({' '.join(argv[:3])} …):\n{tail}")


def ensure_tree(ref: str, tree: Path) -> None:
    """A worktree of ``ref`` with its own venv (libraries pinned as ours) and demo data."""
    if not (tree / ".git").exists():
        print(f"bench-baseline: git worktree of {ref} in {tree}", file=sys.stderr, flush=True)
        tree.parent.mkdir(parents=True, exist_ok=True)
        _run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(tree), ref], what="git")
    venv_bin = tree / ".venv" / "bin"
    if not (venv_bin / "miaopi").exists():
        print("bench-baseline: its virtualenv (~1 min)", file=sys.stderr, flush=True)
        freeze = subprocess.run(
            [sys.executable, "-m", "pip", "freeze", "--exclude-editable"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        pins = tree / "constraints-ours.txt"
        pins.write_text(freeze, encoding="utf-8")
        _run([sys.executable, "-m", "venv", str(tree / ".venv")], what="venv")
        _run(
            [str(venv_bin / "pip"), "install", "-q", "-c", str(pins), "-e", str(tree)],
            what="pip install",
        )
    data = tree / "var" / "bench"
    if not (data / "applications.jsonl").exists():
        print("bench-baseline: its demo data", file=sys.stderr, flush=True)
        _run([str(venv_bin / "miaopi"), "demo", "generate", "--out", str(data)], what="demo")


def old_server(
    tree: Path, work: Path, workers: int
) -> tuple[subprocess.Popen[bytes], str, IO[bytes]]:
    """The old ``miaopi serve`` on a fresh SQLite file in ``work``, once it answers."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MIAOPI_")}
    env.pop("DATABASE_URL", None)
    env["MIAOPI_PSEUDONYM_KEY"] = secrets.token_urlsafe(32)
    env["MIAOPI_RULESETS_DIR"] = str(tree / "rulesets")
    env["DATABASE_URL"] = f"sqlite:///{work / 'bench.db'}"
    port = bench_wrk.free_port()
    log_path = work / "baseline-server.log"
    log = log_path.open("wb")
    argv = bench_wrk.serve_argv(
        tree / ".venv" / "bin" / "miaopi", port, tree / "var" / "bench", workers
    )
    server = subprocess.Popen(argv, env=env, cwd=tree, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:  # the old server has no /livez
        bench_wrk.wait_ready(server, f"{base}/healthz", log_path, "bench-baseline")
    except SystemExit:
        bench_wrk.stop(server, log)
        raise
    return server, base, log


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--ref", default=FILED, help=f"the commit to measure (default {FILED})")
    parser.add_argument("--tree", type=Path, help="its worktree (default var/baseline/<ref>)")
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        print("bench-baseline: wrk is not installed (scripts/ensure-wrk.sh)", file=sys.stderr)
        return 2
    if _AUTH_LINE not in bench_wrk.LUA:
        print("bench-baseline: bench_wrk.LUA changed; update _AUTH_LINE", file=sys.stderr)
        return 2
    tree = (args.tree or ROOT / "var" / "baseline" / args.ref).resolve()
    ensure_tree(args.ref, tree)
    print(machine())
    print(
        f"baseline {args.ref}, workers {args.workers}, {args.seconds} s per run, "
        f"load average {os.getloadavg()[0]:.2f}"
    )
    label = "baseline"
    with tempfile.TemporaryDirectory(prefix="miaopi-baseline-") as tmp:
        work = Path(tmp)
        bench_wrk.prepare(work, tree / "var" / "bench")
        script = work / "decide.lua"
        script.write_text(bench_wrk.LUA.replace(_AUTH_LINE, ""), encoding="utf-8")
        wrk_env = {**os.environ, "BENCH_KEY": "", "BENCH_BODIES": str(work / "bodies.jsonl")}
        server, base, log = old_server(tree, work, args.workers)
        try:
            bench_wrk.wrk(base + "/v1/decisions", 8, 2, script, wrk_env)  # warm-up, as main's
            for c in args.connections:
                cpu0 = bench_wrk.server_cpu(server.pid)
                r = bench_wrk.wrk(base + "/v1/decisions", c, args.seconds, script, wrk_env)
                cpu = bench_wrk.server_cpu(server.pid) - cpu0
                print(bench_wrk.decide_line(label, c, r, cpu), flush=True)
        finally:
            bench_wrk.stop(server, log)
        stored = bench_wrk.stored_decisions(f"sqlite:///{work / 'bench.db'}")
        print(f"{label:<10} stored   {stored:,} decisions in the database", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
