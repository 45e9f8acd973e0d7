"""Webhook deliveries (table ``deliveries``): the server's durable inbox, stored before the 202.

A delivery is ``pending`` until the queue turns it into a build (``queued``, with its build) or
gives it up (``ignored``, ``failed``, with the reason in ``note``). The unique index on (provider,
delivery id) makes a redelivery, or any number of concurrent copies, one row. The steps of turning
a delivery into a build live in ``runner.server.inbox``; these are the rows they read and write.
"""

from __future__ import annotations

import sqlite3

__all__ = ["insert", "pending", "state_of", "mark_queued", "mark_ignored", "mark_failed", "list_deliveries",
           "pending_count"]


def insert(conn: sqlite3.Connection, provider: str, delivery: str, repo: str, event: str, trigger: str,
           received: float) -> tuple[bool, int]:
    """Store one delivery; (True, id) when it is new, (False, id of the first copy) for a redelivery."""
    cur = conn.execute(
        "INSERT OR IGNORE INTO deliveries (provider, delivery, repo, event, trigger, received) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        (provider, delivery, repo, event, trigger, received),
    )
    if cur.rowcount:
        return True, int(cur.lastrowid)
    row = conn.execute("SELECT id FROM deliveries WHERE provider = ? AND delivery = ?", (provider, delivery)).fetchone()
    return False, int(row[0])


def pending(conn: sqlite3.Connection) -> list[sqlite3.Row]:
    """The deliveries not yet turned into builds, oldest first: rows of id, repo, event, trigger."""
    return conn.execute("SELECT id, repo, event, trigger FROM deliveries WHERE state = 'pending' ORDER BY id").fetchall()


def state_of(conn: sqlite3.Connection, delivery_id: int) -> str | None:
    row = conn.execute("SELECT state FROM deliveries WHERE id = ?", (delivery_id,)).fetchone()
    return row[0] if row else None


def mark_queued(conn: sqlite3.Connection, delivery_id: int, build_id: int) -> None:
    conn.execute("UPDATE deliveries SET state = 'queued', build_id = ? WHERE id = ?", (build_id, delivery_id))


def mark_ignored(conn: sqlite3.Connection, delivery_id: int, note: str) -> None:
    conn.execute("UPDATE deliveries SET state = 'ignored', note = ? WHERE id = ?", (note, delivery_id))


def mark_failed(conn: sqlite3.Connection, delivery_id: int, note: str) -> None:
    """Give up a pending delivery that could not become a build (one taken meanwhile stays as it is)."""
    conn.execute("UPDATE deliveries SET state = 'failed', note = ? WHERE id = ? AND state = 'pending'",
                 (note, delivery_id))


def list_deliveries(conn: sqlite3.Connection, state: str | None = None, limit: int = 50) -> list[dict]:
    """Newest first: what came in, what became of it (``queued`` with its build, ``ignored`` or
    ``failed`` with the reason)."""
    sql = "SELECT id, provider, delivery, repo, event, state, build_id, note, received FROM deliveries"
    params: list = []
    if state:
        sql += " WHERE state = ?"
        params.append(state)
    rows = conn.execute(sql + " ORDER BY id DESC LIMIT ?", (*params, limit)).fetchall()
    return [dict(row) for row in rows]


def pending_count(conn: sqlite3.Connection) -> int:
    return conn.execute("SELECT COUNT(*) FROM deliveries WHERE state = 'pending'").fetchone()[0]
