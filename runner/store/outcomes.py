"""What came before a build on its branch: the question behind a ``fixed`` notification."""

from __future__ import annotations

import sqlite3

from runner.store.rows import BuildRow

__all__ = ["previous_outcome"]

_OUTCOMES = ("success", "failure", "timed_out", "config_error")


def previous_outcome(conn: sqlite3.Connection, build: BuildRow) -> str | None:
    """The status of the newest earlier build of the same repository, branch and pipeline file that
    succeeded or broke; cancelled, interrupted and skipped builds are passed over (they say nothing
    of the code), as Jenkins passes over aborted ones. None for tags and a branch's first build."""
    if build.branch is None:
        return None
    row = conn.execute(
        f"SELECT status FROM builds WHERE repo = ? AND branch = ? AND pipeline IS ? AND id < ? "
        f"AND status IN ({', '.join('?' * len(_OUTCOMES))}) ORDER BY id DESC LIMIT 1",
        (build.repo, build.branch, build.pipeline, build.id, *_OUTCOMES)).fetchone()
    return row[0] if row else None
