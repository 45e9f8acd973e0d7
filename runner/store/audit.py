"""The audit log's rows (migration ``0009_audit.sql``): written one per change, read newest first in
pages (keyset on ``id``, as fast on page 200 as on page 1)."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["Entry", "write", "page"]

_COLUMNS = "id, at, actor, role, action, build_id, repo, what, detail, address"


@dataclass(frozen=True)
class Entry:
    at: float
    actor: str | None
    role: str | None
    action: str
    build_id: int | None = None
    repo: str | None = None
    what: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)
    address: str | None = None
    id: int | None = None

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> Entry:
        data = dict(row)
        data["detail"] = json.loads(data["detail"] or "{}")
        return cls(**data)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def write(conn: sqlite3.Connection, entry: Entry) -> int:
    cur = conn.execute(
        "INSERT INTO audit_log (at, actor, role, action, build_id, repo, what, detail, address) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (entry.at, entry.actor, entry.role, entry.action, entry.build_id, entry.repo, entry.what,
         json.dumps(entry.detail, separators=(",", ":"), default=str), entry.address))
    return cur.lastrowid


def page(conn: sqlite3.Connection, *, before: int | None = None, limit: int = 50, actor: str | None = None,
         action: str | None = None) -> list[Entry]:
    """Newest first; an empty filter is no filter."""
    where, params = [], []
    for column, value in (("actor", actor), ("action", action)):
        if value:
            where.append(f"{column} = ?")
            params.append(value)
    if before is not None:
        where.append("id < ?")
        params.append(before)
    sql = f"SELECT {_COLUMNS} FROM audit_log"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY id DESC LIMIT ?"
    return [Entry.from_row(r) for r in conn.execute(sql, (*params, limit))]
