"""Age limits decided through the shipped rulesets and durable_rules, on and around birthdays."""

from __future__ import annotations

import datetime as dt

import pytest
from helpers_engine import approvable, shipped

from engine import CriterionStatus, Evaluation, Outcome, evaluate

D = dt.date


def decide(version: str, *, date: dt.date, birth_date: dt.date, degree: str) -> Evaluation:
    """Evaluate, with durable_rules, an application that meets every criterion but perhaps age."""
    app = approvable(date=date, birth_date=birth_date, degree=degree)
    return evaluate(shipped(version), app.env(), evaluator="durable_rules")


def status_of(evaluation: Evaluation, criterion: str) -> CriterionStatus:
    return next(c.status for c in evaluation.criteria if c.id == criterion)


APPROVALS = [
    pytest.param(
        "2016",
        D(2025, 5, 1),
        D(1995, 5, 1),
        "本科",
        15000,
        id="Under 2016 a bachelor applying on their 30th birthday is still under 30 and gets 15000",
    ),
    pytest.param(
        "2016",
        D(2023, 2, 28),
        D(1988, 2, 29),
        "硕士",
        25000,
        id="Under 2016 a master born 29 February applying on 28 February of their 35th year "
        "is still under 35 and gets 25000",
    ),
    pytest.param(
        "2016",
        D(2025, 4, 30),
        D(1985, 4, 30),
        "博士",
        30000,
        id="Under 2016 a doctor applying on their 40th birthday is still under 40 and gets 30000",
    ),
    pytest.param(
        "2026",
        D(2026, 6, 15),
        D(1991, 6, 15),
        "本科",
        30000,
        id="Under 2026 a bachelor applying on their 35th birthday is still under 35 and gets 30000",
    ),
    pytest.param(
        "2026",
        D(2027, 2, 28),
        D(1992, 2, 29),
        "硕士",
        30000,
        id="Under 2026 a master born 29 February applying on 28 February of a common year "
        "at 35 is still under 35",
    ),
]

REJECTIONS = [
    pytest.param(
        "2016",
        D(2025, 5, 2),
        D(1995, 5, 1),
        "本科",
        id="Under 2016 a bachelor applying the day after their 30th birthday is rejected on age",
    ),
    pytest.param(
        "2016",
        D(2023, 3, 1),
        D(1988, 2, 29),
        "硕士",
        id="Under 2016 a master born 29 February applying on 1 March of their 35th year "
        "is rejected on age",
    ),
    pytest.param(
        "2016",
        D(2025, 5, 1),
        D(1985, 4, 30),
        "博士",
        id="Under 2016 a doctor applying the day after their 40th birthday is rejected on age",
    ),
    pytest.param(
        "2026",
        D(2026, 6, 16),
        D(1991, 6, 15),
        "本科",
        id="Under 2026 an applicant applying the day after their 35th birthday is rejected on age",
    ),
    pytest.param(
        "2026",
        D(2027, 3, 1),
        D(1992, 2, 29),
        "硕士",
        id="Under 2026 a master born 29 February applying on 1 March at 35 is rejected on age",
    ),
]


@pytest.mark.parametrize(("version", "date", "birth_date", "degree", "amount"), APPROVALS)
def test_on_the_birthday_itself_the_age_limit_is_met(
    version: str, date: dt.date, birth_date: dt.date, degree: str, amount: int
) -> None:
    """On the birthday that reaches the limit one is still under it: approved with the amount."""
    result = decide(version, date=date, birth_date=birth_date, degree=degree)
    assert (CriterionStatus.PASS, Outcome.APPROVED, amount) == (
        status_of(result, "C2"),
        result.outcome,
        (result.outputs or {}).get("amount_yuan"),
    )


@pytest.mark.parametrize(("version", "date", "birth_date", "degree"), REJECTIONS)
def test_from_the_day_after_the_birthday_the_age_limit_is_exceeded(
    version: str, date: dt.date, birth_date: dt.date, degree: str
) -> None:
    """From the day after that birthday C2 fails and, everything else being met, the case is rejected."""
    result = decide(version, date=date, birth_date=birth_date, degree=degree)
    assert (CriterionStatus.FAIL, Outcome.REJECTED, ["C2"], None) == (
        status_of(result, "C2"),
        result.outcome,
        result.failed,
        result.outputs,
    )


def test_the_rejection_reason_states_the_age_and_the_limit() -> None:
    """The citizen is told the age reached and the limit for the degree."""
    result = decide("2016", date=D(2025, 5, 2), birth_date=D(1995, 5, 1), degree="本科")
    c2 = next(c for c in result.criteria if c.id == "C2")
    assert "申请日年满30周岁，本科学历须未满30周岁。" == c2.reason_zh


def test_a_college_graduate_is_not_held_to_an_age_limit_but_to_the_degree_criterion() -> None:
    """Under 2016 专科 has no age limit (C2 passes); C1 rejects the degree instead."""
    result = decide("2016", date=D(2025, 5, 2), birth_date=D(1980, 1, 1), degree="专科")
    assert (CriterionStatus.PASS, ["C1"], Outcome.REJECTED) == (
        status_of(result, "C2"),
        result.failed,
        result.outcome,
    )
