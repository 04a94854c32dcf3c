"""Privacy through the API: no ID number inside identifiers, no contact number in the store,
and logs that mask ID and mobile numbers wherever they stand."""

from __future__ import annotations

import copy
import datetime as dt
import io
import json
import logging
import uuid
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from hypothesis import example, given, settings
from hypothesis import strategies as st

from api.logging import PersonalDataFilter, mask_personal_data, mask_text
from api.service import DecisionService, RequestRejected
from engine.privacy import check_digit, contains_id_number
from explanations import DecisionStore

ID_NUMBER = "44030419910615001" + check_digit("44030419910615001")
"""A valid resident ID number (the check digit is right), of no demo person."""
WRONG_CHECK = ID_NUMBER[:17] + str((int(ID_NUMBER[17]) + 1) % 10)
"""The same digits with a wrong check digit: an ordinary number."""


def _body(demo_samples: dict[str, Any], name: str = "approved-master-2016.json") -> Any:
    body = copy.deepcopy(demo_samples[name].body)
    body["application_id"] = f"P-{uuid.uuid4().hex[:16]}"
    return body


def _post(client: TestClient, body: Any, key: str) -> Any:
    return client.post("/v1/decisions", json=body, headers={"Idempotency-Key": key})


# --- identifiers ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("application_id", "key", "loc"),
    [
        (f"A{ID_NUMBER}", None, ["body", "application_id"]),
        (f"SZ-2026_{WRONG_CHECK}", None, None),
        (None, f"retry-{ID_NUMBER}-1", ["header", "Idempotency-Key"]),
        (None, f"key{WRONG_CHECK}", None),
        (None, "key-11010519491231002x", ["header", "Idempotency-Key"]),
    ],
    ids=[
        "ID after a letter",
        "ID-shaped, wrong check digit",
        "ID in the key",
        "ID-shaped key, wrong check digit",
        "ID ending in a lower-case x",
    ],
)
def test_an_id_number_inside_an_identifier_is_refused_and_nothing_is_stored(
    client: TestClient,
    store: DecisionStore,
    demo_samples: dict[str, Any],
    application_id: str | None,
    key: str | None,
    loc: list[str] | None,
) -> None:
    """A valid ID number anywhere in application_id or the Idempotency-Key: 422
    PERSONAL_DATA_IN_IDENTIFIER naming where, the number not echoed, nothing stored. A number of
    that shape whose check digit is wrong is an ordinary identifier."""
    body = _body(demo_samples)
    if application_id is not None:
        body["application_id"] = application_id
    key = key or f"k-{uuid.uuid4().hex}"
    count = store.count()
    r = _post(client, body, key)
    if loc is None:
        assert 201 == r.status_code, r.text
        return
    assert 422 == r.status_code
    error = r.json()["error"]
    assert "PERSONAL_DATA_IN_IDENTIFIER" == error["code"]
    assert error["message_zh"] and error["message_en"]
    assert [loc] == [f["loc"] for f in error["fields"]]
    assert ID_NUMBER not in r.text
    assert count == store.count()
    assert store.find_by_key(key) is None


def test_a_dry_run_refuses_an_id_number_in_the_application_id(
    make_service: Any, demo_samples: dict[str, Any], request_of: Any
) -> None:
    """``decide_unstored`` (the CLI's dry run) refuses it too."""
    service: DecisionService = make_service(None)
    body = _body(demo_samples)
    body["application_id"] = f"id_{ID_NUMBER}"
    with pytest.raises(RequestRejected) as info:
        service.decide_unstored(request_of(body))
    assert "PERSONAL_DATA_IN_IDENTIFIER" == info.value.code


def test_contains_id_number_finds_one_inside_any_token() -> None:
    """After letters, underscores, inside a longer digit run, with a lower-case x; not a wrong
    check digit, an impossible birth date, or full-width digits."""
    with_x = "11010519491231002X"
    assert check_digit(with_x[:17]) == "X"
    for text in (
        ID_NUMBER,
        f"A{ID_NUMBER}",
        f"app_{ID_NUMBER}_2",
        f"9{ID_NUMBER}9",
        with_x.lower(),
        f"id={with_x}&a=1",
    ):
        assert contains_id_number(text), text
    for text in (
        WRONG_CHECK,
        "440304199113150015",  # month 13
        "".join(chr(ord(c) + 0xFEE0) for c in ID_NUMBER),
        "BULK-0000001",
    ):
        assert not contains_id_number(text), text


# --- the stored record ----------------------------------------------------------------------


def test_the_stored_record_holds_no_contact_number_and_names_what_it_left_out(
    client: TestClient, store: DecisionStore, demo_samples: dict[str, Any]
) -> None:
    """The row as stored has neither the phone nor the birth date; the explanation names the
    omitted fields."""
    body = _body(demo_samples)
    body["form"]["phone"] = "13912345678"
    r = _post(client, body, f"k-{uuid.uuid4().hex}")
    assert 201 == r.status_code, r.text
    decision_id = r.json()["decision_id"]
    with store.engine.connect() as conn:
        stored = conn.execute(
            sa.text("SELECT record_json FROM explanation_records WHERE decision_id = :d"),
            {"d": decision_id},
        ).scalar_one()
    assert "13912345678" not in stored
    assert '"birth_date":"' not in stored
    explanation = client.get(
        r.json()["explanation_url"], headers={"X-Access-Token": r.json()["access_token"]}
    ).json()
    record = explanation["record"]
    assert "miaopi.explanation-record/4" == record["schema_version"]
    assert ["form.employer_name", "form.phone"] == record["omitted_fields"]
    assert body["form"]["employer_name"] not in stored
    assert "form.certificate_number" in record["masked_fields"]


# --- logs -----------------------------------------------------------------------------------


@st.composite
def id_numbers(draw: st.DrawFn) -> str:
    """Valid 18-character resident ID numbers (the check digit computed; X in either case)."""
    region = draw(st.integers(110000, 659999))
    born = draw(st.dates(dt.date(1900, 1, 1), dt.date(2025, 12, 31)))
    sequence = draw(st.integers(0, 999))
    first17 = f"{region}{born:%Y%m%d}{sequence:03d}"
    last = check_digit(first17)
    return first17 + (last.lower() if last == "X" and draw(st.booleans()) else last)


@st.composite
def old_id_numbers(draw: st.DrawFn) -> str:
    """15-digit first-generation ID numbers: region, YYMMDD, 3-digit sequence."""
    region = draw(st.integers(110000, 659999))
    born = draw(st.dates(dt.date(1900, 1, 1), dt.date(1999, 12, 31)))
    return f"{region}{born:%y%m%d}{draw(st.integers(0, 999)):03d}"


mobiles = st.from_regex(r"\A1[3-9][0-9]{9}\Z", fullmatch=True)
surroundings = st.text(
    alphabet=st.sampled_from("abcXYZ_x-=/?&.:;,+ 0123456789申请人身份证号码（）\n\t\"'"),
    max_size=20,
)


@given(
    number=st.one_of(id_numbers(), old_id_numbers(), mobiles),
    before=surroundings,
    after=surroundings,
)
@example(number="440304199106150010", before="A", after="")
@example(number="11010519491231002x", before="id=", after="&token=1")
@example(number="13800138000", before="+86", after="")
@example(number="440304199106150010", before="/explain/", after="?lang=en")
@settings(max_examples=500, deadline=None)
def test_no_id_or_mobile_number_survives_the_log_processor(
    number: str, before: str, after: str
) -> None:
    """Whatever text surrounds it (letters, digits, punctuation, Chinese), nested anywhere in
    an event, the number does not come out of the processor."""
    event = {
        "event": f"{before}{number}{after}",
        "path": f"/v1/decisions/{before}{number}",
        "exception": f"ValueError: bad {before}{number}{after}",
        "items": [{"note": number + after}],
    }
    out = json.dumps(dict(mask_personal_data(None, "info", event)), ensure_ascii=False)
    assert number.upper() not in out.upper()


@given(
    amount=st.decimals(min_value=0, max_value=9_999_999_999, places=2, allow_nan=False),
    day=st.dates(dt.date(1900, 1, 1), dt.date(2100, 12, 31)),
    certificate=st.from_regex(r"\A[0-9]{12}\Z", fullmatch=True),
    count=st.integers(0, 10**10),
)
@settings(max_examples=300, deadline=None)
def test_ordinary_numbers_are_left_alone_or_barely_touched(
    amount: object, day: dt.date, certificate: str, count: int
) -> None:
    """Amounts, dates, times and counts come out unchanged; a 12-digit certificate number too,
    unless a mobile number's 11 digits sit inside it: then 4 of its digits are starred."""
    for text in (
        f"{amount}元",
        day.isoformat(),
        f"{day:%Y%m%d}",
        f"{day.isoformat()}T10:00:00+08:00",
    ):
        assert text == mask_text(text)
    assert count == mask_personal_data(None, "info", {"n": count})["n"]
    masked = mask_text(f"cert {certificate}.")
    changed = [(a, b) for a, b in zip(f"cert {certificate}.", masked, strict=True) if a != b]
    assert len(changed) in (0, 4)
    assert all(b == "*" for _, b in changed)


def test_an_integer_holding_a_mobile_number_is_masked() -> None:
    """A number logged as an integer is masked as text would be."""
    assert "138****8000" == mask_personal_data(None, "info", {"phone": 13800138000})["phone"]


def test_the_service_s_own_ids_and_digests_are_left_alone() -> None:
    """Digests and the request id the service makes hold long digit runs; they are not
    personal and stay as they are."""
    event = {
        "record_hash": "sha256:"
        + "1234567890123456789012345678901234567890123456789012345678901234",
        "request_id": "0123456789abcdef0123456789012345",
    }
    assert event == dict(mask_personal_data(None, "info", dict(event)))
    sent = {"request_id": f"client-{ID_NUMBER}"}  # a request id the client sent is masked
    assert ID_NUMBER not in json.dumps(dict(mask_personal_data(None, "info", sent)))


def test_standard_library_log_records_are_masked_too() -> None:
    """uvicorn's messages, arguments and tracebacks pass the same masking."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(PersonalDataFilter())
    logger = logging.getLogger("tests.privacy.stdlib")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.error("GET /explain/%s?tel=%s", f"x{ID_NUMBER}", "13800138000")
        try:
            raise ValueError(f"no record for id_{ID_NUMBER}")
        except ValueError:
            logger.exception("failed")
    finally:
        logger.removeHandler(handler)
    text = stream.getvalue()
    assert "Traceback" in text and "ValueError" in text
    assert ID_NUMBER not in text
    assert "13800138000" not in text
    assert "138****8000" in text
