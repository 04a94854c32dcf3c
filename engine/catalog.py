"""All rulesets of a folder, and which version is in force on an application date."""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Iterator
from pathlib import Path

from engine.errors import NoVersionInForce, RulesetError, RulesetInvalid, UnknownService
from engine.ruleset import Ruleset, load_ruleset

__all__ = ["RulesetCatalog"]

IN_FORCE_STATUSES = frozenset({"published"})


class RulesetCatalog:
    """The rulesets under ``root`` (``<service>/<version>.yaml``), loaded and checked once."""

    def __init__(self, rulesets: list[Ruleset]) -> None:
        self._by_service: dict[str, list[Ruleset]] = {}
        for rs in sorted(rulesets, key=lambda r: (r.service, r.doc.effective_from)):
            self._by_service.setdefault(rs.service, []).append(rs)
        errors: list[RulesetError] = []
        for service, versions in self._by_service.items():
            live = [v for v in versions if v.doc.status in IN_FORCE_STATUSES]
            for a, b in itertools.pairwise(live):
                if a.doc.effective_to is None or a.doc.effective_to >= b.doc.effective_from:
                    errors.append(
                        RulesetError(
                            f"published versions {a.version} and {b.version} of {service} overlap "
                            f"({a.doc.effective_from}…{a.doc.effective_to or 'open'} and "
                            f"{b.doc.effective_from}…)",
                            file=b.path,
                            line=1,
                            column=1,
                            key="effective_from",
                        )
                    )
        if errors:
            raise RulesetInvalid(errors)

    @classmethod
    def load(cls, root: Path | str) -> RulesetCatalog:
        """Load every ``*.yaml`` under ``root``; refuse the whole folder if any file is invalid."""
        rulesets: list[Ruleset] = []
        errors: list[RulesetError] = []
        for path in sorted(Path(root).glob("*/*.yaml")):
            try:
                rulesets.append(load_ruleset(path, in_service_folder=True))
            except RulesetInvalid as exc:
                errors.extend(exc.errors)
        if errors:
            raise RulesetInvalid(errors)
        return cls(rulesets)

    def services(self) -> list[str]:
        return sorted(self._by_service)

    def versions(self, service: str) -> list[Ruleset]:
        if service not in self._by_service:
            raise UnknownService(service, known=self.services())
        return list(self._by_service[service])

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
        """The published version whose effective period contains ``on`` (the application date)."""
        for rs in self.versions(service):
            if rs.doc.status in IN_FORCE_STATUSES and rs.in_force_on(on):
                return rs
        raise NoVersionInForce(service, on=on)

    def __iter__(self) -> Iterator[Ruleset]:
        for versions in self._by_service.values():
            yield from versions
