"""Date arithmetic in the Chinese legal convention (《民法典》第二百零一条、第二百零二条)."""

from __future__ import annotations

import calendar
import datetime as dt

__all__ = ["age_on", "anniversary", "years_before"]


def anniversary(start: dt.date, years: int) -> dt.date:
    """The day corresponding to ``start`` ``years`` later; with no such day, the month's last day.

    So 29 February falls on 28 February in common years.
    """
    year = start.year + years
    last = calendar.monthrange(year, start.month)[1]
    return dt.date(year, start.month, min(start.day, last))


def age_on(birth_date: dt.date, on: dt.date) -> int:
    """Full years of age (周岁) on ``on``.

    The day of birth is not counted; the period ends on the corresponding day, so a person
    has reached N full years (已满N周岁) only from the day *after* the Nth birthday. On the
    30th birthday itself one is still 未满30周岁 (29).
    """
    years = on.year - birth_date.year
    if on <= anniversary(birth_date, years):
        years -= 1
    return years


def years_before(on: dt.date, years: int) -> dt.date:
    """The corresponding day ``years`` before ``on`` (29 February → 28 February)."""
    return anniversary(on, -years)
