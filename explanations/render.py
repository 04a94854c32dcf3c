"""Plain-language explanations of a record: Simplified Chinese first, English second."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal, InvalidOperation

from engine import CriterionStatus, Outcome
from engine.decision import ComparedValue
from explanations.record import ExplanationRecordV1, OutputColumn

__all__ = ["format_amount", "render_text"]

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
_SOURCE = {
    "declared": ("申请人申报", "declared by the applicant"),
    "application": ("申请信息", "the application"),
    "value": ("计算值", "computed"),
    "parameter": ("政策参数", "policy parameter"),
    "table": ("查找表", "lookup table"),
    "computed": ("计算", "computed"),
}
_MONEY_UNITS = {"元", "元/月", "元/年", "yuan"}


def format_amount(value: object, *, unit: str | None = None, lang: str = "zh") -> str:
    """A value as Chinese readers write it: money grouped and to 分 (``1,234.50元``)."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return ("是" if value else "否") if lang == "zh" else ("yes" if value else "no")
    if isinstance(value, list):
        sep = "、" if lang == "zh" else ", "
        return sep.join(format_amount(v, unit=unit, lang=lang) for v in value)
    text = str(value)
    if unit in _MONEY_UNITS and isinstance(value, int | str):
        try:
            number = Decimal(text)
        except InvalidOperation:
            number = None
        if number is not None:
            exponent = number.as_tuple().exponent
            if isinstance(value, int) or "." not in text:
                text = f"{number:,}"
            elif isinstance(exponent, int) and exponent >= -2:
                text = f"{number:,.2f}"
            else:  # an intermediate rate such as 11,850.50 ÷ 30: say that it is not exact
                text = ("约" if lang == "zh" else "≈") + f"{number:,.4f}"
    if not unit:
        return text
    if lang == "zh":
        return f"{text}{unit}"
    return f"{text} {'yuan' if unit.startswith('元') else unit}"


def _legacy_amount(outputs: Mapping[str, object], lang: str) -> str:
    """The sentence of the version-1 talent subsidy (its columns carry no titles)."""
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


def _outputs(record: ExplanationRecordV1, lang: str) -> str:
    outputs = record.outputs
    if not outputs:
        return ""
    columns = {c.name: c for c in record.output_columns}
    if "amount_yuan" in outputs and not any(c.title_zh for c in columns.values()):
        return _legacy_amount(outputs, lang)
    parts = []
    for name, value in outputs.items():
        col = columns.get(name, OutputColumn(name=name, type="string"))
        title = (col.title_zh if lang == "zh" else col.title_en) or name
        parts.append(
            f"{title}{'：' if lang == 'zh' else ': '}{format_amount(value, unit=col.unit, lang=lang)}"
        )
    return ("；".join(parts) + "。") if lang == "zh" else ("; ".join(parts) + ".")


def _source_label(record: ExplanationRecordV1, source: str | None, lang: str) -> str:
    if source is None:
        return ""
    if source.startswith("registry:"):
        rid = source.split(":", 1)[1]
        item = next((e for e in record.evidence if e.source == rid), None)
        if item is None:
            return rid
        name = (item.source_name_zh if lang == "zh" else item.source_name_en) or rid
        holder = item.holder_zh if lang == "zh" else item.holder_en
        return (
            f"{name}，{holder}"
            if holder and lang == "zh"
            else (f"{name}, {holder}" if holder else name)
        )
    zh, en = _SOURCE.get(source, (source, source))
    return zh if lang == "zh" else en


def _compared(record: ExplanationRecordV1, values: list[ComparedValue], lang: str) -> str:
    shown = []
    for v in values:
        if v.source in (None, "computed", "application", "table"):
            continue
        value = (
            "（无记录）"
            if v.missing and lang == "zh"
            else "(no record)"
            if v.missing
            else format_amount(v.value, lang=lang)
        )
        label = _source_label(record, v.source, lang)
        shown.append(
            f"{v.expression}={value}（{label}）"
            if lang == "zh"
            else f"{v.expression} = {value} ({label})"
        )
    return ("；".join(shown)) if lang == "zh" else "; ".join(shown)


def _computation(record: ExplanationRecordV1, lang: str) -> list[str]:
    lines: list[str] = []
    cite = {b.id: b.citation() for b in record.legal_basis}
    if record.parameters:
        lines.append("适用的政策参数：" if lang == "zh" else "Policy parameters in force:")
        for p in record.parameters:
            period = (
                f"{p.effective_from.isoformat()}起"
                if lang == "zh"
                else f"from {p.effective_from.isoformat()}"
            )
            if p.effective_to is not None:
                period = (
                    f"{p.effective_from.isoformat()}至{p.effective_to.isoformat()}"
                    if lang == "zh"
                    else f"{p.effective_from.isoformat()} to {p.effective_to.isoformat()}"
                )
            if isinstance(p.value, dict):
                value = "、".join(
                    f"{k}：{format_amount(v, unit=p.unit, lang=lang)}" for k, v in p.value.items()
                )
            else:
                value = format_amount(p.value, unit=p.unit, lang=lang)
            basis = "、".join(cite.get(b, b) for b in p.legal_basis)
            title = p.title_zh if lang == "zh" else p.title_en
            lines.append(
                f"  {title}：{value}（{period}，依据{basis}）"
                if lang == "zh"
                else f"  {title}: {value} ({period}; {basis})"
            )
    if record.values:
        lines.append("计算过程：" if lang == "zh" else "How it was computed:")
        for v in record.values:
            title = v.title_zh if lang == "zh" else v.title_en
            if v.missing:
                value = (
                    "无法计算（缺少数据）" if lang == "zh" else "cannot be computed (data missing)"
                )
            else:
                value = format_amount(v.value, unit=v.unit, lang=lang)
            rules = ""
            if v.rules:
                rules = (
                    f"（按决策表第{'、'.join(str(r) for r in v.rules)}条规则）"
                    if lang == "zh"
                    else f" (decision table rules {', '.join(str(r) for r in v.rules)})"
                )
            lines.append(
                f"  {title}：{value}{rules}" if lang == "zh" else f"  {title}: {value}{rules}"
            )
    return lines


def render_text(record: ExplanationRecordV1, *, lang: str = "zh") -> str:
    """The explanation a citizen reads: outcome, each criterion, the data used, remedies."""
    lines: list[str] = []
    cite = {b.id: b.citation() for b in record.legal_basis}
    if lang == "zh":
        lines.append(
            f"您于{record.application_date.isoformat()}提交的“{record.service_name_zh}”申请（申请编号{record.application_id}），经系统自动审批，结果为：{_OUTCOME_ZH[record.outcome]}。"
        )
        amount = _outputs(record, "zh")
        if amount:
            lines.append(amount)
        lines.append(
            f"适用规则：{record.service_name_zh} 第{record.ruleset_version}版（内容摘要 {record.ruleset_hash[:19]}…），由{record.authority_zh}负责。"
        )
        lines.extend(_computation(record, "zh"))
        lines.append("逐项审查结果：")
        for c in record.criteria:
            line = f"  {c.id} {c.title_zh}：{_STATUS_ZH[c.status]}"
            if c.status is not CriterionStatus.PASS and c.reason_zh:
                line += f"。{c.reason_zh}"
            if c.status is CriterionStatus.UNKNOWN:
                line += f"（缺少数据：{'、'.join(c.missing_facts) or '—'}）"
            if c.status is not CriterionStatus.PASS:
                compared = _compared(record, c.values, "zh")
                if compared:
                    line += f"（所比较的数据：{compared}）"
            lines.append(line + f"（依据：{'、'.join(cite.get(b, b) for b in c.legal_basis)}）")
        sources = sorted({e.source_name_zh or e.source for e in record.evidence})
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
    amount = _outputs(record, "en")
    if amount:
        lines.append(amount)
    lines.append(
        f"Rules applied: version {record.ruleset_version} (content hash {record.ruleset_hash[:19]}…)."
    )
    lines.extend(_computation(record, "en"))
    for c in record.criteria:
        line = f"  {c.id} {c.title_en}: {c.status.value}"
        if c.status is not CriterionStatus.PASS and c.reason_en:
            line += f". {c.reason_en}"
        if c.status is not CriterionStatus.PASS:
            compared = _compared(record, c.values, "en")
            if compared:
                line += f" (compared: {compared})"
        lines.append(line + f" (legal basis: {'; '.join(cite.get(b, b) for b in c.legal_basis)})")
    if record.outcome is not Outcome.APPROVED:
        lines.append("If you think this is wrong you can:")
        for r in record.remedy.routes:
            lines.append(f"  - {r.title_en} by {r.deadline.isoformat()} ({r.basis}): {r.how_en}")
    lines.append(f"Decision {record.decision_id}; record hash {record.record_hash}")
    return "\n".join(lines)
