"""Artifacts on disk: blobs by sha256 under ``data_dir/artifacts/<build uid>/``, rows in the store.

Content-addressed within a build (``<uid>/<sha[:2]>/<sha>``): a file two jobs keep is stored once,
and retention removes a build's artifacts with its directory (runner/retention.py). Every method
blocks (file I/O, the store): call it in a thread.

Because a blob is shared, one is only removed (``drop_blob``: a refused save's, an expired
artifact's) when no recorded artifact names it and no save of this process has stored it without
recording it yet: jobs of a build save at once, and the blob a refused save drops may be the one
another job's save is about to name.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tarfile
import threading
import uuid
from collections import Counter
from pathlib import Path

from runner.errors import ConveyorError
from runner.store import artifacts as sql
from runner.store.db import Store

__all__ = ["Artifacts", "ArtifactError", "MAX_FILES"]

_CHUNK = 1 << 20
# Files (and symlinks) one job may keep: each is a blob and a row, so a million tiny files would
# cost minutes and gigabytes of memory to keep however small they are (100,000 took 15 s, 141 MiB).
MAX_FILES = 100_000

# Per build uid, the blobs saves of this process have stored and not yet recorded (how many saves
# hold each). Placing a blob and removing one both happen under the lock.
_placing = threading.Lock()
_unrecorded: dict[str, Counter] = {}


def _release(uid: str, held: list[str]) -> None:
    """The save that stored ``held`` no longer needs them kept for it (its rows are written, or it
    failed); ``held`` is emptied, so releasing twice releases once."""
    with _placing:
        counts = _unrecorded.get(uid)
        if counts is not None and held:
            counts.subtract(held)
            for sha in [sha for sha, n in counts.items() if n <= 0]:
                del counts[sha]
            if not counts:
                del _unrecorded[uid]
        held.clear()


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
            held: list[str] = []  # the blobs this save stored, not to be dropped until its rows are written
            try:
                rows = [self._keep(uid, tar, m, tmp, held) for m in members]
                try:
                    self.store.write(lambda c: sql.add(c, build_id, job, rows, now, expires, self.limit))
                except sql.ArtifactLimitError:  # another job of the build got there first
                    _release(uid, held)
                    for sha in {row[2] for row in rows if row[2]}:
                        self.drop_blob(build_id, uid, sha)
                    raise self._too_big(job, incoming, None) from None
            finally:
                _release(uid, held)
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

    def _keep(self, uid: str, tar: tarfile.TarFile, member: tarfile.TarInfo, folder: Path, held: list[str]) -> tuple:
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
        with _placing:
            _unrecorded.setdefault(uid, Counter())[sha] += 1
            held.append(sha)
            if final.exists():
                tmp.unlink()
            else:
                final.parent.mkdir(parents=True, exist_ok=True)
                os.replace(tmp, final)
        return (member.name, member.size, sha, mode, None)

    def drop_blob(self, build_id: int, uid: str, sha: str) -> bool:
        """Remove the blob ``sha`` of the build unless an unexpired artifact or a save in flight
        needs it; whether it was removed."""
        with _placing:
            if _unrecorded.get(uid, {}).get(sha) or sql.in_use(self.store.read(), build_id, sha):
                return False
            self.blob(uid, sha).unlink(missing_ok=True)
            return True

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
