"""Test helpers for ``engine``: the shipped rulesets and applications built from them."""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Mapping
from dataclasses import dataclass, replace
from functools import cache
from pathlib import Path

from engine import Evaluation, Ruleset, RulesetCatalog, application_env
from engine.dates import anniversary, years_before

__all__ = [
    "APPLICANT_ID",
    "CERTIFICATE",
    "CITIES",
    "DEGREES",
    "EMPLOYER_STATUSES",
    "FIELDS",
    "FIXTURES",
    "OTHER_ID",
    "RULESETS",
    "SERVICE",
    "SHENZHEN",
    "SI_STATUSES",
    "STUDY_MODES",
    "VARIED",
    "Application",
    "approvable",
    "catalog",
    "comparable",
    "evidence_names",
    "random_application",
    "shipped",
]

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
RULESETS = REPO / "rulesets"
FIXTURES = HERE / "fixtures"
SERVICE = "talent-housing-subsidy"

SHENZHEN = "深圳市"
APPLICANT_ID = "440304199505010018"
OTHER_ID = "440304199001010011"
CERTIFICATE = "102841202505000001"
CREDIT_CODE = "91440300MA5DTEST01"

# The value sets the generators draw from; the value that passes comes first (hypothesis
# shrinks towards it, so a shrunk counter-example is an otherwise approvable application).
DEGREES = ("本科", "硕士", "博士", "专科")
STUDY_MODES = ("全日制", "非全日制")
CITIES = (SHENZHEN, "广州市", "东莞市")
SI_STATUSES = ("正常缴费", "暂停缴费", "终止缴费")
EMPLOYER_STATUSES = ("存续", "在业", "注销", "吊销")

FIELDS: dict[str, tuple[str, ...]] = {
    "population": ("birth_date", "hukou_city", "hukou_since"),
    "education": ("holder_id_number", "degree", "study_mode"),
    "social_insurance": ("city", "status", "months_contributed", "employer_credit_code"),
    "employer": ("registered_city", "status"),
    "subsidy_history": ("received_before",),
    "property": ("owns_housing", "rents_public_housing"),
}
"""Every evidence group of the shipped rulesets and its fields."""


@cache
def catalog() -> RulesetCatalog:
    """The shipped rulesets, loaded once per test session."""
    return RulesetCatalog.load(RULESETS)


def shipped(version: str) -> Ruleset:
    """One shipped version of the talent-housing-subsidy ruleset."""
    ruleset = catalog().get(SERVICE, version)
    assert ruleset is not None, f"no shipped version {version}"
    return ruleset


@dataclass(frozen=True)
class Application:
    """An application and the registry records found for it (``None``: no record)."""

    date: dt.date
    form: dict[str, object]
    evidence: dict[str, dict[str, object] | None]
    id_number: str = APPLICANT_ID
    name: str = "测试申请人"

    def env(self) -> dict[str, object]:
        """The fact environment the engine evaluates."""
        return application_env(
            application_date=self.date,
            id_number=self.id_number,
            name=self.name,
            form=self.form,
            evidence=self.evidence,
        )

    def with_evidence(self, group: str, **values: object) -> Application:
        """A copy with some fields of one evidence group replaced."""
        record = self.evidence[group]
        assert record is not None
        return replace(self, evidence={**self.evidence, group: {**record, **values}})

    def without(self, group: str) -> Application:
        """A copy in which the registry has no record for ``group``."""
        return replace(self, evidence={**self.evidence, group: None})


def approvable(*, date: dt.date, birth_date: dt.date, degree: str) -> Application:
    """An application meeting every criterion except perhaps age (which ``birth_date`` decides)."""
    return Application(
        date=date,
        form={"degree": degree, "certificate_number": CERTIFICATE},
        evidence={
            "population": {
                "birth_date": birth_date,
                "hukou_city": SHENZHEN,
                "hukou_since": date - dt.timedelta(days=60),
            },
            "education": {
                "holder_id_number": APPLICANT_ID,
                "degree": degree,
                "study_mode": "全日制",
            },
            "social_insurance": {
                "city": SHENZHEN,
                "status": "正常缴费",
                "months_contributed": 2,
                "employer_credit_code": CREDIT_CODE,
            },
            "employer": {"registered_city": SHENZHEN, "status": "存续"},
            "subsidy_history": {"received_before": False},
            "property": {"owns_housing": False, "rents_public_housing": False},
        },
    )


VARIED: dict[tuple[str, str], tuple[object, ...]] = {
    ("population", "hukou_city"): CITIES,
    ("education", "holder_id_number"): (APPLICANT_ID, OTHER_ID),
    ("education", "degree"): DEGREES,
    ("education", "study_mode"): STUDY_MODES,
    ("social_insurance", "city"): CITIES,
    ("social_insurance", "status"): SI_STATUSES,
    ("social_insurance", "months_contributed"): (0, 1, 2, 3),
    ("employer", "registered_city"): CITIES,
    ("employer", "status"): EMPLOYER_STATUSES,
    ("subsidy_history", "received_before"): (False, True),
    ("property", "owns_housing"): (False, True),
    ("property", "rents_public_housing"): (False, True),
}
"""Registry facts ``random_application`` may vary, with the values it draws from."""


def random_application(rng: random.Random, ruleset: Ruleset) -> Application:
    """A varied application in ``ruleset``'s period: an approvable one with a few facts varied,
    ages and the residence date near their boundaries, and some records or fields missing."""
    start = ruleset.doc.effective_from
    end = ruleset.doc.effective_to or dt.date(2030, 12, 31)
    day = start + dt.timedelta(days=rng.randrange((end - start).days + 1))
    if rng.random() < 0.2:
        leap = [y for y in range(day.year - 45, day.year - 19) if y % 4 == 0]
        birth = dt.date(rng.choice(leap), 2, 29)
        day = anniversary(birth, day.year - birth.year) + dt.timedelta(days=rng.randint(-2, 2))
    else:
        birth = years_before(day, rng.randint(20, 45)) + dt.timedelta(days=rng.randint(-2, 2))
    app = approvable(date=day, birth_date=birth, degree=rng.choice(DEGREES[:3]))
    evidence = {g: dict(r) for g, r in app.evidence.items() if r is not None}
    evidence["population"]["hukou_since"] = years_before(day, 1) + dt.timedelta(
        days=rng.randint(-3, 3)
    )
    for group, name in rng.sample(sorted(VARIED), k=rng.choice((0, 0, 1, 1, 2, 3))):
        evidence[group][name] = rng.choice(VARIED[(group, name)])
    form = dict(app.form)
    if rng.random() < 0.1:
        form["degree"] = rng.choice(DEGREES)
    partial: dict[str, dict[str, object] | None] = {}
    for group, record in evidence.items():
        roll = rng.random()
        if roll < 0.07:
            partial[group] = None
        elif roll < 0.12:
            partial[group] = {k: v for k, v in record.items() if rng.random() < 0.5}
        else:
            partial[group] = record
    return Application(date=day, form=form, evidence=partial)


def comparable(evaluation: Evaluation) -> dict[str, object]:
    """Everything an evaluation concluded, without the name of the evaluator that produced it."""
    return evaluation.model_dump(mode="json", exclude={"evaluator"})


def evidence_names(names: Mapping[str, str] | tuple[str, ...]) -> list[str]:
    """Those of ``names`` that come from a registry (not from the application itself)."""
    return [n for n in names if n.split(".", 1)[0] in FIELDS]
