"""Artifacts on disk: blobs by sha256 under ``data_dir/artifacts/<build uid>/``, rows in the store.

Content-addressed within a build (``<uid>/<sha[:2]>/<sha>``): a file two jobs keep is stored once,
and retention removes a build's artifacts with its directory (runner/retention.py). Every method
blocks (file I/O, the store): call it in a thread.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tarfile
import uuid
from pathlib import Path

from runner.errors import ConveyorError
from runner.store import artifacts as sql
from runner.store.db import Store

__all__ = ["Artifacts", "ArtifactError"]

_CHUNK = 1 << 20


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
            try:
                rows = [self._keep(uid, tar, m, tmp) for m in members]
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
        try:
            self.store.write(lambda c: sql.add(c, build_id, job, rows, now, expires, self.limit))
        except sql.ArtifactLimitError:  # another job of the build got there first
            self._drop_unused(build_id, uid, rows)
            raise self._too_big(job, incoming, None) from None
        return len(rows)

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

    def _keep(self, uid: str, tar: tarfile.TarFile, member: tarfile.TarInfo, folder: Path) -> tuple:
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
        if final.exists():
            tmp.unlink()
        else:
            final.parent.mkdir(parents=True, exist_ok=True)
            os.replace(tmp, final)
        return (member.name, member.size, sha, mode, None)

    def _drop_unused(self, build_id: int, uid: str, rows: list[tuple]) -> None:
        conn = self.store.read()
        for _path, _size, sha, _mode, _link in rows:
            if sha and not sql.in_use(conn, build_id, sha):
                self.blob(uid, sha).unlink(missing_ok=True)

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
