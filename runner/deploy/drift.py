"""Drift: does each service still run the spec its last recorded deploy wrote, and if not, what differs?

Someone ran ``docker service update --env-add X=1`` by hand, scaled it, or Swarm rolled an update
back on its own: the live spec no longer is the recorded one, and a rollback or promotion would
silently undo (or build on) that. ``conveyor deploys --drift`` and the environments page's marker
show it, field by field.

The engine fills in defaults and drops zero values when it stores a spec, so both sides are
normalised before comparing: empty and zero values are left out, and the defaults below ignored.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from runner.deploy import history
from runner.deploy.service import live_service
from runner.engine import Engine
from runner.store.db import Store

__all__ = ["Drift", "differences", "check_service", "check_all", "drift_report"]

# What the engine adds to every spec it stores (values it would use anyway).
_ENGINE_DEFAULTS = {"TaskTemplate.ContainerSpec.Isolation": "default", "TaskTemplate.Runtime": "container"}


@dataclass(frozen=True)
class Drift:
    target: str
    service: str
    deploy_id: int | None  # the recorded deploy compared against
    environment: str | None = None
    differences: tuple[str, ...] = ()  # empty: the live service runs the recorded spec
    note: str | None = None  # e.g. Swarm rolled back on its own, or the service is gone

    @property
    def drifted(self) -> bool:
        return bool(self.differences or self.note)

    def to_json(self) -> dict[str, Any]:
        return {"target": self.target, "service": self.service, "deploy": self.deploy_id,
                "environment": self.environment, "drifted": self.drifted, "differences": list(self.differences),
                "note": self.note}


def _flat(value: Any, path: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    if isinstance(value, dict):
        for key, item in value.items():
            out.update(_flat(item, f"{path}.{key}" if path else key))
    elif value not in (None, 0, "", [], {}, False):
        out[path] = value
    return out


def _describe(path: str, recorded: Any, live: Any) -> str:
    if isinstance(recorded, list) and isinstance(live, list) and all(isinstance(v, str) for v in recorded + live):
        added = [v for v in live if v not in recorded]
        removed = [v for v in recorded if v not in live]
        parts = [f"+{v}" for v in added] + [f"-{v}" for v in removed]
        return f"{path}: {' '.join(parts) if parts else 'reordered'}"
    if recorded is None:
        return f"{path}: added {live!r}"
    if live is None:
        return f"{path}: removed (was {recorded!r})"
    return f"{path}: {recorded!r} -> {live!r}"


def differences(recorded: dict[str, Any], live: dict[str, Any]) -> list[str]:
    """What differs between a recorded ServiceSpec and a live one, one line per field path."""
    a = _flat(recorded)
    b = {k: v for k, v in _flat(live).items() if _ENGINE_DEFAULTS.get(k) != v}
    return [_describe(k, a.get(k), b.get(k)) for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]


def _compare(service: dict | None, row: history.Deploy) -> tuple[tuple[str, ...], str | None]:
    """Blocking-free: the differences and note for one service against its recorded deploy."""
    if service is None:
        return (), "the service is gone (removed outside Conveyor?)"
    state = (service.get("UpdateStatus") or {}).get("State") or ""
    note = None
    if state.startswith("rollback"):
        note = f"Swarm rolled the service back on its own (update state: {state})"
    if row.get("version_after") and service["Version"]["Index"] == row["version_after"]:
        return (), note  # not written since our update: nothing to compare
    return tuple(differences(row["spec_after"], service["Spec"])), note


async def check_service(swarm: Engine, store: Store, service: str) -> Drift:
    target = swarm.target.name
    row = await history.live(store, target, service)
    if row is None:
        return Drift(target, service, None, note="no succeeded deploy recorded to compare with")
    live = await swarm.call(live_service, swarm, service)
    diffs, note = _compare(live, row)
    return Drift(target, service, row["id"], row.get("environment"), diffs, note)


async def check_all(swarm: Engine, store: Store) -> list[Drift]:
    """Every service of the target that has a succeeded deploy in the history."""
    names = await history.services_on(store, swarm.target.name)
    return [await check_service(swarm, store, name) for name in names]


async def drift_report(settings, store: Store, service: str | None = None, target: str | None = None) -> list[Drift]:
    """Drift of ``service`` (or every recorded service) on ``target`` (or every target with deploys).
    A target that cannot be reached is one entry saying so, not the end of the report."""
    from runner.engine import open_target
    from runner.errors import DeployError

    targets = [target] if target else await history.targets(store)
    out: list[Drift] = []
    for name in targets:
        try:
            swarm = await open_target(settings, name)
        except DeployError as exc:
            out.append(Drift(name, service or "*", None, note=f"cannot check: {exc}"))
            continue
        try:
            out += [await check_service(swarm, store, service)] if service else await check_all(swarm, store)
        finally:
            swarm.close()
    return out
