"""The Swarm backend: each job runs as a one-shot Swarm service (one replica, restart policy
none: its task runs once) on the swarm whose manager the runner talks to (DOCKER_HOST, or the local engine), so Swarm's scheduler
places and queues jobs over the nodes by their reservations and ``runs_on`` labels.

Per build: the workspace volume ``conveyor-<build>-ws`` on the manager's own node (the *workspace
node*), filled in ``setup`` as the Docker backend fills it; stage actions read it the same way.
Per job: a service ``conveyor-<build>-<job>-<n>-r<k>`` whose task runs a driver (swarm_driver.py,
passed as a Swarm secret with the step scripts, their env and the job's secrets) that runs the job's
steps in order and frames their output; ``exec_step`` reads the frames from the service's log stream
through the manager, never from a worker's engine. Where a job runs:

- no ``runs_on``, or ``runs_on`` labels the workspace node carries: on the workspace node
  (``node.id == <it>``), with the build's volume mounted, so jobs share files as on Docker;
- ``runs_on`` labels only other nodes carry: there, in a fresh directory of the task's container
  that gets the checkout (as gzip chunks in Swarm secrets) before its first step. It sees no files of
  earlier jobs, and keeps none for later ones: artifacts and caches are refused for it, saying so.

A job's steps are known when it starts, but their env (the secrets) comes with the first
``exec_step``: that call starts the service with the step and every later step of the job (a *run*,
swarm_run.py), and each ``exec_step`` consumes its step's frames. A step the run did not plan as
next (a retry, a step outside the plan) ends the run and starts a new one at that step; on the
workspace node it sees the files earlier steps left, away from it a fresh checkout. A step stopped
early (timeout, cancel, close), a node that goes down (the step ends ``interrupted``, naming the
node) and ``stop_job`` remove the service, which stops its task; ``teardown`` removes every
service, secret, volume and helper container of the build (by the ``io.conveyor.job-resource``
label, as the Docker sweeps).

Resources: ``Settings.job_cpus``/``job_memory`` are both the task's limits and its reservations, so
the scheduler never puts more jobs on a node than it can hold and queues the rest (pending tasks).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runner.backends import docker_blocking as blocking
from runner.backends import swarm_blocking as sb
from runner.backends.base import Backend, BuildRef, JobHandle, StepExit, Workspace
from runner.backends.docker import _slug
from runner.backends.pump import OutputPump, uncancelled
from runner.backends.swarm_driver import FrameReader, driver_script, new_nonce
from runner.backends.swarm_placement import placement
from runner.backends.swarm_run import Place, Run, expects, plan_steps, service_template, step_frames
from runner.engine import types as dtypes
from runner.engine.containers import ensure_image
from runner.engine.engine import Engine, default_engine
from runner.engine.labels import LABEL_BUILD, LABEL_INSTANCE, job_resource, labels_for
from runner.engine.sweeps import kept_by, remove_job_resources, sweep_periodically
from runner.engine.workspace import create_volume, fill_volume, volume_name
from runner.errors import BackendError
from runner.plan import Job, Step
from runner.settings import Settings

__all__ = ["SwarmBackend"]

log = logging.getLogger("conveyor.swarm")


@dataclass
class _Build:
    ref: BuildRef
    labels: dict[str, str]
    volume: str
    jobs: int = 0
    seed: list[bytes] | None = None  # the checkout in secret-sized gzip chunks, made when first needed


class SwarmBackend(Backend):
    name = "swarm"

    def __init__(self, settings: Settings | None = None, grace: float = 5.0, engine: Engine | None = None) -> None:
        self.settings = settings or Settings()
        self.grace = grace
        self.engine = engine or default_engine(self.settings)
        self._builds: dict[str, _Build] = {}
        self._home: str | None = None  # the manager's node: the workspace node of every build
        self._images_ok: set[str] = set()
        self._streams: dict[str, Any] = {}  # service id -> its log stream, to close it

    async def _call(self, fn, *args):
        return await self.engine.call(fn, self.engine, *args)

    # -- the contract ------------------------------------------------------------------------

    async def available(self) -> None:
        if self._home is None:
            self._home = await self._call(sb.manager_node)

    async def setup(self, build: BuildRef) -> None:
        if build.id in self._builds:
            return
        await self.available()
        labels = labels_for(build.id, build.instance, max(self.settings.resource_ttl, build.lifetime or 0),
                            build.labels.items())
        state = _Build(build, labels, volume=volume_name(build.id))
        self._builds[build.id] = state
        engine = self.engine

        async def workspace() -> None:
            await engine.call(create_volume, engine, state.volume, job_resource(labels, state.volume))
            await engine.call(fill_volume, engine, state.volume, build.source, labels)

        await uncancelled(workspace())

    def workspace(self, build: BuildRef) -> Workspace:
        state = self._builds.get(build.id)
        if state is None:
            raise BackendError("workspace before setup: the executor must call setup(build) first")
        return Workspace(volume=state.volume)

    async def start_job(self, build: BuildRef, job: Job) -> JobHandle:
        state = self._builds.get(build.id)
        if state is None:
            raise BackendError("start_job before setup: the executor must call setup(build) first")
        _refuse_what_swarm_cannot_run(job)
        if job.image not in self._images_ok:  # a clear error now for an image the manager lacks
            await self.engine.call(ensure_image, self.engine, job.image)
            self._images_ok.add(job.image)
        state.jobs += 1
        name = f"conveyor-{build.id}-{_slug(job.name)[:24]}-{state.jobs}"
        nodes = await self._call(sb.nodes)
        home, constraints = placement(nodes, self._home, job.runs_on)
        s = self.settings
        place = Place(name, home, constraints, nano_cpus=min(int(s.job_cpus * 1e9), max(n.nano_cpus for n in nodes)),
                      memory=min(int(s.job_memory), max(n.memory for n in nodes)))
        if not home:
            if state.seed is None:
                state.seed = await asyncio.to_thread(sb.seed_chunks, build.source)
            await uncancelled(self._seed(place, state))
        return JobHandle(build, job, data=place)

    async def _seed(self, place: Place, state: _Build) -> None:
        for i, chunk in enumerate(state.seed):
            secret = f"{place.name}-src{i}"
            place.seed_ids.append(await self._call(sb.create_secret, secret, chunk, state.labels))
            place.seed.append(secret)

    def exec_step(self, handle: JobHandle, step: Step, env: dict[str, str]) -> AsyncIterator[bytes | StepExit]:
        return self._exec_step(handle, step, env)

    async def _exec_step(self, handle: JobHandle, step: Step, env: dict[str, str]) -> AsyncIterator[bytes | StepExit]:
        place: Place | None = handle.data
        if place is None or place.stopped:
            raise BackendError(f"job {handle.job.name!r} is not started (or already stopped)")
        run = place.run
        if run is None or not expects(run, step, env):
            await uncancelled(self._end_run(place))
            run = place.run = await uncancelled(self._start_run(handle, place, step, env))
        index = run.consumed
        run.consumed += 1
        finished = False
        try:
            async for item in step_frames(run, index, self._task_state):
                if isinstance(item, StepExit):
                    finished = True
                    if item.code != 0 or run.consumed == len(run.planned):
                        run.over = True
                        self._close_stream(run)
                yield item
        finally:
            if not finished:  # stopped early, or the node went: nothing of this run may go on
                await uncancelled(self._end_run(place))

    async def _task_state(self, service: str) -> sb.TaskState | None:
        return await self._call(sb.task_state, service)

    async def _start_run(self, handle: JobHandle, place: Place, step: Step, env: dict[str, str]) -> Run:
        job, state = handle.job, self._builds[handle.build.id]
        planned = plan_steps(job, step, env)
        nonce = new_nonce()
        name = f"{place.name}-r{next(place.runs)}"
        script = driver_script(nonce, job.workdir, planned, place.seed).encode()
        if len(script) > sb.SECRET_LIMIT:
            raise BackendError(f"job {job.name!r}: its steps and env come to {len(script) >> 10} KiB, over the "
                               f"{sb.SECRET_LIMIT >> 10} KiB a Swarm secret holds; split the job")
        secret = await self._call(sb.create_secret, f"{name}-driver", script, state.labels)
        labels = dict(state.labels, **{"io.conveyor.job": job.name})
        try:
            template = service_template(place, job, state.volume, name, secret, labels, self.settings.job_pids,
                                        self.grace)
            # Not ``replicated-job``: before Docker 24 removing a job service neither stops nor removes
            # its task (moby/moby#44312), so a cancelled job ran on in a worker. A replicated service
            # whose task never restarts runs once too, and its removal stops the task on any node.
            mode = dtypes.ServiceMode("replicated", replicas=1)
            service = await self._call(sb.create_service, name, template, mode, labels)
        except BaseException:
            await self._call(sb.remove_secret, secret)
            raise
        pump = OutputPump(asyncio.get_running_loop())
        follower = asyncio.ensure_future(self._call(sb.follow_logs, service, pump.push, self._streams))
        return Run(service, secret, planned, FrameReader(nonce), pump, follower, name=name)

    async def _end_run(self, place: Place) -> None:
        """Remove the current run's service (its task stops) and secret, and its container on the
        workspace node (after its grace to stop), so no step of it still writes there; away from
        it, wait until the manager says the task is gone (its node's agent stopped and removed it)."""
        run, place.run = place.run, None
        if run is None:
            return
        run.pump.close()
        self._close_stream(run)
        await self._call(sb.remove_service, run.service)
        if place.home:
            await self._call(sb.remove_task_containers, run.service, self.grace)
        else:
            await self._call(sb.wait_tasks_gone, run.service, run.name, self.grace + 10.0)
        await self._call(sb.remove_secret, run.secret)
        await asyncio.wait([run.follower], timeout=5.0)

    def _close_stream(self, run: Run) -> None:
        stream = self._streams.pop(run.service, None)
        if stream is not None:
            with contextlib.suppress(Exception):
                stream.close()

    async def export_files(self, handle: JobHandle, globs: Sequence[str], dest: Path, limit: int = 0,
                           max_files: int = 0) -> int:
        volume = self._volume_of(handle, "keep its files (artifacts, caches, reports)")
        engine, workdir = self.engine, handle.job.workdir

        def export(cid: str) -> int:
            return blocking.export(engine, cid, workdir, list(globs), dest, limit, max_files)

        return await self._call(sb.with_workspace_container, volume, workdir, self._builds[handle.build.id].labels,
                                f"{handle.data.name}-files", export)

    async def import_files(self, handle: JobHandle, archive: Path) -> None:
        volume = self._volume_of(handle, "receive files (needed artifacts, caches)")
        engine, workdir = self.engine, handle.job.workdir

        def put(cid: str) -> None:
            blocking.import_(engine, cid, workdir, archive)

        await self._call(sb.with_workspace_container, volume, workdir, self._builds[handle.build.id].labels,
                         f"{handle.data.name}-files", put)

    def _volume_of(self, handle: JobHandle, what: str) -> str:
        place: Place | None = handle.data
        state = self._builds.get(handle.build.id)
        if place is None or place.stopped or state is None:
            raise BackendError(f"job {handle.job.name!r} is not started: files move between start_job and stop_job")
        if not place.home:
            raise BackendError(f"job {handle.job.name!r} runs away from the build's workspace node (runs_on "
                               f"{', '.join(handle.job.runs_on)}), so it cannot {what}; label the workspace node "
                               "too, or move the files in a job without runs_on (docs/backends.md)")
        return state.volume

    async def stop_job(self, handle: JobHandle) -> None:
        place: Place | None = handle.data
        if place is None or place.stopped:
            return
        place.stopped = True
        await self._end_run(place)
        for sid in place.seed_ids:
            await self._call(sb.remove_secret, sid)

    async def teardown(self, build: BuildRef) -> None:
        self._builds.pop(build.id, None)
        await self.sweep_build(build.id)

    # -- sweeps ------------------------------------------------------------------------------

    async def sweep_build(self, build_id: str) -> int:
        """Remove every service, secret, volume and helper container of one build."""
        selector = f"{LABEL_BUILD}={build_id}"
        removed = await self._call(sb.remove_swarm_resources, selector)
        return removed + await self._call(remove_job_resources, selector)

    async def sweep(self, keep: Iterable[str] | None = None) -> int:
        """This instance's leftovers: builds not running here that are expired or not in ``keep``."""
        kept, selector = kept_by(self._builds, keep), f"{LABEL_INSTANCE}={self.settings.instance}"
        removed = await self._call(sb.remove_swarm_resources, selector, kept)
        return removed + await self._call(remove_job_resources, selector, kept)

    async def sweep_periodically(self, interval: float = 600.0, keep=None) -> None:
        await sweep_periodically(self.sweep, interval, keep)

    def close(self) -> None:
        self.engine.close()


def _refuse_what_swarm_cannot_run(job: Job) -> None:
    if job.services:
        raise BackendError(f"job {job.name!r} has services, which the swarm backend does not run yet; "
                           "run this repository with backend: docker (docs/backends.md)")
    if job.privileged or job.volumes:
        raise BackendError(f"job {job.name!r} asks for privileged or host volumes, which Swarm services cannot "
                           "have; run this repository with backend: docker")
