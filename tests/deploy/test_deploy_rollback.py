"""Rollback by history, serialised deploys, and a runner that dies mid-deploy."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time

import pytest
from click.testing import CliRunner

from runner.backends.base import BuildRef
from runner.cli import cli
from runner.deploy import history, reconcile_in_flight, stage_actions
from runner.deploy.rollback import rollback_service
from runner.deploy.service import deploy_service
from runner.errors import NoDeployToRollBackTo
from runner.executor.actions import ActionContext
from runner.plan import Plan, RollbackSpec, Stage

from deploy_helpers import free_port, web_spec, wait_http

pytestmark = [pytest.mark.docker, pytest.mark.swarm]


async def test_rollback_to_older_deploy_and_no_earlier_deploy(swarm, store, prov, instance, settings):
    name, port = f"{instance}-web", free_port()
    url = f"http://127.0.0.1:{port}/"
    log: list[str] = []
    # Nothing recorded yet: a clear error, no row written, no service made.
    with pytest.raises(NoDeployToRollBackTo, match="no recorded deploy"):
        await rollback_service(swarm, store, name, log.append, prov)
    d1 = await deploy_service(swarm, store, web_spec(name, "v1", port), log.append, prov)
    # One deploy only: nothing before it to go back to; the service is untouched.
    version = swarm.api.inspect_service(name)["Version"]["Index"]
    with pytest.raises(NoDeployToRollBackTo, match="no succeeded deploy before"):
        await rollback_service(swarm, store, name, log.append, prov)
    assert swarm.api.inspect_service(name)["Version"]["Index"] == version
    assert len(history.list_deploys(store, name)) == 1

    d2 = await deploy_service(swarm, store, web_spec(name, "v2", port), log.append, prov)
    d3 = await deploy_service(swarm, store, web_spec(name, "v3", port), log.append, prov)
    assert d1.ok and d2.ok and d3.ok and wait_http(url, "v3") == "v3"

    # By hand, to the oldest deploy: the CLI path (its own event loop, in a thread here).
    env = {"CONVEYOR_DATA_DIR": str(settings.data_dir), "CONVEYOR_INSTANCE": instance}
    result = await asyncio.to_thread(CliRunner().invoke, cli, ["rollback", name, "--to", str(d1.deploy_id)], env=env)
    assert result.exit_code == 0, result.output
    assert wait_http(url, "v1") == "v1"
    back = history.list_deploys(store, name)[0]
    assert back["kind"] == "rollback" and back["rollback_of"] == d1.deploy_id and back["status"] == "succeeded"
    assert swarm.api.inspect_service(name)["Spec"]["Labels"]["io.conveyor.deploy"] == str(back["id"])

    # Default target after that rollback walks further back from d1: there is nothing, so it refuses.
    with pytest.raises(NoDeployToRollBackTo):
        await rollback_service(swarm, store, name, log.append, prov)
    # A new deploy d4; the default rollback then goes to the last good deploy before it: d3 (v3).
    d4 = await deploy_service(swarm, store, web_spec(name, "v4", port), log.append, prov)
    out = await rollback_service(swarm, store, name, log.append, prov)
    assert d4.ok and out.ok and wait_http(url, "v3") == "v3"

    # A rollback stage of a build that never deployed the service (its unit tests failed) leaves the
    # running version alone.
    rows_before = len(history.list_deploys(store, name))
    ctx = ActionContext(build=BuildRef(id="notdeployed1", source=settings.data_dir, instance=instance),
                        plan=Plan(name="t", stages=()), log=log.append, status="failure")
    result = await stage_actions(settings, store)["rollback"](
        Stage(name="rollback", kind="rollback", rollback=RollbackSpec(service=name)), ctx)
    assert result.status == "success" and "did not deploy" in result.reason
    assert len(history.list_deploys(store, name)) == rows_before and wait_http(url, "v3") == "v3"

    listing = await asyncio.to_thread(CliRunner().invoke, cli, ["deploys", name], env=env)
    assert listing.exit_code == 0 and f"rollback to #{d3.deploy_id}" in listing.output
    none = await asyncio.to_thread(CliRunner().invoke, cli, ["rollback", f"{instance}-absent"], env=env)
    assert none.exit_code == 2 and "no recorded deploy" in none.output


async def test_two_deploys_of_one_service_are_serialised(swarm, store, prov, instance):
    name = f"{instance}-web"
    log: list[str] = []
    a, b = await asyncio.gather(deploy_service(swarm, store, web_spec(name, "v1"), log.append, prov),
                                deploy_service(swarm, store, web_spec(name, "v2"), log.append, prov))
    assert a.ok and b.ok, log
    first, second = sorted([await history.get(store, a.deploy_id), await history.get(store, b.deploy_id)],
                           key=lambda r: r["started"])
    assert second["started"] >= first["finished"]
    assert second["spec_before"]["Labels"]["io.conveyor.deploy"] == str(first["id"])

    # Across processes: a live process's claim makes a deploy wait; when that process dies the
    # claim is stale, marked unknown and taken over.
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        claim_id = await store.awrite(lambda c: c.execute(
            "INSERT INTO deploys (service, target, status, pid, host, heartbeat, started) "
            "VALUES (?, 'default', 'deploying', ?, ?, ?, ?)",
            (name, holder.pid, history.HOST, time.time(), time.time())).lastrowid)
        waiting = asyncio.create_task(deploy_service(swarm, store, web_spec(name, "v3"), log.append, prov))
        await asyncio.sleep(1.5)
        assert not waiting.done() and any("another deploy" in line for line in log)
    finally:
        holder.kill()
        holder.wait()
    assert (await waiting).ok
    assert (await history.get(store, claim_id))["status"] == "unknown"


CRASH = """
import asyncio, sys
sys.path.insert(0, {tests!r})
from deploy_helpers import web_spec
from runner.engine import Engine, Target
from runner.deploy.service import deploy_service, Provenance
from runner.store.db import Store
spec = web_spec({name!r}, "v2", timeout=120)
import dataclasses
spec = dataclasses.replace(spec, healthcheck=dataclasses.replace(spec.healthcheck, start_period=4.0, cmd="sleep 3; wget -q -O- http://127.0.0.1:8080/health"))
asyncio.run(deploy_service(Engine(Target("default")), Store({data!r}), spec, print,
                           Provenance(instance={instance!r})))
"""


async def test_crash_mid_deploy_is_marked_unknown_and_compared(swarm, store, prov, instance, settings):
    name = f"{instance}-web"
    assert (await deploy_service(swarm, store, web_spec(name, "v1"), print, prov)).ok
    code = CRASH.format(tests=os.path.dirname(__file__), name=name, data=str(settings.data_dir), instance=instance)
    proc = subprocess.Popen([sys.executable, "-c", code])
    try:
        deadline = time.time() + 30
        while time.time() < deadline:  # wait until the spec is written and being watched
            rows = history.list_deploys(store, name)
            if rows[0]["status"] == "deploying" and rows[0]["version_after"]:
                break
            await asyncio.sleep(0.2)
        else:
            pytest.fail("the deploy in the child never got going")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert history.list_deploys(store, name)[0]["status"] == "deploying"
    # The next command that opens the store settles it: here `conveyor deploys`, as a user would.
    shown = await asyncio.to_thread(
        CliRunner().invoke, cli, ["deploys", name, "--json", "--data-dir", str(settings.data_dir)],
        env={"CONVEYOR_INSTANCE": instance}, catch_exceptions=False)
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.stdout)[0]["status"] == "unknown"
    row = history.list_deploys(store, name)[0]
    assert row["status"] == "unknown" and "not re-run" in row["reason"]
    assert "runs this deploy's spec" in row["reason"], row["reason"]
    assert json.loads(json.dumps(row["spec_after"]))["Labels"]["io.conveyor.deploy"] == str(row["id"])
    # Nothing was re-run: still one row for it, and a second reconcile finds nothing.
    assert await reconcile_in_flight(store, settings) == []
