"""The Docker backend (the default): one ephemeral container per job, its steps fed to its shell.

Per build: a workspace volume ``conveyor-<build>-ws`` (runner/engine/workspace.py names, makes and
fills it) and a bridge network, leased from the engine's pool of idle ones or, with
``Settings.network_pool`` 0, made as ``conveyor-<build>`` (runner/backends/build_network.py).
Per job: a container ``conveyor-<build>-<job>-<n>`` whose PID 1 is a shell reading the job's steps
from its stdin, attached once (runner/backends/job_shell.py); each step runs as ``sh -e -c <run>``
with the step's env in the job's working directory, where the workspace volume is mounted.
``setup`` creates the volume, leases the network and starts filling the volume from the checkout with
``put_archive`` into a container that is created and never started; the fill runs beside the first
jobs' container starts, and ``start_job`` and ``workspace_ready`` return only once it is done (so a
step, or a build stage that comes first, sees the whole checkout). ``workspace(build)`` names the
volume to whatever reads it outside a job.

Containers are not privileged (unless the plan says so for a trusted repo), drop every capability
but the few a shell needs, run with ``no-new-privileges``, pids/memory/CPU limits from Settings, no
Docker socket and no host network; the workspace's size is watched against ``Settings.workspace_limit``
(runner/backends/disk_guard.py). Everything carries the labels ``io.conveyor.build``,
``io.conveyor.instance``, ``io.conveyor.expires`` and ``io.conveyor.job-resource`` (the resource's own
name); ``sweep`` and ``sweep_build`` remove only what carries the last one (runner/engine/sweeps.py).

A step is stopped (timeout, cancel, early close) by signalling every process of its container except
PID 1 (``kill -TERM -1`` in an exec; ``-KILL`` after ``grace``); the shell then reports the step's
end. Every engine call crosses into threads through ``Engine.call`` (runner/engine/engine.py), the
one seam; the blocking calls of a job are in docker_blocking.py, the engine-level ones in
runner/engine/.
"""

from __future__ import annotations

import asyncio
import functools
import os
import re
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runner.backends.base import Backend, BuildRef, JobHandle, StepExit, Workspace
from runner.backends.build_network import BuildNetwork
from runner.backends.disk_guard import WorkspaceGuard, docker_guard
from runner.backends import job_shell
from runner.backends.job_shell import StepEnd
from runner.backends.pump import OutputPump, uncancelled
from runner.backends import docker_blocking as blocking
from runner.backends.services import Sidecars
from runner.engine.containers import create_container, ensure_image, remove_container, start_container
from runner.engine.engine import Engine, default_engine
from runner.engine.labels import LABEL_BUILD, LABEL_INSTANCE, job_resource, labels_for
from runner.engine.sweeps import kept_by, remove_job_resources, sweep_periodically
from runner.engine.workspace import create_volume, fill_volume, volume_name
from runner.errors import BackendError
from runner.plan import Job, Step
from runner.settings import Settings

__all__ = ["DockerBackend", "SHELL_CAPS"]

# What a shell and ordinary build tools need as root inside a container; everything else is dropped.
SHELL_CAPS = ("CHOWN", "DAC_OVERRIDE", "FOWNER", "SETUID", "SETGID", "KILL", "NET_BIND_SERVICE")
# The engine keeps no log of a job's output: the shell's stream carries it, once (runner/store/ keeps it).
NO_LOG = {"Type": "none", "Config": {}}
GONE = "the job's container went away during the step (removed, or its shell killed): see `docker events`"


@dataclass
class _Build:
    ref: BuildRef
    labels: dict[str, str]
    volume: str
    network: BuildNetwork
    jobs: int = 0
    guard: WorkspaceGuard | None = None  # the workspace size limit (runner/backends/disk_guard.py)
    filled: asyncio.Future[None] | None = None  # the workspace fill, begun in setup
    # The network's lease, begun in setup; held here because the loop keeps only a weak reference
    # to a task, and start_job and the teardown wait for the lease through the BuildNetwork.
    leased: asyncio.Future[str] | None = None


@dataclass
class _Shell:
    """The job's shell: its attached stream, the thread reading it, and output not yet a step's."""
    stream: Any
    pump: OutputPump
    reader: asyncio.Future[None] | None = None
    rest: bytes = b""  # output after the last step's end (a process it left running), for the next
    broken: str | None = None  # why no further step can run in it


@dataclass
class _Container:
    id: str | None
    oom_kills: int = 0  # the container's OOM kill count after its last step: a new one is this step's
    services: Sidecars | None = None  # the job's services (runner/backends/services.py)
    shell: _Shell | None = None


class DockerBackend(Backend):
    name = "docker"

    def __init__(self, settings: Settings | None = None, grace: float = 5.0, engine: Engine | None = None) -> None:
        self.settings = settings or Settings()
        self.grace = grace
        self.engine = engine or default_engine(self.settings)
        self._builds: dict[str, _Build] = {}
        self._images_ok: set[str] = set()
        # The image check in flight, per image: jobs starting together share it instead of N checks.
        self._image_checks: dict[str, asyncio.Future[None]] = {}
        self._cpus: float | None = None
        self._probe: asyncio.Future[dict] | None = None  # the engine probe in flight (see available)

    # -- the contract ------------------------------------------------------------------------

    async def available(self) -> None:
        if self._cpus is None:
            # One probe at a time: `conveyor run` begins it early, and the executor's check shares it.
            if self._probe is None or self._probe.done():
                self._probe = asyncio.ensure_future(self.engine.call(self.engine.ping))
            info = await asyncio.shield(self._probe)
            self._cpus = float(info.get("NCPU") or os.cpu_count() or 1)

    async def setup(self, build: BuildRef) -> None:
        if build.id in self._builds:
            return
        labels = labels_for(build.id, build.instance, max(self.settings.resource_ttl, build.lifetime or 0),
                            build.labels.items())
        state = _Build(build, labels, volume=volume_name(build.id),
                       network=BuildNetwork(self.engine, build.id, labels, self.settings.network_pool),
                       guard=docker_guard(self.engine, self.settings.workspace_limit))
        self._builds[build.id] = state
        engine = self.engine
        for image in build.images:  # checked beside the workspace fill; start_job awaits (and reports) it
            self._check_image(image)

        await uncancelled(asyncio.gather(
            engine.call(create_volume, engine, state.volume, job_resource(labels, state.volume)),
            state.network.likely(),
        ))
        # The fill needs only the volume, and the network's lease is confirmed only before a
        # container starts: both run while the first jobs' containers are created.
        state.filled = asyncio.ensure_future(
            engine.call(fill_volume, engine, state.volume, build.source, labels))
        state.leased = asyncio.ensure_future(state.network.name())
        state.leased.add_done_callback(lambda done: done.cancelled() or done.exception())  # start_job reports it

    async def idle(self, build: BuildRef) -> None:
        """The build waits (an approval): its pooled network goes back to the pool, so a waiting build
        holds no container and no network; the next ``start_job`` leases one again."""
        state = self._builds.get(build.id)
        if state is not None:
            await state.network.idle()

    async def workspace_ready(self, build: BuildRef) -> None:
        state = self._builds.get(build.id)
        if state is not None and state.filled is not None:
            await asyncio.shield(state.filled)  # shared: one waiter cancelled must not cancel the fill

    def workspace(self, build: BuildRef) -> Workspace:
        state = self._builds.get(build.id)
        if state is None:
            raise BackendError("workspace before setup: the executor must call setup(build) first")
        return Workspace(volume=state.volume)

    async def start_job(self, build: BuildRef, job: Job) -> JobHandle:
        state = self._builds.get(build.id)
        if state is None:
            raise BackendError("start_job before setup: the executor must call setup(build) first")
        await self._ensure_image(job.image)
        network = await state.network.likely()  # confirmed before the container starts
        state.jobs += 1
        name = f"conveyor-{build.id}-{_slug(job.name)}-{state.jobs}"
        create, host = self._container_spec(state, job, name, network)
        handle = JobHandle(build, job, data=_Container(None))
        if job.services:
            handle.data.services = Sidecars(self.engine, name, job.services, create["labels"], host, SHELL_CAPS,
                                            self._ensure_image, self.grace, self.settings.network_pool)
            await self._start_with_services(handle, state, build, job, create, host)
            return handle
        # Shielded: a container created after a cancellation would escape the teardown's sweep.
        handle.data.id = await uncancelled(self._create_and_start(create, host, state.network))
        try:
            await self._attach_while_filling(handle.data, build)
        except BaseException:
            await uncancelled(self.stop_job(handle))
            raise
        state.guard.attach(handle.data.id, job.workdir)
        return handle

    async def _start_with_services(self, handle: JobHandle, state: _Build, build: BuildRef, job: Job,
                                   create: dict, host: dict) -> None:
        """Start the job's container, on its services' network, together with its services; return
        once they are ready. A start that fails or is cancelled removes what it made: no stop_job
        follows it."""
        container, services = handle.data, handle.data.services

        async def job_container() -> None:  # run once the services' network is there
            # Shielded: a container created after a cancellation would escape the stop_job below.
            container.id = await uncancelled(self._create_and_start(create, dict(host, network_mode=services.network)))

        try:
            await services.start(job_container())
            await self._attach_while_filling(container, build)
            services.watch(container.id)
            state.guard.attach(container.id, job.workdir)
        except BaseException:
            await uncancelled(self.stop_job(handle))
            raise

    async def _attach_while_filling(self, container: _Container, build: BuildRef) -> None:
        """Attach to the job's shell while the workspace fill ends (no step before the whole checkout
        is there). The attach always runs to its end, also when the fill fails or the start is
        cancelled, so that the stop_job that follows finds, and closes, the stream it opened."""
        attach = asyncio.ensure_future(uncancelled(self._attach(container)))
        try:
            await self.workspace_ready(build)
        except BaseException:
            await uncancelled(asyncio.wait([attach]))
            if not attach.cancelled():
                attach.exception()  # retrieved: the fill's failure (or the cancel) is the one to report
            raise
        await attach

    async def _attach(self, container: _Container) -> None:
        """Attach to the job's shell and start reading its output, for the steps to come."""
        engine = self.engine
        stream = await engine.call(blocking.attach_shell, engine, container.id)
        shell = container.shell = _Shell(stream, OutputPump(asyncio.get_running_loop()))
        shell.reader = asyncio.ensure_future(engine.call(blocking.read_shell, stream, shell.pump.push))

    async def _ensure_image(self, image: str) -> None:
        if image not in self._images_ok:
            # Shielded: one waiter cancelled must not cancel the check the others share.
            await asyncio.shield(self._check_image(image))

    def _check_image(self, image: str) -> asyncio.Future[None]:
        """The check of ``image`` in flight, started if none is: jobs starting together share one."""
        check = self._image_checks.get(image)
        if check is None:
            check = self._image_checks[image] = asyncio.ensure_future(
                self.engine.call(ensure_image, self.engine, image))
            check.add_done_callback(functools.partial(self._image_checked, image))
        return check

    def _image_checked(self, image: str, check: asyncio.Future[None]) -> None:
        # Only a check that passed is kept: after a failure the next job asks again (it may be loaded since).
        self._image_checks.pop(image, None)
        if not check.cancelled() and check.exception() is None:
            self._images_ok.add(image)

    async def _create_and_start(self, create: dict, host: dict, network: BuildNetwork | None = None) -> str:
        """Create the container and start it; on ``network``'s likely network (``host``'s), once its
        lease is confirmed, or re-created on the one leased instead."""
        engine = self.engine
        cid = await engine.call(create_container, engine, create, host)
        if network is not None:
            try:
                leased = await network.confirm()
            except BaseException:
                await uncancelled(engine.call(remove_container, engine, cid))
                raise
            if leased != host["network_mode"]:  # another runner took that one first
                await engine.call(remove_container, engine, cid)
                cid = await engine.call(create_container, engine, create, dict(host, network_mode=leased))
        await engine.call(start_container, engine, cid)
        return cid

    async def exec_step(self, handle: JobHandle, step: Step, env: dict[str, str]) -> AsyncIterator[bytes | StepExit]:
        container: _Container = handle.data
        if container is None or container.id is None or container.shell is None:
            raise BackendError(f"job {handle.job.name!r} has no running container")
        if (death := _service_death(container)) is not None:  # no step runs without its services
            yield death.notice()
            yield StepExit(-1, reason=death.reason)
            return
        shell, engine = container.shell, self.engine
        if shell.broken is not None:
            raise BackendError(shell.broken)
        marker = job_shell.new_marker()
        try:
            command = job_shell.step_command(step.run, env, marker)
        except ValueError as exc:
            raise BackendError(f"{exc}; remove it from the step {step.name!r}") from None
        end = StepEnd(marker, before=shell.rest)
        shell.rest = b""
        guard = self._builds[handle.build.id].guard if handle.build.id in self._builds else None
        stops = guard.stops if guard else 0
        code = None
        send = blocking.StepSend(shell.stream, command)
        try:
            try:
                await engine.call(send)
            except BackendError as exc:
                shell.broken = str(exc)
                raise
            while code is None:
                data = await shell.pump.get()
                if data is None:  # the shell's output ended: its container is gone
                    shell.broken = GONE
                    break
                out, code = end.feed(data)
                if out:
                    yield out
            if code is None and (held := end.flush()):
                yield held
            shell.rest = end.rest
            oom = False
            if end.oom_kills is not None:  # the count when the step ended: a kill meanwhile was its own
                oom = code not in (None, 0) and end.oom_kills > container.oom_kills
                container.oom_kills = end.oom_kills
            reason = "out of memory" if oom else None
            if code is None:
                code, reason = -1, GONE
            if guard is not None and guard.stops > stops:  # killed by the workspace size limit
                reason = guard.reason
            if (death := _service_death(container)) is not None:  # its watcher stopped the step
                yield death.notice()
                # Failed even when the step won the race and exited 0: it ran without its service.
                code, reason = code or -1, death.reason
            yield StepExit(code, oom_killed=oom, reason=reason)
        finally:
            # Stopped early (timeout, cancel, or closed): stop the step, if its command went out.
            if code is None and shell.broken is None and send.drop():
                await uncancelled(self._stop_step(container.id, shell, end))

    async def export_files(self, handle: JobHandle, globs: Sequence[str], dest: Path, limit: int = 0,
                           max_files: int = 0) -> int:
        cid = self._container_id(handle)
        return await self.engine.call(blocking.export, self.engine, cid, handle.job.workdir, list(globs), dest,
                                      limit, max_files)

    async def import_files(self, handle: JobHandle, archive: Path) -> None:
        cid = self._container_id(handle)
        await self.engine.call(blocking.import_, self.engine, cid, handle.job.workdir, archive)

    @staticmethod
    def _container_id(handle: JobHandle) -> str:
        container: _Container | None = handle.data
        if container is None or container.id is None:
            raise BackendError(f"job {handle.job.name!r} has no container: files move between start_job and stop_job")
        return container.id

    async def stop_job(self, handle: JobHandle) -> None:
        container: _Container | None = handle.data
        if container is None:
            return
        cid, container.id = container.id, None
        if cid is not None:
            state = self._builds.get(handle.build.id)
            if state is not None:
                state.guard.detach(cid)
        shell, container.shell = container.shell, None
        if shell is not None:
            shell.stream.close()  # ends the reader thread
            shell.pump.close()
        remove = self.engine.call(remove_container, self.engine, cid) if cid is not None else None
        if container.services is not None:
            await container.services.remove(also=remove)
        elif remove is not None:
            await remove
        if shell is not None and shell.reader is not None:
            await asyncio.wait([shell.reader], timeout=5.0)

    async def teardown(self, build: BuildRef) -> None:
        state = self._builds.pop(build.id, None)
        if state is not None:
            await state.guard.close()
            await state.network.settle()  # a lease taken after the sweep would outlive the build
            if state.filled is not None:  # a fill still running could leave its container after the sweep
                await asyncio.wait([state.filled])
                if not state.filled.cancelled():
                    state.filled.exception()  # retrieved: the jobs that needed it have reported it
        await self.sweep_build(build.id)  # ends the network's lease too
        if state is not None:
            await state.network.trim()

    # -- sweeps ------------------------------------------------------------------------------

    async def sweep_build(self, build_id: str) -> int:
        """Remove every container, network and volume of one build (say, one a `kill -9` left)."""
        return await self.engine.call(remove_job_resources, self.engine, f"{LABEL_BUILD}={build_id}")

    async def sweep(self, keep: Iterable[str] | None = None) -> int:
        """Remove this instance's leftovers: resources of builds not running in this backend that are
        expired, or, when ``keep`` (the builds alive elsewhere) is given, not in it."""
        return await self.engine.call(remove_job_resources, self.engine, f"{LABEL_INSTANCE}={self.settings.instance}",
                                      kept_by(self._builds, keep))

    async def sweep_periodically(self, interval: float = 600.0, keep=None) -> None:
        """Sweep now and every ``interval`` seconds (``keep``: a callable giving the live build ids)."""
        await sweep_periodically(self.sweep, interval, keep)

    def close(self) -> None:
        self.engine.close()

    # -- helpers -----------------------------------------------------------------------------

    def _container_spec(self, state: _Build, job: Job, name: str, network: str) -> tuple[dict, dict]:
        s = self.settings
        cpus = min(s.job_cpus, self._cpus or os.cpu_count() or 1)
        labels = job_resource(dict(state.labels, **{"io.conveyor.job": job.name}), name)
        create = dict(image=job.image, name=name, labels=labels, working_dir=job.workdir, stdin_open=True,
                      entrypoint=job_shell.SHELL[:1], command=job_shell.SHELL[1:], hostname=_slug(job.name)[:63])
        host = dict(
            binds=[f"{state.volume}:{job.workdir}:rw", *job.volumes],
            network_mode=network,
            privileged=job.privileged,
            cap_drop=None if job.privileged else ["ALL"],
            cap_add=None if job.privileged else list(SHELL_CAPS),
            security_opt=["no-new-privileges"],
            pids_limit=s.job_pids,
            mem_limit=s.job_memory,
            memswap_limit=s.job_memory,  # no swap: a job over its memory is OOM-killed, not slowed
            nano_cpus=int(cpus * 1e9),
            log_config=NO_LOG,
        )
        return create, host

    async def _stop_step(self, cid: str | None, shell: _Shell, end: StepEnd) -> None:
        """SIGTERM the step's processes, SIGKILL after grace, until the shell reports the step's end;
        a shell that never does can run no further step."""
        engine = self.engine
        if cid is not None:
            for sig, wait in (("TERM", self.grace), ("KILL", 5.0)):
                await engine.call(blocking.signal_steps, engine, cid, sig)
                try:
                    await asyncio.wait_for(_until_end(shell, end), wait)
                    return
                except asyncio.TimeoutError:
                    pass
        shell.broken = "the job's container did not stop its last step: no further step can run in it"
        shell.stream.close()


async def _until_end(shell: _Shell, end: StepEnd) -> None:
    """Read (and drop) the stopped step's output until its end, or the shell's."""
    while (data := await shell.pump.get()) is not None:
        if end.feed(data)[1] is not None:
            shell.rest = end.rest
            return
    shell.broken = GONE


def _service_death(container: _Container):
    return container.services.death if container.services is not None else None


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:40] or "job"
