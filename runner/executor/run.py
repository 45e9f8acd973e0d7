"""Run a plan: its stages as one graph of jobs (``dag.py``: ``needs`` and stage order), then the
post blocks, teardown always.

``run_plan`` knows no Docker, SQL or HTTP: it drives a ``Backend``, calls stage actions for
build/deploy/rollback stages, and tells an ``EventSink`` everything, BuildStarted first and
BuildFinished last, whatever happens (a failed setup, a timeout, a cancellation, a bug).

Statuses (docs/pipeline.md): a stage that fails makes later stages with the default ``when`` skipped;
``when: {status: [failure]}`` stages run only after a failure, ``always`` runs anyway; a job with
``needs`` follows only the jobs it names. An allowed failure leaves the build ``success`` with
warnings (``BuildFinished.warnings``). The build
ends ``success``, ``failure``, ``timed_out`` (a step, job or the build ran out of time) or
``cancelled``. Post blocks run after the stages: ``always``, then ``success`` or ``failure`` by the
build's status; a failing post job fails the build. After a cancellation or a build timeout the
post blocks do not run: the build is out of time, and Ctrl-C must clean up within seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Mapping, Sequence

from runner.backends.base import Backend, BuildRef
from runner.executor.actions import ActionContext, StageAction
from runner.executor.dag import run_graph
from runner.executor.files import JobFiles, NoFiles
from runner.executor.events import (BuildFinished, BuildStarted, EventSink, JobFinished, JobStarted,
                                    StageFinished, StageStarted, StepFinished, StepOutput, StepStarted)
from runner.executor.job import BuildContext, describe_error, run_job, uncancelled, worst_status
from runner.plan import Job, Plan, Stage

__all__ = ["run_plan"]

log = logging.getLogger("conveyor.executor")


async def run_plan(plan: Plan, build: BuildRef, backend: Backend, sink: EventSink, *,
                   actions: Mapping[str, StageAction] = {},  # noqa: B006 - read only
                   secrets: Mapping[str, str] = {},  # noqa: B006 - read only
                   concurrency: int | None = None,
                   log_cap: int = 4 * 1024 * 1024,
                   cancel: asyncio.Event | None = None,
                   action_context: dict | None = None,
                   limiter: asyncio.Semaphore | None = None,
                   finished: Mapping[str, str] = {},  # noqa: B006 - read only
                   files: JobFiles | None = None,
                   warnings: Sequence[str] = ()) -> str:
    """Run ``plan`` as ``build`` on ``backend``; return the build's final status.

    ``secrets`` reach every step as env vars and are masked in all output. ``limiter`` (shared
    across builds by a server) or else ``concurrency`` (default: CPU count) caps jobs at once.
    Setting ``cancel`` stops everything (status ``cancelled``); cancelling the task running this
    does the same and then re-raises ``CancelledError``. ``finished`` (stage name -> status) resumes
    a build: those stages ran before (up to an approval) and are not run again, but their statuses
    count as if they had just run, and ``warnings`` are the ones those stages gave (they start the
    build's list). ``files`` keeps the jobs' artifacts, caches and reports (runner/executor/files.py);
    None keeps nothing.
    """
    limiter = limiter or asyncio.Semaphore(concurrency or os.cpu_count() or 2)
    ctx = BuildContext(build, backend, sink, dict(secrets), log_cap, limiter, files=files or NoFiles(),
                       warnings=list(warnings))
    ctx.emit(BuildStarted)
    status, reason, external_cancel = "failure", None, False
    try:
        try:
            await backend.available()
            await backend.setup(build)
        except Exception as exc:  # noqa: BLE001 - reported as the build's failure
            status, reason = "failure", describe_error(exc)
        else:
            runner = _PlanRun(plan, ctx, actions, action_context or {}, finished)
            body = asyncio.ensure_future(runner.run())
            watcher = asyncio.ensure_future(_watch(ctx, body, cancel, plan.timeout))
            try:
                status, reason = await body
            except asyncio.CancelledError:
                if not body.cancelled() or asyncio.current_task().cancelling():
                    external_cancel = True
                    ctx.stop_status = ctx.stop_status or "cancelled"
                    with contextlib.suppress(asyncio.CancelledError):
                        await uncancelled(_wait(body))
                status, reason = ctx.stopped()
            finally:
                watcher.cancel()
    except asyncio.CancelledError:
        external_cancel = True
        status, reason = "cancelled", "cancelled"
    except Exception as exc:  # noqa: BLE001 - a bug; the build still gets its last event
        log.exception("the executor failed")
        status, reason = "failure", f"internal error: {describe_error(exc)}"
    finally:
        try:
            await uncancelled(backend.teardown(build))
        except asyncio.CancelledError:
            external_cancel = True
        except Exception as exc:  # noqa: BLE001
            log.warning("teardown of build %s failed: %s", build.id, exc)
            reason = f"{reason or status}; teardown failed: {describe_error(exc)}"
        ctx.emit(BuildFinished, status=status, reason=reason, warnings=tuple(ctx.warnings))
    if external_cancel:
        raise asyncio.CancelledError
    return status


async def _wait(task: asyncio.Future) -> None:
    with contextlib.suppress(BaseException):
        await asyncio.wait([task])


async def _watch(ctx: BuildContext, body: asyncio.Future, cancel: asyncio.Event | None,
                 timeout: float | None) -> None:
    """Stop the build's body when ``cancel`` is set or the build's timeout passes."""
    if cancel is None and timeout is None:
        return
    if cancel is None:
        await asyncio.sleep(timeout)
    else:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(cancel.wait(), timeout)
    if cancel is not None and cancel.is_set():
        ctx.stop_status, ctx.stop_reason = "cancelled", "cancelled"
    else:
        ctx.stop_status, ctx.stop_reason = "timed_out", f"build timed out after {timeout:g}s"
    body.cancel()


class _PlanRun:
    def __init__(self, plan: Plan, ctx: BuildContext, actions: Mapping[str, StageAction], extra: dict,
                 finished: Mapping[str, str]) -> None:
        self.plan, self.ctx, self.actions, self.extra = plan, ctx, actions, extra
        self.finished = finished

    async def run(self) -> tuple[str, str | None]:
        status, reason = await run_graph(self.plan, self.ctx, self.run_action, self.finished)
        return await self.run_post(status, reason)

    async def run_post(self, status: str, reason: str | None) -> tuple[str, str | None]:
        post = self.plan.post
        blocks: list[tuple[str, Sequence[Job]]] = [("post:always", post.always)]
        for name, jobs in blocks + [("post:success" if status == "success" else "post:failure",
                                     post.success if status == "success" else post.failure)]:
            if not jobs:
                continue
            post_status, post_reason = await self.run_jobs(name, jobs)
            if post_status != "success" and status == "success":
                status, reason = "failure", f"{name}: {post_reason or 'failed'}"
        return status, reason

    async def run_jobs(self, stage: str, jobs: Sequence[Job]) -> tuple[str, str | None]:
        """The jobs of a post block, concurrently; the block fails with its first failing job."""
        ctx = self.ctx
        ctx.emit(StageStarted, stage=stage)
        try:
            async with asyncio.TaskGroup() as group:
                tasks = [group.create_task(run_job(ctx, stage, job)) for job in jobs]
        except asyncio.CancelledError:
            ctx.emit(StageFinished, stage=stage, status=ctx.stopped()[0], reason=ctx.stopped()[1])
            raise
        results = [(job, *task.result()) for job, task in zip(jobs, tasks)]
        for job, _st, why, allowed in results:
            if allowed:
                ctx.warnings.append(f"job {job.name!r} failed (allowed): {why}")
        bad = [(job, st, why) for job, st, why, allowed in results if st != "success" and not allowed]
        if not bad:
            status, reason = "success", None
        else:
            status = worst_status([st for _, st, _ in bad])
            job, _, why = bad[0]
            reason = f"job {job.name!r}: {why}" if why else f"job {job.name!r} failed"
        ctx.emit(StageFinished, stage=stage, status=status, reason=reason)
        return status, reason

    async def run_action(self, stage: Stage, so_far: str) -> tuple[str, str | None]:
        """A build/deploy/rollback stage, shown as one job and one step named after its kind."""
        ctx, kind = self.ctx, stage.kind
        names = dict(stage=stage.name, job=kind)
        out = ctx.new_log()

        def emit_lines(lines: list[str]) -> None:
            if lines:
                ctx.emit(StepOutput, step=0, lines=tuple(lines), **names)

        ctx.emit(StageStarted, stage=stage.name)
        ctx.emit(JobStarted, **names)
        ctx.emit(StepStarted, step=0, name=kind, **names)
        action = self.actions.get(kind)
        try:
            if action is None:
                status, reason = "failure", f"this runner has no {kind} support"
            else:
                extra = dict(self.extra)
                if "workspace_volume" not in extra and "workspace_dir" not in extra:
                    await ctx.backend.workspace_ready(ctx.build)
                    workspace = ctx.backend.workspace(ctx.build)  # its one owner names it
                    extra.update(workspace_volume=workspace.volume, workspace_dir=workspace.path)
                if kind == "approval":  # nothing of the build runs while it waits
                    await ctx.backend.idle(ctx.build)
                action_ctx = ActionContext(build=ctx.build, plan=self.plan, status=so_far,
                                           log=lambda line: emit_lines(out.feed(f"{line}\n")),
                                           warnings=tuple(ctx.warnings), **extra)
                result = await action(stage, action_ctx)
                status, reason = result.status, result.reason
        except asyncio.CancelledError:
            status, reason = ctx.stopped()
            raise
        except Exception as exc:  # noqa: BLE001 - an action's bug fails its stage, with the text
            log.exception("%s action failed", kind)
            status, reason = "failure", f"{kind} failed: {describe_error(exc)}"
        finally:
            emit_lines(out.close())
            ctx.emit(StepFinished, step=0, status=status, reason=reason, **names)
            ctx.emit(JobFinished, status=status, reason=reason, **names)
            ctx.emit(StageFinished, stage=stage.name, status=status, reason=reason)
        return status, reason
