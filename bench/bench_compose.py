"""Compose stack benchmark on the local single-node swarm (not a test; prints figures, never fails).

A 5-service stack is updated (every service gets a new env value) round after round, alternating:
Conveyor's stack deploy, which returns when every service has converged, against
`docker stack deploy` followed by waiting for the same convergence (the same watcher, on all five
services at once). Prints the medians and the ratio (goal: at most 1.1x).

    python bench/bench_compose.py [--rounds N]

Everything it makes is named ``cvbench-<random>*`` and removed at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import docker

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from runner.engine import Engine, Target  # noqa: E402
from runner.deploy.compose import parse_compose  # noqa: E402
from runner.deploy.service import Provenance  # noqa: E402
from runner.deploy.stack import deploy_stack  # noqa: E402
from runner.deploy.watch import watch_service  # noqa: E402
from runner.store.db import Store  # noqa: E402

SERVICE = """  s{i}:
    image: conveyor-test/busybox:1
    command: ["sh", "-c", "trap 'exit 0' TERM; sleep 100000 & wait"]
    environment: {{VERSION: "${{VERSION}}"}}
    deploy: {{replicas: 1}}
"""
COMPOSE = "services:\n" + "".join(SERVICE.format(i=i) for i in range(5))


async def conveyor_round(swarm: Engine, store: Store, stack: str, version: str, prov: Provenance) -> float:
    start = time.perf_counter()
    compose = parse_compose(COMPOSE, stack, env={"VERSION": version})
    outcomes = await deploy_stack(swarm, store, compose, 120, None, lambda _l: None, prov)
    assert all(o.ok for o in outcomes), outcomes
    return time.perf_counter() - start


async def stack_deploy_round(swarm: Engine, stack: str, version: str, file: Path) -> float:
    names = [f"{stack}_s{i}" for i in range(5)]
    stale = {n: _status(swarm, n) for n in names}
    start = time.perf_counter()
    await asyncio.to_thread(subprocess.run, ["docker", "stack", "deploy", "--resolve-image", "never", "-c", str(file),
                                             stack], check=True, capture_output=True,
                            env={**os.environ, "VERSION": version})
    results = await asyncio.gather(*(watch_service(swarm, n, 120, lambda _l: None, stale=stale[n]) for n in names))
    assert all(r.ok for r in results), results
    return time.perf_counter() - start


def _status(swarm: Engine, name: str):
    try:
        return swarm.api.inspect_service(name).get("UpdateStatus")
    except docker.errors.NotFound:
        return None


def cleanup(client: docker.DockerClient, prefix: str) -> None:
    for svc in client.services.list():
        if svc.name.startswith(prefix):
            svc.remove()
    deadline = time.time() + 30
    while any((c.attrs.get("Names") or ["/"])[0].lstrip("/").startswith(prefix)
              for c in client.containers.list(all=True, sparse=True)) \
            and time.time() < deadline:
        time.sleep(0.3)
    for net in client.networks.list():
        if net.name.startswith(prefix):
            try:
                net.remove()
            except docker.errors.APIError:
                pass


async def main(rounds: int) -> None:
    prefix = f"cvbench-{uuid.uuid4().hex[:6]}"
    client = docker.from_env()
    swarm = Engine(Target("default"))
    ours, theirs = f"{prefix}cv", f"{prefix}sd"
    prov = Provenance(repo="bench", trigger="bench", instance=prefix)
    with tempfile.TemporaryDirectory() as tmp, Store(Path(tmp) / "data") as store:
        file = Path(tmp) / "stack.yml"
        file.write_text(COMPOSE)
        try:
            # Round 0 creates both stacks; it is not measured.
            await conveyor_round(swarm, store, ours, "v0", prov)
            await stack_deploy_round(swarm, theirs, "v0", file)
            conveyor, docker_cli = [], []
            for n in range(1, rounds + 1):
                pair = [("cv", conveyor_round(swarm, store, ours, f"v{n}", prov)),
                        ("sd", stack_deploy_round(swarm, theirs, f"v{n}", file))]
                for who, coro in (pair if n % 2 else pair[::-1]):
                    (conveyor if who == "cv" else docker_cli).append(await coro)
            c, d = statistics.median(conveyor), statistics.median(docker_cli)
            print(f"5-service stack update to converged, {rounds} rounds each, alternating:")
            print(f"  Conveyor stack deploy       median {c:.2f} s  ({', '.join(f'{x:.2f}' for x in conveyor)})")
            print(f"  docker stack deploy + wait  median {d:.2f} s  ({', '.join(f'{x:.2f}' for x in docker_cli)})")
            print(f"  ratio {c / d:.2f}x (goal <= 1.10x)")
        finally:
            cleanup(client, prefix)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    asyncio.run(main(parser.parse_args().rounds))
