"""The application form model generated from a ruleset's ``inputs``."""

from __future__ import annotations

import datetime as dt

import pydantic
import pytest

from engine.model import InputField, Text
from engine.ruleset import form_model

T = Text(zh="字段", en="field")
FORM = form_model(
    [
        InputField(name="moved_in", type="date", title=T),
        InputField(name="income", type="number", minimum=0, title=T),
        InputField(name="children", type="integer", maximum=20, title=T),
        InputField(name="degree", type="enum", values=["本科", "硕士"], title=T),
        InputField(
            name="phone", type="string", pattern=r"^1[3-9][0-9]{9}$", required=False, title=T
        ),
    ],
    name="Form",
)
GOOD = {"moved_in": "2025-03-01", "income": 1200, "children": 2, "degree": "硕士"}


def test_a_valid_form_is_typed() -> None:
    """Dates arrive as ISO strings and become dates; integers stay integers; omitted optionals are None."""
    form = FORM.model_validate(GOOD)
    assert (dt.date(2025, 3, 1), 1200.0, 2, "硕士", None) == (
        form.moved_in,
        form.income,
        form.children,
        form.degree,
        form.phone,  # type: ignore[attr-defined]
    )


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"children": "2"}, "children"),
        ({"children": True}, "children"),
        ({"children": 21}, "children"),
        ({"income": -1}, "income"),
        ({"moved_in": "2025-02-30"}, "moved_in"),
        ({"degree": "学士"}, "degree"),
        ({"phone": "12345"}, "phone"),
        ({"nickname": "x"}, "nickname"),
    ],
    ids=[
        "string for integer",
        "boolean for integer",
        "over maximum",
        "under minimum",
        "impossible date",
        "value outside the enum",
        "pattern mismatch",
        "unknown field",
    ],
)
def test_each_bad_value_is_refused_at_its_field(change: dict[str, object], field: str) -> None:
    """No silent coercion: every wrong value is refused and the error names the field."""
    with pytest.raises(pydantic.ValidationError) as info:
        FORM.model_validate({**GOOD, **change})
    assert [(field,)] == [e["loc"] for e in info.value.errors()]


def test_a_missing_required_field_is_refused() -> None:
    """Leaving out a required field is an error on that field."""
    with pytest.raises(pydantic.ValidationError) as info:
        FORM.model_validate({k: v for k, v in GOOD.items() if k != "degree"})
    assert ("degree",) == info.value.errors()[0]["loc"]
