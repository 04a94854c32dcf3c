"""Plain-language texts and remedy notices, on records of the shipped samples decided in process."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine import Outcome
from explanations.guide import ServiceGuide
from explanations.record import ExplanationRecordV1, remedy_notice
from explanations.remedy import (
    LITIGATION_BASIS,
    PIPL_BASIS,
    RECONSIDERATION_BASIS,
    add_months,
    add_working_days,
    remedy_for,
)
from explanations.render import render_text

DECIDED_AT = dt.datetime(2026, 3, 6, 2, 0, tzinfo=dt.UTC)  # as conftest.decide's clock
"""A Friday, 10:00 in Beijing: every record below is decided on 2026-03-06."""
DECIDED_ON = dt.date(2026, 3, 6)


@dataclass(frozen=True)
class Change:
    """A counterfactual as the counterfactual module makes them (duck-typed here)."""

    criterion: str
    text_zh: str
    text_en: str
    actionable: bool
    table_row: int | None = None


@dataclass(frozen=True)
class Case:
    """A review case as the page module's ``ReviewView`` has it."""

    case_id: str
    kind: str
    status: str
    opened_at: dt.datetime
    due_on: dt.date
    resolved_at: dt.datetime | None = None
    outcome: str | None = None
    reason: str | None = None
    human_decision_id: str | None = None


def _text(
    record: ExplanationRecordV1, guides: dict[str, ServiceGuide], lang: str, **kw: object
) -> str:
    return render_text(record, lang=lang, guide=guides[record.service], **kw)  # type: ignore[arg-type]


RAW = re.compile(
    r"registry:|\b[a-z]+(?:_[a-z0-9]+)+\b|\b[a-z]+\.[a-z_]+\b|=\s*(?:是|否)|\bTrue\b|\bFalse\b"
    r"|（无记录）|\(no record\)|sha256"
)


def _body(text: str) -> str:
    """The text without its last (verification) line and without web addresses."""
    return re.sub(r"https?://\S+", "", "\n".join(text.splitlines()[:-1]))


# --- remedy notices ---------------------------------------------------------------------


def test_a_refusal_offers_objection_reconsideration_and_litigation_dated_from_the_decision_day(
    guides: dict[str, ServiceGuide],
) -> None:
    """15 days to object, 60 days for reconsideration, 6 months for a lawsuit; bodies named."""
    notice = remedy_for(
        Outcome.REJECTED, DECIDED_ON, guides["talent-housing-subsidy"], "深圳市住房和建设局"
    )
    assert [
        ("human_review", dt.date(2026, 3, 21), "深圳市住房和建设局"),
        ("administrative_reconsideration", dt.date(2026, 5, 5), "深圳市人民政府"),
        ("administrative_litigation", dt.date(2026, 9, 6), "深圳市有管辖权的人民法院"),
    ] == [(r.kind, r.deadline, r.body_zh) for r in notice.routes]
    assert RECONSIDERATION_BASIS == notice.routes[1].basis
    assert "（2023年修订）第二十条" in RECONSIDERATION_BASIS
    assert LITIGATION_BASIS == notice.routes[2].basis
    assert notice.referral is None


@pytest.mark.parametrize(
    ("day", "months", "expected"),
    [
        (dt.date(2025, 8, 31), 6, dt.date(2026, 2, 28)),
        (dt.date(2023, 8, 31), 6, dt.date(2024, 2, 29)),
        (dt.date(2026, 3, 31), 6, dt.date(2026, 9, 30)),
        (dt.date(2026, 7, 15), 6, dt.date(2027, 1, 15)),
    ],
)
def test_month_periods_end_on_the_same_day_or_the_last_day_of_a_shorter_month(
    day: dt.date, months: int, expected: dt.date
) -> None:
    """31 August + 6 months is the end of February; otherwise the same day of the month."""
    assert expected == add_months(day, months)
    assert expected == remedy_for(Outcome.REJECTED, day, None, "某局").routes[2].deadline


def test_without_a_guide_the_deadlines_match_the_records_remedy_notice() -> None:
    """The generic notice keeps the record's 15 days / 60 days / 6 months and says who in general."""
    day = dt.date(2025, 12, 31)
    notice = remedy_for(Outcome.REJECTED, day, None, "某市某局")
    recorded = remedy_notice(decided_on=day, authority_zh="某市某局").routes
    assert [(r.kind, r.deadline) for r in recorded] == [
        (r.kind, r.deadline) for r in notice.to_v1().routes
    ]
    assert ["某市某局", "依法负责的行政复议机关", "有管辖权的人民法院"] == [
        r.body_zh for r in notice.routes
    ]


def test_objection_days_from_the_guide_are_working_days(guides: dict[str, ServiceGuide]) -> None:
    """A guide's ``objection_working_days: 5`` from a Friday ends the next Friday."""
    guide = guides["old-age-allowance"]
    review = guide.review.model_copy(update={"objection_working_days": 5})
    notice = remedy_for(
        Outcome.REJECTED, DECIDED_ON, guide.model_copy(update={"review": review}), "广州市民政局"
    )
    assert dt.date(2026, 3, 13) == notice.routes[0].deadline
    assert "5个工作日内" in notice.routes[0].how_zh


def test_a_referral_has_next_steps_and_no_routes_of_appeal(guides: dict[str, ServiceGuide]) -> None:
    """Who reviews, within 10 working days (weekends skipped), what to prepare; nothing to appeal."""
    guide = guides["talent-housing-subsidy"]
    notice = remedy_for(Outcome.REFERRED, DECIDED_ON, guide, "深圳市住房和建设局")
    assert [] == notice.routes
    assert notice.referral is not None
    assert ("深圳市住房和建设局", 10, dt.date(2026, 3, 20)) == (
        notice.referral.body_zh,
        notice.referral.working_days,
        notice.referral.due_on,
    )
    assert [p.zh for p in guide.review.prepare] == notice.referral.prepare_zh
    assert [] == notice.to_v1().routes


def test_an_approval_offers_only_a_decision_by_a_person() -> None:
    """《个人信息保护法》第二十四条: the one route, without a deadline."""
    notice = remedy_for(Outcome.APPROVED, DECIDED_ON, None, "某局")
    assert [("human_decision", None, PIPL_BASIS)] == [
        (r.kind, r.deadline, r.basis) for r in notice.routes
    ]


@given(st.dates(dt.date(2000, 1, 1), dt.date(2100, 1, 1)), st.integers(0, 60))
def test_working_days_skip_weekends_and_count_exactly(day: dt.date, days: int) -> None:
    """The due date is a weekday (unless 0 days) and exactly ``days`` weekdays follow ``day``."""
    due = add_working_days(day, days)
    span = [day + dt.timedelta(n) for n in range(1, (due - day).days + 1)]
    assert days == sum(d.weekday() < 5 for d in span)
    assert days == 0 or due.weekday() < 5


# --- texts ------------------------------------------------------------------------------


def test_a_referral_says_in_words_which_data_is_missing_and_what_happens_next(
    decide: Callable[[str], ExplanationRecordV1], guides: dict[str, ServiceGuide]
) -> None:
    """No population record: the birth date could not be obtained from the population registry;
    the bureau reviews within 10 working days; no reconsideration or lawsuit is offered."""
    record = decide("referred-no-population.json")
    assert Outcome.REFERRED is record.outcome
    zh = _text(record, guides, "zh")
    en = _text(record, guides, "en")
    assert "未能从人口库取得出生日期" in zh
    assert "The birth date could not be obtained from the Population registry" in en
    for text in (zh, en):
        assert "population.birth_date" not in text
        assert "行政复议" not in text and "行政诉讼" not in text
        assert "reconsideration" not in text and "lawsuit" not in text
    assert "深圳市住房和建设局将在10个工作日内（2026年3月20日前，遇法定节假日顺延）" in zh
    assert "within 10 working days (by 20 March 2026" in en
    assert "这不是最终决定" in zh and "not a final decision" in en
    assert "转人工审核" in zh


def test_a_refusal_names_each_unmet_condition_its_basis_the_data_and_the_remedies(
    decide: Callable[[str], ExplanationRecordV1], guides: dict[str, ServiceGuide]
) -> None:
    """rejected-many: three unmet conditions, each with its legal basis and registry; booleans in
    words; the counterfactual given; reconsideration by 2026-05-05, a lawsuit by 2026-09-06."""
    record = decide("rejected-many.json")
    failed = [c for c in record.criteria if c.status == "FAIL"]
    assert ["C2", "C6", "C7"] == [c.id for c in failed]
    change = Change("C7", "在深圳没有自有住房", "owning no home in Shenzhen", False)
    zh = _text(record, guides, "zh", counterfactuals=[change])
    for c in failed:
        assert c.title_zh in zh
    assert "《深圳市人才安居办法》（深圳市人民政府令第273号）第二章 人才住房补贴" in zh
    assert "查到的情况：拥有住房；没有租住公共住房（数据来源：市不动产登记中心的不动产登记库" in zh
    assert "需要改变什么：在深圳没有自有住房（无法改变）" in zh
    assert "申请行政复议（2026年5月5日前）" in zh and "深圳市人民政府" in zh
    assert "提起行政诉讼（2026年9月6日前）" in zh and "深圳市有管辖权的人民法院" in zh
    assert "不予批准" in zh


def test_the_english_text_names_the_authority_and_every_data_source(
    decide: Callable[[str], ExplanationRecordV1], guides: dict[str, ServiceGuide]
) -> None:
    """Authority in English with its Chinese name; each registry and the agency holding it."""
    record = decide("rejected-old-age-79.json")
    en = _text(record, guides, "en")
    assert "Decided by: Guangzhou Municipal Civil Affairs Bureau (广州市民政局)" in en
    for item in record.evidence:
        assert f"the {item.source_name_en} held by the {item.holder_en}" in en
    assert "Outcome: rejected." in en
    assert "不予批准" not in en and "依据" not in en


def test_an_approval_states_the_amount_and_how_it_is_paid(
    decide: Callable[[str], ExplanationRecordV1], guides: dict[str, ServiceGuide]
) -> None:
    """The maternity allowance with its unit, and the guide's payment text, in either language."""
    record = decide("approved-maternity-standard.json")
    guide = guides["maternity-allowance"]
    assert guide.payment is not None
    zh = _text(record, guides, "zh")
    en = _text(record, guides, "en")
    assert "生育津贴金额：38,711.63元" in zh and "“生育津贴”申请" in zh
    assert guide.payment.how.zh in zh and guide.payment.when.zh in zh
    assert "Allowance: 38,711.63 yuan" in en and guide.payment.how.en in en
    assert PIPL_BASIS in zh
    assert "行政复议" not in zh


def test_no_text_shows_raw_identifiers_booleans_or_hashes_in_its_body(
    decide: Callable[[str], ExplanationRecordV1],
    guides: dict[str, ServiceGuide],
    demo_samples: dict,
) -> None:
    """Every shipped sample, both languages: no ``population.birth_date``, ``business_registry``,
    ``registry:``, ``=是``, ``True`` or hash above the closing verification line."""
    found = {}
    for name in demo_samples:
        record = decide(name)
        for lang in ("zh", "en"):
            text = _text(record, guides, lang)
            hits = RAW.findall(_body(text))
            if hits:
                found[f"{name}/{lang}"] = hits
            assert text.splitlines()[-1].startswith(("核验信息：", "Verification:"))
    assert {} == found


def test_the_chinese_text_has_no_english_sentence(
    decide: Callable[[str], ExplanationRecordV1],
    guides: dict[str, ServiceGuide],
    demo_samples: dict,
) -> None:
    """One language at a time: no run of three English words in any Chinese text."""
    english = re.compile(r"\b[A-Za-z]{2,}(?:[ ,]+[A-Za-z]{2,}){2,}")
    found = {}
    for name in demo_samples:
        hits = english.findall(_body(_text(decide(name), guides, "zh")))
        if hits:
            found[name] = hits
    assert {} == found


def test_a_review_case_is_reported_with_its_due_date(
    decide: Callable[[str], ExplanationRecordV1], guides: dict[str, ServiceGuide]
) -> None:
    """An open objection says it waits for an officer and when it is due."""
    record = decide("rejected-old-age-79.json")
    case = Case("RC-1", "objection", "open", DECIDED_AT, dt.date(2026, 3, 20))
    zh = _text(record, guides, "zh", review=case)
    assert "异议复核（案件编号RC-1）已受理，等待工作人员处理，预计2026年3月20日前办结" in zh


def test_the_old_call_still_works_and_gives_the_chinese_text(
    decide: Callable[[str], ExplanationRecordV1],
) -> None:
    """``render_text(record)`` without a guide: Chinese, with general bodies for the remedies."""
    record = decide("rejected-old-age-79.json")
    text = render_text(record)
    assert text == render_text(record, lang="zh", guide=None)
    assert "依法负责的行政复议机关" in text and "不予批准" in text
    with pytest.raises(ValueError, match="lang"):
        render_text(record, lang="fr")
