"""Jobs of `backend: swarm` on a real 3-node swarm (the bed of tests/multinode/bed.py), through
Conveyor itself: `run_build` with the Swarm backend on the bed's manager.

Six jobs in one stage: four without `runs_on` (they run on the workspace node, the manager) and two
pinned by `runs_on: [bed=n3]` to the node labelled so. Each prints the node it ran on
(`CONVEYOR_NODE`) and a file of the checkout (the pinned ones get it through Swarm secrets).
"""

from __future__ import annotations

import asyncio
import time
import uuid

import docker
import pytest
from multinode_helpers import commit

from runner.backends.swarm import SwarmBackend
from runner.build import BuildRequest, create_build, run_build
from runner.settings import Settings
from runner.store import builds as q
from runner.store.db import Store

pytestmark = [pytest.mark.multinode]

FREE = ("a1", "a2", "a3", "a4")
PINNED = ("p1", "p2")


def _pipeline() -> str:
    jobs = "".join(f"      - name: {name}\n"
                   f"        steps: ['echo \"{name} ran on $CONVEYOR_NODE\"', 'cat hello.txt']\n"
                   for name in FREE)
    jobs += "".join(f"      - name: {name}\n"
                    f"        runs_on: [bed=n3]\n"
                    f"        steps: ['echo \"{name} ran on $CONVEYOR_NODE\"', 'cat hello.txt']\n"
                    for name in PINNED)
    return f"image: conveyor-test/busybox:1\nstages:\n  - name: spread\n    jobs:\n{jobs}"


def _wait_ready(client, within: float = 60.0) -> None:
    """Every node ready (an earlier test may have just restarted one)."""
    deadline = time.monotonic() + within
    while True:
        states = {n.attrs["Description"]["Hostname"]: n.attrs["Status"]["State"] for n in client.nodes.list()}
        if len(states) == 3 and set(states.values()) == {"ready"}:
            return
        assert time.monotonic() < deadline, f"the bed's nodes are not all ready: {states}"
        time.sleep(0.5)


def _leftovers(client, instance: str) -> list[str]:
    label = {"label": f"io.conveyor.instance={instance}"}
    found = [s.name for s in client.services.list(filters=label)]
    found += [s.name for s in client.secrets.list(filters=label)]
    found += [c.name for c in client.containers.list(all=True, filters=label)]
    return found + [v.name for v in client.volumes.list(filters=label)]


async def test_six_jobs_two_pinned_to_a_labelled_node(bed, tmp_path):
    instance = "mj" + uuid.uuid4().hex[:8]
    data = tmp_path / "data"
    # Half a CPU a job: each node (2 CPUs here) takes 4 jobs at once; a little memory reserved each.
    settings = Settings(data_dir=data, instance=instance, docker_host=bed.manager.docker_host,
                        job_cpus=0.5, job_memory=64 * 1024**2, concurrency=6)
    client = docker.DockerClient(base_url=bed.manager.docker_host, timeout=60)
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "hello.txt").write_text("hello from the checkout\n")
    sha = commit(repo, _pipeline(), "six jobs")
    store = Store(data)
    try:
        _wait_ready(client)
        build_id = await asyncio.to_thread(create_build, store, BuildRequest(
            repo="spread-jobs", event="manual", branch="main", sha=sha), instance)
        backend = SwarmBackend(settings)
        try:
            status = await asyncio.wait_for(run_build(store, settings, build_id, repo, backend=backend), 60)
        finally:
            backend.close()
        detail = q.get_detail(store.read(), build_id)
        jobs = {j.name: j for j in detail.jobs}
        assert status == "success", {n: (j.status, j.reason) for n, j in jobs.items()}
        assert sorted(jobs) == sorted(FREE + PINNED)
        n1, n3 = bed.manager.hostname, bed.nodes[2].hostname
        for name in FREE + PINNED:
            assert jobs[name].status == "success" and [s.status for s in jobs[name].steps] == ["success"] * 2
            text = "\n".join(c.text for c in q.build_logs(store.read(), build_id, job=name))
            where = n3 if name in PINNED else n1  # pinned: the labelled node; else the workspace node
            assert text.splitlines() == [f"{name} ran on {where}", "hello from the checkout"], (name, text)
        assert _leftovers(client, instance) == []  # teardown removed every service, secret and volume
    finally:
        store.close()
        client.close()
