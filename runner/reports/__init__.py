"""Test reports: the JUnit files a job left (``reports: {junit: [globs]}``), parsed and stored.

The files reach this package already collected out of the job's workspace (the artifacts code does
that); ``ingest_reports`` parses each one (``junit.py``) and stores the job's cases and per-file
totals in one write transaction through the store's writer. A file that cannot be read becomes a
report with a ``problem`` (shown on the page and in the API) and never fails the build or loses
the other files' cases. Reading them back: ``runner.store.reports``.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from runner.reports.junit import ReportError, TestCase, parse_junit
from runner.store import reports as q
from runner.store.db import Store

__all__ = ["ReportSummary", "ReportFile", "ParsedReport", "ingest_reports", "aingest_reports", "parse_files"]

MAX_FILE_NAME = 1000
# One job's reports are ingested at a time in a process, from the parse to the end of the write.
# Parsing is CPU under the GIL, so two at once are no faster, and each holds the cases its job may
# store (CASES_KEPT of each status, some hundreds of MB at worst) until they are written: jobs
# finishing together must not add those up in the server.
_INGESTING = threading.BoundedSemaphore(1)


@dataclass(frozen=True)
class ReportFile:
    file: str
    totals: q.Totals
    problem: str | None = None


class _Tally:
    """A file's totals, counted case by case as the parser reads them."""

    def __init__(self) -> None:
        self.counts = dict.fromkeys(q.RANKS, 0)
        self.seconds: float | None = None

    def add(self, case: TestCase) -> None:
        self.counts[case.status] += 1
        if case.time is not None:
            self.seconds = (self.seconds or 0.0) + case.time

    def totals(self) -> q.Totals:
        c = self.counts
        return q.Totals(tests=sum(c.values()), passed=c["passed"], failed=c["failed"], errors=c["error"],
                        skipped=c["skipped"], time=self.seconds)


@dataclass(frozen=True)
class ParsedReport:
    """One file: its totals over every case, and the cases that may be stored (at most
    ``CASES_KEPT`` of each status for the job; the store keeps what its build has room for)."""
    file: str
    totals: q.Totals
    cases: list[TestCase]
    problem: str | None = None


@dataclass(frozen=True)
class ReportSummary:
    """What one job's reports came to."""
    build_id: int
    job: str
    files: tuple[ReportFile, ...]

    @property
    def totals(self) -> q.Totals:
        parts = [f.totals for f in self.files]
        times = [t.time for t in parts if t.time is not None]
        return q.Totals(tests=sum(t.tests for t in parts), passed=sum(t.passed for t in parts),
                        failed=sum(t.failed for t in parts), errors=sum(t.errors for t in parts),
                        skipped=sum(t.skipped for t in parts), time=sum(times) if times else None)

    @property
    def problems(self) -> list[str]:
        return [f.problem for f in self.files if f.problem]


def _as_xml_reads(secret: str) -> tuple[str, ...]:
    """A secret as XML hands it over: line ends made ``\\n`` (in text), and tabs and line ends made
    spaces (in an attribute's value), so a secret written raw in either place is still masked."""
    text = secret.replace("\r\n", "\n").replace("\r", "\n")
    if not text.strip():
        return (secret,)  # as the log masks it: its spaces are not a secret to mask everywhere
    return (secret, text, text.replace("\n", " ").replace("\t", " "))


def parse_files(files: Mapping[str, bytes], secrets: Iterable[str] = ()) -> list[ParsedReport]:
    """Each file parsed, in name order; CPU only, no store. Reports are shown like logs, so every
    secret is masked in them as the log masks it (``SecretMasker``): in the text as XML decodes it
    (a secret spelled with character references is masked too), in file names and in the reasons
    a file was refused. A file's cases past what the job may store are counted and let go as they
    are read, so memory stays at the cases the job may store."""
    from runner.executor.logs import SecretMasker

    mask = SecretMasker(v for s in secrets if s for v in _as_xml_reads(s)).mask
    room = dict.fromkeys(q.RANKS, q.CASES_KEPT)
    parsed = []
    shown_names: set[str] = set()
    for name in sorted(files):
        shown = _unique(_cut_name(mask(name)), shown_names)
        tally = _Tally()
        taken = dict.fromkeys(q.RANKS, 0)

        def keep(case: TestCase) -> bool:
            tally.add(case)
            if room[case.status] > taken[case.status]:
                taken[case.status] += 1
                return True
            return False

        try:
            cases = parse_junit(shown, files[name], mask, keep)
        except ReportError as exc:  # its cases are not stored: they take no room
            parsed.append(ParsedReport(shown, q.Totals(), [], mask(str(exc))))
            continue
        for status, n in taken.items():
            room[status] -= n
        parsed.append(ParsedReport(shown, tally.totals(), cases))
    return parsed


def _cut_name(name: str) -> str:
    return name if len(name) <= MAX_FILE_NAME else name[:MAX_FILE_NAME] + "…"


def _unique(name: str, taken: set[str]) -> str:
    """``name``, or ``name (2)``, ``(3)``...: two files may look the same once cut or masked, and a
    job's reports are stored by name."""
    shown, n = name, 1
    while shown in taken:
        n += 1
        shown = f"{name} ({n})"
    taken.add(shown)
    return shown


def _summary(build_id: int, job: str, parsed: list[ParsedReport]) -> ReportSummary:
    return ReportSummary(build_id, job, tuple(ReportFile(p.file, p.totals, p.problem) for p in parsed))


def ingest_reports(store: Store, build_id: int, job: str, files: Mapping[str, bytes],
                   secrets: Iterable[str] = ()) -> ReportSummary:
    """Parse ``files`` (workspace path -> content), ``secrets`` masked, and store them as ``job``'s
    reports of the build, replacing what the job stored before. Blocks (parsing, then the writer):
    call it from a thread, or ``await aingest_reports(...)`` from the event loop. One job's reports
    at a time in a process, from the parse to the end of the write (``_INGESTING``)."""
    with _INGESTING:
        parsed = parse_files(files, secrets)
        store.write(lambda conn: q.replace_job_reports(conn, build_id, job, parsed, time.time()))
        return _summary(build_id, job, parsed)


async def aingest_reports(store: Store, build_id: int, job: str, files: Mapping[str, bytes],
                          secrets: Iterable[str] = ()) -> ReportSummary:
    """``ingest_reports`` for the event loop, in a thread."""
    return await asyncio.to_thread(ingest_reports, store, build_id, job, files, secrets)
