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
from runner.deploy.compose_objects import referenced_ids, remove_unused
from runner.deploy.service import DeployOutcome, Provenance, image_id, live_service, revert
from runner.deploy.spec import LABEL_INSTANCE, LABEL_STACK, with_deploy_label
from runner.deploy.stack_apply import apply_and_watch, claim_all, prepare_stack
from runner.deploy.stack_rollback import rollback_stack
from runner.deploy.verify import run_verify
from runner.deploy.watch import WatchResult
from runner.engine import Engine
from runner.plan import Verify
from runner.store.db import Store

__all__ = ["deploy_stack", "rollback_stack"]

Log = Callable[[str], None]


async def deploy_stack(swarm: Engine, store: Store, compose: ComposeStack, timeout: float, verify: Verify | None,
                       log: Log, prov: Provenance, default_image: str | None = None) -> list[DeployOutcome]:
    target, batch, stack = swarm.target.name, uuid.uuid4().hex[:12], compose.stack
    labels = {LABEL_INSTANCE: prov.instance, LABEL_STACK: stack}
    for warning in compose.warnings:
        log(f"warning: {warning}")
    specs = await swarm.call(prepare_stack, swarm, compose, labels)
    async with contextlib.AsyncExitStack() as locks:
        per = {n: {"image": s["TaskTemplate"]["ContainerSpec"]["Image"]} for n, s in specs.items()}
        ids = await claim_all(locks, store, target, list(specs),
                              {"kind": "deploy", "stack": stack, "batch": batch, **prov.fields()}, log, per)
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
        image = await swarm.call(image_id, swarm, spec["TaskTemplate"]["ContainerSpec"]["Image"])
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
