"""What the rest of Conveyor calls on the deploy side: ``stage_actions(settings, store)`` gives the
executor its ``build``, ``deploy`` and ``rollback`` actions; ``reconcile_in_flight(store, settings)``
settles deploys a dead runner left in flight; ``provenance(ctx)`` says which build a deploy came from.
Re-exported by the package (runner/deploy/__init__.py)."""

from __future__ import annotations

from collections.abc import Callable

from runner.deploy import history
from runner.deploy.service import Provenance, live_service
from runner.engine import DEFAULT_TARGET, open_target
from runner.engine import errors as derrors
from runner.errors import ConveyorError, DeployError
from runner.executor.actions import ActionContext, ActionResult, StageAction
from runner.plan import Stage
from runner.settings import Settings
from runner.store.db import Store

__all__ = ["stage_actions", "reconcile_in_flight", "provenance"]


def provenance(ctx: ActionContext) -> Provenance:
    labels = ctx.build.labels
    return Provenance(repo=labels.get("io.conveyor.repo"), build_uid=ctx.build.id, build_number=ctx.number,
                      commit_sha=ctx.commit, trigger=ctx.trigger, instance=ctx.build.instance)


def _guard(fn: Callable) -> StageAction:
    """Turn the errors a user can act on into a failed stage with the message; bugs still raise."""

    async def action(stage: Stage, ctx: ActionContext) -> ActionResult:
        try:
            return await fn(stage, ctx)
        except ConveyorError as exc:
            ctx.log(f"error: {exc}")
            return ActionResult("failure", str(exc))

    return action


def stage_actions(settings: Settings, store: Store) -> dict[str, StageAction]:
    from runner.deploy.actions import build_action, deploy_action, rollback_action

    return {"build": _guard(lambda s, c: build_action(settings, s, c)),
            "deploy": _guard(lambda s, c: deploy_action(settings, store, s, c)),
            "rollback": _guard(lambda s, c: rollback_action(settings, store, s, c))}


async def reconcile_in_flight(store: Store, settings: Settings) -> list[tuple[int, str]]:
    """Mark deploys a dead runner left ``deploying`` as ``unknown`` and say in each row's reason what
    the live service runs now. Never re-runs anything. Returns (deploy id, reason) pairs."""
    out = []
    for row in await history.mark_dead_in_flight(store):
        try:
            swarm = await open_target(settings, None if row["target"] == DEFAULT_TARGET else row["target"])
        except (DeployError, derrors.DockerException) as exc:
            live = f"the target could not be asked ({exc})"
        else:
            try:
                live = _compare(row, await swarm.call(live_service, swarm, row["service"]))
            finally:
                swarm.close()
        reason = f"the runner died while deploying; not re-run; {live}"
        await history.update(store, row["id"], reason=reason)
        out.append((row["id"], reason))
    return out


def _compare(row: history.Deploy, service: dict | None) -> str:
    from runner.deploy.spec import LABEL_DEPLOY, task_key

    if service is None:
        return "the service does not exist now"
    state = (service.get("UpdateStatus") or {}).get("State") or "none"
    live = service["Spec"]
    if (live.get("Labels") or {}).get(LABEL_DEPLOY) == str(row["id"]):
        return f"the live service runs this deploy's spec (update state: {state})"
    if row["spec_before"] and task_key(live["TaskTemplate"]) == task_key(row["spec_before"]["TaskTemplate"]):
        return f"the live service runs the spec from before this deploy (update state: {state})"
    return (f"the live service runs the spec of deploy #{(live.get('Labels') or {}).get(LABEL_DEPLOY, '?')} "
            f"(update state: {state})")
