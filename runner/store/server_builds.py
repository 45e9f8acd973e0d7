"""What the server remembers of a build it queued (table ``server_builds``), beyond the builds row:
the configured repository, the delivery it came from, fork, pull request, re-run, and a cancel
asked for. Also the queue's reads and writes of those builds: which are queued, which a newer push
supersedes, and cancelling one that has not started.
"""

from __future__ import annotations

import sqlite3

from runner.store.builds import finish_build, status_of

__all__ = ["add", "facts", "queued", "superseded", "request_cancel", "cancel_queued"]


def add(conn: sqlite3.Connection, build_id: int, *, config_repo: str, delivery_id: int | None, fork: bool,
        pr_number: int | None, rerun_of: int | None) -> None:
    conn.execute(
        "INSERT INTO server_builds (build_id, config_repo, delivery_id, fork, pr_number, rerun_of) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        (build_id, config_repo, delivery_id, int(fork), pr_number, rerun_of),
    )


def facts(conn: sqlite3.Connection, build_id: int) -> sqlite3.Row | None:
    """The build's row (config_repo, fork, pr_number, rerun_of); None for a build the server did not queue."""
    return conn.execute("SELECT config_repo, fork, pr_number, rerun_of FROM server_builds WHERE build_id = ?",
                        (build_id,)).fetchone()


def queued(conn: sqlite3.Connection, *, besides: tuple[int, ...], limit: int) -> list[int]:
    """The oldest ``limit`` queued builds of the server, leaving out those it runs already (``besides``)."""
    busy = tuple(besides) or (-1,)
    rows = conn.execute(
        "SELECT b.id FROM builds b JOIN server_builds s ON s.build_id = b.id WHERE b.status = 'queued' "
        f"AND b.id NOT IN ({','.join('?' * len(busy))}) ORDER BY b.id LIMIT ?", (*busy, limit)).fetchall()
    return [r[0] for r in rows]


def superseded(conn: sqlite3.Connection, *, repo: str, branch: str, event: str, before_id: int) -> list[int]:
    """The server's builds of the same repository, branch and event queued before ``before_id`` and
    not started: a newer push makes them pointless (a running one is left to finish)."""
    rows = conn.execute(
        "SELECT b.id FROM builds b JOIN server_builds s ON s.build_id = b.id WHERE b.repo = ? AND "
        "b.branch = ? AND b.event = ? AND b.status = 'queued' AND b.id < ?",
        (repo, branch, event, before_id),
    ).fetchall()
    return [r[0] for r in rows]


def request_cancel(conn: sqlite3.Connection, build_id: int) -> None:
    """Remember that someone asked to cancel the running build (its task is told in memory)."""
    conn.execute("UPDATE server_builds SET cancel_requested = strftime('%s','now') WHERE build_id = ?", (build_id,))


def cancel_queued(conn: sqlite3.Connection, build_id: int, reason: str) -> bool:
    """Cancel a build that has not started (inside a write transaction); False when it has."""
    if status_of(conn, build_id) != "queued":
        return False
    finish_build(conn, build_id, "cancelled", reason)
    return True
