"""Multi-node benchmark on the throw-away 3-node bed (tests/multinode/bed.py; needs root).

1. The bed itself: time to bring it up (namespaces, 3 dockerds, swarm, images) and to tear it down.
2. A 3-replica service spread over the 3 nodes (one per node, host-mode port), from "deploy starts"
   to "converged": Conveyor's deploy (through a named target `bed`, recorded in the history) against
   the floor, `docker service create` of the same service followed by polling until 3 tasks run,
   alternating, in the same run. Prints the medians and the ratio.

    python3 bench/bench_multinode.py [--rounds N]
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
sys.path[:0] = [str(ROOT), str(ROOT / "tests" / "multinode")]

from bed import Bed  # noqa: E402

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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("the bed needs root (network namespaces, extra dockerds)")
    bed = Bed()
    try:
        bed.up()
        up = bed.timings["up"]
        print(f"bed up: {up:.1f} s (" + ", ".join(f"{k} {v:.1f} s" for k, v in bed.timings.items()
                                                 if k not in ("up", "down")) + ")")
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
