"""The queries of test reports (tables ``test_reports`` and ``test_cases``, migrations 0008 and
0013): a job's parsed JUnit files written in one transaction, a build's totals and cases (failures
first), and the pass/fail trend of a branch.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol

__all__ = ["Totals", "ReportRow", "CaseRow", "TrendPoint", "RANKS", "CASES_KEPT", "replace_job_reports",
           "build_totals", "list_reports", "list_cases", "count_cases", "trend"]

# How a reader wants a build's cases ordered: what failed first, then what could not run, then
# what was skipped, then the rest. One rank per status, so a status is a range of the index.
RANKS = {"failed": 0, "error": 1, "skipped": 2, "passed": 3}
# Cases a build stores of each status; past that they are counted (totals, ``dropped``), not
# stored. No reader pages through more, and a report of a million cases would otherwise hold the
# store's only writer for seconds (5 s here) and add hundreds of MB to the database.
CASES_KEPT = 100_000


class _Report(Protocol):  # runner.reports.ParsedReport, without importing upwards
    file: str
    totals: Totals
    cases: list[_Case]
    problem: str | None


class _Case(Protocol):  # runner.reports.junit.TestCase, without importing upwards
    suite: str
    classname: str
    name: str
    status: str
    time: float | None
    message: str
    detail: str
    stdout: str
    stderr: str


@dataclass(frozen=True)
class Totals:
    tests: int = 0
    passed: int = 0
    failed: int = 0
    errors: int = 0
    skipped: int = 0
    time: float | None = None

    @classmethod
    def of(cls, cases: Iterable[_Case]) -> Totals:
        counts = {"passed": 0, "failed": 0, "error": 0, "skipped": 0}
        seconds, timed = 0.0, False
        for case in cases:
            counts[case.status] += 1
            if case.time is not None:
                seconds, timed = seconds + case.time, True
        return cls(tests=sum(counts.values()), passed=counts["passed"], failed=counts["failed"],
                   errors=counts["error"], skipped=counts["skipped"], time=seconds if timed else None)

    @property
    def broken(self) -> int:
        """Failed or in error: what makes a test run red."""
        return self.failed + self.errors

    def to_json(self) -> dict[str, Any]:
        return {"tests": self.tests, "passed": self.passed, "failed": self.failed, "errors": self.errors,
                "skipped": self.skipped, "time": self.time}


@dataclass(frozen=True)
class ReportRow:
    id: int
    job: str
    file: str
    totals: Totals
    problem: str | None
    dropped: int = 0  # cases counted in the totals but not stored (CASES_KEPT)

    def to_json(self) -> dict[str, Any]:
        return {"job": self.job, "file": self.file, "problem": self.problem, "dropped": self.dropped,
                **self.totals.to_json()}


@dataclass(frozen=True)
class CaseRow:
    id: int
    job: str
    file: str
    status: str
    suite: str
    classname: str
    name: str
    time: float | None
    message: str
    detail: str
    stdout: str
    stderr: str

    @property
    def title(self) -> str:
        """``classname.name``, as test runners print a test."""
        return f"{self.classname}.{self.name}" if self.classname else self.name

    def to_json(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in ("job", "file", "status", "suite", "classname", "name", "time",
                                              "message", "detail", "stdout", "stderr")}


@dataclass(frozen=True)
class TrendPoint:
    build_id: int
    number: int
    status: str
    totals: Totals


# -- writing (inside store.write) ------------------------------------------------------------


def replace_job_reports(conn: sqlite3.Connection, build_id: int, job: str, reports: Iterable[_Report],
                        now: float) -> None:
    """Store a job's reports in place of what the job stored before (a re-collected job replaces,
    never doubles, its counts). One transaction: all or nothing. A report's totals count every case
    of its file; its cases are stored while the build has room for their status (``CASES_KEPT``),
    the rest counted in the report's ``dropped``."""
    conn.execute("DELETE FROM test_reports WHERE build_id = ? AND job = ?", (build_id, job))
    room = dict.fromkeys(RANKS.values(), CASES_KEPT)
    for rank, stored in conn.execute("SELECT rank, COUNT(*) FROM test_cases WHERE build_id = ? GROUP BY rank",
                                     (build_id,)):
        room[rank] = CASES_KEPT - stored
    for report in reports:
        t = report.totals
        kept = []
        for c in report.cases:
            rank = RANKS[c.status]
            if room[rank] > 0:
                room[rank] -= 1
                kept.append((build_id, rank, c.status, c.suite, c.classname, c.name, c.time, c.message, c.detail,
                             c.stdout, c.stderr))
        report_id = conn.execute(
            "INSERT INTO test_reports (build_id, job, file, tests, passed, failed, errors, skipped, time, problem, "
            "dropped, created) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (build_id, job, report.file, t.tests, t.passed, t.failed, t.errors, t.skipped, t.time, report.problem,
             t.tests - len(kept), now),
        ).lastrowid
        conn.executemany(
            "INSERT INTO test_cases (report_id, build_id, rank, status, suite, classname, name, time, message, "
            "detail, stdout, stderr) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [(report_id, *row) for row in kept],
        )


# -- reading ---------------------------------------------------------------------------------

_SUMS = ("COALESCE(SUM(tests), 0), COALESCE(SUM(passed), 0), COALESCE(SUM(failed), 0), "
         "COALESCE(SUM(errors), 0), COALESCE(SUM(skipped), 0), SUM(time)")


def _totals(row: sqlite3.Row | tuple) -> Totals:
    return Totals(*row)


def build_totals(conn: sqlite3.Connection, build_id: int) -> Totals:
    return _totals(conn.execute(f"SELECT {_SUMS} FROM test_reports WHERE build_id = ?", (build_id,)).fetchone())


def list_reports(conn: sqlite3.Connection, build_id: int) -> list[ReportRow]:
    rows = conn.execute(
        "SELECT id, job, file, tests, passed, failed, errors, skipped, time, problem, dropped FROM test_reports "
        "WHERE build_id = ? ORDER BY job, file", (build_id,)).fetchall()
    return [ReportRow(r[0], r[1], r[2], _totals(tuple(r)[3:9]), r[9], r[10]) for r in rows]


def _status_filter(status: str | None) -> tuple[str, list[Any]]:
    if status is None:
        return "", []
    return " AND c.rank = ?", [RANKS[status]]  # a range of the index, not a look at every row


def list_cases(conn: sqlite3.Connection, build_id: int, *, status: str | None = None, limit: int = 100,
               offset: int = 0) -> list[CaseRow]:
    """A page of the build's cases, failures and errors first, then skipped, then passed."""
    where, params = _status_filter(status)
    rows = conn.execute(
        "SELECT c.id, r.job, r.file, c.status, c.suite, c.classname, c.name, c.time, c.message, c.detail, "
        "c.stdout, c.stderr FROM test_cases c JOIN test_reports r ON r.id = c.report_id "
        f"WHERE c.build_id = ?{where} ORDER BY c.rank, c.id LIMIT ? OFFSET ?",
        (build_id, *params, limit, offset)).fetchall()
    return [CaseRow(*r) for r in rows]


def count_cases(conn: sqlite3.Connection, build_id: int, status: str | None = None) -> int:
    """The build's stored cases (of ``status``): what a reader can page through."""
    where, params = _status_filter(status)
    return conn.execute(f"SELECT COUNT(*) FROM test_cases c WHERE c.build_id = ?{where}",
                        (build_id, *params)).fetchone()[0]


def trend(conn: sqlite3.Connection, repo: str, branch: str, *, until: int | None = None,
          limit: int = 20) -> list[TrendPoint]:
    """The last ``limit`` builds of a branch that stored test reports (up to build ``until``), oldest
    first: the pass/fail history a reader scans left to right."""
    rows = conn.execute(
        f"SELECT b.id, b.number, b.status, {_SUMS} FROM builds b JOIN test_reports r ON r.build_id = b.id "
        "WHERE b.repo = ? AND b.branch = ? AND b.id <= ? GROUP BY b.id ORDER BY b.id DESC LIMIT ?",
        (repo, branch, until if until is not None else 2**63 - 1, limit)).fetchall()
    return [TrendPoint(r[0], r[1], r[2], _totals(tuple(r)[3:])) for r in reversed(rows)]
