"""Benchmark of services (issue 9, "Speed"): what one sidecar whose ready probe passes at once adds
to a job. Prints figures and the ratio against the budget, all measured in this run.

    python bench/bench_services.py             # 5 rounds (needs the engine and conveyor-test/busybox:1)
    python bench/bench_services.py --rounds 9

Per round, on the Docker backend through ``run_plan`` (build setup, the job, teardown):
- "job": one job with one step `echo ok`, no service, and
- "job + service": the same job with a busybox `httpd` service, `ready: {tcp: 8080}`, the step
  fetching from it (so the service really serves), and
- "docker run": a bare `docker run --rm conveyor-test/busybox:1 true`, the cost of one container.
Goal: median(job + service) - median(job) <= 0.3 s + median(docker run), i.e. ratio <= 1.00.
Not a test: it never fails on speed, it reports.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from runner.backends.base import BuildRef  # noqa: E402
from runner.backends.docker import DockerBackend  # noqa: E402
from runner.executor.events import NullSink  # noqa: E402
from runner.executor.run import run_plan  # noqa: E402
from runner.plan import Job, Plan, Ready, Service, Stage, Step  # noqa: E402
from runner.settings import Settings  # noqa: E402

IMAGE = "conveyor-test/busybox:1"
WEB = Service("web", IMAGE, command="mkdir -p /w && echo ok > /w/index.html && exec httpd -f -p 8080 -h /w",
              ready=Ready(tcp=8080, within=30))
ALONE = Job("alone", IMAGE, (Step("get", "echo ok"),))
WITH_SERVICE = Job("with", IMAGE, (Step("get", "wget -q -O- http://web:8080/"),), services=(WEB,))


async def timed_job(backend: DockerBackend, source: Path, instance: str, job: Job) -> float:
    build = BuildRef("b" + uuid.uuid4().hex[:10], source, instance)
    began = time.perf_counter()
    status = await run_plan(Plan("bench", (Stage("s", "jobs", jobs=(job,)),)), build, backend, NullSink())
    if status != "success":
        raise SystemExit(f"job {job.name} ended {status}; is {IMAGE} there (`conveyor images bootstrap`)?")
    return time.perf_counter() - began


def docker_run() -> float:
    began = time.perf_counter()
    subprocess.run(["docker", "run", "--rm", IMAGE, "true"], check=True, capture_output=True)
    return time.perf_counter() - began


async def main(rounds: int) -> None:
    instance = "bench" + uuid.uuid4().hex[:6]
    backend = DockerBackend(Settings(instance=instance))
    times: dict[str, list[float]] = {"job": [], "job + service": [], "docker run": []}
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp)
        await backend.available()
        await timed_job(backend, source, instance, WITH_SERVICE)  # warm: images, client, thread pool
        try:
            for _ in range(rounds):  # interleaved, so a busy moment of the shared machine hits all three
                times["job"].append(await timed_job(backend, source, instance, ALONE))
                times["job + service"].append(await timed_job(backend, source, instance, WITH_SERVICE))
                times["docker run"].append(await asyncio.to_thread(docker_run))
        finally:
            await backend.sweep(keep=[])
            backend.close()
    med = {name: statistics.median(values) for name, values in times.items()}
    for name, value in med.items():
        print(f"{name:>14}: median {value:.3f} s  (min {min(times[name]):.3f}, {rounds} rounds)")
    extra, budget = med["job + service"] - med["job"], 0.3 + med["docker run"]
    print(f"the service adds {extra:.3f} s; budget 0.3 s + one container start = {budget:.3f} s; "
          f"ratio {extra / budget:.2f} (goal <= 1.00)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    asyncio.run(main(parser.parse_args().rounds))
