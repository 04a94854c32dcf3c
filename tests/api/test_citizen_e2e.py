"""The citizen's side end to end: a real ``miaopi serve``, real HTTP, a real headless Chromium.

What a person sees is asserted from the rendered DOM (``innerText`` and attributes after
layout), not from the HTML as sent. The browser runs with the network cut (every host name
but 127.0.0.1 fails to resolve, and every proxied request goes to a closed port), so a page
or the API docs that needed anything from outside would visibly fail here.

Full-page screenshots of each outcome at 390 px and 1280 px are written to
``var/screenshots/`` (git-ignored) for review. Browser tests skip when chromium or
chromedriver is missing, and fail instead when ``MIAOPI_REQUIRE_BROWSER=1`` (as CI sets it).
"""

from __future__ import annotations

import base64
import calendar
import datetime as dt
import json
import os
import re
import shutil
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import httpx
import pytest
import yaml
from support import bearer, make_key, server_env

from .conftest import free_port, wait_until_up

if TYPE_CHECKING:
    from selenium.webdriver.chrome.webdriver import WebDriver

SHANGHAI = ZoneInfo("Asia/Shanghai")
WIDTHS = {390: 844, 1280: 900}
"""Viewport width → height: a phone, and a laptop."""
APPROVED, REJECTED, REFERRED = (
    "approved-master-2016.json",
    "rejected-many.json",
    "referred-no-population.json",
)
NETWORK_CUT = (
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
    # Loopback bypasses a proxy by default: only outside requests reach this closed port.
    "--proxy-server=http://127.0.0.1:9",
)


# --- dates as the page states them ------------------------------------------------------


def zh_date(day: dt.date) -> str:
    """``2026年3月1日``, as the page writes a date."""
    return f"{day.year}年{day.month}月{day.day}日"


def plus_months(day: dt.date, months: int) -> dt.date:
    """Same day of the month ``months`` later, or that month's last day."""
    index = day.month - 1 + months
    year, month = day.year + index // 12, index % 12 + 1
    return dt.date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


def plus_working_days(day: dt.date, days: int) -> dt.date:
    """The ``days``-th Monday-to-Friday after ``day``."""
    while days:
        day += dt.timedelta(days=1)
        if day.weekday() < 5:
            days -= 1
    return day


def decided_on(record: dict[str, Any]) -> dt.date:
    """The decision's day in Beijing, from which remedy periods count."""
    return dt.datetime.fromisoformat(record["decided_at"]).astimezone(SHANGHAI).date()


def citation(ref: dict[str, Any]) -> str:
    """《title》（doc number）article: how a legal basis is cited to the citizen."""
    number = f"（{ref['doc_number']}）" if ref.get("doc_number") else ""
    return f"《{ref['title']}》{number}{ref.get('article') or ''}"


# --- a server and its decisions -----------------------------------------------------------


@dataclass(frozen=True)
class Server:
    """A running ``miaopi serve``: its base URL, database and platform credentials."""

    base: str
    database_url: str
    platform: dict[str, str]

    def staff(self, role: str) -> tuple[str, dict[str, str]]:
        """A new API key for ``role``: its subject (``key:<id>``) and its auth header."""
        key = make_key(self.database_url, role)
        return "key:" + key.removeprefix("mpk_").partition("_")[0], bearer(key)


@dataclass(frozen=True)
class Decided:
    """A decision as the platform received it, with its stored explanation record."""

    decision_id: str
    token: str
    response: dict[str, Any]
    record: dict[str, Any]

    def page(self, base: str, lang: str = "zh") -> str:
        return f"{base}/explain/{self.decision_id}?token={self.token}&lang={lang}"


def decide(server: Server, body: dict[str, Any], key: str) -> Decided:
    """POST one application as the platform; read back its record with the citizen's token."""
    with httpx.Client(base_url=server.base, timeout=30) as http:
        posted = http.post(
            "/v1/decisions", json=body, headers={**server.platform, "Idempotency-Key": key}
        )
        assert 201 == posted.status_code, posted.text
        answer = posted.json()
        explained = http.get(
            f"/v1/decisions/{answer['decision_id']}/explanation",
            params={"token": answer["access_token"]},
        )
        assert 200 == explained.status_code, explained.text
    return Decided(
        answer["decision_id"], answer["access_token"], answer, explained.json()["record"]
    )


@pytest.fixture(scope="module")
def live(
    tmp_path_factory: pytest.TempPathFactory,
    repo_root: Path,
    miaopi_bin: Path,
    rulesets_dir: Path,
    demo_dir: Path,
) -> Iterator[Server]:
    """One ``miaopi serve`` for the read-mostly tests of this module (its own SQLite file)."""
    folder = tmp_path_factory.mktemp("e2e-server")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    db_url = f"sqlite:///{folder}/m.db"
    log = folder / "server.log"
    platform = bearer(make_key(db_url, "platform"))
    with log.open("wb") as out:
        server = subprocess.Popen(
            [
                str(miaopi_bin), "serve", "--port", str(port), "--rulesets", str(rulesets_dir),
                "--data-dir", str(demo_dir), "--database-url", db_url,
            ],
            cwd=repo_root,
            env=server_env(db_url),
            stdout=out,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        wait_until_up(base, server, log)
        yield Server(base, db_url, platform)
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()


@pytest.fixture(scope="module")
def decided(live: Server, demo_samples: dict[str, Any]) -> dict[str, Decided]:
    """The approved, rejected and referred samples, each decided once on ``live``."""
    return {
        name: decide(live, demo_samples[name].body, f"e2e-{name}")
        for name in (APPROVED, REJECTED, REFERRED)
    }


@pytest.fixture(scope="module")
def guide(rulesets_dir: Path) -> dict[str, Any]:
    """The talent housing subsidy's service guide, read as plain YAML."""
    text = (rulesets_dir / "talent-housing-subsidy" / "guide.yml").read_text(encoding="utf-8")
    loaded: dict[str, Any] = yaml.safe_load(text)
    return loaded


# --- the browser ----------------------------------------------------------------------------


def browser_binaries() -> tuple[str, str]:
    """chromium and chromedriver; skip without them, or fail with MIAOPI_REQUIRE_BROWSER=1."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if chromium and driver:
        return chromium, driver
    missing = " and ".join(
        n for n, p in (("chromium", chromium), ("chromedriver", driver)) if not p
    )
    message = f"the browser tests need {missing} on PATH (Debian: apt-get install chromium chromium-driver)"
    if os.environ.get("MIAOPI_REQUIRE_BROWSER") == "1":
        pytest.fail(message + " (MIAOPI_REQUIRE_BROWSER=1)", pytrace=False)
    pytest.skip(message + " (set MIAOPI_REQUIRE_BROWSER=1 to fail instead)")


@pytest.fixture(scope="module")
def browser() -> Iterator[WebDriver]:
    """Headless Chromium with the network cut, its requests logged (``performance`` log)."""
    chromium, driver_path = browser_binaries()
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(arg)
    for arg in (*NETWORK_CUT, "--lang=zh-CN", "--hide-scrollbars"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    # Service(path): Selenium uses this chromedriver and never downloads one of its own.
    driver = webdriver.Chrome(options=options, service=Service(driver_path))
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def at_width(driver: WebDriver, width: int, *, height: int | None = None) -> None:
    """Emulate a viewport exactly ``width`` CSS pixels wide (a phone below 600 px)."""
    driver.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {
            "width": width,
            "height": height or WIDTHS.get(width, 900),
            "deviceScaleFactor": 1,
            "mobile": width < 600,
        },
    )


def full_page_screenshot(driver: WebDriver, path: Path, width: int) -> None:
    """The whole page, top to bottom, at ``width``; the viewport is put back afterwards."""
    height = int(driver.execute_script("return document.documentElement.scrollHeight"))
    at_width(driver, width, height=height)
    shot = driver.execute_cdp_cmd("Page.captureScreenshot", {"format": "png"})
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(base64.b64decode(shot["data"]))
    at_width(driver, width)


def text_of(driver: WebDriver, selector: str) -> str:
    """The rendered text (``innerText``) of the first element matching ``selector``, or ''."""
    text: str | None = driver.execute_script(
        "const e = document.querySelector(arguments[0]); return e ? e.innerText : null;",
        selector,
    )
    return text or ""


def wait_for(driver: WebDriver, condition: Callable[[WebDriver], Any], what: str) -> Any:
    from selenium.webdriver.support.wait import WebDriverWait

    return WebDriverWait(driver, 20, poll_frequency=0.1).until(condition, f"waiting for {what}")


def requested_urls(driver: WebDriver) -> list[str]:
    """Every URL the browser asked for since the last call (network log, failures included)."""
    urls = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            urls.append(message["params"]["request"]["url"])
    return urls


# --- 1. the explanation page, per outcome, at two widths -------------------------------------


def check_rejected(driver: WebDriver, record: dict[str, Any]) -> None:
    """Each unmet condition with its citation and what would change; dated remedies."""
    assert "counterfactuals" in record, (
        "the explanation record has no `counterfactuals` field: the counterfactual "
        "integration is not in the stored record yet"
    )
    cites = {ref["id"]: citation(ref) for ref in record["legal_basis"]}
    failed = [c for c in record["criteria"] if c["status"] == "FAIL"]
    assert len(failed) >= 2, [c["id"] for c in failed]
    for c in failed:
        shown = text_of(driver, f"#criterion-{c['id']}")
        assert c["title_zh"] in shown, c["id"]
        assert c["legal_basis"], f"{c['id']} cites no legal basis"
        for ref in c["legal_basis"]:
            assert cites[ref] in shown, (c["id"], cites[ref])
        changes = [cf for cf in record["counterfactuals"] if cf["criterion"] == c["id"]]
        assert changes, f"no counterfactual for {c['id']}"
        for cf in changes:
            tag = "可通过自身努力改变" if cf["actionable"] else "无法改变"
            assert re.search(rf"{re.escape(cf['text_zh'])}\s*{tag}", shown), (c["id"], cf, shown)
    day = decided_on(record)
    routes = {
        route["title"]: route
        for route in driver.execute_script(
            "return [...document.querySelectorAll('#remedy ol.routes > li')].map(li => ({"
            " title: li.querySelector('h3').innerText, text: li.innerText,"
            " dates: [...li.querySelectorAll('time')].map(t => t.getAttribute('datetime'))}))"
        )
    }
    for title, deadline in (
        ("申请行政复议", day + dt.timedelta(days=60)),
        ("提起行政诉讼", plus_months(day, 6)),
    ):
        assert title in routes, list(routes)
        assert [deadline.isoformat()] == routes[title]["dates"], title
        assert f"截止日期\n{zh_date(deadline)}" in routes[title]["text"], routes[title]["text"]


def check_referred(driver: WebDriver, record: dict[str, Any], guide: dict[str, Any]) -> None:
    """Who reviews and by when; nothing about reconsideration or a lawsuit; no form."""
    review = guide["review"]
    due = plus_working_days(decided_on(record), review["working_days"])
    shown = text_of(driver, "#next")
    assert f"审核机关\n{review['body']['name']['zh']}" in shown, shown
    assert f"预计完成\n{review['working_days']}个工作日内（{zh_date(due)}前" in shown, shown
    body = text_of(driver, "body")
    assert "行政复议" not in body and "行政诉讼" not in body
    assert not driver.find_elements("css selector", "form")


def check_approved(driver: WebDriver, record: dict[str, Any], amount: int) -> None:
    """The amount granted, grouped, in yuan."""
    assert amount == record["outputs"]["amount_yuan"]
    assert f"{amount:,}元" in text_of(driver, "#granted")


@pytest.mark.parametrize(
    ("sample", "outcome"),
    [(APPROVED, "APPROVED"), (REJECTED, "REJECTED"), (REFERRED, "REFERRED")],
)
def test_the_page_of_each_outcome_fits_a_phone_and_a_laptop_and_says_what_it_must(
    browser: WebDriver,
    live: Server,
    decided: dict[str, Decided],
    demo_samples: dict[str, Any],
    guide: dict[str, Any],
    repo_root: Path,
    sample: str,
    outcome: str,
) -> None:
    """At 390 px and 1280 px: no sideways scroll; a screenshot; the outcome's own content."""
    d = decided[sample]
    assert outcome == d.response["outcome"] == d.record["outcome"]
    served = httpx.get(d.page(live.base), timeout=30)
    assert 200 == served.status_code, served.text[:500]
    for width in WIDTHS:
        at_width(browser, width)
        browser.get(d.page(live.base))
        assert d.record["application_id"] in text_of(browser, "header")
        inner, scroll = browser.execute_script(
            "return [window.innerWidth, document.documentElement.scrollWidth]"
        )
        assert (width, True) == (inner, scroll <= width), f"{outcome} at {width}px: {scroll}px wide"
        full_page_screenshot(
            browser, repo_root / "var" / "screenshots" / f"{outcome.lower()}-{width}.png", width
        )
        if outcome == "REJECTED":
            check_rejected(browser, d.record)
        elif outcome == "REFERRED":
            check_referred(browser, d.record, guide)
        else:
            check_approved(browser, d.record, demo_samples[sample].expected["amount_yuan"])


def test_the_english_page_names_each_unmet_condition_in_english(
    browser: WebDriver, live: Server, decided: dict[str, Decided]
) -> None:
    """lang=en: every failed criterion's English title in the unmet section, html lang=en."""
    d = decided[REJECTED]
    at_width(browser, 390)
    browser.get(d.page(live.base, "en"))
    assert "en" == browser.execute_script("return document.documentElement.lang")
    shown = text_of(browser, "#unmet")
    failed = [c for c in d.record["criteria"] if c["status"] == "FAIL"]
    assert [] == [c["title_en"] for c in failed if c["title_en"] not in shown]
    assert browser.execute_script("return document.documentElement.scrollWidth") <= 390


# --- 2. the API docs with no network --------------------------------------------------------


OUTSIDE_REFERENCE = re.compile(
    r"""(?:src|href)\s*=\s*["']?\s*((?://|https?:)(?!//127\.0\.0\.1[:/])[^"'\s>]*)""", re.I
)


def outside(urls: list[str], base: str) -> list[str]:
    """The URLs that are neither the server's nor inline (data:, blob:)."""
    return [u for u in urls if not u.startswith((base + "/", "data:", "blob:"))]


def open_docs(browser: WebDriver, url: str) -> None:
    """Load ``url`` at 1280 px with the browser's request log emptied first."""
    at_width(browser, 1280)
    requested_urls(browser)
    browser.get(url)


def test_the_browser_here_cannot_reach_outside(browser: WebDriver, live: Server) -> None:
    """The cut holds: https://example.com fails to load, and a page's fetch of it fails too."""
    from selenium.common.exceptions import WebDriverException

    try:
        browser.get("https://example.com/")
    except WebDriverException:
        pass  # some versions raise on a failed navigation; either way nothing loaded
    assert "Example Domain" not in (browser.page_source or "")
    shown = browser.execute_script("return location.href")
    assert shown.startswith("chrome-error:"), shown
    browser.get(live.base + "/healthz")
    blocked = browser.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "fetch('https://example.com/', {mode: 'no-cors'}).then(() => done(false), () => done(true));"
    )
    assert blocked, "a fetch of https://example.com succeeded"


def test_swagger_ui_renders_offline_and_loads_only_from_the_server(
    browser: WebDriver, live: Server
) -> None:
    """/docs: the title with 秒批 and operation blocks for /v1/decisions; every request (page,
    scripts, styles, the OpenAPI document, failures included) went to the server."""
    html = httpx.get(live.base + "/docs", timeout=10).text
    assert [] == OUTSIDE_REFERENCE.findall(html)
    open_docs(browser, live.base + "/docs")
    wait_for(browser, lambda b: "秒批" in text_of(b, ".swagger-ui .info .title"), "the title")
    paths = wait_for(
        browser,
        lambda b: b.execute_script(
            "return [...document.querySelectorAll('.swagger-ui .opblock .opblock-summary-path')]"
            ".map(e => e.getAttribute('data-path') || e.innerText)"
        ),
        "the operations",
    )
    assert "/v1/decisions" in paths and "/v1/review/cases" in paths, paths
    loaded = browser.execute_script(
        "return performance.getEntriesByType('resource').map(e => e.name)"
    )
    assert any(u.endswith("/openapi.json") for u in loaded), loaded
    fetched = outside(loaded + requested_urls(browser), live.base)
    assert [] == fetched, f"requested from outside the server: {sorted(set(fetched))}"


def test_redoc_renders_offline_and_loads_only_from_the_server(
    browser: WebDriver, live: Server
) -> None:
    """/redoc: the title with 秒批 and the side menu; every request went to the server."""
    html = httpx.get(live.base + "/redoc", timeout=10).text
    assert [] == OUTSIDE_REFERENCE.findall(html)
    open_docs(browser, live.base + "/redoc")
    wait_for(browser, lambda b: "秒批" in text_of(b, ".api-content h1"), "the title")
    menu = wait_for(
        browser,
        lambda b: b.execute_script(
            "return [...document.querySelectorAll('.menu-content li[data-item-id]')]"
            ".map(e => e.innerText.trim()).filter(t => t)"
        ),
        "the menu",
    )
    assert len(menu) >= 5, menu
    loaded = browser.execute_script(
        "return performance.getEntriesByType('resource').map(e => e.name)"
    )
    assert any(u.endswith("/openapi.json") for u in loaded), loaded
    fetched = outside(loaded + requested_urls(browser), live.base)
    assert [] == fetched, f"requested from outside the server: {sorted(set(fetched))}"


# --- 3. objection → review → human decision ---------------------------------------------------


def test_an_objection_from_the_page_is_reviewed_and_the_human_decision_reaches_the_page(
    browser: WebDriver,
    serve: Callable[..., str],
    rulesets_dir: Path,
    demo_dir: Path,
    demo_samples: dict[str, Any],
) -> None:
    """Form → open case with due date (form hidden) → queue → claim (second claim 409) → case
    → resolve APPROVED → linked human record → page shows it; log intact with 2 records,
    staff actions attributed, the automated record unchanged."""
    base = serve(rulesets=rulesets_dir, data_dir=demo_dir)
    server = Server(base, serve.database_url, serve.headers)  # type: ignore[attr-defined]
    reviewer, as_reviewer = server.staff("reviewer")
    _, as_other_reviewer = server.staff("reviewer")
    _, as_auditor = server.staff("auditor")
    d = decide(server, demo_samples[REJECTED].body, "e2e-round-trip")
    assert "REJECTED" == d.record["outcome"]
    statement = "我的学历信息有误，请工作人员复核。"

    # The citizen objects through the page's form.
    at_width(browser, 390)
    browser.get(d.page(base))
    browser.find_element("css selector", "input[name=kind][value=objection]").click()
    browser.find_element("css selector", "textarea#reason").send_keys(statement)
    browser.find_element("css selector", "form button[type=submit]").click()
    wait_for(browser, lambda b: "sent=1" in b.current_url, "the page after the form")
    with httpx.Client(base_url=base, timeout=30) as http:
        cases = http.get(f"/v1/decisions/{d.decision_id}/cases", params={"token": d.token})
        assert 200 == cases.status_code, cases.text
        [case] = cases.json()
        assert ("objection", "open") == (case["kind"], case["status"])
        due = dt.date.fromisoformat(case["due_on"])
        review = text_of(browser, "#review")
        for shown in (case["case_id"], "异议复核", "已受理，等待处理", f"预计办结\n{zh_date(due)}"):
            assert shown in review, (shown, review)
        assert [due.isoformat()] == browser.execute_script(
            "return [...document.querySelectorAll('#review time')].map(t => t.getAttribute('datetime'))"
        )
        assert "您的请求已收到" in text_of(browser, ".notice")
        assert not browser.find_elements("css selector", "form")

        # A reviewer finds it, claims it; a second reviewer cannot.
        queue = http.get("/v1/review/cases", params={"kind": "objection"}, headers=as_reviewer)
        assert 200 == queue.status_code, queue.text
        assert [case["case_id"]] == [c["case_id"] for c in queue.json()]
        claimed = http.post(f"/v1/review/cases/{case['case_id']}/claim", headers=as_reviewer)
        assert (200, "in_review") == (claimed.status_code, claimed.json()["status"]), claimed.text
        taken = http.post(f"/v1/review/cases/{case['case_id']}/claim", headers=as_other_reviewer)
        assert (409, "CASE_CLAIMED") == (taken.status_code, taken.json()["error"]["code"])
        opened = http.get(f"/v1/review/cases/{case['case_id']}", headers=as_reviewer).json()
        assert (statement, reviewer) == (opened["statement"], opened["assignee"])
        assert (d.decision_id, d.record["record_hash"]) == (
            opened["record"]["decision_id"],
            opened["record"]["record_hash"],
        )

        # The reviewer decides: a new record in the log, linked to the automated one.
        reason = "经核实，学历登记有误，已由学信网更正；符合条件，予以批准。"
        resolved = http.post(
            f"/v1/review/cases/{case['case_id']}/resolve",
            json={"outcome": "APPROVED", "reason_zh": reason, "reason_en": "Degree corrected."},
            headers=as_reviewer,
        )
        assert 201 == resolved.status_code, resolved.text
        human_id = resolved.json()["human_decision"]["decision_id"]
        assert human_id != d.decision_id
        assert d.decision_id == resolved.json()["human_decision"]["reviews_decision_id"]
        assert ("resolved", human_id) == (
            resolved.json()["case"]["status"],
            resolved.json()["case"]["human_decision_id"],
        )
        exported = http.get("/v1/audit/export", headers=as_auditor)
        assert 200 == exported.status_code, exported.text
        lines = {
            line["record"]["decision_id"]: line
            for line in map(json.loads, exported.text.splitlines())
        }
        assert {d.decision_id, human_id} == set(lines)
        human = lines[human_id]["record"]
        assert (d.decision_id, "APPROVED", reviewer) == (
            human["reviews_decision_id"],
            human["outcome"],
            human["reviewer"],
        )
        assert d.record["record_hash"] == lines[d.decision_id]["record_hash"]

        # The citizen's page shows the outcome and the reason.
        browser.get(d.page(base))
        review = text_of(browser, "#review")
        for shown in ("已办结", "结果\n予以批准", reason, human_id):
            assert shown in review, (shown, review)

        # The audit: the log is intact, the reviewer's acts are on record.
        verified = http.get("/v1/audit/verify", headers=as_auditor).json()
        assert (True, 2, []) == (verified["intact"], verified["records"], verified["problems"])
        actions = http.get("/v1/audit/actions", headers=as_auditor).json()
        acts = {(a["action"], a["target"]): a["actor"] for a in actions}
        assert reviewer == acts[("claim_case", case["case_id"])]
        assert reviewer == acts[("resolve_case", case["case_id"])]
        again = http.get(
            f"/v1/decisions/{d.decision_id}/explanation", params={"token": d.token}
        ).json()
        assert d.record == again["record"]


def test_a_referred_decision_opens_a_referral_case_due_by_the_guides_working_days(
    live: Server, decided: dict[str, Decided], guide: dict[str, Any]
) -> None:
    """No one asked: the referral is in the reviewers' queue, due in the guide's working days."""
    d = decided[REFERRED]
    _, as_reviewer = live.staff("reviewer")
    due = plus_working_days(decided_on(d.record), guide["review"]["working_days"])
    with httpx.Client(base_url=live.base, timeout=30) as http:
        queue = http.get("/v1/review/cases", params={"kind": "referral"}, headers=as_reviewer)
        assert 200 == queue.status_code, queue.text
        mine = [c for c in queue.json() if c["decision_id"] == d.decision_id]
        assert [("referral", "open", due.isoformat())] == [
            (c["kind"], c["status"], c["due_on"]) for c in mine
        ]
        others = http.get("/v1/review/cases", params={"kind": "objection"}, headers=as_reviewer)
        assert d.decision_id not in [c["decision_id"] for c in others.json()]
        cases = http.get(f"/v1/decisions/{d.decision_id}/cases", params={"token": d.token})
        assert [mine[0]["case_id"]] == [c["case_id"] for c in cases.json()]


def test_the_new_decision_link_on_a_resolved_page_opens_the_human_decision(
    live: Server, demo_samples: dict[str, Any]
) -> None:
    """After a resolved objection, the page's 新的决定 link opens the human decision's receipt,
    and the token it carries opens the human decision itself (and nothing else)."""
    body = demo_samples[REJECTED].body
    d = decide(live, {**body, "application_id": body["application_id"] + "-link"}, "e2e-link")
    _, as_reviewer = live.staff("reviewer")
    with httpx.Client(base_url=live.base, timeout=30) as http:
        case = http.post(
            f"/v1/decisions/{d.decision_id}/objections",
            params={"token": d.token},
            json={"kind": "objection", "reason": "请复核。"},
        ).json()
        assert (
            200
            == http.post(
                f"/v1/review/cases/{case['case_id']}/claim", headers=as_reviewer
            ).status_code
        )
        resolved = http.post(
            f"/v1/review/cases/{case['case_id']}/resolve",
            json={"outcome": "APPROVED", "reason_zh": "经复核，予以批准。"},
            headers=as_reviewer,
        )
        assert 201 == resolved.status_code, resolved.text
        human_id = resolved.json()["human_decision"]["decision_id"]
        page = http.get(f"/explain/{d.decision_id}", params={"token": d.token}).text
        [href] = re.findall(rf'href="([^"]*/v1/decisions/{human_id}/receipt\?[^"]*)"', page)
        linked = http.get(href.replace("&amp;", "&"))
        assert 200 == linked.status_code, linked.text[:300]
        assert human_id == linked.json()["leaf"]["decision_id"]
        human_token = httpx.URL(href.replace("&amp;", "&")).params["token"]
        human = http.get(f"/v1/decisions/{human_id}", params={"token": human_token}).json()
        assert (d.decision_id, "APPROVED") == (human["reviews_decision_id"], human["outcome"])
        assert (
            403
            == http.get(f"/v1/decisions/{d.decision_id}", params={"token": human_token}).status_code
        )
