"""When an application may say it was submitted: not in the future, not before the service.

The application date picks the ruleset version and is the day ages and periods are counted
to, so a bogus date can decide against the applicant (a date in 2100 made everyone too old and
too briefly resident). The request model refuses impossible years; this refuses, before
anything is decided or stored, a date later than the service's clock allows (beyond a small
clock skew between the platform and us) and a date before the first version of the service
took effect.
"""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from api.service import DecisionRequest, RequestRejected
from engine import RulesetCatalog, UnknownService

__all__ = ["check_submitted_at"]

SHANGHAI = ZoneInfo("Asia/Shanghai")


def check_submitted_at(
    request: DecisionRequest,
    *,
    now: dt.datetime,
    catalog: RulesetCatalog,
    max_skew: dt.timedelta,
) -> None:
    """``RequestRejected`` (422) when ``submitted_at`` lies outside the window, else nothing.

    ``now`` is the service's clock; an unknown service is left to the decision (404).
    """
    submitted = request.submitted_at
    loc = ["body", "submitted_at"]
    if submitted > now + max_skew:
        minutes = int(max_skew.total_seconds() // 60)
        raise RequestRejected(
            422,
            "SUBMITTED_IN_FUTURE",
            f"申请提交时间晚于当前时间（允许的时钟误差为 {minutes} 分钟）",
            f"submitted_at is later than now (allowing {minutes} minutes of clock skew)",
            [{"loc": loc, "msg": "submitted_at is in the future", "type": "submitted_in_future"}],
        )
    try:
        versions = catalog.versions(request.service)
    except UnknownService:
        return
    if not versions:
        return
    first = min(rs.doc.effective_from for rs in versions)
    day = submitted.astimezone(SHANGHAI).date()
    if day < first:
        raise RequestRejected(
            422,
            "SUBMITTED_BEFORE_SERVICE",
            f"申请日期 {day.isoformat()}（北京时间）早于该事项最早的规则生效日 {first.isoformat()}",
            f"the application date {day.isoformat()} (Asia/Shanghai) is before {request.service} "
            f"existed (its first ruleset took effect on {first.isoformat()})",
            [
                {
                    "loc": loc,
                    "msg": f"application date {day.isoformat()} is before {first.isoformat()}",
                    "type": "submitted_before_service",
                }
            ],
        )
