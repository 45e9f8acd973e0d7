"""Rollback: re-apply a recorded spec from the deploy history (the ``rollback`` stage and
``conveyor rollback SERVICE [--to ID]``), then wait for convergence exactly as a deploy does.

Default target: the last *succeeded* deploy before the current one, where "current" is the newest
row of the service; when that row is a succeeded rollback, the deploy it restored counts as current,
so rolling back twice walks further back instead of flipping between two versions. With no such
deploy the rollback stops with ``NoDeployToRollBackTo`` before anything is written or changed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from runner.deploy import history
from runner.deploy.registry import logged_in
from runner.deploy.service import DeployOutcome, Provenance, image_id, live_service
from runner.deploy.spec import apply_spec, with_deploy_label
from runner.deploy.watch import watch_service
from runner.engine import Engine
from runner.errors import DeployError, NoDeployToRollBackTo
from runner.store.db import Store

__all__ = ["choose_target", "nothing_recorded", "rollback_service"]


async def choose_target(store: Store, target: str, service: str, to: int | None) -> history.Deploy:
    """The deploy whose spec a rollback re-applies; raises with what to do when there is none."""
    if to is not None:
        row = await history.get(store, to)
        if row is None:
            raise NoDeployToRollBackTo(f"there is no deploy #{to}; `conveyor deploys {service}` lists them")
        if row["service"] != service or row["target"] != target:
            raise NoDeployToRollBackTo(f"deploy #{to} is of service {row['service']!r} on target {row['target']!r}, "
                                       f"not {service!r} on {target!r}; `conveyor deploys {service}` lists its deploys")
        if not row["spec_after"]:
            raise NoDeployToRollBackTo(f"deploy #{to} recorded no spec (it failed before writing one); pick another")
        return row
    current = await history.latest(store, target, service)
    if current is None:
        raise await nothing_recorded(store, "service", service, target)
    ref = current["id"]
    if current["kind"] == "rollback" and current["status"] == "succeeded" and current["rollback_of"]:
        ref = current["rollback_of"]
    row = await history.last_good_before(store, target, service, ref)
    if row is None:
        raise NoDeployToRollBackTo(f"service {service!r} has no succeeded deploy before #{ref} to roll back to; "
                                   f"pick one with `conveyor rollback {service} --to ID` (`conveyor deploys "
                                   f"{service}` lists them); nothing was changed")
    return row


async def nothing_recorded(store: Store, kind: str, name: str, target: str) -> NoDeployToRollBackTo:
    """The error for a service (or stack) with no deploy on ``target``: when it was deployed to
    another target, the user most likely forgot to name that one, so say how."""
    elsewhere = await history.other_targets(store, name, target)
    if elsewhere:
        where = " or ".join(repr(t) for t in elsewhere)
        flag = " --stack" if kind == "stack" else ""
        return NoDeployToRollBackTo(
            f"{kind} {name!r} has no recorded deploy on target {target!r}, but it was deployed to target {where}: "
            f"run `conveyor rollback {name}{flag} --target {elsewhere[0]}` (in a pipeline: `target: {elsewhere[0]}`); "
            "nothing was changed")
    return NoDeployToRollBackTo(f"{kind} {name!r} on target {target!r} has no recorded deploy, so there is "
                                "nothing to roll back to; deploy it first")


async def rollback_service(swarm: Engine, store: Store, service: str, log: Callable[[str], None],
                           prov: Provenance, to: int | None = None, timeout: float = 300.0) -> DeployOutcome:
    target = swarm.target.name
    chosen = await choose_target(store, target, service, to)
    if chosen["status"] != "succeeded":
        log(f"warning: deploy #{chosen['id']} ended {chosen['status']}; re-applying its spec anyway as asked")
    async with history.service_lock(target, service):
        deploy_id = await history.claim(store, {"service": service, "target": target, "kind": "rollback",
                                                "rollback_of": chosen["id"], "image": chosen["image"],
                                                "stack": chosen["stack"], **prov.restoring(chosen),
                                                # it runs what that deploy ran, where it ran
                                                "digest": chosen.get("digest"),
                                                "environment": chosen.get("environment")}, log)
        beat = asyncio.create_task(history.heartbeat(store, [deploy_id]))
        try:
            return await _apply(swarm, store, service, chosen, deploy_id, log, timeout)
        except BaseException as exc:
            status = "unknown" if isinstance(exc, asyncio.CancelledError) else "failed"
            await asyncio.shield(history.finish(store, deploy_id, status, str(exc)))
            raise
        finally:
            beat.cancel()


async def _apply(swarm: Engine, store: Store, service: str, chosen: history.Deploy, deploy_id: int,
                 log: Callable[[str], None], timeout: float) -> DeployOutcome:
    img = chosen["image"]
    img_id = await swarm.call(image_id, swarm, img) if img else None
    if chosen["image_id"] and img_id and img_id != chosen["image_id"]:
        log(f"warning: {img} now names image {img_id[:19]}, not {chosen['image_id'][:19]} as at deploy "
            f"#{chosen['id']}; the tag was moved, so this is not exactly the old version")
    current = await swarm.call(live_service, swarm, service)
    await swarm.call(logged_in, swarm.client, swarm.target.registry)  # nodes may pull it again
    after = with_deploy_label(chosen["spec_after"], deploy_id)
    await history.update(store, deploy_id, spec_before=current["Spec"] if current else None, spec_after=after,
                         image_id=img_id)
    log(f"rolling {service} back to deploy #{chosen['id']} (image {img})")
    try:
        version = await swarm.call(apply_spec, swarm.api, after, current)
    except DeployError as exc:
        await history.finish(store, deploy_id, "failed", str(exc))
        raise
    await history.update(store, deploy_id, version_after=version)
    result = await watch_service(swarm, service, timeout, log, stale=(current or {}).get("UpdateStatus"))
    status = "succeeded" if result.ok else ("rolled_back" if result.outcome == "rolled_back" else "failed")
    reason = None if result.ok else result.reason
    await history.finish(store, deploy_id, status, reason)
    log(f"rollback #{deploy_id} to deploy #{chosen['id']}: {status}" + (f": {reason}" if reason else ""))
    return DeployOutcome(deploy_id, status, reason)
