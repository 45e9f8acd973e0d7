"""Typed queries over the build history: builds, their stages, jobs, steps and log chunks.

Every function takes a ``sqlite3.Connection``: readers pass ``store.read()`` (or use
``store.aread(lambda c: list_builds(c))`` from the loop), writers call the ``insert_*``/``mark_*``
functions inside ``store.write(fn)``, so one transaction can hold several of them.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from typing import Any

from runner.errors import BuildNotFound
from runner.store import approvals
from runner.store.rows import BuildDetail, BuildRow, JobRow, LogChunk, StageRow, StepRow

__all__ = [
    "BuildRow",
    "StageRow",
    "JobRow",
    "StepRow",
    "LogChunk",
    "BuildDetail",
    "FINISHED",
    "insert_build",
    "mark_running",
    "store_pipeline",
    "set_pipeline_file",
    "set_sha",
    "finish_build",
    "next_number",
    "list_builds",
    "get_build",
    "status_of",
    "find_build",
    "get_detail",
    "build_logs",
    "unfinished_builds",
    "finished_stages",
    "last_log_seq",
]

FINISHED = ("success", "failure", "cancelled", "timed_out", "skipped", "config_error", "interrupted")

_SUMMARY_COLUMNS = (
    "id, repo, repo_url, number, uid, instance, event, ref, branch, tag, sha, message, author, trigger, params, "
    "status, reason, pipeline, pid, host, created, started, finished, before, target_branch, warnings"
)


# -- writing (inside store.write) ------------------------------------------------------------


def insert_build(conn: sqlite3.Connection, **fields: Any) -> tuple[int, int]:
    """Insert a build with the next number of its repo; return (id, number). Call it inside one
    write transaction: BEGIN IMMEDIATE makes the number and the insert atomic."""
    fields = dict(fields)
    fields["params"] = json.dumps(fields.get("params") or {}, sort_keys=True)
    fields.setdefault("status", "queued")
    fields.setdefault("created", time.time())
    fields["number"] = next_number(conn, fields["repo"])
    names = ", ".join(fields)
    marks = ", ".join(f":{k}" for k in fields)
    cur = conn.execute(f"INSERT INTO builds ({names}) VALUES ({marks})", fields)
    return cur.lastrowid, fields["number"]


def mark_running(conn: sqlite3.Connection, build_id: int, *, pid: int, host: str, started: float) -> bool:
    """Claim a queued build; False when it is no longer queued (cancelled or superseded meanwhile),
    so a build cancelled while its checkout was being made never runs after all."""
    cur = conn.execute(
        "UPDATE builds SET status = 'running', pid = ?, host = ?, started = ? WHERE id = ? AND status = 'queued'",
        (pid, host, started, build_id),
    )
    return cur.rowcount == 1


def store_pipeline(conn: sqlite3.Connection, build_id: int, *, pipeline: str | None, rendered: str | None,
                   plan: str | None, diagnostics: list[dict[str, Any]]) -> None:
    conn.execute(
        "UPDATE builds SET pipeline = ?, rendered = ?, plan = ?, diagnostics = ? WHERE id = ?",
        (pipeline, rendered, plan, json.dumps(diagnostics), build_id),
    )


def set_pipeline_file(conn: sqlite3.Connection, build_id: int, pipeline: str) -> None:
    """Bind a build to one pipeline file of its commit (a commit with several makes a build per file)."""
    conn.execute("UPDATE builds SET pipeline = ? WHERE id = ?", (pipeline, build_id))


def set_sha(conn: sqlite3.Connection, build_id: int, sha: str) -> None:
    """The commit a manual build's branch or tag pointed at when it was checked out."""
    conn.execute("UPDATE builds SET sha = ? WHERE id = ?", (sha, build_id))


def finish_build(conn: sqlite3.Connection, build_id: int, status: str, reason: str | None = None,
                 finished: float | None = None, warnings: list[str] | None = None) -> None:
    """Set the final status; also closes stages, jobs and steps left open (a crash, a cancel)."""
    now = finished if finished is not None else time.time()
    conn.execute(
        "UPDATE builds SET status = ?, reason = COALESCE(?, reason), finished = ?, "
        "warnings = COALESCE(?, warnings) WHERE id = ?",
        (status, reason, now, json.dumps(warnings) if warnings is not None else None, build_id),
    )
    open_status = status if status in ("cancelled", "interrupted", "timed_out") else "failure"
    conn.execute(
        "UPDATE steps SET status = ?, finished = ? WHERE status = 'running' AND job_id IN "
        "(SELECT id FROM jobs WHERE build_id = ?)",
        (open_status, now, build_id),
    )
    for table in ("jobs", "stages"):
        conn.execute(
            f"UPDATE {table} SET status = ?, finished = ? WHERE build_id = ? AND status = 'running'",
            (open_status, now, build_id),
        )
        conn.execute(
            f"UPDATE {table} SET status = 'skipped' WHERE build_id = ? AND status = 'queued'",
            (build_id,),
        )


# -- reading ---------------------------------------------------------------------------------


def last_successful_sha(conn: sqlite3.Connection, repo: str, branch: str | None, before_id: int) -> str | None:
    """The commit of the branch's newest successful build before ``before_id`` (``when.changes``
    counts from it when a push does not say what came before)."""
    if not branch:
        return None
    row = conn.execute(
        "SELECT sha FROM builds WHERE repo = ? AND branch = ? AND status = 'success' AND sha IS NOT NULL "
        "AND id < ? ORDER BY id DESC LIMIT 1", (repo, branch, before_id)).fetchone()
    return row[0] if row else None


def next_number(conn: sqlite3.Connection, repo: str) -> int:
    row = conn.execute("SELECT COALESCE(MAX(number), 0) + 1 FROM builds WHERE repo = ?", (repo,)).fetchone()
    return int(row[0])


def list_builds(conn: sqlite3.Connection, *, repo: str | None = None, status: str | None = None,
                before: int | None = None, limit: int = 20, except_repos: list[str] | None = None,
                only_repos: list[str] | None = None) -> list[BuildRow]:
    """Newest first; ``before`` a build id (keyset paging: as fast on page 200 as on page 1). An empty
    filter is no filter (``?repo=`` from a form). Only the summary columns: the rendered pipeline
    and the plan are large and not listed. ``except_repos``/``only_repos`` leave out the builds an
    anonymous reader may not see (private repositories)."""
    where, params = [], []
    for column, value in (("repo", repo), ("status", status)):
        if value:
            where.append(f"{column} = ?")
            params.append(value)
    if except_repos:
        where.append(f"repo NOT IN ({', '.join('?' * len(except_repos))})")
        params.extend(except_repos)
    if only_repos is not None:
        where.append(f"repo IN ({', '.join('?' * len(only_repos))})")
        params.extend(only_repos)
    if before is not None:
        where.append("id < ?")
        params.append(before)
    sql = f"SELECT {_SUMMARY_COLUMNS} FROM builds"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY id DESC LIMIT ?"
    return [BuildRow.from_row(r) for r in conn.execute(sql, (*params, limit))]


def get_build(conn: sqlite3.Connection, build_id: int) -> BuildRow:
    row = conn.execute(
        f"SELECT {_SUMMARY_COLUMNS}, rendered, plan, diagnostics FROM builds WHERE id = ?", (build_id,)
    ).fetchone()
    if row is None:
        raise BuildNotFound.of(build_id)
    return BuildRow.from_row(row)


def status_of(conn: sqlite3.Connection, build_id: int) -> str | None:
    """The build's status as stored now; None when there is no such build."""
    row = conn.execute("SELECT status FROM builds WHERE id = ?", (build_id,)).fetchone()
    return row[0] if row else None


def find_build(conn: sqlite3.Connection, ref: str | None, current_repo: str | None = None) -> BuildRow:
    """Resolve what a user typed: ``last`` or nothing (the newest build of the current repo),
    ``N`` (build number N of the current repo), ``repo#N``, or ``id:N`` (the build id)."""
    ref = (ref or "last").strip()
    hint = "; `conveyor builds` lists them"
    if ref.startswith("id:") and ref[3:].isdigit():
        return get_build(conn, int(ref[3:]))
    repo, _, number = ref.rpartition("#")
    if not repo:
        repo = current_repo
    if number == "last":
        sql, params = "SELECT id FROM builds", []
        if repo:
            sql, params = sql + " WHERE repo = ?", [repo]
        row = conn.execute(sql + " ORDER BY id DESC LIMIT 1", params).fetchone()
        if row is None:
            raise BuildNotFound(f"there are no builds{' of ' + repo if repo else ''} yet{hint}")
        return get_build(conn, row[0])
    if not number.isdigit():
        raise BuildNotFound(
            f"cannot read the build {ref!r}: give a number (42), repo#number (web#42), id:ID or last"
        )
    if repo:
        row = conn.execute("SELECT id FROM builds WHERE repo = ? AND number = ?", (repo, int(number))).fetchone()
        if row is None:
            raise BuildNotFound(f"{repo} has no build #{number}{hint}")
        return get_build(conn, row[0])
    rows = conn.execute("SELECT id, repo FROM builds WHERE number = ?", (int(number),)).fetchall()
    if len(rows) == 1:
        return get_build(conn, rows[0][0])
    if not rows:
        raise BuildNotFound(f"no repository has a build #{number}{hint}")
    repos = ", ".join(f"{r['repo']}#{number}" for r in rows)
    raise BuildNotFound(f"build #{number} is ambiguous outside a repository: say which one ({repos})")


def get_detail(conn: sqlite3.Connection, build_id: int) -> BuildDetail:
    build = get_build(conn, build_id)
    stages = tuple(
        StageRow(**dict(r))
        for r in conn.execute(
            "SELECT id, position, name, kind, status, reason, started, finished FROM stages "
            "WHERE build_id = ? ORDER BY position, id",
            (build_id,),
        )
    )
    steps: dict[int, list[StepRow]] = {}
    for r in conn.execute(
        "SELECT s.job_id, s.id, s.position, s.name, s.attempt, s.status, s.exit_code, s.reason, s.started, "
        "s.finished FROM steps s JOIN jobs j ON j.id = s.job_id WHERE j.build_id = ? "
        "ORDER BY s.position, s.attempt",
        (build_id,),
    ):
        data = dict(r)
        steps.setdefault(data.pop("job_id"), []).append(StepRow(**data))
    jobs = tuple(
        JobRow(**{**dict(r), "allowed": bool(r["allowed"])}, steps=tuple(steps.get(r["id"], ())))
        for r in conn.execute(
            "SELECT id, stage, name, status, reason, started, finished, allowed FROM jobs WHERE build_id = ? ORDER BY id",
            (build_id,),
        )
    )
    return BuildDetail(build, stages, jobs, approvals.of_build(conn, build_id))


def build_logs(conn: sqlite3.Connection, build_id: int, *, job: str | None = None,
               stage: str | None = None, after: int = 0) -> Iterator[LogChunk]:
    """The build's log chunks in the order they were written (those after ``after``, a ``seq``),
    optionally of one job."""
    sql = (
        "SELECT j.stage, j.name AS job, c.step, c.attempt, c.first_line, c.lines, c.text, c.seq, c.time "
        "FROM log_chunks c LEFT JOIN jobs j ON j.id = c.job_id WHERE c.build_id = ? AND c.seq > ?"
    )
    params: list[Any] = [build_id, after]
    if job is not None:
        sql += " AND j.name = ?"
        params.append(job)
    if stage is not None:
        sql += " AND j.stage = ?"
        params.append(stage)
    for r in conn.execute(sql + " ORDER BY c.seq", params):
        yield LogChunk(**dict(r))


def unfinished_builds(conn: sqlite3.Connection) -> list[BuildRow]:
    """Builds still marked running, waiting (for an approval) or queued (live ones, or ones a crash left)."""
    rows = conn.execute(
        f"SELECT {_SUMMARY_COLUMNS} FROM builds WHERE status IN ('running', 'waiting', 'queued') ORDER BY id"
    )
    return [BuildRow.from_row(r) for r in rows]


def finished_stages(conn: sqlite3.Connection, build_id: int) -> dict[str, str]:
    """Stage name -> status of the stages of a build that ended (what a resumed build leaves out)."""
    rows = conn.execute("SELECT name, status FROM stages WHERE build_id = ? AND status NOT IN ('queued', 'running')",
                        (build_id,))
    return {r["name"]: r["status"] for r in rows}


def last_log_seq(conn: sqlite3.Connection, build_id: int) -> int:
    row = conn.execute("SELECT COALESCE(MAX(seq), 0) FROM log_chunks WHERE build_id = ?", (build_id,)).fetchone()
    return int(row[0])
