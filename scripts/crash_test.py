"""Durability under kill -9: no acknowledged decision lost or duplicated, the chain intact.

Runs ``miaopi serve`` as real processes on a fresh store — a SQLite file (one server), or a
fresh schema of a PostgreSQL database served by TWO servers at once — while ``--clients``
client threads post decisions continuously: the demo applications of ``miaopi demo generate``,
each under its own Idempotency-Key and application id. At random moments (``--gap`` after the
server came up) it SIGKILLs a server's whole process group (every worker; on PostgreSQL one of
the two servers at random), restarts it on the same port and carries on, ``--kills`` times.

A request that fails (refused, cut off, timed out, 5xx) is retried with the SAME key and body
until it is acknowledged (201): the server may have committed the decision before it died,
and the retry must then get that very decision (``Idempotent-Replayed: true``). Some keys are
also posted twice at the same moment (two clients, one key) and some are posted again after
their acknowledgement; at the end every acknowledged key is posted once more.

Then, with the servers stopped, it checks and exits non-zero on any violation:
- lost: every acknowledged decision is in the database under its key, with the same decision
  id, the same stored response and the record (seq, record hash) its receipt names;
- duplicates: no key and no application has two decisions, nothing is stored that was never
  acknowledged;
- chain: ``miaopi audit verify`` (a process, with the public key, and as ``--checkpoint`` every
  signed head an acknowledgement carried plus the servers' checkpoint files) reports the chain
  and log intact; every receipt verifies against the public key;
- retries: every re-post of an acknowledged key (and both posts of a key sent twice at once)
  got the same body — decision id, record hash, receipt — as the first acknowledgement.

Figures go to stdout, progress to stderr. Exit status 0: no violation; 1: a violation
(listed); 2: a process did not start or the set-up failed. ``--keep`` keeps the folder (logs,
database) and the PostgreSQL schema.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import psutil
import sqlalchemy as sa
from bench_http import (
    MIAOPI,
    ROOT,
    StartFailed,
    free_port,
    load_average,
    machine,
    run,
    stopped_on_sigterm,
    tail,
)

from explanations.log import Receipt, load_public_keys, verify_receipt

DEFAULT_POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
DELIVERED_ONLY = ("access_token", "receipt", "page_url")
"""Parts of a 201 body that are not in the stored response: the access token and the links
that carry it are derived from the decision id, the receipt is rebuilt from the log."""


def progress(text: str) -> None:
    print(f"crash-test: {text}", file=sys.stderr, flush=True)


# --- servers ------------------------------------------------------------------------------


@dataclass
class Server:
    """One ``miaopi serve`` (all its workers in one process group) on a fixed port."""

    name: str
    port: int
    argv: list[str]
    env: dict[str, str]
    log: Path
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0
    start_seconds: list[float] = field(default_factory=list)
    in_flight: int = 0
    """Requests sent to this server and not yet answered (read at each kill)."""

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, *, timeout_s: float = 120) -> None:
        """Start the server in its own process group and wait until it answers /healthz."""
        self.starts += 1
        started = time.monotonic()
        with self.log.open("ab") as out:
            out.write(f"\n--- start #{self.starts} ---\n".encode())
            out.flush()
            self.process = subprocess.Popen(
                self.argv,
                cwd=ROOT,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = started + timeout_s
        with httpx.Client(timeout=2) as http:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise StartFailed(
                        f"{self.name} exited with {self.process.returncode} at start "
                        f"#{self.starts}:\n{tail(self.log)}"
                    )
                try:
                    if http.get(f"{self.base}/healthz").status_code == 200:
                        self.start_seconds.append(time.monotonic() - started)
                        return
                except httpx.TransportError:
                    pass
                time.sleep(0.05)
        raise StartFailed(
            f"{self.name} did not answer /healthz in {timeout_s:.0f} s:\n{tail(self.log)}"
        )

    def _group(self) -> list[psutil.Process]:
        assert self.process is not None
        try:
            leader = psutil.Process(self.process.pid)
            return [leader, *leader.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def kill(self) -> int:
        """SIGKILL every process of the server at once; wait until all are gone. How many."""
        assert self.process is not None
        group = self._group()
        os.killpg(self.process.pid, signal.SIGKILL)
        _, alive = psutil.wait_procs(group, timeout=20)
        if alive:
            raise StartFailed(f"{self.name}: {len(alive)} processes survived SIGKILL")
        self.process.wait(timeout=20)
        return len(group)

    def stop(self) -> None:
        """SIGTERM the group, SIGKILL what is left after 20 s."""
        if self.process is None or self.process.poll() is not None:
            return
        group = self._group()
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        _, alive = psutil.wait_procs(group, timeout=20)
        if alive:
            os.killpg(self.process.pid, signal.SIGKILL)
            psutil.wait_procs(alive, timeout=20)
        self.process.wait(timeout=20)


# --- clients ------------------------------------------------------------------------------


@dataclass
class Ack:
    """The first acknowledgement (201) of one key."""

    key: str
    application_id: str
    body: dict[str, Any]
    response: dict[str, Any]
    attempts: int
    replayed: bool


@dataclass
class Tally:
    """Everything the clients saw, under one lock."""

    acks: dict[str, Ack] = field(default_factory=dict)
    failures: Counter[str] = field(default_factory=Counter)
    """Failed attempts by kind: connect (server down), cut (connection dropped mid-request),
    timeout, http-5xx."""
    retried: int = 0
    """Keys acknowledged only after one or more failed attempts."""
    retried_after_cut: int = 0
    """Of those, keys with an attempt that reached a server and got no answer (cut, time-out,
    5xx): the server may have committed it."""
    replayed_after_failure: int = 0
    """Of those, acknowledged as a replay: committed by a server that died before answering."""
    twins: int = 0
    reposts: int = 0
    violations: list[str] = field(default_factory=list)
    errors_5xx: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def violation(self, text: str) -> None:
        with self.lock:
            self.violations.append(text)
        progress(f"VIOLATION {text}")


@dataclass
class Answer:
    status: int
    body: dict[str, Any]
    replayed: bool
    attempts: int
    unanswered: int
    """Attempts that reached a server and got no answer (cut, time-out, 5xx)."""


class Load:
    """The clients: post, retry with the same key and body until acknowledged, record."""

    def __init__(
        self,
        *,
        servers: list[Server],
        headers: dict[str, str],
        bodies: list[dict[str, Any]],
        run_id: str,
        seed: int,
        twin_rate: float,
        repost_rate: float,
        timeout_s: float,
        give_up_s: float,
    ) -> None:
        self.servers = servers
        self.headers = headers
        self.bodies = bodies
        self.run_id = run_id
        self.seed = seed
        self.twin_rate = twin_rate
        self.repost_rate = repost_rate
        self.timeout = httpx.Timeout(timeout_s, connect=2.0)
        self.give_up_s = give_up_s
        self.tally = Tally()
        self.stop = threading.Event()
        self._numbers = iter(range(10**9))
        self._take = threading.Lock()

    def request_of(self, n: int) -> tuple[str, dict[str, Any]]:
        """Key ``n``: its Idempotency-Key and body (a demo application with its own id)."""
        app_id = f"CRASH-{self.run_id}-{n:07d}"
        return f"crash-{self.run_id}-{n:07d}", {
            **self.bodies[n % len(self.bodies)],
            "application_id": app_id,
        }

    def client(self, number: int) -> None:
        rng = random.Random(self.seed * 1000 + number)
        with httpx.Client(timeout=self.timeout, headers=self.headers) as http:
            while not self.stop.is_set():
                with self._take:
                    n = next(self._numbers)
                key, body = self.request_of(n)
                twin: list[Answer | None] = []
                helper = None
                if rng.random() < self.twin_rate:
                    helper = threading.Thread(
                        target=self.post_once_more,
                        args=(key, body, rng.random(), twin),
                        daemon=True,
                    )
                    helper.start()
                answer = self.until_acked(http, key, body, rng)
                if answer is None:
                    continue
                ack = Ack(
                    key, body["application_id"], body, answer.body, answer.attempts, answer.replayed
                )
                with self.tally.lock:
                    self.tally.acks[key] = ack
                    if answer.attempts > 1:
                        self.tally.retried += 1
                    if answer.unanswered:
                        self.tally.retried_after_cut += 1
                        if answer.replayed:
                            self.tally.replayed_after_failure += 1
                if answer.attempts == 1 and answer.replayed and helper is None:
                    self.tally.violation(f"{key}: a new key was answered as a replay")
                if helper is not None:
                    helper.join()
                    other = twin[0] if twin else None
                    with self.tally.lock:
                        self.tally.twins += 1
                    if other is not None and other.body != answer.body:
                        self.tally.violation(
                            f"{key}: posted twice at once, got two different answers: "
                            f"{_differs(answer.body, other.body)}"
                        )
                if rng.random() < self.repost_rate:
                    self.check_repost(http, ack, rng)

    def post_once_more(
        self, key: str, body: dict[str, Any], salt: float, into: list[Answer | None]
    ) -> None:
        """The same key and body from a second connection, at the same moment (a twin)."""
        with httpx.Client(timeout=self.timeout, headers=self.headers) as http:
            into.append(self.until_acked(http, key, body, random.Random(salt)))

    def check_repost(self, http: httpx.Client, ack: Ack, rng: random.Random) -> None:
        """Post an acknowledged key again: the same decision, marked as a replay."""
        again = self.until_acked(http, ack.key, ack.body, rng)
        with self.tally.lock:
            self.tally.reposts += 1
        if again is None:
            return
        if not again.replayed:
            self.tally.violation(f"{ack.key}: posted again, not marked Idempotent-Replayed")
        if again.body != ack.response:
            self.tally.violation(
                f"{ack.key}: posted again, got another answer: {_differs(ack.response, again.body)}"
            )

    def until_acked(
        self, http: httpx.Client, key: str, body: dict[str, Any], rng: random.Random
    ) -> Answer | None:
        """Post until a 201 (None, and a violation, on a 4xx or after ``give_up_s``)."""
        deadline = time.monotonic() + self.give_up_s
        attempts = unanswered = 0
        while True:
            attempts += 1
            server = rng.choice(self.servers)
            kind = ""
            with self.tally.lock:
                server.in_flight += 1
            try:
                r = http.post(
                    f"{server.base}/v1/decisions", json=body, headers={"Idempotency-Key": key}
                )
            except httpx.LocalProtocolError as exc:
                # Never sent: our request is malformed (a bad header, say), not a server cut.
                self.tally.violation(f"{key}: the client could not send the request: {exc}")
                return None
            except httpx.ConnectError:
                kind = "connect"
            except httpx.TimeoutException:
                kind = "timeout"
            except httpx.TransportError:
                kind = "cut"
            finally:
                with self.tally.lock:
                    server.in_flight -= 1
            if not kind:
                if r.status_code == 201:
                    replayed = r.headers.get("idempotent-replayed") == "true"
                    return Answer(201, r.json(), replayed, attempts, unanswered)
                if r.status_code < 500:
                    self.tally.violation(f"{key}: HTTP {r.status_code} {r.text[:300]}")
                    return None
                kind = f"http-{r.status_code}"
                with self.tally.lock:
                    self.tally.errors_5xx.append(f"{key} on {server.name}: {r.text[:300]}")
            unanswered += kind != "connect"
            with self.tally.lock:
                self.tally.failures[kind] += 1
            if time.monotonic() > deadline:
                self.tally.violation(f"{key}: not acknowledged after {attempts} attempts")
                return None
            time.sleep(rng.uniform(0.02, 0.2))


def stored_form(delivered: dict[str, Any]) -> dict[str, Any]:
    """The response as the store keeps it, from the body a 201 delivered."""
    stored = {k: v for k, v in delivered.items() if k not in DELIVERED_ONLY}
    if isinstance(stored.get("explanation_url"), str):
        stored["explanation_url"] = stored["explanation_url"].split("?token=", 1)[0]
    return stored


def _differs(a: dict[str, Any], b: dict[str, Any]) -> str:
    keys = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
    return ", ".join(f"{k}: {str(a.get(k))[:80]} vs {str(b.get(k))[:80]}" for k in keys)


# --- checks -------------------------------------------------------------------------------


@dataclass
class Findings:
    lost: list[str] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)
    chain: list[str] = field(default_factory=list)
    retries: list[str] = field(default_factory=list)
    stored: int = 0
    verify_output: str = ""


def final_reposts(load: Load, *, threads: int) -> list[str]:
    """Post every acknowledged key once more: each must be the same decision, replayed."""
    acks = list(load.tally.acks.values())
    problems: list[str] = []
    lock = threading.Lock()
    queue = iter(acks)

    def worker(number: int) -> None:
        rng = random.Random(load.seed * 7919 + number)
        with httpx.Client(timeout=load.timeout, headers=load.headers) as http:
            while True:
                with lock:
                    ack = next(queue, None)
                if ack is None:
                    return
                again = load.until_acked(http, ack.key, ack.body, rng)
                found = []
                if again is None:
                    found.append(f"{ack.key}: posted again at the end, not acknowledged")
                elif not again.replayed or again.body != ack.response:
                    found.append(
                        f"{ack.key}: posted again at the end, replayed={again.replayed}, "
                        f"{_differs(ack.response, again.body) or 'same body'}"
                    )
                with lock:
                    problems.extend(found)

    pool = [threading.Thread(target=worker, args=(t,), daemon=True) for t in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    return problems


def check_database(url: str, load: Load, findings: Findings) -> None:
    """Every acknowledgement against the rows, read with plain SQL (not through the store)."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            decisions = conn.execute(
                sa.text("SELECT id, idempotency_key, application_id, response_json FROM decisions")
            ).all()
            records = conn.execute(
                sa.text("SELECT seq, decision_id, record_hash FROM explanation_records")
            ).all()
    finally:
        engine.dispose()
    findings.stored = len(decisions)
    by_key: dict[str, list[Any]] = {}
    by_app: Counter[str] = Counter()
    for d in decisions:
        by_key.setdefault(d.idempotency_key, []).append(d)
        by_app[d.application_id] += 1
    record_of = {r.decision_id: r for r in records}
    for key, rows in by_key.items():
        if len(rows) > 1:
            findings.duplicates.append(f"key {key} has {len(rows)} decisions")
    for app_id, count in by_app.items():
        if count > 1:
            findings.duplicates.append(f"application {app_id} was decided {count} times")
    seqs = Counter(r.seq for r in records)
    findings.duplicates += [f"seq {s} stored {c} times" for s, c in seqs.items() if c > 1]
    acks = load.tally.acks
    for key in by_key.keys() - acks.keys():
        findings.duplicates.append(f"key {key} is stored but was never acknowledged")
    for key, ack in acks.items():
        decision_id = ack.response["decision_id"]
        if key not in by_key:
            findings.lost.append(f"{key}: acknowledged as {decision_id}, not in the database")
            continue
        row = next((r for r in by_key[key] if r.id == decision_id), None)
        if row is None:
            others = ", ".join(r.id for r in by_key[key])
            findings.lost.append(f"{key}: acknowledged as {decision_id}, stored as {others}")
            continue
        expected = stored_form(ack.response)
        if json.loads(row.response_json) != expected:
            findings.lost.append(
                f"{key}: stored response differs from the acknowledged one: "
                f"{_differs(expected, json.loads(row.response_json))}"
            )
        if row.application_id != ack.application_id:
            findings.lost.append(f"{key}: stored for application {row.application_id}")
        record = record_of.get(decision_id)
        leaf = (ack.response.get("receipt") or {}).get("leaf") or {}
        if record is None:
            findings.lost.append(f"{key}: decision {decision_id} has no explanation record")
        elif (record.record_hash, record.seq) != (ack.response["record_hash"], leaf.get("seq")):
            findings.lost.append(
                f"{key}: record seq {record.seq} {record.record_hash[:19]}…, acknowledged "
                f"seq {leaf.get('seq')} {ack.response['record_hash'][:19]}…"
            )


def check_receipts(load: Load, public_key: Path, findings: Findings) -> list[dict[str, Any]]:
    """Every acknowledged receipt verifies; returns the distinct signed heads they carry."""
    keys = load_public_keys([public_key])
    heads: dict[tuple[int, str], dict[str, Any]] = {}
    for key, ack in load.tally.acks.items():
        data = ack.response.get("receipt")
        if data is None:
            findings.chain.append(f"{key}: acknowledged without a receipt")
            continue
        problems = verify_receipt(Receipt.model_validate(data), keys)
        findings.chain += [f"{key}: receipt: {p}" for p in problems]
        cp = data["checkpoint"]
        heads[(cp["size"], cp["root"])] = cp
    return [heads[k] for k in sorted(heads)]


def audit_verify(
    url: str, env: dict[str, str], public_key: Path, checkpoints: list[Path], findings: Findings
) -> None:
    """``miaopi audit verify`` as a process: exit 0 and "chain and log intact"."""
    argv = [str(MIAOPI), "audit", "verify", "--database-url", url, "--public-key", str(public_key)]
    for path in checkpoints:
        argv += ["--checkpoint", str(path)]
    done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800)
    findings.verify_output = (done.stdout.strip().splitlines() or [""])[-1]
    if done.returncode != 0 or "chain and log intact" not in done.stdout:
        findings.chain.append(
            f"miaopi audit verify exited {done.returncode}: {done.stdout[-3000:]} {done.stderr[-2000:]}"
        )


# --- the run ------------------------------------------------------------------------------


@dataclass
class Kill:
    server: str
    in_flight: int
    processes: int


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--store", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--kills", type=int, default=200, help="SIGKILLs in all (default 200)")
    parser.add_argument("--clients", type=int, default=8, help="client threads posting")
    parser.add_argument(
        "--workers", type=int, default=1, help="processes per server (all are killed at once)"
    )
    parser.add_argument(
        "--gap",
        default="0.3,1.5",
        help="seconds LO,HI: each kill comes at a uniform random moment this long after the "
        "server it hits came up",
    )
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("DATABASE_URL_TEST") or DEFAULT_POSTGRES_URL,
        help="PostgreSQL database; a fresh schema is made in it (and dropped unless --keep)",
    )
    parser.add_argument("--people", type=int, default=2000, help="demo people (applications)")
    parser.add_argument("--twin-rate", type=float, default=0.05, help="keys posted twice at once")
    parser.add_argument(
        "--repost-rate", type=float, default=0.05, help="keys posted again once acknowledged"
    )
    parser.add_argument("--timeout", type=float, default=20, help="client time-out per request (s)")
    parser.add_argument("--seed", type=int, default=None, help="random seed (printed)")
    parser.add_argument("--keep", action="store_true", help="keep the folder and the schema")
    parser.add_argument("--summary", type=Path, help="also write the figures here (JSON)")
    args = parser.parse_args(argv)
    lo, _, hi = args.gap.partition(",")
    args.gap = (float(lo), float(hi or lo))
    if args.kills < 0 or args.clients < 1 or args.workers < 1 or args.gap[0] > args.gap[1]:
        parser.error(
            "--kills 0 or more, --clients and --workers 1 or more, --gap LO,HI with LO <= HI"
        )
    if args.seed is None:
        args.seed = secrets.randbelow(10**6)

    work = Path(tempfile.mkdtemp(prefix=f"miaopi-crash-{args.store}-"))
    servers: list[Server] = []
    schema: str | None = None
    try:
        with stopped_on_sigterm():
            if args.store == "postgres":
                schema = f"miaopi_crash_{uuid.uuid4().hex[:12]}"
                url = postgres_schema(args.postgres_url, schema)
            else:
                url = f"sqlite:///{work / 'miaopi.db'}"
            return crash(args, work, url, servers)
    except StartFailed as exc:
        print(f"crash-test: {exc}", file=sys.stderr)
        return 2
    finally:
        for server in servers:
            server.stop()
        if args.keep:
            progress(f"kept {work}" + (f" and schema {schema}" if schema else ""))
        else:
            shutil.rmtree(work, ignore_errors=True)
            if schema is not None:
                drop_schema(args.postgres_url, schema)


def postgres_schema(base: str, schema: str) -> str:
    """Make ``schema`` in the database at ``base``; a URL whose search_path is that schema."""
    admin = sa.create_engine(base, connect_args={"connect_timeout": 5})
    try:
        with admin.begin() as conn:
            conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    except sa.exc.OperationalError as exc:
        raise StartFailed(f"PostgreSQL at {base} is not reachable: {exc}") from None
    finally:
        admin.dispose()
    sep = "&" if "?" in base else "?"
    return f"{base}{sep}options={quote(f'-csearch_path={schema}', safe='')}"


def drop_schema(base: str, schema: str) -> None:
    admin = sa.create_engine(base)
    try:
        with admin.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
    finally:
        admin.dispose()


def crash(args: argparse.Namespace, work: Path, url: str, servers: list[Server]) -> int:
    """Set up, load, kill, check and print; the exit status."""
    rng = random.Random(args.seed)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MIAOPI_")}
    env.pop("DATABASE_URL", None)
    demo = work / "demo"
    progress(f"seed {args.seed}; demo registries for {args.people} people in {demo}")
    run(
        [str(MIAOPI), "demo", "generate", "--out", str(demo), "--people", str(args.people),
         "--rulesets", str(ROOT / "rulesets")],
        env=env,
    )  # fmt: skip
    lines = (demo / "applications.jsonl").read_text(encoding="utf-8").splitlines()
    bodies = [json.loads(line) for line in lines if line.strip()]
    signing_key, public_key = work / "secrets" / "signing-key.pem", work / "public-key.pem"
    signing_key.parent.mkdir()
    public_key.write_text(
        run([str(MIAOPI), "keys", "signing-key", "--out", str(signing_key)], env=env),
        encoding="utf-8",
    )
    base_env = {
        **env,
        "MIAOPI_PSEUDONYM_KEY": secrets.token_urlsafe(32),
        "MIAOPI_SIGNING_KEY_FILE": str(signing_key),
        "DATABASE_URL": url,
    }
    # Makes the tables too, before any server starts: two servers never race to create them.
    key = run(
        [str(MIAOPI), "keys", "create", "--role", "platform", "--label", "crash-test",
         "--database-url", url],
        env=base_env,
    ).strip()  # fmt: skip
    if not re.fullmatch(r"mpk_[0-9a-f]+_[A-Za-z0-9_-]+", key):
        raise StartFailed(f"`miaopi keys create` printed something other than a key: {key[:200]!r}")

    count = 2 if args.store == "postgres" else 1
    for i in range(count):
        name = f"server-{'ab'[i]}"
        port = free_port()
        serve = [
            str(MIAOPI), "serve", "--host", "127.0.0.1", "--port", str(port),
            "--workers", str(args.workers), "--data-dir", str(demo),
            "--rulesets", str(ROOT / "rulesets"), "--database-url", url,
        ]  # fmt: skip
        servers.append(
            Server(
                name=name,
                port=port,
                argv=serve,
                env={**base_env, "MIAOPI_CHECKPOINT_FILE": str(work / f"{name}-checkpoints.jsonl")},
                log=work / f"{name}.log",
            )
        )
    for server in servers:  # one after the other (see the note on create_all in the report)
        server.start()
    where = "SQLite file" if count == 1 else "PostgreSQL schema, two servers"
    progress(
        f"{count} server(s) × {args.workers} worker(s) up on a fresh {where}; "
        f"{args.clients} clients; {args.kills} kills"
    )

    load = Load(
        servers=servers,
        headers={"Authorization": f"Bearer {key}"},
        bodies=bodies,
        run_id=f"{args.seed:06d}",
        seed=args.seed,
        twin_rate=args.twin_rate,
        repost_rate=args.repost_rate,
        timeout_s=args.timeout,
        give_up_s=300,
    )
    clients = [
        threading.Thread(target=load.client, args=(c,), name=f"client-{c}", daemon=True)
        for c in range(args.clients)
    ]
    started = time.monotonic()
    load_before = load_average()
    for t in clients:
        t.start()
    kills: list[Kill] = []
    step = max(1, args.kills // 20)
    for i in range(args.kills):
        victim = rng.choice(servers)
        time.sleep(rng.uniform(*args.gap))
        with load.tally.lock:
            in_flight = victim.in_flight
        processes = victim.kill()
        kills.append(Kill(victim.name, in_flight, processes))
        victim.start()
        if (i + 1) % step == 0 or i + 1 == args.kills:
            progress(
                f"{i + 1}/{args.kills} kills, {len(load.tally.acks)} acknowledged, "
                f"{len(load.tally.violations)} violations"
            )
    load.stop.set()
    for t in clients:
        t.join()
    loaded_for = time.monotonic() - started

    progress(f"posting all {len(load.tally.acks)} acknowledged keys once more")
    findings = Findings()
    findings.retries = final_reposts(load, threads=args.clients)
    for server in servers:
        server.stop()
    progress("checking the database, the receipts and the chain")
    check_database(url, load, findings)
    heads = check_receipts(load, public_key, findings)
    acked_heads = work / "acknowledged-checkpoints.jsonl"
    acked_heads.write_text(
        "".join(json.dumps(h, ensure_ascii=False) + "\n" for h in heads), encoding="utf-8"
    )
    filed = [p for p in sorted(work.glob("server-*-checkpoints.jsonl")) if p.stat().st_size]
    audit_verify(url, base_env, public_key, [acked_heads, *filed], findings)
    findings.retries = load.tally.violations + findings.retries
    if not load.tally.acks:
        findings.retries.append("no decision was acknowledged: the load never got through")

    report(args, load, findings, kills, servers, loaded_for, load_before, heads, filed)
    failed = findings.lost or findings.duplicates or findings.chain or findings.retries
    return 1 if failed else 0


def report(
    args: argparse.Namespace,
    load: Load,
    findings: Findings,
    kills: list[Kill],
    servers: list[Server],
    seconds: float,
    load_before: str,
    heads: list[dict[str, Any]],
    filed: list[Path],
) -> None:
    t = load.tally
    store = (
        "SQLite (one server)"
        if args.store == "sqlite"
        else "PostgreSQL (two servers on one schema)"
    )
    per_server = Counter(k.server for k in kills)
    loaded = sum(1 for k in kills if k.in_flight)
    restarts = [s for server in servers for s in server.start_seconds[1:]]
    print(
        f"crash-test: {store}, {len(servers)} server(s) × {args.workers} worker(s), "
        f"{args.clients} clients, seed {args.seed}"
    )
    print(machine() + f"; 1-minute load average before the run {load_before}")
    print(
        f"kills: {len(kills)} SIGKILL of a whole server ("
        + ", ".join(f"{k} {v}" for k, v in sorted(per_server.items()))
        + f"), {loaded} with requests in flight (mean "
        f"{sum(k.in_flight for k in kills) / max(1, len(kills)):.1f}); restart to /healthz "
        + (
            f"mean {sum(restarts) / len(restarts):.1f} s, max {max(restarts):.1f} s"
            if restarts
            else "n/a"
        )
    )
    print(
        f"decisions acknowledged: {len(t.acks)} in {seconds:.0f} s "
        f"({len(t.acks) / max(seconds, 1e-9):.1f}/s with the kills); "
        f"stored in the database: {findings.stored}"
    )
    print(
        "failed attempts (retried with the same key and body): "
        + (", ".join(f"{k} {v}" for k, v in sorted(t.failures.items())) or "none")
    )
    print(
        f"retries: {t.retried} keys acknowledged only after a failed attempt; "
        f"{t.retried_after_cut} had reached a server that died before answering, and of "
        f"those {t.replayed_after_failure} had been committed: the retry got that decision "
        f"as a replay"
    )
    print(
        f"replays checked: {t.reposts} keys posted again during the run, {t.twins} keys posted "
        f"twice at once, all {len(t.acks)} posted again at the end"
    )
    print(
        f"chain: {findings.verify_output} (checked against {len(heads)} signed heads "
        f"from acknowledgements" + (f" and {len(filed)} checkpoint file(s)" if filed else "") + ")"
    )
    if t.errors_5xx:
        print(f"server errors: {len(t.errors_5xx)}, e.g. {t.errors_5xx[:3]}")
    for label, items in (
        ("lost", findings.lost),
        ("duplicates", findings.duplicates),
        ("chain", findings.chain),
        ("retries", findings.retries),
    ):
        print(f"{label}: {len(items)}" + "".join(f"\n  {item}" for item in items[:20]))
    ok = not (findings.lost or findings.duplicates or findings.chain or findings.retries)
    print("PASS" if ok else "FAIL")
    if args.summary is not None:
        summary = {
            "store": args.store,
            "servers": len(servers),
            "workers": args.workers,
            "kills": len(kills),
            "kills_with_requests_in_flight": loaded,
            "acknowledged": len(t.acks),
            "stored": findings.stored,
            "failed_attempts": dict(t.failures),
            "retried": t.retried,
            "retried_after_cut": t.retried_after_cut,
            "replayed_after_failure": t.replayed_after_failure,
            "reposted": t.reposts,
            "twins": t.twins,
            "server_errors": len(t.errors_5xx),
            "seconds": round(seconds, 1),
            "lost": findings.lost,
            "duplicates": findings.duplicates,
            "chain": findings.chain,
            "retries": findings.retries,
            "verify": findings.verify_output,
        }
        args.summary.write_text(json.dumps(summary, ensure_ascii=False, indent=2), "utf-8")


if __name__ == "__main__":
    sys.exit(main())
