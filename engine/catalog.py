"""All rulesets of a folder, and which version is in force on an application date.

A folder is served as far as it can be: a file that does not load, or a version that needs a
registry that is not available, is reported by name and blocks only its own service; every
other service keeps deciding.
"""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from engine.errors import (
    NoVersionInForce,
    RulesetError,
    RulesetInvalid,
    ServiceUnavailable,
    UnknownService,
)
from engine.registries import CATALOGUE_FILE, RegistryCatalogue
from engine.ruleset import Ruleset, load_ruleset

__all__ = ["IN_FORCE_STATUSES", "RulesetCatalog", "RulesetProblem", "ruleset_files"]

IN_FORCE_STATUSES = frozenset({"published"})
_NOT_RULESETS = {CATALOGUE_FILE}


@dataclass(frozen=True)
class RulesetProblem:
    """A ruleset file that cannot be served, and why (each message names file:line:column)."""

    path: str
    service: str | None
    version: str | None
    status: str | None
    messages: list[str] = field(default_factory=list)

    @property
    def blocks_service(self) -> bool:
        """A broken draft blocks nothing; anything else might be the version in force."""
        return self.status != "draft"


def ruleset_files(root: Path) -> list[Path]:
    """The ruleset files under ``root``: every ``*.yaml`` but the registry catalogue and files
    in ``demo`` folders."""
    return sorted(
        p
        for p in root.rglob("*.yaml")
        if p.name not in _NOT_RULESETS and "demo" not in p.relative_to(root).parts[:-1]
    )


def _peek(path: Path) -> tuple[str | None, str | None, str | None]:
    """Service, version and status of a file that failed to load, as far as they can be read."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except Exception:  # any unreadable file: nothing to peek at
        data = None
    if not isinstance(data, dict):
        return None, None, None

    def text(key: str) -> str | None:
        v = data.get(key)
        return str(v) if isinstance(v, str | int) else None

    return text("service"), text("version"), text("status")


class RulesetCatalog:
    """The rulesets under a folder (``<service>/<version>.yaml``), loaded and checked once."""

    def __init__(
        self,
        rulesets: Sequence[Ruleset],
        *,
        problems: Sequence[RulesetProblem] = (),
        strict: bool = True,
    ) -> None:
        self._by_service: dict[str, list[Ruleset]] = {}
        for rs in sorted(rulesets, key=lambda r: (r.service, r.doc.effective_from)):
            self._by_service.setdefault(rs.service, []).append(rs)
        self.problems: list[RulesetProblem] = list(problems)
        self._unavailable: dict[str, list[str]] = {}
        self._unavailable_short: dict[str, list[str]] = {}
        errors: list[RulesetError] = []
        for service, versions in self._by_service.items():
            live = [v for v in versions if v.doc.status in IN_FORCE_STATUSES]
            for a, b in itertools.pairwise(live):
                if a.doc.effective_to is None or a.doc.effective_to >= b.doc.effective_from:
                    err = RulesetError(
                        f"已发布版本 {a.version} 与 {b.version} 的生效期间重叠 / published versions "
                        f"{a.version} and {b.version} of {service} overlap "
                        f"({a.doc.effective_from}…{a.doc.effective_to or 'open'} and "
                        f"{b.doc.effective_from}…)",
                        file=b.path,
                        line=1,
                        column=1,
                        key="effective_from",
                    )
                    errors.append(err)
                    for rs in (a, b):
                        self._unavailable.setdefault(rs.key, []).append(err.message)
        if errors and strict:
            raise RulesetInvalid(errors)

    @classmethod
    def load(cls, root: Path | str, *, sources: RegistryCatalogue | None = None) -> RulesetCatalog:
        """Load every ruleset under ``root``; refuse the whole folder if any file is invalid."""
        rulesets: list[Ruleset] = []
        errors: list[RulesetError] = []
        for path in ruleset_files(Path(root)):
            try:
                rulesets.append(load_ruleset(path, in_service_folder=True, sources=sources))
            except RulesetInvalid as exc:
                errors.extend(exc.errors)
        if errors:
            raise RulesetInvalid(errors)
        return cls(rulesets)

    @classmethod
    def scan(cls, root: Path | str, *, sources: RegistryCatalogue | None = None) -> RulesetCatalog:
        """Load what can be loaded under ``root``; every file that cannot is a ``problem``."""
        rulesets: list[Ruleset] = []
        problems: list[RulesetProblem] = []
        for path in ruleset_files(Path(root)):
            try:
                rulesets.append(load_ruleset(path, in_service_folder=True, sources=sources))
            except RulesetInvalid as exc:
                service, version, status = _peek(path)
                problems.append(
                    RulesetProblem(
                        str(path),
                        service or path.parent.name,
                        version,
                        status,
                        [str(e) for e in exc.errors],
                    )
                )
        return cls(rulesets, problems=problems, strict=False)

    # --- serving -------------------------------------------------------------------------

    def mark_unavailable(
        self, ruleset_key: str, reasons: Sequence[str], *, short: Sequence[str] = ()
    ) -> None:
        """Record why a loaded ruleset cannot be served (e.g. a registry did not load).

        ``short`` is what a client is told (no file paths); ``reasons`` go to operators.
        """
        self._unavailable.setdefault(ruleset_key, []).extend(reasons)
        if short:
            self._unavailable_short.setdefault(ruleset_key, []).extend(short)

    def unavailable(self, ruleset: Ruleset) -> list[str]:
        """Why ``ruleset`` cannot be served; empty when it can."""
        return list(self._unavailable.get(ruleset.key, []))

    def blocking_problems(self, service: str) -> list[RulesetProblem]:
        """Broken files of ``service`` that are not drafts: any might be the version in force."""
        if not self.problems:
            return []
        return [p for p in self.problems if p.service == service and p.blocks_service]

    def servable(self, ruleset: Ruleset) -> bool:
        return not self.unavailable(ruleset) and not self.blocking_problems(ruleset.service)

    def services(self) -> list[str]:
        return sorted(set(self._by_service) | {p.service for p in self.problems if p.service})

    def versions(self, service: str) -> list[Ruleset]:
        found = self._by_service.get(service)
        if found is not None:
            return list(found)
        if service not in self.services():
            raise UnknownService(service, known=self.services())
        return []

    def get(self, service: str, version: str) -> Ruleset | None:
        for rs in self.versions(service):
            if rs.version == version:
                return rs
        return None

    def by_hash(self, content_hash: str) -> Ruleset | None:
        for rs in self:
            if rs.content_hash == content_hash:
                return rs
        return None

    def in_force(self, service: str, on: dt.date) -> Ruleset:
        """The published version whose effective period contains ``on`` (the application date).

        Raises ``UnknownService``, ``ServiceUnavailable`` (a file of the service is broken, or
        the version in force needs something unavailable) or ``NoVersionInForce``.
        """
        versions = self.versions(service)
        blocking = self.blocking_problems(service)
        if blocking:
            raise ServiceUnavailable(
                service,
                reasons=[
                    f"规则文件 {Path(p.path).name} 无法加载 / ruleset file {Path(p.path).name} "
                    "does not load"
                    for p in blocking
                ],
            )
        for rs in versions:
            if rs.doc.status in IN_FORCE_STATUSES and rs.in_force_on(on):
                reasons = self._unavailable_short.get(rs.key) or self.unavailable(rs)
                if reasons:
                    raise ServiceUnavailable(service, reasons=reasons, version=rs.version)
                return rs
        raise NoVersionInForce(service, on=on)

    def __iter__(self) -> Iterator[Ruleset]:
        for versions in self._by_service.values():
            yield from versions

    def status(self, *, detailed: bool = True) -> list[dict[str, object]]:
        """One entry per ruleset file: loaded or not, servable or not, and why.

        ``detailed=False`` is what anyone may be shown: no file paths, and the short reasons a
        client refused with 503 is given (file names only, no rows or values).
        """
        out: list[dict[str, object]] = []
        for rs in self:
            blocking = self.blocking_problems(rs.service)
            if detailed:
                reasons = self.unavailable(rs) + [
                    f"{p.path}: {m}" for p in blocking for m in p.messages[:1]
                ]
            else:
                reasons = list(
                    self._unavailable_short.get(rs.key) or self._unavailable.get(rs.key, [])
                ) + [_does_not_load(p.path) for p in blocking]
            out.append(
                {
                    "service": rs.service,
                    "version": rs.version,
                    "status": rs.doc.status,
                    "effective_from": rs.doc.effective_from.isoformat(),
                    "effective_to": rs.doc.effective_to.isoformat()
                    if rs.doc.effective_to
                    else None,
                    **({"path": rs.path} if detailed else {}),
                    "servable": not reasons,
                    "problems": reasons,
                }
            )
        for p in self.problems:
            out.append(
                {
                    "service": p.service,
                    "version": p.version,
                    "status": p.status,
                    "effective_from": None,
                    "effective_to": None,
                    **({"path": p.path} if detailed else {}),
                    "servable": False,
                    "problems": p.messages if detailed else [_does_not_load(p.path)],
                }
            )
        return out


def _does_not_load(path: str) -> str:
    name = Path(path).name
    return f"规则文件 {name} 无法加载 / ruleset file {name} does not load"


def registry_reasons(
    ruleset: Ruleset,
    *,
    loaded: Mapping[str, object],
    problems: Mapping[str, str],
    detailed: bool = True,
) -> list[str]:
    """Why a ruleset cannot be served with the registries that loaded (empty when it can).

    With ``detailed`` the registry's own problem (file, row, column) is included.
    """
    reasons = []
    for source in ruleset.registries:
        if source in loaded:
            continue
        problem = problems.get(source)
        if problem:
            reasons.append(
                f"登记库 {source} 不可用 / registry {source} is not available"
                + (f": {problem}" if detailed else "")
            )
        else:
            reasons.append(f"登记库 {source} 未配置 / registry {source} is not configured")
    return reasons
