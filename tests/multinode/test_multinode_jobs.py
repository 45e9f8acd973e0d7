"""Jobs of `backend: swarm` on a real 3-node swarm (the bed of tests/multinode/bed.py), through
Conveyor itself: `run_build` with the Swarm backend on the bed's manager, then what a user reads
afterwards (`conveyor show`, `conveyor logs`, the store).

Twelve jobs in one stage, spread over the nodes: four without `runs_on` (the workspace node, the
manager n1), three pinned by `runs_on: [bed=n3]`, four with `runs_on: [pool]` (a label n2 and n3
carry: Swarm's scheduler picks), and one pinned to n2 that fails with exit code 3. Each prints the
node it ran on (`CONVEYOR_NODE`), something it computed, and a file of the checkout (the jobs away
from n1 get it through Swarm secrets).
"""

from __future__ import annotations

import asyncio
import uuid

import pytest
from swarm_job_helpers import cli, client, nothing_left, node_label, repo_with, settings_for, start_build, wait_ready

from runner.store import builds as q
from runner.store.db import Store

pytestmark = [pytest.mark.multinode]

FREE = ("f1", "f2", "f3", "f4")
PINNED = ("p1", "p2", "p3")
POOL = ("w1", "w2", "w3", "w4")
RUNS_ON = {**{n: "" for n in FREE}, **{n: "bed=n3" for n in PINNED}, **{n: "pool" for n in POOL}, "bad": "bed=n2"}


def _pipeline() -> str:
    jobs = ""
    for i, (name, runs_on) in enumerate(RUNS_ON.items()):
        last = "'echo failing here; exit 3'" if name == "bad" else "'cat hello.txt'"
        jobs += (f"      - name: {name}\n"
                 + (f"        runs_on: [{runs_on}]\n" if runs_on else "")
                 + f"        steps: ['echo \"{name} ran on $CONVEYOR_NODE: $(({i} * {i}))\"', {last}]\n")
    return f"image: conveyor-test/busybox:1\nstages:\n  - name: spread\n    jobs:\n{jobs}"


async def test_twelve_jobs_spread_over_three_nodes(bed, tmp_path):
    instance = "mj" + uuid.uuid4().hex[:8]
    data = tmp_path / "data"
    settings = settings_for(bed, data, instance)
    manager = client(bed.manager)
    n1, n2, n3 = (n.hostname for n in bed.nodes)
    sha = repo_with(tmp_path / "repo", _pipeline())
    store = Store(data)
    try:
        wait_ready(manager)
        with node_label(manager, n2, "pool"), node_label(manager, n3, "pool"):
            build_id, build = await start_build(store, settings, tmp_path / "repo", sha)
            status = await asyncio.wait_for(build, 120)
        assert status == "failure"
        detail = q.get_detail(store.read(), build_id)
        jobs = {j.name: j for j in detail.jobs}
        assert sorted(jobs) == sorted(RUNS_ON), sorted(jobs)
        placed = {}
        for i, name in enumerate(RUNS_ON):
            text = "\n".join(c.text for c in q.build_logs(store.read(), build_id, job=name))
            first, *rest = text.splitlines()
            assert first.startswith(f"{name} ran on ") and first.endswith(f": {i * i}"), (name, text)
            placed[name] = first.split()[3].rstrip(":")
            if name == "bad":
                assert rest == ["failing here"], text
                assert jobs[name].status == "failure" and [s.exit_code for s in jobs[name].steps] == [0, 3]
                assert "exit code 3" in jobs[name].reason
            else:
                assert rest == ["hello from the checkout"], (name, text)
                assert jobs[name].status == "success", (name, jobs[name].reason)
                assert [s.status for s in jobs[name].steps] == ["success"] * 2
        assert {placed[n] for n in FREE} == {n1}  # the workspace node
        assert {placed[n] for n in PINNED} == {n3} and placed["bad"] == n2
        assert {placed[n] for n in POOL} <= {n2, n3}, placed  # the scheduler's pick among the labelled
        assert nothing_left(bed, instance) == {}  # teardown removed every service, secret, container, volume
    finally:
        store.close()
        manager.close()

    # What a user reads afterwards, from another process.
    shown = cli(bed, data, "show", f"id:{build_id}")
    assert f"(id {build_id}): failure" in shown.splitlines()[0], shown
    assert "  job bad: failure" in shown and "step 2 echo failing here; exit 3: failure exit 3" in shown, shown
    assert sum(f"  job {n}: success" in shown for n in RUNS_ON) == 11, shown
    logs = cli(bed, data, "logs", f"id:{build_id}")
    for name in RUNS_ON:
        assert f"[{name}] {name} ran on {placed[name]}: " in logs, logs
    assert logs.count("] hello from the checkout") == 11 and "[bad] failing here" in logs, logs
