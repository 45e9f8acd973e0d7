"""Counts for ``GET /metrics``, read from the store on each scrape.

Each query is answered from an index alone (``0004_metrics.sql``), so a scrape costs a few index
scans whatever the size of the logs and plans. Histograms come back cumulative, as Prometheus wants
them: ``(counts per upper bound, total count, sum)``.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Histogram", "builds_by_status", "jobs_by_status", "pending_deliveries", "deploys_by_outcome",
           "build_durations", "queue_waits", "store_files"]


@dataclass(frozen=True)
class Histogram:
    buckets: list[tuple[float, int]]  # (upper bound, builds at or below it), cumulative; +Inf excluded
    count: int
    total: float


def builds_by_status(conn: sqlite3.Connection) -> dict[str, int]:
    return dict(conn.execute("SELECT status, count(*) FROM builds GROUP BY status").fetchall())


def jobs_by_status(conn: sqlite3.Connection) -> dict[str, int]:
    return dict(conn.execute("SELECT status, count(*) FROM jobs GROUP BY status").fetchall())


def pending_deliveries(conn: sqlite3.Connection) -> int:
    """Webhook deliveries stored but not yet turned into builds (the inbox's backlog)."""
    return conn.execute("SELECT count(*) FROM deliveries WHERE state = 'pending'").fetchone()[0]


def deploys_by_outcome(conn: sqlite3.Connection) -> dict[tuple[str, str], int]:
    rows = conn.execute("SELECT kind, status, count(*) FROM deploys GROUP BY kind, status").fetchall()
    return {(kind, status): n for kind, status, n in rows}


def _histogram(conn: sqlite3.Connection, value: str, where: str, bounds: Sequence[float]) -> Histogram:
    sums = ", ".join("sum(v <= ?)" for _ in bounds)
    sql = f"SELECT count(*), coalesce(sum(v), 0), {sums} FROM (SELECT {value} AS v FROM builds WHERE {where})"
    count, total, *below = conn.execute(sql, tuple(bounds)).fetchone()
    return Histogram([(b, n or 0) for b, n in zip(bounds, below)], count, float(total))


def build_durations(conn: sqlite3.Connection, bounds: Sequence[float]) -> Histogram:
    """Started to finished, for every finished build that started."""
    return _histogram(conn, "max(finished - started, 0)", "started IS NOT NULL AND finished IS NOT NULL", bounds)


def queue_waits(conn: sqlite3.Connection, bounds: Sequence[float]) -> Histogram:
    """Queued to started, for every build that started."""
    return _histogram(conn, "max(started - created, 0)", "started IS NOT NULL", bounds)


def store_files(db_path: Path) -> dict[str, int]:
    """Bytes on disk of the database and its write-ahead log."""
    sizes = {}
    for name, path in (("database", db_path), ("wal", db_path.with_name(db_path.name + "-wal"))):
        try:
            sizes[name] = path.stat().st_size
        except FileNotFoundError:
            sizes[name] = 0
    return sizes
