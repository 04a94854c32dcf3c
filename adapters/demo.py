"""A deterministic generator of demo registry CSVs and sample applications for the file adapters."""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import json
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict

from engine.dates import age_on
from engine.privacy import check_digit

if TYPE_CHECKING:
    from engine.registries import RegistrySpec

__all__ = [
    "CSV_COLUMNS",
    "DEMO_AS_OF",
    "SERVICE",
    "DemoDataError",
    "DemoSummary",
    "demo_fingerprint",
    "demo_is_current",
    "generate_demo_data",
]

CSV_COLUMNS: dict[str, tuple[str, ...]] = {
    "population.csv": (
        "record_id", "id_number", "name", "birth_date", "gender", "hukou_city", "hukou_since",
        "hukou_district",
    ),
    "education.csv": (
        "record_id", "certificate_number", "holder_id_number", "holder_name", "degree",
        "study_mode", "school", "graduation_date",
    ),
    "social_insurance.csv": (
        "record_id", "id_number", "city", "status", "months_contributed",
        "employer_credit_code", "employer_name",
    ),
    "business_registry.csv": (
        "record_id", "credit_code", "name", "registered_city", "status", "established_date",
    ),
    "property.csv": ("record_id", "id_number", "city", "right_type"),
    "subsidy_history.csv": (
        "record_id", "id_number", "service", "granted_date", "amount_yuan",
    ),
}  # fmt: skip
"""The files the generator writes for the talent-housing samples (file name -> columns, in
order). The registry catalogue (``rulesets/registries.yaml``) declares how each is read."""

SERVICE = "talent-housing-subsidy"
"""The service the sample applications apply for."""

Outcome = Literal["APPROVED", "REJECTED", "REFERRED"]

_SZ = "深圳市"
_OTHER_CITIES = ("广州市", "东莞市", "惠州市", "长沙市", "武汉市", "北京市", "成都市", "南京市")
_REGIONS = (
    "440304",  # 深圳市福田区
    "440305",  # 深圳市南山区
    "440306",  # 深圳市宝安区
    "440307",  # 深圳市龙岗区
    "440106",  # 广州市天河区
    "430102",  # 长沙市芙蓉区
    "420111",  # 武汉市洪山区
    "110105",  # 北京市朝阳区
    "510107",  # 成都市武侯区
    "320106",  # 南京市鼓楼区
    "360102",  # 南昌市东湖区
    "410105",  # 郑州市金水区
    "450103",  # 南宁市青秀区
    "350203",  # 厦门市思明区
)
_SCHOOLS = (
    ("10001", "北京大学"),
    ("10003", "清华大学"),
    ("10246", "复旦大学"),
    ("10284", "南京大学"),
    ("10335", "浙江大学"),
    ("10486", "武汉大学"),
    ("10487", "华中科技大学"),
    ("10533", "中南大学"),
    ("10558", "中山大学"),
    ("10561", "华南理工大学"),
    ("10590", "深圳大学"),
    ("14325", "南方科技大学"),
    ("11078", "广州大学"),
    ("10611", "重庆大学"),
)
_FAMILY = (
    "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许"
    "韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈"
)
_GIVEN_MALE = "伟强磊军洋勇杰涛明超辉刚健鹏华飞宇浩然子轩博文俊峰建国志远天佑思源晨阳皓"
_GIVEN_FEMALE = "芳娜敏静丽艳娟霞婷雪琳欣怡雨桐佳慧梦瑶诗涵晓月思琪雅萱可馨若"
_WORDS = (
    "华信 腾达 前海 蛇口 科兴 鹏程 创维 海岸 星河 中科 云帆 数智 安居 启明 锐思 南山 福田 宝安 "
    "龙岗 光明 智联 海纳 汇通 新锐 恒信 天成 聚力 凌云 卓越 博远 同创 致远 嘉禾 和悦 "
    "盛世 金桥 远航 松禾 青藤 立方"
).split()
_INDUSTRIES = (
    "科技 信息技术 电子 软件 生物医药 新能源 智能制造 数据服务 通信技术 精密仪器 "
    "材料科技 网络科技 医疗器械 半导体 机器人 检测技术 物联网 供应链 文化传媒 设计咨询"
).split()
_OTHER_SERVICES = (
    "graduate-employment-subsidy",
    "entrepreneurship-subsidy",
    "skills-training-subsidy",
)
_CREDIT_CHARS = "0123456789ABCDEFGHJKLMNPQRTUWXY"
_DEGREE_DIGIT = {"博士": "1", "硕士": "2", "本科": "3", "专科": "5"}
_AGE_LIMIT_2016 = {"本科": 30, "硕士": 35, "博士": 40}
_MIN_AGE = {"专科": 20, "本科": 21, "硕士": 23, "博士": 26}
_AMOUNT_2016 = {"本科": 15000, "硕士": 25000, "博士": 30000}

# Bulk profiles: (name, weight in percent, expected outcome). Every profile breaks at most one
# criterion; everything else about the person passes.
_PROFILES: tuple[tuple[str, int, Outcome], ...] = (
    ("eligible", 58, "APPROVED"),
    ("too_old", 6, "REJECTED"),
    ("hukou_old", 4, "REJECTED"),
    ("hukou_elsewhere", 2, "REJECTED"),
    ("part_time", 3, "REJECTED"),
    ("junior_college", 3, "REJECTED"),
    ("someone_elses_certificate", 1, "REJECTED"),
    ("no_education", 3, "REFERRED"),
    ("no_population", 2, "REFERRED"),
    ("no_social_insurance", 2, "REFERRED"),
    ("social_insurance_inactive", 3, "REJECTED"),
    ("social_insurance_elsewhere", 1, "REJECTED"),
    ("employer_inactive", 2, "REJECTED"),
    ("employer_elsewhere", 1, "REJECTED"),
    ("received_before", 3, "REJECTED"),
    ("owns_housing", 3, "REJECTED"),
    ("rents_public_housing", 1, "REJECTED"),
    ("degree_mismatch", 2, "REFERRED"),
)
_BULK_FIRST_DAY = dt.date(2025, 1, 2)
_BULK_LAST_DAY = dt.date(2025, 11, 28)
DEMO_AS_OF = dt.date(2026, 3, 1)
"""The day the demo snapshots are "exported", written in every manifest (a fixed date, so the
output stays byte-for-byte the same; the shipped catalogue declares no ``max_age_days``)."""


class DemoSummary(BaseModel):
    """What ``generate_demo_data`` wrote: row counts per file, sample names, the bulk mix."""

    model_config = ConfigDict(frozen=True)

    seed: int
    people: int
    """Generated people in the bulk population (the samples' people come on top)."""
    rows: dict[str, int]
    """Data rows (without header) per CSV file name."""
    samples: tuple[str, ...]
    """Names of the sample applications, each written to ``applications/<name>.json``."""
    bulk_applications: int
    """Lines in ``applications.jsonl``: one application per bulk person."""
    profiles: dict[str, int]
    """How many bulk people were generated with each profile (in generation order)."""
    expected_outcomes: dict[str, int]
    """The bulk applications' expected outcomes (APPROVED, REJECTED, REFERRED)."""
    services: dict[str, int] = {}
    """Services whose ``demo/`` folder was merged, with their number of sample applications."""
    fingerprint: str = ""
    """A hash of the generator's inputs (see ``demo_fingerprint``)."""


@dataclass(frozen=True)
class _Person:
    id_number: str
    name: str
    birth_date: dt.date
    gender: str


@dataclass
class _Builder:
    """Holds the random source, the tables being written and the identifiers already used."""

    rng: random.Random
    tables: dict[str, list[tuple[str, ...]]] = field(
        default_factory=lambda: {name: [] for name in CSV_COLUMNS}
    )
    used: set[str] = field(default_factory=set)
    """Identifiers handed out (ID numbers, certificates, credit codes, names of companies)."""
    cert_seq: int = 0

    def _claim(self, value: str) -> bool:
        if value in self.used:
            return False
        self.used.add(value)
        return True

    def add(self, file_name: str, prefix: str, *values: str) -> str:
        rows = self.tables[file_name]
        record_id = f"{prefix}{len(rows) + 1:08d}"
        row = (record_id, *values)
        assert len(row) == len(CSV_COLUMNS[file_name])
        rows.append(row)
        return record_id

    # -- identifiers -------------------------------------------------------------------------

    def id_number(self, *, region: str, birth: dt.date, male: bool) -> str:
        while True:
            seq = self.rng.randrange(0, 1000, 2) + (1 if male else 0)
            first17 = f"{region}{birth:%Y%m%d}{seq:03d}"
            number = first17 + check_digit(first17)
            if self._claim(number):
                return number

    def name(self, *, male: bool) -> str:
        given = _GIVEN_MALE if male else _GIVEN_FEMALE
        length = 2 if self.rng.random() < 0.7 else 1
        return self.rng.choice(_FAMILY) + "".join(self.rng.choice(given) for _ in range(length))

    def certificate_number(self, *, school_code: str, year: int, degree: str) -> str:
        while True:
            self.cert_seq += 1
            number = f"{school_code}{year:04d}{_DEGREE_DIGIT[degree]}{self.cert_seq:08d}"
            if self._claim(number):
                return number

    def credit_code(self, *, region: str) -> str:
        while True:
            tail = "".join(self.rng.choice(_CREDIT_CHARS) for _ in range(10))
            code = f"91{region}{tail}"
            if self._claim(code):
                return code

    def company_name(self, *, city: str) -> str:
        for attempt in range(50):
            words = self.rng.sample(_WORDS, 2)
            suffix = "股份有限公司" if self.rng.random() < 0.15 else "有限公司"
            name = f"{city}{words[0]}{words[1]}{self.rng.choice(_INDUSTRIES)}{suffix}"
            if attempt >= 10:
                name = f"{name[: -len(suffix)]}第{attempt}分公司"
            if self._claim(name):
                return name
        raise RuntimeError("ran out of company names")

    def day_between(self, first: dt.date, last: dt.date) -> dt.date:
        return first + dt.timedelta(days=self.rng.randint(0, (last - first).days))

    def birth_for_age(self, *, on: dt.date, youngest: int, oldest: int) -> dt.date:
        """A birth date making the person ``youngest``..``oldest`` 周岁 old on ``on``."""
        while True:
            birth = on - dt.timedelta(days=self.rng.randint(youngest * 365, (oldest + 1) * 366))
            if youngest <= age_on(birth, on) <= oldest:
                return birth


@dataclass(frozen=True)
class _Company:
    credit_code: str
    name: str


def _add_company(
    b: _Builder,
    *,
    city: str,
    region: str,
    status: str,
    fixed: tuple[str, str, str] | None = None,
) -> _Company:
    """Register a company; ``fixed`` = (credit code, name, established date) for samples."""
    if fixed is None:
        code, name = b.credit_code(region=region), b.company_name(city=city)
        established = b.day_between(dt.date(2000, 1, 1), dt.date(2024, 12, 31)).isoformat()
    else:
        code, name, established = fixed
        b.used.update((code, name))
    b.add("business_registry.csv", "BIZ", code, name, city, status, established)
    return _Company(credit_code=code, name=name)


def _graduation(on: dt.date, years_ago: int) -> dt.date:
    graduation = dt.date(on.year - years_ago, 6, 30)
    return graduation if graduation < on else dt.date(on.year - years_ago - 1, 6, 30)


def _submitted_at(day: dt.date, hour: int, minute: int) -> str:
    return f"{day.isoformat()}T{hour:02d}:{minute:02d}:00+08:00"


def _body(
    *,
    application_id: str,
    submitted_at: str,
    person: _Person,
    degree: str,
    certificate_number: str,
    employer_name: str,
    phone: str,
) -> dict[str, object]:
    return {
        "service": SERVICE,
        "application_id": application_id,
        "submitted_at": submitted_at,
        "applicant": {"id_number": person.id_number, "name": person.name},
        "form": {
            "degree": degree,
            "certificate_number": certificate_number,
            "employer_name": employer_name,
            "phone": phone,
        },
    }


# -- hand-crafted samples --------------------------------------------------------------------


@dataclass(frozen=True)
class _SamplePerson:
    """One hand-crafted person; every registry record passes unless a flag says otherwise."""

    seq: int
    name: str
    male: bool
    birth: str
    degree: str
    hukou_since: str
    school: int = 8
    graduated: str = "2024-06-30"
    population: bool = True
    study_mode: str = "全日制"
    social_insurance: bool = True
    employer_active: bool = True
    owns_housing: bool = False
    received_before: bool = False


@dataclass(frozen=True)
class _Sample:
    name: str
    person: str
    submitted_at: str
    declared_degree: str | None
    outcome: Outcome
    version: str
    failed: tuple[str, ...] = ()
    unknown: tuple[str, ...] = ()
    amount_yuan: int | None = None
    description: str = ""


_SAMPLE_PEOPLE: dict[str, _SamplePerson] = {
    "master": _SamplePerson(
        seq=901, name="陈思远", male=True, birth="1996-03-15", degree="硕士",
        hukou_since="2025-03-01",
    ),
    "doctor": _SamplePerson(
        seq=902, name="林雨桐", male=False, birth="1990-07-08", degree="博士",
        hukou_since="2025-02-10", school=11, graduated="2024-12-31",
    ),
    "bachelor2026": _SamplePerson(
        seq=903, name="王浩然", male=True, birth="1995-05-05", degree="本科",
        hukou_since="2025-09-15", school=10, graduated="2025-06-30",
    ),
    "many": _SamplePerson(
        seq=905, name="刘建国", male=True, birth="1985-01-01", degree="本科",
        hukou_since="2025-01-20", graduated="2008-06-30", owns_housing=True,
        received_before=True,
    ),
    "no_population": _SamplePerson(
        seq=904, name="赵欣怡", male=False, birth="1997-11-11", degree="硕士",
        hukou_since="2025-03-01", population=False,
    ),
    "mismatch": _SamplePerson(
        seq=907, name="黄子轩", male=True, birth="1995-02-14", degree="硕士",
        hukou_since="2025-04-01",
    ),
    "boundary": _SamplePerson(
        seq=909, name="周晓明", male=True, birth="1993-06-15", degree="本科",
        hukou_since="2025-09-01", school=3, graduated="2015-06-30",
    ),
    "birthday": _SamplePerson(
        seq=906, name="吴佳怡", male=False, birth="1995-06-01", degree="本科",
        hukou_since="2025-01-15", graduated="2017-06-30",
    ),
    "day_after": _SamplePerson(
        seq=911, name="郑宇航", male=True, birth="1995-06-01", degree="本科",
        hukou_since="2025-01-15", graduated="2017-06-30",
    ),
    "feb29": _SamplePerson(
        seq=908, name="孙雅琪", male=False, birth="1988-02-29", degree="硕士",
        hukou_since="2022-10-01", graduated="2022-06-30",
    ),
    "deregistered": _SamplePerson(
        seq=913, name="马俊杰", male=True, birth="1994-09-09", degree="硕士",
        hukou_since="2025-02-01", employer_active=False,
    ),
    "no_social_insurance": _SamplePerson(
        seq=910, name="何静", male=False, birth="1998-04-20", degree="本科",
        hukou_since="2025-03-20", social_insurance=False,
    ),
    "part_time": _SamplePerson(
        seq=915, name="高天宇", male=True, birth="1992-12-03", degree="硕士",
        hukou_since="2025-02-15", study_mode="非全日制",
    ),
}  # fmt: skip

_SAMPLES: tuple[_Sample, ...] = (
    _Sample(
        "approved-master-2016", "master", "2025-06-01T10:00:00+08:00", None, "APPROVED", "2016",
        amount_yuan=25000,
        description="A full-time master's graduate aged 29 is approved for 25,000 yuan.",
    ),
    _Sample(
        "approved-doctor-2016", "doctor", "2025-05-20T09:30:00+08:00", None, "APPROVED", "2016",
        amount_yuan=30000,
        description="A full-time doctoral graduate aged 34 is approved for 30,000 yuan.",
    ),
    _Sample(
        "approved-bachelor-2026", "bachelor2026", "2026-03-01T10:00:00+08:00", None,
        "APPROVED", "2026", amount_yuan=30000,
        description="Under the 2026 rules a bachelor aged 30 is approved for 1,250 yuan a "
        "month for 24 months.",
    ),
    _Sample(
        "rejected-many", "many", "2025-06-01T11:00:00+08:00", None, "REJECTED", "2016",
        failed=("C2", "C6", "C7"),
        description="A bachelor aged 40 who owns a Shenzhen home and was paid before is "
        "rejected on three criteria.",
    ),
    _Sample(
        "referred-no-population", "no_population", "2025-06-01T14:00:00+08:00", None,
        "REFERRED", "2016", unknown=("C2", "C3"),
        description="With no population record, age and household registration are unknown "
        "and the application is referred.",
    ),
    _Sample(
        "referred-degree-mismatch", "mismatch", "2025-06-01T15:00:00+08:00", "博士",
        "REFERRED", "2016", failed=("C8",),
        description="Declaring a doctorate when the registry holds a master's degree is "
        "referred to a person.",
    ),
    _Sample(
        "version-boundary-2025-12-31", "boundary", "2025-12-31T23:30:00+08:00", None,
        "REJECTED", "2016", failed=("C2",),
        description="A bachelor aged 32 applying on 31 December 2025 (2016 rules, under 30) "
        "is rejected.",
    ),
    _Sample(
        "version-boundary-2026-01-01", "boundary", "2026-01-01T00:10:00+08:00", None,
        "APPROVED", "2026", amount_yuan=30000,
        description="The same bachelor applying on 1 January 2026 (2026 rules, under 35) is "
        "approved.",
    ),
    _Sample(
        "version-boundary-utc", "boundary", "2025-12-31T16:30:00Z", None, "APPROVED", "2026",
        amount_yuan=30000,
        description="16:30 UTC on 31 December 2025 is 1 January 2026 in Shanghai, so the "
        "2026 rules decide.",
    ),
    _Sample(
        "age-birthday-today", "birthday", "2025-06-01T09:00:00+08:00", None, "APPROVED",
        "2016", amount_yuan=15000,
        description="A bachelor applying on her 30th birthday is still under 30 and approved.",
    ),
    _Sample(
        "age-day-after-birthday", "day_after", "2025-06-02T09:00:00+08:00", None, "REJECTED",
        "2016", failed=("C2",),
        description="A bachelor applying the day after his 30th birthday has reached 30 and "
        "is rejected.",
    ),
    _Sample(
        "age-feb29-common-year", "feb29", "2023-02-28T09:00:00+08:00", None, "APPROVED",
        "2016", amount_yuan=25000,
        description="A master born on 29 February applying on 28 February 2023 is still "
        "under 35 and approved.",
    ),
    _Sample(
        "age-feb29-day-after", "feb29", "2023-03-01T09:00:00+08:00", None, "REJECTED", "2016",
        failed=("C2",),
        description="The same master applying on 1 March 2023 has reached 35 and is rejected.",
    ),
    _Sample(
        "rejected-deregistered-employer", "deregistered", "2025-06-01T16:00:00+08:00", None,
        "REJECTED", "2016", failed=("C5",),
        description="An employer that has been deregistered (注销) fails C5.",
    ),
    _Sample(
        "referred-no-social-insurance", "no_social_insurance", "2025-06-01T16:30:00+08:00",
        None, "REFERRED", "2016", unknown=("C4", "C5"),
        description="With no social-insurance record, contributions and employer are unknown "
        "and the application is referred.",
    ),
    _Sample(
        "rejected-part-time", "part_time", "2025-06-01T17:00:00+08:00", None, "REJECTED",
        "2016", failed=("C1",),
        description="A part-time (非全日制) master's degree fails C1.",
    ),
)  # fmt: skip


def _write_samples(b: _Builder, out_dir: Path) -> list[str]:
    """Write the hand-crafted people's records and their applications; return sample names."""
    active = _add_company(
        b,
        city=_SZ,
        region="440305",
        status="存续",
        fixed=("91440300MA5F000001", "深圳市南山示范科技有限公司", "2012-05-18"),
    )
    dead = _add_company(
        b,
        city=_SZ,
        region="440304",
        status="注销",
        fixed=("91440300MA5F000002", "深圳市福田旧日贸易有限公司", "2010-03-02"),
    )
    made: dict[str, tuple[_Person, str, str]] = {}
    for key, p in _SAMPLE_PEOPLE.items():
        birth = dt.date.fromisoformat(p.birth)
        first17 = f"440305{birth:%Y%m%d}{p.seq:03d}"
        person = _Person(first17 + check_digit(first17), p.name, birth, "男" if p.male else "女")
        b.used.add(person.id_number)
        if p.population:
            b.add(
                "population.csv", "POP", person.id_number, person.name, p.birth,
                person.gender, _SZ, p.hukou_since, "",
            )  # fmt: skip
        graduated = dt.date.fromisoformat(p.graduated)
        school_code, school = _SCHOOLS[p.school]
        certificate = f"{school_code}{graduated.year}{_DEGREE_DIGIT[p.degree]}99{p.seq:06d}"
        b.used.add(certificate)
        b.add(
            "education.csv", "EDU", certificate, person.id_number, person.name, p.degree,
            p.study_mode, school, p.graduated,
        )  # fmt: skip
        employer = active if p.employer_active else dead
        if p.social_insurance:
            b.add(
                "social_insurance.csv", "SI", person.id_number, _SZ, "正常缴费", "6",
                employer.credit_code, employer.name,
            )  # fmt: skip
        if p.owns_housing:
            b.add("property.csv", "PRP", person.id_number, _SZ, "产权")
        if p.received_before:
            b.add(
                "subsidy_history.csv", "SUB", person.id_number, SERVICE, "2019-08-01",
                str(_AMOUNT_2016[p.degree]),
            )  # fmt: skip
        made[key] = (person, certificate, employer.name)

    applications = out_dir / "applications"
    applications.mkdir(parents=True, exist_ok=True)
    expected: dict[str, dict[str, object]] = {}
    for number, sample in enumerate(_SAMPLES, start=1):
        person, certificate, employer_name = made[sample.person]
        degree = sample.declared_degree or _SAMPLE_PEOPLE[sample.person].degree
        body = _body(
            application_id=f"DEMO-{number:04d}-{sample.name}",
            submitted_at=sample.submitted_at,
            person=person,
            degree=degree,
            certificate_number=certificate,
            employer_name=employer_name,
            phone="13800138000",
        )
        _write_json(applications / f"{sample.name}.json", body)
        expected[f"{sample.name}.json"] = {
            "outcome": sample.outcome,
            "failed": list(sample.failed),
            "unknown": list(sample.unknown),
            "version": sample.version,
            "amount_yuan": sample.amount_yuan,
            "description": sample.description,
        }
    _write_json(applications / "expected.json", expected)
    return [s.name for s in _SAMPLES]


# -- bulk population -------------------------------------------------------------------------


def _bulk_person(
    b: _Builder,
    *,
    number: int,
    profile: str,
    active: Sequence[_Company],
    inactive: Sequence[_Company],
    elsewhere: Sequence[_Company],
) -> dict[str, object]:
    """Generate one person's records for ``profile``; return their application body."""
    rng = b.rng
    applied = b.day_between(_BULK_FIRST_DAY, _BULK_LAST_DAY)
    male = rng.random() < 0.52
    if profile == "junior_college":
        degree = "专科"
    else:
        degree = rng.choices(("本科", "硕士", "博士"), weights=(55, 35, 10))[0]
    if profile == "too_old":
        limit = _AGE_LIMIT_2016[degree]
        birth = b.birth_for_age(on=applied, youngest=limit, oldest=limit + 10)
    else:
        oldest = _AGE_LIMIT_2016.get(degree, 36) - 1
        birth = b.birth_for_age(on=applied, youngest=_MIN_AGE[degree], oldest=oldest)
    region = rng.choice(_REGIONS)
    person = _Person(
        b.id_number(region=region, birth=birth, male=male),
        b.name(male=male),
        birth,
        "男" if male else "女",
    )

    if profile != "no_population":
        hukou_city = _SZ
        hukou_since = applied - dt.timedelta(days=rng.randint(3, 330))
        if profile == "hukou_old":
            hukou_since = applied - dt.timedelta(days=rng.randint(400, 4000))
        elif profile == "hukou_elsewhere":
            hukou_city = rng.choice(_OTHER_CITIES)
            hukou_since = max(birth, applied - dt.timedelta(days=rng.randint(30, 6000)))
        b.add(
            "population.csv", "POP", person.id_number, person.name, birth.isoformat(),
            person.gender, hukou_city, hukou_since.isoformat(), "",
        )  # fmt: skip

    school_code, school = rng.choice(_SCHOOLS)
    graduated = _graduation(applied, rng.randint(0, 3))
    certificate = b.certificate_number(school_code=school_code, year=graduated.year, degree=degree)
    if profile != "no_education":
        holder = person.id_number
        if profile == "someone_elses_certificate":
            holder = b.id_number(region=rng.choice(_REGIONS), birth=birth, male=not male)
        b.add(
            "education.csv", "EDU", certificate, holder, person.name, degree,
            "非全日制" if profile == "part_time" else "全日制", school, graduated.isoformat(),
        )  # fmt: skip

    if profile == "employer_inactive":
        employer = rng.choice(inactive)
    elif profile == "employer_elsewhere":
        employer = rng.choice(elsewhere)
    else:
        employer = rng.choice(active)
    if profile != "no_social_insurance":
        city, status, months = _SZ, "正常缴费", rng.randint(1, 60)
        if profile == "social_insurance_elsewhere":
            city = rng.choice(_OTHER_CITIES)
        elif profile == "social_insurance_inactive":
            status, months = rng.choice(
                (
                    ("暂停缴费", rng.randint(1, 60)),
                    ("终止缴费", rng.randint(1, 60)),
                    ("正常缴费", 0),
                )
            )
        b.add(
            "social_insurance.csv", "SI", person.id_number, city, status, str(months),
            employer.credit_code, employer.name,
        )  # fmt: skip

    if profile == "received_before":
        b.add(
            "subsidy_history.csv", "SUB", person.id_number, SERVICE,
            b.day_between(dt.date(2017, 1, 1), applied - dt.timedelta(days=30)).isoformat(),
            str(_AMOUNT_2016.get(degree, 15000)),
        )  # fmt: skip
    if rng.random() < 0.04:  # another service's subsidy: must not count for this one
        b.add(
            "subsidy_history.csv", "SUB", person.id_number, rng.choice(_OTHER_SERVICES),
            b.day_between(dt.date(2017, 1, 1), applied - dt.timedelta(days=30)).isoformat(),
            str(rng.choice((3000, 5000, 10000))),
        )  # fmt: skip
    if profile == "owns_housing":
        b.add("property.csv", "PRP", person.id_number, _SZ, "产权")
    elif profile == "rents_public_housing":
        b.add("property.csv", "PRP", person.id_number, _SZ, "公共住房承租")
    if rng.random() < 0.08:  # a home in another city does not count
        b.add("property.csv", "PRP", person.id_number, rng.choice(_OTHER_CITIES), "产权")

    declared = degree
    if profile == "degree_mismatch":
        declared = rng.choice([d for d in ("本科", "硕士", "博士") if d != degree])
    return _body(
        application_id=f"BULK-{number:07d}",
        submitted_at=_submitted_at(applied, rng.randint(8, 21), rng.randint(0, 59)),
        person=person,
        degree=declared,
        certificate_number=certificate,
        employer_name=employer.name,
        phone=f"1{rng.choice('3456789')}{rng.randrange(10**9):09d}",
    )


def _write_json(path: Path, data: object) -> None:
    text = json.dumps(data, ensure_ascii=False, indent=2) + "\n"
    path.write_text(text, encoding="utf-8", newline="\n")


def _write_csv(path: Path, columns: Sequence[str], rows: Sequence[tuple[str, ...]]) -> None:
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows(rows)


def generate_demo_data(
    out_dir: Path,
    *,
    people: int = 10_000,
    seed: int = 20161,
    rulesets_dir: Path | None = Path("rulesets"),
    progress: Callable[[str, int, int], None] | None = None,
) -> DemoSummary:
    """Write the demo registries, sample applications and bulk applications into ``out_dir``.

    ``progress(step, done, total)`` is told how far it is: step ``people`` (one per person
    generated), then ``files`` (one per file written).

    The output is byte-for-byte identical for the same inputs. Layout: ``<registry>.csv``
    (see ``CSV_COLUMNS``; the talent-housing people are generated here), plus every
    service's own demo data from ``<rulesets_dir>/<service>/demo/`` (rows added to the
    registry files, new registry files, sample applications: data, not code);
    ``applications/<sample>.json`` with ``applications/expected.json`` (sample file name ->
    expected outcome); ``applications.jsonl`` (one request body per bulk person, all under the
    talent-housing 2016 rules); and ``demo.json`` (this summary, with a fingerprint of the
    inputs so a stale folder can be recognised).
    """
    if people < 0:
        raise ValueError(f"people must be zero or more, got {people}")
    out_dir.mkdir(parents=True, exist_ok=True)
    _clear_previous(out_dir, rulesets_dir)
    b = _Builder(rng=random.Random(seed))
    samples = _write_samples(b, out_dir)

    companies = max(20, people // 25)
    inactive = [
        _add_company(b, city=_SZ, region="440300", status=b.rng.choice(("注销", "吊销")))
        for _ in range(max(1, companies // 12))
    ]
    elsewhere: list[_Company] = []
    for _ in range(max(1, companies // 14)):
        city = b.rng.choice(_OTHER_CITIES[:3])
        region = {"广州市": "440100", "东莞市": "441900", "惠州市": "441300"}[city]
        elsewhere.append(
            _add_company(b, city=city, region=region, status=b.rng.choice(("存续", "在业")))
        )
    active = [
        _add_company(b, city=_SZ, region="440300", status=b.rng.choice(("存续", "在业")))
        for _ in range(companies - len(inactive) - len(elsewhere))
    ]

    names = [p[0] for p in _PROFILES]
    weights = [p[1] for p in _PROFILES]
    outcome_of: Mapping[str, Outcome] = {p[0]: p[2] for p in _PROFILES}
    profile_counts = dict.fromkeys(names, 0)
    outcome_counts: dict[str, int] = {"APPROVED": 0, "REJECTED": 0, "REFERRED": 0}
    lines: list[str] = []
    for number in range(1, people + 1):
        if progress is not None and number % 1000 == 0:
            progress("people", number, people)
        profile = b.rng.choices(names, weights=weights)[0]
        profile_counts[profile] += 1
        outcome_counts[outcome_of[profile]] += 1
        body = _bulk_person(
            b, number=number, profile=profile, active=active, inactive=inactive,
            elsewhere=elsewhere,
        )  # fmt: skip
        lines.append(json.dumps(body, ensure_ascii=False) + "\n")
    (out_dir / "applications.jsonl").write_text("".join(lines), encoding="utf-8", newline="\n")

    steps = len(CSV_COLUMNS) + 2  # the registry files, the services' demo data, the manifests
    for done, (file_name, columns) in enumerate(CSV_COLUMNS.items()):
        if progress is not None:
            progress("files", done, steps)
        _write_csv(out_dir / file_name, columns, b.tables[file_name])
    if progress is not None:
        progress("files", steps - 2, steps)
    services: dict[str, int] = {}
    if rulesets_dir is not None and rulesets_dir.is_dir():
        services = _merge_service_demos(out_dir, rulesets_dir)
        samples.extend(
            name
            for name in json.loads((out_dir / "applications" / "expected.json").read_text("utf-8"))
            if name.removesuffix(".json") not in samples
        )
    files = [
        *CSV_COLUMNS,
        *sorted(p.name for p in out_dir.glob("*.csv") if p.name not in CSV_COLUMNS),
    ]
    rows = {name: _count_rows(out_dir / name) for name in files}
    if progress is not None:
        progress("files", steps - 1, steps)
    _write_manifests(out_dir, files, rulesets_dir)
    summary = DemoSummary(
        seed=seed,
        people=people,
        rows=rows,
        samples=tuple(s.removesuffix(".json") for s in samples),
        bulk_applications=len(lines),
        profiles=profile_counts,
        expected_outcomes=outcome_counts,
        services=services,
        fingerprint=demo_fingerprint(rulesets_dir, people=people, seed=seed),
    )
    _write_json(out_dir / "demo.json", summary.model_dump(mode="json"))
    return summary


def _write_manifests(out_dir: Path, files: Sequence[str], rulesets_dir: Path | None) -> None:
    """Write each registry file's manifest (as of ``DEMO_AS_OF``, rows, SHA-256, holder), as
    the holding agency's export would: the loader refuses a ``no_record: negative`` registry
    without one, and any file that no longer matches its manifest."""
    from adapters.files import manifest_path, write_manifest

    specs: dict[str, RegistrySpec] = {}
    catalogue = rulesets_dir / "registries.yaml" if rulesets_dir is not None else None
    if catalogue is not None and catalogue.is_file():
        from engine.registries import load_catalogue

        specs = {s.location: s for s in load_catalogue(catalogue) if s.kind != "http"}
    for name in files:
        spec = specs.get(name)
        write_manifest(
            out_dir / name,
            as_of=DEMO_AS_OF,
            holder=spec.holder.zh if spec is not None else None,
            to=manifest_path(spec, out_dir) if spec is not None else None,
        )


def _clear_previous(out_dir: Path, rulesets_dir: Path | None) -> None:
    """Remove what an earlier run wrote (and only that), so a rerun starts from nothing."""
    names = set(CSV_COLUMNS) | {"applications.jsonl", "demo.json"}
    if rulesets_dir is not None and rulesets_dir.is_dir():
        names |= {p.name for p in rulesets_dir.glob("*/demo/*.csv")}
    names |= {f"{n}.meta.json" for n in names if n.endswith(".csv")}
    for name in names:
        (out_dir / name).unlink(missing_ok=True)
    applications = out_dir / "applications"
    if applications.is_dir():
        for path in applications.glob("*.json"):
            path.unlink()


def _count_rows(path: Path) -> int:
    with path.open(encoding="utf-8", newline="") as handle:
        return sum(1 for _ in csv.reader(handle)) - 1


GENERATOR_VERSION = "4"
"""Bumped whenever the generator's output changes, so stale demo folders are regenerated."""


def demo_fingerprint(rulesets_dir: Path | None, *, people: int = 10_000, seed: int = 20161) -> str:
    """A hash of everything the demo folder is made from (to recognise a stale one)."""
    digest = hashlib.sha256(f"{GENERATOR_VERSION}:{people}:{seed}".encode())
    if rulesets_dir is not None and rulesets_dir.is_dir():
        catalogue = rulesets_dir / "registries.yaml"
        inputs = sorted(rulesets_dir.glob("*/demo/**/*")) + (
            [catalogue] if catalogue.is_file() else []
        )
        for path in inputs:
            if path.is_file():
                digest.update(str(path.relative_to(rulesets_dir)).encode())
                digest.update(path.read_bytes())
    return digest.hexdigest()


def demo_is_current(out_dir: Path, rulesets_dir: Path | None) -> bool:
    """Whether ``out_dir`` holds demo data made from the current inputs, every file with its
    manifest."""
    try:
        recorded = json.loads((out_dir / "demo.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    people = int(recorded.get("people", 10_000))
    seed = int(recorded.get("seed", 20161))
    files = recorded.get("rows") or {}
    return bool(
        recorded.get("fingerprint") == demo_fingerprint(rulesets_dir, people=people, seed=seed)
        and all((out_dir / f"{name}.meta.json").is_file() for name in files)
    )


class DemoDataError(ValueError):
    """Raised when a service's demo data does not fit the registry files (columns, keys)."""


def _merge_service_demos(out_dir: Path, rulesets_dir: Path) -> dict[str, int]:
    """Add every ``<service>/demo/`` folder's rows and sample applications to ``out_dir``.

    A CSV whose registry file exists adds rows under that file's header (its columns must be
    a subset); a new file name starts a new registry file. Sample applications are copied
    and their expectations merged into ``applications/expected.json``.
    """
    applications = out_dir / "applications"
    expected_path = applications / "expected.json"
    expected = json.loads(expected_path.read_text(encoding="utf-8"))
    counts: dict[str, int] = {}
    for demo in sorted(rulesets_dir.glob("*/demo")):
        service = demo.parent.name
        for source in sorted(demo.glob("*.csv")):
            _append_csv(out_dir / source.name, source)
        samples = 0
        for app in sorted((demo / "applications").glob("*.json")):
            if app.name == "expected.json":
                continue
            if (applications / app.name).exists():
                raise DemoDataError(f"{app}: a sample named {app.name} already exists")
            (applications / app.name).write_bytes(app.read_bytes())
            samples += 1
        extra = demo / "applications" / "expected.json"
        if extra.is_file():
            for name, entry in json.loads(extra.read_text(encoding="utf-8")).items():
                if not (applications / name).exists():
                    raise DemoDataError(f"{extra}: {name} has no application file")
                expected[name] = entry
        counts[service] = samples
    _write_json(expected_path, expected)
    _check_keys(out_dir, rulesets_dir / "registries.yaml")
    return counts


def _append_csv(target: Path, source: Path) -> None:
    with source.open(encoding="utf-8-sig", newline="") as handle:
        reader = csv.DictReader(handle)
        header = list(reader.fieldnames or [])
        rows = list(reader)
    if not target.exists():
        _write_csv(target, header, [tuple(r[c] for c in header) for r in rows])
        return
    with target.open(encoding="utf-8", newline="") as handle:
        existing = next(csv.reader(handle))
    extra = [c for c in header if c not in existing]
    if extra:
        raise DemoDataError(f"{source}: columns {extra} are not in {target.name} ({existing})")
    with target.open("a", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        for r in rows:
            writer.writerow([r.get(c, "") for c in existing])


def _check_keys(out_dir: Path, catalogue_path: Path) -> None:
    """Refuse demo data where two records of a fetch registry share a key."""
    if not catalogue_path.is_file():
        return
    from engine.registries import load_catalogue

    for spec in load_catalogue(catalogue_path):
        path = out_dir / spec.location
        if "fetch" not in spec.modes or not path.is_file():
            continue
        seen: dict[tuple[str, ...], int] = {}
        with path.open(encoding="utf-8", newline="") as handle:
            for line, row in enumerate(csv.DictReader(handle), start=2):
                key = tuple(row.get(k, "") for k in spec.key)
                if key in seen:
                    raise DemoDataError(
                        f"{path}: rows {seen[key]} and {line} share the key {key} of {spec.id}"
                    )
                seen[key] = line
