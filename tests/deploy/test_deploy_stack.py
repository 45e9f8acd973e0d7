"""A Compose stack on a real swarm: deployed together, and all rolled back when one service fails."""

from __future__ import annotations

import uuid

import pytest

from runner.backends.base import BuildRef
from runner.deploy import history, stage_actions
from runner.executor.actions import ActionContext
from runner.deploy.compose import parse_compose
from runner.deploy.stack import deploy_stack, rollback_stack
from runner.plan import DeploySpec, Plan, Stage

pytestmark = [pytest.mark.docker, pytest.mark.swarm]

COMPOSE = """
services:
  api:
    image: conveyor-test/busybox:1
    command: ["sh", "-c", "echo {api} > /i; trap 'exit 0' TERM; httpd -f -p 8080 -h / & wait"]
    healthcheck: {{test: ["CMD-SHELL", "{api_health}"], interval: 500ms, timeout: 1s, retries: 2}}
    deploy:
      replicas: 1
      update_config: {{monitor: 2s, order: start-first}}
  worker:
    image: conveyor-test/busybox:1
    command: "sh -c 'trap \\"exit 0\\" TERM; sleep 1000 & wait'"
    environment: {{VERSION: "{worker}"}}
    deploy: {{update_config: {{monitor: 1s}}}}
"""


def _parse(stack: str, api: str, worker: str, api_health: str = "true"):
    text = COMPOSE.format(api=api, worker=worker, api_health=api_health)
    return parse_compose(text, stack)


async def test_stack_with_one_bad_service_is_rolled_back_whole(swarm, store, prov, instance, settings, git_repo):
    stack = f"{instance}st"
    log: list[str] = []
    services = _parse(stack, "a1", "w1").services
    assert set(services) == {f"{stack}_api", f"{stack}_worker"}
    # The first deploy goes through the stage action: the Compose file is read from the checkout
    # and rendered by Jinja first.
    text = COMPOSE.format(api="a1", worker="{{ git.short_sha }}", api_health="true")
    repo = git_repo(files={"deploy/stack.yml": text})
    ctx = ActionContext(build=BuildRef(id=uuid.uuid4().hex[:12], source=repo, instance=instance),
                        plan=Plan(name="t", stages=(), env={"CI_COMMIT_SHA": "abcdef0123456789"}),
                        log=log.append, status="success")
    stage = Stage(name="deploy", kind="deploy",
                  deploy=DeploySpec(stack=stack, compose="deploy/stack.yml", timeout=60))
    result = await stage_actions(settings, store)["deploy"](stage, ctx)
    assert result.status == "success", log
    worker = swarm.api.inspect_service(f"{stack}_worker")["Spec"]["TaskTemplate"]["ContainerSpec"]
    assert worker["Env"] == ["VERSION=abcdef01"]
    good = {n: swarm.api.inspect_service(n)["Spec"]["TaskTemplate"]["ContainerSpec"] for n in services}

    # The worker changes fine, but the api's new version never gets healthy: both go back.
    second = await deploy_stack(swarm, store, _parse(stack, "a2", "w2", api_health="false"), 60, None, log.append, prov)
    assert [o.status for o in second] == ["rolled_back", "rolled_back"], log
    assert all(f"{stack}_api" in o.reason for o in second)
    for n in services:
        assert swarm.api.inspect_service(n)["Spec"]["TaskTemplate"]["ContainerSpec"] == good[n]

    # A third, good deploy, then a stack rollback by hand puts the first version back everywhere.
    assert all(o.ok for o in await deploy_stack(swarm, store, _parse(stack, "a3", "w3"), 60, None, log.append, prov))
    back = await rollback_stack(swarm, store, stack, log.append, prov)
    assert all(o.ok for o in back), log
    for n in services:
        assert swarm.api.inspect_service(n)["Spec"]["TaskTemplate"]["ContainerSpec"] == good[n]
    rows = history.list_deploys(store, stack)
    assert {r["kind"] for r in rows[:2]} == {"rollback"} and len({r["batch"] for r in rows[:2]}) == 1
