"""Artifacts on disk: blobs by sha256 under ``data_dir/artifacts/<build uid>/``, rows in the store.

Content-addressed within a build (``<uid>/<sha[:2]>/<sha>``): a file two jobs keep is stored once,
and retention removes a build's artifacts with its directory (runner/retention.py). Every method
blocks (file I/O, the store): call it in a thread.

Because a blob is shared, one is only removed (``drop_blob``: a refused save's, an expired
artifact's) when no recorded artifact names it and no save has stored it without recording it yet:
jobs of a build save at once, and the blob a refused save drops, or ``conveyor gc`` in another
process expires, may be the one another job's save is about to name. So a save lists the blobs it
holds in a file of its own (``<uid>/tmp-<id>/held``, flocked while it lives), and placing a blob and
removing one each happen under an flock of ``<uid>/.lock``: across threads and processes alike.
A save killed with -9 leaves its list unlocked, and an unlocked list holds nothing.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import tarfile
import uuid
from pathlib import Path

from runner.errors import ConveyorError
from runner.store import artifacts as sql
from runner.store.db import Store

__all__ = ["Artifacts", "ArtifactError", "MAX_FILES"]

_CHUNK = 1 << 20
# Files (and symlinks) one job may keep: each is a blob and a row, so a million tiny files would
# cost minutes and gigabytes of memory to keep however small they are (100,000 took 15 s, 141 MiB).
MAX_FILES = 100_000

LOCK_NAME = ".lock"
HELD_NAME = "held"


def _open_lock(folder: Path) -> int:
    return os.open(folder / LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)


def _flock(fd, op: int) -> bool | None:
    """flock: whether it was taken (False: another holds it, with LOCK_NB); None on a filesystem
    without flock (some network and FUSE mounts), where keeping runs unguarded, as the store does."""
    try:
        fcntl.flock(fd, op)
        return True
    except BlockingIOError:
        return False
    except OSError:
        return None


@contextlib.contextmanager
def _locked(fd: int):
    """The build's blob lock, exclusive: placing a blob and removing one never interleave, whichever
    threads or processes do them (flock excludes between open files, not only between processes)."""
    _flock(fd, fcntl.LOCK_EX)
    try:
        yield
    finally:
        _flock(fd, fcntl.LOCK_UN)


class _Held:
    """The blobs one save has stored and not yet recorded, in ``tmp/held``: one sha per line, the
    file flocked shared for as long as the save runs, so a drop can tell a live save's list from a
    dead one's. It keeps the build's lock open: a save places each blob under it."""

    def __init__(self, folder: Path, tmp: Path) -> None:
        tmp.mkdir(parents=True, exist_ok=True)
        self.file = open(tmp / HELD_NAME, "ab", buffering=0)  # noqa: SIM115 - closed by release
        _flock(self.file, fcntl.LOCK_SH)
        try:
            self.lock = _open_lock(folder)
        except BaseException:
            self.file.close()
            raise

    def add(self, sha: str) -> None:  # under the build's lock
        self.file.write(sha.encode() + b"\n")

    def release(self) -> None:
        """The save's rows are written, or it failed: it holds nothing any more. Twice is once."""
        if not self.file.closed:
            self.file.truncate(0)
            self.file.close()  # drops the flock
            os.close(self.lock)


def _held_elsewhere(folder: Path, sha: str) -> bool:
    """Whether a live save of the build holds ``sha`` (under the build's lock). Where flock is
    missing, every list counts: a killed save's then holds its blobs until the build is removed."""
    needle = sha.encode() + b"\n"
    for path in folder.glob(f"tmp-*/{HELD_NAME}"):
        try:
            with open(path, "rb") as f:
                if _flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB):
                    continue  # no save holds it locked: released, or its process died
                if needle in f.read():
                    return True
        except FileNotFoundError:
            continue  # its save just ended
    return False


class ArtifactError(ConveyorError):
    """Artifacts were refused (past the build's size cap); the message says what to change."""


def _size(n: int) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


class Artifacts:
    def __init__(self, store: Store, limit: int) -> None:
        self.store, self.limit = store, limit
        self.root = store.data_dir / "artifacts"

    def blob(self, uid: str, sha256: str) -> Path:
        return self.root / uid / sha256[:2] / sha256

    def save(self, build_id: int, uid: str, job: str, archive: Path, now: float, expires: float | None) -> int:
        """Keep the files of the tar ``archive`` (from ``Backend.export_files``) as ``job``'s artifacts;
        return how many. ArtifactError past the build's size cap, before any blob is written."""
        with tarfile.open(archive) as tar:
            members = [m for m in tar.getmembers() if m.isfile() or m.issym()]
            incoming = sum(m.size for m in members if m.isfile())
            if self.limit:
                have = self.store.read().execute(
                    "SELECT COALESCE(SUM(size), 0) FROM artifacts WHERE build_id = ? AND job != ?",
                    (build_id, job)).fetchone()[0]
                if have + incoming > self.limit:
                    raise self._too_big(job, incoming, have)
            tmp = self.root / uid / f"tmp-{uuid.uuid4().hex}"  # one per save: jobs of a build save at once
            held = _Held(self.root / uid, tmp)  # what it stored: not to be dropped until its rows are written
            try:
                rows = [self._keep(uid, tar, m, tmp, held) for m in members]
                try:
                    self.store.write(lambda c: sql.add(c, build_id, job, rows, now, expires, self.limit))
                except sql.ArtifactLimitError:  # another job of the build got there first
                    held.release()
                    for sha in {row[2] for row in rows if row[2]}:
                        self.drop_blob(build_id, uid, sha)
                    raise self._too_big(job, incoming, None) from None
            finally:
                held.release()
                shutil.rmtree(tmp, ignore_errors=True)
        return len(rows)

    def too_many(self, job: str, why: Exception) -> ArtifactError:
        """The refusal of an export that selected more than ``MAX_FILES``."""
        return ArtifactError(f"job {job!r} keeps too many files as artifacts: {why}; a job keeps at most "
                             f"{MAX_FILES:,}: keep fewer paths, or pack them into one archive (tar, zip) and keep that")

    def past_limit(self, job: str, why: Exception) -> ArtifactError:
        """The refusal of an export stopped at the build's cap (``why`` names the file)."""
        return ArtifactError(f"job {job!r} would keep more than the build's limit of {_size(self.limit)} of "
                             f"artifacts ({why}); keep fewer paths, or raise artifact_limit "
                             "(CONVEYOR_ARTIFACT_LIMIT, or artifact_limit: in the server configuration)")

    def _too_big(self, job: str, incoming: int, have: int | None) -> ArtifactError:
        already = f" on top of {_size(have)} other jobs kept" if have else ""
        return ArtifactError(f"job {job!r} would keep {_size(incoming)} of artifacts{already}, over the build's limit "
                             f"of {_size(self.limit)}; keep fewer paths, or raise artifact_limit "
                             "(CONVEYOR_ARTIFACT_LIMIT, or artifact_limit: in the server configuration)")

    def _keep(self, uid: str, tar: tarfile.TarFile, member: tarfile.TarInfo, folder: Path, held: _Held) -> tuple:
        mode = member.mode & 0o7777
        if member.issym():
            return (member.name, 0, "", mode, member.linkname)
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / uuid.uuid4().hex
        digest = hashlib.sha256()
        with tar.extractfile(member) as src, open(tmp, "wb") as out:
            while chunk := src.read(_CHUNK):
                digest.update(chunk)
                out.write(chunk)
        sha = digest.hexdigest()
        final = self.blob(uid, sha)
        with _locked(held.lock):
            held.add(sha)
            if final.exists():
                tmp.unlink()
            else:
                final.parent.mkdir(parents=True, exist_ok=True)
                os.replace(tmp, final)
        return (member.name, member.size, sha, mode, None)

    def drop_blob(self, build_id: int, uid: str, sha: str) -> bool:
        """Remove the blob ``sha`` of the build unless an unexpired artifact or a save in flight (of
        any process) needs it; whether it was removed."""
        folder = self.root / uid
        try:
            fd = _open_lock(folder)
        except (FileNotFoundError, NotADirectoryError):
            return False  # the build's files are gone (retention removed it meanwhile)
        try:
            with _locked(fd):
                if _held_elsewhere(folder, sha) or sql.in_use(self.store.read(), build_id, sha):
                    return False
                self.blob(uid, sha).unlink(missing_ok=True)
                return True
        finally:
            os.close(fd)

    def pack(self, build_id: int, uid: str, jobs: list[str], dest: Path) -> int:
        """A tar at ``dest`` of the unexpired artifacts of ``jobs`` (in order: a later job's file wins);
        return how many files it holds."""
        conn = self.store.read()
        chosen: dict[str, sql.Artifact] = {}
        for job in jobs:
            for a in sql.for_build(conn, build_id, job):
                if a.expired is None:
                    chosen[a.path] = a
        with tarfile.open(dest, "w", copybufsize=_CHUNK) as tar:
            for a in chosen.values():
                info = tarfile.TarInfo(a.path)
                info.mode, info.mtime = a.mode, int(a.created)
                if a.link is not None:
                    info.type, info.linkname = tarfile.SYMTYPE, a.link
                    tar.addfile(info)
                    continue
                info.size = a.size
                with open(self.blob(uid, a.sha256), "rb") as data:
                    tar.addfile(info, data)
        return len(chosen)
