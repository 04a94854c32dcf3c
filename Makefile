# One task runner. The two commands a newcomer needs: `make run` and `make test`.
# The interpreter of .venv: the system's python3 when it is a supported version (distribution
# builds are optimised; see scripts/pick-python.sh), else python3. To choose another:
# `rm -rf .venv && make setup PY=python3.12`.
PY ?= $(shell scripts/pick-python.sh)
VENV := .venv
BIN := $(VENV)/bin
DATA ?= var/demo
STAMP := $(VENV)/.installed

.PHONY: setup run test test-fast lint typecheck bench demo clean fuzz profile-http

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

demo: setup
	$(BIN)/miaopi demo generate --out $(DATA) > /dev/null

## Set up, generate the demo registries, and serve on http://127.0.0.1:8000 (SQLite).
run: setup
	$(BIN)/miaopi serve --demo --data-dir $(DATA) --host 127.0.0.1 --port 8000

## Set up and run the whole test suite, including the 16,000-request HTTP test and the
## headless-Chromium page tests (~7 min; 15–17 on the slowest 2-core machine seen). Our modules are
## byte-compiled first: the suite starts many servers, and with PYTHONDONTWRITEBYTECODE set
## every process of each compiled every module again. PostgreSQL tests need 127.0.0.1:5432
## (trust auth, database `test`); Debian's chromium and chromium-driver are installed when
## missing.
test: setup
	scripts/ensure-browser.sh
	$(BIN)/python -m compileall -q engine api explanations adapters
	MIAOPI_RUN_SLOW=1 $(BIN)/python -m pytest -n 2 --dist loadfile -q

## The suite without the slow real-HTTP load test (~40 s).
test-fast: setup
	$(BIN)/python -m pytest -n 2 --dist loadfile -q

## Schemathesis against a freshly started server: every operation, every check, with platform
## and staff keys; FUZZ_EXAMPLES (default 300) examples per operation. Prints operations, cases,
## failures and time; fails on any server error or schema violation. DATABASE_URL=... to fuzz
## against PostgreSQL (an empty schema) instead of SQLite.
fuzz: setup
	$(BIN)/python scripts/fuzz.py --examples $${FUZZ_EXAMPLES:-300} $${DATABASE_URL:+--database-url "$$DATABASE_URL"}

lint: setup
	$(BIN)/ruff check engine adapters explanations api tests

typecheck: setup
	$(BIN)/mypy

## In-process decisions/s and RSS over 1,000,000 decisions (override with N=...), then the
## per-criterion cost on synthetic 8/32/128-criterion rulesets (CRITERIA_N decisions per size),
## then our decision with its explanation against zen-engine with its trace on the same
## applications (ENGINE_N decisions per engine and round, best of 3; the `bench` extra).
## Decides freshly generated demo data in var/bench (regenerated every run).
bench: setup
	$(BIN)/pip install -q -e '.[bench]'
	rm -rf var/bench && $(BIN)/miaopi demo generate --out var/bench > /dev/null
	$(BIN)/python scripts/bench.py --decisions $${N:-1000000} --data-dir var/bench
	$(BIN)/python scripts/bench_criteria.py --decisions $${CRITERIA_N:-1000}
	$(BIN)/python scripts/bench_engine.py --decisions $${ENGINE_N:-20000} --data-dir var/bench

clean:
	rm -rf var .pytest_cache .hypothesis

## End to end over HTTP: the registry simulator (20-50 ms per call, no faults) and `miaopi serve
## --registry-url` as processes on free ports, fresh SQLite and secrets in a temporary folder;
## N decisions (default 1,000) from CLIENTS clients (default 8). Prints p50/p90/p99/max latency,
## throughput and the machine; fails when p99 is not under 300 ms.
.PHONY: bench-http
bench-http: setup
	$(BIN)/python scripts/bench_http.py --decisions $${N:-1000} --clients $${CLIENTS:-8}

## (b) and (c) of the benchmarks: HTTP decisions/s and p50/p90/p99 at 1, 8 and 32 connections
## on SQLite and PostgreSQL (when 127.0.0.1:5432 answers), next to the same server's empty-
## endpoint ceiling, driven by Debian's wrk; then RSS while deciding for RSS_SECONDS (default
## 0: skipped; ~1,200 s is a million decisions on SQLite). Every decision is stored and signed.
.PHONY: bench-wrk
bench-wrk: setup
	scripts/ensure-wrk.sh
	@test -f var/bench/applications.jsonl || $(BIN)/miaopi demo generate --out var/bench > /dev/null
	$(BIN)/python scripts/bench_wrk.py --data-dir var/bench --seconds $${SECONDS_PER_RUN:-10} --rss-seconds $${RSS_SECONDS:-0}
## The same measurement of an earlier commit on this machine (default fb91dd9: main when the
## speed target was set), beside which bench-wrk's figures read as a ratio. The first run makes
## a worktree, a venv pinned to our library versions and its demo data in var/baseline/ (~1 min).
.PHONY: bench-baseline
bench-baseline: setup
	scripts/ensure-wrk.sh
	$(BIN)/python scripts/bench_baseline.py --seconds $${SECONDS_PER_RUN:-10} $${REF:+--ref $$REF}
## This checkout (working tree) against REF, a commit of this generation (e.g. REF=HEAD~1):
## ROUNDS (default 4) pairs of bench-wrk runs at c=8 on SQLite, interleaved A B, B A … so the
## machine's drift falls on both; prints each run, each side's median and each pair's ratio.
.PHONY: bench-ab
bench-ab: setup
	scripts/ensure-wrk.sh
	@test -f var/bench/applications.jsonl || $(BIN)/miaopi demo generate --out var/bench > /dev/null
	$(BIN)/python scripts/bench_ab.py --ref $${REF:?set REF to a commit, e.g. REF=HEAD~1} --rounds $${ROUNDS:-4} --seconds $${SECONDS_PER_RUN:-10}
## Instructions the server executes a decision (one HTTP worker and the commit process), counted by
## valgrind's callgrind: DECISIONS (default 300) after 100 of warm-up at 8 clients, a figure the
## machine's drift does not move; REF=<commit> measures that commit the same way beside it.
## A run takes several minutes (valgrind runs the server ~50x slower). Needs valgrind.
.PHONY: bench-ir
bench-ir: setup
	@test -f var/bench/applications.jsonl || $(BIN)/miaopi demo generate --out var/bench > /dev/null
	$(BIN)/python scripts/bench_ir.py --data-dir var/bench --decisions $${DECISIONS:-300} $${REF:+--ref $$REF}
## Where a decision's server CPU goes: py-spy samples `miaopi serve` (the thread holding the GIL)
## while wrk posts decisions at 8 connections for SECONDS_PER_RUN (default 20); prints the share
## by stage and the functions with the most samples (scripts/profile_http.py; needs ptrace).
.PHONY: profile-http
profile-http: setup
	$(BIN)/pip install -q -e '.[bench]'
	scripts/ensure-wrk.sh
	@test -f var/bench/applications.jsonl || $(BIN)/miaopi demo generate --out var/bench > /dev/null
	$(BIN)/python scripts/profile_http.py --data-dir var/bench --seconds $${SECONDS_PER_RUN:-20}

## kill -9 under load (scripts/crash_test.py): KILLS SIGKILLs (default 200) of a whole `miaopi serve`
## (WORKERS processes, default 2) while 8 clients post, first on a SQLite file, then of either of two
## servers on a fresh schema of PostgreSQL (127.0.0.1:5432/test, or DATABASE_URL_TEST). Fails when
## an acknowledged decision is lost or stored twice, the chain does not verify, or a retry gets
## another decision. About 12 s per kill on a busy 2-core machine (mostly the restart).
.PHONY: crash-test
crash-test: setup
	$(BIN)/python scripts/crash_test.py --store sqlite --kills $${KILLS:-200} --workers $${WORKERS:-2}
	$(BIN)/python scripts/crash_test.py --store postgres --kills $${KILLS:-200} --workers $${WORKERS:-2} \
	  --postgres-url "$${DATABASE_URL_TEST:-postgresql+psycopg://postgres@127.0.0.1:5432/test}"
