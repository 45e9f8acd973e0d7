"""The sweep: remove the job resources (containers, networks, volumes) whose labels match.

Only what ``labels.is_job_resource`` accepts is touched (runner/engine/labels.py). Teardown, the
periodic sweep and crash recovery all come here (the Swarm backend first removes its services and
secrets the same way, runner/backends/swarm_blocking.py).
"""

from __future__ import annotations

from collections.abc import Callable

from runner.engine.containers import ignore_missing, remove_container
from runner.engine.engine import Engine
from runner.engine.labels import LABEL_JOB_RESOURCE, is_job_resource

__all__ = ["remove_job_resources"]


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
