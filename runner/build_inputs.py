"""What a build hands the executor besides its plan: the stage actions it may use (build, deploy and
rollback only when it is allowed to change the engine; approval always), where its artifacts,
caches and test reports go, and how long its resources may live.
"""

from __future__ import annotations

import asyncio
import functools
from pathlib import Path

from runner import plugins
from runner.approval import ApprovalAction, Ask
from runner.executor.actions import ActionContext, ActionResult
from runner.plan import Plan, Stage
from runner.settings import Settings
from runner.store import builds as q
from runner.store.db import Store

__all__ = ["stage_actions", "build_files", "lifetime"]

# Stages that change the runner's engine or the swarm. `build` too: an image a fork's pull request
# tags could replace the one that trusted builds (with secrets) or the next deploy run.
_GUARDED_KINDS = ("build", "deploy", "rollback")
_DOING = {"build": "build images", "deploy": "deploy", "rollback": "roll back"}


async def stage_actions(store: Store, settings: Settings, build_id: int, plan: Plan, *, allow_deploy: bool,
                        ask: Ask | None) -> dict:
    """The actions of the plan's non-step stages; a refusal for the guarded kinds unless ``allow_deploy``."""
    actions = {}
    if any(stage.kind in _GUARDED_KINDS for stage in plan.stages):
        # Only then: the deploy side imports docker-py and aiohttp, a second of start-up on a slow
        # disk, and importing must not stall the loop.
        actions = await asyncio.to_thread(plugins.stage_actions, settings, store)
    if not allow_deploy:
        actions.update({kind: _refused(kind) for kind in _GUARDED_KINDS})
    actions.setdefault("approval", ApprovalAction(store, build_id, ask))
    return actions


def _refused(kind: str):
    async def refuse(stage: Stage, ctx: ActionContext) -> ActionResult:
        return ActionResult(
            "failure",
            f"{kind} refused: this build may not {_DOING[kind]} (a pull request from a fork, or deploys are "
            "disabled for this trigger); run it from a trusted branch to deploy",
        )

    return refuse


def build_files(store: Store, settings: Settings, build: q.BuildRow, source: Path, fork: bool, on_reports,
                secrets: dict[str, str]):
    """Where the build's artifacts, caches and test reports go (runner/keep, runner/reports), as the
    executor's ``files``. Reports are shown like logs, so secrets are masked in them as in logs."""
    from runner.keep import Artifacts, BuildFiles, Caches
    from runner.keep.caches import namespace

    if on_reports is None:  # called in a thread by the files hook: parse, then wait for the writer
        on_reports = functools.partial(_ingest_reports, store, tuple(secrets.values()))
    return BuildFiles(Artifacts(store, settings.artifact_limit), Caches(store, settings.cache_limit), build.id,
                      build.uid, namespace(build.repo, fork), source, on_reports)


def lifetime(plan: Plan, settings: Settings) -> float | None:
    """How long the build's resources may have to live, when that may be longer than
    ``Settings.resource_ttl``: the build's own limit plus every approval's timeout (30 days for one
    without), so no sweep of expired resources takes them while it runs or waits."""
    waits = [s.approval.timeout or 30 * 86400 for s in plan.stages if s.kind == "approval" and s.approval]
    if not waits and not plan.timeout:
        return None
    return (plan.timeout or settings.resource_ttl) + sum(waits)


def _ingest_reports(store: Store, secrets: tuple[str, ...], build_id, job, files):
    from runner.reports import ingest_reports  # imported by the first job with reports, not by every build

    return ingest_reports(store, build_id, job, files, secrets)
