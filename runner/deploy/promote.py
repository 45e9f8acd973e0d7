"""Promotion: deploy exactly what is live in one environment to another, without building anything.

``conveyor promote SERVICE --from staging --to production``, ``POST /api/environments/{name}/promote``
and the environments page's button all call ``promote``. It takes the source environment's live
deploy from the history, refuses unless it ran a pinned digest (nothing else is "exactly the
same image"), adjusts its recorded spec only by the destination's settings (``adjust_recorded``),
and applies it like a rollback applies a recorded spec: claim, record, apply, watch, record. A
promotion that does not converge puts the destination's previous spec back when its update policy
says ``rollback``. The row is a ``deploy`` of the destination environment with ``promoted_from``
naming the source deploy and ``trigger`` who promoted.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

from runner.deploy import history
from runner.deploy.config import Environment, load_deploy_config
from runner.deploy.environments import adjust_recorded, check_branch, live_in
from runner.deploy.registry import logged_in
from runner.deploy.service import MIN_REVERT_TIMEOUT, DeployOutcome, Provenance, live_service, revert
from runner.deploy.spec import apply_spec, with_deploy_label
from runner.deploy.watch import watch_service
from runner.engine import open_target
from runner.errors import DeployError
from runner.settings import Settings
from runner.store.db import Store

__all__ = ["Promotion", "plan_promotion", "promote"]


@dataclass(frozen=True)
class Promotion:
    """What a promotion will do, decided before anything changes (the API answers with it)."""

    service: str  # as the pipeline names it, without an environment's suffix
    source: Environment
    dest: Environment
    row: history.Deploy  # the source environment's live deploy
    spec: dict  # its recorded spec, as it will run in ``dest``
    origin: history.Deploy  # the deploy whose version ``row`` runs (``row``, unless it is a rollback)


async def plan_promotion(settings: Settings, store: Store, service: str, source: str, dest: str) -> Promotion:
    """Check everything that can be checked without the swarm; raise DeployError saying what to do."""
    config = load_deploy_config(settings)
    src, dst = config.environment(source), config.environment(dest)
    if src.name == dst.name:
        raise DeployError(f"--from and --to are both {src.name!r}: promote from one environment to another")
    row = await live_in(store, src, service)
    if row is None:
        raise DeployError(f"nothing of {service!r} is live in {src.name!r} (no succeeded deploy of "
                          f"{src.service(service)!r} on target {src.target!r}): deploy it there first")
    if not row["digest"]:
        raise DeployError(f"deploy #{row['id']} of {service!r} in {src.name!r} runs {row['image']}, which is not pinned "
                          "to a digest (no registry was configured for it): configure a registry, deploy again, then "
                          "promote")
    origin = await history.origin(store, row)
    if dst.branches:  # what is promoted must come from a branch the destination takes deploys from
        branch, tag = await history.build_ref(store, origin["build_uid"])
        check_branch(dst, branch, tag)
    return Promotion(service, src, dst, row, adjust_recorded(row["spec_after"], src, dst, service), origin)


async def promote(settings: Settings, store: Store, plan: Promotion, log: Callable[[str], None],
                  who: str, timeout: float = 300.0) -> DeployOutcome:
    row, dst, made = plan.row, plan.dest, plan.origin  # the version's build and commit: its origin's
    name = dst.service(plan.service)
    prov = Provenance(repo=made["repo"], build_uid=made["build_uid"], build_number=made["build_number"],
                      commit_sha=made["commit_sha"], trigger=who, instance=settings.instance,
                      environment=dst.name, promoted_from=row["id"])
    swarm = await open_target(settings, dst.target)
    try:
        await swarm.call(logged_in, swarm.client, swarm.target.registry)
        async with history.service_lock(dst.target, name):
            deploy_id = await history.claim(store, {"service": name, "target": dst.target, "kind": "deploy",
                                                    "image": row["image"], "digest": row["digest"],
                                                    "image_id": row["image_id"], **prov.fields()}, log)
            beat = asyncio.create_task(history.heartbeat(store, [deploy_id]))
            try:
                return await _apply(swarm, store, plan, name, deploy_id, log, timeout)
            except BaseException as exc:
                status = "unknown" if isinstance(exc, asyncio.CancelledError) else "failed"
                await asyncio.shield(history.finish(store, deploy_id, status, str(exc)))
                raise
            finally:
                beat.cancel()
    finally:
        swarm.close()


async def _apply(swarm, store: Store, plan: Promotion, name: str, deploy_id: int, log: Callable[[str], None],
                 timeout: float) -> DeployOutcome:
    current = await swarm.call(live_service, swarm, name)
    before = current["Spec"] if current else None
    after = with_deploy_label(plan.spec, deploy_id)
    await history.update(store, deploy_id, spec_before=before, spec_after=after)
    log(f"promoting {plan.service} from {plan.source.name} (deploy #{plan.row['id']}, {plan.row['digest']}) "
        f"to {plan.dest.name} as {name}")
    version = await swarm.call(apply_spec, swarm.api, after, current)
    await history.update(store, deploy_id, version_after=version)
    result = await watch_service(swarm, name, timeout, log, stale=(current or {}).get("UpdateStatus"))
    if result.ok:
        status, reason = "succeeded", None
    elif result.outcome == "rolled_back":
        status, reason = "rolled_back", result.reason
    elif (after.get("UpdateConfig") or {}).get("FailureAction") == "rollback":
        back = await revert(swarm, name, before, max(timeout, MIN_REVERT_TIMEOUT), log, stuck=result.stuck)
        status = "rolled_back" if back.ok else "failed"
        reason = f"{result.reason}; " + ("rolled back" if back.ok else f"rollback failed: {back.reason}")
    else:
        status, reason = "failed", result.reason
    await history.finish(store, deploy_id, status, reason)
    log(f"promotion #{deploy_id}: {status}" + (f": {reason}" if reason else ""))
    return DeployOutcome(deploy_id, status, reason)
