"""One build, start to end: the one code path of `conveyor run` and of the server.

``create_build`` records what was asked (a ``BuildRequest``) as a ``queued`` build with the next
number of its repo (runner/build_request.py, re-exported here); ``run_build`` runs it from a
checkout: context, pipeline file, plan, executor (with what runner/build_inputs.py gives it), store.
The server is this minus HTTP: it creates the build when a webhook arrives and calls ``run_build``
when a worker is free.

``run_build`` never loses what is stored and never leaves a build ``running`` when it returns: its
final status is written in a ``finally``, also when the task is cancelled or something breaks.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from pathlib import Path

from runner import plugins
from runner.approval import Ask
from runner.backends.base import Backend, BuildRef
from runner.build_inputs import build_files, lifetime, stage_actions
from runner.build_request import BuildRequest, create_build, insert_request
from runner.context import Changes, Context
from runner.errors import ConfigError, ContextError, DeployError, TemplateError
from runner.executor.events import BuildFinished, Event, FanoutSink
from runner.plan import Plan
from runner.settings import Settings
from runner.store import approvals
from runner.store import builds as q
from runner.store.db import Store
from runner.store.recovery import deploys_in_flight, this_host
from runner.store.sink import StoreSink

__all__ = ["BuildRequest", "insert_request", "create_build", "run_build", "settle_crashed_deploys"]

log = logging.getLogger("conveyor.build")


class _Outcome:
    """Remembers the BuildFinished reason and warnings for the build row."""

    reason: str | None = None
    warnings: tuple[str, ...] = ()

    def emit(self, event: Event) -> None:
        if isinstance(event, BuildFinished):
            self.reason, self.warnings = event.reason, event.warnings


class _UnlessSuspended:
    """Hands events to the store until the build is suspended (its server stops while it waits for an
    approval): the stored rows then stay as they are, a waiting build, for the next start to resume."""

    def __init__(self, sink: StoreSink, suspend: asyncio.Event) -> None:
        self.sink, self.suspend = sink, suspend

    def emit(self, event: Event) -> None:
        if not self.suspend.is_set():
            self.sink.emit(event)


async def _still_waiting(store: Store, build_id: int) -> bool:
    return await store.aread(lambda c: q.status_of(c, build_id)) == "waiting"


async def run_build(store: Store, settings: Settings, build_id: int, source: Path, *, backend: Backend,
                    sinks=(), secrets: dict[str, str] | None = None, trusted: bool = False,
                    allow_deploy: bool = True, cancel: asyncio.Event | None = None,
                    limiter: asyncio.Semaphore | None = None, ask: Ask | None = None,
                    resume: bool = False, suspend: asyncio.Event | None = None,
                    changes: Changes | None = None, users: frozenset[str] = frozenset(),
                    fork: bool = False, on_reports=None) -> str:
    """Run a created build from the checkout at ``source``; return its final status.

    ``ask`` answers approval stages where the build runs (`conveyor run`'s terminal or --approve).
    ``resume``: the build is ``waiting`` for an approval that a dead process (a server before its
    restart) was running; go on with its stored plan from the approval stage, not re-running the
    stages that finished, in a fresh checkout of its commit at ``source``. ``suspend`` set before the
    task is cancelled (a server stopping) leaves a build that waits for an approval as it is stored,
    ``waiting``, for the next start to resume, instead of cancelling it. ``changes`` are the files
    ``when.changes`` sees; None: computed from the build's event (``runner.scm.changes.event_changes``:
    before..sha, the merge base, the last good build). ``users`` are the server's user names, which
    a stage's ``approvers`` may name besides roles. ``fork``: the build comes from a fork (its
    caches live apart from the repository's). ``on_reports(build_id, job, files)`` receives the
    JUnit files of jobs with ``reports`` (runner/keep/hook.py), as the job left them; None: they are
    parsed, the build's secrets masked, and stored (``runner.reports.ingest_reports``)."""
    build = await store.aread(lambda c: q.get_build(c, build_id))
    started = time.time()
    if resume:
        claimed = await store.awrite(
            lambda c: approvals.claim_waiting(c, build_id, pid=os.getpid(), host=this_host()))
    else:
        claimed = await store.awrite(
            lambda c: q.mark_running(c, build_id, pid=os.getpid(), host=this_host(), started=started))
    if not claimed:  # cancelled or superseded while it waited: leave its final status as it is
        return (await store.aread(lambda c: q.get_build(c, build_id))).status
    # A resumed build's warnings from before its approval stay, also when it ends by a cancel or a bug.
    status, reason, warnings = "failure", None, tuple(build.warnings) if resume else ()
    suspend = suspend or asyncio.Event()
    options = dict(backend=backend, sinks=sinks, secrets=secrets or {}, trusted=trusted, allow_deploy=allow_deploy,
                   cancel=cancel, limiter=limiter, ask=ask, suspend=suspend, fork=fork, on_reports=on_reports)
    try:
        if resume:
            status, reason, warnings = await _resume(store, settings, build, Path(source), **options)
        else:
            # Plugins may do I/O: not on the loop. Inside the try: a cancel while they work must
            # still finish the row, which is `running` from here on.
            await asyncio.to_thread(plugins.build_started, build, settings)
            status, reason, warnings = await _run(store, settings, build, Path(source), changes=changes,
                                                  users=users, **options)
    except asyncio.CancelledError:
        if suspend.is_set() and await _still_waiting(store, build_id):
            log.info("build %s stays waiting for its approval; the next start resumes it", build.label)
            status = "waiting"
            return status
        status, reason = "cancelled", "the build was cancelled"
        raise
    except Exception as exc:  # noqa: BLE001 - recorded on the build; a bug must not leave it running
        log.exception("build %s failed with an internal error", build.label)
        status, reason = "failure", f"internal error: {type(exc).__name__}: {exc}"
    finally:
        if status != "waiting":  # a suspended build keeps its rows as they are
            # Submitted synchronously, so the row is written even if this task is cancelled again.
            done = store.submit(lambda c: q.finish_build(c, build_id, status, reason, warnings=list(warnings)))
            await asyncio.shield(asyncio.wrap_future(done))
            finished = await store.aread(lambda c: q.get_build(c, build_id))
            await asyncio.to_thread(plugins.build_finished, finished, status, settings)
    return status


async def _changes(store, build: q.BuildRow, source: Path) -> Changes:
    from runner.scm.changes import event_changes

    last_good = await store.aread(lambda c: q.last_successful_sha(c, build.repo, build.branch, build.id))
    try:
        return await asyncio.to_thread(event_changes, source, event=build.event, sha=build.sha,
                                       before=build.before, target_branch=build.target_branch, last_good=last_good)
    except Exception as exc:  # noqa: BLE001 - git broke: run what `when.changes` guards rather than skip it
        log.warning("build %s: changed files unknown: %s", build.label, exc)
        return Changes(None, f"the changed files could not be read ({type(exc).__name__})")


async def _run(store, settings, build: q.BuildRow, source: Path, *, changes, users: frozenset[str],
               **options) -> tuple[str, str | None, tuple[str, ...]]:
    from runner.dsl import LintOptions, load_pipeline

    try:
        if changes is None:
            changes = await _changes(store, build, source)
        ctx = Context.build(
            sha=build.sha, branch=build.branch, tag=build.tag, ref=build.ref, message=build.message,
            author=build.author, event=build.event, repo_name=build.repo, repo_url=build.repo_url,
            params=build.params, build_number=build.number, changes=changes,
        )
        file = source / build.pipeline if build.pipeline else None
        lint = LintOptions(users=users, backend=options["backend"].name,
                           environments=await _environments(settings))
        loaded = await asyncio.to_thread(load_pipeline, source, ctx, file=file, trusted=options["trusted"],
                                         options=lint)
    except (ContextError, TemplateError, DeployError) as exc:
        return "config_error", str(exc), ()
    except ConfigError as exc:
        found = [d.to_dict() for d in exc.diagnostics]
        await store.awrite(lambda c: q.store_pipeline(
            c, build.id, pipeline=build.pipeline, rendered=None, plan=None, diagnostics=found))
        return "config_error", _summary(exc.diagnostics), ()
    pipeline = _relative(loaded.path, source) if loaded.path else build.pipeline
    plan_json = loaded.plan.to_json() if loaded.plan is not None else None
    diagnostics = [d.to_dict() for d in loaded.diagnostics]
    await store.awrite(lambda c: q.store_pipeline(
        c, build.id, pipeline=pipeline, rendered=loaded.rendered, plan=plan_json, diagnostics=diagnostics))
    if not loaded.ok or loaded.plan is None:
        return "config_error", _summary(loaded.diagnostics), ()
    if loaded.skip_reason is not None:  # the file's `on:` does not start a build for this event
        return "skipped", loaded.skip_reason, ()
    return await _execute(store, settings, build, loaded.plan, source, **options)


async def _environments(settings: Settings) -> tuple:
    """The environments the linter checks ``environment:`` against; their reader (and its imports)
    only when a targets file or the server configuration may name some."""
    if not settings.has_deploy_config():
        return ()
    from runner.deploy.config import lint_environments

    return await asyncio.to_thread(lint_environments, settings)


async def _resume(store, settings, build: q.BuildRow, source: Path,
                  **options) -> tuple[str, str | None, tuple[str, ...]]:
    """Go on with a waiting build: its stored plan, the stages it finished left out, the warnings
    they gave (stored when the approval began) kept."""
    plan = Plan.from_json(build.plan)
    finished, last_seq = await store.aread(lambda c: (q.finished_stages(c, build.id), q.last_log_seq(c, build.id)))
    return await _execute(store, settings, build, plan, source, finished=finished, resumed_after=last_seq,
                          warnings=tuple(build.warnings), **options)


async def _execute(store, settings, build: q.BuildRow, plan: Plan, source: Path, *, backend, sinks, secrets,
                   trusted, allow_deploy, cancel, limiter, ask, suspend, fork, on_reports, finished=None,
                   resumed_after=None, warnings=()) -> tuple[str, str | None, tuple[str, ...]]:
    from runner.executor.run import run_plan

    if cancel is not None and cancel.is_set():
        return "cancelled", "cancelled before it started", tuple(warnings)
    actions = await stage_actions(store, settings, build.id, plan, allow_deploy=allow_deploy, ask=ask)
    outcome = _Outcome()
    rows = StoreSink(store, build.id, plan, resumed_after=resumed_after)
    sink = FanoutSink(_UnlessSuspended(rows, suspend), outcome, *sinks, *plugins.event_sinks(build, settings))
    ref = BuildRef(id=build.uid, source=source, instance=build.instance,
                   labels={"io.conveyor.repo": build.repo, "io.conveyor.number": str(build.number)},
                   lifetime=lifetime(plan, settings),
                   images=tuple(dict.fromkeys(job.image for job in plan.jobs())))
    try:
        status = await run_plan(
            plan, ref, backend, sink, actions=actions, secrets=secrets, concurrency=settings.concurrency,
            log_cap=settings.log_cap, cancel=cancel,
            action_context={"number": build.number, "commit": build.sha, "trigger": build.trigger},
            limiter=limiter, finished=finished or {},
            files=build_files(store, settings, build, source, fork, on_reports, secrets), warnings=warnings,
        )
    finally:
        # Keep the output seen so far, and wait until every queued row is written, so a reader
        # after us sees the whole build.
        rows.flush()
        await asyncio.shield(asyncio.wrap_future(store.submit(lambda c: None)))
    return status, outcome.reason, outcome.warnings


def _relative(path: Path, source: Path) -> str:
    try:
        return str(Path(path).resolve().relative_to(source.resolve()))
    except ValueError:
        return str(path)


def _summary(diagnostics) -> str:
    errors = [d for d in diagnostics if d.severity == "error"]
    if not errors:
        return "the pipeline could not be loaded"
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{errors[0]}{more}"


async def settle_crashed_deploys(store: Store, settings: Settings) -> None:
    """Mark deploys that a dead runner left in flight ``unknown`` and compare them with the live
    service; never re-run them. Cheap when there are none (the usual case): the deploy side, and
    the engine, are only touched when a row is in flight."""
    if not await store.aread(deploys_in_flight):
        return
    from runner.deploy import reconcile_in_flight

    for deploy_id, reason in await reconcile_in_flight(store, settings):
        log.warning("deploy %s: %s", deploy_id, reason)
