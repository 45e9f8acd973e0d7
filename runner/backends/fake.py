"""A scripted backend: executor tests say what each step prints, how long it takes and how it ends.

Nothing runs. A step is looked up in ``script`` by its ``run`` text, then by its name; a step not in
the script prints nothing and succeeds. Every call is recorded in ``calls`` so tests can check the
order and that ``stop_job``/``teardown`` always came. A job's services are only recorded
(``("services", job, names)``); ``fail_start={job: ServiceError(..., log=...)}`` plays one that
never became ready.

``FakeStep.output`` may be a callable taking a ``FakeRun`` (env, workdir, the build's simulated
workspace, the attempt number) so a script can react to what the executor handed over.
"""

from __future__ import annotations

import asyncio
import io
import tarfile
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from runner.backends import files
from runner.backends.base import Backend, BuildRef, JobHandle, StepExit, Workspace
from runner.errors import BackendError
from runner.plan import Job, Step

__all__ = ["FakeBackend", "FakeStep", "FakeRun"]


@dataclass
class FakeRun:
    """What a scripted step sees."""

    job: Job
    step: Step
    env: dict[str, str]
    workdir: str
    workspace: dict[str, str]  # shared by the jobs of one build, like a real workspace volume
    attempt: int  # 1 for the first run of this step in this job, 2 for its first retry, ...


@dataclass
class FakeStep:
    output: Sequence[bytes] | Callable[[FakeRun], Sequence[bytes]] = ()
    exit: int | Sequence[int] = 0  # a sequence gives the exit of attempt 1, 2, ... (last repeats)
    delay: float = 0.0  # seconds before the exit (after the output)
    chunk_delay: float = 0.0  # seconds between two output chunks
    oom: bool = False
    interrupted: int | Sequence[int] = ()  # attempts (1, 2, ...) that end interrupted, as by a dying node


@dataclass
class FakeBackend(Backend):
    script: Mapping[str, FakeStep] = field(default_factory=dict)
    fail_available: Exception | None = None
    fail_setup: Exception | None = None
    fail_start: Mapping[str, Exception] = field(default_factory=dict)  # job name -> error
    start_delay: float = 0.0
    grace: float = 0.05
    name: str = "fake"
    calls: list[tuple] = field(default_factory=list)
    running: int = 0  # jobs started and not yet stopped
    peak_running: int = 0
    stopped_steps: list[str] = field(default_factory=list)  # steps stopped early (timeout, cancel)
    workspaces: dict[str, dict[str, str]] = field(default_factory=dict)

    async def available(self) -> None:
        self.calls.append(("available",))
        if self.fail_available:
            raise self.fail_available

    async def setup(self, build: BuildRef) -> None:
        self.calls.append(("setup", build.id))
        if self.fail_setup:
            raise self.fail_setup
        # The workspace starts as the checkout's text files, like a real workspace filled from it.
        files = {}
        for path in sorted(build.source.rglob("*")) if build.source.is_dir() else ():
            if path.is_file() and ".git" not in path.relative_to(build.source).parts:
                files[str(path.relative_to(build.source))] = path.read_text(errors="replace")
        self.workspaces[build.id] = files

    def workspace(self, build: BuildRef) -> Workspace:
        # Steps write only into the simulated workspace; what reads it from outside sees the checkout.
        if build.id not in self.workspaces:
            raise BackendError("workspace before setup: the executor must call setup(build) first")
        return Workspace(path=build.source)

    async def start_job(self, build: BuildRef, job: Job) -> JobHandle:
        self.calls.append(("start_job", job.name))
        if job.services:  # recorded only: a test scripts a service that fails with fail_start[job]
            self.calls.append(("services", job.name, tuple(s.name for s in job.services)))
        if self.start_delay:
            await asyncio.sleep(self.start_delay)
        if job.name in self.fail_start:
            raise self.fail_start[job.name]
        if build.id not in self.workspaces:
            raise BackendError("start_job before setup: the executor must call setup(build) first")
        self.running += 1
        self.peak_running = max(self.peak_running, self.running)
        return JobHandle(build, job, data={"alive": True, "attempts": {}})

    async def exec_step(self, handle: JobHandle, step: Step, env: dict[str, str]) -> AsyncIterator[bytes | StepExit]:
        if not handle.data["alive"]:
            raise BackendError(f"job {handle.job.name!r} was already stopped")
        self.calls.append(("exec_step", handle.job.name, step.name))
        attempts = handle.data["attempts"]
        attempts[step.name] = attempt = attempts.get(step.name, 0) + 1
        entry = self.script.get(step.run) or self.script.get(step.name) or FakeStep()
        run = FakeRun(handle.job, step, dict(env), handle.job.workdir,
                      self.workspaces[handle.build.id], attempt)
        finished = False
        try:
            output = entry.output(run) if callable(entry.output) else entry.output
            for i, chunk in enumerate(output):
                if entry.chunk_delay and i:
                    await asyncio.sleep(entry.chunk_delay)
                yield chunk
            if entry.delay:
                await asyncio.sleep(entry.delay)
            exits = [entry.exit] if isinstance(entry.exit, int) else list(entry.exit)
            code = exits[min(attempt, len(exits)) - 1]
            finished = True
            lost = entry.interrupted if not isinstance(entry.interrupted, int) else (entry.interrupted,)
            if attempt in lost:
                yield StepExit(-1, reason="interrupted: node fake-1 went down while the step ran", interrupted=True)
                return
            yield StepExit(137 if entry.oom else code, oom_killed=entry.oom,
                           reason="out of memory" if entry.oom else None)
        finally:
            if not finished:  # stopped early: what a real backend does with SIGTERM/SIGKILL
                self.stopped_steps.append(step.name)
                self.calls.append(("stop_step", handle.job.name, step.name, time.monotonic()))

    async def export_files(self, handle: JobHandle, globs: Sequence[str], dest: Path, limit: int = 0,
                           max_files: int = 0) -> int:
        self.calls.append(("export_files", handle.job.name, tuple(globs)))
        chosen = {p: t for p, t in self.workspaces[handle.build.id].items() if files.selects(globs, p)}
        budget = files.Budget(limit, max_files)
        with tarfile.open(dest, mode="w") as tar:
            for path, text in sorted(chosen.items()):
                data = text.encode()
                budget.take(path, len(data))
                info = tarfile.TarInfo(path)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
        return len(chosen)

    async def import_files(self, handle: JobHandle, archive: Path) -> None:
        self.calls.append(("import_files", handle.job.name))
        workspace = self.workspaces[handle.build.id]
        with tarfile.open(archive) as tar:
            for member in files.safe_members(tar):
                if member.isfile():
                    workspace[member.name] = tar.extractfile(member).read().decode(errors="replace")

    async def stop_job(self, handle: JobHandle) -> None:
        self.calls.append(("stop_job", handle.job.name))
        if handle.data and handle.data["alive"]:
            handle.data["alive"] = False
            self.running -= 1

    async def teardown(self, build: BuildRef) -> None:
        self.calls.append(("teardown", build.id))
        self.workspaces.pop(build.id, None)
