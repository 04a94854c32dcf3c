"""What a person can do after a decision: remedies for a refusal, next steps for a referral.

Three outcomes, three different notices:

- REJECTED is a final administrative act: an objection handled by the authority's own
  reviewers, administrative reconsideration (60 days) and an administrative lawsuit (6
  months), each with its deadline and the body that hears it.
- REFERRED is *not* a decision: there is nothing to appeal yet. The notice says who reviews
  the case, by when, and what the person may prepare.
- APPROVED: the person may still ask that a person, not the system, decide
  (《中华人民共和国个人信息保护法》第二十四条).

Deadlines are counted from the day the decision is made known: a period starts the next
day (《中华人民共和国民法典》第二百零一条), so 60 days after 1 March ends on 30 April, and a
month period ends on the same day of the month, or on the month's last day when that day
does not exist (31 August + 6 months = 28 or 29 February). Not applied: the rule that a
period whose last day is a rest day or holiday ends on the next working day (第二百零三条).
The date shown is therefore never later than the legal one: a person who acts by it is
always in time.
"""

from __future__ import annotations

import calendar
import datetime as dt

from engine import Outcome
from explanations.guide import ServiceGuide
from explanations.record import ReferralSteps, RemedyNoticeV2, RemedyRouteV2

__all__ = [
    "HUMAN_REVIEW_DAYS",
    "LITIGATION_BASIS",
    "PIPL_BASIS",
    "RECONSIDERATION_BASIS",
    "ReferralSteps",
    "RemedyNoticeV2",
    "RemedyRouteV2",
    "add_months",
    "add_working_days",
    "remedy_for",
]

HUMAN_REVIEW_DAYS = 15
"""Calendar days for an objection when the guide gives no ``objection_working_days``."""
RECONSIDERATION_BASIS = "《中华人民共和国行政复议法》（2023年修订）第二十条"
LITIGATION_BASIS = "《中华人民共和国行政诉讼法》第四十六条"
PIPL_BASIS = "《中华人民共和国个人信息保护法》第二十四条"
_SERVICE_COMMITMENT = "本服务承诺"


def add_months(day: dt.date, months: int) -> dt.date:
    """``day`` plus ``months`` calendar months, clamped to the end of a shorter month."""
    month0 = day.month - 1 + months
    year, month = day.year + month0 // 12, month0 % 12 + 1
    return dt.date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


def add_working_days(day: dt.date, days: int) -> dt.date:
    """The ``days``-th working day after ``day`` (Monday to Friday; ``day`` itself not counted).

    Public holidays (and the weekend days China makes working days around them) are not
    modelled: the State Council publishes them year by year. Around a holiday the real due
    date is later than this one, which is why texts say "遇法定节假日顺延".
    """
    if days < 0:
        raise ValueError(f"days must be zero or more, got {days}")
    out = day
    while days:
        out += dt.timedelta(days=1)
        if out.weekday() < 5:
            days -= 1
    return out


def remedy_for(
    outcome: Outcome, decided_on: dt.date, guide: ServiceGuide | None, authority_zh: str
) -> RemedyNoticeV2:
    """The remedy notice for a decision of ``outcome`` made known on ``decided_on``.

    Bodies and contacts come from ``guide``; without one, the deciding authority
    (``authority_zh``) and general descriptions of the reconsideration body and court stand in.
    """
    authority_en = guide.authority.name.en if guide else authority_zh
    if outcome is Outcome.REFERRED:
        return RemedyNoticeV2(
            outcome=outcome,
            decided_on=decided_on,
            routes=[],
            referral=_referral(decided_on, guide, authority_zh, authority_en),
        )
    if outcome is Outcome.APPROVED:
        return RemedyNoticeV2(
            outcome=outcome,
            decided_on=decided_on,
            routes=[_human_decision(guide, authority_zh, authority_en)],
        )
    return RemedyNoticeV2(
        outcome=outcome,
        decided_on=decided_on,
        routes=[
            _objection(decided_on, guide, authority_zh, authority_en),
            _reconsideration(decided_on, guide),
            _litigation(decided_on, guide),
        ],
    )


def _referral(
    decided_on: dt.date, guide: ServiceGuide | None, authority_zh: str, authority_en: str
) -> ReferralSteps:
    if guide is None:
        return ReferralSteps(
            body_zh=f"{authority_zh}的工作人员",
            body_en=f"officers of {authority_en}",
            working_days=None,
            due_on=None,
            prepare_zh=[],
            prepare_en=[],
        )
    review = guide.review
    return ReferralSteps(
        body_zh=review.body.name.zh,
        body_en=review.body.name.en,
        contact=review.body,
        working_days=review.working_days,
        due_on=add_working_days(decided_on, review.working_days),
        prepare_zh=[p.zh for p in review.prepare],
        prepare_en=[p.en for p in review.prepare],
    )


def _human_decision(
    guide: ServiceGuide | None, authority_zh: str, authority_en: str
) -> RemedyRouteV2:
    body = guide.review.body if guide else None
    body_zh = body.name.zh if body else authority_zh
    body_en = body.name.en if body else authority_en
    return RemedyRouteV2(
        kind="human_decision",
        title_zh="要求由工作人员作出决定",
        title_en="Ask for a decision made by a person",
        deadline=None,
        basis=PIPL_BASIS,
        basis_en="Personal Information Protection Law of the PRC, Article 24",
        body_zh=body_zh,
        body_en=body_en,
        contact=body,
        how_zh=(
            f"本决定由系统自动作出。您有权要求说明，并有权拒绝仅由系统自动作出决定："
            f"可通过本页的表单或向{body_zh}提出，由工作人员重新审查后作出决定。"
        ),
        how_en=(
            f"This decision was made automatically. You may ask for it to be explained and refuse "
            f"a decision made by the system alone: use the form on this page or contact the "
            f"reviewing body ({body_en}), and an officer will examine the application and decide."
        ),
    )


def _objection(
    decided_on: dt.date, guide: ServiceGuide | None, authority_zh: str, authority_en: str
) -> RemedyRouteV2:
    body = guide.review.body if guide else None
    body_zh = body.name.zh if body else authority_zh
    body_en = body.name.en if body else authority_en
    days = guide.review.objection_working_days if guide else None
    if days is not None:
        deadline = add_working_days(decided_on, days)
        period_zh, period_en = f"{days}个工作日内", f"within {days} working days"
    else:
        deadline = decided_on + dt.timedelta(days=HUMAN_REVIEW_DAYS)
        period_zh, period_en = (
            f"{HUMAN_REVIEW_DAYS}日内",
            f"within {HUMAN_REVIEW_DAYS} days",
        )
    return RemedyRouteV2(
        kind="human_review",
        title_zh="提出异议，由工作人员复核",
        title_en="Object and have an officer review the decision",
        deadline=deadline,
        basis=f"{_SERVICE_COMMITMENT}；{PIPL_BASIS}",
        basis_en="Service commitment; Personal Information Protection Law of the PRC, Article 24",
        body_zh=body_zh,
        body_en=body_en,
        contact=body,
        how_zh=(
            f"自决定次日起{period_zh}，通过本页的表单或向{body_zh}提出异议，说明理由；"
            f"工作人员将重新审查您的申请，并作出新的决定。提出异议不影响您申请行政复议或提起行政诉讼的期限。"
        ),
        how_en=(
            f"{period_en[0].upper()}{period_en[1:]} after the decision day, object through the "
            f"form on this page or to the reviewing body ({body_en}), giving your reasons; an officer re-examines the "
            f"application and makes a new decision. Objecting does not extend the time limits "
            f"for reconsideration or a lawsuit."
        ),
    )


def _reconsideration(decided_on: dt.date, guide: ServiceGuide | None) -> RemedyRouteV2:
    body = guide.reconsideration if guide else None
    body_zh = body.name.zh if body else "依法负责的行政复议机关"
    body_en = body.name.en if body else "the competent administrative reconsideration body"
    return RemedyRouteV2(
        kind="administrative_reconsideration",
        title_zh="申请行政复议",
        title_en="Apply for administrative reconsideration",
        deadline=decided_on + dt.timedelta(days=60),
        basis=RECONSIDERATION_BASIS,
        basis_en="Administrative Reconsideration Law of the PRC (revised 2023), Article 20",
        body_zh=body_zh,
        body_en=body_en,
        contact=body,
        how_zh=f"自知道本决定之日起六十日内，向{body_zh}申请行政复议。",
        how_en=(
            f"Within 60 days of learning of this decision, apply to the reconsideration body: "
            f"{body_en}."
        ),
    )


def _litigation(decided_on: dt.date, guide: ServiceGuide | None) -> RemedyRouteV2:
    body = guide.court if guide else None
    body_zh = body.name.zh if body else "有管辖权的人民法院"
    body_en = body.name.en if body else "the competent people's court"
    return RemedyRouteV2(
        kind="administrative_litigation",
        title_zh="提起行政诉讼",
        title_en="Bring an administrative lawsuit",
        deadline=add_months(decided_on, 6),
        basis=LITIGATION_BASIS,
        basis_en="Administrative Litigation Law of the PRC, Article 46",
        body_zh=body_zh,
        body_en=body_en,
        contact=body,
        how_zh=(
            f"自知道本决定之日起六个月内，向{body_zh}提起行政诉讼。"
            f"如先申请了行政复议，对复议决定不服的，可以自收到复议决定书之日起十五日内起诉（《中华人民共和国行政诉讼法》第四十五条）。"
        ),
        how_en=(
            f"Within six months of learning of this decision, sue before the court: {body_en}. If you "
            f"applied for reconsideration first, you may sue within 15 days of receiving the "
            f"reconsideration decision (Administrative Litigation Law, Article 45)."
        ),
    )
