"""Stage actions: how the executor runs the stages that are not jobs of steps.

``build``, ``deploy``, ``rollback`` and ``approval`` stages are carried out by an action passed into
the executor (``run_plan(..., actions={"deploy": ...})``), so the executor itself knows nothing of
Docker, Swarm or the store. The executor presents an action stage like a one-job, one-step stage (job and step both named
after the stage kind), so logs, the store and the page treat it like any other stage.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from runner.backends.base import BuildRef
from runner.plan import Plan, Stage
from runner.values import Value, frozen

__all__ = ["ActionContext", "ActionResult", "StageAction"]


@dataclass
class ActionContext:
    build: BuildRef
    plan: Plan
    log: Callable[[str], None]  # one line of output (masked and capped by the executor)
    status: str  # the build status so far ("success" or "failure"): a rollback stage may read it
    number: int | None = None  # the build number, for deploy history
    commit: str | None = None
    trigger: str = "cli"  # who started it: "cli", "webhook", a user name
    # Where the build's workspace is, as its backend says (``Backend.workspace``): an engine volume
    # (Docker) or a directory on the runner's host. A build stage sends its context from there, so
    # files earlier steps wrote are in the image. Neither set: the checkout, ``build.source``.
    workspace_volume: str | None = None
    workspace_dir: Path | None = None
    # The build's warnings so far (allowed failures, caches not kept): an approval stage stores them
    # while the build waits, so they are shown then and a build resumed by another process keeps them.
    warnings: tuple[str, ...] = ()


@frozen
class ActionResult(Value):
    status: str  # "success", "failure", "timed_out", ...
    reason: str | None = None  # shown in the stage's row and log, e.g. "rolled back: task failed"


class StageAction(Protocol):
    async def __call__(self, stage: Stage, ctx: ActionContext) -> ActionResult:
        """Carry out the stage; raise only for bugs (an exception fails the stage with its text)."""
