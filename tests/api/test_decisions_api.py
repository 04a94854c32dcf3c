"""The decisions API over HTTP semantics (TestClient): outcomes, versions, idempotency, refusals, logs."""

from __future__ import annotations

import copy
import json
import uuid
from collections.abc import Callable
from typing import Any

import pytest
import structlog
from fastapi.testclient import TestClient
from structlog.testing import capture_logs
from support import bearer

from api.app import create_app
from api.auth import KeyStore
from api.logging import mask_personal_data
from api.settings import Settings
from explanations import DecisionStore

OUTCOME_ZH = {"APPROVED": "予以批准", "REJECTED": "不予批准", "REFERRED": "转人工审核"}


def _key() -> str:
    return f"test-{uuid.uuid4().hex}"


def _post(client: TestClient, body: Any, *, key: str | None = None) -> Any:
    headers = {"Idempotency-Key": key} if key is not None else {}
    return client.post("/v1/decisions", json=body, headers=headers)


def _fresh(body: dict[str, Any]) -> dict[str, Any]:
    """A deep copy of ``body`` with a new application id."""
    out = copy.deepcopy(body)
    out["application_id"] = f"T-{uuid.uuid4().hex[:16]}"
    return out


def _summary(response: dict[str, Any]) -> dict[str, Any]:
    return {
        "outcome": response["outcome"],
        "failed": response["failed_criteria"],
        "unknown": response["unknown_criteria"],
        "version": response["ruleset"]["version"],
        "amount_yuan": (response["outputs"] or {}).get("amount_yuan"),
        "outputs": response["outputs"],
    }


# --- outcomes ---------------------------------------------------------------------------


def test_every_shipped_sample_is_decided_as_its_expected_json_says(
    client: TestClient, demo_samples: dict
) -> None:
    """Each sample file gets 201 with its expected outcome, criteria, ruleset version and amount."""
    expected = {}
    actual = {}
    for name, sample in demo_samples.items():
        exp = sample.expected
        expected[name] = {
            "status": 201,
            "outcome": exp["outcome"],
            "failed": exp["failed"],
            "unknown": exp["unknown"],
            "version": exp["version"],
            "amount_yuan": exp["amount_yuan"],
        }
        r = _post(client, _fresh(sample.body), key=_key())
        actual[name] = (
            {"status": r.status_code, **_summary(r.json())} if r.status_code < 300 else r.json()
        )
        if "outputs" in exp:  # the samples of the v2 services state every output
            expected[name]["outputs"] = exp["outputs"]
        else:
            actual[name].pop("outputs", None)
    assert len(expected) >= 33
    assert {
        "talent-housing-subsidy",
        "old-age-allowance",
        "maternity-allowance",
        "beijing-points-hukou",
    } == {s.body["service"] for s in demo_samples.values()}
    assert expected == actual


def test_an_application_failing_three_criteria_is_told_all_three(
    client: TestClient, demo_samples: dict
) -> None:
    """rejected-many lists every failed criterion (C2, C6, C7), each with a reason, not only the first."""
    r = _post(client, _fresh(demo_samples["rejected-many.json"].body), key=_key())
    assert 201 == r.status_code
    body = r.json()
    assert "REJECTED" == body["outcome"]
    assert len(body["failed_criteria"]) >= 3
    assert ["C2", "C6", "C7"] == body["failed_criteria"]
    reasons = {x["criterion"] for x in body["reasons"] if x["code"] == "CRITERION_NOT_MET"}
    assert {"C2", "C6", "C7"} == reasons


def test_every_explanation_names_the_outcome_in_chinese_and_the_exact_ruleset(
    client: TestClient, demo_samples: dict
) -> None:
    """The explanation link works; text_zh says the outcome; the record names the served ruleset hash."""
    hashes: dict[str, str] = {}
    for sample in demo_samples.values():
        decided = _post(client, _fresh(sample.body), key=_key()).json()
        r = client.get(decided["explanation_url"])
        assert 200 == r.status_code
        exp = r.json()
        record = exp["record"]
        version = record["ruleset_version"]
        key = f"{record['service']}@{version}"
        if key not in hashes:
            rs = client.get(f"/v1/rulesets/{record['service']}/{version}")
            assert 200 == rs.status_code
            hashes[key] = rs.json()["content_hash"]
        assert decided["decision_id"] == exp["decision_id"] == record["decision_id"]
        assert sample.expected["outcome"] == exp["outcome"]
        assert OUTCOME_ZH[exp["outcome"]] in exp["text_zh"]
        assert sample.expected["version"] == version
        assert hashes[key] == record["ruleset_hash"] == decided["ruleset"]["content_hash"]
        assert decided["record_hash"] == record["record_hash"]
        assert sample.body["applicant"]["id_number"] not in json.dumps(exp, ensure_ascii=False)
    assert {
        "talent-housing-subsidy@2016",
        "talent-housing-subsidy@2026",
        "old-age-allowance@2024",
        "maternity-allowance@2016",
        "beijing-points-hukou@2018",
    } == set(hashes)


def test_the_plain_text_explanation_is_served_in_one_language_at_a_time(
    client: TestClient, demo_samples: dict
) -> None:
    """explanation.txt is zh-CN by default and English with ?lang=en, never both glued together."""
    decided = _post(
        client, _fresh(demo_samples["approved-master-2016.json"].body), key=_key()
    ).json()
    path = f"/v1/decisions/{decided['decision_id']}/explanation.txt"
    token = {"X-Access-Token": decided["access_token"]}
    zh = client.get(path, headers=token)
    en = client.get(path, headers=token, params={"lang": "en"})
    assert 200 == zh.status_code == en.status_code
    assert "予以批准" in zh.text and "approved" not in zh.text.lower()
    assert "approved" in en.text.lower() and "予以批准" not in en.text


@pytest.mark.parametrize(
    ("submitted_at", "version"),
    [
        ("2025-12-31T23:30:00+08:00", "2016"),
        ("2026-01-01T00:10:00+08:00", "2026"),
        ("2025-12-31T16:30:00Z", "2026"),
    ],
)
def test_the_ruleset_version_follows_the_application_date_in_shanghai(
    client: TestClient, demo_samples: dict, submitted_at: str, version: str
) -> None:
    """The version in force on the Shanghai calendar day of submission decides, across the boundary."""
    body = _fresh(demo_samples["version-boundary-2026-01-01.json"].body)
    body["submitted_at"] = submitted_at
    r = _post(client, body, key=_key())
    assert 201 == r.status_code
    assert version == r.json()["ruleset"]["version"]


# --- idempotency ------------------------------------------------------------------------


def test_a_retried_request_returns_the_stored_decision_and_stores_nothing_new(
    client: TestClient, store: DecisionStore, demo_samples: dict
) -> None:
    """Same key and body: the same response (201, same body), Idempotent-Replayed: true, one row stored."""
    body, key = _fresh(demo_samples["approved-master-2016.json"].body), _key()
    first = _post(client, body, key=key)
    count = store.count()
    second = _post(client, body, key=key)
    assert (201, "false") == (first.status_code, first.headers["Idempotent-Replayed"])
    assert (201, "true") == (second.status_code, second.headers["Idempotent-Replayed"])
    assert first.json() == second.json()
    assert count == store.count()


def test_a_key_reused_with_a_different_body_is_refused(
    client: TestClient, store: DecisionStore, demo_samples: dict
) -> None:
    """Same key, different body: 422 IDEMPOTENCY_KEY_REUSED, and the first decision stays the only one."""
    body, key = _fresh(demo_samples["approved-master-2016.json"].body), _key()
    first = _post(client, body, key=key)
    count = store.count()
    changed = {**body, "form": {**body["form"], "phone": "13900139000"}}
    r = _post(client, changed, key=key)
    assert 422 == r.status_code
    assert "IDEMPOTENCY_KEY_REUSED" == r.json()["error"]["code"]
    assert count == store.count()
    first_id, token = first.json()["decision_id"], first.json()["access_token"]
    assert first.json() == client.get(f"/v1/decisions/{first_id}?token={token}").json()


def test_a_request_without_an_idempotency_key_is_refused(
    client: TestClient, store: DecisionStore, demo_samples: dict
) -> None:
    """No Idempotency-Key header: 400 IDEMPOTENCY_KEY_REQUIRED and nothing stored."""
    count = store.count()
    r = _post(client, _fresh(demo_samples["approved-master-2016.json"].body))
    assert 400 == r.status_code
    assert "IDEMPOTENCY_KEY_REQUIRED" == r.json()["error"]["code"]
    assert count == store.count()


# --- refusals ---------------------------------------------------------------------------

_Mutate = Callable[[dict[str, Any]], Any]


def _set(path: tuple[str, ...], value: Any) -> _Mutate:
    def mutate(body: dict[str, Any]) -> dict[str, Any]:
        target = body
        for part in path[:-1]:
            target = target[part]
        target[path[-1]] = value
        return body

    return mutate


def _wrong_check_digit(body: dict[str, Any]) -> dict[str, Any]:
    number = body["applicant"]["id_number"]
    body["applicant"]["id_number"] = number[:17] + ("0" if number[17] != "0" else "1")
    return body


BAD_BODIES = [
    pytest.param(
        _set(("submitted_at",), 123),
        422,
        "INVALID_REQUEST",
        ["body", "submitted_at"],
        id="submitted_at-number",
    ),
    pytest.param(
        _set(("submitted_at",), "2025-06-01T10:00:00"),
        422,
        "INVALID_REQUEST",
        ["body", "submitted_at"],
        id="submitted_at-without-offset",
    ),
    pytest.param(
        _set(("channel",), "wechat"),
        422,
        "INVALID_REQUEST",
        ["body", "channel"],
        id="unknown-top-level-field",
    ),
    pytest.param(
        _set(("form", "salary"), 9000),
        422,
        "INVALID_FORM",
        ["body", "form", "salary"],
        id="unknown-form-field",
    ),
    pytest.param(
        _set(("form", "degree"), "院士"),
        422,
        "INVALID_FORM",
        ["body", "form", "degree"],
        id="form-value-not-allowed",
    ),
    pytest.param(
        _wrong_check_digit,
        422,
        "INVALID_REQUEST",
        ["body", "applicant", "id_number"],
        id="id-check-digit",
    ),
    pytest.param(
        _set(("applicant", "name"), ""),
        422,
        "INVALID_REQUEST",
        ["body", "applicant", "name"],
        id="empty-name",
    ),
    pytest.param(
        _set(("service",), "no-such-service"), 404, "UNKNOWN_SERVICE", None, id="unknown-service"
    ),
    pytest.param(
        _set(("submitted_at",), "2015-06-01T10:00:00+08:00"),
        422,
        "SUBMITTED_BEFORE_SERVICE",
        ["body", "submitted_at"],
        id="before-the-service-existed",
    ),
]


@pytest.mark.parametrize(("mutate", "status", "code", "loc"), BAD_BODIES)
def test_a_bad_request_gets_a_clear_4xx_and_stores_nothing(
    client: TestClient,
    store: DecisionStore,
    demo_samples: dict,
    mutate: _Mutate,
    status: int,
    code: str,
    loc: list[str] | None,
) -> None:
    """Each kind of bad input gets its own status and code, names the field, and leaves no record."""
    original = demo_samples["approved-master-2016.json"].body
    body = mutate(_fresh(original))
    count, key = store.count(), _key()
    r = _post(client, body, key=key)
    error = r.json()["error"]
    assert (status, code) == (r.status_code, error["code"])
    assert error["message_zh"] and error["message_en"]
    if loc is not None:
        assert loc in [f["loc"] for f in error["fields"]]
    assert count == store.count()
    assert store.find_by_key(key) is None


def test_a_wrong_check_digit_is_explained_without_echoing_the_number(
    client: TestClient, store: DecisionStore, demo_samples: dict
) -> None:
    """A bad resident ID number: 422 whose message mentions 校验码; the number is not in the body."""
    body = _wrong_check_digit(_fresh(demo_samples["approved-master-2016.json"].body))
    count = store.count()
    r = _post(client, body, key=_key())
    assert 422 == r.status_code
    assert "校验码" in r.text
    assert body["applicant"]["id_number"] not in r.text
    assert body["applicant"]["id_number"][:17] not in r.text
    assert count == store.count()


def test_an_application_dated_before_any_version_names_the_date(
    client: TestClient, demo_samples: dict
) -> None:
    """2015-06-01 is before the service's first version: 422 SUBMITTED_BEFORE_SERVICE naming 2015-06-01."""
    body = _fresh(demo_samples["approved-master-2016.json"].body)
    body["submitted_at"] = "2015-06-01T10:00:00+08:00"
    r = _post(client, body, key=_key())
    assert 422 == r.status_code
    error = r.json()["error"]
    assert "SUBMITTED_BEFORE_SERVICE" == error["code"]
    assert "2015-06-01" in error["message_zh"]
    assert "2015-06-01" in error["message_en"]


def test_malformed_json_is_refused_with_400(client: TestClient, store: DecisionStore) -> None:
    """A body that is not JSON: 400 MALFORMED_JSON and nothing stored."""
    count = store.count()
    r = client.post(
        "/v1/decisions",
        content=b'{"service": "talent-housing-subsidy", ',
        headers={"Idempotency-Key": _key(), "Content-Type": "application/json"},
    )
    assert 400 == r.status_code
    assert "MALFORMED_JSON" == r.json()["error"]["code"]
    assert count == store.count()


def test_a_body_over_the_limit_is_refused_with_413(
    client: TestClient, store: DecisionStore, api_settings: Settings, demo_samples: dict
) -> None:
    """A body larger than max_body_bytes: 413 BODY_TOO_LARGE and nothing stored."""
    body = _fresh(demo_samples["approved-master-2016.json"].body)
    body["form"]["employer_name"] = "深" * api_settings.max_body_bytes
    content = json.dumps(body, ensure_ascii=False).encode("utf-8")
    assert len(content) > api_settings.max_body_bytes
    count = store.count()
    r = client.post(
        "/v1/decisions",
        content=content,
        headers={"Idempotency-Key": _key(), "Content-Type": "application/json"},
    )
    assert 413 == r.status_code
    assert "BODY_TOO_LARGE" == r.json()["error"]["code"]
    assert count == store.count()


def test_a_chunked_body_over_the_limit_is_refused_with_413(
    client: TestClient, store: DecisionStore, api_settings: Settings
) -> None:
    """A streamed body without Content-Length that grows past the limit is refused too."""
    chunk = b" " * 8192

    def chunks():  # type: ignore[no-untyped-def]
        for _ in range(api_settings.max_body_bytes // len(chunk) + 2):
            yield chunk

    count = store.count()
    r = client.post(
        "/v1/decisions",
        content=chunks(),
        headers={"Idempotency-Key": _key(), "Content-Type": "application/json"},
    )
    assert 413 == r.status_code
    assert "BODY_TOO_LARGE" == r.json()["error"]["code"]
    assert count == store.count()


# --- reading ----------------------------------------------------------------------------


def test_an_unknown_decision_id_is_404(client: TestClient) -> None:
    """GET of a decision, explanation or text that does not exist answers 404 (with its valid token)."""
    from api.access import access_token

    missing = str(uuid.uuid4())
    token = access_token(
        missing, key=("access:" + client.app.state.settings.pseudonym_key).encode()
    )
    for path in (
        f"/v1/decisions/{missing}",
        f"/v1/decisions/{missing}/explanation",
        f"/v1/decisions/{missing}/explanation.txt",
    ):
        r = client.get(path, params={"token": token})
        assert 404 == r.status_code, path
        assert "DECISION_NOT_FOUND" == r.json()["error"]["code"]


def test_reading_a_decision_needs_its_own_access_token(
    client: TestClient, demo_samples: dict
) -> None:
    """Without a token 401, with another decision's token 403, for every read; the body reveals nothing."""
    a = _post(client, _fresh(demo_samples["rejected-many.json"].body), key=_key()).json()
    b = _post(client, _fresh(demo_samples["approved-master-2016.json"].body), key=_key()).json()
    for suffix in ("", "/explanation", "/explanation.txt"):
        path = f"/v1/decisions/{a['decision_id']}{suffix}"
        no_token = client.get(path)
        wrong = client.get(path, params={"token": b["access_token"]})
        right = client.get(path, headers={"X-Access-Token": a["access_token"]})
        assert (401, "ACCESS_TOKEN_REQUIRED") == (
            no_token.status_code,
            no_token.json()["error"]["code"],
        )
        assert (403, "ACCESS_TOKEN_INVALID") == (wrong.status_code, wrong.json()["error"]["code"])
        assert 200 == right.status_code
        assert "C2" not in no_token.text + wrong.text


def test_a_retry_gets_the_same_access_token(client: TestClient, demo_samples: dict) -> None:
    """The token is derived, not stored: the replayed response carries the same one."""
    body, key = _fresh(demo_samples["approved-master-2016.json"].body), _key()
    first, again = _post(client, body, key=key).json(), _post(client, body, key=key).json()
    assert first["access_token"] == again["access_token"]
    assert first["explanation_url"].endswith("?token=" + first["access_token"])


def test_a_stored_decision_reads_back_as_it_was_answered(
    client: TestClient, demo_samples: dict
) -> None:
    """GET /v1/decisions/{id} returns exactly the body the POST answered."""
    decided = _post(
        client, _fresh(demo_samples["referred-no-population.json"].body), key=_key()
    ).json()
    assert (
        decided
        == client.get(
            f"/v1/decisions/{decided['decision_id']}", params={"token": decided["access_token"]}
        ).json()
    )


def test_the_ruleset_list_shows_both_versions_with_their_dates(client: TestClient) -> None:
    """GET /v1/rulesets lists 2016 (to 2025-12-31) and 2026 (open-ended) of the service."""
    listed = {(r["service"], r["version"]): r for r in client.get("/v1/rulesets").json()}
    assert {("talent-housing-subsidy", "2016"), ("talent-housing-subsidy", "2026")} <= set(listed)
    assert "2025-12-31" == listed[("talent-housing-subsidy", "2016")]["effective_to"]
    assert "2026-01-01" == listed[("talent-housing-subsidy", "2026")]["effective_from"]
    for (service, version), summary in listed.items():
        assert (
            summary["content_hash"]
            == client.get(f"/v1/rulesets/{service}/{version}").json()["content_hash"]
        )


def test_an_unknown_ruleset_is_404_with_its_own_code(client: TestClient) -> None:
    """Unknown service and unknown version are told apart."""
    r = client.get("/v1/rulesets/no-such-service/2016")
    assert (404, "UNKNOWN_SERVICE") == (r.status_code, r.json()["error"]["code"])
    r = client.get("/v1/rulesets/talent-housing-subsidy/1999")
    assert (404, "UNKNOWN_VERSION") == (r.status_code, r.json()["error"]["code"])


def test_the_openapi_document_and_docs_page_are_served(client: TestClient) -> None:
    """/openapi.json (listing /v1/decisions) and /docs answer 200."""
    r = client.get("/openapi.json")
    assert 200 == r.status_code
    assert "/v1/decisions" in r.json()["paths"]
    assert 200 == client.get("/docs").status_code


def test_the_openapi_document_shows_no_service_parameter_to_clients(client: TestClient) -> None:
    """The service dependency is internal: no operation asks clients for an ``svc`` parameter."""
    paths = client.get("/openapi.json").json()["paths"]
    names = [
        p["name"] for ops in paths.values() for op in ops.values() for p in op.get("parameters", [])
    ]
    assert "svc" not in names


def test_every_response_carries_a_request_id(client: TestClient) -> None:
    """X-Request-ID is echoed when given and generated when not."""
    assert (
        "abc123"
        == client.get("/healthz", headers={"X-Request-ID": "abc123"}).headers["X-Request-ID"]
    )
    assert client.get("/healthz").headers["X-Request-ID"]


# --- logs -------------------------------------------------------------------------------


def test_no_log_event_of_a_decision_holds_the_raw_id_number_or_name(
    client: TestClient, demo_samples: dict
) -> None:
    """Every structlog event during a decision is free of the applicant's raw ID number and name."""
    body = _fresh(demo_samples["rejected-many.json"].body)
    id_number, name = body["applicant"]["id_number"], body["applicant"]["name"]
    with capture_logs() as events:
        r = _post(client, body, key=_key())
        client.get(r.json()["explanation_url"])
    assert 201 == r.status_code
    assert any(e.get("event") == "decided" for e in events)
    text = json.dumps(events, ensure_ascii=False, default=str)
    assert id_number not in text
    assert name not in text


def test_the_rendered_log_lines_mask_personal_data(
    api_settings: Settings, demo_samples: dict, capsys: pytest.CaptureFixture[str]
) -> None:
    """The JSON log lines on stderr carry ids but never the raw ID number or name, even if logged."""
    before = structlog.get_config()
    app = create_app(api_settings)  # configures logging onto the captured stderr
    try:
        body = _fresh(demo_samples["approved-doctor-2016.json"].body)
        id_number, name = body["applicant"]["id_number"], body["applicant"]["name"]
        platform = KeyStore(app.state.ctx.store.engine).create("platform")[1]
        with TestClient(app, headers=bearer(platform)) as c:
            r = _post(c, body, key=_key())
        structlog.get_logger("test").info("careless", note=f"申请人身份证号{id_number}", name=name)
        err = capsys.readouterr().err
    finally:
        app.state.service.close()
        app.state.service.store.dispose()
        structlog.configure(**before)  # not onto capsys's stream, which closes after the test
    assert 201 == r.status_code
    lines = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    assert any(line.get("decision_id") == r.json()["decision_id"] for line in lines)
    assert any(line.get("event") == "careless" for line in lines)
    assert id_number not in err
    assert name not in err
    assert id_number[:3] + "*" * 11 + id_number[-4:] in err


def test_mask_personal_data_masks_id_numbers_anywhere_and_names_by_key() -> None:
    """ID numbers are masked in any string, however nested; name fields keep only the family name."""
    event = {
        "event": "x 440305198501019057 y",
        "applicant": {"id_number": "11010519491231002x", "name": "刘建国"},
        "holder_name": "王芳",
        "items": ["id=44030519850101905X.", {"name": "张三"}],
        "count": 3,
    }
    assert {
        "event": "x 440***********9057 y",
        "applicant": {"id_number": "110***********002x", "name": "刘**"},
        "holder_name": "王*",
        "items": ["id=440***********905X.", {"name": "张*"}],
        "count": 3,
    } == mask_personal_data(None, "info", event)


def test_mask_personal_data_leaves_other_numbers_alone() -> None:
    """Decision ids, amounts, dates and 12-digit certificate numbers are not mistaken for ID or
    mobile numbers."""
    event = {
        "event": "decided",
        "certificate": "102841202603",
        "amount_yuan": 25000,
        "amount": "56487.38",
        "on": "2025-06-01T10:00:00+08:00",
        "decision_id": "79da9cc3-d4c8-465e-9816-93a0d37d862a",
    }
    assert dict(event) == mask_personal_data(None, "info", dict(event))


def test_mask_personal_data_masks_mobile_numbers_and_long_runs_that_may_hide_an_id() -> None:
    """A mobile number keeps 3 + 4 digits; a 19-digit run may hold an ID number: masked."""
    event = {"phone": "13800138000", "certificate": "1055820083990009051"}
    assert {"phone": "138****8000", "certificate": "105************9051"} == mask_personal_data(
        None, "info", event
    )
