"""The fact asserted into durable_rules is the same JSON whichever encoder writes it."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine._durable import _fact_json

_PLAIN = st.dictionaries(
    st.text(min_size=1, max_size=20),
    st.text() | st.integers(min_value=-(2**63), max_value=2**63 - 1) | st.booleans(),
    max_size=30,
)


@settings(max_examples=500, deadline=None)
@given(_PLAIN)
def test_a_fact_of_strings_ints_and_bools_is_the_json_json_writes(fact: dict[str, object]) -> None:
    """Any text (non-ASCII, control characters, quotes), 64-bit ints and bools: the same JSON
    value as ``json.dumps`` gives, in the same key order."""
    text = _fact_json(fact)
    assert json.loads(text) == fact
    assert list(json.loads(text)) == list(fact)
    assert json.loads(text) == json.loads(json.dumps(fact, ensure_ascii=False))


@pytest.mark.parametrize("odd", [1.5, float("nan"), float("inf"), [1, 2], None])
def test_any_other_value_is_written_by_json_as_before(odd: object) -> None:
    """A float (NaN included), a list or a null: exactly ``json.dumps``'s text."""
    fact = {"id": "application", "x": odd}
    assert _fact_json(fact) == json.dumps(fact, ensure_ascii=False)


def test_a_value_json_cannot_write_still_fails() -> None:
    with pytest.raises(TypeError):
        _fact_json({"amount": Decimal("1.5")})
