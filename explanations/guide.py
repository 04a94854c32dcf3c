"""The service guide (办事指南): who to contact, how money is paid, who reviews, where to appeal.

A guide is data beside a service's ruleset versions, ``rulesets/<service>/guide.yml``, and
never inside a versioned ruleset file: contact details change without the rules changing,
and a ruleset's content hash must not move when a phone number does. The format is
described in ``docs/service-guide.md``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import pydantic
import yaml
from pydantic import BaseModel, ConfigDict, Field

# The ruleset loader's YAML reader: refuses duplicate keys and locates every node, so a guide's
# problems name the file, line and column the way a ruleset's do.
from engine._yaml import FastSafeLoader, load_located, validation_errors
from engine.errors import RulesetError
from engine.model import Text

__all__ = [
    "GUIDE_FILE",
    "GuideError",
    "Office",
    "Payment",
    "Review",
    "ServiceGuide",
    "Text",
    "load_guide",
    "load_guides",
]

GUIDE_FILE = "guide.yml"
"""The guide's file name inside a service's folder.

``.yml``, not ``.yaml``: the ruleset catalogue (``engine.catalog.ruleset_files``) loads every
``*.yaml`` under the rulesets folder as a ruleset version, and a guide read as a ruleset
would make its whole service unavailable. Once the catalogue skips guides, this can become
``guide.yaml``."""


class GuideError(Exception):
    """Raised by ``load_guide`` when a guide file cannot be read or does not validate.

    ``problems`` holds one line per fault, each starting ``file:line:column:``; ``file`` is
    the guide's path. ``load_guides`` never raises it: it reports the lines instead.
    """

    def __init__(self, file: str, problems: list[str]) -> None:
        self.file = file
        self.problems = tuple(problems)
        super().__init__("\n".join(self.problems))


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Office(_Strict):
    """A body a person can reach, and how: only details confirmed with the body itself."""

    name: Text
    address: Text | None = None
    phone: str | None = Field(default=None, pattern=r"^[0-9][0-9\- ]{2,30}[0-9]$")
    """As dialled from elsewhere in China, e.g. ``0755-12345``."""
    url: str | None = Field(default=None, pattern=r"^https?://[^\s<>\"']+$")
    hours: Text | None = None
    """Office hours (办公时间) as the body publishes them."""


class Payment(_Strict):
    """When and how an approved amount reaches the person."""

    when: Text
    how: Text


class Review(_Strict):
    """The people who look at referred cases and objections, and what they need."""

    body: Office
    working_days: int = Field(ge=1, le=90)
    """A referred case is decided within this many working days after the decision day."""
    objection_working_days: int | None = Field(default=None, ge=1, le=90)
    """An objection (异议) may be lodged within this many working days after the decision day;
    when absent the service commitment of 15 calendar days applies."""
    prepare: list[Text] = Field(default_factory=list)
    """What the person may prepare for the reviewer (documents, originals to show)."""


class ServiceGuide(_Strict):
    """One service's 办事指南, as ``rulesets/<service>/guide.yml`` states it."""

    schema_version: Literal[1]
    service: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    authority: Office
    """The authority that decides (its name must match the rulesets' ``authority``)."""
    payment: Payment | None = None
    """For services that pay money; absent for the others."""
    after_approval: Text | None = None
    """What follows an approval when nothing is paid (e.g. the steps to register)."""
    review: Review
    reconsideration: Office
    """The administrative reconsideration body (行政复议机关)."""
    court: Office
    """The people's court (人民法院) that hears an administrative lawsuit."""


def _ruleset_authorities(service_dir: Path) -> set[str]:
    """The ``authority.zh`` of every ruleset version in the folder (unreadable files skipped:
    the ruleset catalogue reports those). Composed, not constructed: the one string is read
    off the node tree (constructing the whole document cost each worker ~0.3 s at start)."""
    names: set[str] = set()
    for path in sorted(service_dir.glob("*.yaml")):
        try:
            node = yaml.compose(path.read_text(encoding="utf-8"), Loader=FastSafeLoader)
        except (OSError, yaml.YAMLError):
            continue
        for key in ("authority", "zh"):
            if not isinstance(node, yaml.MappingNode):
                node = None
                break
            # the last of a repeated key, as a constructed mapping keeps it
            node = next((v for k, v in reversed(node.value) if k.value == key), None)
        if isinstance(node, yaml.ScalarNode) and node.tag == "tag:yaml.org,2002:str":
            names.add(node.value)
    return names


def load_guide(service_dir: Path) -> ServiceGuide | None:
    """The guide in ``service_dir``, or None when the service has none.

    Raises ``GuideError`` when the file cannot be read, is not valid YAML (duplicate keys
    included), does not match the model, names another service than its folder, or names
    an authority that none of the folder's ruleset versions names.
    """
    path = service_dir / GUIDE_FILE
    if not path.is_file():
        return None
    file = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise GuideError(file, [f"{file}: 无法读取 / cannot be read: {exc}"]) from None
    try:
        located = load_located(text, file=file)
    except RulesetError as exc:
        raise GuideError(file, [str(exc)]) from None
    if not isinstance(located.data, dict):
        raise GuideError(
            file, [f"{file}:1:1: 应为映射 / expected a mapping, got {type(located.data).__name__}"]
        )
    try:
        guide = ServiceGuide.model_validate(located.data)
    except pydantic.ValidationError as exc:
        raise GuideError(file, [str(e) for e in validation_errors(exc, located)]) from None
    problems: list[str] = []
    if guide.service != service_dir.name:
        problems.append(
            str(
                located.error(
                    f"事项编码与所在文件夹不一致 / service {guide.service!r} does not match its "
                    f"folder {service_dir.name!r}",
                    ("service",),
                )
            )
        )
    authorities = _ruleset_authorities(service_dir)
    if authorities and guide.authority.name.zh not in authorities:
        problems.append(
            str(
                located.error(
                    f"主管部门与规则不一致 / authority {guide.authority.name.zh!r} is not the "
                    f"authority of any ruleset version here (expected one of "
                    f"{', '.join(repr(a) for a in sorted(authorities))})",
                    ("authority", "name", "zh"),
                )
            )
        )
    if problems:
        raise GuideError(file, problems)
    return guide


def load_guides(rulesets_dir: Path) -> tuple[dict[str, ServiceGuide], list[str]]:
    """Every service's guide by service code, and one line per problem found.

    A service folder is a folder of ``rulesets_dir`` holding at least one ruleset file. A
    broken guide is left out and reported, never raised; a service without a guide is
    reported too (its pages fall back to general wording).
    """
    guides: dict[str, ServiceGuide] = {}
    problems: list[str] = []
    if not rulesets_dir.is_dir():
        return guides, [f"{rulesets_dir}: 规则文件夹不存在 / no such rulesets folder"]
    for service_dir in sorted(p for p in rulesets_dir.iterdir() if p.is_dir()):
        if not any(service_dir.glob("*.yaml")):
            continue
        try:
            guide = load_guide(service_dir)
        except GuideError as exc:
            problems.extend(exc.problems)
            continue
        if guide is None:
            problems.append(
                f"{service_dir / GUIDE_FILE}: 缺少办事指南 / no service guide: pages use general "
                f"wording without contact details"
            )
            continue
        guides[guide.service] = guide
    return guides, problems
