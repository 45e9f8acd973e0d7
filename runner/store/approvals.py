"""Approvals: the questions approval stages ask, and who answered them, when and how.

A build is ``waiting`` while one of its approval rows has no decision. ``ask`` writes the row (once:
a resumed build finds its original question and deadline) and marks the build waiting; ``decide``
is the one way an answer gets in, from the API, the page or `conveyor approve` in any process, and
it refuses (``NotWaiting``) when the build waits for nothing. The waiting stage reads the row back
(``get``) and sets the build ``running`` again with ``resume_running``.
"""

from __future__ import annotations

import json
import sqlite3

from runner.errors import NotWaiting
from runner.values import Value, frozen

__all__ = ["Approval", "DECISIONS", "ask", "get", "decide", "settle", "resume_running", "of_build", "of_build_uid", "claim_waiting",
           "waiting_server_builds", "waiting_among"]

# approved/rejected come from a person; timed_out and not_asked (no terminal to ask on) from Conveyor.
DECISIONS = ("approved", "rejected", "timed_out", "not_asked")
_COLUMNS = "id, build_id, stage, message, approvers, requested, deadline, decision, decided_by, decided_at, comment"


@frozen
class Approval(Value):
    id: int
    build_id: int
    stage: str
    message: str
    approvers: tuple[str, ...]
    requested: float
    deadline: float | None
    decision: str | None
    decided_by: str | None
    decided_at: float | None
    comment: str | None

    @property
    def pending(self) -> bool:
        return self.decision is None

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> Approval:
        data = dict(row)
        data["approvers"] = tuple(json.loads(data["approvers"] or "[]"))
        return cls(**data)

    def to_json(self) -> dict:
        return {"stage": self.stage, "message": self.message, "approvers": list(self.approvers),
                "requested": self.requested, "deadline": self.deadline, "decision": self.decision,
                "decided_by": self.decided_by, "decided_at": self.decided_at, "comment": self.comment}


def ask(conn: sqlite3.Connection, build_id: int, stage: str, message: str, approvers: tuple[str, ...],
        now: float, timeout: float | None, warnings: tuple[str, ...] = ()) -> Approval:
    """Record the question (kept as it is when it exists: a resumed build keeps its deadline) and
    mark the build ``waiting`` while it is unanswered, with the ``warnings`` it has so far: they
    are shown while it waits, and a build resumed by another process starts from them."""
    conn.execute(
        "INSERT INTO approvals (build_id, stage, message, approvers, requested, deadline) VALUES (?, ?, ?, ?, ?, ?) "
        "ON CONFLICT (build_id, stage) DO NOTHING",
        (build_id, stage, message, json.dumps(list(approvers)), now, None if timeout is None else now + timeout),
    )
    approval = get(conn, build_id, stage)
    if approval.pending:
        conn.execute("UPDATE builds SET status = 'waiting', warnings = ? "
                     "WHERE id = ? AND status IN ('running', 'waiting')", (json.dumps(list(warnings)), build_id))
    return approval


def get(conn: sqlite3.Connection, build_id: int, stage: str) -> Approval:
    row = conn.execute(f"SELECT {_COLUMNS} FROM approvals WHERE build_id = ? AND stage = ?",
                       (build_id, stage)).fetchone()
    return Approval.from_row(row)


def of_build(conn: sqlite3.Connection, build_id: int) -> tuple[Approval, ...]:
    return tuple(Approval.from_row(r) for r in conn.execute(
        f"SELECT {_COLUMNS} FROM approvals WHERE build_id = ? ORDER BY id", (build_id,)))


def of_build_uid(conn: sqlite3.Connection, uid: str) -> tuple[Approval, ...]:
    """The approvals of the build whose uid (``BuildRef.id``) is ``uid``."""
    row = conn.execute("SELECT id FROM builds WHERE uid = ?", (uid,)).fetchone()
    return of_build(conn, row[0]) if row else ()


def decide(conn: sqlite3.Connection, build_id: int, decision: str, by: str, comment: str | None,
           now: float) -> Approval:
    """A person's answer (``approved`` or ``rejected``) to the question the build waits on."""
    assert decision in ("approved", "rejected"), decision
    status = conn.execute("SELECT status FROM builds WHERE id = ?", (build_id,)).fetchone()
    pending = conn.execute("SELECT stage FROM approvals WHERE build_id = ? AND decision IS NULL ORDER BY id",
                           (build_id,)).fetchone()
    if status is None or status[0] != "waiting" or pending is None:
        now_is = status[0] if status else "gone"
        raise NotWaiting(f"the build is {now_is}, not waiting for an approval; nothing to {decision[:-1]}")
    return settle(conn, build_id, pending[0], decision, by, comment, now)


def settle(conn: sqlite3.Connection, build_id: int, stage: str, decision: str, by: str, comment: str | None,
           now: float) -> Approval:
    """Write a decision if none is written yet (the first answer wins) and return the row as it is."""
    assert decision in DECISIONS, decision
    conn.execute(
        "UPDATE approvals SET decision = ?, decided_by = ?, decided_at = ?, comment = ? "
        "WHERE build_id = ? AND stage = ? AND decision IS NULL",
        (decision, by, now, comment or None, build_id, stage),
    )
    return get(conn, build_id, stage)


def resume_running(conn: sqlite3.Connection, build_id: int) -> None:
    """The build goes on after its approval stage: ``running`` again (unless it ended meanwhile)."""
    conn.execute("UPDATE builds SET status = 'running' WHERE id = ? AND status = 'waiting'", (build_id,))


def claim_waiting(conn: sqlite3.Connection, build_id: int, *, pid: int, host: str) -> bool:
    """A restarted server takes over a waiting build it queued; False when it no longer waits."""
    cur = conn.execute("UPDATE builds SET pid = ?, host = ? WHERE id = ? AND status = 'waiting'",
                       (pid, host, build_id))
    return cur.rowcount == 1


def waiting_server_builds(conn: sqlite3.Connection) -> list[int]:
    """Builds a server queued that wait for an approval: a restarted server resumes them."""
    rows = conn.execute("SELECT b.id FROM builds b JOIN server_builds s ON s.build_id = b.id "
                        "WHERE b.status = 'waiting' ORDER BY b.id")
    return [r[0] for r in rows]


def waiting_among(conn: sqlite3.Connection, build_ids) -> set[int]:
    """Which of these builds wait for an approval."""
    ids = tuple(build_ids) or (-1,)
    rows = conn.execute(f"SELECT id FROM builds WHERE status = 'waiting' AND id IN ({','.join('?' * len(ids))})", ids)
    return {r[0] for r in rows}
