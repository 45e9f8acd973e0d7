"""Rollback with nothing to roll back to on this target: the error names the way forward, and a
rollback stage after a failed *first* deploy does not fail the build a second time.

The history rows are written through the real store; the target is the real engine (a swarm
manager). Nothing is deployed, so no service is touched.
"""

from __future__ import annotations

import asyncio

import pytest
from click.testing import CliRunner

from runner.backends.base import BuildRef
from runner.cli import cli
from runner.deploy import history, stage_actions
from runner.executor.actions import ActionContext
from runner.plan import Plan, RollbackSpec, Stage

pytestmark = [pytest.mark.docker]


async def _record(store, service: str, target: str, status: str, build_uid: str = "b1", stack: str | None = None):
    row = await history.claim(store, {"service": service, "target": target, "kind": "deploy", "image": "web:1",
                                      "stack": stack, "build_uid": build_uid, "repo": "web", "build_number": 1,
                                      "spec_after": {"Name": service}})
    await history.finish(store, row, status, None if status == "succeeded" else "verify failed")
    return row


async def test_rollback_of_a_service_deployed_to_a_named_target_suggests_that_target(store, settings, instance,
                                                                                      swarm_engine):
    name = f"{instance}-web"
    await _record(store, name, "production", "succeeded")
    await _record(store, f"{instance}-stack_web", "production", "succeeded", stack=f"{instance}-stack")
    env = {"CONVEYOR_DATA_DIR": str(settings.data_dir), "CONVEYOR_INSTANCE": instance}

    out = await asyncio.to_thread(CliRunner().invoke, cli, ["rollback", name], env=env)
    assert out.exit_code == 2, out.output
    assert f"deployed to target 'production': run `conveyor rollback {name} --target production`" in out.output
    assert "deploy it first" not in out.output

    stack = await asyncio.to_thread(CliRunner().invoke, cli, ["rollback", f"{instance}-stack", "--stack"], env=env)
    assert stack.exit_code == 2 and f"`conveyor rollback {instance}-stack --stack --target production`" in stack.output

    never = await asyncio.to_thread(CliRunner().invoke, cli, ["rollback", f"{instance}-never"], env=env)
    assert never.exit_code == 2 and "deploy it first" in never.output
    assert len(history.list_deploys(store)) == 2  # nothing written by the refusals


async def test_rollback_stage_after_a_failed_first_deploy_has_nothing_to_do(store, settings, instance, swarm_engine):
    name = f"{instance}-web"
    await _record(store, name, "default", "rolled_back", build_uid="first1")
    lines: list[str] = []
    ctx = ActionContext(build=BuildRef(id="first1", source=settings.data_dir, instance=instance),
                        plan=Plan(name="t", stages=()), log=lines.append, status="failure")
    rollback = stage_actions(settings, store)["rollback"]

    result = await rollback(Stage(name="rollback", kind="rollback", rollback=RollbackSpec(service=name)), ctx)
    assert result.status == "success", (result, lines)
    assert result.reason == f"nothing to roll back to: no earlier succeeded deploy of {name}"
    assert any("no succeeded deploy before" in line for line in lines)
    assert [r["kind"] for r in history.list_deploys(store, name)] == ["deploy"]  # nothing written

    # A version asked for by id that does not exist is still the stage's failure.
    asked = await rollback(Stage(name="rollback", kind="rollback", rollback=RollbackSpec(service=name, to=99999)), ctx)
    assert asked.status == "failure" and "there is no deploy #99999" in asked.reason
