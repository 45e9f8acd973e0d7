"""The queries of caches: one archive per namespace and key, used-at times for LRU eviction."""

from __future__ import annotations

import sqlite3

from runner.values import Value, frozen

__all__ = ["CacheRow", "get", "touch", "put", "evict", "list_caches", "remove"]


@frozen
class CacheRow(Value):
    namespace: str
    key: str
    file: str
    size: int
    created: float
    used: float


def get(conn: sqlite3.Connection, namespace: str, key: str) -> CacheRow | None:
    row = conn.execute("SELECT * FROM caches WHERE namespace = ? AND key = ?", (namespace, key)).fetchone()
    return CacheRow(**dict(row)) if row else None


def touch(conn: sqlite3.Connection, namespace: str, key: str, now: float) -> None:
    conn.execute("UPDATE caches SET used = ? WHERE namespace = ? AND key = ?", (now, namespace, key))


def put(conn: sqlite3.Connection, row: CacheRow) -> str | None:
    """Record ``row``; return the file of the archive it replaces (to delete), if any."""
    old = get(conn, row.namespace, row.key)
    conn.execute("INSERT OR REPLACE INTO caches (namespace, key, file, size, created, used) VALUES (?, ?, ?, ?, ?, ?)",
                 (row.namespace, row.key, row.file, row.size, row.created, row.used))
    return old.file if old and old.file != row.file else None


def evict(conn: sqlite3.Connection, limit: int, forks_limit: int | None = None) -> list[CacheRow]:
    """Remove the least recently used rows until the forks' namespaces (``REPO#fork``) hold at most
    ``forks_limit`` and all of them at most ``limit``, the forks' first; return them."""
    gone = _evict(conn, forks_limit, f"WHERE {_FORK}") if forks_limit is not None else []
    return gone + _evict(conn, limit, "")


_FORK = "namespace LIKE '%#fork'"


def _evict(conn: sqlite3.Connection, limit: int, where: str) -> list[CacheRow]:
    total = conn.execute(f"SELECT COALESCE(SUM(size), 0) FROM caches {where}").fetchone()[0]
    gone = []
    for row in conn.execute(f"SELECT * FROM caches {where} ORDER BY {_FORK} DESC, used, created").fetchall():
        if total <= limit:
            break
        conn.execute("DELETE FROM caches WHERE namespace = ? AND key = ?", (row["namespace"], row["key"]))
        total -= row["size"]
        gone.append(CacheRow(**dict(row)))
    return gone


def list_caches(conn: sqlite3.Connection, namespace: str | None = None) -> list[CacheRow]:
    sql, args = "SELECT * FROM caches", []
    if namespace is not None:
        sql, args = sql + " WHERE namespace = ?", [namespace]
    return [CacheRow(**dict(r)) for r in conn.execute(sql + " ORDER BY used DESC", args)]


def remove(conn: sqlite3.Connection, namespace: str | None, key: str | None) -> list[CacheRow]:
    """Delete the rows of ``namespace`` (all when None) with ``key`` (all when None); return them."""
    rows = [r for r in list_caches(conn, namespace) if key is None or r.key == key]
    conn.executemany("DELETE FROM caches WHERE namespace = ? AND key = ?", [(r.namespace, r.key) for r in rows])
    return rows
