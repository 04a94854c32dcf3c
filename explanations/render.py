"""Plain-language explanations of a record, one language at a time: Simplified Chinese or English.

``render_text`` writes the text a citizen reads; ``RecordWords`` turns a record's
identifiers (``population.birth_date``, ``registry:business_registry``, ``True``) into words,
and is shared with the citizen page (``explanations.page``) so both say the same thing.

What a reader never sees in the body: raw identifiers, ``=是``, hashes (a short
verification line closes the text) or the other language (except proper names: see
``RecordWords.authority`` and legal citations, which are official Chinese titles).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Protocol
from zoneinfo import ZoneInfo

from engine import CriterionResult, CriterionStatus, Outcome, ReasonCode
from engine.decision import ComparedValue, JsonScalar, JsonValue
from engine.recording import AGE_MASK
from explanations.guide import Office, ServiceGuide
from explanations.record import EvidenceItem, ExplanationRecordV1, is_personal_field
from explanations.remedy import RemedyNoticeV2, remedy_for

if TYPE_CHECKING:
    from engine.registries import RegistryCatalogue

__all__ = [
    "Counterfactual",
    "DataUse",
    "RecordWords",
    "ReviewLike",
    "decided_on",
    "english_values",
    "format_amount",
    "format_date",
    "format_time",
    "render_text",
]

SHANGHAI = ZoneInfo("Asia/Shanghai")

_OUTCOME_ZH = {
    Outcome.APPROVED: "予以批准",
    Outcome.REJECTED: "不予批准",
    Outcome.REFERRED: "转人工审核",
}
_OUTCOME_EN = {
    Outcome.APPROVED: "approved",
    Outcome.REJECTED: "rejected",
    Outcome.REFERRED: "referred to an officer",
}
_MONEY_UNITS = {"元", "元/月", "元/年", "yuan"}
_UNIT_EN = {
    "元": "yuan",
    "元/月": "yuan a month",
    "元/年": "yuan a year",
    "天": "days",
    "分": "points",
    "周岁": "years",
    "年": "years",
    "个月": "months",
    "月": "months",
}


class Counterfactual(Protocol):
    """What would have to be different for a criterion to pass (written by another module)."""

    @property
    def criterion(self) -> str: ...
    @property
    def text_zh(self) -> str: ...
    @property
    def text_en(self) -> str: ...
    @property
    def actionable(self) -> bool: ...
    @property
    def table_row(self) -> int | None: ...


class ReviewLike(Protocol):
    """The review case of a decision as the texts read it (``explanations.page.ReviewView``)."""

    @property
    def case_id(self) -> str: ...
    @property
    def kind(self) -> str: ...
    @property
    def status(self) -> str: ...
    @property
    def opened_at(self) -> dt.datetime: ...
    @property
    def due_on(self) -> dt.date: ...
    @property
    def resolved_at(self) -> dt.datetime | None: ...
    @property
    def outcome(self) -> str | None: ...
    @property
    def reason(self) -> str | None: ...
    @property
    def human_decision_id(self) -> str | None: ...


# --- numbers, dates and times -----------------------------------------------------------


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
    return f"{text} {_UNIT_EN.get(unit, 'yuan' if unit.startswith('元') else unit)}"


_MONTHS_EN = (
    "January February March April May June July August September October November December"
).split()


def format_date(day: dt.date, *, lang: str = "zh") -> str:
    """``2026年3月1日`` or ``1 March 2026``."""
    if lang == "zh":
        return f"{day.year}年{day.month}月{day.day}日"
    return f"{day.day} {_MONTHS_EN[day.month - 1]} {day.year}"


def format_time(moment: dt.datetime, *, lang: str = "zh") -> str:
    """A moment in Beijing time, to the minute: ``2026年3月1日 14:05（北京时间）``."""
    local = moment.astimezone(SHANGHAI) if moment.tzinfo else moment
    clock = f"{local.hour:02d}:{local.minute:02d}"
    if lang == "zh":
        return f"{format_date(local.date(), lang='zh')} {clock}（北京时间）"
    return f"{format_date(local.date(), lang='en')}, {clock} Beijing time"


def decided_on(record: ExplanationRecordV1) -> dt.date:
    """The day the decision was made, in Beijing: the day remedy periods count from."""
    return record.decided_at.astimezone(SHANGHAI).date()


def _join(parts: Sequence[str], lang: str) -> str:
    parts = [p for p in parts if p]
    if lang == "zh":
        return "、".join(parts)
    if len(parts) <= 1:
        return "".join(parts)
    return ", ".join(parts[:-1]) + " and " + parts[-1]


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:] if text else text


# --- the words for identifiers ----------------------------------------------------------

# Titles of the catalogued registry fields (and the named claims rulesets ask for), by
# registry and field: zh, en, unit. The registry catalogue may carry titles of its own
# (``fields: {birth_date: {type: date, title: {zh: …, en: …}}}``); those win.
_FIELD_TITLES: dict[tuple[str, str], tuple[str, str, str | None]] = {
    ("population", "id_number"): ("身份证号码", "identity card number", None),
    ("population", "name"): ("姓名", "name", None),
    ("population", "birth_date"): ("出生日期", "birth date", None),
    ("population", "gender"): ("性别", "sex", None),
    ("population", "hukou_city"): ("户籍所在市", "city of household registration", None),
    ("population", "hukou_district"): ("户籍所在区", "district of household registration", None),
    ("population", "hukou_since"): ("户籍迁入日期", "date the household registration moved", None),
    ("education", "certificate_number"): ("学历证书编号", "certificate number", None),
    ("education", "holder_id_number"): ("证书持有人身份证号码", "holder's identity number", None),
    ("education", "holder_name"): ("证书持有人姓名", "holder's name", None),
    ("education", "degree"): ("学历", "degree", None),
    ("education", "study_mode"): ("学习形式", "mode of study", None),
    ("education", "school"): ("毕业院校", "school", None),
    ("education", "graduation_date"): ("毕业日期", "graduation date", None),
    ("social_insurance", "id_number"): ("身份证号码", "identity card number", None),
    ("social_insurance", "city"): ("参保城市", "city of insurance", None),
    ("social_insurance", "status"): ("缴费状态", "contribution status", None),
    ("social_insurance", "months_contributed"): ("缴费月数", "months contributed", "个月"),
    ("social_insurance", "employer_credit_code"): (
        "用人单位统一社会信用代码",
        "employer's credit code",
        None,
    ),
    ("social_insurance", "employer_name"): ("用人单位名称", "employer's name", None),
    ("business_registry", "credit_code"): ("统一社会信用代码", "credit code", None),
    ("business_registry", "name"): ("单位名称", "name", None),
    ("business_registry", "registered_city"): ("注册地", "city of registration", None),
    ("business_registry", "status"): ("登记状态", "registration status", None),
    ("business_registry", "established_date"): ("成立日期", "date established", None),
    ("property", "id_number"): ("身份证号码", "identity card number", None),
    ("property", "city"): ("城市", "city", None),
    ("property", "right_type"): ("权利类型", "type of right", None),
    ("property", "owns_housing"): ("是否拥有住房", "whether you own housing", None),
    ("property", "rents_public_housing"): (
        "是否租住公共住房",
        "whether you rent public housing",
        None,
    ),
    ("subsidy_history", "received_before"): (
        "是否领取过本项补贴",
        "whether this subsidy was paid before",
        None,
    ),
    ("subsidy_history", "receiving"): (
        "是否正在领取本项待遇",
        "whether the benefit is being paid already",
        None,
    ),
    ("subsidy_history", "granted_date"): ("发放日期", "date paid", None),
    ("subsidy_history", "amount_yuan"): ("发放金额", "amount paid", "元"),
    ("death_registry", "death_date"): ("死亡日期", "date of death", None),
    ("death_registry", "deceased"): ("是否有死亡登记", "whether a death is registered", None),
    ("birth_certificates", "birth_date"): ("婴儿出生日期", "child's date of birth", None),
    ("birth_certificates", "babies"): ("婴儿数", "number of babies", None),
    ("birth_certificates", "dystocia"): ("是否难产", "whether the birth was difficult", None),
    ("birth_certificates", "hospital"): ("助产医疗机构", "hospital", None),
    ("si_monthly", "insurance"): ("险种", "insurance", None),
    ("si_monthly", "period"): ("缴费月份", "month", None),
    ("si_monthly", "status"): ("缴费状态", "contribution status", None),
    ("si_monthly", "employer_credit_code"): (
        "用人单位统一社会信用代码",
        "employer's credit code",
        None,
    ),
    ("employer_wages", "year"): ("年度", "year", None),
    ("employer_wages", "avg_monthly_wage"): (
        "上年度职工月平均工资",
        "average monthly wage of the previous year",
        "元",
    ),
    ("residence_permits", "city"): ("城市", "city", None),
    ("residence_permits", "valid_until"): ("居住证有效期至", "residence permit valid until", None),
    ("residence_permits", "residence_since"): ("居住起始日期", "resident since", None),
    ("residence_permits", "housing_type"): ("住所类型", "type of housing", None),
    ("tax_records", "consecutive_years"): ("连续纳税年数", "consecutive years of tax", "年"),
    ("tax_records", "avg_annual_tax"): ("年均纳税额", "average annual tax", "元"),
    ("tax_records", "violations"): ("涉税违法记录数", "tax violations", None),
    ("police_records", "criminal_convictions"): ("刑事犯罪记录数", "criminal convictions", None),
    ("police_records", "administrative_detentions"): (
        "行政拘留记录数",
        "administrative detentions",
        None,
    ),
}
# How a yes/no answer of a registry reads: (true zh, false zh, true en, false en).
_YES_NO: dict[tuple[str, str], tuple[str, str, str, str]] = {
    ("property", "owns_housing"): (
        "拥有住房",
        "没有住房",
        "you own housing",
        "you own no housing",
    ),
    ("property", "rents_public_housing"): (
        "正在租住公共住房",
        "没有租住公共住房",
        "you rent public housing",
        "you rent no public housing",
    ),
    ("subsidy_history", "received_before"): (
        "已领取过本项补贴",
        "没有领取过本项补贴",
        "this subsidy was paid to you before",
        "this subsidy was never paid to you",
    ),
    ("subsidy_history", "receiving"): (
        "正在领取本项待遇",
        "没有在领取本项待遇",
        "the benefit is already being paid to you",
        "the benefit is not being paid to you",
    ),
    ("death_registry", "deceased"): (
        "有死亡登记",
        "没有死亡登记",
        "a death is registered",
        "no death is registered",
    ),
    ("birth_certificates", "dystocia"): (
        "难产",
        "非难产",
        "a difficult birth",
        "not a difficult birth",
    ),
}
_OTHER_FACTS: dict[str, tuple[str, str]] = {
    "application.date": ("申请日期", "application date"),
    "applicant.id_number": ("申请人身份证号码", "applicant's identity card number"),
    "applicant.name": ("申请人姓名", "applicant's name"),
}
_LEGACY_OUTPUTS: dict[str, tuple[str, str, str]] = {
    "amount_yuan": ("补贴总额", "Subsidy in all", "元"),
    "monthly_amount_yuan": ("每月补贴", "Monthly subsidy", "元"),
    "months": ("发放月数", "Months paid", "个月"),
}
# Registry values that English readers would otherwise see in Chinese. Values not listed
# stay as recorded (and the page marks them as Chinese text).
_VALUE_EN = {
    "专科": "junior college",
    "本科": "bachelor's",
    "硕士": "master's",
    "博士": "doctoral",
    "无": "none",
    "全日制": "full-time",
    "非全日制": "part-time",
    "正常缴费": "contributing",
    "暂停缴费": "suspended",
    "欠费": "in arrears",
    "存续": "active",
    "在业": "in business",
    "注销": "deregistered",
    "吊销": "licence revoked",
    "男": "male",
    "女": "female",
    "深圳市": "Shenzhen",
    "广州市": "Guangzhou",
    "北京市": "Beijing",
    "上海市": "Shanghai",
    "东莞市": "Dongguan",
    "惠州市": "Huizhou",
    "佛山市": "Foshan",
    "黄埔区": "Huangpu District",
    "天河区": "Tianhe District",
    "越秀区": "Yuexiu District",
    "海珠区": "Haizhu District",
    "荔湾区": "Liwan District",
    "白云区": "Baiyun District",
    "番禺区": "Panyu District",
    "花都区": "Huadu District",
    "南沙区": "Nansha District",
    "从化区": "Conghua District",
    "增城区": "Zengcheng District",
    "福田区": "Futian District",
    "罗湖区": "Luohu District",
    "南山区": "Nanshan District",
    "宝安区": "Bao'an District",
    "龙岗区": "Longgang District",
    "自有产权": "own property",
    "租赁": "rented",
    "单位宿舍": "employer's dormitory",
    "产权": "ownership",
    "公共住房承租": "public housing tenancy",
    "社会保障卡": "social security card",
    "银行卡": "bank card",
    "生育保险": "maternity insurance",
    "养老保险": "pension insurance",
    "管理技术岗位": "managerial or technical post",
    "工人岗位": "worker's post",
}
_CJK_RUN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff]+")
_FACT = re.compile(r"(?<![\w.])([A-Za-z_]\w*)\.([A-Za-z_]\w*)")
_NAME = re.compile(r"(?<![\w.])([A-Za-z_]\w*)(?![\w.(])")
_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_PSEUDONYM = re.compile(r"~[0-9a-f]{8,}$")
_NO_RECORD = ("（无记录）", "(no record)")
_AGE_ASIDE = re.compile(r"\s*[（(][^（）()]*" + re.escape(AGE_MASK) + r"[^（）()]*[）)]")
"""An aside naming a date the record keeps only as an age: ``（出生日期****-**-**）``."""
_BOOL_ASSIGN_ZH = re.compile(r"\s*=\s*(是|否)")
_BOOL_ASSIGN_EN = re.compile(r"\s*=\s*(yes|no|true|false|True|False)\b")


def english_values(text: str) -> str:
    """Replace the registry values known in English (``硕士`` → ``master's``) in ``text``."""
    return _CJK_RUN.sub(lambda m: _VALUE_EN.get(m.group(0), m.group(0)), text)


@dataclass(frozen=True)
class DataUse:
    """One registry query, as the data-use log (数据使用记录) states it."""

    item: EvidenceItem
    time: str | None
    registry: str
    holder: str | None
    verb: str
    fields: list[str]
    purposes: list[str]
    basis: list[str]
    result: str | None
    """Why nothing came back (no record, an error, not asked), or None when it did."""
    sentence: str


@dataclass(frozen=True)
class Found:
    """The values a criterion compared from one source, in words, and where they came from."""

    texts: list[str]
    item: EvidenceItem | None
    source: str | None
    """数据来源：市公安局的人口库，2026年3月1日 14:05（北京时间）查询 — or None (computed)."""


class RecordWords:
    """One record's identifiers in words, in one language (``zh`` or ``en``).

    Field titles come from the registry catalogue when it has them, then from the titles of
    the catalogued fields kept here, then from the record (named values, parameters);
    never the raw ``population.birth_date``.
    """

    def __init__(
        self,
        record: ExplanationRecordV1,
        *,
        lang: str,
        guide: ServiceGuide | None = None,
        registries: RegistryCatalogue | None = None,
    ) -> None:
        if lang not in ("zh", "en"):
            raise ValueError(f"lang must be 'zh' or 'en', got {lang!r}")
        self.record = record
        self.lang = lang
        self.zh = lang == "zh"
        self.guide = guide
        self.registries = registries
        self.items = {e.id: e for e in record.evidence}
        self.values = {v.name: v for v in record.values}
        self.params = {p.name: p for p in record.parameters}
        self.cites = {b.id: b.citation() for b in record.legal_basis}

    def t(self, zh: str, en: str) -> str:
        """``zh`` or ``en``, in this reader's language."""
        return zh if self.zh else en

    # --- names -----------------------------------------------------------------------

    def outcome(self) -> str:
        """予以批准 / approved."""
        return (_OUTCOME_ZH if self.zh else _OUTCOME_EN)[self.record.outcome]

    def service(self) -> str:
        return self.record.service_name_zh if self.zh else self.record.service_name_en

    def authority(self) -> str:
        """The deciding authority. In English: its English name with the official Chinese name
        in brackets (what a person needs to find it), or the Chinese name alone without a guide."""
        zh = self.record.authority_zh
        if self.zh:
            return zh
        if self.guide is not None and self.guide.authority.name.zh == zh:
            return f"{self.guide.authority.name.en} ({zh})"
        return zh

    def office(self, office: Office) -> str:
        """A body's name: Chinese, or English with the Chinese name in brackets."""
        if self.zh:
            return office.name.zh
        return f"{office.name.en} ({office.name.zh})"

    def registry(self, item: EvidenceItem) -> str:
        if self.zh:
            return item.source_name_zh or "数据源"
        return item.source_name_en or "a registry"

    def holder(self, item: EvidenceItem) -> str | None:
        return item.holder_zh if self.zh else item.holder_en

    def registry_with_holder(self, item: EvidenceItem) -> str:
        """人口库（市公安局） / Population registry (Municipal Public Security Bureau)."""
        holder = self.holder(item)
        name = self.registry(item)
        if not holder:
            return name
        return f"{name}（{holder}）" if self.zh else f"{name} ({holder})"

    def citations(self, ids: Iterable[str]) -> list[str]:
        """《title》（文号）article for each cited id: the documents' official Chinese titles."""
        out: list[str] = []
        for i in ids:
            text = self.cites.get(i)
            if text and text not in out:
                out.append(text)
        return out

    def field_title(self, source: str, field: str) -> str:
        """The title of a registry field: 出生日期 / birth date."""
        if self.registries is not None:
            spec = self.registries.get(source)
            fs = spec.fields.get(field) if spec is not None else None
            title = getattr(fs, "title", None)
            if title is not None and hasattr(title, "zh"):  # a plain type name has no title
                return str(title.zh if self.zh else title.en)
        known = _FIELD_TITLES.get((source, field))
        if known is not None:
            return known[0] if self.zh else known[1]
        return self.t("相关信息", field.replace("_", " "))

    def fact_title(self, fact: str) -> str:
        """Any fact a criterion reads, in words."""
        if fact in _OTHER_FACTS:
            zh, en = _OTHER_FACTS[fact]
            return self.t(zh, en)
        prefix, _, field = fact.partition(".")
        if field and prefix in self.items:
            return self.field_title(self.items[prefix].source, field)
        if prefix == "form" and field:
            return self.t("申请表中填写的内容", f"the {field.replace('_', ' ')} on the form")
        if fact in self.values:
            v = self.values[fact]
            return v.title_zh if self.zh else v.title_en
        if fact in self.params:
            p = self.params[fact]
            return p.title_zh if self.zh else p.title_en
        return self.t("所需信息", fact.replace("_", " ").replace(".", " "))

    def value(
        self, value: JsonValue, *, source: str | None = None, field: str | None = None
    ) -> str:
        """A recorded value in words: yes/no answers as sentences, dates as dates."""
        if isinstance(value, bool):
            phrases = _YES_NO.get((source or "", field or ""))
            if phrases is not None:
                return phrases[(0 if value else 1) + (0 if self.zh else 2)]
            return self.t("是" if value else "否", "yes" if value else "no")
        if isinstance(value, str) and _ISO_DATE.match(value):
            try:
                return format_date(dt.date.fromisoformat(value), lang=self.lang)
            except ValueError:
                return value
        unit = _FIELD_TITLES.get((source or "", field or ""), ("", "", None))[2]
        text = format_amount(value, unit=unit, lang=self.lang)
        return text if self.zh else english_values(text)

    def reason(self, c: CriterionResult) -> str | None:
        """The criterion's reason as the ruleset words it, or None when it would read badly: a
        missing value shown as 无记录 (the missing data is said in words instead) or a yes/no
        value shown as ``=是`` (``found`` says it in words)."""
        text = c.reason_zh if self.zh else c.reason_en
        if text and AGE_MASK in text:
            text = _AGE_ASIDE.sub("", text)  # the age is said beside it; the date is not kept
        if not text or any(marker in text for marker in (*_NO_RECORD, AGE_MASK)):
            return None
        if (_BOOL_ASSIGN_ZH if self.zh else _BOOL_ASSIGN_EN).search(text):
            return None  # ``拥有住房=是``: ``found`` says it in words
        return text if self.zh else english_values(text)

    def requirement(self, c: CriterionResult) -> str:
        return c.title_zh if self.zh else c.title_en

    # --- evidence ----------------------------------------------------------------------

    def item_of(self, fact: str) -> EvidenceItem | None:
        prefix, _, field = fact.partition(".")
        return self.items.get(prefix) if field else None

    def found(self, c: CriterionResult) -> list[Found]:
        """What the criterion found, grouped by registry: the registry values it compared (not
        the applicant's own identifiers, nor intermediate expressions), then named values and
        parameters with their units."""
        groups: dict[str | None, list[str]] = {}
        seen: set[str] = set()
        for v in c.values:
            if v.missing or v.expression in seen:
                continue
            seen.add(v.expression)
            text = self._found_one(v)
            if text is not None:
                item = (
                    self.item_of(v.expression) if (v.source or "").startswith("registry:") else None
                )
                groups.setdefault(item.id if item else None, []).append(
                    text if self.zh else _sentence(text)
                )
        out: list[Found] = []
        for item_id, texts in groups.items():
            item = self.items[item_id] if item_id is not None else None
            out.append(Found(texts, item, self.source_line(item) if item else None))
        return out

    def source_line(self, item: EvidenceItem) -> str:
        """数据来源：市公安局的人口库，…查询 / Source: the Population registry held by …"""
        when = format_time(item.retrieved_at, lang=self.lang) if item.retrieved_at else None
        holder = self.holder(item)
        name = self.registry(item)
        verify = item.mode == "verify"
        if self.zh:
            where = f"{holder}的{name}" if holder else name
            return f"数据来源：{where}" + (
                f"，{when}{'核验' if verify else '查询'}" if when else ""
            )
        where = f"the {name}" + (f" held by the {holder}" if holder else "")
        return f"Source: {where}" + (
            f", {'verified' if verify else 'queried'} {when}" if when else ""
        )

    def _found_one(self, v: ComparedValue) -> str | None:
        source = v.source or ""
        if source.startswith("registry:"):
            item = self.item_of(v.expression)
            if item is None:
                return None
            field = v.expression.partition(".")[2]
            if is_personal_field(field) or (
                isinstance(v.value, str) and _PSEUDONYM.search(v.value)
            ):
                return None
            if isinstance(v.value, bool) and (item.source, field) in _YES_NO:
                return self.value(v.value, source=item.source, field=field)
            title = self.field_title(item.source, field)
            shown = self.value(v.value, source=item.source, field=field)
            return f"{title}{self.t('：', ': ')}{shown}"
        if source == "value" and v.expression in self.values:
            named = self.values[v.expression]
            title = named.title_zh if self.zh else named.title_en
            return f"{title}{self.t('：', ': ')}{self._with_unit(v.value, named.unit)}"
        if source == "parameter" and v.expression in self.params:
            p = self.params[v.expression]
            title = p.title_zh if self.zh else p.title_en
            return f"{title}{self.t('：', ': ')}{self._with_unit(v.value, p.unit)}"
        return None

    def _with_unit(self, value: JsonScalar, unit: str | None) -> str:
        text = format_amount(value, unit=unit, lang=self.lang)
        return text if self.zh else english_values(text)

    def missing(self, facts: Iterable[str]) -> list[str]:
        """Sentences saying which data could not be obtained from where:
        ``未能从人口库取得出生日期（人口库中没有查到您的记录）``."""
        groups: dict[str, list[str]] = {}
        loose: list[str] = []
        for fact in facts:
            item = self.item_of(fact)
            if item is None:
                if fact not in loose:
                    loose.append(fact)
                continue
            fields = groups.setdefault(item.id, [])
            field = fact.partition(".")[2]
            if field not in fields:
                fields.append(field)
        out: list[str] = []
        for item_id, fields in groups.items():
            item = self.items[item_id]
            titles = _join([self.field_title(item.source, f) for f in fields], self.lang)
            name = self.registry(item)
            why = self._why_missing(item)
            if len(fields) == 1 and titles.lower() in name.lower():  # the registry is that fact
                out.append(
                    self.t(f"未能取得{name}", _sentence(f"the {name} could not be obtained"))
                    + (self.t(f"（{why}）", f" ({why})") if why else "")
                )
                continue
            if self.zh:
                out.append(f"未能从{name}取得{titles}{f'（{why}）' if why else ''}")
            else:
                out.append(
                    _sentence(f"the {titles} could not be obtained from the {name}")
                    + (f" ({why})" if why else "")
                )
        for fact in loose:
            title = self.fact_title(fact)
            out.append(self.t(f"缺少{title}", _sentence(f"the {title} is missing")))
        return out

    def _why_missing(self, item: EvidenceItem) -> str | None:
        if item.status == "not_found":
            return self.t("该库中没有查到相关记录", "it holds no record for you")
        if item.status == "error":
            return self.t("查询时该库暂时无法访问", "it could not be reached")
        if item.status == "skipped":
            return self.t(
                "缺少查询所需的信息，未能查询", "it could not be asked: the key was missing"
            )
        return self.t("记录中该项为空", "the record leaves it empty")

    def missing_for_values(self) -> list[str]:
        """The registry facts a missing named value needed (for referrals with no criterion)."""
        facts: list[str] = []
        for v in self.record.values:
            if not v.missing:
                continue
            for i in v.inputs:
                if i.missing and (i.source or "").startswith("registry:"):
                    facts.append(i.expression)
        return list(dict.fromkeys(facts))

    def _facts_in(self, text: str) -> list[str]:
        """The ``evidence.field`` facts and the named values an expression mentions."""
        facts = [f"{a}.{b}" for a, b in _FACT.findall(text) if a in self.items]
        facts += [n for n in _NAME.findall(text) if n in self.values]
        return facts

    def _depends(self) -> dict[str, set[str]]:
        """For each named value, the evidence ids it reads, directly or through other values."""
        deps: dict[str, set[str]] = {}

        def visit(name: str, seen: frozenset[str]) -> set[str]:
            if name in deps:
                return deps[name]
            out: set[str] = set()
            v = self.values.get(name)
            if v is None or name in seen:
                return out
            for fact in [i.expression for i in v.inputs] + self._facts_in(v.expression):
                item = self.item_of(fact)
                if item is not None:
                    out.add(item.id)
                elif fact in self.values:
                    out |= visit(fact, seen | {name})
            deps[name] = out
            return out

        for name in self.values:
            visit(name, frozenset())
        return deps

    def data_use(self) -> list[DataUse]:
        """The data-use log: for every registry asked, when, what for and on which basis."""
        deps = self._depends()
        out: list[DataUse] = []
        for item in self.record.evidence:
            if item.status == "skipped":  # never asked: its key was not available
                continue
            prefix = f"{item.id}."
            fields: list[str] = [*item.values, *item.ages]
            users: list[CriterionResult] = []
            for c in self.record.criteria:
                facts = self._facts_in(c.condition) + list(c.missing_facts)
                facts += [v.expression for v in c.values]
                uses = any(f.startswith(prefix) for f in facts) or any(
                    v.source == "value" and item.id in deps.get(v.expression, set())
                    for v in c.values
                )
                if uses:
                    users.append(c)
                for f in facts:
                    if f.startswith(prefix) and f[len(prefix) :] not in fields:
                        fields.append(f[len(prefix) :])
            value_users = [v for v in self.record.values if item.id in deps.get(v.name, set())]
            for v in value_users:
                for i in v.inputs:
                    if (
                        i.expression.startswith(prefix)
                        and i.expression[len(prefix) :] not in fields
                    ):
                        fields.append(i.expression[len(prefix) :])
            if users:
                purposes = [self.requirement(c) for c in users]
                basis_ids = [b for c in users for b in c.legal_basis]
            else:
                purposes = [
                    self.t(f"计算{v.title_zh}", f"computing the {v.title_en.lower()}")
                    for v in value_users
                ]
                basis_ids = [b for v in value_users for b in v.legal_basis]
            out.append(self._use(item, fields, purposes, self.citations(basis_ids)))
        return out

    def _use(
        self, item: EvidenceItem, fields: list[str], purposes: list[str], basis: list[str]
    ) -> DataUse:
        when = format_time(item.retrieved_at, lang=self.lang) if item.retrieved_at else None
        titles = [self.field_title(item.source, f) for f in fields if f]
        names = _join(list(dict.fromkeys(titles)), self.lang) or self.t("相关信息", "data")
        holder = self.holder(item)
        registry = self.registry(item)
        verify = item.mode == "verify"
        result = None if item.status == "found" else self._why_missing(item)
        if self.zh:
            verb = "核验" if verify else "查询"
            where = f"{holder}的{registry}" if holder else registry
            text = f"为作出本决定，系统{f'于{when}' if when else ''}向{where}{verb}了{names}"
            text += f"，用途：{_join(purposes, 'zh')}" if purposes else ""
            text += f"（依据{'、'.join(basis)}）" if basis else ""
            text += "。" + (f"结果：{result}。" if result else "")
        else:
            verb = "verified" if verify else "queried"
            where = f"the {registry}" + (f" held by the {holder}" if holder else "")
            text = f"To make this decision, the system {verb} {names} with {where}"
            text += f" on {when}" if when else ""
            text += f". Used for: {_join(purposes, 'en')}" if purposes else ""
            text += f" (legal basis: {'; '.join(basis)})" if basis else ""
            text += "." + (f" Result: {result}." if result else "")
        return DataUse(
            item=item,
            time=when,
            registry=registry,
            holder=holder,
            verb=self.t("核验", "verified") if verify else self.t("查询", "queried"),
            fields=titles,
            purposes=purposes,
            basis=basis,
            result=result,
            sentence=text,
        )

    # --- outcome -----------------------------------------------------------------------

    def outputs(self) -> list[tuple[str, str]]:
        """Each output's title and its value with the unit: (生育津贴金额, 39,200.00元)."""
        outputs = self.record.outputs or {}
        columns = {c.name: c for c in self.record.output_columns}
        rows: list[tuple[str, str]] = []
        for name, value in outputs.items():
            col = columns.get(name)
            title = (col.title_zh if self.zh else col.title_en) if col else None
            unit = col.unit if col else None
            if not title and name in _LEGACY_OUTPUTS:
                zh, en, unit = _LEGACY_OUTPUTS[name]
                title = self.t(zh, en)
            shown = format_amount(value, unit=unit, lang=self.lang)
            rows.append((title or self.t("结果", "Result"), shown))
        return rows

    def parameter_rows(self) -> list[tuple[str, str]]:
        """Each dated parameter in force: its title, and its value with period and basis."""
        rows: list[tuple[str, str]] = []
        for p in self.record.parameters:
            start = format_date(p.effective_from, lang=self.lang)
            if p.effective_to is not None:
                end = format_date(p.effective_to, lang=self.lang)
                period = self.t(f"{start}至{end}", f"{start} to {end}")
            else:
                period = self.t(f"{start}起", f"from {start}")
            if isinstance(p.value, dict):
                value = self.t("、", "; ").join(
                    f"{k}{self.t('：', ': ')}{format_amount(v, unit=p.unit, lang=self.lang)}"
                    for k, v in p.value.items()
                )
            else:
                value = format_amount(p.value, unit=p.unit, lang=self.lang)
            basis = self.t("、", "; ").join(self.citations(p.legal_basis))
            title = self.t(p.title_zh, p.title_en)
            rows.append(
                (
                    title,
                    self.t(f"{value}（{period}，依据{basis}）", f"{value} ({period}; {basis})")
                    if basis
                    else self.t(f"{value}（{period}）", f"{value} ({period})"),
                )
            )
        return rows

    def value_rows(self) -> list[tuple[str, str]]:
        """Each named value as computed: its title and its value with unit (and table rules)."""
        rows: list[tuple[str, str]] = []
        for v in self.record.values:
            if v.missing:
                value = self.t("无法计算（缺少数据）", "cannot be computed (data missing)")
            else:
                value = format_amount(v.value, unit=v.unit, lang=self.lang)
                value = value if self.zh else english_values(value)
            if v.rules:
                value += self.t(
                    f"（按决策表第{'、'.join(str(n) for n in v.rules)}条规则）",
                    f" (decision table rules {', '.join(str(n) for n in v.rules)})",
                )
            rows.append((self.t(v.title_zh, v.title_en), value))
        return rows

    def referral_reasons(self) -> list[str]:
        """Why a person must look at the application, one sentence each, in words."""
        out: list[str] = []
        for c in self.record.criteria:
            title = self.requirement(c)
            if c.status is CriterionStatus.UNKNOWN:
                missing = self.missing(c.missing_facts)
                because = self.t("；".join(missing), ". ".join(missing))
                out.append(
                    self.t(
                        f"“{title}”无法判断：{because or '缺少所需数据'}。",
                        f"“{title}” could not be decided. {because or 'Data it needs is missing'}.",
                    )
                )
            elif c.status is CriterionStatus.FAIL and c.on_fail == "refer":
                reason = self.reason(c)
                out.append(
                    self.t(
                        f"“{title}”需要工作人员核实{('：' + reason) if reason else '。'}",
                        f"“{title}” needs an officer to check{(': ' + reason) if reason else '.'}",
                    )
                )
        covered = {f for c in self.record.criteria for f in c.missing_facts}
        for r in self.record.reasons:
            if r.code in (
                ReasonCode.OUTPUT_UNKNOWN,
                ReasonCode.OUTPUT_NO_MATCH,
                ReasonCode.OUTPUT_AMBIGUOUS,
            ):
                out.append(r.message_zh if self.zh else r.message_en)
                if r.code is ReasonCode.OUTPUT_UNKNOWN:
                    facts = [f for f in self.missing_for_values() if f not in covered]
                    out.extend(s + self.t("。", ".") for s in self.missing(facts))
            elif r.code is ReasonCode.ENGINE_FAULT:
                out.append(
                    self.t(
                        "系统内部出现故障，未能完成自动审批。",
                        "A fault in the system stopped the automatic decision.",
                    )
                )
        return out

    def counterfactuals(
        self, c: CriterionResult, counterfactuals: Sequence[Counterfactual]
    ) -> list[tuple[str, str]]:
        """What would have to change for ``c``, each with 可通过自身努力改变 / 无法改变."""
        return [
            (
                cf.text_zh if self.zh else cf.text_en,
                self.t("可通过自身努力改变", "you can change this")
                if cf.actionable
                else self.t("无法改变", "cannot be changed"),
            )
            for cf in counterfactuals
            if cf.criterion == c.id
        ]

    def remedy(self) -> RemedyNoticeV2:
        return remedy_for(
            self.record.outcome, decided_on(self.record), self.guide, self.record.authority_zh
        )

    def contact_lines(self, office: Office) -> list[tuple[str, str]]:
        """(label, text) for each detail of a body that the guide gives."""
        rows = [(self.t("名称", "Name"), self.office(office))]
        if office.address is not None:
            rows.append((self.t("地址", "Address"), self.t(office.address.zh, office.address.en)))
        if office.phone:
            rows.append((self.t("电话", "Phone"), office.phone))
        if office.url:
            rows.append((self.t("网址", "Website"), office.url))
        if office.hours is not None:
            rows.append(
                (self.t("办公时间", "Office hours"), self.t(office.hours.zh, office.hours.en))
            )
        return rows

    def review_status(self, review: ReviewLike) -> str:
        """One sentence on where the review case stands."""
        kind = {
            "referral": self.t("人工审核", "review by an officer"),
            "objection": self.t("异议复核", "review of your objection"),
            "human_decision": self.t("人工决定", "decision by a person"),
        }.get(review.kind, review.kind)
        due = format_date(review.due_on, lang=self.lang)
        if review.status == "resolved":
            outcome = review.outcome or ""
            try:
                outcome = (_OUTCOME_ZH if self.zh else _OUTCOME_EN)[Outcome(outcome)]
            except ValueError:
                pass
            text = self.t(
                f"{kind}（案件编号{review.case_id}）已办结，结果：{outcome or '见新的决定'}。",
                f"The {kind} (case {review.case_id}) is resolved: {outcome or 'see the new decision'}.",
            )
            if review.reason:
                text += self.t(f"理由：{review.reason}", f" Reason: {review.reason}")
            if review.human_decision_id:
                text += self.t(
                    f"（新的决定编号{review.human_decision_id}）",
                    f" (new decision {review.human_decision_id})",
                )
            return text
        state = (
            self.t("已受理，等待工作人员处理", "has been received and waits for an officer")
            if review.status == "open"
            else self.t("工作人员正在审核", "is being examined by an officer")
        )
        return self.t(
            f"{kind}（案件编号{review.case_id}）{state}，预计{due}前办结（遇法定节假日顺延）。",
            f"The {kind} (case {review.case_id}) {state}; it is due by {due} (later if public holidays fall in between).",
        )


# --- the text ---------------------------------------------------------------------------


def render_text(
    record: ExplanationRecordV1,
    *,
    lang: str = "zh",
    guide: ServiceGuide | None = None,
    counterfactuals: Sequence[Counterfactual] = (),
    review: ReviewLike | None = None,
    registries: RegistryCatalogue | None = None,
) -> str:
    """The explanation a citizen reads, in one language (``zh`` or ``en``).

    What was decided and by whom; for an approval the amounts and how they are paid; for a
    refusal each unmet condition with what was found, where, on which legal basis and what
    would have to change, then the remedies with their deadlines and bodies; for a referral
    why, who reviews it and by when (a referral is not a final decision: no appeal
    deadlines). Then the data-use log, the contact and a short verification line.
    """
    w = RecordWords(record, lang=lang, guide=guide, registries=registries)
    return "\n".join(_lines(w, counterfactuals, review))


def _lines(
    w: RecordWords, counterfactuals: Sequence[Counterfactual], review: ReviewLike | None
) -> list[str]:
    r = w.record
    t = w.t
    lines: list[str] = [
        t(f"{r.service_name_zh}：审批结果告知", f"{r.service_name_en}: notice of decision"),
        "",
    ]
    if w.zh:
        lines.append(
            f"您于{format_date(r.application_date)}提交的“{r.service_name_zh}”申请（申请编号{r.application_id}），经系统自动审批，结果为：{w.outcome()}。"
        )
    else:
        lines.append(
            f"Your application for “{r.service_name_en}” submitted on {format_date(r.application_date, lang='en')} (application {r.application_id}) was decided automatically. Outcome: {w.outcome()}."
        )
    lines.append(
        t(
            f"作出决定的机关：{w.authority()}；决定时间：{format_time(r.decided_at)}。",
            f"Decided by: {w.authority()}, on {format_time(r.decided_at, lang='en')}.",
        )
    )
    remedy = w.remedy()
    if r.outcome is Outcome.APPROVED:
        lines.extend(_approved(w))
    elif r.outcome is Outcome.REJECTED:
        lines.extend(_rejected(w, counterfactuals))
    else:
        lines.extend(_referred(w, remedy))
    lines.extend(_computation(w))
    if review is not None:
        lines += ["", t("复核进度：", "Review:"), "  " + w.review_status(review)]
    if remedy.routes:
        lines.append("")
        lines.append(
            t("如您不同意本决定，可以：", "If you disagree with this decision you can:")
            if r.outcome is Outcome.REJECTED
            else t("您的权利：", "Your rights:")
        )
        for route in remedy.routes:
            title = t(route.title_zh, route.title_en)
            how = t(route.how_zh, route.how_en)
            basis = t(route.basis, route.basis_en)
            if route.deadline is not None:
                by = format_date(route.deadline, lang=w.lang)
                lines.append(
                    t(
                        f"  · {title}（{by}前）：{how}依据：{basis}。",
                        f"  - {title} (by {by}): {how} Legal basis: {basis}.",
                    )
                )
            else:
                lines.append(
                    t(
                        f"  · {title}：{how}依据：{basis}。",
                        f"  - {title}: {how} Legal basis: {basis}.",
                    )
                )
            if route.contact is not None and route.contact.phone:
                lines.append(
                    t(
                        f"    {route.body_zh}，电话{route.contact.phone}",
                        f"    {w.office(route.contact)}, phone {route.contact.phone}",
                    )
                )
    lines += ["", t("数据使用记录：", "How your data was used:")]
    lines.extend(f"  · {use.sentence}" for use in w.data_use())
    if w.guide is not None:
        lines += ["", t("联系方式：", "Contact:")]
        lines.extend(
            f"  {label}{t('：', ': ')}{text}" for label, text in w.contact_lines(w.guide.authority)
        )
    lines += [
        "",
        t(
            f"适用规则：“{r.service_name_zh}”第{r.ruleset_version}版。",
            f"Rules applied: “{r.service_name_en}”, version {r.ruleset_version}.",
        ),
        t(
            f"核验信息：决定编号{r.decision_id}；记录摘要{r.record_hash[:23]}…",
            f"Verification: decision {r.decision_id}; record digest {r.record_hash[:23]}…",
        ),
    ]
    return lines


def _approved(w: RecordWords) -> list[str]:
    t = w.t
    lines: list[str] = []
    rows = w.outputs()
    if rows:
        lines += ["", t("批准的结果：", "What was granted:")]
        lines.extend(f"  {title}{t('：', ': ')}{shown}" for title, shown in rows)
    guide = w.guide
    if guide is not None and guide.payment is not None:
        lines += [
            "",
            t("何时发放：", "When it is paid:")
            + " "
            + t(guide.payment.when.zh, guide.payment.when.en),
            t("如何发放：", "How it is paid:")
            + " "
            + t(guide.payment.how.zh, guide.payment.how.en),
        ]
    if guide is not None and guide.after_approval is not None:
        lines += [
            "",
            t("接下来：", "What happens next:")
            + " "
            + t(guide.after_approval.zh, guide.after_approval.en),
        ]
    return lines


def _rejected(w: RecordWords, counterfactuals: Sequence[Counterfactual]) -> list[str]:
    t = w.t
    lines = ["", t("不符合的条件：", "Conditions not met:")]
    failed = [c for c in w.record.criteria if c.status is CriterionStatus.FAIL]
    for n, c in enumerate(failed, 1):
        lines.append(f"{n}. {w.requirement(c)}")
        reason = w.reason(c)
        if reason:
            lines.append(t(f"   原因：{reason}", f"   Why: {reason}"))
        for found in w.found(c):
            text = t("；".join(found.texts), "; ".join(found.texts))
            source = t(f"（{found.source}）", f" ({found.source})") if found.source else ""
            lines.append(t(f"   查到的情况：{text}{source}", f"   What was found: {text}{source}"))
        basis = w.citations(c.legal_basis)
        if basis:
            lines.append(t(f"   依据：{'、'.join(basis)}", f"   Legal basis: {'; '.join(basis)}"))
        for text, tag in w.counterfactuals(c, counterfactuals):
            lines.append(
                t(
                    f"   需要改变什么：{text}（{tag}）",
                    f"   What would have to change: {text} ({tag})",
                )
            )
    passed = [w.requirement(c) for c in w.record.criteria if c.status is CriterionStatus.PASS]
    if passed:
        lines.append(
            t(
                f"其余{len(passed)}项条件均符合：{'、'.join(passed)}。",
                f"The other {len(passed)} condition(s) are met: {'; '.join(passed)}.",
            )
        )
    return lines


def _referred(w: RecordWords, remedy: RemedyNoticeV2) -> list[str]:
    t = w.t
    lines = [
        "",
        t(
            "这不是最终决定：系统未能自动作出决定，您的申请已转交工作人员审核。",
            "This is not a final decision: the system could not decide on its own, and an officer will examine your application.",
        ),
    ]
    reasons = w.referral_reasons()
    if reasons:
        lines += ["", t("转人工审核的原因：", "Why an officer must look at it:")]
        lines.extend(f"  · {s}" for s in reasons)
    steps = remedy.referral
    if steps is not None:
        lines += ["", t("接下来：", "What happens next:")]
        body = (
            w.office(steps.contact)
            if steps.contact is not None
            else t(steps.body_zh, steps.body_en)
        )
        if steps.due_on is not None and steps.working_days is not None:
            due = format_date(steps.due_on, lang=w.lang)
            lines.append(
                t(
                    f"  {body}将在{steps.working_days}个工作日内（{due}前，遇法定节假日顺延）审核您的申请并作出决定。",
                    f"  {body} will examine your application and decide within {steps.working_days} working days (by {due}; later if public holidays fall in between).",
                )
            )
        else:
            lines.append(
                t(
                    f"  {body}将审核您的申请并作出决定。",
                    f"  {_sentence(body)} will examine your application and decide.",
                )
            )
        lines.append(
            t(
                "  作出决定后，您会收到新的决定书，其中会说明您不同意时可以怎么做。目前您无需另行申请。",
                "  You will then receive the new decision, which says what you can do if you disagree. You need not apply again.",
            )
        )
        prepare = steps.prepare_zh if w.zh else steps.prepare_en
        if prepare:
            lines.append(t("  您可以提前准备：", "  You may prepare:"))
            lines.extend(f"    - {p}" for p in prepare)
    return lines


def _computation(w: RecordWords) -> list[str]:
    """The parameters in force and the computed values (record version 2)."""
    t = w.t
    lines: list[str] = []
    params = w.parameter_rows()
    if params:
        lines += ["", t("适用的政策参数：", "Policy parameters in force:")]
        lines.extend(f"  {title}{t('：', ': ')}{text}" for title, text in params)
    values = w.value_rows()
    if values:
        lines += ["", t("计算过程：", "How it was computed:")]
        lines.extend(f"  {title}{t('：', ': ')}{text}" for title, text in values)
    return lines
