"""Files in and out of a workspace, as tars: which paths a list of globs selects, and the checks that
keep every copy inside the workspace. Shared by the backends' ``export_files``/``import_files``.

A path is relative to the workspace, '/'-separated. A glob selects a file when it matches the file's
path or one of its parent directories (``report/`` or ``report`` keeps everything under it);
``*`` stays within a segment, ``**`` crosses them (the same globs as ``when.changes``).

What leaves the workspace is refused with ``WorkspacePathError``: a ``..`` in a path, an absolute
path, a symlink whose target is absolute or climbs above the workspace. A symlink that stays inside
is kept as a symlink. Archives that come in (``safe_members``) are checked the same way before
anything is written.

An export may be given a byte limit and a file count (``Budget``): the file sizes are counted from
each file's header before its data is copied, and the first file that takes them past the limit
raises ``FilesTooLargeError`` (``TooManyFilesError`` past the count). The workspace size limit
measures blocks in use, so a sparse file (``truncate -s 100G``) passes it while its tar is 100 GB of
zeros on the runner's disk: the limit is what stops that.
"""

from __future__ import annotations

import posixpath
import tarfile
from collections.abc import Iterator, Sequence
from typing import IO

from runner.backends.disk_guard import format_size
from runner.dsl.filters import glob_match
from runner.errors import BackendError

__all__ = ["COPY_BUFFER", "WorkspacePathError", "FilesTooLargeError", "TooManyFilesError", "Budget", "selects",
           "prefixes", "inside", "check_link", "filter_tar", "safe_members"]

_MAGIC = set("*?[")
COPY_BUFFER = 1 << 20  # tarfile copies file data 16 KiB at a time unless told otherwise


class WorkspacePathError(BackendError):
    """A path or symlink leaves the workspace; the message names it."""


class FilesTooLargeError(BackendError):
    """The files an export selects pass its byte limit; the message names the file that did it."""


class TooManyFilesError(FilesTooLargeError):
    """The export selects more files than it may keep; the message says how many it may."""


class Budget:
    """The bytes of file data and the number of files and symlinks an export may still write (0: no
    limit). Each file costs a header in the tar and a row where it is kept, however small it is."""

    def __init__(self, limit: int = 0, max_files: int = 0) -> None:
        self.limit, self.used = limit, 0
        self.max_files, self.files = max_files, 0

    def take(self, rel: str, size: int) -> None:
        """Count the file ``rel`` of ``size`` bytes (0 for a symlink), before its data is copied."""
        self.files += 1
        if self.max_files and self.files > self.max_files:
            raise TooManyFilesError(f"more than {self.max_files:,} files are selected (the next one: {rel})")
        self.used += size
        if self.limit and self.used > self.limit:
            raise FilesTooLargeError(f"the files selected pass {format_size(self.limit)} at {rel} "
                                     f"({format_size(size)})")


def inside(rel: str) -> str:
    """``rel`` normalised, or WorkspacePathError when it is absolute or climbs out."""
    if rel.startswith("/"):
        raise WorkspacePathError(f"{rel!r} is an absolute path; paths are relative to the workspace")
    norm = posixpath.normpath(rel or ".")
    if norm == ".." or norm.startswith("../"):
        raise WorkspacePathError(f"{rel!r} leaves the workspace")
    return norm


def selects(globs: Sequence[str], path: str) -> bool:
    """True when a glob matches ``path`` or one of its parent directories."""
    parts = path.split("/")
    candidates = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
    return any(glob_match(g.rstrip("/"), c) for g in globs for c in candidates)


def prefixes(globs: Sequence[str]) -> list[str]:
    """The directories (or files) to read so that every match of ``globs`` is under one: the part
    of each glob before its first wildcard segment, without duplicates or nesting ("." = all)."""
    found: list[str] = []
    for g in globs:
        fixed = []
        for seg in inside(g.rstrip("/") or ".").split("/"):
            if _MAGIC & set(seg):
                break
            fixed.append(seg)
        found.append("/".join(fixed) or ".")
    found = sorted(set(found), key=len)
    out: list[str] = []
    for p in found:
        if not any(p == q or q == "." or p.startswith(q + "/") for q in out):
            out.append(p)
    return out


def check_link(rel: str, target: str) -> None:
    """Refuse a symlink at ``rel`` whose ``target`` is absolute or resolves outside the workspace."""
    if target.startswith("/"):
        raise WorkspacePathError(f"{rel} is a symlink to {target}, outside the workspace; artifacts and "
                                 "caches only keep files inside it (copy the file instead of linking it)")
    resolved = posixpath.normpath(posixpath.join(posixpath.dirname(rel), target))
    if resolved == ".." or resolved.startswith("../"):
        raise WorkspacePathError(f"{rel} is a symlink to {target}, which leaves the workspace; artifacts "
                                 "and caches only keep files inside it")


def filter_tar(source: IO[bytes], rename: str, globs: Sequence[str], out: tarfile.TarFile,
               budget: Budget | None = None) -> int:
    """Copy the members of the tar stream ``source`` that ``globs`` select into ``out``; return how
    many. ``rename`` is the workspace path of the archive's top entry (the engine names it by its
    basename). Regular files and symlinks are kept (directories are implied by their files); each
    file's size is taken from ``budget`` before its data is read."""
    budget = budget or Budget()
    count = 0
    with tarfile.open(fileobj=source, mode="r|", copybufsize=COPY_BUFFER) as tar:
        for member in tar:
            top, _, rest = member.name.partition("/")
            rel = posixpath.normpath(posixpath.join(rename, rest) if rename != "." else rest or ".")
            if rel == "." or not selects(globs, inside(rel)):
                continue
            member.name = rel
            if member.issym():
                check_link(rel, member.linkname)
                budget.take(rel, 0)
                out.addfile(member)
            elif member.isfile():
                budget.take(rel, member.size)
                out.addfile(member, tar.extractfile(member))
            elif member.islnk():  # a hard link: stored as the file it shares its data with
                raise WorkspacePathError(f"{rel} is a hard link; artifacts and caches keep regular files "
                                         "and symlinks only")
            else:
                continue
            count += 1
    return count


def safe_members(tar: tarfile.TarFile) -> Iterator[tarfile.TarInfo]:
    """The members of an archive about to be unpacked into a workspace, each checked to stay inside."""
    for member in tar:
        member.name = inside(member.name)
        if member.issym():
            check_link(member.name, member.linkname)
        elif not (member.isfile() or member.isdir()):
            raise WorkspacePathError(f"{member.name}: only files, directories and symlinks are unpacked")
        yield member
