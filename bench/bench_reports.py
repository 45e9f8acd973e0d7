"""Benchmark of test reports: a JUnit file of 10,000 cases (pytest-shaped; one in ten failed with a
trace and captured output) parsed and stored with ``ingest_reports``, the path a job's reports take.
Prints figures, never fails.

Floors, measured in the same run on the same file:
- parse: a bare ``xml.etree.ElementTree.fromstring`` of the bytes (no defusedxml, no limits, no
  cases built);
- store: a bare ``executemany`` of the same rows into a fresh SQLite table with no index, in one
  transaction, on the same kind of file (WAL, synchronous=NORMAL).
The goal is under 1 s for the whole ingest.

    python bench/bench_reports.py
"""

from __future__ import annotations

import sqlite3
import statistics
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from runner.build import BuildRequest, create_build  # noqa: E402
from runner.reports import ingest_reports, parse_files  # noqa: E402
from runner.store.db import Store  # noqa: E402

CASES, RUNS, GOAL = 10_000, 5, 1.0


def junit_file(n: int) -> bytes:
    parts = ['<?xml version="1.0" encoding="utf-8"?><testsuites><testsuite name="pytest" tests="%d">' % n]
    for i in range(n):
        head = f'<testcase classname="tests.test_module_{i % 40}" name="test_case_{i}[param-{i % 7}]" time="0.{i % 997:03d}"'
        if i % 10 == 0:
            parts.append(
                f'{head}><failure message="assert {i} == {i + 1}">def test_case_{i}():\n&gt;       assert value == {i + 1}\n'
                f'E       assert {i} == {i + 1}\n\ntests/test_module_{i % 40}.py:{i % 300}: AssertionError</failure>'
                f'<system-out>setting up fixture {i}\nrunning query {i}\n</system-out></testcase>')
        else:
            parts.append(head + "/>")
    parts.append("</testsuite></testsuites>")
    return "".join(parts).encode()


def floor_parse(data: bytes) -> float:
    began = time.perf_counter()
    ET.fromstring(data)
    return time.perf_counter() - began


def floor_store(folder: Path, rows: list[tuple]) -> float:
    conn = sqlite3.connect(folder / "floor.db", isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute("CREATE TABLE cases (report_id, build_id, rank, status, suite, classname, name, time, message, "
                 "detail, stdout, stderr)")
    began = time.perf_counter()
    conn.execute("BEGIN IMMEDIATE")
    conn.executemany("INSERT INTO cases VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
    conn.execute("COMMIT")
    took = time.perf_counter() - began
    conn.execute("DROP TABLE cases")
    conn.close()
    return took


def main() -> None:
    data = junit_file(CASES)
    figures: dict[str, list[float]] = {k: [] for k in ("floor parse", "floor store", "parse", "ingest")}
    with tempfile.TemporaryDirectory() as tmp, Store(Path(tmp) / "data") as store:
        for _ in range(RUNS):
            figures["floor parse"].append(floor_parse(data))
            began = time.perf_counter()
            (report,) = parse_files({"reports/unit.xml": data})
            cases, problem = report.cases, report.problem
            figures["parse"].append(time.perf_counter() - began)
            assert problem is None and len(cases) == CASES
            rows = [(1, 1, 0, c.status, c.suite, c.classname, c.name, c.time, c.message, c.detail, c.stdout,
                     c.stderr) for c in cases]
            figures["floor store"].append(floor_store(Path(tmp), rows))
            build_id = create_build(store, BuildRequest(repo="web", event="push", branch="main"), "bench")
            began = time.perf_counter()
            summary = ingest_reports(store, build_id, "unit", {"reports/unit.xml": data})
            figures["ingest"].append(time.perf_counter() - began)
            assert summary.totals.tests == CASES and summary.totals.failed == CASES // 10
    med = {k: statistics.median(v) for k, v in figures.items()}
    floor = med["floor parse"] + med["floor store"]
    print(f"JUnit report: {CASES:,} cases, {len(data) / 2**20:.1f} MiB, median of {RUNS} runs")
    print(f"  floor: ElementTree.fromstring      {med['floor parse'] * 1000:7.1f} ms")
    print(f"  floor: executemany into SQLite     {med['floor store'] * 1000:7.1f} ms")
    print(f"  parse (defusedxml, streamed, caps) {med['parse'] * 1000:7.1f} ms   "
          f"{med['parse'] / med['floor parse']:.2f}x the bare parse")
    print(f"  ingest_reports (parse + store)     {med['ingest'] * 1000:7.1f} ms   "
          f"{med['ingest'] / floor:.2f}x the floor ({floor * 1000:.1f} ms)")
    verdict = "under" if med["ingest"] < GOAL else "OVER"
    print(f"  goal: {CASES:,} cases parsed and stored in under {GOAL:.0f} s: {verdict} "
          f"({med['ingest']:.3f} s)")


if __name__ == "__main__":
    main()
