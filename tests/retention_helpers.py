"""Builds of given ages in a real store, with stages, jobs, steps, log chunks and per-build
directories, and deploy rows: what retention tests prune."""

from __future__ import annotations

import time

from runner.build import BuildRequest, insert_request
from runner.store import builds as q

DAY = 86400.0


def add_build(store, repo: str, branch: str | None, status: str, age_days: float, now: float | None = None,
              logs: int = 3, artifacts: bool = True) -> tuple[int, str]:
    """A finished (or running) build that ended ``age_days`` before ``now``; returns (id, uid)."""
    now = time.time() if now is None else now
    ended = now - age_days * DAY

    def write(conn):
        build_id, _ = insert_request(conn, BuildRequest(repo=repo, event="push", branch=branch), "test")
        conn.execute("UPDATE builds SET created = ?, started = ?, rendered = ?, plan = ? WHERE id = ?",
                     (ended - 60, ended - 60, "stages: []\n" * 10, '{"stages": []}', build_id))
        conn.execute("INSERT INTO stages (build_id, position, name, kind, status) VALUES (?, 0, 'test', 'jobs', ?)",
                     (build_id, status))
        job_id = conn.execute("INSERT INTO jobs (build_id, stage, name, status) VALUES (?, 'test', 'unit', ?)",
                              (build_id, status)).lastrowid
        conn.execute("INSERT INTO steps (job_id, position, name, status) VALUES (?, 0, 'run', ?)", (job_id, status))
        for seq in range(logs):
            conn.execute("INSERT INTO log_chunks (build_id, job_id, step, seq, first_line, lines, text, time) "
                         "VALUES (?, ?, 0, ?, ?, 2, ?, ?)", (build_id, job_id, seq, seq * 2 + 1, "line\n" * 100, ended))
        if status == "running":
            conn.execute("UPDATE builds SET status = 'running' WHERE id = ?", (build_id,))
        else:
            q.finish_build(conn, build_id, status, finished=ended)
        return build_id, conn.execute("SELECT uid FROM builds WHERE id = ?", (build_id,)).fetchone()[0]

    build_id, uid = store.write(write)
    if artifacts:
        folder = store.data_dir / "artifacts" / uid
        folder.mkdir(parents=True)
        (folder / "app.tar").write_bytes(b"x" * 4096)
    return build_id, uid


def add_deploy(store, service: str, build_uid: str | None, status: str = "succeeded", kind: str = "deploy",
               rollback_of: int | None = None) -> int:
    return store.write(lambda c: c.execute(
        "INSERT INTO deploys (service, kind, rollback_of, build_uid, status, started, finished) "
        "VALUES (?, ?, ?, ?, ?, ?, ?)", (service, kind, rollback_of, build_uid, status, time.time(), time.time())
    ).lastrowid, durable=True)


def surviving(store) -> set[int]:
    return {row[0] for row in store.read().execute("SELECT id FROM builds")}


def rows_of(store, build_ids) -> dict[str, int]:
    """How many rows of each table still belong to ``build_ids``."""
    marks = ",".join("?" * len(build_ids)) or "NULL"
    conn, ids = store.read(), list(build_ids)
    return {
        "builds": conn.execute(f"SELECT COUNT(*) FROM builds WHERE id IN ({marks})", ids).fetchone()[0],
        "stages": conn.execute(f"SELECT COUNT(*) FROM stages WHERE build_id IN ({marks})", ids).fetchone()[0],
        "jobs": conn.execute(f"SELECT COUNT(*) FROM jobs WHERE build_id IN ({marks})", ids).fetchone()[0],
        "steps": conn.execute(f"SELECT COUNT(*) FROM steps WHERE job_id IN (SELECT id FROM jobs WHERE build_id IN "
                              f"({marks}))", ids).fetchone()[0],
        "log_chunks": conn.execute(f"SELECT COUNT(*) FROM log_chunks WHERE build_id IN ({marks})", ids).fetchone()[0],
    }
