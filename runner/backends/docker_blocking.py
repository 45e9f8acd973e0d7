"""The Docker backend's blocking engine calls of a job: its shell (the steps), their signals and OOM
kills, and files in and out of its workspace (runner/backends/files.py). Each is a function of an
``Engine`` (runner/engine/engine.py), run with ``engine.call(fn, engine, ...)``: the one thread seam.
The engine-level calls (images, containers, the workspace volume, sweeps) are in runner/engine/.
"""

from __future__ import annotations

import io
import tarfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from runner.backends import files, job_shell
from runner.engine import errors as derrors
from runner.engine.engine import Engine
from runner.engine.errors import short
from runner.errors import BackendError

__all__ = ["oom_kills", "attach_shell", "read_shell", "send_step", "signal_steps", "export", "import_"]


def oom_kills(engine: Engine, cid: str) -> int:
    """How many processes the kernel's OOM killer has killed in this container so far.

    The engine sets ``State.OOMKilled`` only when the whole container dies, and here PID 1
    survives a step's OOM kill, so ask the container's memory cgroup (v2 or v1) instead."""
    try:
        exec_id = engine.api.exec_create(cid, ["cat", "/sys/fs/cgroup/memory.events",
                                             "/sys/fs/cgroup/memory/memory.oom_control"])["Id"]
        text = engine.api.exec_start(exec_id).decode(errors="replace")
        if engine.api.inspect_container(cid)["State"].get("OOMKilled"):
            return 1 << 30
    except derrors.NotFound:
        return 0
    counts = [int(line.split()[1]) for line in text.splitlines()
              if line.startswith("oom_kill ") and line.split()[1].isdigit()]
    return max(counts, default=0)


def attach_shell(engine: Engine, cid: str) -> Any:
    """Attach to the job's shell (runner/backends/job_shell.py): the stream its steps are written to
    and their output read from."""
    try:
        stream = engine.api.attach(cid)
        stream.send(job_shell.FIRST_LINE)
        return stream
    except (derrors.APIError, OSError) as exc:
        raise BackendError(f"cannot attach to the job's container ({short(exc)}); it may have stopped at "
                           "once (does its image have `sh`?): see `docker events`") from None


def read_shell(stream: Any, push: Callable[[bytes | None], None]) -> None:
    """Hand the job shell's output to ``push`` until it ends (then ``push(None)``)."""
    try:
        for chunk in stream:
            push(chunk)
    except Exception:  # noqa: BLE001 - the socket was closed under us: the job is being stopped
        pass
    finally:
        push(None)


def send_step(stream: Any, command: bytes) -> None:
    try:
        stream.send(command)
    except OSError as exc:
        raise BackendError(f"the job's container cannot run the step ({exc}); it may have run out of memory "
                           "or been removed: see `docker events`") from None


def signal_steps(engine: Engine, cid: str, signal: str) -> None:
    """Signal every process of the job's container except its shell, PID 1.

    ``kill -1`` reaches every process the caller may signal except init and itself: as the
    steps of one job never overlap, that is exactly the running step, whatever it spawned.
    """
    try:
        exec_id = engine.api.exec_create(cid, ["sh", "-c", f"kill -{signal} -1 2>/dev/null; true"])["Id"]
        engine.api.exec_start(exec_id)
    except (derrors.NotFound, derrors.APIError):
        pass  # the container is gone or stopping: so is the step


def export(engine: Engine, cid: str, workdir: str, globs: list[str], dest: Path) -> int:
    """Write the workspace files that ``globs`` select to the tar ``dest``, read with
    ``get_archive`` from the job's container (running or stopped); return how many."""
    count = 0
    with tarfile.open(dest, mode="w", copybufsize=files.COPY_BUFFER) as out:
        for prefix in files.prefixes(globs):
            real = _resolve_in_workspace(engine, cid, workdir, prefix)
            if real is None:
                continue  # nothing there: no match (the keeper says so)
            try:
                chunks, _stat = engine.api.get_archive(cid, _join(workdir, real), chunk_size=1 << 20)
            except derrors.NotFound:
                continue
            count += files.filter_tar(io.BufferedReader(_ChunkReader(chunks), files.COPY_BUFFER), prefix, globs, out)
    return count


def _resolve_in_workspace(engine: Engine, cid: str, workdir: str, rel: str) -> str | None:
    """``rel`` with the symlinks among its components resolved, refusing one that leads out of the
    workspace (the engine would follow it anywhere in the container); None: no such path."""
    root = workdir.rstrip("/")
    parts, done = ([] if rel == "." else rel.split("/")), []
    while parts:
        here = "/".join([*done, parts.pop(0)])
        stat = _path_stat(engine, cid, _join(workdir, here))
        if stat is None:
            return None
        target = stat.get("linkTarget") or ""  # the engine resolves it fully, as an absolute path
        if not (int(stat.get("mode", 0)) & _GO_SYMLINK) or not target:
            done = here.split("/")
        elif target == root or target.startswith(root + "/"):
            done = [p for p in target[len(root) + 1:].split("/") if p]
        else:
            raise files.WorkspacePathError(f"{here} is a symlink to {target}, outside the workspace; "
                                           "artifacts and caches only keep files inside it")
    return "/".join(done) or "."


def _path_stat(engine: Engine, cid: str, path: str) -> dict | None:
    return engine.api.archive_stat(cid, path)


def import_(engine: Engine, cid: str, workdir: str, archive: Path) -> None:
    """Unpack the tar ``archive`` (checked: nothing in it may leave the workspace) into the
    workspace through the job's container."""
    with tarfile.open(archive) as tar:
        for _member in files.safe_members(tar):
            pass
    with open(archive, "rb") as data:
        if not engine.api.put_archive(cid, workdir, data):
            raise BackendError(f"the engine refused to unpack files into {workdir}")


_GO_SYMLINK = 1 << 27  # os.ModeSymlink in the engine's path stat


def _join(workdir: str, rel: str) -> str:
    return workdir if rel == "." else f"{workdir.rstrip('/')}/{rel}"


class _ChunkReader(io.RawIOBase):
    """A file-like view of ``get_archive``'s chunks, for a streaming ``tarfile`` (nothing in memory
    beyond one chunk; a chunk is read through a memoryview, never re-sliced into copies)."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks, self._rest, self._at = iter(chunks), memoryview(b""), 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        while self._at >= len(self._rest):
            try:
                self._rest, self._at = memoryview(next(self._chunks)), 0
            except StopIteration:
                return 0
        n = min(len(buffer), len(self._rest) - self._at)
        buffer[:n] = self._rest[self._at:self._at + n]
        self._at += n
        return n
