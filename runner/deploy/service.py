"""Deploy one Swarm service: claim, record the spec before, write the new spec, watch, verify, record.

Outcomes (the deploy row's status):

- ``succeeded``: converged and, when asked, verified.
- ``rolled_back``: Swarm rolled the update back (``failure_action: rollback``), or Conveyor put the
  recorded spec before back because verify failed, the update timed out or its tasks kept failing
  (only under ``failure_action: rollback``). A first deploy that fails is rolled back by removing
  the service it created. Always a failed stage.
- ``failed``: the update paused, or could not be rolled back; the service is left as it is.
"""

from __future__ import annotations

import asyncio
import copy
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from runner.deploy import history
from runner.deploy.registry import logged_in, pin_for_build
from runner.deploy.spec import LABEL_INSTANCE, apply_spec, service_spec, warnings_for, with_deploy_label
from runner.deploy.verify import run_verify
from runner.deploy.watch import WatchResult, watch_service
from runner.engine import Engine
from runner.engine import errors as derrors
from runner.errors import DeployError
from runner.plan import DeploySpec
from runner.store.db import Store

# Putting the spec before back gets at least this long: it is what stands between a failed deploy
# and a broken service, and the deploy's own timeout may have been spent already.
MIN_REVERT_TIMEOUT = 60.0

__all__ = ["DeployOutcome", "Provenance", "deploy_service", "revert", "live_service", "image_id",
           "ensure_networks"]


@dataclass(frozen=True)
class Provenance:
    """Who and what a deploy comes from, for its history row."""

    repo: str | None = None
    build_uid: str | None = None
    build_number: int | None = None
    commit_sha: str | None = None
    trigger: str = "cli"
    instance: str = "default"
    extra: dict = field(default_factory=dict)
    environment: str | None = None  # the environment deployed to (docs/deploy.md)
    promoted_from: int | None = None  # a promotion: the source environment's deploy

    def fields(self) -> dict:
        return {"repo": self.repo, "build_uid": self.build_uid, "build_number": self.build_number,
                "commit_sha": self.commit_sha, "trigger": self.trigger, "environment": self.environment,
                "promoted_from": self.promoted_from}

    def restoring(self, row: Mapping) -> dict:
        """``fields()`` of a rollback to the deploy ``row``: where this provenance names no build (a
        rollback from the API or the command line), the build of what it puts back, as a promotion
        does. The row then belongs to that build's repository, and only its readers see it."""
        own = self.fields()
        if self.repo is None:
            own.update({k: row.get(k) for k in ("repo", "build_uid", "build_number", "commit_sha")})
        return own


@dataclass(frozen=True)
class DeployOutcome:
    deploy_id: int
    status: str
    reason: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == "succeeded"


def live_service(swarm: Engine, name: str) -> dict | None:
    """Blocking: the service's inspect output, or None when there is none."""
    try:
        return swarm.api.inspect_service(name)
    except derrors.NotFound:
        return None


def image_id(swarm: Engine, ref: str) -> str | None:
    """Blocking: the id the reference has on the target's engine now (None: not there)."""
    try:
        return swarm.client.images.get(ref).id
    except derrors.ImageNotFound:
        return None


def ensure_networks(swarm: Engine, names: list[str], labels: dict[str, str]) -> None:
    """Blocking: create missing networks as attachable overlays (so verify commands can join them)."""
    for name in names:
        if swarm.client.networks.list(names=[name]):
            continue
        try:
            swarm.client.networks.create(name, driver="overlay", attachable=True, labels=labels)
        except derrors.APIError as exc:
            if exc.status_code != 409:  # created meanwhile by a concurrent deploy
                raise DeployError(f"cannot create network {name!r}: {exc.explanation or exc}") from exc


async def revert(swarm: Engine, name: str, before: dict | None, timeout: float,
                 log: Callable[[str], None], stuck: bool = False) -> WatchResult:
    """Put the recorded spec ``before`` back (None: remove the service the deploy created) and wait.
    ``stuck``: the deploy's own watch found Swarm stuck placing a task (see ``_nothing_runs``)."""
    current = await swarm.call(live_service, swarm, name)
    if before is None:
        if current is not None:
            log(f"{name}: removing the service this deploy created")
            await swarm.call(swarm.api.remove_service, current["ID"])
        return WatchResult("converged", "service removed")
    if not (stuck and await _nothing_runs(swarm, name, log)):
        log(f"{name}: re-applying the recorded spec from before the deploy")
        stale = (current or {}).get("UpdateStatus")
        await swarm.call(apply_spec, swarm.api, copy.deepcopy(before), current)
        result = await watch_service(swarm, name, timeout, log, stale=stale)
        if not (result.stuck and await _nothing_runs(swarm, name, log)):
            return result
    await swarm.call(_recreate, swarm, name, before)
    return await watch_service(swarm, name, timeout, log)


async def _nothing_runs(swarm: Engine, name: str, log: Callable[[str], None]) -> bool:
    """Whether Swarm is stuck with nothing of the service running, so it may be re-created.

    Swarm's single-node deadlock (docs/deploy.md): a task that is meant to shut down stays pending
    for a host port, and the task that should replace it waits "ready" behind it; no update of the
    spec moves them. When nothing of the service runs, re-creating it from the recorded spec costs
    no more downtime than there already is, and it clears Swarm's state."""
    if await swarm.call(_running_tasks, swarm, name):
        return False
    log(f"{name}: Swarm is stuck placing a task and nothing runs; re-creating the service from the recorded spec")
    return True


def _running_tasks(swarm: Engine, name: str) -> int:
    """Blocking: how many tasks of the service run now."""
    tasks = swarm.api.tasks(filters={"service": name, "desired-state": "running"})
    return sum(1 for t in tasks if t["Status"]["State"] == "running")


def _recreate(swarm: Engine, name: str, spec: dict, wait: float = 30.0) -> None:
    """Blocking: remove the service, wait until its task containers are gone (they hold its host
    ports), and create it again with ``spec``."""
    current = live_service(swarm, name)
    if current is not None:
        swarm.api.remove_service(current["ID"])
    deadline = time.monotonic() + wait
    label = {"label": f"com.docker.swarm.service.name={name}"}
    while swarm.client.containers.list(all=True, sparse=True, filters=label) and time.monotonic() < deadline:
        time.sleep(0.3)
    apply_spec(swarm.api, copy.deepcopy(spec), None)


async def deploy_service(swarm: Engine, store: Store, spec: DeploySpec, log: Callable[[str], None],
                         prov: Provenance, default_image: str | None = None) -> DeployOutcome:
    if not spec.service or not spec.image:
        raise DeployError("a service deploy needs `service` and `image`")
    name, target = spec.service, swarm.target.name
    for warning in warnings_for(spec):
        log(f"warning: {warning}")
    labels = {LABEL_INSTANCE: prov.instance}
    # Pinned before anything is recorded: an unreachable registry or a missing image fails here.
    pinned, registry = await swarm.call(pin_for_build, swarm.client, spec.image, swarm.target.registry,
                                        prov.build_uid)
    if pinned is not None and pinned.ref != spec.image:
        log(f"{spec.image} is {pinned.ref}: every node runs exactly that")
    await swarm.call(logged_in, swarm.client, registry)
    desired = service_spec(spec, name, pinned.ref if pinned else spec.image, labels)
    async with history.service_lock(target, name):
        deploy_id = await history.claim(store, {"service": name, "target": target, "kind": "deploy",
                                                "image": spec.image, "digest": pinned.digest if pinned else None,
                                                **prov.fields()}, log)
        beat = asyncio.create_task(history.heartbeat(store, [deploy_id]))
        try:
            return await _deploy_claimed(swarm, store, spec, desired, deploy_id, log, labels, default_image)
        except BaseException as exc:
            reason = f"{exc.__class__.__name__}: {exc}" if not isinstance(exc, DeployError) else str(exc)
            status = "unknown" if isinstance(exc, asyncio.CancelledError) else "failed"
            await asyncio.shield(history.finish(store, deploy_id, status, reason))
            raise
        finally:
            beat.cancel()


async def _deploy_claimed(swarm: Engine, store: Store, spec: DeploySpec, desired: dict, deploy_id: int,
                          log: Callable[[str], None], labels: dict[str, str],
                          default_image: str | None) -> DeployOutcome:
    name = spec.service
    img_id = await swarm.call(image_id, swarm, spec.image)
    if img_id is None:
        log(f"warning: image {spec.image} is not on the manager's engine; every node must be able to pull it")
    if spec.networks:
        await swarm.call(ensure_networks, swarm, list(spec.networks), labels)
    current = await swarm.call(live_service, swarm, name)
    before = current["Spec"] if current else None
    after = with_deploy_label(desired, deploy_id)
    await history.update(store, deploy_id, spec_before=before, spec_after=after, image_id=img_id)
    log(f"{'updating' if current else 'creating'} service {name} with image {spec.image}"
        + (f" ({img_id[:19]})" if img_id else ""))
    stale = (current or {}).get("UpdateStatus")
    version = await swarm.call(apply_spec, swarm.api, after, current)
    await history.update(store, deploy_id, version_after=version)
    result = await watch_service(swarm, name, spec.timeout, log, stale=stale)
    return await _conclude(swarm, store, spec, deploy_id, before, result, log, default_image, labels)


async def _conclude(swarm: Engine, store: Store, spec: DeploySpec, deploy_id: int, before: dict | None,
                    result: WatchResult, log: Callable[[str], None], default_image: str | None,
                    labels: dict[str, str]) -> DeployOutcome:
    name = spec.service
    auto = spec.update.failure_action == "rollback"
    if result.ok:
        log(f"{name}: converged")
        if spec.verify is None:
            return await _record(store, deploy_id, "succeeded", None, log)
        problem = await run_verify(swarm, spec.verify, list(spec.networks), log, default_image, labels)
        if problem is None:
            return await _record(store, deploy_id, "succeeded", None, log)
        why = f"verify failed: {problem}"
        back = await revert(swarm, name, before, max(spec.timeout, MIN_REVERT_TIMEOUT), log)
        return await _record(store, deploy_id, "rolled_back" if back.ok else "failed",
                             why + ("; rolled back" if back.ok else f"; rollback did not converge: {back.reason}"), log)
    if result.outcome == "rolled_back":
        return await _record(store, deploy_id, "rolled_back", result.reason, log)
    if result.outcome in ("timeout", "failed") and auto:
        back = await revert(swarm, name, before, max(spec.timeout, MIN_REVERT_TIMEOUT), log, stuck=result.stuck)
        return await _record(store, deploy_id, "rolled_back" if back.ok else "failed",
                             f"{result.reason}; " + ("rolled back" if back.ok else f"rollback failed: {back.reason}"), log)
    return await _record(store, deploy_id, "failed", result.reason, log)


async def _record(store: Store, deploy_id: int, status: str, reason: str | None,
                  log: Callable[[str], None]) -> DeployOutcome:
    await history.finish(store, deploy_id, status, reason)
    log(f"deploy #{deploy_id}: {status}" + (f": {reason}" if reason else ""))
    return DeployOutcome(deploy_id, status, reason)
