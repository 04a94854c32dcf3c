"""Hostile input: every kind is refused in the documented error shape, and nothing is stored."""

from __future__ import annotations

import copy
import datetime as dt
import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from support import bearer

from api.strictjson import MAX_DEPTH, MalformedJSON, loads
from explanations import DecisionStore

SAMPLE = "approved-master-2016.json"
FULL_WIDTH = str.maketrans("0123456789X", "０１２３４５６７８９Ｘ")
ARABIC_INDIC = str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩")


def _key() -> str:
    return f"hostile-{uuid.uuid4().hex}"


def _fresh(demo_samples: dict, name: str = SAMPLE) -> dict[str, Any]:
    body = copy.deepcopy(demo_samples[name].body)
    body["application_id"] = f"H-{uuid.uuid4().hex[:16]}"
    return body


def _post_raw(
    client: TestClient, content: bytes, *, key: str, content_type: str | None = "application/json"
) -> Any:
    headers = {"Idempotency-Key": key}
    if content_type is not None:
        headers["Content-Type"] = content_type
    return client.post("/v1/decisions", content=content, headers=headers)


def _assert_refused(
    response: Any, status: int, code: str, *, loc: list[Any] | None = None, kind: str | None = None
) -> dict[str, Any]:
    """The documented shape: {"error": {"code", "message_zh", "message_en", "fields"?}} only."""
    assert status == response.status_code, response.text
    body = response.json()
    assert ["error"] == list(body)
    error = body["error"]
    assert code == error["code"]
    assert error["message_zh"] and error["message_en"]
    assert set(error) <= {"code", "message_zh", "message_en", "fields"}
    if loc is not None:
        assert loc in [f["loc"] for f in error["fields"]]
    if kind is not None:
        assert kind in [f["type"] for f in error["fields"]]
    return error


@pytest.fixture
def nothing_stored(store: DecisionStore) -> Iterator[list[str]]:
    """Yields a list to put the Idempotency-Keys used in; asserts afterwards nothing was stored."""
    count = store.count()
    keys: list[str] = []
    yield keys
    assert count == store.count()
    for key in keys:
        assert store.find_by_key(key) is None


def _refused_post(
    client: TestClient,
    keys: list[str],
    content: bytes,
    content_type: str | None = "application/json",
) -> Any:
    key = _key()
    keys.append(key)
    return _post_raw(client, content, key=key, content_type=content_type)


# --- the strict JSON reader ---------------------------------------------------------------


def test_a_second_id_number_does_not_silently_win(
    client: TestClient, demo_samples: dict, nothing_stored: list[str]
) -> None:
    """Two id_number keys in one object: 400 MALFORMED_JSON naming the key, in either order."""
    body = _fresh(demo_samples)
    good = body["applicant"]["id_number"]
    other = _fresh(demo_samples, "rejected-many.json")["applicant"]["id_number"]
    text = json.dumps(body, ensure_ascii=False)
    for first, second in ((other, good), (good, other)):
        duplicated = text.replace(
            f'"id_number": "{good}"', f'"id_number": "{first}", "id_number": "{second}"'
        )
        assert duplicated != text
        r = _refused_post(client, nothing_stored, duplicated.encode())
        error = _assert_refused(r, 400, "MALFORMED_JSON", kind="json_duplicate_key")
        assert "id_number" in error["message_en"]
        assert good not in r.text and other not in r.text


@pytest.mark.parametrize(
    ("content", "kind"),
    [
        pytest.param(
            b'{"form": ' + b"[" * 10_000 + b"]" * 10_000 + b"}", "json_too_deep", id="depth-10000"
        ),
        pytest.param(
            b'{"a": ' + b"{" * MAX_DEPTH + b"}" * MAX_DEPTH + b"}", "json_too_deep", id="depth-33"
        ),
        pytest.param(
            b'{"form": {"n": ' + b"9" * 5_000 + b"}}", "json_number_too_large", id="int-5000-digits"
        ),
        pytest.param(
            b'{"form": {"n": -' + b"1" * 31 + b"}}", "json_number_too_large", id="int-31-digits"
        ),
        pytest.param(b'{"form": {"n": 1e400}}', "json_number_too_large", id="float-overflow"),
        pytest.param(b'{"form": {"n": NaN}}', "json_not_a_number", id="nan"),
        pytest.param(b'{"form": {"n": -Infinity}}', "json_not_a_number", id="minus-infinity"),
        pytest.param(b'{"service": "\xff\xfe"}', "json_not_utf8", id="not-utf8"),
        pytest.param('{"service": "talent"}'.encode("utf-16"), "json_not_utf8", id="utf-16"),
        pytest.param(
            b'{"applicant": {"name": "\\ud800"}}', "json_lone_surrogate", id="lone-surrogate-name"
        ),
        pytest.param(
            b'{"form": {"employer_name": "a\\udfff"}}',
            "json_lone_surrogate",
            id="lone-surrogate-form",
        ),
        pytest.param(b'{"form": {"\\ud800": 1}}', "json_lone_surrogate", id="lone-surrogate-key"),
        pytest.param(b'{"form": ["\\udc00"]}', "json_lone_surrogate", id="lone-surrogate-in-array"),
        pytest.param(b'{"service": "talent-housing-subsidy", ', "json_invalid", id="truncated"),
        pytest.param(b'{"service": "a\x01b"}', "json_invalid", id="raw-control-in-string"),
    ],
)
def test_a_body_that_is_not_strict_json_is_400(
    client: TestClient, nothing_stored: list[str], content: bytes, kind: str
) -> None:
    """Each way a body breaks the strict reader: 400 MALFORMED_JSON, the rule named in fields."""
    r = _refused_post(client, nothing_stored, content)
    _assert_refused(r, 400, "MALFORMED_JSON", loc=["body"], kind=kind)


def test_the_strict_reader_still_reads_what_clients_send() -> None:
    """Depth 32, 30-digit integers, escaped surrogate pairs, a byte-order mark: all read."""
    nested = b"[" * MAX_DEPTH + b"]" * MAX_DEPTH
    assert [[]] == loads(b"[" * 2 + b"]" * 2)
    assert loads(nested) is not None
    assert {"n": -(10**29)} == loads(b'{"n": -1' + b"0" * 29 + b"}")
    assert {"s": "😀", "t": "a]{"} == loads(b'{"s": "\\ud83d\\ude00", "t": "a]{"}')
    assert {"x": 1.5} == loads(b'\xef\xbb\xbf{"x": 1.5}')
    with pytest.raises(MalformedJSON):
        loads(b'{"a": 1, "a": 1}')  # even when both say the same


# --- Content-Type ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "content_type",
    [
        None,
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "application/json; charset=utf-16",
        "application/xml",
    ],
)
def test_a_json_route_refuses_a_body_not_declared_json_with_415(
    client: TestClient, demo_samples: dict, nothing_stored: list[str], content_type: str | None
) -> None:
    """A valid JSON application sent with no or another Content-Type: 415, not 'a valid dictionary'."""
    content = json.dumps(_fresh(demo_samples), ensure_ascii=False).encode()
    r = _refused_post(client, nothing_stored, content, content_type)
    _assert_refused(r, 415, "UNSUPPORTED_MEDIA_TYPE", loc=["header", "content-type"])


def test_json_with_a_utf8_charset_or_a_json_suffix_is_accepted(
    client: TestClient, demo_samples: dict, store: DecisionStore
) -> None:
    """application/json; charset=UTF-8 and application/<x>+json are JSON."""
    for content_type in ("application/json; charset=UTF-8", "application/vnd.miaopi+json"):
        count = store.count()
        content = json.dumps(_fresh(demo_samples), ensure_ascii=False).encode()
        r = _post_raw(client, content, key=_key(), content_type=content_type)
        assert 201 == r.status_code, r.text
        assert count + 1 == store.count()


# --- dates -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "submitted_at",
    [
        "0001-01-01T00:00:00+08:00",
        "0001-01-01T00:00:00Z",
        "9999-12-31T23:59:59-12:00",
        "9999-01-01T00:00:00+08:00",
    ],
)
def test_years_that_overflow_are_422_not_500(
    client: TestClient, demo_samples: dict, nothing_stored: list[str], submitted_at: str
) -> None:
    """Year 1 or 9999 (which overflowed converting to Beijing time): 422 naming submitted_at."""
    body = _fresh(demo_samples)
    body["submitted_at"] = submitted_at
    r = _refused_post(client, nothing_stored, json.dumps(body).encode())
    _assert_refused(r, 422, "INVALID_REQUEST", loc=["body", "submitted_at"])


def test_an_application_from_2100_is_refused_never_decided(
    client: TestClient, demo_samples: dict, nothing_stored: list[str]
) -> None:
    """submitted_at in 2100 (which made the applicant too old: REJECTED): 422 SUBMITTED_IN_FUTURE."""
    body = _fresh(demo_samples)
    body["submitted_at"] = "2100-06-01T10:00:00+08:00"
    r = _refused_post(client, nothing_stored, json.dumps(body).encode())
    _assert_refused(r, 422, "SUBMITTED_IN_FUTURE", loc=["body", "submitted_at"])
    assert "outcome" not in r.text


def test_the_future_is_measured_on_the_service_clock_with_five_minutes_of_skew(
    client: TestClient, api_app: FastAPI, demo_samples: dict, store: DecisionStore,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    """With the clock pinned: 4 min 59 s ahead is decided, 5 min 1 s ahead is refused."""
    now = dt.datetime(2025, 6, 1, 2, 0, tzinfo=dt.UTC)
    monkeypatch.setattr(api_app.state.service, "clock", lambda: now)
    ahead_ok, ahead_bad = _fresh(demo_samples), _fresh(demo_samples)
    ahead_ok["submitted_at"] = (now + dt.timedelta(minutes=4, seconds=59)).isoformat()
    ahead_bad["submitted_at"] = (now + dt.timedelta(minutes=5, seconds=1)).isoformat()
    count, bad_key = store.count(), _key()
    refused = _post_raw(client, json.dumps(ahead_bad).encode(), key=bad_key)
    _assert_refused(refused, 422, "SUBMITTED_IN_FUTURE")
    assert (count, None) == (store.count(), store.find_by_key(bad_key))
    decided = _post_raw(client, json.dumps(ahead_ok).encode(), key=_key())
    assert 201 == decided.status_code, decided.text
    assert count + 1 == store.count()


@pytest.mark.parametrize(
    ("sample", "before", "first_day"),
    [
        (SAMPLE, "2015-12-31T23:59:00+08:00", "2016-01-01"),
        ("approved-old-age-90.json", "2023-12-31T15:59:00Z", "2024-01-01"),
    ],
)
def test_an_application_before_the_service_existed_is_refused(
    client: TestClient, demo_samples: dict, nothing_stored: list[str],
    sample: str, before: str, first_day: str,
) -> None:  # fmt: skip
    """The day before the first version took effect (in Beijing): 422 SUBMITTED_BEFORE_SERVICE."""
    body = _fresh(demo_samples, sample)
    body["submitted_at"] = before
    r = _refused_post(client, nothing_stored, json.dumps(body).encode())
    error = _assert_refused(r, 422, "SUBMITTED_BEFORE_SERVICE", loc=["body", "submitted_at"])
    assert first_day in error["message_zh"] and first_day in error["message_en"]


# --- ID numbers, names, form strings ---------------------------------------------------------


@pytest.mark.parametrize(
    "translate",
    [
        pytest.param(lambda s: s[:17].translate(FULL_WIDTH) + s[17], id="full-width"),
        pytest.param(lambda s: s[:17].translate(ARABIC_INDIC) + s[17], id="arabic-indic"),
        pytest.param(
            lambda s: s[:5] + s[5].translate(FULL_WIDTH) + s[6:], id="one-full-width-digit"
        ),
    ],
)
def test_an_id_number_in_digits_other_than_ascii_is_refused(
    client: TestClient, demo_samples: dict, nothing_stored: list[str], translate: Any
) -> None:
    """Full-width (１２３) or Arabic-Indic (٤٤٠) digits before an ASCII check digit: 422 naming id_number."""
    body = _fresh(demo_samples)
    body["applicant"]["id_number"] = translate(body["applicant"]["id_number"])
    r = _refused_post(client, nothing_stored, json.dumps(body, ensure_ascii=False).encode())
    _assert_refused(r, 422, "INVALID_REQUEST", loc=["body", "applicant", "id_number"])


BAD_CHARACTERS = [
    pytest.param("\x00", id="NUL"),
    pytest.param("\x1b[31m", id="ESC"),
    pytest.param("\x7f", id="DEL"),
    pytest.param("\x85", id="C1-NEL"),
    pytest.param("\n", id="newline"),
    pytest.param("\t", id="tab"),
    pytest.param("\u202e", id="RLO"),
    pytest.param("\u202a", id="LRE"),
    pytest.param("\u2066", id="LRI"),
    pytest.param("\u2069", id="PDI"),
    pytest.param("\u200e", id="LRM"),
    pytest.param("\u200f", id="RLM"),
    pytest.param("\u061c", id="ALM"),
    pytest.param("\u200b", id="zero-width-space"),
    pytest.param("\ufeff", id="BOM"),
    pytest.param("\u2028", id="line-separator"),
    pytest.param("\uffff", id="noncharacter"),
]


@pytest.mark.parametrize("bad", BAD_CHARACTERS)
def test_a_name_with_control_or_bidi_characters_is_refused(
    client: TestClient, demo_samples: dict, nothing_stored: list[str], bad: str
) -> None:
    """A NUL, control, bidi or invisible character in applicant.name: 422 naming the field."""
    body = _fresh(demo_samples)
    body["applicant"]["name"] = "陈" + bad + "思远"
    r = _refused_post(client, nothing_stored, json.dumps(body).encode())
    error = _assert_refused(r, 422, "INVALID_REQUEST", loc=["body", "applicant", "name"])
    assert f"U+{ord(bad[0]):04X}" in json.dumps(error["fields"])


@pytest.mark.parametrize("bad", BAD_CHARACTERS)
def test_a_form_string_with_control_or_bidi_characters_is_refused(
    client: TestClient, demo_samples: dict, nothing_stored: list[str], bad: str
) -> None:
    """The same characters in a string form field: 422 INVALID_FORM naming the field."""
    body = _fresh(demo_samples)
    body["form"]["employer_name"] = "深圳市" + bad + "有限公司"
    r = _refused_post(client, nothing_stored, json.dumps(body).encode())
    _assert_refused(r, 422, "INVALID_FORM", loc=["body", "form", "employer_name"])


def test_names_in_any_script_with_rare_characters_are_accepted(
    client: TestClient, demo_samples: dict, store: DecisionStore
) -> None:
    """Rare characters (variation selectors, extension B, private use), accents, spaces: decided."""
    for name in ("𠀋\U000e0100思远", "陈\ue000", "Zoë O'Brien-Smith", "阿卜杜拉·买买提"):
        body = _fresh(demo_samples)
        body["applicant"]["name"] = name
        count = store.count()
        r = _post_raw(client, json.dumps(body).encode(), key=_key())
        assert 201 == r.status_code, (name, r.text)
        assert count + 1 == store.count()


# --- tokens, keys, routes -------------------------------------------------------------------


@pytest.fixture(scope="module")
def decided(client: TestClient, demo_samples: dict) -> dict[str, Any]:
    """One stored decision, as answered."""
    body = copy.deepcopy(demo_samples[SAMPLE].body)
    body["application_id"] = f"H-{uuid.uuid4().hex[:16]}"
    r = client.post("/v1/decisions", json=body, headers={"Idempotency-Key": _key()})
    assert 201 == r.status_code
    answer: dict[str, Any] = r.json()
    return answer


@pytest.mark.parametrize(
    "path",
    ["/v1/decisions/{id}", "/v1/decisions/{id}/explanation", "/v1/decisions/{id}/explanation.txt",
     "/v1/decisions/{id}/cases", "/v1/decisions/{id}/receipt"],
)  # fmt: skip
def test_a_non_ascii_token_is_403_not_500(
    client: TestClient, decided: dict[str, Any], path: str
) -> None:
    """A token with non-ASCII characters, in the query or the header: 403 ACCESS_TOKEN_INVALID."""
    url = path.format(id=decided["decision_id"])
    token = decided["access_token"]
    for params, headers in (
        ({"token": token[:-1] + "令"}, {}),
        ({"token": "令牌\u202e"}, {}),
        ({}, {"X-Access-Token": (token[:-2] + "é").encode("utf-8")}),
        ({}, {"X-Access-Token": b"\xff\xfe"}),
    ):
        r = client.get(url, params=params, headers=headers)
        _assert_refused(r, 403, "ACCESS_TOKEN_INVALID")


def test_a_non_ascii_token_on_the_page_is_the_same_404(
    client: TestClient, decided: dict[str, Any]
) -> None:
    """The citizen page answers a non-ASCII token as any wrong one: 404, never 500."""
    r = client.get(f"/explain/{decided['decision_id']}", params={"token": "令牌"})
    assert 404 == r.status_code


@pytest.mark.parametrize(
    "credential",
    [
        b"Bearer mpk_\xe4\xbb\xa4_secret",
        b"Bearer mpk_abc_\xe7\xa7\x98",
        b"Bearer \xff\xfe",
        b"Bearer eyJ\xc3\xa9.x.y",
    ],
)
def test_a_non_ascii_bearer_key_is_401_not_500(
    client: TestClient, demo_samples: dict, nothing_stored: list[str], credential: bytes
) -> None:
    """A bearer credential with non-ASCII bytes: 401 CREDENTIAL_INVALID, nothing decided."""
    key = _key()
    nothing_stored.append(key)
    r = client.post(
        "/v1/decisions",
        json=_fresh(demo_samples),
        headers={"Idempotency-Key": key, "Authorization": credential},  # type: ignore[dict-item]
    )
    _assert_refused(r, 401, "CREDENTIAL_INVALID")


@pytest.mark.parametrize(
    "key",
    [
        pytest.param(b"k" * 201, id="201-characters"),
        pytest.param(b"my key", id="space"),
        pytest.param("键".encode(), id="non-ascii"),
        pytest.param(b"\xff", id="latin-1-byte"),
        pytest.param(b"", id="empty"),
    ],
)
def test_a_bad_idempotency_key_is_400(
    client: TestClient, demo_samples: dict, store: DecisionStore, key: bytes
) -> None:
    """An Idempotency-Key too long, with spaces or non-ASCII: 400 IDEMPOTENCY_KEY_INVALID."""
    count = store.count()
    r = client.post(
        "/v1/decisions",
        json=_fresh(demo_samples),
        headers={"Idempotency-Key": key},  # type: ignore[dict-item]
    )
    _assert_refused(r, 400, "IDEMPOTENCY_KEY_INVALID", loc=["header", "idempotency-key"])
    assert count == store.count()


def test_an_idempotency_key_of_200_visible_characters_is_accepted(
    client: TestClient, demo_samples: dict
) -> None:
    """The longest key allowed, with punctuation, works (and a retry replays)."""
    key = ("k!~:/" * 40)[:200]
    first = client.post(
        "/v1/decisions", json=(body := _fresh(demo_samples)), headers={"Idempotency-Key": key}
    )
    again = client.post("/v1/decisions", json=body, headers={"Idempotency-Key": key})
    assert (201, 201) == (first.status_code, again.status_code)
    assert "true" == again.headers["Idempotent-Replayed"]


def test_an_unknown_route_and_a_wrong_method_answer_in_the_error_shape(client: TestClient) -> None:
    """404 for an unknown route, 405 (with Allow) for a wrong method: {"error": …}, not {"detail": …}."""
    _assert_refused(client.get("/v1/no-such-thing"), 404, "NOT_FOUND")
    r = client.delete("/v1/decisions")
    _assert_refused(r, 405, "METHOD_NOT_ALLOWED")
    assert "POST" in r.headers["allow"]


# --- objections and reviewers ------------------------------------------------------------------


@pytest.mark.parametrize("bad", ["\x00", "\u202e", "\x1b", "\ud800"])
def test_an_objection_with_control_or_bidi_characters_opens_no_case(
    client: TestClient, api_app: FastAPI, decided: dict[str, Any], bad: str
) -> None:
    """An objection statement with NUL, a bidi override or ESC: 422 (a lone surrogate: 400); no case."""
    decision_id = decided["decision_id"]
    reviews = api_app.state.ctx.reviews
    before = len(reviews.cases_of(decision_id))
    content = json.dumps({"kind": "objection", "reason": f"我不同意{bad}因为"}).encode()
    r = client.post(
        f"/v1/decisions/{decision_id}/objections",
        content=content,
        headers={"X-Access-Token": decided["access_token"], "Content-Type": "application/json"},
    )
    if bad == "\ud800":
        _assert_refused(r, 400, "MALFORMED_JSON", kind="json_lone_surrogate")
    else:
        _assert_refused(r, 422, "INVALID_REQUEST", loc=["body", "reason"])
    assert before == len(reviews.cases_of(decision_id))


def test_an_objection_on_several_lines_is_accepted(client: TestClient, demo_samples: dict) -> None:
    """Line ends and tabs are fine in a statement; \\r\\n is kept as \\n."""
    decided = client.post(
        "/v1/decisions", json=_fresh(demo_samples), headers={"Idempotency-Key": _key()}
    ).json()
    r = client.post(
        f"/v1/decisions/{decided['decision_id']}/objections",
        json={"kind": "objection", "reason": "第一点：\t学历\r\n第二点：单位"},
        headers={"X-Access-Token": decided["access_token"]},
    )
    assert 201 == r.status_code, r.text


def test_the_page_form_with_a_bidi_override_opens_no_case(
    client: TestClient, api_app: FastAPI, demo_samples: dict
) -> None:
    """The citizen page's form still takes form encoding; a statement with U+202E comes back invalid."""
    decided = client.post(
        "/v1/decisions", json=_fresh(demo_samples), headers={"Idempotency-Key": _key()}
    ).json()
    decision_id, token = decided["decision_id"], decided["access_token"]
    url = f"/explain/{decision_id}/requests?token={token}"
    refused = client.post(
        url, data={"kind": "objection", "reason": "理由\u202e"}, follow_redirects=False
    )
    assert 303 == refused.status_code
    assert "sent=invalid" in refused.headers["location"]
    assert [] == list(api_app.state.ctx.reviews.cases_of(decision_id))
    accepted = client.post(
        url, data={"kind": "objection", "reason": "理由\r\n第二行"}, follow_redirects=False
    )
    assert "sent=1" in accepted.headers["location"]
    (case,) = api_app.state.ctx.reviews.cases_of(decision_id)
    assert "理由\n第二行" == case.statement


def test_a_reviewer_reason_with_control_characters_records_nothing(
    client: TestClient, api_app: FastAPI, demo_samples: dict, role_keys: dict[str, str],
    store: DecisionStore,
) -> None:  # fmt: skip
    """A resolution whose reason holds NUL or a bidi override: 422, the case stays claimed, no record."""
    decided = client.post(
        "/v1/decisions", json=_fresh(demo_samples), headers={"Idempotency-Key": _key()}
    ).json()
    case = client.post(
        f"/v1/decisions/{decided['decision_id']}/objections",
        json={"kind": "human_decision", "reason": "请人工决定"},
        headers={"X-Access-Token": decided["access_token"]},
    ).json()
    reviewer = bearer(role_keys["reviewer"])
    assert (
        200
        == client.post(f"/v1/review/cases/{case['case_id']}/claim", headers=reviewer).status_code
    )
    count = store.count()
    for reason in ({"reason_zh": "同意\x00"}, {"reason_zh": "同意", "reason_en": "ok\u202e"}):
        r = client.post(
            f"/v1/review/cases/{case['case_id']}/resolve",
            json={"outcome": "APPROVED", **reason},
            headers=reviewer,
        )
        _assert_refused(r, 422, "INVALID_REQUEST")
    assert count == store.count()
    assert "in_review" == api_app.state.ctx.reviews.get(case["case_id"]).status


# --- the OpenAPI document --------------------------------------------------------------------


def test_every_error_status_is_documented_with_the_error_body(client: TestClient) -> None:
    """Every 4xx/5xx of every operation is ErrorBody; JSON bodies document 400, 413, 415 and 422."""
    doc = client.get("/openapi.json").json()
    assert "HTTPValidationError" not in json.dumps(doc)
    for path, item in doc["paths"].items():
        for method, op in item.items():
            for status, response in op["responses"].items():
                content = response.get("content", {})
                if status[0] in "45" and "text/html" not in content:  # pages answer 404 in HTML
                    where = (method, path, status)
                    assert ["application/json"] == list(content), where
                    schema = content["application/json"]["schema"]
                    # A probe's "not ready" lists its checks (orchestrators read the status).
                    body = "ReadinessBody" if (path, status) == ("/readyz", "503") else "ErrorBody"
                    assert {"$ref": f"#/components/schemas/{body}"} == schema, where
            if "application/json" in op.get("requestBody", {}).get("content", {}):
                assert {"400", "413", "415", "422"} <= set(op["responses"]), (method, path)


# --- control characters in the address ----------------------------------------------------------


@pytest.fixture
def postgres_client(
    postgres_url: str, demo_dir: Any, rulesets_dir: Any
) -> Iterator[tuple[TestClient, dict[str, str]]]:
    """The service on PostgreSQL (which refuses to compare a text holding NUL), with staff keys."""
    from support import TEST_SECRET_KEY, signing_key_path

    from api.app import create_app
    from api.auth import KeyStore
    from api.settings import Settings

    app = create_app(
        Settings(
            data_dir=demo_dir,
            rulesets_dir=rulesets_dir,
            database_url=postgres_url,
            pseudonym_key=TEST_SECRET_KEY,
            signing_key_file=signing_key_path(),
        )
    )
    keys = KeyStore(app.state.ctx.store.engine)
    made = {role: keys.create(role)[1] for role in ("platform", "reviewer", "auditor", "policy")}
    try:
        with TestClient(app) as c:
            yield c, made
    finally:
        app.state.service.close()
        app.state.service.store.dispose()


@pytest.mark.postgres
@pytest.mark.parametrize(
    ("method", "path", "role", "where"),
    [
        ("GET", "/v1/review/cases/a%00b", "reviewer", ["path", "case_id"]),
        ("POST", "/v1/review/cases/a%00b/claim", "reviewer", ["path", "case_id"]),
        ("GET", "/v1/review/cases?service=a%00b", "reviewer", ["query", "service"]),
        ("GET", "/v1/audit/replay/a%1bb", "auditor", ["path", "decision_id"]),
        ("GET", "/v1/rulesets/a%00b/2016", "policy", ["path", "service"]),
        ("GET", "/v1/decisions/a%00b?token=x", "platform", ["path", "decision_id"]),
    ],
)
def test_a_control_character_in_the_address_is_422_not_500(
    postgres_client: tuple[TestClient, dict[str, str]],
    method: str,
    path: str,
    role: str,
    where: list[str],
) -> None:
    """NUL or ESC in a path or query parameter (a 500 on PostgreSQL): 422 naming the parameter."""
    client, keys = postgres_client
    r = client.request(method, path, headers=bearer(keys[role]))
    _assert_refused(r, 422, "INVALID_REQUEST", loc=where, kind="control_character")


def test_the_page_answers_a_control_character_in_its_address_with_its_404(
    client: TestClient,
) -> None:
    """The citizen's page and its form keep one answer for every wrong address: the HTML 404."""
    for r in (
        client.get("/explain/a%00b", params={"token": "x"}),
        client.post("/explain/a%00b/requests?token=x", data={"kind": "objection", "reason": "r"}),
    ):
        assert (404, "text/html") == (r.status_code, r.headers["content-type"].split(";")[0])


def test_an_offset_past_any_database_integer_is_422_not_500(
    client: TestClient, role_keys: dict[str, str]
) -> None:
    """The review queue's offset of 30 digits (schemathesis found a 500): 422 naming offset."""
    r = client.get(
        "/v1/review/cases",
        params={"offset": "238273067016971677955889561600"},
        headers=bearer(role_keys["reviewer"]),
    )
    _assert_refused(r, 422, "INVALID_REQUEST", loc=["query", "offset"])


def test_an_undeclared_query_parameter_is_ignored_even_with_a_control_character(
    client: TestClient, role_keys: dict[str, str]
) -> None:
    """Only the parameters a route declares are checked (a route without any answers no 422)."""
    r = client.get("/v1/rulesets", params={"x": "\x00"}, headers=bearer(role_keys["policy"]))
    assert 200 == r.status_code
