"""Per-branch summaries for the build list: each active branch's latest build and its recent ones."""

from __future__ import annotations

import sqlite3

from runner.store.rows import BuildRow

__all__ = ["branch_history"]

_COLUMNS = "id, repo, number, uid, instance, event, status, created, branch, sha, trigger, started, finished, pipeline"


def branch_history(conn: sqlite3.Connection, *, repo: str | None = None, branches: int = 12,
                   depth: int = 20, recent: int = 300) -> list[list[BuildRow]]:
    """For the branches with a build among the newest ``recent`` ones (newest activity first), at
    most ``branches`` of them: their last ``depth`` builds, oldest first. Each branch is read
    through the (repo, branch, id) index, so 10,000 stored builds cost what 300 do."""
    where, params = "branch IS NOT NULL", []
    if repo:
        where += " AND repo = ?"
        params.append(repo)
    keys = conn.execute(
        f"SELECT repo, branch, MAX(id) AS newest FROM (SELECT id, repo, branch FROM builds WHERE {where} "
        "ORDER BY id DESC LIMIT ?) GROUP BY repo, branch ORDER BY newest DESC LIMIT ?",
        (*params, recent, branches)).fetchall()
    out = []
    for key in keys:
        rows = conn.execute(f"SELECT {_COLUMNS} FROM builds WHERE repo = ? AND branch = ? ORDER BY id DESC LIMIT ?",
                            (key["repo"], key["branch"], depth)).fetchall()
        out.append([BuildRow.from_row(r) for r in reversed(rows)])
    return out
