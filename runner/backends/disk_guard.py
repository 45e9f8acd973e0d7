"""The workspace size limit: a watcher per build that measures the workspace every few seconds and,
once it is past the limit, kills the steps running in it.

Without it a step could fill the runner's disk (the workspace volume lives on the host's root file
system). The backend says how to measure and how to stop (``measure``/``stop``); the guard decides
when, and remembers that it stopped something, so the step ends with the reason "the workspace grew
past 10 GiB" instead of a bare exit code 137. A workspace is only measured while a step may write
to it (a job is attached), and the pause between measures grows with what a measure costs (at most
a tenth of the time goes to measuring a huge tree).

For Docker the measure is ``du -sxk`` through an ``exec`` in a running job container (it works
against a remote engine and costs no extra container); it runs in the job's own image, so it needs
a ``du`` there, and a step that replaces ``du`` in its container can hide what it wrote: the limit
protects the host from runaway builds, not from a pipeline written to defeat it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import time
from collections.abc import Awaitable, Callable

__all__ = ["WorkspaceGuard", "format_size", "docker_guard", "local_guard"]

log = logging.getLogger("conveyor.disk")

INTERVAL = 2.0  # seconds between measures, at least
_MAX_SHARE = 0.1  # of the time spent measuring, at most


def format_size(size: int) -> str:
    """10737418240 -> '10 GiB', 1572864 -> '1.5 MiB'."""
    for unit, scale in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if size >= scale:
            return f"{size / scale:.1f}".removesuffix(".0") + f" {unit}"
    return f"{size} bytes"


class WorkspaceGuard:
    """One build's workspace under ``limit`` bytes. ``measure()`` gives the bytes in use (None: cannot
    tell now); ``stop()`` kills the steps that run in the workspace."""

    def __init__(self, limit: int, measure: Callable[[], Awaitable[int | None]],
                 stop: Callable[[], Awaitable[None]], interval: float = INTERVAL) -> None:
        self.limit, self.interval = limit, interval
        self._measure, self._stop = measure, stop
        self.stops = 0  # how often it stopped steps: a step that saw this grow was stopped by the guard
        self.attached: dict[str, str] = {}  # job container (or job key) -> its working directory
        self._task: asyncio.Task | None = None

    @property
    def reason(self) -> str:
        return f"the workspace grew past {format_size(self.limit)}"

    def attach(self, key: str, workdir: str) -> None:
        self.attached[key] = workdir
        if self._task is None and self.limit > 0:
            self._task = asyncio.get_running_loop().create_task(self._watch(), name="conveyor-workspace-guard")

    def detach(self, key: str) -> None:
        self.attached.pop(key, None)

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def _watch(self) -> None:
        pause = self.interval
        while True:
            await asyncio.sleep(pause)
            if not self.attached:
                continue
            started = time.monotonic()
            try:
                used = await self._measure()
                if used is not None and used > self.limit:
                    self.stops += 1
                    log.warning("%s (%s used); stopping its steps", self.reason, format_size(used))
                    await self._stop()
            except Exception as exc:  # noqa: BLE001 - a failed measure must not end the watching
                log.warning("could not measure the workspace (%s); trying again", exc)
            pause = max(self.interval, (time.monotonic() - started) / _MAX_SHARE)


def _parse_du(text: str) -> int | None:
    """Kibibytes from ``du -sk`` output ('5124\t/workspace') as bytes; None when it is not that."""
    first = text.split(None, 1)[0] if text.strip() else ""
    return int(first) * 1024 if first.isdigit() and len(first) <= 18 else None  # output of a user's image


def docker_guard(engine, limit: int) -> WorkspaceGuard:
    """A guard measuring through ``engine`` (runner/engine) in one of the attached containers."""
    from runner.backends.docker_blocking import signal_steps  # not for the local backend
    from runner.engine import errors as derrors

    guard: WorkspaceGuard

    def blocking_du(cid: str, workdir: str) -> int | None:
        try:
            exec_id = engine.api.exec_create(cid, ["du", "-sxk", workdir])["Id"]
            return _parse_du(engine.api.exec_start(exec_id).decode(errors="replace"))
        except derrors.APIError as exc:
            if isinstance(exc, derrors.NotFound) or exc.status_code == 409:
                return None  # its job ended meanwhile (gone, or not running): another one measures
            raise

    async def measure() -> int | None:
        for cid, workdir in list(guard.attached.items()):  # the volume is shared: any one will do
            used = await engine.call(blocking_du, cid, workdir)
            if used is not None:
                return used
        return None

    async def stop() -> None:
        await asyncio.gather(*(engine.call(signal_steps, engine, cid, "KILL")
                               for cid in list(guard.attached)), return_exceptions=True)

    guard = WorkspaceGuard(limit, measure, stop)
    return guard


def local_guard(workspace: str, limit: int, groups: Callable[[], set[int]]) -> WorkspaceGuard:
    """A guard measuring the directory itself; ``groups()`` gives the running steps' process groups."""

    def blocking_du() -> int | None:
        done = subprocess.run(["du", "-sxk", workspace], capture_output=True, text=True, timeout=600)
        return _parse_du(done.stdout)

    async def measure() -> int | None:
        return await asyncio.to_thread(blocking_du)

    async def stop() -> None:
        for group in groups():
            try:
                os.killpg(group, signal.SIGKILL)
            except ProcessLookupError:
                pass

    return WorkspaceGuard(limit, measure, stop)
