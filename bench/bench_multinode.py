"""Multi-node benchmark on the throw-away 3-node bed (tests/multinode/bed.py; needs root).

1. The bed itself: time to bring it up (namespaces, 3 dockerds, swarm, images) and to tear it down.
2. A 3-replica service spread over the 3 nodes (one per node, host-mode port), from "deploy starts"
   to "converged": Conveyor's deploy (through a named target `bed`, recorded in the history) against
   the floor, `docker service create` of the same service followed by polling until 3 tasks run,
   alternating, in the same run. Prints the medians and the ratio.
3. `backend: swarm` jobs (issue 12, "Speed"): 12 jobs of `sleep 5` at once, 0.5 CPU each (4 slots
   on each 2-CPU node), against the wall of one such job: on the 3 nodes (4 without runs_on on the
   workspace node, 8 with `runs_on: [pool]`, a label the two others carry, placed by Swarm; goal
   <= 1.3x), and on the workspace node alone (3 waves: ~3x). Also the per-job overhead on the bed:
   a one-step job against `service create --mode replicated-job` + waiting for completion.

    python3 bench/bench_multinode.py [--rounds N] [--jobs-only]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests" / "multinode"), str(ROOT / "bench")]

from bed import Bed  # noqa: E402
from bench_swarm_backend import floor_once, job_once, wall  # noqa: E402

from runner.backends.base import BuildRef  # noqa: E402
from runner.backends.swarm import SwarmBackend  # noqa: E402

from runner.engine import open_target  # noqa: E402
from runner.deploy.service import Provenance, deploy_service  # noqa: E402
from runner.plan import DeploySpec, Placement, Port, UpdateConfig  # noqa: E402
from runner.settings import Settings  # noqa: E402
from runner.store.db import Store  # noqa: E402

IMAGE = "conveyor-test/busybox:1"
SCRIPT = "mkdir -p /w && echo ok > /w/index.html && trap 'exit 0' TERM; httpd -f -p 8080 -h /w & wait"


async def conveyor_round(settings: Settings, store: Store, name: str, port: int) -> float:
    spec = DeploySpec(service=name, image=IMAGE, replicas=3, command=("sh", "-c", SCRIPT), ports=(Port(port, 8080),),
                      placement=Placement(preferences=("node.labels.bed",), max_replicas_per_node=1),
                      update=UpdateConfig(order="stop-first"), target="bed", timeout=120.0)
    t0 = time.monotonic()
    swarm = await open_target(settings, "bed")
    try:
        out = await deploy_service(swarm, store, spec, lambda line: None, Provenance(trigger="bench"))
    finally:
        swarm.close()
    took = time.monotonic() - t0
    assert out.ok, out.reason
    return took


def docker_round(bed: Bed, name: str, port: int) -> float:
    t0 = time.monotonic()
    bed.docker(bed.manager, "service", "create", "-d", "--no-resolve-image", "--name", name, "--replicas", "3",
               "--replicas-max-per-node", "1", "--placement-pref", "spread=node.labels.bed",
               "--publish", f"mode=host,target=8080,published={port}", IMAGE, "sh", "-c", SCRIPT)
    while True:  # the same poll interval as Conveyor's watcher
        states = bed.docker(bed.manager, "service", "ps", "--filter", "desired-state=running",
                            "--format", "{{.CurrentState}}", name).stdout.split("\n")
        if sum(s.startswith("Running") for s in states) == 3:
            return time.monotonic() - t0
        time.sleep(0.25)


def remove(bed: Bed, name: str) -> None:
    bed.docker(bed.manager, "service", "rm", name, check=False)


async def jobs_part(bed: Bed, rounds: int) -> None:
    for node in bed.nodes[1:]:
        bed.docker(bed.manager, "node", "update", "--label-add", "pool", node.hostname)
    instance = "benchj" + uuid.uuid4().hex[:6]
    settings = Settings(instance=instance, docker_host=bed.manager.docker_host, job_cpus=0.5,
                        job_memory=64 * 1024**2)
    backend = SwarmBackend(settings, grace=1.0)
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "README").write_text("bench\n")
        build = BuildRef(id="b" + uuid.uuid4().hex[:10], source=Path(tmp), instance=instance)
        await backend.setup(build)
        try:
            await job_once(backend, build, "echo ok")  # warm: the image check
            floors, jobs = [], []
            for i in range(rounds):
                floors.append(await asyncio.to_thread(floor_once, backend.engine.api, f"{instance}-floor-{i}"))
                jobs.append(await job_once(backend, build, "echo ok"))
            f, j = statistics.median(floors), statistics.median(jobs)
            print(f"per job on the bed: backend swarm {j:.3f}s, floor (service create --mode replicated-job + "
                  f"wait) {f:.3f}s, ratio {j / f:.2f}x (goal <= 1.20x)")
            one = await wall(backend, build, 1)
            spread = await wall(backend, build, 12, lambda i: () if i % 3 == 0 else ("pool",))
            print(f"3 nodes, 4 slots each: 12 x sleep 5 {spread:.2f}s, one job {one:.2f}s, "
                  f"ratio {spread / one:.2f}x (goal <= 1.30x)")
            # The engine's own figure: the same 12 as bare services (4 on the workspace node, 8 on the
            # others; no reservations), created at once from 12 threads, until each task completed
            # (polled every 0.2 s: 12 pollers at 20 ms would load the manager more than the jobs).
            home = f"node.id=={backend._home}"
            api = backend.engine.api
            floor_one = await asyncio.to_thread(floor_once, api, f"{instance}-f1", "sleep 5", (home,), 0.2)
            t0 = time.perf_counter()
            await asyncio.gather(*(asyncio.to_thread(floor_once, api, f"{instance}-f{i}-x", "sleep 5",
                                                     (home,) if i % 3 == 0 else (home.replace("==", "!="),), 0.2)
                                   for i in range(12)))
            floor12 = time.perf_counter() - t0
            print(f"  floor, the same as bare services: 12 {floor12:.2f}s, one {floor_one:.2f}s, "
                  f"ratio {floor12 / floor_one:.2f}x; conveyor / floor {spread / floor12:.2f}x")
            alone = await wall(backend, build, 12)
            print(f"1 node (the workspace node), 4 slots: 12 x sleep 5 {alone:.2f}s, ratio {alone / one:.2f}x "
                  "(3 waves)")
        finally:
            await backend.teardown(build)
            backend.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--jobs-only", action="store_true", help="only part 3 (swarm jobs)")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("the bed needs root (network namespaces, extra dockerds)")
    bed = Bed()
    try:
        bed.up()
        up = bed.timings["up"]
        print(f"bed up: {up:.1f} s (" + ", ".join(f"{k} {v:.1f} s" for k, v in bed.timings.items()
                                                 if k not in ("up", "down")) + ")")
        asyncio.run(jobs_part(bed, max(args.rounds, 5)))
        if args.jobs_only:
            return
        with tempfile.TemporaryDirectory() as tmp:
            data = Path(tmp)
            (data / "targets.yml").write_text(f"bed:\n  url: {bed.manager.docker_host}\n")
            settings = Settings(data_dir=data, instance="bench" + uuid.uuid4().hex[:6])
            store = Store(data)
            ours, floor = [], []
            for i in range(args.rounds):
                # A fresh name and port per round: a removed service's host ports free up only later.
                a, b = f"mnb-{uuid.uuid4().hex[:6]}", f"mnb-{uuid.uuid4().hex[:6]}"
                ours.append(asyncio.run(conveyor_round(settings, store, a, 19100 + 2 * i)))
                floor.append(docker_round(bed, b, 19101 + 2 * i))
                remove(bed, a)
                remove(bed, b)
            store.close()
        mo, mf = statistics.median(ours), statistics.median(floor)
        print(f"3 replicas on 3 nodes, start to converged, {args.rounds} rounds each, alternating:")
        print(f"  conveyor deploy        median {mo:.2f} s  {[round(x, 2) for x in ours]}")
        print(f"  docker service create  median {mf:.2f} s  {[round(x, 2) for x in floor]}")
        print(f"  ratio {mo / mf:.2f}x")
    finally:
        bed.down()
        bed.release()
        print(f"bed down: {bed.timings['down']:.1f} s")


if __name__ == "__main__":
    main()
