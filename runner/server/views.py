"""Read models shared by the JSON API and the pages: builds as JSON, log text, deploy rows (the
page's log is ``log_view``)."""

from __future__ import annotations

import sqlite3
from typing import Any

from runner.store import builds as q
from runner.store.db import Store

__all__ = ["build_json", "log_text", "deploy_rows", "duration_text", "size_text"]


def size_text(n: int) -> str:
    """Bytes for people: 512 B, 3.4 KiB, 1.2 GiB."""
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"


def duration_text(seconds: float | None) -> str:
    if seconds is None:
        return ""
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.1f}s" if seconds < 10 else f"{seconds:.0f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m {secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m"


def build_json(build: q.BuildRow, detail: q.BuildDetail | None = None) -> dict[str, Any]:
    data = {
        "id": build.id, "repo": build.repo, "number": build.number, "status": build.status,
        "reason": build.reason, "event": build.event, "trigger": build.trigger, "ref": build.ref,
        "branch": build.branch, "tag": build.tag, "sha": build.sha, "message": build.message,
        "author": build.author, "params": build.params, "created": build.created, "started": build.started,
        "finished": build.finished, "duration": build.duration, "warnings": build.warnings,
        "pipeline": build.pipeline,
    }
    if detail is not None:
        needs = build.job_needs()
        data["diagnostics"] = build.diagnostics
        data["stages"] = [
            {"name": s.name, "kind": s.kind, "status": s.status, "reason": s.reason, "started": s.started,
             "finished": s.finished, "duration": s.duration,
             "jobs": [
                 {"name": j.name, "status": j.status, "reason": j.reason, "started": j.started,
                  "finished": j.finished, "duration": j.duration, "allowed": j.allowed, "needs": needs.get(j.name),
                  "steps": [{"name": st.name, "position": st.position, "attempt": st.attempt,
                             "status": st.status, "exit_code": st.exit_code, "reason": st.reason,
                             "duration": st.duration} for st in j.steps]}
                 for j in detail.jobs_of(s.name)
             ]}
            for s in detail.stages
        ]
        data["approvals"] = [a.to_json() for a in detail.approvals]
        staged = {s.name for s in detail.stages}
        post = [j for j in detail.jobs if j.stage not in staged]
        if post:
            data["post"] = [{"stage": j.stage, "name": j.name, "status": j.status, "duration": j.duration}
                            for j in post]
    return data


def log_text(conn: sqlite3.Connection, build_id: int) -> str:
    """The stored log as plain text, one header per step, as ``conveyor logs`` would show it."""
    out: list[str] = []
    current = None
    for chunk in q.build_logs(conn, build_id):
        key = (chunk.stage, chunk.job, chunk.step, chunk.attempt)
        if key != current:
            current = key
            attempt = f" (attempt {chunk.attempt})" if chunk.attempt > 1 else ""
            # Counted from 1, as `conveyor run` and `conveyor show` count steps.
            out.append(f"--- {chunk.stage or 'build'} / {chunk.job or '-'} / step {chunk.step + 1}{attempt}")
        out.append(chunk.text)
    return "\n".join(out) + ("\n" if out else "")


async def deploy_rows(store: Store, service: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
    """Deploy history, newest first, without the (large) specs."""
    def read(conn: sqlite3.Connection) -> list[dict[str, Any]]:
        sql = ("SELECT id, service, target, stack, kind, rollback_of, image, image_id, repo, build_number, "
               "commit_sha, status, reason, trigger, started, finished FROM deploys")
        params: list[Any] = []
        if service:
            sql += " WHERE service = ? OR stack = ?"
            params += [service, service]
        return [dict(r) for r in conn.execute(sql + " ORDER BY id DESC LIMIT ?", (*params, limit))]

    return await store.aread(read)
