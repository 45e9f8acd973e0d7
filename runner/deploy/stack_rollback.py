"""Stack rollback: every service of a stack back to a recorded stack deploy, together.

Default: the last stack deploy that succeeded before the current one (or the one containing
``--to ID``); services it did not have are removed. The secrets and configs the recorded specs
reference must still exist: the versions of the deploy before the current one are kept for this
(compose_objects); an older one whose versions were removed is refused before anything changes.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable

from runner.deploy import history
from runner.deploy.compose_objects import missing_objects
from runner.deploy.registry import logged_in
from runner.deploy.rollback import nothing_recorded
from runner.deploy.service import DeployOutcome, Provenance, live_service
from runner.deploy.spec import LABEL_STACK, with_deploy_label
from runner.deploy.stack_apply import apply_and_watch, claim_all
from runner.engine import Engine
from runner.errors import DeployError, NoDeployToRollBackTo
from runner.store.db import Store

__all__ = ["rollback_stack"]

Log = Callable[[str], None]


async def rollback_stack(swarm: Engine, store: Store, stack: str, log: Log, prov: Provenance,
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
    gone = await swarm.call(missing_objects, swarm.api, [r["spec_after"] for r in chosen])
    if gone:
        raise NoDeployToRollBackTo(f"the stack deploy of #{min(r['id'] for r in chosen)} used {', '.join(gone)}, "
                                   "which no longer exist (Conveyor keeps the versions of the deploy before the "
                                   "current one); deploy that version of the Compose file again; nothing was changed")
    live = await swarm.call(swarm.api.services, filters={"label": f"{LABEL_STACK}={stack}"})
    names = sorted({r["service"] for r in chosen} | {s["Spec"]["Name"] for s in live})
    by_name = {r["service"]: r for r in chosen}
    batch = uuid.uuid4().hex[:12]
    async with contextlib.AsyncExitStack() as locks:
        # A rollback keeps the digest and environment of what it restores (docs/deploy.md).
        per = {n: {"rollback_of": by_name[n]["id"], "image": by_name[n]["image"], "digest": by_name[n]["digest"],
                   "environment": by_name[n]["environment"]} if n in by_name else {} for n in names}
        ids = await claim_all(locks, store, target, names,
                               {"kind": "rollback", "stack": stack, "batch": batch, **prov.restoring(chosen[0])},
                               log, per)
        specs = {n: with_deploy_label(by_name[n]["spec_after"], ids[n]) if n in by_name else None for n in names}
        for n in names:
            current = await swarm.call(live_service, swarm, n)
            await history.update(store, ids[n], spec_before=current["Spec"] if current else None, spec_after=specs[n])
        log(f"rolling stack {stack} back to the deploy of #{min(by_name[n]['id'] for n in by_name)}")
        await swarm.call(logged_in, swarm.client, swarm.target.registry)  # nodes may pull it again
        try:
            results = await apply_and_watch(swarm, specs, timeout, log)
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
