"""The durable build queue: pending deliveries become queued builds; queued builds run when free.

The store is the queue, so nothing lives only in memory: after a crash, ``start`` marks builds left
``running`` by the dead process ``interrupted`` (and sweeps their containers), and the loop picks up
pending deliveries and queued builds where they were. At most ``concurrency`` builds run at once;
jobs across all builds share one limiter of ``settings.concurrency``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
from dataclasses import dataclass

from runner.build import run_build, settle_crashed_deploys
from runner.dsl import find_pipeline_files
from runner.errors import SourceError
from runner.notify import Notifications
from runner.scm.mirror import Mirror
from runner.server.config import ServerConfig
from runner.server.inbox import BuildOrder, enqueue_pending, queue_build
from runner.server.sse import LiveHub
from runner.server.status import StatusReporter
from runner.store import approvals, server_builds
from runner.store import builds as q
from runner.store.db import Store
from runner.store.recovery import recover_interrupted

__all__ = ["BuildQueue"]

log = logging.getLogger("conveyor.queue")


@dataclass
class _Running:
    task: asyncio.Task
    cancel: asyncio.Event
    suspend: asyncio.Event  # set when the server stops: a build waiting for an approval stays waiting


class BuildQueue:
    def __init__(self, store: Store, config: ServerConfig, backend, hub: LiveHub,
                 reporter: StatusReporter | None = None, poll: float = 2.0,
                 notifications: Notifications | None = None) -> None:
        self.store, self.config, self.backend, self.hub = store, config, backend, hub
        self.reporter, self.notifications = reporter, notifications
        self.poll = poll
        self.running: dict[int, _Running] = {}
        self._wake = asyncio.Event()
        self._loop_task: asyncio.Task | None = None
        self._sweep_task: asyncio.Task | None = None
        self._limiter = asyncio.Semaphore(config.settings.concurrency)
        self._superseding = {name: r.cancel_superseded for name, r in config.repos.items()}
        self._backends: dict[str, object] = {}  # repositories' own backends (`backend:` per repo), made once

    def backend_for(self, repo) -> object:
        """The backend of ``repo``: its own ``backend:`` when it names one other than the server's."""
        name = repo.backend
        if name is None or name == getattr(self.backend, "name", None):
            return self.backend
        if name not in self._backends:
            from runner.backends import get_backend

            self._backends[name] = get_backend(name, self.config.settings)
        return self._backends[name]

    # -- lifetime -----------------------------------------------------------------------------

    async def start(self) -> None:
        """Settle what a crash left, then start the loop."""
        sweeper = getattr(self.backend, "sweep_build", None)
        stale = await asyncio.to_thread(recover_interrupted, self.store, self.config.settings,
                                        sweeper=sweeper or (lambda uid: None))
        for build in stale:
            log.warning("build %s was left running by a dead server: marked interrupted", build.label)
        for build_id in await self.store.aread(approvals.waiting_server_builds):
            log.info("build %s waits for an approval: resuming it", build_id)
            self._launch(build_id, resume=True)
        try:
            await settle_crashed_deploys(self.store, self.config.settings)
        except Exception:  # noqa: BLE001 - an engine that is down must not keep the server from starting
            log.exception("could not settle deploys left in flight; they stay 'deploying' until the next start")
        self._loop_task = asyncio.create_task(self._loop(), name="conveyor-queue")
        periodic = getattr(self.backend, "sweep_periodically", None)
        if periodic is not None:  # expired leftovers of this instance, now and every 10 minutes
            self._sweep_task = asyncio.create_task(periodic(), name="conveyor-sweep")

    async def stop(self) -> None:
        for task in (self._loop_task, self._sweep_task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        # A build waiting for an approval is not cancelled by a restart: it is left waiting, and the
        # next start resumes it. Every other build is cancelled.
        waiting = await self.store.aread(lambda c: approvals.waiting_among(c, self.running))
        for build_id, running in list(self.running.items()):
            (running.suspend if build_id in waiting else running.cancel).set()
            running.task.cancel()
        if self.running:
            await asyncio.gather(*(r.task for r in self.running.values()), return_exceptions=True)

    def wake(self) -> None:
        self._wake.set()

    async def _loop(self) -> None:
        while True:
            try:
                await self._tick()
            except Exception:  # noqa: BLE001 - the queue must outlive one bad tick
                log.exception("queue tick failed; retrying")
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self.poll)
            self._wake.clear()

    async def _tick(self) -> None:
        if self.config.paused:
            return
        await asyncio.to_thread(enqueue_pending, self.store, self.config.settings.instance,
                                self._superseding, set(self.config.repos))
        # A build waiting for an approval holds no container: it does not take a worker's place.
        waiting = await self.store.aread(lambda c: approvals.waiting_among(c, self.running))
        free = self.config.concurrency - len(self.running) + len(waiting)
        if free <= 0:
            return
        busy = tuple(self.running)
        for build_id in await self.store.aread(lambda c: server_builds.queued(c, besides=busy, limit=free)):
            self._launch(build_id)

    def _launch(self, build_id: int, resume: bool = False) -> None:
        cancel, suspend = asyncio.Event(), asyncio.Event()
        task = asyncio.create_task(self._run(build_id, cancel, suspend, resume), name=f"conveyor-build-{build_id}")
        self.running[build_id] = _Running(task, cancel, suspend)

    # -- one build ----------------------------------------------------------------------------

    async def _run(self, build_id: int, cancel: asyncio.Event, suspend: asyncio.Event, resume: bool = False) -> None:
        """Check out the build's commit and run it; ``resume``: go on with a build that waited for an
        approval across a restart (a fresh checkout; the stages it finished are not run again)."""
        # Everything inside the try: a row that cannot be read or run ends `failure` with the reason,
        # and its slot is freed, so one bad build never holds up the ones behind it.
        status, repo, sha, pipeline, workspace = "failure", None, None, None, None
        live = self.hub.open(build_id)
        try:
            build = await self.store.aread(lambda c: q.get_build(c, build_id))
            facts = await self.store.aread(lambda c: server_builds.facts(c, build_id))
            repo = self.config.repo(facts["config_repo"])
            if repo is None:
                status = await self._finish(build_id, "failure", f"repository {facts['config_repo']!r} is no "
                                            "longer in the server configuration; add it back to build it")
                return
            fork = bool(facts["fork"])
            workspace = self.config.settings.data_dir / "workspaces" / build.uid
            mirror = Mirror(self.config.settings.data_dir, repo.name, repo.source)
            try:
                sha = build.sha or await self._resolve(mirror, build)
                await mirror.fetch(sha, build.ref)
                if not await mirror.has_pipeline(sha):
                    status = await self._finish(build_id, "skipped", f"no .conveyor.yml (or .conveyor/*.yml) at "
                                                f"{sha[:12]}; commit one to build this repository")
                    return
                if resume:  # what the dead server left of this build (workspace volume, network)
                    sweep = getattr(self.backend_for(repo), "sweep_build", None)
                    if sweep is not None:
                        await sweep(build.uid)
                await mirror.checkout(sha, workspace)
            except SourceError as exc:
                status = await self._finish(build_id, "failure", str(exc))
                return
            pipeline = await self._one_build_per_file(build, facts, sha, workspace)
            await self._report(repo, sha, "pending", build_id, pipeline)
            if cancel.is_set():
                status = await self._finish(build_id, "cancelled", "cancelled before it started")
                return
            status = await run_build(
                self.store, self.config.settings, build_id, workspace, backend=self.backend_for(repo), sinks=(live,),
                secrets={} if fork else dict(repo.secrets), trusted=repo.trusted and not fork,
                allow_deploy=not fork, fork=fork, cancel=cancel, limiter=self._limiter, resume=resume,
                suspend=suspend, users=frozenset(self.config.users),
            )
        except asyncio.CancelledError:
            status = "cancelled"
            raise
        except Exception as exc:  # noqa: BLE001 - the row must never stay queued or running
            log.exception("build %s could not be run", build_id)
            status = await self._finish(build_id, "failure", f"internal error: {type(exc).__name__}: {exc}")
        finally:
            self.running.pop(build_id, None)
            self.hub.close(build_id, status)
            if workspace is not None:
                await asyncio.to_thread(shutil.rmtree, workspace, True)
            if repo is not None and not suspend.is_set():
                if self.notifications is not None:  # only starts a task: the build never waits for it
                    self.notifications.build_finished(repo.notify, build_id)
                await self._report(repo, sha, status, build_id, pipeline)
            self.wake()

    async def _one_build_per_file(self, build: q.BuildRow, facts, sha: str, workspace) -> str | None:
        """Each ``.conveyor/*.yml`` is its own pipeline: a build not yet bound to a file takes the
        first and queues one build per other file, at the same commit (``sha``: a manual build's
        branch may move meanwhile) and with the same trigger. Returns the file when the commit has
        several (it names the commit status), else None."""
        found = await asyncio.to_thread(find_pipeline_files, workspace)
        files = [path.relative_to(workspace).as_posix() for path in found]
        if len(files) < 2:
            return None
        if build.pipeline:
            return build.pipeline
        first, others = files[0], files[1:]
        instance = self.config.settings.instance

        def split(conn) -> None:
            q.set_pipeline_file(conn, build.id, first)
            for other in others:
                queue_build(conn, _order_of(build, facts, pipeline=other, sha=sha), instance)

        await self.store.awrite(split)
        self.wake()
        return first

    async def _resolve(self, mirror: Mirror, build: q.BuildRow) -> str:
        """A manual build names a branch or tag: find its commit and store it with the build."""
        sha = await asyncio.to_thread(mirror.resolve_sync, build.tag and f"refs/tags/{build.tag}" or
                                      f"refs/heads/{build.branch}")
        await self.store.awrite(lambda c: q.set_sha(c, build.id, sha))
        return sha

    async def _finish(self, build_id: int, status: str, reason: str) -> str:
        self.hub.open(build_id).publish("status", {"status": status, "reason": reason})
        await self.store.awrite(lambda c: q.finish_build(c, build_id, status, reason))
        return status

    async def _report(self, repo, sha, status, build_id, pipeline=None) -> None:
        if self.reporter is not None and sha:
            await self.reporter.report(repo, sha, status, build_id, pipeline)

    # -- what users ask for -------------------------------------------------------------------

    async def cancel(self, build_id: int, by: str) -> str:
        """Cancel a queued or running build; returns what happened in a word."""
        # The stored status first: a build's task outlives its final row by a moment (plugins,
        # cleanup), and a finished build is "finished", not "cancelling".
        if await self.store.aread(lambda c: q.status_of(c, build_id)) in q.FINISHED:
            return "finished"
        running = self.running.get(build_id)
        if running is not None:
            running.cancel.set()
            await self.store.awrite(lambda c: server_builds.request_cancel(c, build_id))
            return "cancelling"
        if await self.store.awrite(lambda c: server_builds.cancel_queued(c, build_id, f"cancelled by {by}")):
            return "cancelled"
        return "finished"

    async def submit(self, order: BuildOrder) -> int:
        """Queue a build (manual run or re-run) and wake the loop. These never supersede: a re-run of
        an older commit must not cancel a newer push."""
        build_id = await self.store.awrite(lambda c: queue_build(c, order, self.config.settings.instance))
        self.wake()
        return build_id

    async def rerun(self, build_id: int, by: str) -> int:
        old = await self.store.aread(lambda c: q.get_build(c, build_id))
        facts = await self.store.aread(lambda c: server_builds.facts(c, build_id))
        repo = facts["config_repo"] if facts else old.repo
        if self.config.repo(repo) is None:
            raise LookupError(f"build {old.label} is not of a configured repository; it cannot be re-run here")
        # The same pipeline file too: a re-run of one file's build does not start the others.
        return await self.submit(_order_of(old, facts, trigger=f"rerun:{build_id}", rerun_of=build_id))


def _order_of(build: q.BuildRow, facts, **changes) -> BuildOrder:
    """The order that asks for ``build`` again (``facts``: its server_builds row, if any), with
    ``changes``; never its delivery, which belongs to one build."""
    fields = dict(
        repo=facts["config_repo"] if facts else build.repo, event=build.event, trigger=build.trigger,
        ref=build.ref, branch=build.branch, tag=build.tag, sha=build.sha, message=build.message,
        author=build.author, params=build.params, pipeline=build.pipeline, repo_url=build.repo_url,
        before=build.before, target_branch=build.target_branch,  # so `when.changes` sees the same files
        fork=bool(facts["fork"]) if facts else False, pr_number=facts["pr_number"] if facts else None,
        rerun_of=facts["rerun_of"] if facts else None,
    )
    return BuildOrder(**{**fields, **changes})
