"""The ``io.conveyor.*`` labels on what Conveyor makes in an engine, and the rule the sweeps match.

A job resource (a container, network, volume, Swarm service or secret a build makes) carries the
build's labels (``labels_for``) and ``io.conveyor.job-resource`` set to the resource's own name
(``job_resource``). The sweeps (runner/engine/sweeps.py, the Swarm backend's) remove only what
``is_job_resource`` says: a container inherits its image's labels (a Swarm task of an image a build
stage made would otherwise look like a job container), but an image cannot know the name of a
container that does not exist yet, and a Swarm task is never ours to remove.

Images a build stage makes carry ``io.conveyor.image.*`` instead, which no sweep matches: a deployed
service must never look like a build's leftover.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

__all__ = ["LABEL_BUILD", "LABEL_INSTANCE", "LABEL_EXPIRES", "LABEL_JOB_RESOURCE", "SWARM_LABELS", "IMAGE_REPO",
           "IMAGE_BUILD", "IMAGE_INSTANCE", "OLD_IMAGE_REPO", "labels_for", "job_resource", "is_job_resource",
           "expired"]

LABEL_BUILD = "io.conveyor.build"
LABEL_INSTANCE = "io.conveyor.instance"
LABEL_EXPIRES = "io.conveyor.expires"
LABEL_JOB_RESOURCE = "io.conveyor.job-resource"
SWARM_LABELS = "com.docker.swarm."  # a Swarm task's container: never ours to remove, whatever else it carries

# Provenance of an image a build stage made; every container of it (a Swarm task too) inherits these.
IMAGE_REPO = "io.conveyor.image.repo"
IMAGE_BUILD = "io.conveyor.image.build"
IMAGE_INSTANCE = "io.conveyor.image.instance"
OLD_IMAGE_REPO = "io.conveyor.repo"  # what images built before the rename carry


def labels_for(build_id: str, instance: str, ttl: float, extra: Iterable[tuple[str, str]] = ()) -> dict[str, str]:
    """A build's labels: ``extra`` plus its id, the instance and when its resources expire."""
    labels = dict(extra)
    labels.update({LABEL_BUILD: build_id, LABEL_INSTANCE: instance, LABEL_EXPIRES: str(int(time.time() + ttl))})
    return labels


def job_resource(labels: dict[str, str], name: str) -> dict[str, str]:
    """``labels`` plus the mark that makes the resource called ``name`` one the sweeps may remove."""
    return {**labels, LABEL_JOB_RESOURCE: name}


def is_job_resource(labels: dict[str, str], names: list[str]) -> bool:
    """Whether a resource known by ``names`` with ``labels`` is a job resource Conveyor made."""
    if any(key.startswith(SWARM_LABELS) for key in labels):
        return False
    return labels.get(LABEL_JOB_RESOURCE) in names


def expired(labels: dict[str, str], now: float | None = None) -> bool:
    try:
        return float(labels.get(LABEL_EXPIRES, "inf")) < (time.time() if now is None else now)
    except ValueError:
        return True
