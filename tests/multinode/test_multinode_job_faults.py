"""`backend: swarm` on the 3-node bed when things go wrong mid-build: a cancel (nothing of the
build is left on any node's engine) and a node whose engine dies while its jobs run (their steps
are interrupted naming the node; `retry` runs one again on another node; the build says
`interrupted`, not `failure`). Checked in the store, `conveyor show` and `conveyor logs` after the
build ended, and on every node's engine (the dead node's after it came back).
"""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest
from swarm_job_helpers import (cli, client, leftovers, node_label, nothing_left, repo_with, set_label, settings_for,
                               start_build, wait_ready, wait_running)

from runner.store import builds as q
from runner.store.db import Store

pytestmark = [pytest.mark.multinode]

CANCEL = """\
image: conveyor-test/busybox:1
stages:
  - name: long
    jobs:
      - {name: a, steps: ['echo "a on $CONVEYOR_NODE"; sleep 120']}
      - {name: b, runs_on: [bed=n2], steps: ['echo "b on $CONVEYOR_NODE"; sleep 120']}
      - {name: c, runs_on: [bed=n3], steps: ['echo "c on $CONVEYOR_NODE"; sleep 120']}
  - name: never
    jobs:
      - {name: d, steps: [echo never]}
"""


async def test_cancel_mid_build_leaves_nothing_on_any_node(bed, tmp_path):
    instance = "mc" + uuid.uuid4().hex[:8]
    data = tmp_path / "data"
    manager = client(bed.manager)
    sha = repo_with(tmp_path / "repo", CANCEL)
    store = Store(data)
    cancel = asyncio.Event()
    try:
        wait_ready(manager)
        build_id, build = await start_build(store, settings_for(bed, data, instance), tmp_path / "repo", sha, cancel)
        where = await wait_running(manager, instance, {"a", "b", "c"})
        assert where == {"a": "cvbn1", "b": "cvbn2", "c": "cvbn3"}, where
        cancel.set()
        assert await asyncio.wait_for(build, 60) == "cancelled"
        # At once: nothing of the build runs or is registered on any node (Swarm's agents stopped the
        # tasks before teardown returned); a moment later each agent has removed its stopped container.
        assert nothing_left(bed, instance) == {}
        jobs = {j.name: j for j in q.get_detail(store.read(), build_id).jobs}
        assert {n: j.status for n, j in jobs.items()} == {"a": "cancelled", "b": "cancelled", "c": "cancelled",
                                                             "d": "skipped"}
    finally:
        store.close()
        manager.close()
    shown = cli(bed, data, "show", f"id:{build_id}")
    assert f"(id {build_id}): cancelled" in shown.splitlines()[0], shown
    logs = cli(bed, data, "logs", f"id:{build_id}")
    assert all(f"[{j}] {j} on cvbn{i}" in logs for i, j in enumerate("abc", 1)), logs


FAULT = """\
image: conveyor-test/busybox:1
stages:
  - name: work
    jobs:
      - {name: steady, steps: ['echo "steady on $CONVEYOR_NODE"; sleep 2']}
      - name: victim
        runs_on: [pool=yes]
        steps:
          - {run: 'echo "victim on $CONVEYOR_NODE"; sleep 6; echo "victim done on $CONVEYOR_NODE"', retry: 1}
      - {name: lost, runs_on: [bed=n2], steps: ['echo "lost on $CONVEYOR_NODE"; sleep 60']}
"""


async def test_a_node_stopped_mid_build_interrupts_its_jobs_and_retry_runs_one_elsewhere(bed, tmp_path):
    instance = "mf" + uuid.uuid4().hex[:8]
    data = tmp_path / "data"
    manager = client(bed.manager)
    n2, n3 = bed.nodes[1], bed.nodes[2]
    sha = repo_with(tmp_path / "repo", FAULT)
    store = Store(data)
    try:
        wait_ready(manager)
        with node_label(manager, n2.hostname, "pool", "yes"):
            build_id, build = await start_build(store, settings_for(bed, data, instance), tmp_path / "repo", sha)
            where = await wait_running(manager, instance, {"victim", "lost"})
            assert where["victim"] == where["lost"] == n2.hostname, where
            set_label(manager, n3.hostname, "pool", "yes")  # the pool has room elsewhere now
            try:
                bed.fail_node(n2)  # its dockerd, containerd and containers die at once
                status = await asyncio.wait_for(build, 90)
            finally:
                set_label(manager, n3.hostname, "pool", None)
        detail = q.get_detail(store.read(), build_id)
        jobs = {j.name: j for j in detail.jobs}
        down = f"interrupted: node {n2.hostname} went down while the step ran"
        # The victim: its first attempt interrupted on n2, the retry ran to the end on n3.
        assert jobs["victim"].status == "success", jobs["victim"].reason
        assert [(s.attempt, s.status, s.reason) for s in jobs["victim"].steps] == [
            (1, "interrupted", down), (2, "success", None)]
        # The job pinned to n2 has no retry: interrupted, naming the node; not a failure of its code.
        assert jobs["lost"].status == "interrupted" and down in jobs["lost"].reason, jobs["lost"].reason
        assert jobs["steady"].status == "success"
        assert status == "interrupted" and detail.build.status == "interrupted", detail.build.reason
        assert nothing_left(bed, instance, down=[n2]) == {}  # n2 cannot be asked while it is down
    finally:
        try:
            await asyncio.to_thread(bed.restart_node, n2)
            await asyncio.to_thread(wait_ready, manager, 3, 60)
        finally:
            store.close()
    # Back up, n2's agent removes what the dead engine left (the services are gone): nothing stays.
    deadline = time.monotonic() + 30
    while (left := leftovers(bed, instance)) and time.monotonic() < deadline:
        await asyncio.sleep(0.5)
    manager.close()
    assert left == {}
    shown = cli(bed, data, "show", f"id:{build_id}")
    assert f"(id {build_id}): interrupted" in shown.splitlines()[0], shown
    assert "  job lost: interrupted" in shown and f"node {n2.hostname} went down" in shown, shown
    logs = cli(bed, data, "logs", f"id:{build_id}", "--job", "victim")
    assert logs.splitlines() == [f"victim on {n2.hostname}", f"victim on {n3.hostname}",
                                 f"victim done on {n3.hostname}"], logs
