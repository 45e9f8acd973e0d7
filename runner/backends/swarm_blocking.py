"""The Swarm backend's blocking engine calls: services, secrets, tasks, nodes and the log stream,
all through the manager the runner talks to. Each is a plain function of an ``Engine`` run with
``engine.call(fn, engine, ...)``, so the Swarm backend crosses into threads at the one seam
(runner/engine/engine.py) and shares the engine's client.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import math
import os
import tarfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runner.engine import errors as derrors
from runner.engine.containers import create_container, remove_container
from runner.engine.engine import Engine
from runner.engine.errors import short as _short
from runner.engine.labels import LABEL_JOB_RESOURCE, job_resource
from runner.engine.types import CancellableStream
from runner.engine.workspace import FILLER_IMAGE
from runner.errors import BackendError, BackendUnavailable

__all__ = ["Node", "TaskState", "is_manager", "manager_node", "nodes", "create_secret", "create_service", "follow_logs",
           "task_state", "remove_service", "remove_secret", "remove_task_containers", "wait_tasks_gone", "remove_swarm_resources",
           "seed_chunks", "with_workspace_container", "SECRET_LIMIT"]

SECRET_LIMIT = 450 * 1024  # a Swarm secret holds at most 500 KiB; a chunk of the checkout stays under it
SEED_CHUNKS = 40  # ~18 MiB of compressed checkout for a job away from the workspace's node
# Task states after which the task's container runs no more (docker/swarmkit api/types.proto).
ENDED = {"complete", "failed", "shutdown", "rejected", "orphaned", "remove"}


@dataclass(frozen=True)
class Node:
    id: str
    hostname: str
    labels: dict[str, str] = field(default_factory=dict)
    ready: bool = True
    nano_cpus: int = 0  # what the node has, for reservations that fit some node
    memory: int = 0


@dataclass(frozen=True)
class TaskState:
    state: str  # new, pending, assigned, ..., running, complete, failed, rejected, shutdown, orphaned
    node_id: str | None
    error: str | None
    node: Node | None  # where it was placed, as the manager sees that node now


def manager_node(engine: Engine) -> str:
    """The id of the engine's own node, or BackendUnavailable when it is no swarm manager."""
    info = engine.ping()
    swarm = info.get("Swarm") or {}
    where = engine.base_url or os.environ.get("DOCKER_HOST") or "the local socket"
    if swarm.get("LocalNodeState") != "active":
        raise BackendUnavailable(f"the Docker engine at {where} is not part of a swarm; run `docker swarm init` "
                                 "there, or point DOCKER_HOST at a swarm manager, or run with --backend docker")
    if not swarm.get("ControlAvailable"):
        raise BackendUnavailable(f"the Docker engine at {where} is a swarm worker, not a manager: jobs are created "
                                 "and followed through a manager; point DOCKER_HOST at one (`docker node ls` "
                                 "there lists them), or promote this node with `docker node promote`")
    return swarm["NodeID"]


def is_manager(engine: Engine) -> bool:
    """Is the engine a manager of an active swarm (so it lists services and secrets)? Raises
    BackendUnavailable when no engine answers."""
    swarm = engine.ping().get("Swarm") or {}
    return swarm.get("LocalNodeState") == "active" and bool(swarm.get("ControlAvailable"))


def nodes(engine: Engine) -> list[Node]:
    return [_node(n) for n in engine.api.nodes()]


def _node(raw: dict) -> Node:
    spec, status, desc = raw.get("Spec") or {}, raw.get("Status") or {}, raw.get("Description") or {}
    resources = desc.get("Resources") or {}
    return Node(raw["ID"], desc.get("Hostname", raw["ID"][:12]), dict(spec.get("Labels") or {}),
                status.get("State") == "ready" and spec.get("Availability", "active") == "active",
                int(resources.get("NanoCPUs") or 0), int(resources.get("MemoryBytes") or 0))


def create_secret(engine: Engine, name: str, data: bytes, labels: dict[str, str]) -> str:
    try:
        return engine.api.create_secret(name, data, labels=job_resource(labels, name))["ID"]
    except derrors.APIError as exc:
        raise BackendError(f"could not create the Swarm secret {name} ({_short(exc)})") from None


def create_service(engine: Engine, name: str, template: Any, mode: Any, labels: dict[str, str]) -> str:
    try:
        return engine.api.create_service(template, name=name, labels=job_resource(labels, name), mode=mode)["ID"]
    except derrors.APIError as exc:
        raise BackendError(f"the manager refused the job's service {name} ({_short(exc)})") from None


def follow_logs(engine: Engine, service_id: str, push: Callable[[bytes | None], None],
                streams: dict[str, Any]) -> None:
    """Hand the service's log stream (followed, through the manager) to ``push`` until it ends or
    ``streams[service_id].close()`` is called; then ``push(None)``."""
    api = engine.api
    try:
        res = api._get(api._url("/services/{0}/logs", service_id),
                       params={"follow": 1, "stdout": 1, "stderr": 1}, stream=True)
        api._raise_for_status(res)
        stream = CancellableStream(api._multiplexed_response_stream_helper(res), res)
        streams[service_id] = stream
        for chunk in stream:
            push(chunk)
    except Exception:  # noqa: BLE001 - closed under us (the step is being stopped), or the service went
        pass
    finally:
        streams.pop(service_id, None)
        push(None)


def task_state(engine: Engine, service_id: str) -> TaskState | None:
    """The state of the service's newest task, with its node; None while it has none."""
    try:
        tasks = engine.api.tasks(filters={"service": service_id})
    except derrors.NotFound:
        return None
    if not tasks:
        return None
    task = max(tasks, key=lambda t: t.get("CreatedAt", ""))
    status, node_id = task.get("Status") or {}, task.get("NodeID")
    node = None
    if node_id:
        try:
            node = _node(engine.api.inspect_node(node_id))
        except derrors.APIError:
            node = Node(node_id, node_id[:12], ready=False)
    return TaskState(status.get("State", "?"), node_id, status.get("Err") or None, node)


def remove_service(engine: Engine, service_id: str) -> None:
    try:
        engine.api.remove_service(service_id)
    except derrors.NotFound:
        pass


def remove_secret(engine: Engine, secret_id: str) -> None:
    for attempt in range(10):  # "in use" for a moment after its service went
        try:
            engine.api.remove_secret(secret_id)
            return
        except derrors.NotFound:
            return
        except derrors.APIError:
            if attempt == 9:
                raise
            time.sleep(0.1 * (attempt + 1))


def remove_task_containers(engine: Engine, service_id: str, grace: float) -> None:
    """Stop (SIGTERM, SIGKILL after ``grace`` seconds) and remove the containers of a removed
    service's tasks on the manager's own node: its agent takes seconds to stop them and leaves
    exited ones behind, and they hold the workspace volume."""
    api = engine.api
    for c in api.containers(all=True, filters={"label": f"com.docker.swarm.service.id={service_id}"}):
        if c.get("State") == "running":
            with contextlib.suppress(derrors.APIError):
                api.stop(c["Id"], timeout=max(1, math.ceil(grace)))
        remove_container(engine, c["Id"])
        # The node's agent removes it too: "already in progress" returns while it still holds the
        # workspace volume, which the build's teardown then could not remove. Wait until it is gone.
        deadline = time.monotonic() + 10.0
        while time.monotonic() < deadline:
            try:
                api.inspect_container(c["Id"])
            except derrors.NotFound:
                break
            time.sleep(0.05)


def wait_tasks_gone(engine: Engine, service_id: str, name: str, within: float) -> None:
    """Wait (at most ``within`` seconds) until the manager lists no task of the removed service on
    a node that is up: the node's agent has stopped its container (TERM, KILL after the grace); it
    removes the stopped container a moment later, on its own. A task on a node that is down stays
    listed until the node returns; not waited for."""
    api = engine.api
    up = {n.id for n in nodes(engine) if n.ready}
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        tasks = [t for t in api.tasks(filters={"name": name}) if t.get("ServiceID") == service_id]
        if not any(t.get("NodeID") in up for t in tasks):
            return
        time.sleep(0.1)


def remove_swarm_resources(engine: Engine, selector: str,
                           keep: Callable[[dict[str, str]], bool] = lambda labels: False) -> int:
    """Remove the job services (waiting for their containers on the manager's node to go), then
    the secrets, whose labels match ``selector`` unless ``keep``; only those whose
    ``io.conveyor.job-resource`` label names themselves (as the Docker sweeps)."""
    api, removed, gone = engine.api, 0, []
    filters = {"label": [LABEL_JOB_RESOURCE, selector]}
    for s in api.services(filters=filters):
        labels = (s.get("Spec") or {}).get("Labels") or {}
        if labels.get(LABEL_JOB_RESOURCE) == s["Spec"].get("Name") and not keep(labels):
            remove_service(engine, s["ID"])
            gone.append(s["ID"])
            removed += 1
    for service_id in gone:  # their containers hold the workspace volume
        remove_task_containers(engine, service_id, 0.0)
    for s in api.secrets(filters=filters):
        labels = (s.get("Spec") or {}).get("Labels") or {}
        if labels.get(LABEL_JOB_RESOURCE) == s["Spec"].get("Name") and not keep(labels):
            try:
                remove_secret(engine, s["ID"])
                removed += 1
            except derrors.APIError as exc:
                raise BackendError(f"could not remove the Swarm secret {s['Spec'].get('Name')}: {_short(exc)}; "
                                   "the next sweep removes it") from None
    return removed


def seed_chunks(source: Path) -> list[bytes]:
    """The checkout as a gzip tar cut into secret-sized chunks, for a job that runs away from the
    build's workspace volume (it unpacks them before its first step)."""
    raw = io.BytesIO()
    with gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=6, mtime=0) as gz:
        with tarfile.open(fileobj=gz, mode="w") as tar:
            for entry in sorted(Path(source).iterdir()):
                tar.add(entry, arcname=entry.name)
    data = raw.getvalue()
    chunks = [data[i:i + SECRET_LIMIT] for i in range(0, len(data), SECRET_LIMIT)] or [b""]
    if len(chunks) > SEED_CHUNKS:
        raise BackendError(f"the checkout is {len(data) >> 20} MiB compressed; a job that runs_on sends away from the "
                           f"build's workspace node gets it as Swarm secrets, at most {SEED_CHUNKS * SECRET_LIMIT >> 20} "
                           "MiB: drop runs_on for this job, or make the repository smaller")
    return chunks


def with_workspace_container(engine: Engine, volume: str, workdir: str, labels: dict[str, str],
                             name: str, fn: Callable[[str], Any]) -> Any:
    """Run ``fn(container id)`` on a container that mounts the workspace volume at ``workdir`` and is
    created, never started (the manager's own engine holds the volume; setup made the filler image),
    then remove it."""
    create = dict(image=FILLER_IMAGE, command=["files"], name=name, network_disabled=True,
                  labels=job_resource(labels, name))
    cid = create_container(engine, create, dict(binds=[f"{volume}:{workdir}:rw"]))
    try:
        return fn(cid)
    finally:
        remove_container(engine, cid)
