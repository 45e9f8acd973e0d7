"""Pipeline depth: the job graph's wall time against its ideal, and lint+plan of a 256-job matrix.

1. Three stages whose jobs form two independent chains of `sleep 1` jobs (one 3 long, one 1 long),
   linked by `needs`. Printed: its wall time over the longest chain run alone (the ideal; goal
   <= 1.15x) and over the same jobs in stage order without `needs` (what `needs` saves), all
   three measured in this run on the same backend.
2. Lint+plan (render, YAML, schema, needs graph, compile) of a job with a 16x16 matrix, 256 jobs,
   against lint+plan of the same job without a matrix. Goal: under 0.5 s.

Not a test; never fails on speed.

    python bench/bench_depth.py [--backend docker|local] [--runs N]
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

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from runner.backends import get_backend  # noqa: E402
from runner.backends.base import BuildRef  # noqa: E402
from runner.context import Context  # noqa: E402
from runner.dsl import load_pipeline  # noqa: E402
from runner.executor.events import NullSink  # noqa: E402
from runner.executor.run import run_plan  # noqa: E402
from runner.settings import Settings  # noqa: E402

CTX = Context.build(sha="a" * 40, branch="main", build_number=1)

# Stage order: long-1, then long-2 and short, then long-3. With needs, short starts at once.
CHAINS = """
image: conveyor-test/busybox:1
stages:
  - name: one
    jobs:
      - {{name: long-1, {n1} steps: ["sleep 1"]}}
  - name: two
    jobs:
      - {{name: long-2, {n2} steps: ["sleep 1"]}}
      - {{name: short, {n0} steps: ["sleep 1"]}}
  - name: three
    jobs:
      - {{name: long-3, {n3} steps: ["sleep 1"]}}
"""
LONGEST = """
image: conveyor-test/busybox:1
stages:
  - {name: one, steps: ["sleep 1"]}
  - {name: two, steps: ["sleep 1"]}
  - {name: three, steps: ["sleep 1"]}
"""


def _plan(text: str):
    loaded = load_pipeline(Path("."), CTX, text=text)
    assert loaded.ok, loaded.diagnostics
    return loaded.plan


async def _wall(plan, backend, workdir: Path) -> float:
    build = BuildRef(id=f"bench{uuid.uuid4().hex[:8]}", source=workdir)
    started = time.perf_counter()
    status = await run_plan(plan, build, backend, NullSink(), concurrency=4)
    assert status == "success", status
    return time.perf_counter() - started


def bench_graph(backend_name: str, runs: int) -> None:
    dag = _plan(CHAINS.format(n1="needs: [],", n2="needs: [long-1],", n0="needs: [],", n3="needs: [long-2],"))
    ordered = _plan(CHAINS.format(n1="", n2="", n0="", n3=""))
    longest = _plan(LONGEST)
    with tempfile.TemporaryDirectory() as tmp:
        backend = get_backend(backend_name, Settings(data_dir=Path(tmp) / "data", instance="benchdepth"))
        times: dict[str, list[float]] = {"longest": [], "needs": [], "order": []}
        for _ in range(runs):
            for key, plan in (("longest", longest), ("needs", dag), ("order", ordered)):
                times[key].append(asyncio.run(_wall(plan, backend, Path(tmp))))
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"graph ({backend_name}, median of {runs}): longest chain alone {med['longest']:.2f}s, "
          f"with needs {med['needs']:.2f}s, stage order {med['order']:.2f}s")
    print(f"  needs / longest chain = {med['needs'] / med['longest']:.2f}x (goal <= 1.15x)")
    print(f"  needs / stage order   = {med['needs'] / med['order']:.2f}x")


def _matrix(values: int) -> str:
    axis = lambda n: "[" + ", ".join(f'"{n}{i}"' for i in range(values)) + "]"  # noqa: E731
    return ("image: conveyor-test/busybox:1\nstages:\n  - name: build\n    steps: [make]\n  - name: test\n"
            "    jobs:\n      - name: unit\n        needs: [build]\n"
            f"        matrix: {{a: {axis('a')}, b: {axis('b')}}}\n        steps: [\"echo $a $b\"]\n"
            "  - name: report\n    jobs:\n      - {name: report, needs: [unit], steps: [echo]}\n")


def bench_matrix(runs: int) -> None:
    big, one = _matrix(16), _matrix(1)
    assert len(_plan(big).stages[1].jobs) == 256

    def timed(text: str) -> float:
        started = time.perf_counter()
        _plan(text)
        return time.perf_counter() - started

    t_big = statistics.median(timed(big) for _ in range(runs))
    t_one = statistics.median(timed(one) for _ in range(runs))
    print(f"matrix: lint+plan of 256 jobs {t_big * 1000:.0f} ms (goal < 500 ms); one combination "
          f"{t_one * 1000:.1f} ms; ratio {t_big / t_one:.0f}x for 256x the jobs")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--backend", default="docker", choices=("docker", "local"))
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    bench_matrix(max(args.runs, 5))
    bench_graph(args.backend, args.runs)


if __name__ == "__main__":
    main()
