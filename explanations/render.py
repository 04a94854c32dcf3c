"""Plain-language explanations of a record: Simplified Chinese first, English second."""

from __future__ import annotations

from collections.abc import Mapping

from engine import CriterionStatus, Outcome
from explanations.record import ExplanationRecordV1

__all__ = ["render_text"]

_OUTCOME_ZH = {
    Outcome.APPROVED: "予以批准",
    Outcome.REJECTED: "不予批准",
    Outcome.REFERRED: "转人工审核",
}
_OUTCOME_EN = {
    Outcome.APPROVED: "approved",
    Outcome.REJECTED: "rejected",
    Outcome.REFERRED: "referred to a person",
}
_STATUS_ZH = {
    CriterionStatus.PASS: "符合",
    CriterionStatus.FAIL: "不符合",
    CriterionStatus.UNKNOWN: "无法判断",
}


def _amount(outputs: Mapping[str, object] | None, lang: str) -> str:
    if not outputs or "amount_yuan" not in outputs:
        return ""
    total = outputs["amount_yuan"]
    months = outputs.get("months") or 0
    monthly = outputs.get("monthly_amount_yuan") or 0
    if lang == "zh":
        if months:
            return f"补贴标准为每月{monthly}元，共{months}个月，合计{total}元。"
        return f"一次性补贴{total}元。"
    if months:
        return f"The subsidy is {monthly} yuan a month for {months} months, {total} yuan in all."
    return f"A one-time subsidy of {total} yuan."


def render_text(record: ExplanationRecordV1, *, lang: str = "zh") -> str:
    """The explanation a citizen reads: outcome, each criterion, the data used, remedies."""
    lines: list[str] = []
    if lang == "zh":
        lines.append(
            f"您于{record.application_date.isoformat()}提交的“{record.service_name_zh}”申请（申请编号{record.application_id}），经系统自动审批，结果为：{_OUTCOME_ZH[record.outcome]}。"
        )
        amount = _amount(record.outputs, "zh")
        if amount:
            lines.append(amount)
        lines.append(
            f"适用规则：{record.service_name_zh} 第{record.ruleset_version}版（内容摘要 {record.ruleset_hash[:19]}…），由{record.authority_zh}负责。"
        )
        cite = {b.id: b.citation() for b in record.legal_basis}
        lines.append("逐项审查结果：")
        for c in record.criteria:
            line = f"  {c.id} {c.title_zh}：{_STATUS_ZH[c.status]}"
            if c.status is not CriterionStatus.PASS and c.reason_zh:
                line += f"。{c.reason_zh}"
            if c.status is CriterionStatus.UNKNOWN:
                line += f"（缺少数据：{'、'.join(c.missing_facts) or '—'}）"
            lines.append(line + f"（依据：{'、'.join(cite.get(b, b) for b in c.legal_basis)}）")
        sources = sorted({e.source for e in record.evidence})
        lines.append(
            f"所用数据来源：{'、'.join(sources)}；各项数据的来源、记录编号和获取时间见完整记录。"
        )
        if record.outcome is not Outcome.APPROVED:
            lines.append("如您认为结果有误，可以：")
            for r in record.remedy.routes:
                lines.append(
                    f"  · {r.title_zh}（{r.deadline.isoformat()}前，{r.basis}）：{r.how_zh}"
                )
        lines.append(f"决定编号：{record.decision_id}；记录校验值：{record.record_hash}")
        return "\n".join(lines)
    lines.append(
        f'Your application for "{record.service_name_en}" submitted on {record.application_date.isoformat()} (application {record.application_id}) was decided automatically: {_OUTCOME_EN[record.outcome]}.'
    )
    amount = _amount(record.outputs, "en")
    if amount:
        lines.append(amount)
    lines.append(
        f"Rules applied: version {record.ruleset_version} (content hash {record.ruleset_hash[:19]}…)."
    )
    cite = {b.id: b.citation() for b in record.legal_basis}
    for c in record.criteria:
        line = f"  {c.id} {c.title_en}: {c.status.value}"
        if c.status is not CriterionStatus.PASS and c.reason_en:
            line += f". {c.reason_en}"
        lines.append(line + f" (legal basis: {'; '.join(cite.get(b, b) for b in c.legal_basis)})")
    if record.outcome is not Outcome.APPROVED:
        lines.append("If you think this is wrong you can:")
        for r in record.remedy.routes:
            lines.append(f"  - {r.title_en} by {r.deadline.isoformat()} ({r.basis}): {r.how_en}")
    lines.append(f"Decision {record.decision_id}; record hash {record.record_hash}")
    return "\n".join(lines)
