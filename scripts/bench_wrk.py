"""Benchmark (b): HTTP decisions/s and latency under 1, 8 and 32 connections, with durable records.

For each database (SQLite in a temporary folder; PostgreSQL in a fresh schema of
``--postgres-url`` when it answers) it starts ``miaopi serve`` as a process on a free loopback
port (file-backed demo registries from ``--data-dir``, fresh secrets in the environment, a
platform key made with ``miaopi keys create``), then drives it with Debian's ``wrk`` (C, one
thread per core it is given; it costs the server little):

- ``ceiling``: ``GET /livez`` (no work: the HTTP stack alone) at the highest connection count;
- ``decide``: ``POST /v1/decisions`` with the demo applications, every request a new
  Idempotency-Key (so every one is decided, stored, chained and signed), at each connection
  count for ``--seconds`` each.

It prints decisions/s, p50/p90/p99 from wrk, the share of non-2xx answers (must be 0), the
server's CPU seconds per decision, the decisions the database holds afterwards, and the
machine. Install wrk with ``apt-get install wrk`` (``make bench`` does).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import httpx
import psutil
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
sys.path.insert(0, str(ROOT / "scripts"))
from bench import machine  # noqa: E402

LUA = r"""
local bodies = {}
local n = 0
local i = 0
local nonce = os.getenv("BENCH_NONCE") or "x"
local key = os.getenv("BENCH_KEY") or ""
function setup(thread)
  thread:set("tid", tostring(math.random(1, 1e9)))
end
function init(args)
  for line in io.lines(os.getenv("BENCH_BODIES")) do
    n = n + 1
    bodies[n] = line
  end
end
function request()
  i = i + 1
  local body = bodies[(i % n) + 1]
  local headers = {}
  headers["Content-Type"] = "application/json"
  headers["Authorization"] = "Bearer " .. key
  headers["Idempotency-Key"] = nonce .. "-" .. tid .. "-" .. i
  return wrk.format("POST", "/v1/decisions", headers, body)
end
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wrk(
    url: str, connections: int, seconds: int, script: Path | None, env: dict[str, str]
) -> dict[str, float]:
    """Run wrk; return requests/s, latency percentiles (ms) and non-2xx count."""
    threads = max(1, min(connections, 2))
    argv = [
        "wrk",
        f"-t{threads}",
        f"-c{connections}",
        f"-d{seconds}s",
        "--latency",
        "--timeout",
        "10s",
    ]
    if script is not None:
        argv += ["-s", str(script)]
    env = {**env, "BENCH_NONCE": uuid.uuid4().hex[:12]}  # every run its own keys: no replays
    out = subprocess.run([*argv, url], capture_output=True, text=True, env=env, check=True).stdout
    result: dict[str, float] = {}
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    result["rps"] = float(m.group(1)) if m else 0.0
    m = re.search(r"(\d+) requests in", out)
    result["requests"] = float(m.group(1)) if m else 0.0
    for p in ("50", "90", "99"):
        m = re.search(rf"^\s+{p}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        if m:
            scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[m.group(2)]
            result[f"p{p}"] = float(m.group(1)) * scale
    m = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    result["non2xx"] = float(m.group(1)) if m else 0.0
    m = re.search(r"Socket errors:.*", out)
    result["socket_errors"] = 1.0 if m else 0.0
    return result


def server_cpu(pid: int) -> float:
    """CPU seconds of the server process and its workers, those that have exited included
    (the parent's ``children_*`` times: a worker that ended mid-run would otherwise take its
    seconds away from the sum)."""
    try:
        proc = psutil.Process(pid)
        family = [proc, *proc.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0.0
    total = 0.0
    for p in family:
        try:
            t = p.cpu_times()
        except psutil.NoSuchProcess:  # gone (or a zombie) since listed: its parent has it
            continue
        total += t.user + t.system + t.children_user + t.children_system
    return total


def server_rss(pid: int) -> float:
    """Resident memory (MiB) of the server process and its workers."""
    try:
        proc = psutil.Process(pid)
        return (
            float(sum(p.memory_info().rss for p in [proc, *proc.children(recursive=True)])) / 2**20
        )
    except psutil.NoSuchProcess:
        return 0.0


def rss_run(
    label: str, base: str, pid: int, script: Path, env: dict[str, str], seconds: int
) -> list[str]:
    """Decide at 8 connections for ``seconds``, sampling the server's RSS every tenth."""
    argv = ["wrk", "-t2", "-c8", f"-d{seconds}s", "--timeout", "10s", "-s", str(script)]
    run = subprocess.Popen(
        [*argv, base + "/v1/decisions"],
        env={**env, "BENCH_NONCE": uuid.uuid4().hex[:12]},
        stdout=subprocess.PIPE,
        text=True,
    )
    samples = []
    started = time.monotonic()
    for tenth in range(1, 11):
        time.sleep(max(0.0, started + seconds * tenth / 10 - time.monotonic()))
        samples.append(f"{server_rss(pid):.0f}")
    out, _ = run.communicate()
    m = re.search(r"(\d+) requests in", out)
    done = int(m.group(1)) if m else 0
    line = f"{label:<10} rss      {done:,} decisions in {seconds} s; server RSS (MiB) at each tenth: {' '.join(samples)}"
    print(line, flush=True)
    return [line]


def fresh_postgres(url: str) -> str | None:
    """A new schema in the PostgreSQL database at ``url``; the URL that uses it, or None."""
    try:
        engine = sa.create_engine(url)
        schema = f"bench_{uuid.uuid4().hex[:10]}"
        with engine.begin() as conn:
            conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
        engine.dispose()
    except Exception as exc:  # reported, not fatal: SQLite still runs
        print(f"bench-wrk: PostgreSQL not used ({type(exc).__name__}: {exc})", file=sys.stderr)
        return None
    sep = "&" if "?" in url else "?"
    return f"{url}{sep}options=-csearch_path%3D{schema}"


@contextlib.contextmanager
def running_server(
    label: str,
    database_url: str,
    args: argparse.Namespace,
    work: Path,
    code: Path | None = None,
    prefix: tuple[str, ...] = (),
    ready_s: float = 60,
) -> Iterator[tuple[str, int, dict[str, str]]]:
    """``miaopi serve`` on ``database_url`` with fresh secrets and a platform key: its base URL,
    its pid and the environment wrk needs (``decide.lua`` and ``bodies.jsonl`` in ``work``).

    ``code``: another checkout whose modules the server runs, with this venv's libraries (its
    folder first on ``PYTHONPATH`` for ``miaopi`` itself, and the working directory of every
    process, since the workers and the commit process put theirs first on ``sys.path``).
    ``prefix``: a command the server runs under (``bench_ir.py``'s valgrind), which may
    need ``ready_s`` seconds to answer."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MIAOPI_")}
    if code is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(code), *filter(None, [env.get("PYTHONPATH")])])
    env["MIAOPI_PSEUDONYM_KEY"] = secrets.token_urlsafe(32)
    env["DATABASE_URL"] = database_url
    env["MIAOPI_SECRETS_DIR"] = str(work / "secrets")
    env["MIAOPI_CHECKPOINT_FILE"] = str(work / f"{label}-checkpoints.txt")
    subprocess.run(
        [str(BIN / "miaopi"), "keys", "signing-key", "--out", str(work / "signing.key")],
        env=env,
        cwd=code,
        check=True,
        capture_output=True,
    ) if not (work / "signing.key").exists() else None
    env["MIAOPI_SIGNING_KEY_FILE"] = str(work / "signing.key")
    made = subprocess.run(
        [str(BIN / "miaopi"), "keys", "create", "--role", "platform", "--label", "bench"],
        env=env,
        cwd=code,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    key = next(t for t in made.split() if t.startswith("mpk_"))
    port = free_port()
    log = (work / f"{label}-server.log").open("wb")
    argv = [*prefix, *serve_argv(BIN / "miaopi", port, args.data_dir, args.workers)]
    server = subprocess.Popen(argv, env=env, cwd=code, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(server, f"{base}/livez", work / f"{label}-server.log", "bench-wrk", ready_s)
        wrk_env = {
            **os.environ,
            "BENCH_KEY": key,
            "BENCH_BODIES": str(work / "bodies.jsonl"),
        }
        yield base, server.pid, wrk_env
    finally:
        stop(server, log)


def serve_argv(miaopi: Path, port: int, data_dir: Path, workers: int) -> list[str]:
    """``miaopi serve`` on loopback ``port`` with the registries of ``data_dir``."""
    return [
        str(miaopi),
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--data-dir",
        str(data_dir),
        "--workers",
        str(workers),
    ]


def wait_ready(
    server: subprocess.Popen[bytes], url: str, log_path: Path, who: str, within_s: float = 60
) -> None:
    """Until ``url`` answers 200; ``SystemExit`` naming the log if the server dies or
    ``within_s`` seconds pass."""
    deadline = time.monotonic() + within_s
    while True:
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if server.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"{who}: server did not start; see {log_path}")
        time.sleep(0.2)


def stop(server: subprocess.Popen[bytes], log: IO[bytes]) -> None:
    """Stop a server started for a run (SIGTERM, then SIGKILL after 20 s) and close its log."""
    server.terminate()
    try:
        server.wait(20)
    except subprocess.TimeoutExpired:
        server.kill()
    log.close()


def stored_decisions(database_url: str) -> int:
    engine = sa.create_engine(database_url)
    with engine.connect() as conn:
        stored = conn.exec_driver_sql("SELECT count(*) FROM decisions").scalar_one()
    engine.dispose()
    return int(stored)


def cpu_ms_per_decision(r: dict[str, float], cpu_s: float) -> float:
    """The server's CPU milliseconds a request of wrk's run ``r`` (``cpu_s`` in all)."""
    return cpu_s / r["requests"] * 1000 if r["requests"] else 0.0


def decide_line(label: str, c: int, r: dict[str, float], cpu_s: float) -> str:
    """One ``decide`` line: decisions/s, latency percentiles, non-2xx, server CPU a decision."""
    per = cpu_ms_per_decision(r, cpu_s)
    return (
        f"{label:<10} decide   c={c:<3} {r['rps']:>8,.0f} dec/s  p50 {r.get('p50', 0):6.2f} ms  "
        f"p90 {r.get('p90', 0):6.2f} ms  p99 {r.get('p99', 0):6.2f} ms  "
        f"non-2xx {int(r['non2xx'])}  server CPU {per:.2f} ms/decision"
    )


def prepare(work: Path, data_dir: Path) -> None:
    """The wrk script and up to 5,000 demo applications (one JSON line each) in ``work``."""
    (work / "decide.lua").write_text(LUA, encoding="utf-8")
    bodies = (data_dir / "applications.jsonl").read_text(encoding="utf-8").splitlines()
    (work / "bodies.jsonl").write_text(
        "\n".join(json.dumps(json.loads(b), ensure_ascii=False) for b in bodies[:5000]) + "\n",
        encoding="utf-8",
    )


def run_database(label: str, database_url: str, args: argparse.Namespace, work: Path) -> list[str]:
    lines: list[str] = []
    with running_server(label, database_url, args, work) as (base, pid, wrk_env):
        script = work / "decide.lua"
        wrk(base + "/v1/decisions", 8, 2, script, wrk_env)  # warm-up: caches, pools, pages
        top = max(args.connections)
        ceiling = wrk(base + "/livez", top, args.seconds, None, wrk_env)
        lines.append(
            f"{label:<10} ceiling  c={top:<3} {ceiling['rps']:>8,.0f} req/s  p50 {ceiling.get('p50', 0):6.2f} ms  p99 {ceiling.get('p99', 0):6.2f} ms  (GET /livez)"
        )
        print(lines[-1], flush=True)
        for c in args.connections:
            cpu0 = server_cpu(pid)
            r = wrk(base + "/v1/decisions", c, args.seconds, script, wrk_env)
            lines.append(decide_line(label, c, r, server_cpu(pid) - cpu0))
            print(lines[-1], flush=True)
        if args.rss_seconds:
            lines.extend(rss_run(label, base, pid, script, wrk_env, args.rss_seconds))
    stored = stored_decisions(database_url)
    lines.append(f"{label:<10} stored   {stored:,} decisions in the database")
    print(lines[-1], flush=True)
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data-dir", type=Path, default=Path("var/bench"))
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument(
        "--postgres-url", default="postgresql+psycopg://postgres@127.0.0.1:5432/test"
    )
    parser.add_argument("--databases", nargs="+", default=["sqlite", "postgres"])
    parser.add_argument(
        "--rss-seconds",
        type=int,
        default=0,
        help="then decide this long at 8 connections and print the server's RSS each tenth "
        "(at ~1,000/s, ~1,200 s is a million decisions: the rate falls as the file grows)",
    )
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        print("bench-wrk: wrk is not installed (apt-get install wrk)", file=sys.stderr)
        return 2
    print(machine())
    print(
        f"workers {args.workers}, {args.seconds} s per run, load average {os.getloadavg()[0]:.2f}"
    )
    with tempfile.TemporaryDirectory(prefix="miaopi-bench-") as tmp:
        work = Path(tmp)
        prepare(work, args.data_dir)
        if "sqlite" in args.databases:
            run_database("sqlite", f"sqlite:///{work / 'bench.db'}", args, work)
        if "postgres" in args.databases:
            url = fresh_postgres(args.postgres_url)
            if url is not None:
                run_database("postgres", url, args, work)
    return 0


if __name__ == "__main__":
    sys.exit(main())
