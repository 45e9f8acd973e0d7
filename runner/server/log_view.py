"""A finished build's log for its page, a part at a time: each step's lines escaped and coloured,
with the second they were stored, counted from the build's start (shown on demand).

A long log is sent in parts of about ``PART`` bytes of text, whole chunks each: the page shows the
first part at once and fetches the next (``/builds/{id}/log-part?after=SEQ``) when asked, so a
100 MB log never makes one 100 MB page. A step cut between two parts goes on in the same box.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field
from typing import Any

from runner.server.ansi import to_html
from runner.store import builds as q

__all__ = ["LogPart", "log_part", "PART"]

PART = 256 * 1024


@dataclass
class LogPart:
    groups: list[dict[str, Any]] = field(default_factory=list)
    next_after: int | None = None  # the seq to ask for the rest from; None: this is the end


def _clock(seconds: float) -> str:
    minutes, secs = divmod(max(0, int(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes:02d}:{secs:02d}"


def log_part(conn: sqlite3.Connection, build_id: int, started: float | None, *, after: int = 0,
             budget: int = PART) -> LogPart:
    """The log from the chunk after ``after`` for about ``budget`` bytes. Colours carry over
    within a part; a part starts with none (the step's earlier part closed its spans)."""
    part, current, state, size, last_seq = LogPart(), None, {}, 0, after
    for chunk in q.build_logs(conn, build_id, after=after):
        if size >= budget:
            part.next_after = last_seq
            break
        key = (chunk.stage, chunk.job, chunk.step, chunk.attempt)
        if key != current:
            current, state = key, {}
            part.groups.append({"stage": chunk.stage, "job": chunk.job, "step": chunk.step,
                                "attempt": chunk.attempt, "key": "/".join(map(str, key)), "lines": []})
        stamp = _clock(chunk.time - started) if chunk.time is not None and started is not None else ""
        part.groups[-1]["lines"].extend((stamp, to_html(line, state)) for line in chunk.text.split("\n"))
        size += len(chunk.text)
        last_seq = chunk.seq
    return part
