"""Who may do what: every route's role check, citizens' tokens, OIDC bearer tokens, secrets."""

from __future__ import annotations

import datetime as dt
import itertools
import json
import subprocess
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi import FastAPI
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from support import TEST_SECRET_KEY, bearer, signing_key_path

from api.app import create_app
from api.auth import KeyStore
from api.settings import Settings

ROLES = ("platform", "reviewer", "policy", "auditor", "ops")
STAFF = {"platform", "reviewer", "policy", "auditor"}
OPS = {"ops", "auditor"}

# Every route, and who may use it. A route missing here fails the enumeration test.
PUBLIC = {
    ("GET", "/healthz"),
    ("GET", "/livez"),
    ("GET", "/readyz"),
    ("GET", "/v1/log/checkpoint"),
    ("GET", "/v1/log/public-key"),
    ("GET", "/v1/log/consistency"),
}
CITIZEN = {  # the decision's access token, nothing else
    ("GET", "/v1/decisions/{decision_id}"),
    ("GET", "/v1/decisions/{decision_id}/explanation"),
    ("GET", "/v1/decisions/{decision_id}/explanation.txt"),
    ("GET", "/v1/decisions/{decision_id}/receipt"),
    ("GET", "/v1/decisions/{decision_id}/cases"),
    ("POST", "/v1/decisions/{decision_id}/objections"),
}
PAGES = {  # the citizen's pages: a missing or wrong token is a plain 404
    ("GET", "/explain/{decision_id}"),
    ("POST", "/explain/{decision_id}/requests"),
}
ROLE_ROUTES: dict[tuple[str, str], set[str]] = {
    ("POST", "/v1/decisions"): {"platform"},
    ("GET", "/v1/rulesets"): STAFF,
    ("GET", "/v1/rulesets/{service}/{version}"): STAFF,
    ("GET", "/v1/review/cases"): {"reviewer"},
    ("GET", "/v1/review/cases/{case_id}"): {"reviewer"},
    ("POST", "/v1/review/cases/{case_id}/claim"): {"reviewer"},
    ("POST", "/v1/review/cases/{case_id}/resolve"): {"reviewer"},
    ("GET", "/v1/audit/verify"): {"auditor"},
    ("GET", "/v1/audit/replay/{decision_id}"): {"auditor"},
    ("GET", "/v1/audit/export"): {"auditor"},
    ("GET", "/v1/audit/actions"): {"auditor"},
    ("GET", "/metrics"): OPS,  # a test client is not on this machine: a key is needed
    ("GET", "/v1/ops/health"): OPS,
}
DOCS = {
    "/docs",
    "/redoc",
    "/openapi.json",
    "/docs/oauth2-redirect",
    "/docs-assets/redoc.standalone.js",
}


@pytest.fixture(scope="module")
def app(api_app: FastAPI) -> FastAPI:
    return api_app


@pytest.fixture(scope="module")
def keys(app: FastAPI, role_keys: dict[str, str]) -> dict[str, str]:
    """A key per role, plus one for every role that is revoked at once."""
    store = KeyStore(app.state.ctx.store.engine)
    revoked = {}
    for role in ROLES:
        key_id, key = store.create(role, label="revoked")
        assert store.revoke(key_id)
        revoked[role] = key
    return {**role_keys, **{f"revoked-{r}": k for r, k in revoked.items()}}


@pytest.fixture(scope="module")
def decided(client: TestClient, demo_samples: dict) -> dict[str, Any]:
    """A referred decision (it opens a case) and its token."""
    body = {**demo_samples["referred-no-population.json"].body}
    body["application_id"] = f"AC-{uuid.uuid4().hex[:10]}"
    r = client.post("/v1/decisions", json=body, headers={"Idempotency-Key": uuid.uuid4().hex})
    assert 201 == r.status_code, r.text
    return dict(r.json())


def _routes(app: FastAPI) -> set[tuple[str, str]]:
    found = set()
    for route in app.routes:
        if isinstance(route, APIRoute) and route.path not in DOCS:
            for method in route.methods - {"HEAD"}:
                found.add((method, route.path))
    return found


def _url(path: str, decided: dict[str, Any], case_id: str) -> str:
    return (
        path.replace("{decision_id}", decided["decision_id"])
        .replace("{case_id}", case_id)
        .replace("{service}", "talent-housing-subsidy")
        .replace("{version}", "2016")
    )


def _call(
    c: TestClient, method: str, url: str, headers: dict[str, str], params: dict[str, str]
) -> int:
    body: dict[str, Any] = {"outcome": "REJECTED", "reason_zh": "测试", "reason": "测试"}
    if method == "GET":
        return c.get(url, headers=headers, params=params).status_code
    return c.post(url, headers=headers, params=params, json=body).status_code


def test_every_route_is_classified_and_staff_routes_refuse_missing_revoked_and_wrong_keys(
    app: FastAPI, keys: dict[str, str], decided: dict[str, Any]
) -> None:
    """Each route refuses no key (401), a revoked key (401) and every role it does not allow (403)."""
    routes = _routes(app)
    assert routes == PUBLIC | CITIZEN | PAGES | set(ROLE_ROUTES), "classify every route"
    case_id = app.state.ctx.reviews.cases_of(decided["decision_id"])[0].id
    refusals: list[str] = []
    with TestClient(app) as c:  # no default credentials
        for (method, path), allowed in sorted(ROLE_ROUTES.items()):
            url = _url(path, decided, case_id)
            params = {"first": "1", "second": "1"}
            checks = [("no key", {}, 401)]
            checks += [(f"revoked {r}", bearer(keys[f"revoked-{r}"]), 401) for r in ROLES]
            checks += [(f"role {r}", bearer(keys[r]), 403) for r in ROLES if r not in allowed]
            checks += [("garbage", {"Authorization": "Bearer mpk_x_y"}, 401)]
            checks += [("not bearer", {"Authorization": f"Basic {keys[next(iter(allowed))]}"}, 401)]
            for what, headers, want in checks:
                got = _call(c, method, url, headers, params)
                if got != want:
                    refusals.append(f"{method} {path} with {what}: {got}, expected {want}")
            for role in allowed:
                got = _call(c, method, url, bearer(keys[role]), params)
                if got in (401, 403):
                    refusals.append(f"{method} {path} refused its own role {role}: {got}")
        for method, path in sorted(CITIZEN | PAGES):
            url = _url(path, decided, case_id)
            missing = 404 if (method, path) in PAGES else 401
            wrong = 404 if (method, path) in PAGES else 403
            for what, params, want in [
                ("no token", {}, missing),
                ("wrong token", {"token": "A" * 32}, wrong),
                ("non-ASCII token", {"token": "令牌" * 16}, wrong),
            ]:
                got = _call(c, method, url, {}, params)
                if got != want:
                    refusals.append(f"{method} {path} with {what}: {got}, expected {want}")
            for role in ROLES:  # a staff key is not a citizen's token
                got = _call(c, method, url, bearer(keys[role]), {})
                if got != missing:
                    refusals.append(f"{method} {path} with a {role} key: {got}, expected {missing}")
    assert not refusals, "\n".join(refusals)


def test_fifty_applicants_cannot_read_each_others_decisions_pages_or_cases(
    client: TestClient, bulk_bodies: list[dict[str, Any]]
) -> None:
    """Each of 50 applicants tries every other applicant's decision, page and cases: 0 successes."""
    people = []
    for i, body in enumerate(bulk_bodies[:50]):
        r = client.post(
            "/v1/decisions",
            json={**body, "application_id": f"X50-{i}-{uuid.uuid4().hex[:6]}"},
            headers={"Idempotency-Key": uuid.uuid4().hex},
        )
        assert 201 == r.status_code, r.text
        people.append((r.json()["decision_id"], r.json()["access_token"]))
    successes: list[str] = []
    with TestClient(client.app) as anonymous:  # the citizen holds no staff key
        for (mine, token), (theirs, _) in itertools.permutations(people, 2):
            q = {"token": token}
            attempts = [
                anonymous.get(f"/v1/decisions/{theirs}", params=q),
                anonymous.get(f"/v1/decisions/{theirs}/explanation", params=q),
                anonymous.get(f"/v1/decisions/{theirs}/explanation.txt", params=q),
                anonymous.get(f"/v1/decisions/{theirs}/receipt", params=q),
                anonymous.get(f"/v1/decisions/{theirs}/cases", params=q),
                anonymous.get(f"/explain/{theirs}", params=q),
                anonymous.get(f"/v1/decisions/{theirs}", headers={"X-Access-Token": token}),
            ]
            successes += [f"{mine} read {theirs}: {r.url}" for r in attempts if r.status_code < 400]
        # and the staff queue is not theirs to read either
        for _, token in people:
            r = anonymous.get("/v1/review/cases", params={"token": token})
            if r.status_code < 400:
                successes.append("an applicant listed the review queue")
        # each still reads their own
        own = [anonymous.get(f"/explain/{d}", params={"token": t}).status_code for d, t in people]
    assert [] == successes
    assert {200} == set(own)


# --- OIDC -------------------------------------------------------------------------------


class _Jwks(BaseHTTPRequestHandler):
    body = b"{}"

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def identity_provider() -> Iterator[tuple[str, Any]]:
    """A real JWKS endpoint on loopback serving one RSA key (kid ``k1``); yields its URL and key."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    jwk.update({"kid": "k1", "use": "sig", "alg": "RS256"})
    handler = type("Jwks", (_Jwks,), {"body": json.dumps({"keys": [jwk]}).encode()})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/jwks.json", key
    server.shutdown()


def test_oidc_bearer_tokens_are_verified_against_the_providers_jwks(
    identity_provider: tuple[str, Any], tmp_path: Path, demo_dir: Path, rulesets_dir: Path
) -> None:
    """A reviewer's JWT from the provider opens the queue; a wrong issuer, audience, signature,
    expiry or role does not."""
    jwks_url, key = identity_provider
    settings = Settings(
        data_dir=demo_dir,
        rulesets_dir=rulesets_dir,
        database_url=f"sqlite:///{tmp_path}/oidc.db",
        pseudonym_key=TEST_SECRET_KEY,
        signing_key_file=signing_key_path(),
        oidc_issuer="https://idp.example.gov.cn",
        oidc_audience="miaopi",
        oidc_jwks_url=jwks_url,
    )
    app = create_app(settings)
    now = dt.datetime.now(dt.UTC)
    good = {
        "iss": "https://idp.example.gov.cn",
        "aud": "miaopi",
        "sub": "reviewer-007",
        "exp": now + dt.timedelta(minutes=5),
        "roles": ["reviewer"],
    }

    def token(claims: dict[str, Any], signer: Any = key, kid: str = "k1") -> dict[str, str]:
        return bearer(jwt.encode(claims, signer, algorithm="RS256", headers={"kid": kid}))

    other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    try:
        with TestClient(app) as c:
            assert 200 == c.get("/v1/review/cases", headers=token(good)).status_code
            refused = {
                "wrong issuer": token({**good, "iss": "https://evil.example"}),
                "wrong audience": token({**good, "aud": "other"}),
                "expired": token({**good, "exp": now - dt.timedelta(minutes=1)}),
                "no expiry": token({k: v for k, v in good.items() if k != "exp"}),
                "forged signature": token(good, signer=other_key),
                "unknown key id": token(good, kid="k2"),
            }
            got = {
                what: c.get("/v1/review/cases", headers=h).status_code
                for what, h in refused.items()
            }
            assert {what: 401 for what in refused} == got
            auditor = token({**good, "roles": ["auditor"]})
            assert 403 == c.get("/v1/review/cases", headers=auditor).status_code
            assert 403 == c.post("/v1/decisions", headers=token(good), json={}).status_code
            c.get("/v1/review/cases", headers=token(good))
            actions = c.get("/v1/audit/actions", headers=auditor).json()
            assert any(
                a["actor"] == "oidc:https://idp.example.gov.cn#reviewer-007" for a in actions
            )
    finally:
        app.state.service.close()
        app.state.service.store.dispose()


# --- secrets ----------------------------------------------------------------------------


def test_the_service_refuses_to_start_without_its_secrets(
    tmp_path: Path, miaopi_bin: Path, repo_root: Path, demo_dir: Path
) -> None:
    """Outside --demo, no pseudonym key or no signing key: one line saying what is missing, exit 2."""
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    run = subprocess.run(
        [str(miaopi_bin), "serve", "--port", "1", "--data-dir", str(demo_dir),
         "--database-url", f"sqlite:///{tmp_path}/x.db"],
        cwd=repo_root, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert 2 == run.returncode
    assert "MIAOPI_PSEUDONYM_KEY" in run.stderr and "MIAOPI_SIGNING_KEY_FILE" in run.stderr
    assert "Traceback" not in run.stderr
    assert not (tmp_path / "x.db").exists()
    short = subprocess.run(
        [str(miaopi_bin), "serve", "--port", "1", "--data-dir", str(demo_dir)],
        cwd=repo_root, env={**env, "MIAOPI_PSEUDONYM_KEY": "short",
                            "MIAOPI_SIGNING_KEY_FILE": str(signing_key_path())},
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert 2 == short.returncode and "shorter than 32" in short.stderr


def test_rotating_the_pseudonym_key_keeps_issued_tokens_working(
    tmp_path: Path, demo_dir: Path, rulesets_dir: Path, demo_samples: dict
) -> None:
    """After rotation, tokens issued under the old key still open their decisions; new ones use
    the new key; a token made with a key the service never had opens nothing."""
    db = f"sqlite:///{tmp_path}/rot.db"
    old_key, new_key = "old-" + "a" * 40, "new-" + "b" * 40

    def app_with(current: str, previous: tuple[str, ...] = ()) -> FastAPI:
        return create_app(
            Settings(
                data_dir=demo_dir,
                rulesets_dir=rulesets_dir,
                database_url=db,
                pseudonym_key=current,
                previous_pseudonym_keys=previous,
                signing_key_file=signing_key_path(),
            )
        )

    def decide(app: FastAPI) -> dict[str, Any]:
        platform = KeyStore(app.state.ctx.store.engine).create("platform")[1]
        body = {**demo_samples["approved-master-2016.json"].body}
        body["application_id"] = f"ROT-{uuid.uuid4().hex[:8]}"
        with TestClient(app, headers=bearer(platform)) as c:
            r = c.post("/v1/decisions", json=body, headers={"Idempotency-Key": uuid.uuid4().hex})
        assert 201 == r.status_code, r.text
        return dict(r.json())

    before = app_with(old_key)
    first = decide(before)
    before.state.service.close()
    before.state.service.store.dispose()
    after = app_with(new_key, (old_key,))
    try:
        second = decide(after)
        with TestClient(after) as c:
            for d in (first, second):
                r = c.get(f"/explain/{d['decision_id']}", params={"token": d["access_token"]})
                assert 200 == r.status_code
            from api.access import access_token

            forged = access_token(first["decision_id"], key=b"access:guessed-development-key")
            r = c.get(f"/v1/decisions/{first['decision_id']}", params={"token": forged})
            assert 403 == r.status_code
        assert first["access_token"] != second["access_token"]
    finally:
        after.state.service.close()
        after.state.service.store.dispose()


def test_rotating_the_signing_key_keeps_earlier_checkpoints_verifiable(
    tmp_path: Path, demo_dir: Path, rulesets_dir: Path, demo_samples: dict
) -> None:
    """After a new signing key, earlier heads verify once the old public key is trusted, and
    are reported as signed by an unknown key when it is not."""
    from api.secrets import generate_signing_key
    from explanations.log import public_key_pem

    db = f"sqlite:///{tmp_path}/sign.db"
    old, new = tmp_path / "old.pem", tmp_path / "new.pem"
    generate_signing_key(old)
    generate_signing_key(new)
    old_public = tmp_path / "old.pub.pem"
    from api.secrets import load_signing_key

    old_public.write_text(public_key_pem(load_signing_key(old)))

    def verify_with(signing: Path, trusted: tuple[Path, ...], decide: bool) -> dict[str, Any]:
        app = create_app(
            Settings(
                data_dir=demo_dir,
                rulesets_dir=rulesets_dir,
                database_url=db,
                pseudonym_key=TEST_SECRET_KEY,
                signing_key_file=signing,
                trusted_public_keys=trusted,
            )
        )
        keys = KeyStore(app.state.ctx.store.engine)
        try:
            with TestClient(app) as c:
                if decide:
                    body = {**demo_samples["approved-master-2016.json"].body}
                    body["application_id"] = f"SIG-{uuid.uuid4().hex[:8]}"
                    r = c.post(
                        "/v1/decisions",
                        json=body,
                        headers={
                            "Idempotency-Key": uuid.uuid4().hex,
                            **bearer(keys.create("platform")[1]),
                        },
                    )
                    assert 201 == r.status_code, r.text
                auditor = bearer(keys.create("auditor")[1])
                return dict(c.get("/v1/audit/verify", headers=auditor).json())
        finally:
            app.state.service.close()
            app.state.service.store.dispose()

    assert verify_with(old, (), decide=True)["intact"]
    untrusted = verify_with(new, (), decide=True)
    assert not untrusted["intact"]
    assert all("unknown key" in p["message"] for p in untrusted["problems"])
    trusted = verify_with(new, (old_public,), decide=False)
    assert (True, 2) == (trusted["intact"], trusted["records"])
