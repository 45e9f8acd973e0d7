"""Test reports: the JUnit files a job left (``reports: {junit: [globs]}``), parsed and stored.

The files reach this package already collected out of the job's workspace (the artifacts code does
that); ``ingest_reports`` parses each one (``junit.py``) and stores the job's cases and per-file
totals in one write transaction through the store's writer. A file that cannot be read becomes a
report with a ``problem`` (shown on the page and in the API) and never fails the build or loses
the other files' cases. Reading them back: ``runner.store.reports``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from runner.reports.junit import ReportError, TestCase, parse_junit
from runner.store import reports as q
from runner.store.db import Store

__all__ = ["ReportSummary", "ReportFile", "ingest_reports", "aingest_reports", "parse_files"]

MAX_FILE_NAME = 1000


@dataclass(frozen=True)
class ReportFile:
    file: str
    totals: q.Totals
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


def parse_files(files: Mapping[str, bytes],
                secrets: Iterable[str] = ()) -> list[tuple[str, list[TestCase], str | None]]:
    """``(file, cases, problem)`` for each file, in name order; CPU only, no store. Reports are shown
    like logs, so every secret is masked in them as the log masks it (``SecretMasker``), in the text
    as XML decodes it: a secret spelled with character references is masked too."""
    from runner.executor.logs import SecretMasker

    mask = SecretMasker(secrets).mask
    parsed = []
    for name in sorted(files):
        shown = mask(name if len(name) <= MAX_FILE_NAME else name[:MAX_FILE_NAME] + "…")
        try:
            parsed.append((shown, parse_junit(shown, files[name], mask), None))
        except ReportError as exc:
            parsed.append((shown, [], str(exc)))
    return parsed


def _summary(build_id: int, job: str, parsed) -> ReportSummary:
    return ReportSummary(build_id, job, tuple(ReportFile(f, q.Totals.of(c), p) for f, c, p in parsed))


def ingest_reports(store: Store, build_id: int, job: str, files: Mapping[str, bytes],
                   secrets: Iterable[str] = ()) -> ReportSummary:
    """Parse ``files`` (workspace path -> content), ``secrets`` masked, and store them as ``job``'s
    reports of the build, replacing what the job stored before. Blocks (parsing, then the writer):
    call it from a thread, or ``await aingest_reports(...)`` from the event loop."""
    parsed = parse_files(files, secrets)
    store.write(lambda conn: q.replace_job_reports(conn, build_id, job, parsed, time.time()))
    return _summary(build_id, job, parsed)


async def aingest_reports(store: Store, build_id: int, job: str, files: Mapping[str, bytes],
                          secrets: Iterable[str] = ()) -> ReportSummary:
    """``ingest_reports`` for the event loop: parsing runs in a thread, the write in the writer's."""
    parsed = await asyncio.to_thread(parse_files, files, secrets)
    await store.awrite(lambda conn: q.replace_job_reports(conn, build_id, job, parsed, time.time()))
    return _summary(build_id, job, parsed)
