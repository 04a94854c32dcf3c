"""Regenerate the pre-migration database fixture: data written by the code before Alembic.

The fixture in ``tests/fixtures/schema-429ccb6/`` is a SQLite dump and a PostgreSQL dump
(``pg_dump --inserts``, text SQL) of databases whose schema was made by ``create_all`` at
commit 429ccb6 (the last commit without migrations), filled through that commit's own HTTP
application: every shipped sample application decided once (all four services: approvals,
rejections, referrals), a referral and an objection each claimed and resolved by a reviewer
(two human decision records), an open request for a human decision, four API keys (one
revoked) and the staff actions they logged, and the signed Merkle log with its checkpoints.
``tests/explanations/test_migrations.py`` loads each dump into a fresh database, runs
``miaopi db upgrade`` and checks that every record still verifies and reads back unchanged.

How: the commit is extracted with ``git archive`` into a temporary folder and this script
runs itself there (``--generate``) with that folder first on ``PYTHONPATH``, using this
venv's packages (the old code needs nothing the new one lacks). The signing key and the
pseudonym key are made for the fixture only and are written beside it: they are TEST keys,
never used anywhere else. Needs ``git``, ``pg_dump`` and PostgreSQL (``--postgres-url``,
default 127.0.0.1:5432/test, trust auth).

    .venv/bin/python scripts/make_schema_fixture.py            # rewrite the fixture
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
COMMIT = "429ccb6"
OUT = ROOT / "tests" / "fixtures" / f"schema-{COMMIT}"
PG_SCHEMA = "miaopi_fixture_v0"
"""The schema the PostgreSQL dump names (the test loads it under another name)."""
PSEUDONYM_KEY = "fixture-pseudonym-key-for-tests-only-0123456789"
DEFAULT_PG = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--commit", default=COMMIT)
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--postgres-url", default=os.environ.get("DATABASE_URL_TEST", DEFAULT_PG))
    parser.add_argument("--generate", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--tree", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.generate:
        generate(args.tree, args.out, args.postgres_url)
        return
    with tempfile.TemporaryDirectory(prefix="miaopi-oldschema-") as tmp:
        tree = Path(tmp) / "tree"
        tree.mkdir()
        archive = subprocess.run(
            ["git", "-C", str(ROOT), "archive", args.commit], check=True, capture_output=True
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(tree)], input=archive, check=True)
        env = {**os.environ, "PYTHONPATH": str(tree)}
        env = {k: v for k, v in env.items() if not k.startswith("MIAOPI_") and k != "DATABASE_URL"}
        subprocess.run(
            [
                sys.executable, str(Path(__file__).resolve()), "--generate", "--tree", str(tree),
                "--out", str(args.out.resolve()), "--postgres-url", args.postgres_url,
            ],
            cwd=tree,
            env=env,
            check=True,
        )  # fmt: skip
    print(f"fixture written to {args.out}", file=sys.stderr)


def generate(tree: Path, out: Path, postgres_url: str) -> None:
    """Runs inside the extracted old commit: make both databases and dump them into ``out``."""
    import api

    if not Path(api.__file__).resolve().is_relative_to(tree.resolve()):
        sys.exit(f"the old code was not imported: api comes from {api.__file__}")
    import logging

    import sqlalchemy as sa

    from adapters.demo import generate_demo_data
    from api.secrets import generate_signing_key
    from explanations.log import load_public_keys, public_key_pem

    logging.getLogger("httpx").setLevel(logging.WARNING)
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    work = Path(tempfile.mkdtemp(prefix="miaopi-fixture-"))
    try:
        key_file = out / "signing-key.pem"
        generate_signing_key(key_file)
        [public] = load_public_keys([key_file]).values()
        (out / "public-key.pem").write_text(public_key_pem(public), encoding="ascii")
        demo = work / "demo"
        generate_demo_data(demo, people=300, rulesets_dir=tree / "rulesets")

        # SQLite: fill, then dump as SQL text.
        db = work / "old.db"
        expected_sqlite = fill(
            tree, demo, f"sqlite:///{db}", key_file, out / "checkpoints-sqlite.jsonl"
        )
        con = sqlite3.connect(db)
        dump = "\n".join(con.iterdump()) + "\n"
        con.close()
        (out / "sqlite.sql").write_text(dump, encoding="utf-8")

        # PostgreSQL: fill a schema of its own, dump it, drop it.
        admin = sa.create_engine(postgres_url)
        with admin.begin() as conn:
            conn.execute(sa.text(f"DROP SCHEMA IF EXISTS {PG_SCHEMA} CASCADE"))
            conn.execute(sa.text(f"CREATE SCHEMA {PG_SCHEMA}"))
        try:
            sep = "&" if "?" in postgres_url else "?"
            url = f"{postgres_url}{sep}options=-csearch_path%3D{PG_SCHEMA}"
            expected_pg = fill(tree, demo, url, key_file, out / "checkpoints-postgres.jsonl")
            libpq = sa.engine.make_url(postgres_url).set(drivername="postgresql")
            dumped = subprocess.run(
                [
                    "pg_dump", "--inserts", "--no-owner", "--no-privileges", "--schema", PG_SCHEMA,
                    libpq.render_as_string(hide_password=False),
                ],
                check=True,
                capture_output=True,
                text=True,
            ).stdout  # fmt: skip
            # pg_dump 15.14+ guards its output with psql's \restrict: drop it, so that the text
            # is plain SQL any client (and any psql version) can load.
            lines = dumped.splitlines(keepends=True)
            dumped = "".join(x for x in lines if not x.startswith(("\\restrict", "\\unrestrict")))
            (out / "postgres.sql").write_text(dumped, encoding="utf-8")
        finally:
            with admin.begin() as conn:
                conn.execute(sa.text(f"DROP SCHEMA IF EXISTS {PG_SCHEMA} CASCADE"))
            admin.dispose()
        manifest = {
            "commit": COMMIT,
            "postgres_schema": PG_SCHEMA,
            "pseudonym_key": PSEUDONYM_KEY,
            "sqlite": expected_sqlite,
            "postgres": expected_pg,
        }
        (out / "expected.json").write_text(
            json.dumps(manifest, ensure_ascii=False, indent=2) + "\n", encoding="utf-8"
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)


def fill(tree: Path, demo: Path, url: str, key_file: Path, checkpoints: Path) -> dict[str, Any]:
    """Decide every sample and work two review cases through the old app; what was stored."""
    import sqlalchemy as sa
    from fastapi.testclient import TestClient

    from api.app import create_app
    from api.auth import KeyStore
    from api.settings import Settings

    settings = Settings(
        data_dir=demo,
        rulesets_dir=tree / "rulesets",
        database_url=url,
        pseudonym_key=PSEUDONYM_KEY,
        signing_key_file=key_file,
        checkpoint_file=checkpoints,
        log_level="WARNING",
    )
    app = create_app(settings)
    ctx = app.state.ctx
    keys = KeyStore(ctx.store.engine)
    role_keys = {
        role: keys.create(role, label=f"fixture {role}", created_by="make_schema_fixture")[1]
        for role in ("platform", "reviewer", "auditor", "policy")
    }
    revoked_id, _ = keys.create("platform", label="fixture revoked", created_by="fixture")
    keys.revoke(revoked_id)

    def staff(role: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {role_keys[role]}"}

    folder = demo / "applications"
    names = sorted(json.loads((folder / "expected.json").read_text(encoding="utf-8")))
    decided: dict[str, dict[str, Any]] = {}
    with TestClient(app) as http:
        for n, name in enumerate(names):
            body = json.loads((folder / name).read_text(encoding="utf-8"))
            answer = http.post(
                "/v1/decisions",
                json=body,
                headers={**staff("platform"), "Idempotency-Key": f"fixture-{n:03d}"},
            )
            assert answer.status_code == 201, (name, answer.text)
            decided[name] = answer.json()
        by_outcome: dict[str, list[dict[str, Any]]] = {}
        for d in decided.values():
            by_outcome.setdefault(d["outcome"], []).append(d)
        # A referral's case, claimed and resolved (a human decision record).
        referral = by_outcome["REFERRED"][0]
        [case] = http.get(
            f"/v1/decisions/{referral['decision_id']}/cases",
            params={"token": referral["access_token"]},
        ).json()
        _resolve(http, case["case_id"], staff("reviewer"), "APPROVED", "经人工核实，予以批准。")
        # An objection to a rejection, claimed and resolved.
        rejected = by_outcome["REJECTED"][0]
        objection = http.post(
            f"/v1/decisions/{rejected['decision_id']}/objections",
            params={"token": rejected["access_token"]},
            json={"kind": "objection", "reason": "我的材料有误，请复核。"},
        )
        assert objection.status_code == 201, objection.text
        _resolve(
            http, objection.json()["case_id"], staff("reviewer"), "REJECTED", "复核后维持原决定。"
        )
        # A request for a human decision, left open.
        approved = by_outcome["APPROVED"][0]
        asked = http.post(
            f"/v1/decisions/{approved['decision_id']}/objections",
            params={"token": approved["access_token"]},
            json={"kind": "human_decision", "reason": "请由工作人员作出决定。"},
        )
        assert asked.status_code == 201, asked.text
        verified = http.get("/v1/audit/verify", headers=staff("auditor"))
        assert verified.status_code == 200 and verified.json()["intact"], verified.text
    ctx.service.close()
    with ctx.store.engine.connect() as conn:
        records = [
            {"seq": r.seq, "decision_id": r.decision_id, "record_hash": r.record_hash}
            for r in conn.execute(
                sa.text(
                    "SELECT seq, decision_id, record_hash FROM explanation_records ORDER BY seq"
                )
            )
        ]
        counts = {
            table: conn.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one()
            for table in (
                "decisions", "explanation_records", "chain_head", "log_nodes", "log_heads",
                "review_cases", "api_keys", "staff_actions",
            )
        }  # fmt: skip
    ctx.store.dispose()
    return {"counts": counts, "records": records}


def _resolve(http: Any, case_id: str, headers: dict[str, str], outcome: str, reason: str) -> None:
    claimed = http.post(f"/v1/review/cases/{case_id}/claim", headers=headers)
    assert claimed.status_code == 200, claimed.text
    resolved = http.post(
        f"/v1/review/cases/{case_id}/resolve",
        json={"outcome": outcome, "reason_zh": reason, "reason_en": "Resolved by a reviewer."},
        headers=headers,
    )
    assert resolved.status_code == 201, resolved.text


if __name__ == "__main__":
    main()
