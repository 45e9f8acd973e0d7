"""Counts for ``GET /metrics``, read from the store on each scrape.

Each query is answered from an index alone (the ``*_metrics.sql`` migration), so a scrape costs a
few index scans whatever the size of the logs and plans; the two duration histograms are kept
incrementally (``Tally``). Histograms come back cumulative, as Prometheus wants them: ``(counts per
upper bound, total count, sum)``.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Histogram", "Tally", "builds_by_status", "jobs_by_status", "pending_deliveries", "deploys_by_outcome",
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


class Tally:
    """A histogram of one duration over builds, kept up to date a slice at a time.

    The times of a build never change once set, so rows whose ``column`` (the time the duration
    ends) is older than ``SETTLE_SECONDS`` are counted once and remembered; each read counts only
    the slice that settled since and the recent rows. A full scan happens once per server, not once
    per scrape. The margin covers a row written a moment after its time was taken.
    """

    SETTLE_SECONDS = 300.0

    def __init__(self, column: str, value: str, bounds: Sequence[float]) -> None:
        self.bounds = tuple(bounds)
        cases = " ".join(f"WHEN v <= {float(b)!r} THEN {i}" for i, b in enumerate(self.bounds))
        self._sql = (f"SELECT CASE {cases} ELSE {len(self.bounds)} END, count(*), coalesce(sum(v), 0) "
                     f"FROM (SELECT max({value}, 0) AS v FROM builds WHERE {column} > ? AND {column} <= ? "
                     f"AND {value} IS NOT NULL) GROUP BY 1")
        self._settled = [0] * (len(self.bounds) + 1)
        self._settled_sum = 0.0
        self._mark = float("-inf")  # rows up to here are in _settled

    def _count(self, conn: sqlite3.Connection, after: float, upto: float, into: list[int]) -> float:
        total = 0.0
        for bucket, n, s in conn.execute(self._sql, (after, upto)):
            into[bucket] += n
            total += s
        return total

    def read(self, conn: sqlite3.Connection, now: float) -> Histogram:
        settle_upto = now - self.SETTLE_SECONDS
        if settle_upto > self._mark:
            self._settled_sum += self._count(conn, self._mark, settle_upto, self._settled)
            self._mark = settle_upto
        counts = list(self._settled)
        total = self._settled_sum + self._count(conn, self._mark, float("inf"), counts)
        cumulative, running = [], 0
        for bound, n in zip(self.bounds, counts):
            running += n
            cumulative.append((bound, running))
        return Histogram(cumulative, sum(counts), total)


def build_durations(bounds: Sequence[float]) -> Tally:
    """Started to finished, for every finished build that started."""
    return Tally("finished", "finished - started", bounds)


def queue_waits(bounds: Sequence[float]) -> Tally:
    """Queued to started, for every build that started."""
    return Tally("started", "started - created", bounds)


def store_files(db_path: Path) -> dict[str, int]:
    """Bytes on disk of the database and its write-ahead log."""
    sizes = {}
    for name, path in (("database", db_path), ("wal", db_path.with_name(db_path.name + "-wal"))):
        try:
            sizes[name] = path.stat().st_size
        except FileNotFoundError:
            sizes[name] = 0
    return sizes
