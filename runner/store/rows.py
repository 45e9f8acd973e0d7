"""The rows of the build history as typed, frozen values (what `runner.store.builds` returns)."""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import field
from typing import Any

from runner.values import Value, frozen

__all__ = ["BuildRow", "StageRow", "JobRow", "StepRow", "LogChunk", "BuildDetail"]


def _duration(started: float | None, finished: float | None) -> float | None:
    if started is None:
        return None
    return (finished if finished is not None else time.time()) - started


@frozen
class BuildRow(Value):
    id: int
    repo: str
    number: int
    uid: str
    instance: str
    event: str
    status: str
    created: float
    repo_url: str | None = None
    ref: str | None = None
    branch: str | None = None
    tag: str | None = None
    sha: str | None = None
    message: str | None = None
    author: str | None = None
    trigger: str = "cli"
    params: dict[str, str] = field(default_factory=dict)
    reason: str | None = None
    pipeline: str | None = None
    pid: int | None = None
    host: str | None = None
    started: float | None = None
    finished: float | None = None
    rendered: str | None = None  # only filled by get_build (large)
    plan: str | None = None  # the Plan as JSON; only filled by get_build
    diagnostics: list[dict[str, Any]] = field(default_factory=list)
    before: str | None = None  # what `when.changes` compares against (a push's previous head)
    target_branch: str | None = None  # a pull request's base branch
    warnings: list[str] = field(default_factory=list)  # e.g. allowed failures of a successful build

    @property
    def short_sha(self) -> str:
        return (self.sha or "")[:8]

    @property
    def duration(self) -> float | None:
        return _duration(self.started, self.finished)

    def job_needs(self) -> dict[str, list[str]]:
        """Each job's ``needs`` from the stored plan (jobs that keep stage order are left out)."""
        try:
            stages = json.loads(self.plan or "{}").get("stages") or []
        except ValueError:
            return {}
        return {j["name"]: j["needs"] for s in stages for j in s.get("jobs") or () if j.get("needs") is not None}

    @property
    def label(self) -> str:
        """How a user names this build: ``repo#number``."""
        return f"{self.repo}#{self.number}"

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> BuildRow:
        data = dict(row)
        data["params"] = json.loads(data.get("params") or "{}")
        if "diagnostics" in data:
            data["diagnostics"] = json.loads(data["diagnostics"] or "[]")
        if "warnings" in data:
            data["warnings"] = json.loads(data["warnings"] or "[]")
        return cls(**data)


@frozen
class StageRow(Value):
    id: int
    position: int
    name: str
    kind: str
    status: str
    reason: str | None
    started: float | None
    finished: float | None

    @property
    def duration(self) -> float | None:
        return _duration(self.started, self.finished)


@frozen
class StepRow(Value):
    id: int
    position: int
    name: str
    attempt: int
    status: str
    exit_code: int | None
    reason: str | None
    started: float | None
    finished: float | None

    @property
    def duration(self) -> float | None:
        return _duration(self.started, self.finished)


@frozen
class JobRow(Value):
    id: int
    stage: str
    name: str
    status: str
    reason: str | None
    started: float | None
    finished: float | None
    allowed: bool = False  # failed, and its allow_failure let the build pass
    steps: tuple[StepRow, ...] = ()

    @property
    def duration(self) -> float | None:
        return _duration(self.started, self.finished)


@frozen
class LogChunk(Value):
    stage: str | None
    job: str | None
    step: int | None
    attempt: int
    first_line: int
    lines: int
    text: str
    seq: int = 0  # order within the build; pass the last one seen as ``after`` to follow a build
    time: float | None = None  # when the chunk was stored (its lines came just before)


@frozen
class BuildDetail(Value):
    build: BuildRow
    stages: tuple[StageRow, ...]
    jobs: tuple[JobRow, ...]
    approvals: tuple = ()  # runner.store.approvals.Approval, one per approval stage reached

    def jobs_of(self, stage: str) -> list[JobRow]:
        return [j for j in self.jobs if j.stage == stage]
