"""The queries of artifacts: the files a job kept, per build (runner/keep/artifacts.py owns the blobs).

``add`` runs inside ``store.write`` and checks the build's size cap in the same transaction, so two
jobs finishing together cannot both slip under it.
"""

from __future__ import annotations

import sqlite3

from runner.values import Value, frozen

__all__ = ["Artifact", "ArtifactLimitError", "add", "for_build", "find", "build_total", "expire_due", "in_use"]


class ArtifactLimitError(Exception):
    """The build's artifacts would pass its size cap; the message says by how much."""


@frozen
class Artifact(Value):
    id: int
    build_id: int
    job: str
    path: str
    size: int
    sha256: str
    mode: int
    link: str | None
    created: float
    expires: float | None
    expired: float | None

    def to_json(self) -> dict:
        return {"job": self.job, "path": self.path, "size": self.size, "sha256": self.sha256 or None,
                "link": self.link, "created": self.created, "expires": self.expires,
                "expired": self.expired is not None}


def build_total(conn: sqlite3.Connection, build_id: int) -> int:
    row = conn.execute("SELECT COALESCE(SUM(size), 0) FROM artifacts WHERE build_id = ?", (build_id,)).fetchone()
    return int(row[0])


def add(conn: sqlite3.Connection, build_id: int, job: str, files: list[tuple[str, int, str, int, str | None]],
        created: float, expires: float | None, cap: int) -> None:
    """Record ``files`` (path, size, sha256, mode, link) of ``job``, replacing what the job kept before
    (a retried build keeps its last attempt); ArtifactLimitError past ``cap`` bytes for the build."""
    conn.execute("DELETE FROM artifacts WHERE build_id = ? AND job = ?", (build_id, job))
    total = build_total(conn, build_id) + sum(f[1] for f in files)
    if cap and total > cap:
        raise ArtifactLimitError(f"the build's artifacts would be {total} bytes, over its limit of {cap} bytes")
    conn.executemany(
        "INSERT INTO artifacts (build_id, job, path, size, sha256, mode, link, created, expires) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [(build_id, job, path, size, sha, mode, link, created, expires) for path, size, sha, mode, link in files])


def for_build(conn: sqlite3.Connection, build_id: int, job: str | None = None) -> list[Artifact]:
    sql, args = "SELECT * FROM artifacts WHERE build_id = ?", [build_id]
    if job is not None:
        sql, args = sql + " AND job = ?", args + [job]
    return [Artifact(**dict(row)) for row in conn.execute(sql + " ORDER BY job, path", args)]


def find(conn: sqlite3.Connection, build_id: int, path: str, job: str | None = None) -> Artifact | None:
    """The artifact at ``path``; when several jobs kept that path, the one kept last (or ``job``'s)."""
    sql, args = "SELECT * FROM artifacts WHERE build_id = ? AND path = ?", [build_id, path]
    if job is not None:
        sql, args = sql + " AND job = ?", args + [job]
    row = conn.execute(sql + " ORDER BY id DESC LIMIT 1", args).fetchone()
    return Artifact(**dict(row)) if row else None


def in_use(conn: sqlite3.Connection, build_id: int, sha256: str) -> bool:
    """Whether an unexpired artifact of the build still needs this blob."""
    return conn.execute("SELECT 1 FROM artifacts WHERE build_id = ? AND sha256 = ? AND expired IS NULL LIMIT 1",
                        (build_id, sha256)).fetchone() is not None


def expire_due(conn: sqlite3.Connection, now: float, limit: int = 500) -> list[tuple[str, str, int, int]]:
    """Mark up to ``limit`` artifacts past their expiry as expired; return (build uid, sha256, size,
    build id) of the blobs no unexpired artifact of the same build uses any more."""
    rows = conn.execute(
        "SELECT a.id, a.build_id, a.sha256, a.size, b.uid FROM artifacts a JOIN builds b ON b.id = a.build_id "
        "WHERE a.expires IS NOT NULL AND a.expired IS NULL AND a.expires <= ? LIMIT ?", (now, limit)).fetchall()
    conn.executemany("UPDATE artifacts SET expired = ? WHERE id = ?", [(now, r["id"]) for r in rows])
    gone = {(r["uid"], r["sha256"], r["size"], r["build_id"]) for r in rows
            if r["sha256"] and not in_use(conn, r["build_id"], r["sha256"])}
    return sorted(gone)
