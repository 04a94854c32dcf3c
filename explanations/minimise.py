"""Keeping only what a decision used: the form, evidence and values as a record holds them.

The ruleset's ``RecordingPlan`` (see ``engine.recording``) says what to keep. Here it is applied
to one decision: unread form fields are dropped and named, form fields used only to ask a
registry become keyed pseudonyms, and a field the catalogue records as an age loses its date
for the whole years on the application date. Replay reverses the last step
(``evidence_for_replay``) and decides identically, because every rule reads such a field only
through that age.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal

from engine.dates import age_on
from engine.decision import ComparedValue, JsonScalar, ValueResult
from engine.recording import RecordingPlan, date_of_age
from explanations.record import EvidenceItem

__all__ = ["Minimised", "evidence_for_replay", "json_scalar", "minimise"]


@dataclass(frozen=True)
class Minimised:
    form: dict[str, JsonScalar]
    omitted: list[str]
    """``form.<name>`` of each field given but not kept."""
    masked: list[str]
    """``form.<name>`` of each field kept as a pseudonym."""
    evidence: list[EvidenceItem]
    values: list[ValueResult]


def json_scalar(v: object) -> JsonScalar:
    """A registry or form value as a record holds it: dates ISO, decimals as written."""
    if isinstance(v, dt.date):
        return v.isoformat()
    if isinstance(v, Decimal):
        return format(v, "f")
    if v is None or isinstance(v, str | int | bool):
        return v
    return str(v)


def _age(v: object, on: dt.date) -> int | None:
    if isinstance(v, str):
        try:
            v = dt.date.fromisoformat(v)
        except ValueError:
            return None
    return age_on(v, on) if isinstance(v, dt.date) else None


def minimise(
    plan: RecordingPlan,
    *,
    form: Mapping[str, object],
    evidence: Iterable[EvidenceItem],
    values: Iterable[ValueResult],
    application_date: dt.date,
    pseudonym: Callable[[str], str],
) -> Minimised:
    """What the record keeps of one decision's form, evidence and values."""
    kept: dict[str, JsonScalar] = {}
    omitted: list[str] = []
    masked: list[str] = []
    for name, v in form.items():
        how = plan.handling(name)
        if how == "omit":
            if v is not None and v != "":
                omitted.append(f"form.{name}")
        elif how == "pseudonym" and v is not None:
            kept[name] = pseudonym(str(json_scalar(v)))
            masked.append(f"form.{name}")
        else:
            kept[name] = json_scalar(v)
    items = list(evidence)
    ages = plan.age_fields
    if ages:
        items = [_aged(item, ages, application_date) for item in items]
    value_list = list(values)
    if ages and any(i.expression in ages for v in value_list for i in v.inputs):
        value_list = [_without_dates(v, ages) for v in value_list]
    return Minimised(kept, omitted, masked, items, value_list)


def _aged(item: EvidenceItem, ages: frozenset[str], on: dt.date) -> EvidenceItem:
    hidden = [k for k in item.values if f"{item.id}.{k}" in ages]
    if not hidden:
        return item
    return item.model_copy(
        update={
            "values": {k: v for k, v in item.values.items() if k not in hidden},
            "ages": {**item.ages, **{k: _age(item.values[k], on) for k in hidden}},
        }
    )


def _without_dates(v: ValueResult, ages: frozenset[str]) -> ValueResult:
    """A value's inputs with each date recorded as an age left out (the value shows the age)."""
    inputs = [
        ComparedValue(i.expression, None, i.missing, i.source) if i.expression in ages else i
        for i in v.inputs
    ]
    return v.model_copy(update={"inputs": inputs})


def evidence_for_replay(item: EvidenceItem, on: dt.date) -> dict[str, object]:
    """The ages of an item as dates of that age on the application date (for replay)."""
    return {k: date_of_age(a, on) for k, a in item.ages.items() if a is not None}
