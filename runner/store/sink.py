"""StoreSink: the executor's events become rows (stages, jobs, steps, log chunks) of one build.

``emit`` runs on the event loop and never waits: every write is queued for the store's single
writer thread with ``store.submit``. Output lines are batched into ``log_chunks`` (a chunk per
``batch_lines`` lines, ``batch_bytes`` bytes or ``interval`` seconds, whichever comes first) because
a transaction per line would cap throughput at a few thousand lines a second. Any other event first
flushes the pending lines, so the chunks' order (``seq``) follows the order things happened in.
``BuildFinished`` flushes too; ``await store.awrite(lambda c: None)`` afterwards waits for it all.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from concurrent.futures import Future

from runner.executor.events import (
    BuildFinished,
    BuildStarted,
    Event,
    JobFinished,
    JobStarted,
    StageFinished,
    StageStarted,
    StepFinished,
    StepOutput,
    StepStarted,
)
from runner.plan import Plan
from runner.store.db import Store

__all__ = ["StoreSink"]

log = logging.getLogger("conveyor.store")
_POST_STAGES = ("post:always", "post:success", "post:failure")


class StoreSink:
    def __init__(self, store: Store, build_id: int, plan: Plan | None = None, *, batch_lines: int = 5000,
                 batch_bytes: int = 512 * 1024, interval: float = 0.25) -> None:
        self.store = store
        self.build_id = build_id
        self.plan = plan
        self.batch_lines = batch_lines
        self.batch_bytes = batch_bytes
        self.interval = interval
        self.errors: list[BaseException] = []
        # Loop side: pending output, per-step line counters and current attempts.
        self._pending: dict[tuple[tuple[str, str, int], int], list] = {}  # (step, attempt) -> [first, lines, time]
        self._pending_bytes = 0
        self._pending_lines = 0
        self._next_line: dict[tuple[str, str, int], int] = {}
        self._attempt: dict[tuple[str, str, int], int] = {}
        self._seq = 0
        self._timer: asyncio.TimerHandle | None = None
        # Writer side only (touched by functions the writer thread runs, one at a time).
        self._job_ids: dict[tuple[str, str], int] = {}

    # -- the sink --------------------------------------------------------------------------

    def emit(self, event: Event) -> None:
        if isinstance(event, StepOutput):
            self._add_lines(event)
            return
        self.flush()
        if isinstance(event, BuildStarted):
            self._submit(self._w_plan_rows)
        elif isinstance(event, StageStarted):
            self._submit(lambda c: self._w_stage(c, event.stage, "running", None, started=event.time))
        elif isinstance(event, StageFinished):
            self._submit(lambda c: self._w_stage(c, event.stage, event.status, event.reason, finished=event.time))
        elif isinstance(event, JobStarted):
            self._submit(lambda c: self._w_job(c, event.stage, event.job, "running", None, started=event.time))
        elif isinstance(event, JobFinished):
            self._submit(lambda c: self._w_job(c, event.stage, event.job, event.status, event.reason,
                                               finished=event.time, allowed=event.allowed))
        elif isinstance(event, StepStarted):
            self._attempt[(event.stage, event.job, event.step)] = event.attempt
            self._submit(lambda c: self._w_step_started(c, event))
        elif isinstance(event, StepFinished):
            self._submit(lambda c: self._w_step_finished(c, event))
        elif isinstance(event, BuildFinished):
            pass  # the flush above is the point; run_build writes the build's own row

    def flush(self) -> None:
        """Queue every pending output line as chunks (returns at once)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._pending:
            return
        batch, self._pending = self._pending, {}
        self._pending_bytes = self._pending_lines = 0
        rows = []
        for ((stage, job, step), attempt), (first, lines, when) in batch.items():
            self._seq += 1
            rows.append((stage, job, step, attempt, self._seq, first, len(lines), "\n".join(lines), when))
        self._submit(lambda c: self._w_chunks(c, rows))

    # -- loop side -------------------------------------------------------------------------

    def _add_lines(self, event: StepOutput) -> None:
        if not event.lines:
            return
        key = (event.stage, event.job, event.step)
        first = self._next_line.get(key, 1)
        self._next_line[key] = first + len(event.lines)
        attempt = self._attempt.get(key, 1)
        # One chunk per step and batch: jobs that interleave line by line still make few rows.
        entry = self._pending.get((key, attempt))
        if entry is None:
            self._pending[(key, attempt)] = [first, list(event.lines), event.time]
        else:
            entry[1].extend(event.lines)
            entry[2] = event.time
        self._pending_lines += len(event.lines)
        self._pending_bytes += sum(len(line) + 1 for line in event.lines)
        if self._pending_lines >= self.batch_lines or self._pending_bytes >= self.batch_bytes:
            self.flush()
        elif self._timer is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                return  # used without a loop (tests, tools): thresholds and events flush
            self._timer = loop.call_later(self.interval, self.flush)

    def _submit(self, fn) -> None:
        try:
            future = self.store.submit(fn)
        except Exception as exc:  # noqa: BLE001 - a closed store must not break the build
            self._failed(exc)
            return
        future.add_done_callback(self._check)

    def _check(self, future: Future) -> None:
        exc = future.exception()
        if exc is not None:
            self._failed(exc)

    def _failed(self, exc: BaseException) -> None:
        if not self.errors:
            log.error("build %s: writing to the store failed: %s", self.build_id, exc)
        self.errors.append(exc)

    # -- writer side (run by the store's writer thread) -------------------------------------

    def _w_plan_rows(self, conn: sqlite3.Connection) -> None:
        """Every stage and job of the plan as `queued`, so `conveyor show` draws the whole build."""
        if self.plan is None:
            return
        for position, stage in enumerate(self.plan.stages):
            self._w_stage(conn, stage.name, "queued", None, kind=stage.kind, position=position)
            for job in stage.jobs:
                self._w_job(conn, stage.name, job.name, "queued", None)
        for offset, block in enumerate(_POST_STAGES):
            jobs = getattr(self.plan.post, block.split(":")[1])
            if jobs:
                self._w_stage(conn, block, "queued", None, kind="post", position=10_000 + offset)
                for job in jobs:
                    self._w_job(conn, block, job.name, "queued", None)

    def _stage_position(self, name: str) -> tuple[int, str]:
        if self.plan is not None:
            for position, stage in enumerate(self.plan.stages):
                if stage.name == name:
                    return position, stage.kind
        if name in _POST_STAGES:
            return 10_000 + _POST_STAGES.index(name), "post"
        return 5_000, "jobs"

    def _w_stage(self, conn, name, status, reason, *, started=None, finished=None, kind=None, position=None):
        if position is None:
            position, kind = self._stage_position(name)
        conn.execute(
            "INSERT INTO stages (build_id, position, name, kind, status, reason, started, finished) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (build_id, name) DO UPDATE SET "
            "status = excluded.status, reason = COALESCE(excluded.reason, reason), "
            "started = COALESCE(started, excluded.started), finished = COALESCE(excluded.finished, finished)",
            (self.build_id, position, name, kind or "jobs", status, reason, started, finished),
        )

    def _w_job(self, conn, stage, name, status, reason, *, started=None, finished=None, allowed=False) -> int:
        row = conn.execute(
            "INSERT INTO jobs (build_id, stage, name, status, reason, started, finished, allowed) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (build_id, stage, name) DO UPDATE SET "
            "status = excluded.status, reason = COALESCE(excluded.reason, reason), "
            "started = COALESCE(started, excluded.started), finished = COALESCE(excluded.finished, finished), "
            "allowed = MAX(allowed, excluded.allowed) RETURNING id",
            (self.build_id, stage, name, status, reason, started, finished, int(allowed)),
        ).fetchone()
        self._job_ids[(stage, name)] = row[0]
        return row[0]

    def _job_id(self, conn, stage: str, job: str) -> int:
        found = self._job_ids.get((stage, job))
        if found is None:  # output or a step of a job whose start we never saw
            found = self._w_job(conn, stage, job, "running", None)
        return found

    def _w_step_started(self, conn, event: StepStarted) -> None:
        conn.execute(
            "INSERT INTO steps (job_id, position, name, attempt, status, started) VALUES (?, ?, ?, ?, 'running', ?) "
            "ON CONFLICT (job_id, position, attempt) DO UPDATE SET status = 'running', started = excluded.started",
            (self._job_id(conn, event.stage, event.job), event.step, event.name, event.attempt, event.time),
        )

    def _w_step_finished(self, conn, event: StepFinished) -> None:
        job_id = self._job_id(conn, event.stage, event.job)
        conn.execute(
            "INSERT INTO steps (job_id, position, name, attempt, status, exit_code, reason, started, finished) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (job_id, position, attempt) DO UPDATE SET "
            "status = excluded.status, exit_code = excluded.exit_code, reason = excluded.reason, "
            "finished = excluded.finished",
            (job_id, event.step, f"step {event.step + 1}", event.attempt, event.status, event.exit_code,
             event.reason, event.time, event.time),
        )

    def _w_chunks(self, conn, rows) -> None:
        conn.executemany(
            "INSERT INTO log_chunks (build_id, job_id, step, attempt, seq, first_line, lines, text, time) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (self.build_id, self._job_id(conn, stage, job), step, attempt, seq, first, count, text, when)
                for stage, job, step, attempt, seq, first, count, text, when in rows
            ],
        )
