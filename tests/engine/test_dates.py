"""周岁 (full years of age) and corresponding days, per 《民法典》第二百零一条、第二百零二条."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.dates import age_on, anniversary, years_before

D = dt.date


@pytest.mark.parametrize("years", [1, 18, 30, 35])
def test_on_the_nth_birthday_one_is_not_yet_n(years: int) -> None:
    """On the Nth birthday itself one is still 未满N周岁 (N-1): the birthday is not counted."""
    assert years - 1 == age_on(D(1990, 7, 15), D(1990 + years, 7, 15))


@pytest.mark.parametrize("years", [1, 18, 30, 35])
def test_on_the_day_after_the_nth_birthday_one_is_n(years: int) -> None:
    """From the day after the Nth birthday one has 已满N周岁."""
    assert years == age_on(D(1990, 7, 15), D(1990 + years, 7, 16))


def test_the_day_before_the_nth_birthday_one_is_still_n_minus_one() -> None:
    """The day before the 30th birthday one is 29."""
    assert 29 == age_on(D(1990, 7, 15), D(2020, 7, 14))


def test_a_birthday_on_new_years_eve_rolls_over_the_year() -> None:
    """Born 31 December: 30 on 1 January after the 30th birthday, 29 on the birthday."""
    assert (29, 30) == (
        age_on(D(1994, 12, 31), D(2024, 12, 31)),
        age_on(D(1994, 12, 31), D(2025, 1, 1)),
    )


def test_a_29_february_birthday_falls_on_28_february_in_a_common_year() -> None:
    """Born 29 Feb 1996: on 28 Feb 2023 (the 27th birthday) still 26; on 1 Mar 2023, 27."""
    born = D(1996, 2, 29)
    assert (26, 27) == (age_on(born, D(2023, 2, 28)), age_on(born, D(2023, 3, 1)))


def test_a_29_february_birthday_is_29_february_in_a_leap_year() -> None:
    """Born 29 Feb 1996: on 29 Feb 2024 (the 28th birthday) still 27; on 1 Mar 2024, 28."""
    born = D(1996, 2, 29)
    assert (27, 28) == (age_on(born, D(2024, 2, 29)), age_on(born, D(2024, 3, 1)))


def test_in_a_leap_year_28_february_is_not_yet_the_birthday_of_a_29_february_birth() -> None:
    """Born 29 Feb 1996: on 28 Feb 2024 still 27 (the birthday is the next day)."""
    assert 27 == age_on(D(1996, 2, 29), D(2024, 2, 28))


def test_years_before_29_february_is_28_february_of_a_common_year() -> None:
    """One year before 29 Feb 2024 is 28 Feb 2023 (no 29 Feb in 2023)."""
    assert D(2023, 2, 28) == years_before(D(2024, 2, 29), 1)


def test_years_before_29_february_into_a_leap_year_is_29_february() -> None:
    """Four years before 29 Feb 2024 is 29 Feb 2020."""
    assert D(2020, 2, 29) == years_before(D(2024, 2, 29), 4)


def test_years_before_an_ordinary_day_is_the_same_day() -> None:
    """One year before 15 Jun 2026 is 15 Jun 2025."""
    assert D(2025, 6, 15) == years_before(D(2026, 6, 15), 1)


births = st.dates(min_value=D(1900, 1, 1), max_value=D(2050, 12, 31))


@settings(max_examples=300, deadline=None)
@given(born=births, a=st.integers(0, 40_000), b=st.integers(0, 40_000))
def test_age_never_decreases_as_time_passes(born: dt.date, a: int, b: int) -> None:
    """age_on is monotone non-decreasing in the day it is computed on."""
    first, second = sorted((a, b))
    earlier = born + dt.timedelta(days=first)
    later = born + dt.timedelta(days=second)
    assert age_on(born, earlier) <= age_on(born, later)


@settings(max_examples=300, deadline=None)
@given(born=births, years=st.integers(1, 100))
def test_age_goes_up_by_one_exactly_from_the_day_after_the_anniversary(
    born: dt.date, years: int
) -> None:
    """On the Nth anniversary the age is N-1 and on the next day it is N."""
    day = anniversary(born, years)
    assert (years - 1, years) == (age_on(born, day), age_on(born, day + dt.timedelta(days=1)))


@settings(max_examples=300, deadline=None)
@given(born=births, years=st.integers(1, 100), into=st.integers(1, 364))
def test_age_is_constant_between_the_day_after_one_anniversary_and_the_next(
    born: dt.date, years: int, into: int
) -> None:
    """Between the day after the Nth anniversary and the (N+1)th anniversary the age stays N."""
    day = anniversary(born, years) + dt.timedelta(days=into)
    if day > anniversary(born, years + 1):
        day = anniversary(born, years + 1)
    assert years == age_on(born, day)
