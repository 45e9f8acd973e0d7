"""The queries of cron schedules: the last slot each one handled (table ``schedule_firings``)."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

__all__ = ["Firing", "firings", "firing", "record_firing"]


@dataclass(frozen=True)
class Firing:
    repo: str
    name: str
    slot: float
    fired: float | None
    build_id: int | None


def firings(conn: sqlite3.Connection) -> dict[tuple[str, str], Firing]:
    """Every schedule's last handled slot, by (repo, name)."""
    rows = conn.execute("SELECT repo, name, slot, fired, build_id FROM schedule_firings").fetchall()
    return {(r["repo"], r["name"]): Firing(**dict(r)) for r in rows}


def firing(conn: sqlite3.Connection, repo: str, name: str) -> Firing | None:
    row = conn.execute("SELECT repo, name, slot, fired, build_id FROM schedule_firings WHERE repo = ? AND name = ?",
                       (repo, name)).fetchone()
    return Firing(**dict(row)) if row else None


def record_firing(conn: sqlite3.Connection, repo: str, name: str, slot: float, fired: float | None,
                  build_id: int | None) -> None:
    """Remember ``slot`` as handled (inside the write transaction that queued its build)."""
    conn.execute(
        "INSERT INTO schedule_firings (repo, name, slot, fired, build_id) VALUES (?, ?, ?, ?, ?) "
        "ON CONFLICT (repo, name) DO UPDATE SET slot = excluded.slot, fired = excluded.fired, "
        "build_id = excluded.build_id", (repo, name, slot, fired, build_id))
