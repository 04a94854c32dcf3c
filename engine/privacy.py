"""Resident identity numbers (GB 11643-1999) and masking of personal data for display and logs."""

from __future__ import annotations

import datetime as dt
import re

__all__ = [
    "check_digit",
    "contains_id_number",
    "id_number_birth_date",
    "id_number_problem",
    "mask_id_number",
    "mask_name",
]

_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_CHECK = "10X98765432"
_SHAPE = re.compile(r"[0-9]{17}[0-9X]")
"""ASCII digits only: ``\\d`` and ``str.isdigit`` also take full-width and Arabic-Indic digits."""
_DIGITS = re.compile(r"[0-9]+")
_WINDOW = re.compile(r"(?=([0-9]{17}[0-9Xx]))")


def check_digit(first17: str) -> str:
    """The 18th character of a resident ID number, from its first 17 digits (ISO 7064 MOD 11-2)."""
    if len(first17) != 17 or not _DIGITS.fullmatch(first17):
        raise ValueError(f"expected 17 digits, got {len(first17)} characters")
    total = sum(int(d) * w for d, w in zip(first17, _WEIGHTS, strict=True))
    return _CHECK[total % 11]


def id_number_birth_date(id_number: str) -> dt.date:
    """The birth date encoded in positions 7-14 of an 18-character resident ID number."""
    return dt.date(int(id_number[6:10]), int(id_number[10:12]), int(id_number[12:14]))


def id_number_problem(id_number: str) -> str | None:
    """Why ``id_number`` is not a valid resident ID number, or ``None`` if it is.

    The message is bilingual (zh-CN first) and never repeats the number itself.
    """
    if not _SHAPE.fullmatch(id_number):
        return "身份证号码应为18位，前17位为数字，末位为数字或X / expected 18 characters: 17 digits then a digit or X"
    try:
        id_number_birth_date(id_number)
    except ValueError:
        return "身份证号码中的出生日期无效 / the birth date inside the ID number is not a real date"
    expected = check_digit(id_number[:17])
    if id_number[17] != expected:
        return "身份证号码校验码错误 / the check digit (18th character) is wrong"
    return None


def mask_id_number(id_number: str) -> str:
    """Keep the first 3 and last 4 characters: ``440***********123X``."""
    if len(id_number) <= 7:
        return "*" * len(id_number)
    return id_number[:3] + "*" * (len(id_number) - 7) + id_number[-4:]


def mask_name(name: str) -> str:
    """Keep the family name (first character): ``张**``."""
    if not name:
        return name
    return name[0] + "*" * max(1, len(name) - 1)


def contains_id_number(text: str) -> bool:
    """Whether ``text`` holds a valid resident ID number anywhere (ASCII digits, a real birth
    date and the right check digit), even inside a longer token (``A440…``, ``key-440…X``)."""
    return any(id_number_problem(m.group(1).upper()) is None for m in _WINDOW.finditer(text))
