"""Deploy benchmarks on the local single-node swarm (not a test; prints figures, never fails on speed).

1. Zero downtime: a client container on the service's overlay network requests the service 20 times
   a second through a start-first update of 2 replicas, then through an automatic rollback (a version
   whose health check fails), then through a whole `conveyor run` of a pipeline that builds the
   image and deploys it, and for 10 s after that run returned (its teardown and what follows must
   leave the service alone). Prints requests made and failed, and availability, in each window.
2. Time from "deploy starts" to "converged": Conveyor's deploy against `docker service update` with
   the same spec and settings, alternating, in the same run. Prints the medians and the ratio.

    python bench/bench_deploy.py [--rounds N]

Everything it makes is named ``cvbench-<random>`` and labelled ``io.conveyor.instance`` with that
name, and removed at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
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
from runner.deploy.service import Provenance, deploy_service  # noqa: E402
from runner.plan import DeploySpec, Healthcheck, UpdateConfig  # noqa: E402
from runner.store.db import Store  # noqa: E402

IMAGE = "conveyor-test/busybox:1"


def script(version: str, health: bool = True) -> str:
    # On SIGTERM keep serving 2 s before leaving: Swarm takes the task out of DNS first, and
    # requests already resolved to it still get an answer (what any production server does).
    make_health = "echo ok > /w/health && " if health else ""
    return (f"mkdir -p /w && echo {version} > /w/index.html && {make_health}"
            "trap 'sleep 2; exit 0' TERM; httpd -f -p 8080 -h /w & wait")


def spec(name: str, net: str, version: str, health: bool = True) -> DeploySpec:
    return DeploySpec(
        service=name, image=IMAGE, replicas=2, command=("sh", "-c", script(version, health)), networks=(net,),
        endpoint_mode="dnsrr",  # the VIP needs IPVS, which this kernel lacks
        healthcheck=Healthcheck("wget -q -O- http://127.0.0.1:8080/health", interval=0.5, timeout=1.0, retries=2),
        update=UpdateConfig(order="start-first", parallelism=1, monitor=3.0, failure_action="rollback"),
        rollback=UpdateConfig(order="start-first", parallelism=1, monitor=1.0, failure_action="pause"),
        timeout=120.0, labels={})


CLIENT = ("i=0; while true; do if wget -q -O- http://{svc}:8080/ >/dev/null 2>&1; then echo ok; "
          "else echo FAIL; fi; usleep 50000; done")


def count(client, since: float, until: float) -> tuple[int, int]:
    """Answers the client got between ``since`` and ``until`` (unix seconds), by the engine's
    timestamp of each log line."""
    ok = failed = 0
    for line in client.logs(since=int(since), until=int(until) + 1, timestamps=True).decode().splitlines():
        stamp, _, word = line.partition(" ")
        when = datetime.datetime.fromisoformat(stamp[:26].rstrip("Z") + "+00:00").timestamp()
        if since <= when <= until:
            ok += word == "ok"
            failed += word == "FAIL"
    return ok, failed


def report(label: str, ok: int, failed: int, seconds: float) -> str:
    total = ok + failed
    availability = 100.0 * ok / total if total else 0.0
    return (f"{label}: {total} requests ({total / seconds:.1f}/s), {failed} failed, "
            f"availability {availability:.2f}%")


PIPELINE = """\
name: bench-web
image: conveyor-test/busybox:1
stages:
  - name: image
    build: {{tag: "{image}"}}
  - name: deploy
    deploy:
      service: {service}
      image: "{image}"
      replicas: 2
      networks: [{net}]
      endpoint_mode: dnsrr
      healthcheck: {{cmd: "wget -q -O- http://127.0.0.1:8080/health", interval: 500ms, timeout: 1s, retries: 2}}
      update: {{order: start-first, monitor: 3s}}
      rollback: {{order: start-first, monitor: 1s, failure_action: pause}}
      verify: {{command: "wget -q -O- http://{service}:8080/health", within: 30s}}
      timeout: 120s
"""


def pipeline_repo(root: Path, service: str, image: str, net: str) -> Path:
    """A git repository whose pipeline builds the benchmark's web image and deploys it."""
    root.mkdir()
    (root / ".conveyor.yml").write_text(PIPELINE.format(service=service, image=image, net=net))
    (root / "serve.sh").write_text(script("built") + "\n")
    (root / "Dockerfile").write_text(f"FROM {IMAGE}\nCOPY serve.sh /serve.sh\nCMD [\"sh\", \"/serve.sh\"]\n")
    git = ["git", "-C", str(root), "-c", "user.name=bench", "-c", "user.email=bench@example.invalid"]
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-q", "-m", "bench"]):
        subprocess.run([*git, *args], check=True)
    return root


def build_then_after(client, name: str, net: str, inst: str, tmp: Path, after: float = 10.0) -> None:
    """A whole `conveyor run` (build + deploy) of the service, then ``after`` seconds of watching."""
    repo = pipeline_repo(tmp / "repo", name, f"{inst}-web:1", net)
    env = {**os.environ, "CONVEYOR_DATA_DIR": str(tmp / "data"), "CONVEYOR_INSTANCE": inst}
    start = time.time()
    run = subprocess.run([sys.executable, "-m", "runner", "run", str(repo), "--commit", "--quiet"], env=env,
                         capture_output=True, text=True)
    ended = time.time()
    if run.returncode != 0:
        print(f"conveyor run failed ({run.returncode}):\n{run.stdout[-2000:]}{run.stderr[-2000:]}")
    time.sleep(after)
    print(f"zero-downtime, conveyor run (build + deploy) exit {run.returncode} in {ended - start:.1f}s")
    print("  " + report("during the build", *count(client, start, ended), ended - start))
    print("  " + report(f"the {after:g} s after the build ended", *count(client, ended, ended + after), after))


async def zero_downtime(swarm: Engine, store: Store, inst: str, net: str, prov: Provenance, tmp: Path) -> None:
    name = f"{inst}-zd"
    lines: list[str] = []
    assert (await deploy_service(swarm, store, spec(name, net, "v1"), lines.append, prov)).ok, lines
    client = swarm.client.containers.run(IMAGE, ["sh", "-c", CLIENT.format(svc=name)], name=f"{inst}-client",
                                         network=net, detach=True, labels={"io.conveyor.instance": inst})
    await asyncio.sleep(2)
    for label, version, health, want in (("start-first update v1 -> v2", "v2", True, "succeeded"),
                                         ("automatic rollback (v3 fails health)", "v3", False, "rolled_back")):
        start = time.time()
        out = await deploy_service(swarm, store, spec(name, net, version, health), lines.append, prov)
        await asyncio.sleep(2)  # keep requesting a little after convergence
        end = time.time()
        ok, failed = count(client, start, end)
        print(f"zero-downtime, {label}: deploy {out.status} (wanted {want}) in {end - start - 2:.1f}s; "
              + report("", ok, failed, end - start)[2:])
    await asyncio.to_thread(build_then_after, client, name, net, inst, tmp)
    client.remove(force=True)


def cli_update(name: str, version: str) -> float:
    start = time.perf_counter()
    subprocess.run(["docker", "service", "update", "--quiet", "--args", f"sh -c \"{script(version)}\"", name],
                   check=True, capture_output=True)
    return time.perf_counter() - start


async def timing(swarm: Engine, store: Store, inst: str, net: str, prov: Provenance, rounds: int) -> None:
    ours_name, cli_name = f"{inst}-ours", f"{inst}-cli"
    for name in (ours_name, cli_name):
        assert (await deploy_service(swarm, store, spec(name, net, "v0"), lambda line: None, prov)).ok
    ours, theirs = [], []
    for i in range(rounds):
        start = time.perf_counter()
        out = await deploy_service(swarm, store, spec(ours_name, net, f"r{i}"), lambda line: None, prov)
        ours.append(time.perf_counter() - start)
        assert out.ok, out
        theirs.append(await asyncio.to_thread(cli_update, cli_name, f"r{i}"))
    mo, mt = statistics.median(ours), statistics.median(theirs)
    print(f"deploy start -> converged, 2 replicas start-first monitor 3s, {rounds} rounds each:")
    print(f"  conveyor deploy       median {mo:.2f}s  ({', '.join(f'{t:.2f}' for t in ours)})")
    print(f"  docker service update median {mt:.2f}s  ({', '.join(f'{t:.2f}' for t in theirs)})")
    print(f"  ratio conveyor / docker service update: {mo / mt:.2f}x (target: at most 1.1x)")


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    inst = "cvbench-" + uuid.uuid4().hex[:8]
    client = docker.from_env()
    if client.info()["Swarm"]["LocalNodeState"] != "active":
        sys.exit("the engine is not in a swarm: run `docker swarm init --advertise-addr 127.0.0.1`")
    swarm = Engine(Target("default"))
    net = client.networks.create(f"{inst}-net", driver="overlay", attachable=True,
                                 labels={"io.conveyor.instance": inst})
    prov = Provenance(trigger="bench", instance=inst)
    with tempfile.TemporaryDirectory() as tmp, Store(Path(tmp)) as store:
        try:
            await zero_downtime(swarm, store, inst, net.name, prov, Path(tmp))
            await timing(swarm, store, inst, net.name, prov, args.rounds)
        finally:
            for c in client.containers.list(all=True, filters={"label": f"io.conveyor.instance={inst}"}):
                c.remove(force=True)
            for s in client.services.list(filters={"label": f"io.conveyor.instance={inst}"}):
                s.remove()
            for s in client.services.list(filters={"name": f"{inst}-"}):
                s.remove()
            time.sleep(3)  # the tasks' containers go first; an image in use would only be untagged
            try:
                client.images.remove(f"{inst}-web:1", force=True)
            except docker.errors.ImageNotFound:
                pass
            for _ in range(60):
                try:
                    net.remove()
                    break
                except docker.errors.APIError:
                    time.sleep(0.5)


if __name__ == "__main__":
    asyncio.run(main())
