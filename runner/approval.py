"""The approval stage: the build waits for a person, holding no container, until someone decides or
the stage's timeout passes.

``ApprovalAction`` is the stage action of ``approval`` stages (the executor sees it like the build
and deploy actions). It writes the question to the store (``runner.store.approvals``), which marks
the build ``waiting``, and then reads the answer back from the store, so a decision may come from
anywhere that writes there: the API and the page of a server, `conveyor approve` in another shell
(even while the server is down), or the terminal of the `conveyor run` that waits (``ask``).

Nothing runs while a build waits: the jobs before the approval have stopped and removed their
containers, and the stage itself is a few store reads a second. A server restarted meanwhile resumes
the build (``runner.build.run_build(..., resume=True)``); the action then finds its question, with the original
deadline, or the answer given while the server was down.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from runner.executor.actions import ActionContext, ActionResult
from runner.plan import ApprovalSpec, Stage
from runner.store import approvals
from runner.store.approvals import Approval
from runner.store.db import Store
from runner.values import Value, frozen

__all__ = ["Answer", "Ask", "ApprovalAction", "NOT_IN_TIME"]

NOT_IN_TIME = "not approved in time"


@frozen
class Answer(Value):
    """A decision made where the build runs (`conveyor run`): approved, rejected or not_asked."""

    decision: str
    by: str
    comment: str | None = None


# Called once when the stage starts waiting; None: nothing to say here, wait for the store.
Ask = Callable[[Stage, Approval], Awaitable[Answer | None]]


class ApprovalAction:
    def __init__(self, store: Store, build_id: int, ask: Ask | None = None, poll: float = 0.5) -> None:
        self.store, self.build_id, self.ask, self.poll = store, build_id, ask, poll

    async def __call__(self, stage: Stage, ctx: ActionContext) -> ActionResult:
        spec = stage.approval or ApprovalSpec()
        approval = await self.store.awrite(lambda c: approvals.ask(
            c, self.build_id, stage.name, spec.message, spec.approvers, time.time(), spec.timeout, ctx.warnings))
        if approval.pending:
            _announce(approval, ctx)
        approval = await self._wait(stage, approval)
        await self.store.awrite(lambda c: approvals.resume_running(c, self.build_id))
        return _result(approval, ctx)

    async def _wait(self, stage: Stage, approval: Approval) -> Approval:
        """Until the row has a decision: a person's, the local answer, or the timeout's."""
        local = asyncio.ensure_future(self.ask(stage, approval)) if self.ask and approval.pending else None
        try:
            while approval.pending:
                if local is not None and local.done():
                    answer, local = local.result(), None
                    if answer is not None:
                        approval = await self._settle(stage, answer.decision, answer.by, answer.comment)
                        continue
                left = None if approval.deadline is None else approval.deadline - time.time()
                if left is not None and left <= 0:
                    approval = await self._settle(stage, "timed_out", "conveyor", None)
                    continue
                pause = self.poll if left is None else min(self.poll, left)
                if local is not None:
                    await asyncio.wait([local], timeout=pause)
                else:
                    await asyncio.sleep(pause)
                approval = await self.store.aread(lambda c: approvals.get(c, self.build_id, stage.name))
        finally:
            if local is not None:
                local.cancel()
        return approval

    async def _settle(self, stage: Stage, decision: str, by: str, comment: str | None) -> Approval:
        # The first answer wins: a person may have decided a moment before the timeout or the terminal.
        return await self.store.awrite(lambda c: approvals.settle(
            c, self.build_id, stage.name, decision, by, comment, time.time()))


def _announce(approval: Approval, ctx: ActionContext) -> None:
    ctx.log(f"waiting for approval: {approval.message or 'continue the build?'}")
    if approval.approvers:
        ctx.log(f"approvers: {', '.join(approval.approvers)}")
    if approval.deadline is not None:
        ctx.log(f"fails if not approved by {time.strftime('%Y-%m-%d %H:%M:%S %Z', time.localtime(approval.deadline))}")
    ctx.log(f"approve or reject on the build page, with POST /api/builds/{approval.build_id}/approvals, "
            f"or with `conveyor approve id:{approval.build_id} [--reject]`")


def _result(approval: Approval, ctx: ActionContext) -> ActionResult:
    said = f": {approval.comment}" if approval.comment else ""
    if approval.decision == "approved":
        ctx.log(f"approved by {approval.decided_by}{said}")
        return ActionResult("success")
    if approval.decision == "rejected":
        reason = f"rejected by {approval.decided_by}{said}"
    elif approval.decision == "timed_out":
        reason = NOT_IN_TIME
    else:  # not_asked: the comment says what to do instead
        reason = approval.comment or "not approved"
    ctx.log(reason)
    return ActionResult("failure", reason)
