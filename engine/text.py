"""What text a person may send: names and form strings on one line, statements on several.

One check for every string that comes from outside (applicant names, form fields, objection
statements, reviewers' reasons), so that what is stored, hashed, rendered on a page or shown to
a reviewer is text a person typed, not a device to hide or reorder it:

- C0 and C1 control characters (category Cc: NUL, ESC, DEL, U+0080–U+009F …) are refused;
  free text on several lines may hold ``\\n`` and ``\\t`` (a ``\\r\\n`` or lone ``\\r`` line end,
  as browsers send a textarea, becomes ``\\n``), and the zero-width joiner and non-joiner;
- lone surrogates (Cs) are refused: they cannot be encoded, stored or hashed;
- format characters (Cf) are refused: the bidirectional embeddings, overrides and isolates
  (U+202A–U+202E, U+2066–U+2069), the marks U+200E, U+200F and U+061C that reorder what a
  reviewer reads, zero-width spaces (and joiners on one line), the byte-order mark, tags;
- the line and paragraph separators U+2028 and U+2029 are refused on one line;
- noncharacters (U+FDD0–U+FDEF and U+xFFFE/U+xFFFF) are refused.

Private-use (Co) and unassigned (Cn) code points are accepted on purpose: names with rare
characters (生僻字) still reach services through private-use code points of legacy population
registries, and characters newer than this Python's Unicode tables are unassigned to it.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from typing import Annotated, Any

from pydantic import AfterValidator, Field

__all__ = ["FreeText", "SingleLine", "check_text", "text_pattern", "text_problem"]

_ALLOWED_MULTILINE = frozenset("\n\t\u200c\u200d")
"""Also the zero-width (non-)joiners, which emoji sequences and some scripts need in prose."""
_BIDI = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c")
_SEPARATORS = frozenset("\u2028\u2029")
_QUICK = re.compile(
    r"[^\x20-\x7e\u00a0-\u00ac\u00ae-\u05ff\u0700-\u070e\u0710-\u088f\u0892-\u08e1"
    r"\u08e3-\u180d\u180f-\u1fff\u2010-\u2027\u2030-\u205f\u2070-\ud7ff\uf900-\ufdcf\ufdf0-\ufefe"
    r"\uff00-\ufff8]"
)
"""Characters that need a closer look; everything else (ASCII text, CJK, most scripts) is fine."""


def _is_noncharacter(ch: str) -> bool:
    cp = ord(ch)
    return 0xFDD0 <= cp <= 0xFDEF or (cp & 0xFFFE) == 0xFFFE


def text_problem(text: str, *, multiline: bool = False) -> str | None:
    """Why ``text`` is refused (bilingual, naming the code point), or ``None`` when it is fine."""
    if _QUICK.search(text) is None:
        return None
    for i, ch in enumerate(text):
        if multiline and ch in _ALLOWED_MULTILINE:
            continue
        category = unicodedata.category(ch)
        if ch in _BIDI:
            what_zh, what_en = "双向文本控制字符", "a bidirectional text control"
        elif category == "Cc":
            what_zh, what_en = "控制字符", "a control character"
        elif category == "Cs":
            what_zh, what_en = "不成对的代理码位", "a lone surrogate"
        elif category == "Cf":
            what_zh, what_en = "不可见的格式字符", "an invisible format character"
        elif ch in _SEPARATORS and not multiline:
            what_zh, what_en = "换行符", "a line separator"
        elif _is_noncharacter(ch):
            what_zh, what_en = "非字符码位", "a noncharacter"
        else:
            continue
        return f"第{i + 1}个字符是{what_zh}（U+{ord(ch):04X}），不能接受 / character {i + 1} is {what_en} (U+{ord(ch):04X}), which is not accepted"
    return None


def check_text(text: str, *, multiline: bool = False) -> str:
    """``text`` when it is acceptable (line ends made ``\\n`` on several lines); else ``ValueError``."""
    if multiline and "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    problem = text_problem(text, multiline=multiline)
    if problem is not None:
        raise ValueError(problem)
    return text


@functools.cache
def text_pattern(*, multiline: bool = False) -> str:
    """The same rule for JSON Schema, over the Basic Multilingual Plane (``^[^…]*$``).

    Built on first use from this Python's Unicode tables. Written with ``\\u`` and four hex
    digits only, so that JSON Schema (ECMA 262) and Python read it alike. Not named in it, though
    refused by the check: surrogates (no JSON text in UTF-8 holds one, and the strict reader
    refuses ``\\ud800`` escapes) and the few format characters and noncharacters beyond
    U+FFFF (tags, musical format controls …).
    """
    refused: list[int] = []
    for cp in range(0x10000):
        ch = chr(cp)
        if multiline and (ch in _ALLOWED_MULTILINE or ch == "\r"):  # \r: made \n first
            continue
        if (
            unicodedata.category(ch) in ("Cc", "Cf")
            or (ch in _SEPARATORS and not multiline)
            or _is_noncharacter(ch)
        ):
            refused.append(cp)
    ranges: list[tuple[int, int]] = []
    for cp in refused:
        if ranges and ranges[-1][1] == cp - 1:
            ranges[-1] = (ranges[-1][0], cp)
        else:
            ranges.append((cp, cp))
    body = "".join(f"\\u{a:04x}" if a == b else f"\\u{a:04x}-\\u{b:04x}" for a, b in ranges)
    return f"^[^{body}]*$"


def _single(text: str) -> str:
    return check_text(text)


def _multi(text: str) -> str:
    return check_text(text, multiline=True)


def _single_schema(schema: dict[str, Any]) -> None:
    schema.setdefault("pattern", text_pattern())  # a ruleset's own pattern is stricter


def _multi_schema(schema: dict[str, Any]) -> None:
    schema.setdefault("pattern", text_pattern(multiline=True))


SingleLine = Annotated[str, AfterValidator(_single), Field(json_schema_extra=_single_schema)]
"""A name, a code or a form string: one line, no control, format or bidi characters."""
FreeText = Annotated[str, AfterValidator(_multi), Field(json_schema_extra=_multi_schema)]
"""A statement or a reason: as ``SingleLine``, and ``\\n`` and ``\\t`` are allowed."""
