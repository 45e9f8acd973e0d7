"""Helpers of the multi-node job tests (`backend: swarm` on the bed): a build through Conveyor's own
code path, the CLI's view of it afterwards, node labels and readiness, and what is left on each
node's engine."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import time
from pathlib import Path

import docker
from multinode_helpers import commit

from runner.backends.swarm import SwarmBackend
from runner.build import BuildRequest, create_build, run_build
from runner.settings import Settings

ROOT = Path(__file__).resolve().parent.parent.parent


def settings_for(bed, data: Path, instance: str) -> Settings:
    # Half a CPU a job: each node (2 CPUs here) takes 4 jobs at once; a little memory reserved each.
    return Settings(data_dir=data, instance=instance, docker_host=bed.manager.docker_host,
                    job_cpus=0.5, job_memory=64 * 1024**2, concurrency=12)


def repo_with(path: Path, pipeline: str) -> str:
    path.mkdir()
    (path / "hello.txt").write_text("hello from the checkout\n")
    return commit(path, pipeline, "jobs")


async def start_build(store, settings: Settings, repo: Path, sha: str,
                      cancel: asyncio.Event | None = None) -> tuple[int, asyncio.Task]:
    """Create a build and run it with the Swarm backend on the bed's manager: (its id, the task
    that returns its final status)."""
    build_id = await asyncio.to_thread(create_build, store, BuildRequest(
        repo="spread-jobs", event="manual", branch="main", sha=sha), settings.instance)
    backend = SwarmBackend(settings)

    async def go() -> str:
        try:
            return await run_build(store, settings, build_id, repo, backend=backend, cancel=cancel)
        finally:
            backend.close()

    return build_id, asyncio.create_task(go())


def cli(bed, data: Path, *args: str) -> str:
    """A `conveyor` command as a user runs it after the build (its own process, the bed as engine)."""
    env = dict(os.environ, DOCKER_HOST=bed.manager.docker_host)
    proc = subprocess.run([sys.executable, "-m", "runner", *args, "--data-dir", str(data)], capture_output=True,
                          text=True, env=env, cwd=ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def client(node) -> docker.DockerClient:
    return docker.DockerClient(base_url=node.docker_host, timeout=60)


def wait_ready(manager, count: int = 3, within: float = 60.0) -> None:
    """Every node ready (an earlier test may have just restarted one)."""
    deadline = time.monotonic() + within
    while True:
        states = {n.attrs["Description"]["Hostname"]: n.attrs["Status"]["State"] for n in manager.nodes.list()}
        if len(states) == count and set(states.values()) == {"ready"}:
            return
        assert time.monotonic() < deadline, f"the bed's nodes are not all ready: {states}"
        time.sleep(0.5)


@contextlib.contextmanager
def node_label(manager, hostname: str, key: str, value: str = ""):
    """The label ``key`` on the node ``hostname`` while the block runs."""
    set_label(manager, hostname, key, value)
    try:
        yield
    finally:
        set_label(manager, hostname, key, None)


def set_label(manager, hostname: str, key: str, value: str | None) -> None:
    node = next(n for n in manager.nodes.list() if n.attrs["Description"]["Hostname"] == hostname)
    spec = dict(node.attrs["Spec"])
    labels = dict(spec.get("Labels") or {})
    if value is None:
        labels.pop(key, None)
    else:
        labels[key] = value
    spec["Labels"] = labels
    node.update(spec)


def leftovers(bed, instance: str, down=(), stopped: bool = True) -> dict[str, list[str]]:
    """Everything of this runner instance on every node of the bed but those ``down``: services and
    secrets (the swarm's, through the manager), and each node's own containers (only running ones
    unless ``stopped``), networks, volumes."""
    label = {"label": f"io.conveyor.instance={instance}"}
    found: dict[str, list[str]] = {}
    for node in bed.nodes:
        if node in down:
            continue
        c = client(node)
        try:
            # The agents remove stopped containers on their own, between docker-py's list and its
            # inspect of each one: a container gone in that moment is gone, not an error.
            names = [x.name for x in c.containers.list(all=stopped, filters=label, ignore_removed=True)]
            names += [x.name for x in c.networks.list(filters=label)]
            names += [x.name for x in c.volumes.list(filters=label)]
            if node == bed.manager:
                names += [x.name for x in c.services.list(filters=label)]
                names += [x.name for x in c.secrets.list(filters=label)]
        finally:
            c.close()
        if names:
            found[node.hostname] = sorted(names)
    return found


def nothing_left(bed, instance: str, down=(), within: float = 10.0) -> dict[str, list[str]]:
    """At once, nothing of the instance runs or is registered on any node; then, within ``within``
    seconds, nothing is left at all. What is found is returned: ``{}`` passes. Why two moments: the
    teardown returns once the manager lists no task of a removed service, i.e. once every agent has
    stopped its container; the agent removes that stopped container a moment later, on its own
    node, where the runner cannot look (it talks to the manager only)."""
    at_once = leftovers(bed, instance, down, stopped=False)
    if at_once:
        return at_once
    deadline = time.monotonic() + within
    while (left := leftovers(bed, instance, down)) and time.monotonic() < deadline:
        time.sleep(0.2)
    return left


def running(manager, instance: str) -> dict[str, str]:
    """{job name: node hostname} of this instance's job tasks that run now (as the manager sees them)."""
    hosts = {n.id: n.attrs["Description"]["Hostname"] for n in manager.nodes.list()}
    found = {}
    for service in manager.services.list(filters={"label": f"io.conveyor.instance={instance}"}):
        job = service.attrs["Spec"]["Labels"].get("io.conveyor.job", service.name)
        for task in service.tasks():
            if task["Status"]["State"] == "running" and task.get("NodeID") in hosts:
                found[job] = hosts[task["NodeID"]]
    return found


async def wait_running(manager, instance: str, jobs: set[str], within: float = 60.0) -> dict[str, str]:
    deadline = time.monotonic() + within
    while not jobs <= set(where := await asyncio.to_thread(running, manager, instance)):
        assert time.monotonic() < deadline, f"not all of {sorted(jobs)} run: {where}"
        await asyncio.sleep(0.2)
    return where
