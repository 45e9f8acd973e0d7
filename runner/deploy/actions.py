"""The three stage actions the executor calls: ``build``, ``deploy`` and ``rollback``.

Each opens its target, does the work through the modules beside this one, logs through
``ctx.log`` and answers with an ActionResult: ``success`` only for a built image, a succeeded
deploy, or a converged rollback.
"""

from __future__ import annotations

from runner.deploy import history
from runner.deploy.client import open_target
from runner.deploy.compose_source import render_compose, stack_from_workspace
from runner.deploy.image_build import build_image
from runner.deploy.rollback import rollback_service
from runner.deploy.service import deploy_service
from runner.deploy.stack import deploy_stack, rollback_stack
from runner.errors import DeployError
from runner.executor.actions import ActionContext, ActionResult
from runner.plan import Stage
from runner.settings import Settings
from runner.store.db import Store

__all__ = ["build_action", "deploy_action", "rollback_action", "render_compose"]


async def build_action(settings: Settings, stage: Stage, ctx: ActionContext) -> ActionResult:
    from runner.deploy import _workspace_volume

    spec = stage.build
    repo = ctx.build.labels.get("io.conveyor.repo") or ""
    swarm = await _engine(settings)
    try:
        if not ctx.plan.trusted:
            taken = await swarm.call(_tag_owned_elsewhere, swarm.client, spec.tag, repo)
            if taken:
                return ActionResult("failure", taken)
        volume = await swarm.call(_workspace_volume, swarm.client, ctx)
        ctx.log(f"building {spec.tag} from {'the workspace volume' if volume else 'the checkout'}"
                f" (context {spec.context}, {spec.dockerfile})")
        labels = {"io.conveyor.build": ctx.build.id, "io.conveyor.instance": ctx.build.instance,
                  "io.conveyor.repo": repo}
        image_id = await build_image(swarm.client, spec, ctx.build.source, volume, ctx.log, labels)
    finally:
        swarm.close()
    ctx.log(f"built {spec.tag} ({image_id[:19]})")
    return ActionResult("success")


def _tag_owned_elsewhere(client, tag: str, repo: str) -> str | None:
    """Blocking. Why an untrusted repository may not (re)write ``tag``, or None when it may.

    Images on the engine are shared by every build: without this, any pipeline could re-tag a job
    image (say ``conveyor-test/busybox:1``) that other repositories' builds, with their secrets and
    deploys, run next. A tag is this repository's when Conveyor built it for this repository."""
    import docker

    try:
        owner = (client.images.get(tag).labels or {}).get("io.conveyor.repo")
    except docker.errors.ImageNotFound:
        return None
    if owner == repo:
        return None
    whose = f"repository {owner!r}" if owner else "something other than a Conveyor build (a job or base image?)"
    return (f"build refused: the tag {tag} already exists and belongs to {whose}; an untrusted repository "
            f"may only overwrite tags its own builds made: pick another tag (e.g. {repo or 'myrepo'}/"
            f"{tag.rsplit('/', 1)[-1]}) or mark the repository trusted")


async def _engine(settings: Settings):
    """The default target's engine, swarm or not: an image build needs no swarm."""
    import asyncio

    from runner.deploy.client import Swarm, load_targets

    target = load_targets(settings)["default"]
    return Swarm(target, await asyncio.to_thread(target.client))


async def deploy_action(settings: Settings, store: Store, stage: Stage, ctx: ActionContext) -> ActionResult:
    from runner.deploy import _workspace_volume, provenance

    spec = stage.deploy
    swarm = await open_target(settings, spec.target)
    try:
        if spec.stack:
            volume = await swarm.call(_workspace_volume, swarm.client, ctx)
            compose = await swarm.call(stack_from_workspace, swarm, ctx, spec, volume)
            outcomes = await deploy_stack(swarm, store, compose, spec.timeout, spec.verify,
                                          ctx.log, provenance(ctx), stage.image)
            bad = [o for o in outcomes if not o.ok]
            if bad:
                return ActionResult("failure", f"stack {spec.stack} {bad[0].status}: {bad[0].reason}")
            return ActionResult("success")
        outcome = await deploy_service(swarm, store, spec, ctx.log, provenance(ctx), stage.image)
        if outcome.ok:
            return ActionResult("success")
        return ActionResult("failure", f"deploy #{outcome.deploy_id} {outcome.status}: {outcome.reason}")
    finally:
        swarm.close()


async def rollback_action(settings: Settings, store: Store, stage: Stage, ctx: ActionContext) -> ActionResult:
    from runner.deploy import provenance

    spec = stage.rollback
    swarm = await open_target(settings, spec.target)
    try:
        name = spec.stack or spec.service
        if spec.to is None and name and not await history.deployed_by_build(store, swarm.target.name, name,
                                                                             ctx.build.id):
            # A failure before the deploy stage (a red unit test) must not roll back what runs now.
            ctx.log(f"this build did not deploy {name}: nothing to roll back (set `to:` to roll back anyway)")
            return ActionResult("success", f"nothing to roll back: this build did not deploy {name}")
        if spec.stack:
            outcomes = await rollback_stack(swarm, store, spec.stack, ctx.log, provenance(ctx), spec.to, spec.timeout)
            bad = [o for o in outcomes if not o.ok]
            return ActionResult("failure", bad[0].reason) if bad else ActionResult("success")
        if not spec.service:
            raise DeployError("a rollback needs `service: NAME` or `stack: NAME`")
        outcome = await rollback_service(swarm, store, spec.service, ctx.log, provenance(ctx), spec.to, spec.timeout)
        if outcome.ok:
            return ActionResult("success")
        return ActionResult("failure", f"rollback #{outcome.deploy_id} {outcome.status}: {outcome.reason}")
    finally:
        swarm.close()
