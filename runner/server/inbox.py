"""The durable inbox: webhook deliveries stored before the 202, turned into queued builds later.

``record_delivery`` is one write transaction with ``INSERT OR IGNORE`` under the unique index on
(provider, delivery id): of any number of concurrent copies of a delivery exactly one row is made,
and the caller learns whether it was the one. ``enqueue_pending`` turns pending deliveries into
queued builds, each delivery and its build in one transaction, so a crash at any point leaves
either a pending delivery (done again after restart) or a build (never both, never neither).
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass

from runner.build import BuildRequest, insert_request
from runner.scm.webhooks import Trigger
from runner.store.builds import finish_build
from runner.store.db import Store

__all__ = ["BuildOrder", "record_delivery", "enqueue_pending", "queue_build", "cancel_queued", "pending_count"]


@dataclass(frozen=True)
class BuildOrder(BuildRequest):
    """A build of a configured repository: what any build is asked for (``BuildRequest``; trigger
    ``webhook``, ``api:admin``, ``rerun:<id>``) plus what only the server knows of it."""

    fork: bool = False
    pr_number: int | None = None
    rerun_of: int | None = None
    delivery_id: int | None = None


async def record_delivery(store: Store, provider: str, delivery: str, repo: str, trigger: Trigger) -> tuple[bool, int]:
    """Store one delivery; (True, id) when it is new, (False, id) for a redelivery."""

    def insert(conn: sqlite3.Connection) -> tuple[bool, int]:
        cur = conn.execute(
            "INSERT OR IGNORE INTO deliveries (provider, delivery, repo, event, trigger, received) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (provider, delivery, repo, trigger.kind, trigger.to_json(), time.time()),
        )
        if cur.rowcount:
            return True, int(cur.lastrowid)
        row = conn.execute("SELECT id FROM deliveries WHERE provider = ? AND delivery = ?", (provider, delivery)).fetchone()
        return False, int(row[0])

    return await store.awrite(insert)


def queue_build(conn: sqlite3.Connection, order: BuildOrder, instance: str, cancel_superseded: bool = False) -> int:
    """Insert a queued build (inside a write transaction) and cancel what it supersedes."""
    build_id, number = insert_request(conn, order, instance)
    conn.execute(
        "INSERT INTO server_builds (build_id, config_repo, delivery_id, fork, pr_number, rerun_of) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        (build_id, order.repo, order.delivery_id, int(order.fork), order.pr_number, order.rerun_of),
    )
    if cancel_superseded and order.event in ("push", "pull_request") and order.branch:
        # Only builds still waiting: a running build is left to finish (Woodpecker does the same).
        older = conn.execute(
            "SELECT b.id FROM builds b JOIN server_builds s ON s.build_id = b.id WHERE b.repo = ? AND "
            "b.branch = ? AND b.event = ? AND b.status = 'queued' AND b.id < ?",
            (order.repo, order.branch, order.event, build_id),
        ).fetchall()
        for (old_id,) in older:
            finish_build(conn, old_id, "cancelled", f"superseded by {order.repo}#{number}")
    return build_id


def enqueue_pending(store: Store, instance: str, superseding: dict[str, bool], known: set[str]) -> list[int]:
    """Turn every pending delivery into a queued build; return the new build ids (blocking)."""
    pending = store.read().execute(
        "SELECT id, repo, event, trigger FROM deliveries WHERE state = 'pending' ORDER BY id"
    ).fetchall()
    made: list[int] = []
    for row in pending:
        def one(conn: sqlite3.Connection, row=row) -> int | None:
            if conn.execute("SELECT state FROM deliveries WHERE id = ?", (row["id"],)).fetchone()[0] != "pending":
                return None  # someone else took it meanwhile
            if row["repo"] not in known:
                conn.execute("UPDATE deliveries SET state = 'ignored', note = ? WHERE id = ?",
                             (f"repository {row['repo']!r} is no longer configured", row["id"]))
                return None
            t = Trigger.from_json(row["trigger"])
            order = BuildOrder(
                repo=row["repo"], event=t.kind, trigger="webhook", ref=t.ref, branch=t.branch, tag=t.tag,
                sha=t.sha, message=t.message, author=t.author, fork=t.fork, pr_number=t.pr_number,
                delivery_id=row["id"], before=t.before, target_branch=t.target_branch,
            )
            build_id = queue_build(conn, order, instance, superseding.get(row["repo"], False))
            conn.execute("UPDATE deliveries SET state = 'queued', build_id = ? WHERE id = ?", (build_id, row["id"]))
            return build_id

        build_id = store.write(one)
        if build_id is not None:
            made.append(build_id)
    return made


def cancel_queued(conn: sqlite3.Connection, build_id: int, reason: str) -> bool:
    """Cancel a build that has not started (inside a write transaction); False when it has."""
    status = conn.execute("SELECT status FROM builds WHERE id = ?", (build_id,)).fetchone()
    if status is None or status[0] != "queued":
        return False
    finish_build(conn, build_id, "cancelled", reason)
    return True


def pending_count(conn: sqlite3.Connection) -> int:
    return conn.execute("SELECT COUNT(*) FROM deliveries WHERE state = 'pending'").fetchone()[0]
