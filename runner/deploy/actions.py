"""The three stage actions the executor calls: ``build``, ``deploy`` and ``rollback``.

Each opens its target, does the work through the modules beside this one, logs through
``ctx.log`` and answers with an ActionResult: ``success`` only for a built image, a succeeded
deploy, or a converged rollback.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
from pathlib import Path

from runner.deploy import history
from runner.deploy.compose_source import render_compose, stack_from_workspace
from runner.deploy.config import load_deploy_config
from runner.deploy.environments import adjust_stack_spec, check_approved, check_branch, for_environment
from runner.engine import errors as derrors
from runner.engine import DEFAULT_TARGET, open_target
from runner.engine.labels import IMAGE_BUILD, IMAGE_INSTANCE, IMAGE_REPO, OLD_IMAGE_REPO, labels_for
from runner.store import approvals
from runner.deploy.image_build import build_image
from runner.deploy.registry import push, remember_push
from runner.deploy.rollback import rollback_service
from runner.deploy.service import deploy_service
from runner.deploy.stack import deploy_stack, rollback_stack
from runner.errors import DeployError, NoDeployToRollBackTo
from runner.executor.actions import ActionContext, ActionResult
from runner.plan import Stage
from runner.settings import Settings
from runner.store.db import Store

__all__ = ["build_action", "deploy_action", "rollback_action", "render_compose", "IMAGE_REPO", "IMAGE_BUILD",
           "IMAGE_INSTANCE"]

def _workspace(ctx: ActionContext) -> tuple[Path, str | None]:
    """The build's workspace as its backend named it: a host directory, and a volume (or None)."""
    return (ctx.workspace_dir or ctx.build.source), ctx.workspace_volume


def _helper_labels(settings: Settings, ctx: ActionContext) -> dict[str, str]:
    """Labels of the container that copies files out of the workspace volume: the build's, so a
    copy cut short by a crash is swept with the build's other resources."""
    return labels_for(ctx.build.id, ctx.build.instance, settings.resource_ttl)


async def build_action(settings: Settings, stage: Stage, ctx: ActionContext) -> ActionResult:
    spec = stage.build
    repo = ctx.build.labels.get("io.conveyor.repo") or ""
    swarm = await open_target(settings, None, manager=False)  # the jobs' engine: it holds the workspace
    try:
        if not ctx.plan.trusted:
            taken = await swarm.call(_tag_owned_elsewhere, swarm.client, spec.tag, repo)
            if taken:
                return ActionResult("failure", taken)
        source, volume = _workspace(ctx)
        where = "the workspace volume" if volume else "the workspace" if ctx.workspace_dir else "the checkout"
        ctx.log(f"building {spec.tag} from {where} (context {spec.context}, {spec.dockerfile})")
        labels = {IMAGE_BUILD: ctx.build.id, IMAGE_INSTANCE: ctx.build.instance, IMAGE_REPO: repo}
        image_id = await build_image(swarm, spec, source, volume, ctx.log, labels,
                                     _helper_labels(settings, ctx))
        ctx.log(f"built {spec.tag} ({image_id[:19]})")
        registry = swarm.target.registry
        if spec.push and registry is None:
            return ActionResult("failure", "push: true, but no registry is configured: add `registry: {url: ...}` "
                                           "to the targets file or the server configuration")
        if registry is not None and spec.push is not False:
            pinned = await swarm.call(push, swarm.client, image_id, spec.tag, registry, ctx.log)
            remember_push(ctx.build.id, spec.tag, pinned, registry)
            ctx.log(f"deploys of {spec.tag} will run {pinned.ref}")
    finally:
        swarm.close()
    return ActionResult("success")


def _tag_owned_elsewhere(client, tag: str, repo: str) -> str | None:
    """Blocking. Why an untrusted repository may not (re)write ``tag``, or None when it may.

    Images on the engine are shared by every build: without this, any pipeline could re-tag a job
    image (say ``conveyor-test/busybox:1``) that other repositories' builds, with their secrets and
    deploys, run next. A tag is this repository's when Conveyor built it for this repository (images
    built before the provenance labels were renamed carry the old name)."""
    try:
        labels = client.images.get(tag).labels or {}
    except derrors.ImageNotFound:
        return None
    owner = labels.get(IMAGE_REPO, labels.get(OLD_IMAGE_REPO))
    if owner == repo:
        return None
    whose = f"repository {owner!r}" if owner else "something other than a Conveyor build (a job or base image?)"
    return (f"build refused: the tag {tag} already exists and belongs to {whose}; an untrusted repository "
            f"may only overwrite tags its own builds made: pick another tag (e.g. {repo or 'myrepo'}/"
            f"{tag.rsplit('/', 1)[-1]}) or mark the repository trusted")


async def deploy_action(settings: Settings, store: Store, stage: Stage, ctx: ActionContext) -> ActionResult:
    from runner.deploy import provenance

    spec, prov, env = stage.deploy, provenance(ctx), None
    config = await asyncio.to_thread(load_deploy_config, settings)
    if spec.environment:
        env = config.environment(spec.environment)
        # The build's own branch, as stored: the pipeline's `env:` may set CI_COMMIT_BRANCH to anything.
        check_branch(env, *await history.build_ref(store, ctx.build.id))
        check_approved(env, await store.aread(lambda c: approvals.of_build_uid(c, ctx.build.id)))
        spec, prov = for_environment(spec, env), dataclasses.replace(prov, environment=env.name)
        ctx.log(f"deploying to environment {env.name} (target {env.target})")
    else:
        _check_unguarded(config, spec)
    if not ctx.plan.trusted:
        await _check_own(store, spec, prov.repo)
    swarm = await open_target(settings, spec.target)
    try:
        if spec.stack:
            source, volume = _workspace(ctx)
            compose = await swarm.call(stack_from_workspace, swarm, ctx, spec, source, volume,
                                       _helper_labels(settings, ctx), stage.env)
            outcomes = await deploy_stack(swarm, store, compose, spec.timeout, spec.verify, ctx.log, prov,
                                          stage.image, functools.partial(adjust_stack_spec, env=env) if env else None)
            bad = [o for o in outcomes if not o.ok]
            if bad:
                return ActionResult("failure", f"stack {spec.stack} {bad[0].status}: {bad[0].reason}")
            return ActionResult("success")
        outcome = await deploy_service(swarm, store, spec, ctx.log, prov, stage.image)
        if outcome.ok:
            return ActionResult("success")
        return ActionResult("failure", f"deploy #{outcome.deploy_id} {outcome.status}: {outcome.reason}")
    finally:
        swarm.close()


def _check_unguarded(config, spec) -> None:
    """A deploy that names no environment may not write what a guarded one owns (its approvers and
    branch rules would not be asked): the names on its target that end in its suffix."""
    name = spec.stack or spec.service
    target = spec.target or DEFAULT_TARGET
    owner = config.owner(target, name) if name else None
    if owner is not None and (owner.approvers or owner.branches):
        kind = "stack" if spec.stack else "service"
        raise DeployError(
            f"{kind} {name!r} on target {target!r} is environment {owner.name!r}'s, which takes deploys only "
            f"{_guards(owner)}: deploy it with `environment: {owner.name}` and {kind} {owner.base(name)!r} "
            "(or to a name of no guarded environment)")


async def _check_own(store: Store, spec, repo: str | None) -> None:
    """An untrusted repository deploys only services and stacks that no other repository's builds
    deployed on that target: deploys share the swarm, and taking over another's service takes its
    name (the traffic other services send to it) and its place in its environment."""
    name, target = spec.stack or spec.service, spec.target or DEFAULT_TARGET
    owner = await history.last_repo(store, target, name) if name else None
    if owner is not None and owner != repo:
        kind = "stack" if spec.stack else "service"
        raise DeployError(f"{kind} {name!r} on target {target!r} was deployed by repository {owner!r}; an "
                          "untrusted repository deploys only its own services: pick another name, or mark the "
                          "repository trusted")


def _guards(env) -> str:
    said = [f"approved by {', '.join(env.approvers)}"] if env.approvers else []
    return " and ".join(said + ([f"from branch(es) {', '.join(env.branches)}"] if env.branches else []))


async def rollback_action(settings: Settings, store: Store, stage: Stage, ctx: ActionContext) -> ActionResult:
    from runner.deploy import provenance

    spec = stage.rollback
    config = await asyncio.to_thread(load_deploy_config, settings)
    env = config.environment(spec.environment) if spec.environment else None
    if env is not None:  # where the deploy to that environment went, under the name it has there
        spec = dataclasses.replace(spec, target=env.target,
                                   service=env.service(spec.service) if spec.service else None,
                                   stack=env.service(spec.stack) if spec.stack else None)
    if spec.to is not None and (spec.stack or spec.service):
        # A version asked for by id may be any: in a guarded environment that is a change like a
        # deploy, held to its branch rule and approvers. Without `to:` a build rolls back only what
        # it deployed itself, which passed them.
        guard = env or config.owner(spec.target or DEFAULT_TARGET, spec.stack or spec.service)
        if guard is not None and (guard.approvers or guard.branches):
            check_branch(guard, *await history.build_ref(store, ctx.build.id))
            check_approved(guard, await store.aread(lambda c: approvals.of_build_uid(c, ctx.build.id)))
    swarm = await open_target(settings, spec.target)
    try:
        name = spec.stack or spec.service
        if spec.to is None and name and not await history.deployed_by_build(store, swarm.target.name, name,
                                                                             ctx.build.id):
            # A failure before the deploy stage (a red unit test) must not roll back what runs now.
            ctx.log(f"this build did not deploy {name}: nothing to roll back (set `to:` to roll back anyway)")
            return ActionResult("success", f"nothing to roll back: this build did not deploy {name}")
        if not name:
            raise DeployError("a rollback needs `service: NAME` or `stack: NAME`")
        try:
            if spec.stack:
                outcomes = await rollback_stack(swarm, store, spec.stack, ctx.log, provenance(ctx), spec.to,
                                                spec.timeout)
                bad = [o for o in outcomes if not o.ok]
                return ActionResult("failure", bad[0].reason) if bad else ActionResult("success")
            outcome = await rollback_service(swarm, store, spec.service, ctx.log, provenance(ctx), spec.to,
                                             spec.timeout)
        except NoDeployToRollBackTo as exc:
            if spec.to is not None:
                raise  # a version asked for by id that cannot be had: the stage fails
            # A failed *first* deploy: it already put things back as they were (no service), and
            # there is no earlier version. The build fails once, for its deploy, not again here.
            ctx.log(f"nothing to roll back to: {exc}")
            return ActionResult("success", f"nothing to roll back to: no earlier succeeded deploy of {name}")
        if outcome.ok:
            return ActionResult("success")
        return ActionResult("failure", f"rollback #{outcome.deploy_id} {outcome.status}: {outcome.reason}")
    finally:
        swarm.close()
