"""Stacks: every service of a Compose file deployed together, all or nothing (docker/cli#595).

Each service gets its own deploy row; the rows of one stack deploy share a ``batch`` id. Services
are claimed in name order (so two stack deploys never deadlock), written, and watched at once. When
any of them fails, every service of the stack is put back to its recorded spec before the deploy
(services the deploy created are removed), so the stack never ends half-updated, and every row
says ``rolled_back`` with the failing service named. Services of the stack that the file no longer
lists are left running (``docker stack deploy`` without ``--prune`` does the same).
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Callable

from runner.deploy import history
from runner.deploy.client import Swarm
from runner.deploy.rollback import nothing_recorded
from runner.deploy.service import DeployOutcome, Provenance, ensure_networks, image_id, live_service, revert
from runner.deploy.spec import LABEL_INSTANCE, LABEL_STACK, apply_spec, service_spec, warnings_for, with_deploy_label
from runner.deploy.verify import run_verify
from runner.deploy.watch import WatchResult, watch_service
from runner.errors import DeployError, NoDeployToRollBackTo
from runner.plan import DeploySpec, Verify
from runner.store.db import Store

__all__ = ["deploy_stack", "rollback_stack"]

Log = Callable[[str], None]


async def _claim_all(stack: contextlib.AsyncExitStack, store: Store, target: str, names: list[str], fields: dict, log: Log,
                     per_service: dict[str, dict] | None = None) -> dict[str, int]:
    ids = {}
    for name in sorted(names):
        await stack.enter_async_context(history.service_lock(target, name))
        ids[name] = await history.claim(store, {"service": name, "target": target, **fields,
                                                **(per_service or {}).get(name, {})}, log)
    return ids



async def _apply_and_watch(swarm: Swarm, specs: dict[str, dict], timeout: float, log: Log) -> dict[str, WatchResult]:
    """Write every spec (None: remove the service), then watch them all at once."""
    stale = {}
    for name, spec in specs.items():
        current = await swarm.call(live_service, swarm, name)
        stale[name] = (current or {}).get("UpdateStatus")
        if spec is None:
            if current is not None:
                await swarm.call(swarm.api.remove_service, current["ID"])
            continue
        await swarm.call(apply_spec, swarm.api, spec, current)
    names = [n for n, s in specs.items() if s is not None]
    results = await asyncio.gather(*(watch_service(swarm, n, timeout, log, stale=stale[n]) for n in names))
    return dict(zip(names, results))


async def deploy_stack(swarm: Swarm, store: Store, stack: str, services: dict[str, DeploySpec], external: dict,
                       timeout: float, verify: Verify | None, log: Log, prov: Provenance,
                       default_image: str | None = None) -> list[DeployOutcome]:
    target, batch = swarm.target.name, uuid.uuid4().hex[:12]
    labels = {LABEL_INSTANCE: prov.instance, LABEL_STACK: stack}
    for spec in services.values():
        for warning in warnings_for(spec):
            log(f"{spec.service}: warning: {warning}")
    own = sorted({n for s in services.values() for n in s.networks if not external.get(n)})
    await swarm.call(ensure_networks, swarm, own, labels)
    async with contextlib.AsyncExitStack() as locks:
        per = {n: {"image": s.image} for n, s in services.items()}
        ids = await _claim_all(locks, store, target, list(services),
                               {"kind": "deploy", "stack": stack, "batch": batch, **prov.fields()}, log, per)
        beat = asyncio.create_task(history.heartbeat(store, list(ids.values())))
        try:
            return await _deploy_claimed(swarm, store, services, ids, labels, timeout, verify, log, default_image)
        except BaseException as exc:
            status = "unknown" if isinstance(exc, asyncio.CancelledError) else "failed"
            for deploy_id in ids.values():
                row = await history.get(store, deploy_id)
                if row and row["status"] == "deploying":
                    await asyncio.shield(history.finish(store, deploy_id, status, str(exc)))
            raise
        finally:
            beat.cancel()


async def _deploy_claimed(swarm: Swarm, store: Store, services: dict[str, DeploySpec], ids: dict[str, int],
                          labels: dict[str, str], timeout: float, verify: Verify | None, log: Log,
                          default_image: str | None) -> list[DeployOutcome]:
    before, after = {}, {}
    for name, spec in services.items():
        current = await swarm.call(live_service, swarm, name)
        before[name] = current["Spec"] if current else None
        after[name] = with_deploy_label(service_spec(spec, name, spec.image, labels), ids[name])
        await history.update(store, ids[name], spec_before=before[name], spec_after=after[name],
                             image_id=await swarm.call(image_id, swarm, spec.image))
    log(f"deploying {len(services)} services of stack {next(iter(services.values())).stack}: {', '.join(sorted(services))}")
    results = await _apply_and_watch(swarm, after, timeout, log)
    bad = {n: r for n, r in results.items() if not r.ok}
    if not bad and verify is not None:
        nets = [n for s in services.values() for n in s.networks]
        problem = await run_verify(swarm, verify, nets[:1], log, default_image, labels)
        if problem:
            bad = {"verify": WatchResult("failed", f"verify failed: {problem}")}
    if not bad:
        out = []
        for name in services:
            await history.finish(store, ids[name], "succeeded")
            out.append(DeployOutcome(ids[name], "succeeded"))
        log(f"stack deployed: {len(out)} services converged")
        return out
    why = "; ".join(f"{n}: {r.outcome}: {r.reason}" for n, r in bad.items())
    log(f"stack deploy failed ({why}); rolling every service of the stack back")
    back = await asyncio.gather(*(revert(swarm, n, before[n], timeout, log) for n in services))
    out = []
    for name, res in zip(services, back):
        status = "rolled_back" if res.ok else "failed"
        reason = f"stack rolled back: {why}" if res.ok else f"{why}; rollback of {name} failed: {res.reason}"
        await history.finish(store, ids[name], status, reason)
        out.append(DeployOutcome(ids[name], status, reason))
    return out


async def rollback_stack(swarm: Swarm, store: Store, stack: str, log: Log, prov: Provenance,
                         to: int | None = None, timeout: float = 300.0) -> list[DeployOutcome]:
    """Put every service of the stack back to a recorded stack deploy (default: the last one that
    succeeded before the current one); services it did not have are removed."""
    target = swarm.target.name
    rows = history.list_deploys(store, stack, limit=10_000, target=target)
    rows = [r for r in rows if r["stack"] == stack]
    if not rows:
        raise await nothing_recorded(store, "stack", stack, target)
    batches: dict[str, list] = {}
    for r in rows:
        batches.setdefault(r["batch"], []).append(r)
    if to is not None:
        chosen = next((b for b in batches.values() if any(r["id"] == to for r in b)), None)
        if chosen is None:
            raise NoDeployToRollBackTo(f"deploy #{to} is not part of stack {stack!r}; `conveyor deploys {stack}` lists them")
    else:
        current = batches[rows[0]["batch"]]
        ref = min(r["id"] for r in current)
        if all(r["kind"] == "rollback" and r["status"] == "succeeded" for r in current):
            ref = min(r["rollback_of"] for r in current)
        good = [b for b in batches.values() if max(r["id"] for r in b) < ref
                and all(r["kind"] == "deploy" and r["status"] == "succeeded" for r in b)]
        if not good:
            raise NoDeployToRollBackTo(f"stack {stack!r} has no succeeded deploy before #{ref} to roll back to; "
                                       f"pick one with `conveyor rollback {stack} --stack --to ID`; nothing was changed")
        chosen = max(good, key=lambda b: max(r["id"] for r in b))
    live = await swarm.call(swarm.api.services, filters={"label": f"{LABEL_STACK}={stack}"})
    names = sorted({r["service"] for r in chosen} | {s["Spec"]["Name"] for s in live})
    by_name = {r["service"]: r for r in chosen}
    batch = uuid.uuid4().hex[:12]
    async with contextlib.AsyncExitStack() as locks:
        per = {n: {"rollback_of": by_name[n]["id"] if n in by_name else None,
                   "image": by_name[n]["image"] if n in by_name else None} for n in names}
        ids = await _claim_all(locks, store, target, names,
                               {"kind": "rollback", "stack": stack, "batch": batch, **prov.fields()}, log, per)
        specs = {n: with_deploy_label(by_name[n]["spec_after"], ids[n]) if n in by_name else None for n in names}
        for n in names:
            current = await swarm.call(live_service, swarm, n)
            await history.update(store, ids[n], spec_before=current["Spec"] if current else None, spec_after=specs[n])
        log(f"rolling stack {stack} back to the deploy of #{min(by_name[n]['id'] for n in by_name)}")
        try:
            results = await _apply_and_watch(swarm, specs, timeout, log)
        except DeployError as exc:
            for n in names:
                await history.finish(store, ids[n], "failed", str(exc))
            raise
        out = []
        for n in names:
            res = results.get(n)
            status = "succeeded" if res is None or res.ok else "failed"
            reason = None if res is None or res.ok else res.reason
            await history.finish(store, ids[n], status, reason)
            out.append(DeployOutcome(ids[n], status, reason))
        return out
