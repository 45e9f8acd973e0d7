"""The stages of a plan as one graph of jobs: ``needs`` edges and stage order, run under one limit.

Every job of a ``jobs`` stage is a unit, and so is every action stage (build, deploy, rollback,
approval). A unit starts once what it waits for is done:

- a job with ``needs``: the jobs it names (``needs: []``: nothing);
- a job without ``needs`` and an action stage: every unit of the earlier stages (stage order).

When it may start, its ``when`` decides (the job's own, else its stage's): a compile-time skip
reason skips it; a need that was skipped skips it; otherwise ``when.status`` is matched against
"so far": ``failure`` when a unit it waits for failed (for stage order: any unit of an earlier stage),
else ``success``. So a failure skips only what depends on it and what follows in stage order, while
unrelated branches of the graph run on. An allowed failure (``allow_failure``) counts as a success
for everything after it and adds a build warning.

Matrix: ``max_parallel`` caps the running combinations of a group; with ``fail_fast`` (the
default) a failed combination cancels its running siblings and skips those not started.
The build's limiter (``run_job``) still caps how many jobs run at once.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

from runner.executor.events import JobFinished, StageFinished, StageStarted
from runner.executor.job import BuildContext, describe_error, run_job, uncancelled, worst_status
from runner.plan import Job, Plan, Stage

__all__ = ["run_graph"]

_OK = ("success", "skipped")
_SAID = {"failure": "failed", "timed_out": "timed out", "cancelled": "was cancelled", "interrupted": "was interrupted"}


@dataclass(eq=False)
class _Unit:
    stage: int
    job: Job | None  # None: the action stage itself
    deps: list[_Unit] = field(default_factory=list)
    by_order: bool = True  # waits for stage order (not for needs)
    status: str | None = None  # set once finished
    reason: str | None = None
    allowed: bool = False
    stage_name: str = ""  # an action stage's name (approval, build, deploy, rollback)

    @property
    def name(self) -> str:
        return self.job.name if self.job else self.stage_name

    @property
    def ok(self) -> bool:
        return self.status in _OK or self.allowed


class _Graph:
    def __init__(self, plan: Plan, ctx: BuildContext, run_action: Callable[[Stage, str], Awaitable[tuple]],
                 finished: Mapping[str, str]) -> None:
        self.plan, self.ctx, self.run_action = plan, ctx, run_action
        self.units: list[_Unit] = []
        self.by_stage: list[list[_Unit]] = []
        for i, stage in enumerate(plan.stages):
            units = ([_Unit(i, job) for job in stage.jobs] if stage.kind == "jobs"
                     else [_Unit(i, None, stage_name=stage.name)])
            self.by_stage.append(units)
            self.units += units
        named = {u.name: u for u in reversed(self.units) if u.job}  # lint made every needed name unique
        for u in self.units:
            if u.job is not None and u.job.needs is not None:
                u.by_order, u.deps = False, [named[n] for n in u.job.needs if n in named]
                # An approval gates everything after it, `needs` or not: a job placed after the
                # question never runs before the answer (nor while the build shows `waiting`).
                u.deps += [g for i, st in enumerate(plan.stages[:u.stage]) if st.kind == "approval"
                           for g in self.by_stage[i]]
        for i, stage in enumerate(plan.stages):
            if stage.name in finished:  # a resumed build: this stage ran before its approval
                for u in self.by_stage[i]:
                    u.status, u.reason = finished[stage.name], "finished before the build was resumed"
        self.started_stages: set[int] = set()
        self.running: dict[asyncio.Task, _Unit] = {}

    # -- deciding -----------------------------------------------------------------------------

    def _ready(self, u: _Unit) -> bool:
        if u.by_order:
            return all(v.status is not None for units in self.by_stage[:u.stage] for v in units)
        return all(d.status is not None for d in u.deps)

    def _skip_reason(self, u: _Unit) -> str | None:
        stage = self.plan.stages[u.stage]
        if stage.skip_reason or (u.job and u.job.skip_reason):
            return stage.skip_reason or u.job.skip_reason
        if u.by_order:
            bad = next((v for units in self.by_stage[:u.stage] for v in units if not v.ok), None)
            failed = "an earlier stage failed"
        else:
            skipped = next((d for d in u.deps if d.status == "skipped" and d.job), None)
            if skipped:
                return f"needed job {skipped.name!r} was skipped"
            bad = next((d for d in u.deps if not d.ok), None)
            what = f"needed job {bad.name!r}" if bad and bad.job else f"stage {bad.name!r}" if bad else ""
            failed = f"{what} {_SAID.get(bad.status, bad.status)}" if bad else ""
        wanted = (u.job.when if u.job and u.job.when else stage.when).status
        so_far = "failure" if bad else "success"
        if "always" in wanted or so_far in wanted:
            return None
        if bad:
            return failed
        return "runs only when an earlier stage failed" if u.by_order else "runs only when a needed job failed"

    def _group_full(self, u: _Unit) -> bool:
        m = u.job.matrix if u.job else None
        if m is None or m.max_parallel is None:
            return False
        running = sum(1 for v in self.running.values() if v.job.matrix and v.job.matrix.group == m.group
                      and v.stage == u.stage)
        return running >= m.max_parallel

    # -- running ------------------------------------------------------------------------------

    def _stage_started(self, i: int) -> None:
        if i not in self.started_stages:
            self.started_stages.add(i)
            self.ctx.emit(StageStarted, stage=self.plan.stages[i].name)

    def _finish(self, u: _Unit, status: str, reason: str | None, allowed: bool = False, emit: bool = True) -> None:
        u.status, u.reason, u.allowed = status, reason, allowed
        stage = self.plan.stages[u.stage]
        if u.job is not None and emit:
            self.ctx.emit(JobFinished, stage=stage.name, job=u.name, status=status, reason=reason)
        if allowed:
            self.ctx.warnings.append(f"job {u.name!r} failed (allowed): {reason or status}")
        if all(v.status is not None for v in self.by_stage[u.stage]) and u.job is not None:
            self.ctx.emit(StageFinished, stage=stage.name, **self._stage_result(u.stage))

    def _stage_result(self, i: int) -> dict:
        units = self.by_stage[i]
        if all(v.status == "skipped" for v in units):
            return {"status": "skipped", "reason": self.plan.stages[i].skip_reason or units[0].reason}
        bad = [v for v in units if not v.ok]
        if not bad:
            return {"status": "success", "reason": None}
        status = worst_status([v.status for v in bad])
        v = bad[0]
        return {"status": status, "reason": f"job {v.name!r}: {v.reason}" if v.reason else f"job {v.name!r} failed"}

    async def _run_unit(self, u: _Unit, so_far: str) -> tuple[str, str | None, bool]:
        stage = self.plan.stages[u.stage]
        if u.job is None:
            status, reason = await self.run_action(stage, so_far)
            return status, reason, False
        return await run_job(self.ctx, stage.name, u.job)

    def _start(self, u: _Unit) -> None:
        if u.job is not None:  # an action stage announces itself (run_action)
            self._stage_started(u.stage)
        if u.job is None:
            so_far = "failure" if any(not v.ok for units in self.by_stage[:u.stage] for v in units) else "success"
        else:
            so_far = "success"
        u.status = None
        self.running[asyncio.ensure_future(self._run_unit(u, so_far))] = u

    def _done(self, task: asyncio.Task) -> None:
        u = self.running.pop(task)
        if task.cancelled():  # a sibling's fail_fast: run_job reported it already
            status, reason = self.ctx.stopped(u.name)
            self._finish(u, status, reason, emit=False)
        elif task.exception() is not None:
            self._finish(u, "failure", f"internal error: {describe_error(task.exception())}")
        else:
            status, reason, allowed = task.result()
            self._finish(u, status, reason, allowed, emit=False)
            if u.job is None:  # run_action emitted the stage's events itself
                return
        if not u.ok and u.job and u.job.matrix and u.job.matrix.fail_fast and u.status != "cancelled":
            self._fail_fast(u)

    def _fail_fast(self, failed: _Unit) -> None:
        group = failed.job.matrix.group
        why = ("cancelled", f"cancelled: {failed.name!r} failed (fail_fast)")
        for task, v in self.running.items():
            if v.job and v.job.matrix and v.job.matrix.group == group and v.stage == failed.stage:
                self.ctx.job_stops[v.name] = why
                task.cancel()
        for v in self.by_stage[failed.stage]:
            if v.status is None and v not in self.running.values() and v.job.matrix and v.job.matrix.group == group:
                self._stage_started(v.stage)
                self._finish(v, *why)

    async def run(self) -> tuple[str, str | None]:
        try:
            while True:
                progressed = True
                while progressed:
                    progressed = False
                    for u in self.units:
                        if u.status is not None or u in self.running.values() or not self._ready(u):
                            continue
                        reason = self._skip_reason(u)
                        if reason is not None:
                            self._skip(u, reason)
                            progressed = True
                        elif not self._group_full(u):
                            self._start(u)
                if not self.running:
                    break
                done, _ = await asyncio.wait(list(self.running), return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    self._done(task)
        except asyncio.CancelledError:
            await self._stop_all()
            raise
        for u in self.units:  # only a plan with a cycle in needs (lint refuses one) leaves units here
            if u.status is None:
                self._skip(u, "waits for a job that never finishes (a cycle in needs)")
        return self._result()

    def _skip(self, u: _Unit, reason: str) -> None:
        self._stage_started(u.stage)
        if u.job is None:
            u.status, u.reason = "skipped", reason
            self.ctx.emit(StageFinished, stage=self.plan.stages[u.stage].name, status="skipped", reason=reason)
        else:
            self._finish(u, "skipped", reason)

    async def _stop_all(self) -> None:
        tasks = list(self.running)
        for task in tasks:
            task.cancel()
        if tasks:
            with contextlib.suppress(BaseException):
                await uncancelled(asyncio.wait(tasks))
        status, reason = self.ctx.stopped()
        for i in sorted(self.started_stages):
            if any(v.status is None for v in self.by_stage[i]) and self.plan.stages[i].kind == "jobs":
                self.ctx.emit(StageFinished, stage=self.plan.stages[i].name, status=status, reason=reason)

    def _result(self) -> tuple[str, str | None]:
        for i, stage in enumerate(self.plan.stages):
            bad = [v for v in self.by_stage[i] if not v.ok]
            if bad:
                if stage.kind != "jobs":
                    v = bad[0]
                    return v.status, f"stage {stage.name!r}: {v.reason}" if v.reason else f"stage {stage.name!r} failed"
                result = self._stage_result(i)
                return result["status"], f"stage {stage.name!r}: {result['reason']}"
        return "success", None


async def run_graph(plan: Plan, ctx: BuildContext, run_action: Callable[[Stage, str], Awaitable[tuple]],
                    finished: Mapping[str, str] = {}) -> tuple[str, str | None]:  # noqa: B006 - read only
    """Run every stage of ``plan`` as one graph; return the build's (status, reason) before post.
    ``finished`` (stage name -> status) holds the stages a resumed build already ran."""
    return await _Graph(plan, ctx, run_action, finished).run()
