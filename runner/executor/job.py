"""One job: start its place on the backend, run its steps in order (retries, timeouts), stop it.

A job never raises for a failure of its own (a step's exit code, a backend error, a timeout): it
reports it in events and returns its status, so sibling jobs keep running. Only cancellation (Ctrl-C,
a build timeout) propagates, after the job has emitted its last events and its place is stopped.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

from runner.backends.base import Backend, BuildRef, JobHandle, StepExit
# One copy of the cleanup that a second cancel cannot interrupt, shared with the backends.
from runner.backends.pump import uncancelled
from runner.executor.files import JobFiles, Kept, NoFiles
from runner.executor.events import (EventSink, JobFinished, JobStarted, StepFinished, StepOutput,
                                    StepStarted)
from runner.executor.logs import SecretMasker, StepLog
from runner.plan import Job, Step

__all__ = ["BuildContext", "describe_error", "failure_allowed", "run_job", "uncancelled", "worst_status"]

log = logging.getLogger("conveyor.executor")


@dataclass
class BuildContext:
    """What every job of one build shares."""

    build: BuildRef
    backend: Backend
    sink: EventSink
    secrets: Mapping[str, str]
    log_cap: int
    limiter: asyncio.Semaphore
    masker: SecretMasker = field(init=False)
    stop_status: str | None = None  # "cancelled" or "timed_out" once the whole build is being stopped
    stop_reason: str | None = None
    job_stops: dict[str, tuple[str, str]] = field(default_factory=dict)  # one job stopped (a matrix's fail_fast)
    warnings: list[str] = field(default_factory=list)  # allowed failures: the build passes "with warnings"
    files: JobFiles = field(default_factory=NoFiles)  # artifacts, caches, reports (runner/executor/files.py)

    def __post_init__(self) -> None:
        self.masker = SecretMasker(self.secrets.values())

    def emit(self, event_type: type, **fields) -> None:
        if fields.get("reason") and self.masker:  # an action's or engine's message may quote a secret
            fields["reason"] = self.masker.mask(fields["reason"])
        self.sink.emit(event_type(time=time.time(), **fields))

    def stopped(self, job: str | None = None) -> tuple[str, str]:
        """Why a job (or the build) is being stopped: the build's reason first, else the job's own."""
        if self.stop_status is None and job in self.job_stops:
            return self.job_stops[job]
        return self.stop_status or "cancelled", self.stop_reason or "cancelled"

    def new_log(self) -> StepLog:
        return StepLog(self.masker, self.log_cap)


def failure_allowed(job: Job, status: str, exit_code: int | None) -> bool:
    """``allow_failure``: any failure or timeout, or (with ``exit_codes``) a step exiting with one of them."""
    rule = job.allow_failure
    if rule is None or status not in ("failure", "timed_out"):
        return False
    if not rule.exit_codes:
        return True
    return status == "failure" and exit_code in rule.exit_codes


def worst_status(statuses: list[str]) -> str:
    """The status of a stage (or post block) from its jobs that did not pass: a timeout wins, then a
    failure; only when every one of them was interrupted (a node died) is the stage ``interrupted``,
    since then nothing is known against the code."""
    if "timed_out" in statuses:
        return "timed_out"
    if statuses and all(s == "interrupted" for s in statuses):
        return "interrupted"
    return "failure"


async def run_job(ctx: BuildContext, stage: str, job: Job) -> tuple[str, str | None, bool]:
    """Run one job under the build's limiter; return its (status, reason, allowed)."""
    try:
        await ctx.limiter.acquire()
    except asyncio.CancelledError:
        if ctx.stop_status is None and job.name in ctx.job_stops:  # a sibling's fail_fast, before it started
            status, reason = ctx.stopped(job.name)
            ctx.emit(JobFinished, stage=stage, job=job.name, status=status, reason=reason)
        raise
    try:
        return await _run_job(ctx, stage, job)
    finally:
        ctx.limiter.release()


async def _run_job(ctx: BuildContext, stage: str, job: Job) -> tuple[str, str | None, bool]:
    ctx.emit(JobStarted, stage=stage, job=job.name)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + job.timeout if job.timeout else None
    handle: JobHandle | None = None
    status, reason, code = "success", None, None
    try:
        try:
            async with asyncio.timeout_at(deadline):
                handle = await ctx.backend.start_job(ctx.build, job)
        except TimeoutError:
            status, reason = "timed_out", f"job timed out after {job.timeout:g}s while starting"
        except Exception as exc:  # noqa: BLE001 - a backend error fails this job, not the build
            status, reason = "failure", describe_error(exc)
            _show_start_log(ctx, stage, job, getattr(exc, "log", ()), reason)
        else:
            status, reason = await _before_steps(ctx, job, handle)
            for index, step in enumerate(job.steps if status == "success" else ()):
                status, reason, code = await _run_step(ctx, stage, job, handle, index, step, deadline)
                if status != "success":
                    break
            status, reason = await _after_steps(ctx, job, handle, status, reason)
    except asyncio.CancelledError:
        status, reason = ctx.stopped(job.name)
        raise
    finally:
        if handle is not None:
            try:
                await uncancelled(ctx.backend.stop_job(handle))
            except asyncio.CancelledError:
                status, reason = ctx.stopped(job.name)
                ctx.emit(JobFinished, stage=stage, job=job.name, status=status, reason=reason)
                raise
            except Exception as exc:  # noqa: BLE001
                log.warning("stopping job %s failed: %s", job.name, exc)
        allowed = failure_allowed(job, status, code)
        ctx.emit(JobFinished, stage=stage, job=job.name, status=status, reason=reason, allowed=allowed)
    return status, reason, allowed


async def _before_steps(ctx: BuildContext, job: Job, handle: JobHandle) -> tuple[str, str | None]:
    try:
        ctx.warnings.extend(await ctx.files.before_steps(ctx.backend, handle))
    except Exception as exc:  # noqa: BLE001 - the job cannot start without its inputs
        return "failure", f"before the first step: {describe_error(exc)}"
    return "success", None


async def _after_steps(ctx: BuildContext, job: Job, handle: JobHandle, status: str,
                       reason: str | None) -> tuple[str, str | None]:
    """Keep the job's files; a refusal (artifacts past the cap, a symlink out) fails the job."""
    try:
        kept = await ctx.files.after_steps(ctx.backend, handle, status)
    except Exception as exc:  # noqa: BLE001 - a bug in keeping files fails this job, with the text
        log.exception("keeping the files of job %s failed", job.name)
        kept = Kept(failure=f"keeping its files failed: {describe_error(exc)}")
    ctx.warnings.extend(kept.warnings)
    if kept.failure is None:
        return status, reason
    if status == "success":
        return "failure", kept.failure
    return status, f"{reason}; {kept.failure}" if reason else kept.failure


async def _run_step(ctx: BuildContext, stage: str, job: Job, handle: JobHandle, index: int, step: Step,
                    job_deadline: float | None) -> tuple[str, str | None, int | None]:
    """Run a step, again after a failure or an interruption (its node died) while ``step.retry``
    allows (never after a timeout)."""
    attempt = 0
    while True:
        attempt += 1
        ctx.emit(StepStarted, stage=stage, job=job.name, step=index, name=step.name, attempt=attempt)
        status, code, reason = await _attempt(ctx, stage, job, handle, index, step, attempt, job_deadline)
        ctx.emit(StepFinished, stage=stage, job=job.name, step=index, status=status, exit_code=code,
                 attempt=attempt, reason=reason)
        if status in ("failure", "interrupted") and attempt <= step.retry:
            continue
        if status != "success" and reason is not None:
            reason = f"step {step.name!r}: {reason}"
        return status, reason, code


async def _attempt(ctx: BuildContext, stage: str, job: Job, handle: JobHandle, index: int, step: Step,
                   attempt: int, job_deadline: float | None) -> tuple[str, int | None, str | None]:
    loop = asyncio.get_running_loop()
    step_deadline = loop.time() + step.timeout if step.timeout else None
    deadline = min((d for d in (step_deadline, job_deadline) if d is not None), default=None)
    env = {**job.env, **step.env, **ctx.secrets}
    out = ctx.new_log()

    def emit_lines(lines: list[str]) -> None:
        if lines:
            ctx.emit(StepOutput, stage=stage, job=job.name, step=index, lines=tuple(lines))

    result: StepExit | None = None
    status, reason = None, None
    agen = ctx.backend.exec_step(handle, step, env)
    try:
        async with asyncio.timeout_at(deadline):
            async for item in agen:
                if isinstance(item, StepExit):
                    result = item
                else:
                    emit_lines(out.feed(item))
    except TimeoutError:
        status = "timed_out"
        if deadline == step_deadline:
            reason = f"timed out after {step.timeout:g}s"
        else:
            reason = f"job timed out after {job.timeout:g}s"
    except asyncio.CancelledError:
        emit_lines(out.close())
        status, reason = ctx.stopped(job.name)
        ctx.emit(StepFinished, stage=stage, job=job.name, step=index, status=status, exit_code=None,
                 attempt=attempt, reason=reason)
        raise
    except Exception as exc:  # noqa: BLE001 - the backend broke: this step fails, with the reason
        status, reason = "failure", describe_error(exc)
    finally:
        await uncancelled(agen.aclose())
    emit_lines(out.close())
    if status is not None:
        return status, None, reason
    if result is None:
        return "failure", None, "the backend ended the step without an exit status"
    if result.interrupted:
        return "interrupted", None, result.reason or "interrupted: the step's place went away"
    if result.code == 0:
        return "success", 0, (f"output capped at {ctx.log_cap} bytes" if out.capped else None)
    if result.oom_killed:
        return "failure", result.code, "out of memory"
    return "failure", result.code, result.reason or f"exit code {result.code}"


def _show_start_log(ctx: BuildContext, stage: str, job: Job, lines: tuple[str, ...], reason: str) -> None:
    """A start that failed with a log to show (a service that never became ready: its last lines)
    shows it as the job's only step, named "services", since none of the job's steps ran."""
    if not lines:
        return
    out = ctx.new_log()
    ctx.emit(StepStarted, stage=stage, job=job.name, step=0, name="services")
    found = out.feed("".join(f"{line}\n" for line in lines)) + out.close()
    ctx.emit(StepOutput, stage=stage, job=job.name, step=0, lines=tuple(found))
    ctx.emit(StepFinished, stage=stage, job=job.name, step=0, status="failure", reason=reason)


def describe_error(exc: Exception) -> str:
    from runner.errors import ConveyorError

    if isinstance(exc, ConveyorError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"
