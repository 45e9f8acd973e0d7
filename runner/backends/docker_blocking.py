"""The Docker backend's blocking engine calls of a job: its shell (the steps), their signals, and
files in and out of its workspace (runner/backends/files.py). Each is a function of an ``Engine``
(runner/engine/engine.py), run with ``engine.call(fn, engine, ...)``: the one thread seam. The
engine-level calls (images, containers, the workspace volume, sweeps) are in runner/engine/.
"""

from __future__ import annotations

import io
import tarfile
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from runner.backends import files, job_shell
from runner.engine import errors as derrors
from runner.engine.engine import Engine
from runner.engine.errors import short
from runner.errors import BackendError

__all__ = ["attach_shell", "read_shell", "StepSend", "signal_steps", "export", "import_"]


def attach_shell(engine: Engine, cid: str) -> Any:
    """Attach to the job's shell (runner/backends/job_shell.py): the stream its steps are written to
    and their output read from."""
    stream = None
    try:
        stream = engine.api.attach(cid)
        stream.send(job_shell.FIRST_LINE)
        return stream
    except (derrors.APIError, OSError) as exc:
        if stream is not None:
            stream.close()
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


class StepSend:
    """One step's command on its way to the job's shell, sent from an engine thread (call it there).

    A step stopped early must know whether its command may be in the shell (then the step may be
    running: stop it) or not (nothing to stop, and the shell waits for the next one). A send still
    queued behind a busy thread pool when the step is stopped must then never go out later, or a step
    nobody reads would run. ``drop`` decides under a lock which of the two it is."""

    def __init__(self, stream: Any, command: bytes) -> None:
        self.stream, self.command = stream, command
        self._lock = threading.Lock()
        self._begun = self._dropped = False

    def __call__(self) -> None:
        with self._lock:
            if self._dropped:
                return
            self._begun = True
        try:
            self.stream.send(self.command)
        except OSError as exc:
            raise BackendError(f"the job's container cannot run the step ({exc}); it may have run out of "
                               "memory or been removed: see `docker events`") from None

    def drop(self) -> bool:
        """Whether the command may have reached the shell; a send not begun now never will."""
        with self._lock:
            self._dropped = not self._begun
            return self._begun


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


def export(engine: Engine, cid: str, workdir: str, globs: list[str], dest: Path, limit: int = 0,
           max_files: int = 0) -> int:
    """Write the workspace files that ``globs`` select to the tar ``dest``, read with
    ``get_archive`` from the job's container (running or stopped); return how many.
    FilesTooLargeError once their sizes pass ``limit`` bytes, TooManyFilesError past ``max_files``."""
    count, budget = 0, files.Budget(limit, max_files)
    with tarfile.open(dest, mode="w", copybufsize=files.COPY_BUFFER) as out:
        for prefix in files.prefixes(globs):
            real = _resolve_in_workspace(engine, cid, workdir, prefix)
            if real is None:
                continue  # nothing there: no match (the keeper says so)
            try:
                chunks, _stat = engine.api.get_archive(cid, _join(workdir, real), chunk_size=1 << 20)
            except derrors.NotFound:
                continue
            try:
                count += files.filter_tar(io.BufferedReader(_ChunkReader(chunks), files.COPY_BUFFER), prefix, globs,
                                          out, budget)
            finally:
                chunks.close()  # refused mid-way: the rest of the stream is not read
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
