"""The shared text check and the ID-number shape: what a person may type, in which digits."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.privacy import check_digit, id_number_problem
from engine.text import check_text, text_pattern, text_problem

VALID_ID = "440305199603159012"


@pytest.mark.parametrize(
    "text",
    [
        "陈思远",
        "𠀋\U000e0100",
        "Zoë O'Brien",
        "阿卜杜拉·买买提",
        "深圳市　南山区",
        "\ue000",
        "１２３",
    ],
)
def test_names_in_any_script_pass(text: str) -> None:
    """CJK with extension B and variation selectors, accents, 　, private use, full-width: fine."""
    assert text_problem(text) is None


@pytest.mark.parametrize(
    "bad",
    ["\x00", "\x07", "\x1b", "\x7f", "\x85", "\x9b", "\u202a", "\u202e", "\u2066", "\u2069",
     "\u200e", "\u200f", "\u061c", "\u200b", "\u200d", "\ufeff", "\u00ad", "\U000e0041",
     "\u2028", "\ud800", "\udfff", "\ufdd0", "\uffff", "\U0010ffff"],
)  # fmt: skip
def test_control_bidi_format_surrogate_and_noncharacters_are_named(bad: str) -> None:
    """Each refused character is named by its code point and position, in both languages."""
    problem = text_problem("张" + bad + "三")
    assert problem is not None
    assert f"U+{ord(bad):04X}" in problem and "第2个字符" in problem and "character 2" in problem


def test_free_text_keeps_line_ends_and_tabs_and_normalises_crlf() -> None:
    """On several lines \\n, \\t and joiners pass; \\r\\n and \\r become \\n; NUL still fails."""
    assert "一\n二\t三\n四" == check_text("一\r\n二\t三\r四", multiline=True)
    assert "👨\u200d👩" == check_text("👨\u200d👩", multiline=True)
    assert text_problem("一\n二") is not None
    with pytest.raises(ValueError, match="U\\+0000"):
        check_text("一\x00", multiline=True)


@given(st.text())
def test_the_quick_path_never_lets_a_refused_character_through(text: str) -> None:
    """The fast pre-check agrees with the character-by-character rule on any text."""
    import unicodedata

    refused = any(
        unicodedata.category(c) in ("Cc", "Cs", "Cf") or c in "\u2028\u2029"
        or 0xFDD0 <= ord(c) <= 0xFDEF or (ord(c) & 0xFFFE) == 0xFFFE
        for c in text
    )  # fmt: skip
    assert refused == (text_problem(text) is not None)


@pytest.mark.parametrize(
    "digits",
    [str.maketrans("0123456789", "０１２３４５６７８９"), str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩"),
     str.maketrans("0123456789", "۰۱۲۳۴۵۶۷۸۹"), str.maketrans("0123456789", "०१२३४५६७८९")],
)  # fmt: skip
def test_an_id_number_needs_ascii_digits(digits: dict[int, str]) -> None:
    """Full-width, Arabic-Indic, Persian or Devanagari digits are refused before the check digit."""
    assert id_number_problem(VALID_ID) is None
    assert "18" in (id_number_problem(VALID_ID[:17].translate(digits) + VALID_ID[17]) or "")
    with pytest.raises(ValueError):
        check_digit(VALID_ID[:17].translate(digits))


def test_an_id_number_with_a_trailing_newline_is_refused() -> None:
    """The whole text must be the number: a newline after it is not ignored."""
    assert id_number_problem(VALID_ID + "\n") is not None


@pytest.fixture(scope="module")
def patterns() -> dict[bool, re.Pattern[str]]:
    """The published patterns, built once (the first build scans every code point)."""
    return {multiline: re.compile(text_pattern(multiline=multiline)) for multiline in (False, True)}


@given(text=st.text(), multiline=st.booleans())
def test_the_json_schema_pattern_says_the_same_as_the_check(
    patterns: dict[bool, re.Pattern[str]], text: str, multiline: bool
) -> None:
    """The pattern in the OpenAPI document accepts exactly the text the check accepts, in the BMP
    without surrogates; beyond it, what the pattern refuses the check refuses too."""
    try:
        check_text(text, multiline=multiline)
        accepted = True
    except ValueError:
        accepted = False
    matches = bool(patterns[multiline].fullmatch(text))  # ECMA 262: $ is the very end
    if all(ord(c) <= 0xFFFF and not 0xD800 <= ord(c) <= 0xDFFF for c in text):
        assert accepted == matches
    else:
        assert matches or not accepted
