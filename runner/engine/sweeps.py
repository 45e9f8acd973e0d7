"""The sweep: remove the job resources (containers, networks, volumes) whose labels match.

Only what ``labels.is_job_resource`` accepts is touched (runner/engine/labels.py). Teardown, the
periodic sweep and crash recovery all come here (the Swarm backend first removes its services and
secrets the same way, runner/backends/swarm_blocking.py).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable

from runner.engine.containers import ignore_missing, remove_container
from runner.engine.engine import Engine
from runner.engine.labels import LABEL_BUILD, LABEL_JOB_RESOURCE, expired, is_job_resource

__all__ = ["remove_job_resources", "kept_by", "sweep_periodically"]

log = logging.getLogger("conveyor.sweeps")


def remove_job_resources(engine: Engine, selector: str,
                         keep: Callable[[dict[str, str]], bool] = lambda labels: False) -> int:
    """Blocking: remove the job containers, then networks, then volumes whose labels match
    ``selector`` (``key=value``) unless ``keep(labels)``. Returns how many went."""
    api, removed = engine.api, 0
    filters = {"label": [LABEL_JOB_RESOURCE, selector]}
    for c in api.containers(all=True, filters=filters):
        labels = c.get("Labels") or {}
        names = [n.lstrip("/") for n in c.get("Names") or []]
        if is_job_resource(labels, names) and not keep(labels):
            remove_container(engine, c["Id"])
            removed += 1
    for n in api.networks(filters=filters):
        labels = n.get("Labels") or {}
        if is_job_resource(labels, [n["Name"]]) and not keep(labels):
            removed += ignore_missing(api.remove_network, n["Id"])
    for v in api.volumes(filters=filters).get("Volumes") or []:
        labels = v.get("Labels") or {}
        if is_job_resource(labels, [v["Name"]]) and not keep(labels):
            removed += ignore_missing(api.remove_volume, v["Name"], force=True)
    return removed


def kept_by(live: Iterable[str], alive: Iterable[str] | None) -> Callable[[dict[str, str]], bool]:
    """The ``keep`` of an instance's sweep: a resource stays while its build runs here (``live``),
    and, when ``alive`` (the builds alive elsewhere) is given, while it is in it; else it goes once
    it expired (``io.conveyor.expires``)."""
    live, alive = set(live), None if alive is None else set(alive)

    def keep(labels: dict[str, str]) -> bool:
        build = labels.get(LABEL_BUILD, "")
        return build in live or not (expired(labels) or (alive is not None and build not in alive))

    return keep


async def sweep_periodically(sweep: Callable[[Iterable[str] | None], Awaitable[int]], interval: float,
                             keep: Callable[[], Iterable[str]] | None) -> None:
    """``sweep`` now and every ``interval`` seconds (``keep``: a callable giving the live build ids).
    An engine away for a while must not end the sweeps for good: a failure is logged and retried."""
    while True:
        try:
            await sweep(keep() if keep else None)
        except Exception as exc:  # noqa: BLE001 - docker-py raises its own errors when the engine is away
            log.warning("sweeping leftovers failed (%s); trying again in %g s", exc, interval)
        await asyncio.sleep(interval)
