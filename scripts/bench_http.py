"""Benchmark: decision latency end to end over HTTP, with every registry asked over HTTP.

Starts two processes on free loopback ports, each with its own log in a temporary folder:
the registry simulator (``python -m adapters.simulator``: the demo registries, every call
answered after a uniform 20-50 ms, no faults) and ``miaopi serve --registry-url`` pointed at
it, with a fresh SQLite store, a fresh pseudonym key and signing key (in the environment, as
in production) and a platform key made with ``miaopi keys create``. Then ``--clients``
clients post ``--decisions`` talent-subsidy applications from the demo data (each applicant
once, so no answer comes from the service's cache of registry answers) and it prints the
client-side latency percentiles, throughput, the machine, and whether p99 is under the target.

Exit status: 0 when p99 is under the target, 1 when it is not, 2 when a decision failed or a
process did not start. Progress goes to stderr. The processes are stopped and the folder is
removed on exit, Ctrl-C and SIGTERM included (``--keep`` keeps the folder and its logs).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

import httpx
import psutil

ROOT = Path(__file__).resolve().parents[1]
MIAOPI = Path(sys.executable).with_name("miaopi")


def machine() -> str:
    """CPU model and count from /proc/cpuinfo, and the Python version."""
    model, count = platform.processor() or platform.machine(), os.cpu_count() or 0
    try:
        lines = Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines()
    except OSError:
        lines = []
    models = [line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")]
    if models:
        model, count = models[0], len(models)
    return (
        f"machine: {model}, {count} CPUs (/proc/cpuinfo), Python {platform.python_version()} "
        f"({platform.system()} {platform.release()})"
    )


def load_average() -> str:
    """The 1-minute load average from /proc/loadavg (other work on the machine skews figures)."""
    try:
        return Path("/proc/loadavg").read_text(encoding="ascii").split()[0]
    except (OSError, IndexError):
        return "unknown"


def progress(text: str) -> None:
    print(f"bench-http: {text}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def percentile(ordered: Sequence[float], p: float) -> float:
    """The nearest-rank percentile of sorted values."""
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


class StartFailed(Exception):
    """A process did not come up; the message ends with the tail of its log."""


@dataclass
class Processes:
    """The simulator and the server, stopped together."""

    started: list[tuple[str, subprocess.Popen[bytes]]] = field(default_factory=list)

    def start(self, name: str, argv: list[str], *, env: dict[str, str], log: Path) -> None:
        with log.open("wb") as out:
            process = subprocess.Popen(
                argv, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT
            )
        self.started.append((name, process))

    def cpu_seconds(self) -> dict[str, float]:
        """User + system CPU time used so far by each process (and its children)."""
        out: dict[str, float] = {}
        for name, process in self.started:
            try:
                proc = psutil.Process(process.pid)
                procs = [proc, *proc.children(recursive=True)]
                out[name] = sum(p.cpu_times().user + p.cpu_times().system for p in procs)
            except psutil.Error:
                out[name] = float("nan")
        me = psutil.Process().cpu_times()
        out["clients"] = me.user + me.system
        return out

    def check(self, name: str, log: Path) -> None:
        for n, process in self.started:
            if n == name and process.poll() is not None:
                raise StartFailed(f"{name} exited with {process.returncode}:\n{tail(log)}")

    def stop(self) -> None:
        for _, process in reversed(self.started):
            if process.poll() is None:
                process.terminate()
        for _, process in reversed(self.started):
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=15)
        self.started.clear()


def tail(log: Path, chars: int = 3000) -> str:
    try:
        return log.read_text(encoding="utf-8", errors="replace")[-chars:]
    except OSError:
        return "(no log)"


def run(argv: list[str], *, env: dict[str, str]) -> str:
    """Run a command to completion; its stdout, or ``StartFailed`` with its stderr."""
    done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        raise StartFailed(f"{' '.join(argv[:3])} … failed ({done.returncode}): {done.stderr}")
    return done.stdout


def wait_for(url: str, *, name: str, procs: Processes, log: Path, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        procs.check(name, log)
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise StartFailed(f"{name} did not answer {url} within {timeout_s:.0f} s:\n{tail(log)}")


def simulator_url(log: Path, *, name: str, procs: Processes, timeout_s: float = 60) -> str:
    """The address the simulator prints once it listens (it was started on port 0)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        procs.check(name, log)
        for line in tail(log).splitlines():
            if line.startswith("simulator listening on "):
                return line.removeprefix("simulator listening on ").strip()
        time.sleep(0.05)
    raise StartFailed(f"{name} did not start listening within {timeout_s:.0f} s:\n{tail(log)}")


@contextmanager
def stopped_on_sigterm() -> Iterator[None]:
    """Turn SIGTERM into SystemExit, so that ``finally`` blocks stop the processes."""

    def handler(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@dataclass
class Results:
    latencies: list[float] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    outcomes: Counter[str] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def post(
    base: str,
    headers: dict[str, str],
    bodies: list[dict[str, object]],
    *,
    clients: int,
    label: str,
    report: bool,
) -> tuple[Results, float]:
    """Post every body once from ``clients`` threads; the results and the wall time."""
    results = Results()
    next_index = iter(range(len(bodies)))
    take = threading.Lock()
    step = max(1, len(bodies) // 10)

    def client() -> None:
        with httpx.Client(base_url=base, headers=headers, timeout=60) as http:
            while True:
                with take:
                    i = next(next_index, None)
                if i is None:
                    return
                body = {**bodies[i], "application_id": f"BENCH-{label}-{i:06d}"}
                started = time.perf_counter()
                try:
                    r = http.post(
                        "/v1/decisions", json=body, headers={"Idempotency-Key": f"{label}-{i}"}
                    )
                except httpx.HTTPError as exc:
                    with results.lock:
                        results.failures.append(f"#{i}: {type(exc).__name__}: {exc}")
                    continue
                seconds = time.perf_counter() - started
                with results.lock:
                    results.statuses[r.status_code] += 1
                    if r.status_code == 201:
                        results.latencies.append(seconds)
                        results.outcomes[r.json()["outcome"]] += 1
                    else:
                        results.failures.append(f"#{i}: {r.status_code} {r.text[:300]}")
                    done = len(results.latencies) + len(results.failures)
                    if report and done % step == 0:
                        progress(f"{done}/{len(bodies)} decisions")

    threads = [
        threading.Thread(target=client, name=f"client-{t}", daemon=True) for t in range(clients)
    ]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results, time.perf_counter() - started


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--decisions", type=int, default=1000, help="timed decisions")
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients")
    parser.add_argument("--warmup", type=int, default=24, help="untimed decisions first")
    parser.add_argument("--latency-ms", default="20,50", help="simulator latency LO,HI per call")
    parser.add_argument("--target-ms", type=float, default=300, help="p99 must be under this")
    parser.add_argument("--rulesets", type=Path, default=ROOT / "rulesets")
    parser.add_argument("--keep", action="store_true", help="keep the folder with the logs")
    args = parser.parse_args(argv)
    if args.decisions < 1 or args.clients < 1 or args.warmup < 0:
        parser.error("--decisions and --clients must be 1 or more, --warmup 0 or more")

    work = Path(tempfile.mkdtemp(prefix="miaopi-bench-http-"))
    procs = Processes()
    try:
        with stopped_on_sigterm():
            return bench(args, work, procs)
    except StartFailed as exc:
        print(f"bench-http: {exc}", file=sys.stderr)
        return 2
    finally:
        procs.stop()
        if args.keep:
            progress(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


def bench(args: argparse.Namespace, work: Path, procs: Processes) -> int:
    """Set up, start, warm up, measure and print; the exit status."""
    demo, db_url = work / "demo", f"sqlite:///{work / 'miaopi.db'}"
    people = max(2000, args.decisions + args.warmup)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MIAOPI_")}
    env.pop("DATABASE_URL", None)
    progress(f"generating demo registries for {people} people in {demo}")
    run(
        [str(MIAOPI), "demo", "generate", "--out", str(demo), "--people", str(people),
         "--rulesets", str(args.rulesets)],
        env=env,
    )  # fmt: skip
    lines = (demo / "applications.jsonl").read_text(encoding="utf-8").splitlines()
    bodies = [json.loads(line) for line in lines if line.strip()]
    if len(bodies) < args.decisions + args.warmup:
        raise StartFailed(f"only {len(bodies)} applications for {args.decisions} + warm-up")

    signing_key = work / "secrets" / "signing-key.pem"
    signing_key.parent.mkdir()
    run([str(MIAOPI), "keys", "signing-key", "--out", str(signing_key)], env=env)
    server_env = {
        **env,
        "MIAOPI_PSEUDONYM_KEY": secrets.token_urlsafe(32),
        "MIAOPI_SIGNING_KEY_FILE": str(signing_key),
        "DATABASE_URL": db_url,
    }
    key = run(
        [str(MIAOPI), "keys", "create", "--role", "platform", "--label", "bench-http",
         "--database-url", db_url],
        env=server_env,
    ).strip()  # fmt: skip

    sim_log = work / "simulator.log"
    procs.start(
        "simulator",
        [sys.executable, "-m", "adapters.simulator", "--data-dir", str(demo),
         "--registries", str(args.rulesets / "registries.yaml"), "--port", "0",
         "--latency-ms", args.latency_ms, "--seed", "1"],
        env=env,
        log=sim_log,
    )  # fmt: skip
    sim = simulator_url(sim_log, name="simulator", procs=procs)
    wait_for(f"{sim}/healthz", name="simulator", procs=procs, log=sim_log)
    progress(f"simulator at {sim}, {args.latency_ms} ms per call")

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server_log = work / "server.log"
    procs.start(
        "server",
        [str(MIAOPI), "serve", "--host", "127.0.0.1", "--port", str(port),
         "--data-dir", str(demo), "--rulesets", str(args.rulesets), "--database-url", db_url,
         "--registry-url", sim],
        env=server_env,
        log=server_log,
    )  # fmt: skip
    wait_for(f"{base}/healthz", name="server", procs=procs, log=server_log)
    progress(f"miaopi serve at {base} (SQLite in {work})")

    headers = {"Authorization": f"Bearer {key}"}
    timed, extra = bodies[: args.decisions], bodies[args.decisions :][: args.warmup]
    if extra:
        progress(f"warming up with {len(extra)} decisions")
        warm, _ = post(base, headers, extra, clients=args.clients, label="warmup", report=False)
        if warm.failures:
            raise StartFailed(f"warm-up decisions failed: {warm.failures[:3]}")
    httpx.post(f"{sim}/_control/reset", timeout=10)
    progress(f"posting {len(timed)} decisions from {args.clients} clients")
    cpu_before, load = procs.cpu_seconds(), load_average()
    results, wall = post(base, headers, timed, clients=args.clients, label="timed", report=True)
    cpu = {k: v - cpu_before[k] for k, v in procs.cpu_seconds().items()}
    calls = sum(httpx.get(f"{sim}/_control/stats", timeout=10).json()["calls"].values())

    lat = sorted(results.latencies)
    print(
        f"bench-http: {len(timed)} decisions over HTTP from {args.clients} clients to one "
        f"`miaopi serve` process (SQLite), every registry asked over HTTP from the simulator "
        f"at {args.latency_ms.replace(',', '-')} ms per call, no faults"
    )
    print(
        machine() + "; the simulator, the server and the clients share these CPUs; "
        f"1-minute load average before the run {load}"
    )
    print(
        "outcomes: "
        + ", ".join(f"{k} {v}" for k, v in sorted(results.outcomes.items()))
        + f"; HTTP {dict(sorted(results.statuses.items()))}; registry calls {calls} "
        f"({calls / len(timed):.2f} per decision)"
    )
    if results.failures:
        print(f"FAIL: {len(results.failures)} decisions failed, e.g. {results.failures[:3]}")
        return 2
    ms = [v * 1000 for v in lat]
    print(
        f"latency: p50 {percentile(ms, 50):.1f} ms, p90 {percentile(ms, 90):.1f} ms, "
        f"p99 {percentile(ms, 99):.1f} ms, max {ms[-1]:.1f} ms, mean {sum(ms) / len(ms):.1f} ms"
    )
    print(f"throughput: {len(timed) / wall:.1f} decisions/s ({len(timed)} in {wall:.1f} s)")
    print(
        "CPU per decision: "
        + ", ".join(f"{k} {v / len(timed) * 1000:.1f} ms" for k, v in cpu.items())
        + f" (CPU busy {sum(cpu.values()) / wall / (os.cpu_count() or 1):.0%} of the machine)"
    )
    p99 = percentile(ms, 99)
    verdict = "PASS" if p99 < args.target_ms else "FAIL"
    relation = "under" if p99 < args.target_ms else "not under"
    print(f"{verdict}: p99 {p99:.1f} ms is {relation} {args.target_ms:.0f} ms")
    return 0 if verdict == "PASS" else 1


if __name__ == "__main__":
    sys.exit(main())
