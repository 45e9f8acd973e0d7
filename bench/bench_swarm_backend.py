"""Benchmark of ``backend: swarm`` (issue 12, "Speed"). Prints figures and ratios, all measured
in this run on the engine's swarm (run it under /tmp/conveyor-swarm.lock on a shared machine).

    python bench/bench_swarm_backend.py              # 5 rounds of the per-job part, then the wall part
    python bench/bench_swarm_backend.py --rounds 9 --no-wall

- per-job overhead: one job with one step `echo ok` through the backend (start_job, exec_step,
  stop_job) against the floor of `docker service create --mode replicated-job` of the same command
  (API call, same client) followed by waiting for its task to complete, then removing it.
  Goal: median(job) / median(floor) <= 1.2.
- wall: 12 jobs of `sleep 5` at once, each reserving 0.5 CPU (4 slots on a 2-CPU node), against the
  wall of one such job. On one node the 12 queue in 3 waves (~3x): the figure to compare the
  3-node bed with (goal there <= 1.3x), which bench/bench_multinode.py measures.
Not a test: it never fails on speed, it reports.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from docker import types as dtypes  # noqa: E402

from runner.backends.base import BuildRef, StepExit  # noqa: E402
from runner.backends.swarm import SwarmBackend  # noqa: E402
from runner.plan import Job, Step  # noqa: E402
from runner.settings import Settings  # noqa: E402

IMAGE = "conveyor-test/busybox:1"


def floor_once(api, name: str, run: str = "echo ok", constraints: tuple[str, ...] = (), poll: float = 0.02) -> float:
    began = time.perf_counter()
    spec = dtypes.ContainerSpec(IMAGE, command=["sh", "-c", run])
    template = dtypes.TaskTemplate(spec, restart_policy=dtypes.RestartPolicy(condition="none"),
                                   placement=dtypes.Placement(constraints=list(constraints)))
    sid = api.create_service(template, name=name, mode=dtypes.ServiceMode("replicated-job", concurrency=1, replicas=1))["ID"]
    while True:
        tasks = api.tasks(filters={"service": sid})
        if tasks and tasks[0]["Status"]["State"] in ("complete", "failed", "rejected"):
            break
        time.sleep(poll)
    took = time.perf_counter() - began
    api.remove_service(sid)
    # Docker < 24 leaves a removed job service's task and container behind (moby/moby#44312).
    for c in api.containers(all=True, filters={"label": f"com.docker.swarm.service.id={sid}"}):
        api.remove_container(c["Id"], force=True)
    return took


async def job_once(backend: SwarmBackend, build: BuildRef, run: str, runs_on: tuple[str, ...] = ()) -> float:
    began = time.perf_counter()
    handle = await backend.start_job(build, Job("bench", IMAGE, (Step("s", run),), runs_on=runs_on))
    async for item in backend.exec_step(handle, handle.job.steps[0], {}):
        if isinstance(item, StepExit) and item.code != 0:
            raise SystemExit(f"the bench step failed: {item}")
    await backend.stop_job(handle)
    return time.perf_counter() - began


async def wall(backend: SwarmBackend, build: BuildRef, jobs: int, runs_on=lambda i: ()) -> float:
    """Wall time of ``jobs`` jobs of ``sleep 5`` at once; job i runs_on ``runs_on(i)``."""
    began = time.perf_counter()
    await asyncio.gather(*(job_once(backend, build, "sleep 5", runs_on(i)) for i in range(jobs)))
    return time.perf_counter() - began


async def main(rounds: int, with_wall: bool) -> None:
    instance = "bench-" + uuid.uuid4().hex[:8]
    backend = SwarmBackend(Settings(instance=instance, job_cpus=0.5, job_memory=256 * 1024**2), grace=1.0)
    await backend.available()
    source = Path(tempfile.mkdtemp(prefix="bench-swarm-"))
    (source / "README").write_text("bench\n")
    build = BuildRef(id="b" + uuid.uuid4().hex[:10], source=source, instance=instance)
    await backend.setup(build)
    try:
        await job_once(backend, build, "echo ok")  # warm: the image check, the filler image
        floors, jobs = [], []
        for i in range(rounds):
            floors.append(await asyncio.to_thread(floor_once, backend.engine.api, f"{instance}-floor-{i}"))
            jobs.append(await job_once(backend, build, "echo ok"))
        f, j = statistics.median(floors), statistics.median(jobs)
        print(f"per job: backend swarm {j:.3f}s, floor (service create + wait) {f:.3f}s, "
              f"ratio {j / f:.2f}x (goal <= 1.20x)")
        if with_wall:
            one = await wall(backend, build, 1)
            twelve = await wall(backend, build, 12)
            print(f"1 node, 4 slots: 12 x sleep 5 {twelve:.2f}s, one job {one:.2f}s, ratio {twelve / one:.2f}x "
                  "(3 waves expected on one node; the 3-node goal is <= 1.30x)")
    finally:
        await backend.teardown(build)
        backend.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--no-wall", action="store_true")
    args = parser.parse_args()
    asyncio.run(main(args.rounds, not args.no_wall))
