"""What one running service decides with: the registry catalogue, the registries that loaded,
and the rulesets, each marked servable or not with the reason.

Nothing here stops the service for one broken part: a registry whose file is missing or
malformed, or a ruleset that does not validate, is reported (one line each, in the log, at
``/healthz`` and in ``miaopi ruleset list``) and only the services that need it stop deciding.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog

from adapters.base import Adapter
from adapters.files import load_registries
from adapters.http import build_http_registries
from engine import EngineFault, RulesetCatalog, RulesetInvalid
from engine.catalog import registry_reasons
from engine.decision import warm_up
from engine.registries import CATALOGUE_FILE, RegistryCatalogue, load_catalogue

__all__ = ["Deployment", "catalogue_path", "load_deployment"]

log = structlog.get_logger("miaopi.deployment")


@dataclass
class Deployment:
    rulesets: RulesetCatalog
    registries: RegistryCatalogue | None
    adapters: dict[str, Adapter]
    registry_problems: dict[str, str] = field(default_factory=dict)
    registry_counts: dict[str, int] = field(default_factory=dict)
    catalogue_problem: str | None = None
    registry_notes: dict[str, str] = field(default_factory=dict)
    snapshots: dict[str, Any] = field(default_factory=dict)

    @property
    def healthy(self) -> bool:
        """Everything loaded: every registry, every ruleset file, every published version."""
        return (
            self.catalogue_problem is None
            and not self.registry_problems
            and all(p.status == "draft" for p in self.rulesets.problems)
            and all(
                self.rulesets.servable(rs) for rs in self.rulesets if rs.doc.status == "published"
            )
        )

    def health(self, *, detailed: bool = True) -> dict[str, Any]:
        """What loaded and what can decide, and why not.

        ``detailed=False`` is for anyone (``/healthz``): no file paths, row numbers or cell
        values, no row counts, and of a remote source only its breaker state.
        """
        registries: list[dict[str, Any]] = []
        for spec in self.registries or ():
            loaded = spec.id in self.adapters
            entry: dict[str, Any] = {
                "id": spec.id,
                "name_zh": spec.name.zh,
                "kind": spec.kind,
                "loaded": loaded,
            }
            if detailed:
                entry |= {
                    "records": self.registry_counts.get(spec.id),
                    "problem": self.registry_problems.get(spec.id),
                    "note": self.registry_notes.get(spec.id),
                    "as_of": _as_of(self.snapshots.get(spec.id)),
                    **_live_state(self.adapters.get(spec.id)),
                }
            else:
                entry |= {
                    "problem": None if loaded else "未能加载 / did not load",
                    "as_of": _as_of(self.snapshots.get(spec.id)),
                    **_breaker_state(self.adapters.get(spec.id)),
                }
            registries.append(entry)
        catalogue: dict[str, Any] = (
            {
                "path": self.registries.path if self.registries else None,
                "problem": self.catalogue_problem,
            }
            if detailed
            else {
                "problem": "登记库目录有误 / the registry catalogue is invalid"
                if self.catalogue_problem
                else None
            }
        )
        return {
            "status": "ok" if self.healthy else "degraded",
            "catalogue": catalogue,
            "registries": registries,
            "rulesets": self.rulesets.status(detailed=detailed),
        }


def _as_of(snapshot: object) -> str | None:
    as_of = getattr(snapshot, "as_of", None)
    return as_of.isoformat() if as_of is not None else None


def _live_state(adapter: object) -> dict[str, Any]:
    """Breaker, quota and in-flight calls of a remote source (nothing for a file)."""
    health = getattr(adapter, "health", None)
    return {"live": health()} if callable(health) else {}


def _breaker_state(adapter: object) -> dict[str, Any]:
    """A remote source's breaker state (closed, open, half_open); nothing for a file."""
    live = _live_state(adapter).get("live")
    breaker = live.get("breaker") if isinstance(live, dict) else None
    return {"breaker": breaker.get("state")} if isinstance(breaker, dict) else {}


def catalogue_path(rulesets_dir: Path, registries: Path | None = None) -> Path:
    """The registry catalogue: configured, or ``registries.yaml`` beside the rulesets."""
    return registries if registries is not None else rulesets_dir / CATALOGUE_FILE


def load_deployment(
    *,
    rulesets_dir: Path,
    data_dir: Path,
    registries: Path | None = None,
    registry_url: str | None = None,
) -> Deployment:
    """Load the catalogue, every registry it declares and every ruleset, tolerating faults."""
    path = catalogue_path(rulesets_dir, registries)
    catalogue: RegistryCatalogue | None = None
    problem: str | None = None
    try:
        catalogue = load_catalogue(path)
    except RulesetInvalid as exc:
        problem = "; ".join(str(e) for e in exc.errors)
        log.error("registry_catalogue_invalid", problem=problem)
    adapters: dict[str, Adapter] = {}
    problems: dict[str, str] = {}
    counts: dict[str, int] = {}
    notes: dict[str, str] = {}
    snapshots: dict[str, Any] = {}
    if catalogue is not None:
        remote = build_http_registries(catalogue, override_url=registry_url)
        files = RegistryCatalogue([s for s in catalogue if s.id not in remote], path=catalogue.path)
        loaded = load_registries(files, data_dir)
        adapters, problems, counts = dict(loaded.adapters), loaded.problems, loaded.counts
        notes, snapshots = loaded.notes, loaded.snapshots
        for rid, text in notes.items():
            log.warning("registry_snapshot_unchecked", registry=rid, note=text)
        adapters.update(remote)
        for rid, text in problems.items():
            log.error("registry_unavailable", registry=rid, problem=text)
    rulesets = RulesetCatalog.scan(rulesets_dir, sources=catalogue)
    for rs in rulesets:
        if catalogue is None and rs.registries:
            reasons = [f"没有可用的登记库目录 / no registry catalogue: {problem}"]
            short = ["没有可用的登记库目录 / no registry catalogue"]
        else:
            reasons = registry_reasons(rs, loaded=adapters, problems=problems)
            short = registry_reasons(rs, loaded=adapters, problems=problems, detailed=False)
        if reasons:
            rulesets.mark_unavailable(rs.key, reasons, short=short)
            log.error("ruleset_not_servable", ruleset=rs.key, reasons=reasons)
    for rs in rulesets:
        try:
            warm_up(rs)
        except EngineFault as exc:
            rulesets.mark_unavailable(
                rs.key,
                [f"规则引擎无法加载此规则集 / durable_rules cannot load this ruleset: {exc}"],
                short=["规则引擎无法加载此规则集 / the rule engine cannot load this ruleset"],
            )
            log.error("ruleset_not_servable", ruleset=rs.key, reasons=[str(exc)])
    for p in rulesets.problems:
        log.error(
            "ruleset_invalid",
            path=p.path,
            service=p.service,
            status=p.status,
            problems=p.messages[:5],
        )
    return Deployment(rulesets, catalogue, adapters, problems, counts, problem, notes, snapshots)
