"""Retention: which finished builds are old enough to go, and removing them with what they left.

A build goes when it is past every limit that is set: older than ``days`` (by when it finished) and
not one of the newest ``keep_last`` builds of its repository and branch. Never removed, whatever the
limits: the newest successful build of each branch, and the build behind what a service runs now
(its newest succeeded deploy). With both limits off, retention keeps everything. A build takes its
log, stages, jobs and steps, and its ``artifacts/<uid>`` and ``reports/<uid>`` directories under the
data directory when they exist; deploy history is never pruned.

Before that, ``collect`` runs the expiry pass: artifacts past their ``expire_in`` lose their blob
(their row stays, marked expired, so the page says so), whatever happens to their build.

``collect`` is the one code path of ``conveyor gc`` and of the server's daily run. See docs/server.md.
"""

from __future__ import annotations

import re
import shutil
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runner.errors import ConveyorError
from runner.keep.artifacts import Artifacts
from runner.store import artifacts as artifact_sql
from runner.store import retention as sql
from runner.store.db import Store
from runner.store.retention import BuildAge

__all__ = ["Retention", "RetentionConfigError", "parse_retention", "Removal", "GcReport", "choose", "collect",
           "expire_artifacts"]

DAY = 86400.0
BUILD_DIRS = ("artifacts", "reports")  # per-build directories under the data directory, by build uid
_SAFE_UID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")


class RetentionConfigError(ConveyorError):
    """A ``retention:`` block is wrong; the message names where and what to write."""


@dataclass(frozen=True)
class Retention:
    days: float | None = 90  # None: no age limit
    keep_last: int = 20  # per repository and branch; 0: no count limit

    @property
    def enabled(self) -> bool:
        return self.days is not None or self.keep_last > 0

    def allows(self, build: BuildAge, now: float) -> bool:
        """True when ``build`` is past every limit that is set (protections are checked elsewhere)."""
        if not self.enabled:
            return False
        if self.keep_last and build.newest <= self.keep_last:
            return False
        return self.days is None or build.ended <= now - self.days * DAY


def parse_retention(where: str, data: Any, base: Retention = Retention()) -> Retention:
    """``retention: {days, keep_last}``; a key left out keeps ``base``'s value, ``null`` turns it off."""
    if data is None:
        return base
    if not isinstance(data, dict):
        raise RetentionConfigError(f"{where}: retention must be a mapping such as {{days: 90, keep_last: 20}}")
    unknown = set(data) - {"days", "keep_last"}
    if unknown:
        raise RetentionConfigError(f"{where} retention: unknown key(s) {sorted(unknown)}; known: days, keep_last")
    days, keep_last = base.days, base.keep_last
    if "days" in data:
        days = data["days"]
        if days is not None and (isinstance(days, bool) or not isinstance(days, (int, float)) or days <= 0):
            raise RetentionConfigError(f"{where} retention days: {days!r} is not a number of days above 0; "
                                       "write null to keep builds of any age")
    if "keep_last" in data:
        keep_last = data["keep_last"] if data["keep_last"] is not None else 0
        if isinstance(keep_last, bool) or not isinstance(keep_last, int) or keep_last < 0:
            raise RetentionConfigError(f"{where} retention keep_last: {keep_last!r} is not a whole number "
                                       "of builds (0 or more) per branch")
    return Retention(days=float(days) if days is not None else None, keep_last=keep_last)


@dataclass(frozen=True)
class Removal:
    build: BuildAge
    stored_bytes: int  # log and pipeline text in the store
    dirs: tuple[Path, ...] = ()
    dir_bytes: int = 0

    @property
    def size(self) -> int:
        return self.stored_bytes + self.dir_bytes


@dataclass
class GcReport:
    dry_run: bool
    removed: list[Removal] = field(default_factory=list)
    expired: int = 0  # artifact files past their expire_in, removed (or, dry run, due)
    expired_bytes: int = 0

    @property
    def freed(self) -> int:
        return sum(r.size for r in self.removed) + self.expired_bytes


def choose(conn, policy_for: Callable[[str], Retention], now: float) -> list[BuildAge]:
    """The finished builds that may go now, oldest first."""
    protected = sql.last_successes(conn)
    live = sql.live_deploy_builds(conn)
    return [b for b in sql.candidates(conn)
            if b.id not in protected and b.uid not in live and policy_for(b.repo).allows(b, now)]


def collect(store: Store, policy_for: Callable[[str], Retention], now: float, *, dry_run: bool = False,
            batch: int = 50, log_rows: int = 500, on_removed: Callable[[Removal], None] | None = None,
            stop: threading.Event | None = None) -> GcReport:
    """Remove (or, with ``dry_run``, only list) what retention lets go. Blocking: call it in a thread.
    ``stop`` ends it between two transactions (the server shutting down); what is done stays done."""
    report = GcReport(dry_run=dry_run)
    stop = stop or threading.Event()
    expire_artifacts(store, now, report, stop)
    chosen = choose(store.read(), policy_for, now)
    for start in range(0, len(chosen), batch):
        if stop.is_set():
            break
        part = chosen[start:start + batch]
        sizes = sql.build_sizes(store.read(), [b.id for b in part])
        planned = {b.id: _removal(store.data_dir, b, sizes[b.id]) for b in part}
        if dry_run:
            done = list(planned.values())
        else:
            ids = list(planned)
            # One bounded transaction at a time; other writers get their turn in between.
            while store.write(lambda c: sql.delete_log_batch(c, ids, log_rows)):
                if stop.is_set():
                    return report
            gone = store.write(lambda c: sql.delete_builds(c, ids))
            done = [planned[build_id] for build_id, _uid in gone]
            # Files after rows: delete_builds re-checked that no deploy made a build live again
            # meanwhile. A crash in between leaves files without a build, never a build without them.
            for removal in done:
                for path in removal.dirs:
                    shutil.rmtree(path, ignore_errors=True)
        for removal in done:
            report.removed.append(removal)
            if on_removed is not None:
                on_removed(removal)
    return report


def expire_artifacts(store: Store, now: float, report: GcReport, stop: threading.Event) -> None:
    """Remove the blobs of artifacts past their expiry, a bounded batch per transaction; rows first
    (marked expired), files after, so a crash in between leaves a stray file, never a row without one."""
    if report.dry_run:
        row = store.read().execute("SELECT COUNT(*), COALESCE(SUM(size), 0) FROM artifacts WHERE expires <= ? "
                                   "AND expired IS NULL", (now,)).fetchone()
        report.expired, report.expired_bytes = row[0], row[1]
        return
    artifacts = Artifacts(store, 0)
    while not stop.is_set():
        gone = store.write(lambda c: artifact_sql.expire_due(c, now))
        if not gone:
            return
        for uid, sha, size, build_id in gone:
            # Asked again as each goes: a job of a running build may have just kept the same file.
            safe = _SAFE_UID.fullmatch(uid) and re.fullmatch(r"[0-9a-f]{64}", sha)
            if safe and artifacts.drop_blob(build_id, uid, sha):
                report.expired += 1
                report.expired_bytes += size


def _removal(data_dir: Path, build: BuildAge, stored: int) -> Removal:
    if not _SAFE_UID.fullmatch(build.uid):  # a uid is a name inside the data directory, never a path
        return Removal(build=build, stored_bytes=stored)
    dirs = tuple(p for p in (data_dir / kind / build.uid for kind in BUILD_DIRS) if p.is_dir() and not p.is_symlink())
    return Removal(build=build, stored_bytes=stored, dirs=dirs, dir_bytes=sum(_tree_size(p) for p in dirs))


def _tree_size(path: Path) -> int:
    total = 0
    for item in path.rglob("*"):
        try:
            if item.is_file() and not item.is_symlink():
                total += item.stat().st_size
        except OSError:
            continue
    return total
