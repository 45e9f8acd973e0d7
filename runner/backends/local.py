"""The local backend: steps run as processes on the runner's own host. It isolates NOTHING.

Only used when asked for (``conveyor run --backend local``): for trusted pipelines on a developer's
machine, or where no Docker engine exists. What it does:

- a per-build workspace directory, copied from the checkout (symlinks kept as symlinks), removed
  at teardown; every job of the build works in it, like the Docker backend's workspace volume;
- each step is ``sh -e -c <run>`` in its own process group, so stopping a step (timeout, cancel)
  reaches every process it started: SIGTERM to the group, SIGKILL after ``grace`` seconds; what a
  step leaves running in the background lives until its job stops (as in a job container);
- the environment is the step's env only, plus PATH, HOME and LANG from the runner; nothing else
  of the runner's environment leaks in. ``CI_WORKSPACE`` points at the real directory.

What it does not do: the job's ``image`` is ignored; a job with ``services`` is refused; steps run as the runner's user, see the whole
file system and network, and are not limited in memory, CPU or processes.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import tarfile
import tempfile
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

from runner.backends import files
from runner.backends.base import Backend, BuildRef, JobHandle, StepExit, Workspace
from runner.backends.disk_guard import WorkspaceGuard, local_guard
from runner.backends.pump import uncancelled
from runner.errors import BackendError, BackendUnavailable
from runner.plan import Job, Step

__all__ = ["LocalBackend"]

_INHERITED = ("PATH", "HOME", "LANG")
_READ_SIZE = 256 * 1024


class LocalBackend(Backend):
    name = "local"

    def __init__(self, grace: float = 5.0, root: Path | None = None, workspace_limit: int = 0) -> None:
        self.grace = grace
        self.root = root  # where workspaces go; None: the system temp directory
        self.workspace_limit = workspace_limit  # bytes; 0: no limit (runner/backends/disk_guard.py)
        self._workspaces: dict[str, Path] = {}
        self._guards: dict[str, WorkspaceGuard] = {}

    async def available(self) -> None:
        if not shutil.which("sh"):
            raise BackendUnavailable("the local backend needs `sh` on PATH; install a POSIX shell")

    async def setup(self, build: BuildRef) -> None:
        if build.id in self._workspaces:
            return
        if not Path(build.source).is_dir():
            raise BackendError(f"the build's source {build.source} is not a directory")
        base = await asyncio.to_thread(tempfile.mkdtemp, prefix=f"conveyor-{build.id}-", dir=self.root)
        workspace = Path(base) / "workspace"
        self._workspaces[build.id] = workspace
        # The guard's keys are the running steps' process groups: what it kills past the limit.
        guard = self._guards[build.id] = local_guard(str(workspace), self.workspace_limit,
                                                     lambda: {int(k) for k in guard.attached})
        # Waited for even when cancelled: a copy still running in its thread would outlive teardown.
        await uncancelled(asyncio.to_thread(shutil.copytree, build.source, workspace, symlinks=True))

    def workspace(self, build: BuildRef) -> Workspace:
        workspace = self._workspaces.get(build.id)
        if workspace is None:
            raise BackendError("workspace before setup: the executor must call setup(build) first")
        return Workspace(path=workspace)

    async def start_job(self, build: BuildRef, job: Job) -> JobHandle:
        workspace = self._workspaces.get(build.id)
        if workspace is None:
            raise BackendError("start_job before setup: the executor must call setup(build) first")
        if job.services:  # host processes have no network of their own to give a service a name on
            names = ", ".join(s.name for s in job.services)
            raise BackendError(f"job {job.name!r} has services ({names}), which the local backend cannot run; "
                               "run it with --backend docker (the default), or start them yourself and "
                               "remove `services:` from the job")
        # groups: the process group of every step, so stop_job ends what steps left running
        return JobHandle(build, job, data={"workspace": workspace, "proc": None, "groups": set()})

    async def exec_step(self, handle: JobHandle, step: Step, env: dict[str, str]) -> AsyncIterator[bytes | StepExit]:
        workspace: Path = handle.data["workspace"]
        full_env = {k: os.environ[k] for k in _INHERITED if k in os.environ}
        full_env.update(env)
        full_env["CI_WORKSPACE"] = str(workspace)
        proc = await asyncio.create_subprocess_exec(
            "sh", "-e", "-c", step.run, cwd=workspace, env=full_env,
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT, start_new_session=True, limit=_READ_SIZE,
        )
        handle.data["proc"] = proc
        handle.data["groups"].add(proc.pid)  # start_new_session: its pid is its group's id
        guard = self._guards.get(handle.build.id)
        stops = guard.stops if guard else 0
        if guard is not None:
            guard.attach(str(proc.pid), str(workspace))
        try:
            while chunk := await proc.stdout.read(_READ_SIZE):
                yield chunk
            code = await proc.wait()
            over = guard is not None and guard.stops > stops  # killed by the workspace size limit
            yield StepExit(128 - code if code < 0 else code, reason=guard.reason if over else None)
        finally:
            if guard is not None:
                guard.detach(str(proc.pid))
            handle.data["proc"] = None
            if proc.returncode is None:
                await _stop_group(proc, self.grace)
            try:
                os.killpg(proc.pid, 0)
            except ProcessLookupError:
                # Nothing left in the group: forget it, since an id no process holds can be reused.
                # (While a process is in it, the kernel does not hand the id out again.)
                handle.data["groups"].discard(proc.pid)

    async def export_files(self, handle: JobHandle, globs: Sequence[str], dest: Path, limit: int = 0,
                           max_files: int = 0) -> int:
        return await asyncio.to_thread(_export, handle.data["workspace"], list(globs), dest, limit, max_files)

    async def import_files(self, handle: JobHandle, archive: Path) -> None:
        await asyncio.to_thread(_import, handle.data["workspace"], archive)

    async def stop_job(self, handle: JobHandle) -> None:
        proc = handle.data.get("proc") if handle.data else None
        if proc is not None and proc.returncode is None:
            await _stop_group(proc, self.grace)
        # What steps started in the background (`server &`) ends with the job, as it would with
        # the job's container; the Docker backend's removal kills without a grace period too.
        for group in handle.data.pop("groups", ()) if handle.data else ():
            try:
                os.killpg(group, signal.SIGKILL)
            except ProcessLookupError:
                pass

    async def teardown(self, build: BuildRef) -> None:
        guard = self._guards.pop(build.id, None)
        if guard is not None:
            await guard.close()
        workspace = self._workspaces.pop(build.id, None)
        if workspace is not None:
            await asyncio.to_thread(shutil.rmtree, workspace.parent, ignore_errors=True)


def _export(workspace: Path, globs: list[str], dest: Path, limit: int = 0, max_files: int = 0) -> int:
    """Blocking: the selected files of ``workspace`` as the tar ``dest`` (symlinks kept, and refused
    when they lead out; FilesTooLargeError past ``limit`` bytes, TooManyFilesError past ``max_files``)."""
    root = workspace.resolve()
    count, budget = 0, files.Budget(limit, max_files)
    with tarfile.open(dest, mode="w", copybufsize=files.COPY_BUFFER) as tar:
        for prefix in files.prefixes(globs):
            start = (root / prefix).resolve() if prefix != "." else root
            if start != root and root not in start.parents:
                raise files.WorkspacePathError(f"{prefix} leads to {start}, outside the workspace; artifacts "
                                               "and caches only keep files inside it")
            if not start.exists():
                continue
            for path in [start] if not start.is_dir() else _walk(start):
                rel = prefix if path == start else f"{prefix}/{path.relative_to(start)}".removeprefix("./")
                if path.is_dir() and not path.is_symlink() or not files.selects(globs, rel):
                    continue
                if path.is_symlink():
                    files.check_link(rel, os.readlink(path))
                    budget.take(rel, 0)
                elif not path.is_file():
                    continue
                else:
                    budget.take(rel, path.lstat().st_size)
                tar.add(path, arcname=rel, recursive=False)
                count += 1
    return count


def _walk(top: Path):
    """Every entry under ``top``, never following a symlink (a symlinked directory is one entry)."""
    for folder, dirs, names in os.walk(top):
        for name in sorted(dirs + names):
            yield Path(folder) / name


def _import(workspace: Path, archive: Path) -> None:
    """Blocking: unpack ``archive`` into ``workspace``, every member checked first."""
    with tarfile.open(archive) as tar:
        members = list(files.safe_members(tar))
        tar.extractall(workspace, members=members, filter="tar")


async def _stop_group(proc: asyncio.subprocess.Process, grace: float) -> None:
    """SIGTERM to the step's process group, SIGKILL after ``grace`` seconds."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            pass
        try:
            await asyncio.wait_for(asyncio.shield(proc.wait()), wait)
            break
        except asyncio.TimeoutError:
            continue
    # A step's children that ignore SIGTERM still hold the group: make sure none outlive the step.
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
