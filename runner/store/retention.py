"""The queries of retention: which builds may go, and deleting them in bounded batches.

``candidates`` reads (any connection). The ``delete_*`` functions run inside ``store.write`` and each
re-checks, in its own transaction, that the builds it touches are still unprotected (a deploy or a
rollback between the choice and the delete can make an old build live again). Log chunks go first,
at most ``limit`` rows a transaction, so a prune of millions of lines never holds the writer for
long; the build rows go last, and their stages, jobs, steps and server rows follow by
``ON DELETE CASCADE``. Deploy rows name builds by uid, not by a foreign key: they are never touched.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

from runner.store.builds import FINISHED

__all__ = ["BuildAge", "candidates", "live_deploy_builds", "last_successes", "build_sizes",
           "delete_log_batch", "delete_builds"]


@dataclass(frozen=True)
class BuildAge:
    """A finished build as retention sees it: where it stands in its branch and how old it is."""

    id: int
    uid: str
    repo: str
    number: int
    branch: str | None
    status: str
    ended: float  # finished, else created
    newest: int  # 1 for the newest build of its repo and branch, 2 for the one before, ...

    @property
    def label(self) -> str:
        return f"{self.repo}#{self.number}"


def candidates(conn: sqlite3.Connection) -> list[BuildAge]:
    """Every finished build with its rank in its branch (builds without a branch, such as tag builds,
    form one group per repository), oldest first."""
    marks = ",".join("?" * len(FINISHED))
    rows = conn.execute(
        "SELECT * FROM (SELECT id, uid, repo, number, branch, status, COALESCE(finished, created) AS ended, "
        "ROW_NUMBER() OVER (PARTITION BY repo, COALESCE(branch, '') ORDER BY id DESC) AS newest FROM builds) "
        f"WHERE status IN ({marks}) ORDER BY id", FINISHED).fetchall()
    return [BuildAge(**dict(row)) for row in rows]


def last_successes(conn: sqlite3.Connection) -> set[int]:
    """The newest successful build of every repository and branch."""
    rows = conn.execute("SELECT MAX(id) FROM builds WHERE status = 'success' GROUP BY repo, COALESCE(branch, '')")
    return {row[0] for row in rows}


def live_deploy_builds(conn: sqlite3.Connection) -> set[str]:
    """Uids of the builds behind what runs now: the newest succeeded deploy of every service and
    target, and, when that was a rollback, the deploy (and build) it re-applied."""
    rows = conn.execute(
        "SELECT d.id, d.build_uid, d.kind, d.rollback_of FROM deploys d JOIN (SELECT MAX(id) AS id FROM deploys "
        "WHERE status = 'succeeded' GROUP BY target, service) live ON live.id = d.id").fetchall()
    uids: set[str] = set()
    for row in rows:
        uid, kind, back, seen = row["build_uid"], row["kind"], row["rollback_of"], {row["id"]}
        if uid and kind != "rollback":
            uids.add(uid)
        while kind == "rollback" and back is not None and back not in seen:  # follow to the deploy re-applied
            seen.add(back)
            found = conn.execute("SELECT build_uid, kind, rollback_of FROM deploys WHERE id = ?", (back,)).fetchone()
            if found is None:
                break
            uid, kind, back = found
            if uid and kind != "rollback":
                uids.add(uid)
    return uids


def build_sizes(conn: sqlite3.Connection, ids: list[int]) -> dict[int, int]:
    """Bytes of stored text per build: its log, rendered pipeline, plan and diagnostics."""
    sizes = dict.fromkeys(ids, 0)
    for part in _chunks(ids, 500):
        marks = ",".join("?" * len(part))
        for build_id, size in conn.execute(
                f"SELECT build_id, SUM(LENGTH(CAST(text AS BLOB))) FROM log_chunks WHERE build_id IN ({marks}) "
                "GROUP BY build_id", part):
            sizes[build_id] += size or 0
        for build_id, size in conn.execute(
                "SELECT id, COALESCE(LENGTH(CAST(rendered AS BLOB)), 0) + COALESCE(LENGTH(CAST(plan AS BLOB)), 0) "
                f"+ COALESCE(LENGTH(CAST(diagnostics AS BLOB)), 0) FROM builds WHERE id IN ({marks})", part):
            sizes[build_id] += size or 0
    return sizes


def _still_prunable(conn: sqlite3.Connection, ids: list[int]) -> list[int]:
    """``ids`` less those that became protected since they were chosen (checked in the caller's
    transaction, so nothing can change between the check and the delete)."""
    if not ids:
        return []
    live = live_deploy_builds(conn)
    marks = ",".join("?" * len(ids))
    rows = conn.execute(
        f"SELECT b.id, b.uid FROM builds b WHERE b.id IN ({marks}) AND b.status IN ({','.join('?' * len(FINISHED))}) "
        "AND b.id IS NOT (SELECT MAX(s.id) FROM builds s WHERE s.status = 'success' AND s.repo = b.repo "
        "AND s.branch IS b.branch)", (*ids, *FINISHED)).fetchall()
    return [row[0] for row in rows if row[1] not in live]


def delete_log_batch(conn: sqlite3.Connection, ids: list[int], limit: int) -> int:
    """Delete at most ``limit`` log chunks of the builds ``ids`` that may still go; return how many."""
    ids = _still_prunable(conn, ids)
    if not ids:
        return 0
    marks = ",".join("?" * len(ids))
    return conn.execute(
        f"DELETE FROM log_chunks WHERE id IN (SELECT id FROM log_chunks WHERE build_id IN ({marks}) LIMIT ?)",
        (*ids, limit)).rowcount


def delete_builds(conn: sqlite3.Connection, ids: list[int]) -> list[tuple[int, str]]:
    """Delete the builds ``ids`` that may still go, with their rows; return (id, uid) of those gone."""
    ids = _still_prunable(conn, ids)
    if not ids:
        return []
    marks = ",".join("?" * len(ids))
    gone = [(row[0], row[1]) for row in conn.execute(f"SELECT id, uid FROM builds WHERE id IN ({marks})", ids)]
    conn.execute(f"DELETE FROM builds WHERE id IN ({marks})", ids)
    return gone


def _chunks(items: list[int], size: int):
    for start in range(0, len(items), size):
        yield items[start:start + size]
