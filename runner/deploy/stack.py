"""Stacks: every service of a Compose file deployed together, all or nothing (docker/cli#595).

Each service gets its own deploy row; the rows of one stack deploy share a ``batch`` id. Services
are claimed in name order (so two stack deploys never deadlock), written, and watched at once. When
any of them fails, every service of the stack is put back to its recorded spec before the deploy
(services the deploy created are removed), so the stack never ends half-updated, and every row
says ``rolled_back`` with the failing service named. Services of the stack that the file no longer
lists are left running (``docker stack deploy`` without ``--prune`` does the same). After a
success, secret and config versions nothing references any more are removed (compose_objects).
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Callable

from runner.deploy import history
from runner.deploy.compose import ComposeStack
from runner.deploy.compose_service import IMAGE_LABEL
from runner.deploy.compose_objects import referenced_ids, remove_unused
from runner.deploy.registry import Pinned, Registry, logged_in, pin_for_build
from runner.deploy.service import DeployOutcome, Provenance, image_id, live_service, revert
from runner.deploy.spec import LABEL_INSTANCE, LABEL_STACK, with_deploy_label
from runner.deploy.stack_apply import apply_and_watch, claim_all, prepare_stack
from runner.deploy.stack_rollback import rollback_stack
from runner.deploy.verify import run_verify
from runner.deploy.watch import WatchResult
from runner.engine import Engine
from runner.plan import Verify
from runner.store.db import Store

__all__ = ["deploy_stack", "deploy_specs", "rollback_stack", "pin_images"]

Log = Callable[[str], None]


def pin_images(swarm: Engine, images: list[str], build_uid: str | None) -> tuple[dict[str, Pinned], list[Registry]]:
    """Blocking: each distinct image of the stack pinned to ``name@sha256:...`` (what this build
    pushed, else what the target's registry answers), and the registries whose credentials the
    service writes must carry. An image that cannot be pinned fails the deploy before anything changes."""
    pins: dict[str, Pinned] = {}
    registries: list[Registry] = []
    for image in sorted(set(images)):
        pinned, registry = pin_for_build(swarm.client, image, swarm.target.registry, build_uid)
        if pinned is not None:
            pins[image] = pinned
        if registry is not None and registry not in registries:
            registries.append(registry)
    return pins, registries


async def deploy_stack(swarm: Engine, store: Store, compose: ComposeStack, timeout: float, verify: Verify | None,
                       log: Log, prov: Provenance, default_image: str | None = None,
                       adjust: Callable[[dict], dict] | None = None) -> list[DeployOutcome]:
    """``adjust``: what an environment changes in each service spec (environments.adjust_stack_spec)."""
    stack = compose.stack
    labels = {LABEL_INSTANCE: prov.instance, LABEL_STACK: stack}
    for warning in compose.warnings:
        log(f"warning: {warning}")
    images = {n: s["TaskTemplate"]["ContainerSpec"]["Image"] for n, s in compose.services.items()}
    # Pinned before anything is created or recorded: an unreachable registry or a missing image fails here.
    pins, registries = await swarm.call(pin_images, swarm, list(images.values()), prov.build_uid)
    for image, pinned in sorted(pins.items()):
        if pinned.ref != image:
            log(f"{image} is {pinned.ref}: every node runs exactly that")
    for registry in registries:  # service writes carry the login to the nodes (--with-registry-auth)
        await swarm.call(logged_in, swarm.client, registry)
    specs = await swarm.call(prepare_stack, swarm, compose, labels)
    for name, spec in specs.items():
        if images[name] in pins:
            spec["TaskTemplate"]["ContainerSpec"]["Image"] = pins[images[name]].ref
        if adjust is not None:
            specs[name] = adjust(spec)
    per = {n: {"image": images[n], "digest": pins[images[n]].digest if images[n] in pins else None} for n in specs}
    return await deploy_specs(swarm, store, stack, specs, {"kind": "deploy", "stack": stack, **prov.fields()}, per,
                              labels, timeout, verify, log, default_image)


async def deploy_specs(swarm: Engine, store: Store, stack: str, specs: dict[str, dict], fields: dict,
                       per: dict[str, dict], labels: dict[str, str], timeout: float, verify: Verify | None, log: Log,
                       default_image: str | None = None) -> list[DeployOutcome]:
    """Claim every service (one batch of rows: ``fields``, and ``per`` service), then write, watch and
    record them all or put them all back. A stack deploy and a stack promotion both end here."""
    target = swarm.target.name
    async with contextlib.AsyncExitStack() as locks:
        ids = await claim_all(locks, store, target, list(specs), {**fields, "batch": uuid.uuid4().hex[:12]}, log, per)
        beat = asyncio.create_task(history.heartbeat(store, list(ids.values())))
        try:
            return await _deploy_claimed(swarm, store, stack, specs, ids, labels, timeout, verify, log, default_image)
        except BaseException as exc:
            status = "unknown" if isinstance(exc, asyncio.CancelledError) else "failed"
            for deploy_id in ids.values():
                row = await history.get(store, deploy_id)
                if row and row["status"] == "deploying":
                    await asyncio.shield(history.finish(store, deploy_id, status, str(exc)))
            raise
        finally:
            beat.cancel()


async def _deploy_claimed(swarm: Engine, store: Store, stack: str, specs: dict[str, dict], ids: dict[str, int],
                          labels: dict[str, str], timeout: float, verify: Verify | None, log: Log,
                          default_image: str | None) -> list[DeployOutcome]:
    async def record(name: str, spec: dict) -> dict | None:
        current = await swarm.call(live_service, swarm, name)
        # The image as the file names it (the spec may hold its pinned form): its id on the engine.
        written = (spec.get("Labels") or {}).get(IMAGE_LABEL) or spec["TaskTemplate"]["ContainerSpec"]["Image"]
        image = await swarm.call(image_id, swarm, written)
        await history.update(store, ids[name], spec_before=current["Spec"] if current else None,
                             spec_after=with_deploy_label(spec, ids[name]), image_id=image)
        return current["Spec"] if current else None

    before = dict(zip(specs, await asyncio.gather(*(record(n, s) for n, s in specs.items()))))
    after = {name: with_deploy_label(spec, ids[name]) for name, spec in specs.items()}
    log(f"deploying {len(specs)} services of stack {stack}: {', '.join(sorted(specs))}")
    results = await apply_and_watch(swarm, after, timeout, log)
    bad = {n: r for n, r in results.items() if not r.ok}
    if not bad and verify is not None:
        nets = [n["Target"] for s in specs.values() for n in s["TaskTemplate"].get("Networks") or ()]
        problem = await run_verify(swarm, verify, nets[:1], log, default_image, labels)
        if problem:
            bad = {"verify": WatchResult("failed", f"verify failed: {problem}")}
    if not bad:
        out = []
        for name in specs:
            await history.finish(store, ids[name], "succeeded")
            out.append(DeployOutcome(ids[name], "succeeded"))
        log(f"stack deployed: {len(out)} services converged")
        # Versions the previous specs use stay, so a rollback to them finds them.
        keep = referenced_ids([*after.values(), *before.values()])
        for gone in await swarm.call(remove_unused, swarm.api, stack, keep):
            log(f"removed {gone}: no longer used")
        return out
    why = "; ".join(f"{n}: {r.outcome}: {r.reason}" for n, r in bad.items())
    log(f"stack deploy failed ({why}); rolling every service of the stack back")
    back = await asyncio.gather(*(revert(swarm, n, before[n], timeout, log) for n in specs))
    out = []
    for name, res in zip(specs, back):
        status = "rolled_back" if res.ok else "failed"
        reason = f"stack rolled back: {why}" if res.ok else f"{why}; rollback of {name} failed: {res.reason}"
        await history.finish(store, ids[name], status, reason)
        out.append(DeployOutcome(ids[name], status, reason))
    return out
