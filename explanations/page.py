"""The citizen's explanation page: one decision, one language, plain HTML that prints well.

No external assets of any kind (styles inline, no scripts, no web fonts, no images): the
page opens on any phone, behind any firewall, and can be saved or printed as the notice
itself. The wording comes from ``explanations.render.RecordWords``, so the page and the
plain text say the same things.

Languages: ``zh`` pages are Chinese throughout (decision ids, hashes and web addresses
aside). ``en`` pages are English, with three kinds of Chinese text kept on purpose and
marked ``<span lang="zh-CN">`` so that screen readers switch voice: the official Chinese
names of bodies after their English names (what a person needs to find them), the titles
of legal documents (official only in Chinese), and registry values or reasons with no known
English rendering.
"""

from __future__ import annotations

import datetime as dt
import functools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import quote, urlencode

import jinja2
from markupsafe import Markup, escape

from engine import CriterionStatus, Outcome
from explanations.guide import Office, ServiceGuide
from explanations.record import ExplanationRecordV1
from explanations.render import (
    Counterfactual,
    RecordWords,
    format_date,
    format_time,
)

if TYPE_CHECKING:
    from engine.registries import RegistryCatalogue

__all__ = ["ReviewView", "render_page"]


@dataclass(frozen=True)
class ReviewView:
    """A review case of the decision (referral, objection or request for a human decision)."""

    case_id: str
    kind: Literal["referral", "objection", "human_decision"]
    status: Literal["open", "in_review", "resolved"]
    opened_at: dt.datetime
    due_on: dt.date
    resolved_at: dt.datetime | None = None
    outcome: str | None = None
    reason: str | None = None
    human_decision_id: str | None = None
    human_decision_token: str | None = None
    """Opens the human decision's JSON and receipt (``/v1/decisions/{id}``)."""


_LANG_TAG = {"zh": "zh-CN", "en": "en"}
_CJK = "\u3000-\u303f\u3400-\u4dbf\u4e00-\u9fff\uff00-\uffef"
_CJK_SPAN = re.compile(rf"[{_CJK}]+(?:[\s0-9A-Za-z\-–·.]*[{_CJK}]+)*")

_LABELS: dict[str, dict[str, str]] = {
    "zh": {
        "title": "审批结果告知",
        "switch": "English",
        "switch_lang": "en",
        "outcome_APPROVED": "予以批准",
        "outcome_REJECTED": "不予批准",
        "outcome_REFERRED": "转人工审核",
        "summary_APPROVED": "您的申请已获批准。",
        "summary_REJECTED": "您的申请未获批准：有{n}项条件不符合。下面逐项说明原因和您可以怎么做。",
        "summary_REFERRED": "系统未能自动作出决定，您的申请已转交工作人员审核。这不是最终决定。",
        "application": "申请编号",
        "applied_on": "申请日期",
        "decided_at": "决定时间",
        "authority": "作出决定的机关",
        "granted": "批准的结果",
        "payment_when": "何时发放",
        "payment_how": "如何发放",
        "after_approval": "接下来",
        "computation": "结果是怎样算出的",
        "parameters": "适用的政策参数",
        "values": "计算过程",
        "unmet": "不符合的条件",
        "requires": "规则要求",
        "found": "查到的情况",
        "basis": "依据",
        "change": "需要改变什么",
        "passed": "其余{n}项条件均符合：",
        "remedy": "如果您不同意本决定",
        "remedy_intro": "以下期限自决定次日起计算。",
        "deadline": "截止日期",
        "body": "受理机关",
        "legal": "法律依据",
        "rights": "您的权利",
        "next": "接下来会怎样",
        "not_final": "这不是最终决定，目前您无需另行申请。工作人员作出决定后，您会收到新的决定，其中会说明您不同意时可以怎么做。",
        "reviewer": "审核机关",
        "due": "预计完成",
        "working_days": "{n}个工作日内（{due}前，遇法定节假日顺延）",
        "no_due": "工作人员会尽快审核，并通知您结果。",
        "why_referred": "为什么要人工审核",
        "prepare": "您可以提前准备",
        "review": "复核进度",
        "case": "案件编号",
        "kind": "类型",
        "status": "状态",
        "opened": "受理时间",
        "due_on": "预计办结",
        "resolved_at": "办结时间",
        "result": "结果",
        "reason": "理由",
        "new_decision": "新的决定",
        "kind_referral": "转人工审核",
        "kind_objection": "异议复核",
        "kind_human_decision": "要求人工作出决定",
        "status_open": "已受理，等待处理",
        "status_in_review": "正在审核",
        "status_resolved": "已办结",
        "request": "提出异议或要求人工决定",
        "request_intro": "如您认为决定有误，或希望由工作人员而不是系统作出决定，可以在这里提出。",
        "request_kind": "您希望",
        "request_objection": "提出异议：我认为决定有误，请工作人员复核",
        "request_human": "要求由工作人员作出决定（《中华人民共和国个人信息保护法》第二十四条）",
        "request_reason": "理由（最多2000字）",
        "request_submit": "提交",
        "criteria": "全部审查条件",
        "status_PASS": "符合",
        "status_FAIL": "不符合",
        "status_UNKNOWN": "无法判断",
        "data_use": "数据使用记录",
        "data_use_intro": "为作出本决定，系统向以下部门的数据库查询或核验了您的信息：",
        "contact": "联系我们",
        "verify": "核验信息",
        "decision_id": "决定编号",
        "record_hash": "记录校验值",
        "ruleset": "适用规则",
        "ruleset_version": "{service}第{version}版",
        "ruleset_hash": "规则内容摘要",
        "log_index": "日志序号",
        "tree_size": "日志树大小",
        "tree_root": "日志根哈希",
        "actionable": "可通过自身努力改变",
        "not_actionable": "无法改变",
    },
    "en": {
        "title": "Notice of decision",
        "switch": "中文",
        "switch_lang": "zh-CN",
        "outcome_APPROVED": "Approved",
        "outcome_REJECTED": "Rejected",
        "outcome_REFERRED": "Referred to an officer",
        "summary_APPROVED": "Your application is approved.",
        "summary_REJECTED": "Your application is not approved: {n} condition(s) are not met. Below is why, and what you can do.",
        "summary_REFERRED": "The system could not decide on its own and an officer will examine your application. This is not a final decision.",
        "application": "Application",
        "applied_on": "Applied on",
        "decided_at": "Decided",
        "authority": "Decided by",
        "granted": "What was granted",
        "payment_when": "When it is paid",
        "payment_how": "How it is paid",
        "after_approval": "What happens next",
        "computation": "How the result was computed",
        "parameters": "Policy parameters in force",
        "values": "Computation",
        "unmet": "Conditions not met",
        "requires": "What the rule requires",
        "found": "What was found",
        "basis": "Legal basis",
        "change": "What would have to change",
        "passed": "The other {n} condition(s) are met:",
        "remedy": "If you disagree with this decision",
        "remedy_intro": "Time limits count from the day after the decision.",
        "deadline": "Deadline",
        "body": "Body",
        "legal": "Legal basis",
        "rights": "Your rights",
        "next": "What happens next",
        "not_final": "This is not a final decision and you need not apply again. When an officer has decided, you will receive the new decision, which says what you can do if you disagree.",
        "reviewer": "Reviewed by",
        "due": "Decision expected",
        "working_days": "within {n} working days (by {due}; later if public holidays fall in between)",
        "no_due": "An officer will examine it and tell you the result.",
        "why_referred": "Why an officer must look at it",
        "prepare": "You may prepare",
        "review": "Review",
        "case": "Case",
        "kind": "Kind",
        "status": "Status",
        "opened": "Opened",
        "due_on": "Due by",
        "resolved_at": "Resolved",
        "result": "Result",
        "reason": "Reason",
        "new_decision": "New decision",
        "kind_referral": "Referral to an officer",
        "kind_objection": "Objection",
        "kind_human_decision": "Request for a decision by a person",
        "status_open": "Received, waiting for an officer",
        "status_in_review": "Being examined",
        "status_resolved": "Resolved",
        "request": "Object or ask for a decision by a person",
        "request_intro": "If you think the decision is wrong, or want a person rather than the system to decide, tell us here.",
        "request_kind": "You want to",
        "request_objection": "Object: I think the decision is wrong; please have an officer review it",
        "request_human": "Ask for a decision made by a person (Personal Information Protection Law, Article 24)",
        "request_reason": "Your reasons (at most 2,000 characters)",
        "request_submit": "Send",
        "criteria": "Every condition checked",
        "status_PASS": "met",
        "status_FAIL": "not met",
        "status_UNKNOWN": "could not be decided",
        "data_use": "How your data was used",
        "data_use_intro": "To make this decision the system asked these registries about you:",
        "contact": "Contact",
        "verify": "Verification",
        "decision_id": "Decision",
        "record_hash": "Record hash",
        "ruleset": "Rules applied",
        "ruleset_version": "{service}, version {version}",
        "ruleset_hash": "Ruleset hash",
        "log_index": "Log index",
        "tree_size": "Log tree size",
        "tree_root": "Log root hash",
        "actionable": "you can change this",
        "not_actionable": "cannot be changed",
    },
}


def _mark_chinese(value: Any) -> Any:
    """Wrap Chinese runs of an English page's text in ``<span lang="zh-CN">`` (escaped)."""
    if isinstance(value, Markup) or not isinstance(value, str):
        return value
    if not _CJK_SPAN.search(value):
        return value
    out: list[str] = []
    last = 0
    for m in _CJK_SPAN.finditer(value):
        out.append(str(escape(value[last : m.start()])))
        out.append(f'<span lang="zh-CN">{escape(m.group(0))}</span>')
        last = m.end()
    out.append(str(escape(value[last:])))
    return Markup("".join(out))


@functools.cache
def _environment(lang: str) -> jinja2.Environment:
    """The template environment of one language, built on first use (not at import)."""
    return jinja2.Environment(
        loader=jinja2.PackageLoader("explanations", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        finalize=_mark_chinese if lang == "en" else None,
    )


@dataclass(frozen=True)
class _Contact:
    rows: list[tuple[str, str]]
    phone: str | None
    url: str | None


def _contact(w: RecordWords, office: Office | None) -> _Contact | None:
    if office is None:
        return None
    rows = [(k, v) for k, v in w.contact_lines(office) if v not in (office.phone, office.url)]
    return _Contact(rows, office.phone, office.url)


def _receipt(receipt: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """Tree size, root and leaf index of an RFC 6962 receipt (``explanations.log.Receipt``)."""
    if receipt is None:
        return None
    checkpoint = receipt.get("checkpoint")
    cp: Mapping[str, Any] = checkpoint if isinstance(checkpoint, Mapping) else {}
    return {
        "size": cp.get("size", receipt.get("tree_size", receipt.get("size"))),
        "root": cp.get("root", receipt.get("root_hash", receipt.get("root"))),
        "index": receipt.get("leaf_index"),
    }


def render_page(
    record: ExplanationRecordV1,
    *,
    lang: str,
    token: str,
    guide: ServiceGuide | None,
    counterfactuals: Sequence[Counterfactual] = (),
    review: ReviewView | None = None,
    receipt: Mapping[str, Any] | None = None,
    base_path: str = "",
    registries: RegistryCatalogue | None = None,
    notice: str | None = None,
) -> str:
    """The explanation page of ``record`` in ``lang`` (``zh`` or ``en``; ``zh-CN`` is ``zh``).

    ``token`` is the citizen's access token: kept in the language switch and the request
    form's address. ``counterfactuals`` say what would have to change per failed criterion;
    ``review`` is the open or resolved review case; ``receipt`` the transparency-log receipt
    (its tree size and root are shown); ``base_path`` prefixes the form's address;
    ``registries`` (the catalogue) gives field titles when it has them; ``notice`` is a short
    status line shown above the outcome (e.g. "your request has been received"). Raises
    ``ValueError`` for another language.
    """
    lang = "zh" if lang in ("zh", "zh-CN", "zh-cn") else lang
    w = RecordWords(record, lang=lang, guide=guide, registries=registries)
    labels = _LABELS[lang]
    other = "en" if lang == "zh" else "zh"
    outcome = record.outcome
    failed = [c for c in record.criteria if c.status is CriterionStatus.FAIL]
    remedy = w.remedy()
    request_kinds: list[str] = []
    if review is None:  # one review per decision: after a person decided, the courts remain
        if outcome is Outcome.REJECTED:
            request_kinds = ["objection", "human_decision"]
        elif outcome is Outcome.APPROVED:
            request_kinds = ["human_decision"]
    referral = remedy.referral
    context: dict[str, Any] = {
        "L": labels,
        "lang": lang,
        "html_lang": _LANG_TAG[lang],
        "r": record,
        "w": w,
        "outcome": outcome.value,
        "service": w.service(),
        "service_zh": record.service_name_zh if lang == "en" else None,
        "authority": w.authority(),
        "applied_on": format_date(record.application_date, lang=lang),
        "decided_at": format_time(record.decided_at, lang=lang),
        "summary": labels[f"summary_{outcome.value}"].format(n=len(failed)),
        "switch_href": "?" + urlencode({"lang": other, "token": token}),
        "outputs": w.outputs(),
        "payment": guide.payment if guide else None,
        "after_approval": guide.after_approval if guide else None,
        "failed": [
            {
                "id": c.id,
                "title": w.requirement(c),
                "reason": w.reason(c),
                "found": w.found(c),
                "basis": w.citations(c.legal_basis),
                "changes": w.counterfactuals(c, counterfactuals),
            }
            for c in failed
        ],
        "passed": [w.requirement(c) for c in record.criteria if c.status is CriterionStatus.PASS],
        "criteria": [
            (w.requirement(c), labels[f"status_{c.status.value}"]) for c in record.criteria
        ],
        "parameters": w.parameter_rows(),
        "values": w.value_rows(),
        "routes": [
            {
                "title": w.t(r.title_zh, r.title_en),
                "deadline": r.deadline,
                "deadline_text": format_date(r.deadline, lang=lang) if r.deadline else None,
                "how": w.t(r.how_zh, r.how_en),
                "basis": w.t(r.basis, r.basis_en),
                "body": w.office(r.contact) if r.contact else w.t(r.body_zh, r.body_en),
                "contact": _contact(w, r.contact),
            }
            for r in remedy.routes
        ],
        "referral": None,
        "review": None,
        "request_kinds": request_kinds,
        "form_action": (
            f"{base_path}/explain/{quote(record.decision_id, safe='')}/requests?"
            + urlencode({"token": token, "lang": lang})
        ),
        "data_use": w.data_use(),
        "contact": _contact(w, guide.authority) if guide else None,
        "receipt": _receipt(receipt),
        "notice": notice,
    }
    if outcome is Outcome.REFERRED and referral is not None:
        context["referral"] = {
            "body": w.office(referral.contact)
            if referral.contact
            else w.t(referral.body_zh, referral.body_en),
            "contact": _contact(w, referral.contact),
            "due": (
                labels["working_days"].format(
                    n=referral.working_days, due=format_date(referral.due_on, lang=lang)
                )
                if referral.due_on is not None
                else None
            ),
            "due_on": referral.due_on,
            "reasons": w.referral_reasons(),
            "prepare": referral.prepare_zh if lang == "zh" else referral.prepare_en,
        }
    if review is not None:
        result = review.outcome
        if result in Outcome.__members__:
            result = labels[f"outcome_{result}"]
        context["review"] = {
            "case_id": review.case_id,
            "kind": labels.get(f"kind_{review.kind}", review.kind),
            "status": labels.get(f"status_{review.status}", review.status),
            "resolved": review.status == "resolved",
            "opened": format_time(review.opened_at, lang=lang),
            "due_on": review.due_on,
            "due_text": format_date(review.due_on, lang=lang),
            "resolved_at": format_time(review.resolved_at, lang=lang)
            if review.resolved_at
            else None,
            "result": result,
            "reason": review.reason,
            "human_decision_id": review.human_decision_id,
            "human_href": (
                f"{base_path}/v1/decisions/{quote(review.human_decision_id, safe='')}/receipt?"
                + urlencode({"token": review.human_decision_token})
            )
            if review.human_decision_id and review.human_decision_token
            else None,
        }
    return _environment(lang).get_template("page.html").render(context)
