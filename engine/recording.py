"""What a decision record keeps of each input: derived from sensitivity and use, checked once.

A record keeps only what the decision used (《个人信息保护法》第六条, 最小必要). The checker
derives, for every form field and every catalogued registry field a ruleset reads, how a
record holds it:

* a form field no criterion, value, output, reason text, evidence key or claim reads is
  ``omit``-ted (its name is listed in the record, its value is not);
* one read by value is kept (``keep``): replay must decide on it again;
* one used only to ask a registry (an evidence key or claim) is kept as a keyed pseudonym
  (``pseudonym``) unless it is ``public``: replay re-decides from the recorded evidence, so
  the value itself is not needed;
* a registry field the catalogue records as ``age`` (a birth date) is kept as the whole years
  (周岁) on the application date. Rules may read it only through
  ``age_on(<field>, application.date)``, so any date of that age decides alike, and replay
  rebuilds one (``date_of_age``).

Everything here is pure: the checker fills a ``RecordingPlan``, the service and replay apply it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from engine.dates import age_on, anniversary
from engine.expr import Call, Expr, Name, children

__all__ = [
    "AGE_MASK",
    "FormHandling",
    "RecordingPlan",
    "age_reads_elsewhere",
    "date_of_age",
]

FormHandling = Literal["keep", "pseudonym", "omit"]
AGE_MASK = "****-**-**"
"""What a reason text prints for a date the record keeps only as an age
(``{population.birth_date}``): the ruleset's own words stay, the date does not."""


@dataclass(frozen=True)
class RecordingPlan:
    """How a record holds the inputs of one ruleset (filled by the checker)."""

    form: Mapping[str, FormHandling] = field(default_factory=dict)
    """Form field → ``keep``, ``pseudonym`` or ``omit``."""
    age_fields: frozenset[str] = frozenset()
    """Evidence names (``population.birth_date``) recorded as the age on the application date."""

    def handling(self, name: str) -> FormHandling:
        """How the form field ``name`` is recorded (a field the plan does not know is kept)."""
        return self.form.get(name, "keep")


def _is_age_on_application(node: Expr) -> bool:
    return (
        isinstance(node, Call)
        and node.func == "age_on"
        and len(node.args) == 2
        and isinstance(node.args[0], Name)
        and isinstance(node.args[1], Name)
        and node.args[1].dotted == "application.date"
    )


def age_reads_elsewhere(node: Expr, age_fields: frozenset[str]) -> list[Name]:
    """Every read of an ``age_fields`` name in ``node`` other than as the first argument of
    ``age_on(<name>, application.date)`` (the reads a record of the age cannot replay)."""
    if not age_fields:
        return []
    found: list[Name] = []

    def visit(n: Expr) -> None:
        if _is_age_on_application(n):
            assert isinstance(n, Call)
            return  # the allowed shape; its second argument is the application date
        if isinstance(n, Name):
            if n.dotted in age_fields:
                found.append(n)
            return
        for child in children(n):
            visit(child)

    visit(node)
    return found


def date_of_age(age: int, on: dt.date) -> dt.date:
    """A date of birth whose age (周岁) on ``on`` is ``age``: the earliest such date (the
    corresponding day ``age + 1`` years before ``on``, moved to the next day where 29 February
    makes that one a year older).

    ``age_on(date_of_age(n, d), d) == n`` for every ``n >= 0`` and date ``d``.
    """
    born = anniversary(on, -(age + 1))
    # 29 February and month ends: step to the nearest date of exactly that age.
    while age_on(born, on) > age:
        born += dt.timedelta(days=1)
    while age_on(born, on) < age:
        born -= dt.timedelta(days=1)
    return born
