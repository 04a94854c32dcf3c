"""The citizen's explanation page, on records of the shipped samples decided in process."""

from __future__ import annotations

import datetime as dt
import os
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

import pytest

from engine import Outcome
from explanations.guide import ServiceGuide
from explanations.page import ReviewView, render_page
from explanations.record import ExplanationRecordV1
from explanations.render import format_time

DECIDED_AT = dt.datetime(2026, 3, 6, 2, 0, tzinfo=dt.UTC)  # as conftest.decide's clock
"""A Friday, 10:00 in Beijing: every record below is decided on 2026-03-06."""
TOKEN = "tok-3f9c"
CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff]")
ENGLISH_SENTENCE = re.compile(r"\b[A-Za-z]{2,}(?:[ ,]+[A-Za-z]{2,}){2,}")
RAW = re.compile(
    r"registry:|\b[a-z]+(?:_[a-z0-9]+)+\b|\b[a-z]+\.[a-z_]+\b|=\s*(?:是|否)|\bTrue\b|\bFalse\b"
    r"|（无记录）|\(no record\)"
)


@dataclass(frozen=True)
class Change:
    """A counterfactual as the counterfactual module makes them (duck-typed here)."""

    criterion: str
    text_zh: str
    text_en: str
    actionable: bool
    table_row: int | None = None


class Parsed(HTMLParser):
    """The page's visible text with the language of each piece, and every tag's attributes."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.texts: list[tuple[str, str, bool]] = []
        """(text, language, inside the verification footer)."""
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self._stack: list[tuple[str, str]] = []
        self._in_style = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        self.tags.append((tag, a))
        if tag in {"meta", "br", "input", "link", "img", "hr"}:
            return
        lang = a.get("lang") or (self._stack[-1][1] if self._stack else "")
        self._stack.append((tag, lang or ""))
        self._in_style = tag == "style"

    def handle_endtag(self, tag: str) -> None:
        while self._stack:
            if self._stack.pop()[0] == tag:
                break
        self._in_style = False

    def handle_data(self, data: str) -> None:
        if self._in_style or not data.strip():
            return
        lang = self._stack[-1][1] if self._stack else ""
        footer = any(t == "footer" for t, _ in self._stack)
        self.texts.append((data, lang, footer))

    def text(self, *, lang: str | None = None, footer: bool = True) -> str:
        return "\n".join(
            t for t, lg, f in self.texts if (lang is None or lg == lang) and (footer or not f)
        )


def parse(html: str) -> Parsed:
    page = Parsed()
    page.feed(html)
    page.close()
    return page


@pytest.fixture
def page(
    decide: Callable[[str], ExplanationRecordV1], guides: dict[str, ServiceGuide]
) -> Callable[..., str]:
    """The page of a sample: ``page(name, lang, **options)``."""

    def make(name: str, lang: str = "zh", **options: object) -> str:
        record = decide(name)
        return render_page(
            record,
            lang=lang,
            token=options.pop("token", TOKEN),  # type: ignore[arg-type]
            guide=options.pop("guide", guides[record.service]),  # type: ignore[arg-type]
            **options,  # type: ignore[arg-type]
        )

    return make


# --- per outcome ------------------------------------------------------------------------


def test_a_rejected_page_explains_each_unmet_condition_and_dates_every_remedy(
    page: Callable[..., str], decide: Callable[[str], ExplanationRecordV1]
) -> None:
    """Each failed criterion's title, legal citation, registry (Chinese name and holder) with the
    time of the query, and the counterfactual given, marked changeable or not; then objection,
    reconsideration (+60 days) and lawsuit (+6 months) with their bodies."""
    record = decide("rejected-many.json")
    changes = [
        Change("C2", "申请日须未满30周岁", "being under 30", False),
        Change("C7", "在深圳不拥有住房", "owning no home in Shenzhen", True),
    ]
    html = page("rejected-many.json", counterfactuals=changes)
    text = parse(html).text()
    cites = {b.id: b.citation() for b in record.legal_basis}
    for c in (c for c in record.criteria if c.status == "FAIL"):
        assert c.title_zh in text
        for basis in c.legal_basis:
            assert cites[basis] in text
    property_item = next(e for e in record.evidence if e.source == "property")
    assert property_item.retrieved_at is not None
    assert (
        f"数据来源：市不动产登记中心的不动产登记库，{format_time(property_item.retrieved_at)}核验"
        in text
    )
    assert "数据来源：教育部学历证书电子注册系统（学信网）的学历库" in text
    assert "拥有住房" in text
    assert re.search(r'申请日须未满30周岁\s*<span class="tag tag-no">无法改变</span>', html)
    assert re.search(
        r'在深圳不拥有住房\s*<span class="tag tag-yes">可通过自身努力改变</span>', html
    )
    assert 'datetime="2026-03-21"' in html  # objection: 15 days
    assert 'datetime="2026-05-05"' in html and "2026年5月5日" in text  # reconsideration: 60 days
    assert 'datetime="2026-09-06"' in html and "2026年9月6日" in text  # litigation: 6 months
    assert "深圳市人民政府" in text and "深圳市有管辖权的人民法院" in text
    assert "《中华人民共和国行政复议法》（2023年修订）第二十条" in text
    assert "《中华人民共和国行政诉讼法》第四十六条" in text
    assert "不予批准" in text


def test_a_referred_page_says_who_reviews_by_when_and_offers_no_appeal(
    page: Callable[..., str],
) -> None:
    """The reviewing bureau, 10 working days to 2026-03-20, what to prepare; the missing birth
    date in words; neither reconsideration nor litigation; no request form."""
    html = page("referred-no-population.json")
    text = parse(html).text()
    assert "审核机关" in text and "深圳市住房和建设局" in text
    assert 'datetime="2026-03-20"' in html
    assert "10个工作日内（2026年3月20日前，遇法定节假日顺延）" in text
    assert "毕业证书、学位证书原件（学历信息需核实时）" in text
    assert "未能从人口库取得出生日期" in text
    assert "行政复议" not in html and "行政诉讼" not in html
    assert "population.birth_date" not in html
    assert "<form" not in html
    assert "转人工审核" in text and "这不是最终决定" in text


def test_the_english_referred_page_says_the_same_in_english(page: Callable[..., str]) -> None:
    """The missing birth date, the reviewer and the due date; no appeal routes."""
    text = parse(page("referred-old-age-no-population.json", "en")).text()
    assert "The birth date could not be obtained from the Population registry" in text
    assert "within 15 working days (by 27 March 2026" in text
    assert "reconsideration" not in text.lower() and "lawsuit" not in text.lower()


def test_an_approved_page_shows_the_amount_and_how_it_is_paid(
    page: Callable[..., str], guides: dict[str, ServiceGuide]
) -> None:
    """The allowance with its unit, the guide's payment text, the contact, and a request form
    offering only a decision by a person."""
    html = page("approved-maternity-standard.json")
    parsed = parse(html)
    text = parsed.text()
    payment = guides["maternity-allowance"].payment
    assert payment is not None
    assert "生育津贴金额" in text and "38,711.63元" in text
    assert payment.when.zh in text and payment.how.zh in text
    assert "深圳市社会保险基金管理局" in text and "0755-12345" in text
    kinds = [a["value"] for t, a in parsed.tags if t == "input" and a.get("name") == "kind"]
    assert ["human_decision"] == kinds
    assert "《中华人民共和国个人信息保护法》第二十四条" in text
    assert "行政复议" not in html


def test_the_form_posts_an_objection_or_a_request_to_the_decisions_address(
    page: Callable[..., str], decide: Callable[[str], ExplanationRecordV1]
) -> None:
    """POST, urlencoded, to {base}/explain/{id}/requests?token=…&lang=…; kind and reason ≤ 2000."""
    record = decide("rejected-old-age-79.json")
    tags = parse(page("rejected-old-age-79.json", "en", base_path="/citizen")).tags
    form = next(a for t, a in tags if t == "form")
    assert (
        "post",
        "application/x-www-form-urlencoded",
        f"/citizen/explain/{record.decision_id}/requests?token={TOKEN}&lang=en",
    ) == (form["method"], form["enctype"], form["action"])
    kinds = [a["value"] for t, a in tags if t == "input" and a.get("name") == "kind"]
    assert ["objection", "human_decision"] == kinds
    area = next(a for t, a in tags if t == "textarea")
    assert ("reason", "2000") == (area["name"], area["maxlength"])


# --- every page -------------------------------------------------------------------------


def test_every_page_is_self_contained_and_names_its_language(
    page: Callable[..., str], demo_samples: dict
) -> None:
    """No stylesheet, script, image, frame, font or import: nothing is fetched. ``<html lang>``
    is zh-CN or en; the switch keeps the token; print hides the switch and the form."""
    assets = re.compile(r"<link|<script|<img|<iframe|<object|<embed|@import|url\(|\ssrc=", re.I)
    for name in demo_samples:
        for lang, tag, other in (("zh", "zh-CN", "en"), ("en", "en", "zh")):
            html = page(name, lang)
            assert not assets.search(html), name
            parsed = parse(html)
            assert ("html", {"lang": tag}) == parsed.tags[0]
            hrefs = [a["href"] for t, a in parsed.tags if t == "a"]
            assert f"?lang={other}&token={TOKEN}" == hrefs[0]
    css = page("rejected-many.json").split("@media print", 1)[1]
    assert ".lang" in css.split("}")[0] and "form" in css.split("}")[0]
    assert "overflow-wrap: anywhere" in page("rejected-many.json")


def test_no_page_shows_raw_identifiers_or_missing_values_as_placeholders(
    page: Callable[..., str], demo_samples: dict
) -> None:
    """Above the verification footer, in both languages: no ``business_registry``,
    ``population.birth_date``, ``registry:``, ``=是``, ``True``, ``（无记录）``."""
    found = {}
    for name in demo_samples:
        for lang in ("zh", "en"):
            body = re.sub(r"https?://\S+", "", parse(page(name, lang)).text(footer=False))
            hits = RAW.findall(body)
            if hits:
                found[f"{name}/{lang}"] = hits
    assert {} == found


def test_chinese_pages_have_no_english_sentence(
    page: Callable[..., str], demo_samples: dict
) -> None:
    """Outside the ``lang="en"`` switch link, no run of three English words."""
    found = {}
    for name in demo_samples:
        hits = ENGLISH_SENTENCE.findall(parse(page(name, "zh")).text(lang="zh-CN"))
        if hits:
            found[name] = hits
    assert {} == found


def test_english_pages_show_chinese_only_for_proper_names_legal_titles_and_recorded_values(
    page: Callable[..., str],
    decide: Callable[[str], ExplanationRecordV1],
    guides: dict[str, ServiceGuide],
    demo_samples: dict,
) -> None:
    """All Chinese on an English page is inside ``lang="zh-CN"`` and is one of: the official
    Chinese names of the authority, the service and the bodies; legal citations; registry
    values or reasons as recorded. No Chinese outcome or explanation text."""
    stray = {}
    unexpected = {}
    for name in demo_samples:
        record = decide(name)
        guide = guides[record.service]
        allowed = ["中文", record.authority_zh, record.service_name_zh]  # 中文: the switch link
        allowed += [b.citation() for b in record.legal_basis]
        allowed += [o.name.zh for o in (guide.review.body, guide.reconsideration, guide.court)]
        allowed += [str(v) for e in record.evidence for v in e.values.values()]
        allowed += [c.reason_en or "" for c in record.criteria]
        allowed += [str(k) for p in record.parameters if isinstance(p.value, dict) for k in p.value]
        parsed = parse(page(name, "en"))
        english = parsed.text(lang="en")
        if CJK.search(english):
            stray[name] = CJK.findall(english)
        for text, lang, _ in parsed.texts:
            if lang == "zh-CN" and CJK.search(text):
                bare = text.strip().strip("（）()")
                if not any(bare in a for a in allowed):
                    unexpected.setdefault(name, []).append(text)
        for word in ("予以批准", "不予批准", "转人工审核", "未能从", "依据", "查到的情况"):
            assert word not in english
    assert {} == stray
    assert {} == unexpected


def test_the_data_use_log_says_when_which_registry_was_asked_what_and_why(
    page: Callable[..., str], decide: Callable[[str], ExplanationRecordV1]
) -> None:
    """One entry per registry: time, holder, registry, 查询/核验, the fields in words, purpose."""
    record = decide("rejected-old-age-79.json")
    text = parse(page("rejected-old-age-79.json")).text()
    for item in record.evidence:
        assert item.retrieved_at is not None
        verb = "核验" if item.mode == "verify" else "查询"
        assert (
            f"为作出本决定，系统于{format_time(item.retrieved_at)}向{item.holder_zh}的{item.source_name_zh}{verb}了"
            in text
        )
    assert "人口库查询了姓名、户籍所在市、户籍所在区、出生日期，用途：" in text
    assert "年满80周岁" in text.split("数据使用记录", 1)[1]


# --- review, receipt, escaping ----------------------------------------------------------


def test_an_open_review_shows_its_status_and_due_date_and_hides_the_form(
    page: Callable[..., str],
) -> None:
    """An objection in review: its case number, status and due date; no second request."""
    review = ReviewView(
        case_id="RC-7",
        kind="objection",
        status="in_review",
        opened_at=DECIDED_AT,
        due_on=dt.date(2026, 3, 27),
    )
    html = page("rejected-old-age-79.json", review=review)
    text = parse(html).text()
    assert "RC-7" in text and "异议复核" in text and "正在审核" in text
    assert 'datetime="2026-03-27"' in html
    assert "<form" not in html


def test_a_resolved_review_links_the_human_decision_and_offers_no_second_review(
    page: Callable[..., str],
) -> None:
    """Resolved: the human outcome in words, the reason and a link to the new decision; no form
    (a person has decided: what remains is reconsideration or a lawsuit)."""
    review = ReviewView(
        case_id="RC-8",
        kind="human_decision",
        status="resolved",
        opened_at=DECIDED_AT,
        due_on=dt.date(2026, 3, 20),
        resolved_at=DECIDED_AT + dt.timedelta(days=3),
        outcome="APPROVED",
        reason="经核实，出生日期登记有误，已更正。",
        human_decision_id="hd-42",
        human_decision_token="tok-hd42",
    )
    html = page(
        "rejected-old-age-79.json", review=review, base_path="/c", notice="已收到<您的>请求"
    )
    parsed = parse(html)
    text = parsed.text()
    assert "已办结" in text and "予以批准" in text and "经核实，出生日期登记有误，已更正。" in text
    assert "/c/v1/decisions/hd-42/receipt?token=tok-hd42" in [
        a["href"] for t, a in parsed.tags if t == "a"
    ]
    assert "<form" not in html
    assert "已收到&lt;您的&gt;请求" in html


def test_text_from_outside_is_escaped(page: Callable[..., str]) -> None:
    """A reviewer's reason or a token with markup never becomes markup."""
    review = ReviewView(
        case_id="<b>x</b>",
        kind="objection",
        status="resolved",
        opened_at=DECIDED_AT,
        due_on=dt.date(2026, 3, 20),
        reason='<script>alert("x")</script>',
    )
    for lang in ("zh", "en"):
        html = page("rejected-many.json", lang, review=review, token='"><script>alert(1)</script>')
        assert "<script" not in html and "<b>x</b>" not in html
        assert "&lt;script&gt;" in html


def test_the_footer_holds_the_hashes_and_the_receipt(
    page: Callable[..., str], decide: Callable[[str], ExplanationRecordV1]
) -> None:
    """Decision id, record hash, ruleset version and hash, the log's tree size and root."""
    record = decide("approved-old-age-86.json")
    receipt = {"leaf_index": 41, "checkpoint": {"size": 42, "root": "ab" * 32}}
    footer = parse(page("approved-old-age-86.json", receipt=receipt)).text(lang="zh-CN")
    footer = footer.split("核验信息", 1)[1]
    for value in (record.decision_id, record.record_hash, record.ruleset_hash, "42", "ab" * 32):
        assert value in footer
    assert f"第{record.ruleset_version}版" in footer


def test_an_unknown_language_is_refused(page: Callable[..., str]) -> None:
    """Only zh (zh-CN) and en."""
    assert '<html lang="zh-CN">' in page("rejected-many.json", "zh-CN")
    with pytest.raises(ValueError, match="lang"):
        page("rejected-many.json", "fr")


# --- in a browser -----------------------------------------------------------------------


@pytest.mark.slow
def test_pages_fit_a_390_pixel_phone_without_sideways_scrolling(
    page: Callable[..., str], tmp_path: Path
) -> None:
    """Headless Chromium at 390 × 844 and at 1280 × 900: the page is never wider than the window."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_path = shutil.which("chromedriver")
    if not chromium or not driver_path:
        if os.environ.get("MIAOPI_REQUIRE_BROWSER") == "1":
            pytest.fail("MIAOPI_REQUIRE_BROWSER=1 but chromium or chromedriver is missing")
        pytest.skip("needs chromium and chromedriver")
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(arg)
    options.binary_location = chromium
    driver = webdriver.Chrome(options=options, service=Service(driver_path))
    widths = {}
    try:
        for name in (
            "rejected-many.json",
            "referred-no-population.json",
            "approved-points-doctor.json",
        ):
            for lang in ("zh", "en"):
                path = tmp_path / f"{name}.{lang}.html"
                path.write_text(page(name, lang), encoding="utf-8")
                for width in (390, 1280):
                    driver.set_window_size(width, 900)
                    driver.get(path.as_uri())
                    client, scroll = driver.execute_script(
                        "return [document.documentElement.clientWidth,"
                        " document.documentElement.scrollWidth]"
                    )
                    widths[(name, lang, width)] = scroll - client
    finally:
        driver.quit()
    assert {k: 0 for k in widths} == widths


def test_outcomes_in_the_samples_cover_all_three(
    decide: Callable[[str], ExplanationRecordV1],
) -> None:
    """The samples used above are an approval, a refusal and a referral."""
    assert [Outcome.APPROVED, Outcome.REJECTED, Outcome.REFERRED] == [
        decide(n).outcome
        for n in (
            "approved-maternity-standard.json",
            "rejected-many.json",
            "referred-no-population.json",
        )
    ]
