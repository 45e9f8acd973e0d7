"""Back up a data directory's store while the server runs, and restore it into a data directory.

The backup is SQLite's online backup API copying every page in one step: the copy is one read
transaction, so it is a consistent snapshot of the moment it began, and in WAL mode the server's
writers carry on meanwhile (a step-by-step copy would restart whenever another process writes, and
on a busy server might never finish). It is written beside the destination and renamed into place,
so a crash never leaves half a backup under the final name.

Files that live beside the store and are not rebuilt by themselves (``FILES``) go, on request, into
a tar next to the backup (``<FILE>.tar``). Mirrors and workspaces are not backed up: mirrors are
fetched again, workspaces exist only while a build runs.

A restore refuses a directory whose store is open (``StoreLock``: a running server holds it) and a
non-empty directory unless forced; it checks the backup (an SQLite file, ``quick_check`` ok, a schema
this Conveyor knows) before touching anything.
"""

from __future__ import annotations

import os
import sqlite3
import tarfile
from dataclasses import dataclass
from pathlib import Path

from runner.errors import StoreError
from runner.store.db import DB_NAME, migrations
from runner.store.lock import LOCK_NAME, StoreLock

__all__ = ["FILES", "BackupInfo", "backup", "restore", "files_archive"]

FILES = ("artifacts", "caches", "badges", "targets.yml")  # beside the store, worth keeping


@dataclass(frozen=True)
class BackupInfo:
    path: Path
    bytes: int
    schema: int
    builds: int
    files: Path | None = None  # the tar of FILES, when asked for and there was something to keep


def files_archive(backup_file: Path) -> Path:
    return backup_file.with_name(backup_file.name + ".tar")


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _temp_beside(path: Path) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}.partial")


def backup(data_dir: Path, dest: Path, *, with_files: bool = False) -> BackupInfo:
    """Copy the store of ``data_dir`` to ``dest`` (replaced only once the copy is whole)."""
    data_dir, dest = Path(data_dir), Path(dest)
    source = data_dir / DB_NAME
    if not source.is_file():
        raise StoreError(f"there is no store in {data_dir} (no {DB_NAME}); check --data-dir or CONVEYOR_DATA_DIR")
    if not dest.parent.is_dir():
        raise StoreError(f"cannot write the backup to {dest}: {dest.parent} is not a directory; create it first")
    if dest.resolve() == source.resolve():
        raise StoreError("the backup file cannot be the store itself; give another path")
    temp = _temp_beside(dest)
    with StoreLock(data_dir, exclusive=False):  # no restore swaps the store while we read it
        src = sqlite3.connect(source, timeout=30.0)
        try:
            src.execute("PRAGMA busy_timeout = 30000")
            temp.unlink(missing_ok=True)
            dst = sqlite3.connect(temp)
            try:
                src.backup(dst)  # every page in one step: one consistent read transaction
                dst.execute("PRAGMA journal_mode = DELETE")  # a standalone file, no -wal beside it
                schema = dst.execute("PRAGMA user_version").fetchone()[0]
                builds = dst.execute("SELECT count(*) FROM builds").fetchone()[0] if schema else 0
            finally:
                dst.close()
        except sqlite3.Error as exc:
            temp.unlink(missing_ok=True)
            raise StoreError(f"the backup of {source} failed: {exc}") from exc
        finally:
            src.close()
        os.replace(temp, dest)
        _fsync_dir(dest.parent)
        # FILE and FILE.tar must belong together: a tar left by an earlier backup under this name goes.
        files_archive(dest).unlink(missing_ok=True)
        archive = _archive_files(data_dir, files_archive(dest)) if with_files else None
    return BackupInfo(dest, dest.stat().st_size, schema, builds, archive)


def _archive_files(data_dir: Path, archive: Path) -> Path | None:
    present = [name for name in FILES if (data_dir / name).exists()]
    if not present:
        return None
    temp = _temp_beside(archive)
    with tarfile.open(temp, "w") as tar:
        for name in present:
            tar.add(data_dir / name, arcname=name)
    os.replace(temp, archive)
    _fsync_dir(archive.parent)
    return archive


def _check_backup(path: Path) -> tuple[int, int]:
    """(schema, builds) of a usable backup, else a StoreError that says what is wrong."""
    if not path.is_file():
        raise StoreError(f"no backup file at {path}")
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            verdict = conn.execute("PRAGMA quick_check").fetchone()[0]
            schema = conn.execute("PRAGMA user_version").fetchone()[0]
            builds = conn.execute("SELECT count(*) FROM builds").fetchone()[0]
        finally:
            conn.close()
    except sqlite3.Error as exc:
        raise StoreError(f"{path} is not a Conveyor backup ({exc}); give the file `conveyor backup` wrote") from exc
    if verdict != "ok":
        raise StoreError(f"{path} is damaged (quick_check: {verdict}); restore an older backup")
    if schema > len(migrations()):
        raise StoreError(f"{path} was written by a newer Conveyor (schema {schema}, this one knows "
                         f"{len(migrations())}); restore it with that version or newer")
    return schema, builds


def _unpack(archive: Path, data_dir: Path) -> None:
    """Extract the files' tar, refusing absolute paths, ``..``, links and devices."""
    with tarfile.open(archive) as tar:
        if hasattr(tarfile, "data_filter"):  # Python >= 3.11.4
            tar.extractall(data_dir, filter="data")
            return
        for member in tar.getmembers():
            parts = Path(member.name).parts
            if member.name.startswith("/") or ".." in parts or not (member.isfile() or member.isdir()):
                raise StoreError(f"{archive}: refusing {member.name!r} (only plain files and folders "
                                 "inside the data directory are restored)")
        tar.extractall(data_dir)


def restore(backup_file: Path, data_dir: Path, *, force: bool = False) -> BackupInfo:
    """Make ``backup_file`` the store of ``data_dir`` (and unpack its files' tar, if there is one)."""
    backup_file, data_dir = Path(backup_file), Path(data_dir)
    schema, builds = _check_backup(backup_file)
    archive = files_archive(backup_file)
    if data_dir.exists() and not data_dir.is_dir():
        raise StoreError(f"{data_dir} is not a directory; give a data directory to restore into")
    data_dir.mkdir(parents=True, exist_ok=True)
    with StoreLock(data_dir, exclusive=True):  # first: "in use" matters more than "not empty"
        leftovers = sorted(p.name for p in data_dir.iterdir() if p.name != LOCK_NAME)
        if leftovers and not force:
            raise StoreError(f"{data_dir} is not empty ({', '.join(leftovers[:5])}"
                             f"{', ...' if len(leftovers) > 5 else ''}); restore into an empty directory, "
                             "or pass --force to replace its store")
        target = data_dir / DB_NAME
        temp = _temp_beside(target)
        src = sqlite3.connect(f"file:{backup_file}?mode=ro", uri=True)
        dst = sqlite3.connect(temp)
        try:
            src.backup(dst)
        except sqlite3.Error as exc:
            dst.close()
            temp.unlink(missing_ok=True)
            raise StoreError(f"copying {backup_file} into {data_dir} failed: {exc}; nothing was replaced") from exc
        finally:
            src.close()
            dst.close()
        # The old store's WAL belongs to the old file: replayed onto the restored one it would corrupt it.
        for suffix in ("-wal", "-shm"):
            (data_dir / (DB_NAME + suffix)).unlink(missing_ok=True)
        os.replace(temp, target)
        _fsync_dir(data_dir)
        if archive.is_file():
            _unpack(archive, data_dir)
    return BackupInfo(target, target.stat().st_size, schema, builds, archive if archive.is_file() else None)
