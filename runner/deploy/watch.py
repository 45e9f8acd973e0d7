"""The convergence watcher: after a service write, wait until it converged, rolled back or timed out.

Swarm's ``UpdateStatus`` alone is not enough (it is absent after a create, and `completed` says
nothing about tasks that crash later), and task states alone cannot tell a rollback from an
update. So both are read, about four times a second:

- ``rollback_started``: Swarm is rolling back; keep watching until ``rollback_completed`` and
  report ``rolled_back`` (a failure, never a success: docker/cli#6752).
- ``paused`` / ``rollback_paused``: report ``paused`` (a failure; the service is left for a human).
- otherwise converged when every task that should run runs the service's current spec, their number
  is the replica count, and no task of an older spec is still meant to run.
- a service whose tasks of the current spec keep failing while none runs (a first deploy has no
  previous spec for Swarm to roll back to) is ``failed`` after ``FAILED_TASKS`` failures.
- a task pending for ``PENDING_GRACE`` seconds because its host-mode port is taken on every node
  (also during Swarm's own rollback, which can deadlock so on one node): ``failed``, saying why,
  instead of waiting for the timeout; under ``failure_action: rollback`` the deploy then re-applies
  the spec from before, which frees it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

from runner.deploy.spec import task_key
from runner.engine import Engine
from runner.engine import errors as derrors

__all__ = ["WatchResult", "watch_service", "POLL"]

POLL = 0.25
FAILED_TASKS = 3
PENDING_GRACE = 15.0
_FAILED_STATES = {"failed", "rejected", "orphaned"}


@dataclass(frozen=True)
class WatchResult:
    outcome: str  # "converged", "rolled_back", "paused", "failed", "timeout", "gone"
    reason: str | None = None
    version: int | None = None
    stuck: bool = False  # failed because a task has waited PENDING_GRACE seconds for a host port

    @property
    def ok(self) -> bool:
        return self.outcome == "converged"


def _snapshot(swarm: Engine, name: str) -> tuple[dict | None, list[dict]]:
    try:
        service = swarm.api.inspect_service(name)
    except derrors.NotFound:
        return None, []
    return service, swarm.api.tasks(filters={"service": service["ID"]})


def _task_error(tasks: list[dict]) -> str | None:
    """The newest task error worth showing (the reason a health check or start failed)."""
    errs = [t for t in tasks if t["Status"].get("Err")]
    if not errs:
        return None
    t = max(errs, key=lambda t: t["Status"].get("Timestamp", ""))
    return t["Status"]["Err"]


def assess(service: dict, tasks: list[dict], started: float, since: float,
           stale: dict | None = None) -> WatchResult | None:
    """One look at the service and its tasks: a final result, or None to keep waiting. ``stale`` is
    the UpdateStatus from before our write: a write that changes no task leaves it in place, and an
    old ``rollback_completed`` must not be read as this deploy's outcome."""
    spec = service["Spec"]
    version = service["Version"]["Index"]
    status = service.get("UpdateStatus") or {}
    if stale and status.get("StartedAt") == stale.get("StartedAt") and status.get("State") == stale.get("State"):
        status = {}
    state, message = status.get("State"), status.get("Message")
    err = _task_error(tasks)
    detail = f"{message}" + (f" (task error: {err})" if err else "") if message else (err or "")
    if state == "rollback_completed":
        return WatchResult("rolled_back", f"Swarm rolled the update back: {detail}", version)
    if state in ("paused", "rollback_paused"):
        return WatchResult("paused", f"update {state.replace('_', ' ')}: {detail}", version)
    if state in ("updating", "rollback_started"):
        return None
    current = task_key(spec["TaskTemplate"])
    desired = [t for t in tasks if t["DesiredState"] == "running"]
    mode = spec.get("Mode") or {}
    # A global service runs one task per eligible node: as many as Swarm means to run.
    replicas = (len(desired) or None) if "Global" in mode else mode.get("Replicated", {}).get("Replicas")
    new = [t for t in desired if task_key(t["Spec"]) == current]
    running_new = [t for t in new if t["Status"]["State"] == "running"]
    # Old tasks already told to stop may still drain for their stop grace period; they do not
    # hold convergence back (`docker service update` does not wait for them either).
    old_running = [t for t in desired if task_key(t["Spec"]) != current and t["Status"]["State"] == "running"]
    if replicas is not None and len(running_new) == replicas == len(desired) and not old_running:
        return WatchResult("converged", None, version)
    failed_new = [t for t in tasks if task_key(t["Spec"]) == current and t["Status"]["State"] in _FAILED_STATES
                  and _after(t, since)]
    if len(failed_new) >= FAILED_TASKS and not running_new:
        return WatchResult("failed", f"{len(failed_new)} tasks of the new spec failed and none runs: {err}", version)
    return None


def stuck_task(tasks: list[dict], pending_since: dict[str, float], now: float) -> str | None:
    """A task that has been pending PENDING_GRACE seconds for a host-mode port (updated
    ``pending_since``). Swarm can deadlock so on one node: a restarted task of the failed spec holds
    the port its own rollback needs. None when no task is stuck."""
    # Whatever its desired state: in the deadlock seen here the pending task is already meant to shut
    # down, yet stays pending, and the rollback's new task waits "ready" behind it forever.
    stuck = [t for t in tasks if t["Status"]["State"] == "pending" and "port" in (t["Status"].get("Err") or "")]
    for gone in set(pending_since) - {t["ID"] for t in stuck}:
        del pending_since[gone]
    for t in stuck:
        since = pending_since.setdefault(t["ID"], now)
        if now - since > PENDING_GRACE:
            return t["Status"]["Err"]
    return None


def _after(task: dict, since: float) -> bool:
    """Whether the task was created after ``since`` (unix seconds); the engine's RFC 3339 nanosecond
    timestamps are cut to microseconds for parsing."""
    from datetime import datetime

    stamp = task.get("CreatedAt", "")
    try:
        head, _, frac = stamp.rstrip("Z").partition(".")
        value = datetime.fromisoformat(head + "+00:00").timestamp() + (float("0." + frac[:6]) if frac else 0.0)
    except ValueError:
        return True
    return value >= since - 1.0


def _rollback_cause(service: dict, tasks: list[dict]) -> str:
    """Swarm's reason for rolling back, with the state and error of the task it names."""
    message = (service.get("UpdateStatus") or {}).get("Message") or "update failed"
    for t in tasks:
        if t["ID"] in message:
            st = t["Status"]
            detail = st.get("Err") or st.get("Message") or ""
            return f"{message} (that task ended {st['State']}" + (f": {detail})" if detail else ")")
    return message


def _rolled_back_task(service: dict, tasks: list[dict], since: float) -> str | None:
    """After the fact: how the newest task of the spec Swarm rolled away from ended."""
    current = task_key(service["Spec"]["TaskTemplate"])
    gone = [t for t in tasks if task_key(t["Spec"]) != current and _after(t, since)]
    if not gone:
        return None
    t = max(gone, key=lambda t: t.get("CreatedAt", ""))
    detail = t["Status"].get("Err") or t["Status"].get("Message") or ""
    return f"update failed (a task of the new spec ended {t['Status']['State']}" + (f": {detail})" if detail else ")")


def _nodes_down(swarm: Engine) -> list[str]:
    """Blocking: hostnames of the swarm's nodes that are not ready (a dead engine, a lost host), so a
    deploy that cannot be placed says why; on a multi-node swarm that is the usual cause."""
    return sorted(n["Description"]["Hostname"] for n in swarm.api.nodes()
                  if n["Status"]["State"] != "ready" and n["Spec"].get("Availability") == "active")


def _describe(tasks: list[dict]) -> dict[str, str]:
    return {t["ID"]: f"{t['Status']['State']}" + (f" ({t['Status']['Err']})" if t["Status"].get("Err") else "")
            for t in tasks}


async def watch_service(swarm: Engine, name: str, timeout: float, log: Callable[[str], None],
                        since: float | None = None, stale: dict | None = None) -> WatchResult:
    """Poll ``name`` until converged, rolled back, paused, failed, or ``timeout`` seconds passed;
    log each task state change and each UpdateStatus change once."""
    started = time.monotonic()
    since = time.time() if since is None else since
    seen: dict[str, str] = {}
    last_state = why = None
    pending_since: dict[str, float] = {}
    while True:
        service, tasks = await swarm.call(_snapshot, swarm, name)
        if service is None:
            return WatchResult("gone", f"service {name} was removed while being watched")
        for tid, text in _describe(tasks).items():
            if seen.get(tid) != text:
                t = next(t for t in tasks if t["ID"] == tid)
                slot = t.get("Slot", t.get("NodeID", "")[:6])
                log(f"{name}.{slot} task {tid[:10]}: {text}")
                seen[tid] = text
        state = (service.get("UpdateStatus") or {}).get("State")
        if stale and (service.get("UpdateStatus") or {}).get("StartedAt") == stale.get("StartedAt"):
            state = None
        if state != last_state and state:
            log(f"{name}: update {state}: {(service.get('UpdateStatus') or {}).get('Message', '')}")
            last_state = state
        if state == "rollback_started" and why is None:
            why = _rollback_cause(service, tasks)
        result = assess(service, tasks, started, since, stale)
        blocked = stuck_task(tasks, pending_since, time.monotonic()) if result is None else None
        if blocked:
            down = await swarm.call(_nodes_down, swarm)
            advice = (f"node(s) {', '.join(down)} down: the swarm lacks a node for this task; bring them back "
                      "or lower the replicas" if down else "on a single node use order: stop-first with host-mode ports")
            result = WatchResult("failed", f"a task cannot be placed for {PENDING_GRACE:g}s: {blocked} (update "
                                           f"state: {state or 'none'}); {advice}", service["Version"]["Index"],
                                 stuck=True)
        if result is not None:
            if result.outcome == "rolled_back" and not why:  # rollback_started fell between two looks
                why = _rolled_back_task(service, tasks, since)
            if result.outcome == "rolled_back" and why:
                result = WatchResult("rolled_back", f"Swarm rolled the update back: {why}", result.version)
            return result
        if time.monotonic() - started > timeout:
            down = await swarm.call(_nodes_down, swarm)
            return WatchResult("timeout", f"not converged after {timeout:g}s (update state: {state or 'none'})"
                               + (f"; node(s) {', '.join(down)} down" if down else ""), service["Version"]["Index"])
        await asyncio.sleep(POLL)
