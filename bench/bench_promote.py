"""Promotion benchmark on the local single-node swarm (not a test; prints figures, never fails on speed).

A promotion (`plan_promotion` + `promote`: read the source environment's live deploy, adjust its
recorded spec, apply, watch) against a plain deploy (`deploy_service`) of the same digest to the
same production service, alternating, in one run. Each operation really changes the service: the
plain deploy moves production to digest B, the promotion moves it back to digest A (live in
staging), so both wait for one rolling update of the same size. Goal: promotion <= 1.1x.

    python bench/bench_promote.py [--rounds N] [--stack]

``--stack`` does the same with a 5-service Compose stack (``plan_stack_promotion`` + ``promote_stack``
against ``deploy_stack`` of the same digests).

Needs `docker-registry` (apt-get install docker-registry); it starts one on a free port of
127.0.0.1 through `.ci/registry`. Everything it makes is named ``cvbench-<random>`` and removed.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import docker
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from runner.engine import Engine, load_targets  # noqa: E402
from runner.deploy.promote import plan_promotion, promote  # noqa: E402
from runner.deploy.registry import push  # noqa: E402
from runner.deploy.service import Provenance, deploy_service  # noqa: E402
from runner.plan import DeploySpec, Healthcheck, UpdateConfig  # noqa: E402
from runner.settings import Settings  # noqa: E402
from runner.store.db import Store  # noqa: E402


def spec(name: str, image: str, env: dict[str, str]) -> DeploySpec:
    return DeploySpec(
        service=name, image=image, replicas=1, env=env,
        command=("sh", "-c", "mkdir -p /w && echo ok > /w/health && trap 'exit 0' TERM; httpd -f -p 8080 -h /w & wait"),
        healthcheck=Healthcheck("wget -q -O- http://127.0.0.1:8080/health", interval=0.5, timeout=1.0, retries=2),
        update=UpdateConfig(order="start-first", monitor=1.0), timeout=120.0)


STACK_SERVICE = """  s{i}:
    image: "{image}"
    command: ["sh", "-c", "trap 'exit 0' TERM; sleep 100000 & wait"]
    deploy: {{update_config: {{monitor: 1s, order: start-first}}}}
"""


def stack_compose(stack: str, image: str):
    from runner.deploy.compose import parse_compose

    return parse_compose("services:\n" + "".join(STACK_SERVICE.format(i=i, image=image) for i in range(5)), stack)


async def stack_bench(settings: Settings, store: Store, swarm: Engine, name: str, a, b, rounds: int) -> None:
    """A 5-service stack: promotion staging -> production (digest A) against a plain stack deploy of
    production with digest B, alternating, so each is one real image change of five services."""
    from runner.deploy.stack import deploy_stack
    from runner.deploy.stack_promote import plan_stack_promotion, promote_stack

    def prov(env: str) -> Provenance:
        return Provenance(trigger="bench", instance=name, environment=env)

    staged = await deploy_stack(swarm, store, stack_compose(f"{name}-staging", a.ref), 120, None, lambda _: None,
                                prov("staging"))
    assert all(o.ok for o in staged), staged
    first = await deploy_stack(swarm, store, stack_compose(name, b.ref), 120, None, lambda _: None, prov("production"))
    assert all(o.ok for o in first), first
    plain, promoted = [], []
    for _ in range(rounds):
        began = time.perf_counter()
        plan = await plan_stack_promotion(settings, store, name, "staging", "production")
        outcomes = await promote_stack(settings, store, plan, lambda _: None, "bench")
        promoted.append(time.perf_counter() - began)
        assert all(o.ok for o in outcomes), outcomes
        began = time.perf_counter()
        outcomes = await deploy_stack(swarm, store, stack_compose(name, b.ref), 120, None, lambda _: None,
                                      prov("production"))
        plain.append(time.perf_counter() - began)
        assert all(o.ok for o in outcomes), outcomes
    p, d = statistics.median(promoted), statistics.median(plain)
    print(f"rounds: {rounds} (each: one stack promotion A and one plain stack deploy B of production's 5 services)")
    print(f"plain stack deploy of digests: median {d:.2f}s  (min {min(plain):.2f}s, max {max(plain):.2f}s)")
    print(f"stack promotion staging->prod: median {p:.2f}s  (min {min(promoted):.2f}s, max {max(promoted):.2f}s)")
    print(f"ratio stack promotion / plain stack deploy: {p / d:.2f}x (goal <= 1.1x)")


async def main(rounds: int, stack_mode: bool = False) -> None:
    client = docker.from_env()
    name = f"cvbench-{uuid.uuid4().hex[:6]}"
    work = Path(tempfile.mkdtemp(prefix=name))
    out = subprocess.run(["bash", str(ROOT / ".ci" / "registry"), str(work / "registry")], capture_output=True,
                         text=True, check=True)
    registry_url = [ln.split("=", 1)[1] for ln in out.stdout.splitlines() if "CONVEYOR_TEST_REGISTRY=" in ln][0]
    (work / "data").mkdir()
    (work / "data" / "targets.yml").write_text(yaml.safe_dump({
        "registry": {"url": registry_url},
        "environments": {"staging": {"suffix": "-staging", "env": {"APP_ENV": "staging"}},
                         "production": {"env": {"APP_ENV": "production"}}}}))
    settings = Settings(data_dir=work / "data", instance=name)
    store = Store(settings.data_dir)
    target = load_targets(settings)["default"]
    swarm = Engine(target)
    base = client.images.get("conveyor-test/busybox:1")
    tags = [f"conveyor-test/{name}:a", f"conveyor-test/{name}:b"]
    try:
        # Two digests: B differs from A by one label, so each operation is a real image change.
        client.api.tag(base.id, f"conveyor-test/{name}", "a")
        other, _ = client.images.build(fileobj=__import__("io").BytesIO(
            f"FROM conveyor-test/busybox:1\nLABEL bench={name}\n".encode()), tag=tags[1], pull=False, rm=True)
        a = push(client, base.id, tags[0], target.registry, lambda _: None)
        b = push(client, other.id, tags[1], target.registry, lambda _: None)
        prov = Provenance(trigger="bench", instance=name)
        if stack_mode:
            await stack_bench(settings, store, swarm, name, a, b, rounds)
            return
        staged = await deploy_service(swarm, store, spec(f"{name}-staging", a.ref, {"APP_ENV": "staging"}),
                                      lambda _: None, Provenance(trigger="bench", instance=name, environment="staging"))
        assert staged.ok, staged
        first = await deploy_service(swarm, store, spec(name, b.ref, {"APP_ENV": "production"}), lambda _: None,
                                     Provenance(trigger="bench", instance=name, environment="production"))
        assert first.ok, first
        plain, promoted = [], []
        for _ in range(rounds):
            began = time.perf_counter()
            plan = await plan_promotion(settings, store, name, "staging", "production")
            outcome = await promote(settings, store, plan, lambda _: None, "bench")
            promoted.append(time.perf_counter() - began)
            assert outcome.ok, outcome
            began = time.perf_counter()
            outcome = await deploy_service(swarm, store, spec(name, b.ref, {"APP_ENV": "production"}), lambda _: None,
                                           prov)
            plain.append(time.perf_counter() - began)
            assert outcome.ok, outcome
        p, d = statistics.median(promoted), statistics.median(plain)
        print(f"rounds: {rounds} (each: one promotion A and one plain deploy B of production, alternating)")
        print(f"plain deploy of a digest: median {d:.2f}s  (min {min(plain):.2f}s, max {max(plain):.2f}s)")
        print(f"promotion staging->prod:  median {p:.2f}s  (min {min(promoted):.2f}s, max {max(promoted):.2f}s)")
        print(f"ratio promotion / plain deploy: {p / d:.2f}x (goal <= 1.1x)")
    finally:
        for svc in client.services.list(filters={"name": name}):
            svc.remove()
        time.sleep(2)  # their tasks hold the stacks' networks
        for net in client.networks.list(filters={"label": f"io.conveyor.instance={name}"}):
            try:
                net.remove()
            except docker.errors.APIError:
                pass
        store.close()
        for pid in (work / "registry").glob("*.pid"):
            os.kill(int(pid.read_text()), signal.SIGTERM)
        time.sleep(2)
        for tag in tags + [f"{registry_url}/{t}" for t in tags]:
            try:
                client.images.remove(tag)
            except docker.errors.APIError:
                pass


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--stack", action="store_true", help="Promote a 5-service stack instead of one service.")
    args = parser.parse_args()
    asyncio.run(main(args.rounds, args.stack))
