"""ingest_reports on a real SQLite store, with builds made through the normal path (create_build):
totals per file and per build, failures first, a bad file kept as a problem next to the good ones,
a re-collected job replacing its reports, and everything going with its build."""

from __future__ import annotations

from pathlib import Path

import pytest

from runner.build import BuildRequest, create_build
from runner.reports import aingest_reports, ingest_reports
from runner.store import reports as q
from runner.store.builds import finish_build, get_build
from runner.store.db import Store
from runner.store.retention import delete_builds

DATA = Path(__file__).parent / "data"


@pytest.fixture
def store(tmp_path):
    with Store(tmp_path / "data") as s:
        yield s


def build(store, branch="main") -> int:
    return create_build(store, BuildRequest(repo="web", event="push", branch=branch), "t-reports")


def files(*names: str) -> dict[str, bytes]:
    return {f"reports/{n}": (DATA / n).read_bytes() for n in names}


def test_a_jobs_reports_are_stored_with_totals_and_failures_first(store):
    build_id = build(store)
    summary = ingest_reports(store, build_id, "unit", {**files("pytest.xml", "surefire.xml"),
                                                       "reports/broken.xml": b"<testsuite><testcase"})
    assert summary.totals.tests == 11 and summary.totals.broken == 4 and summary.totals.skipped == 3
    assert summary.problems == ["reports/broken.xml:1:12: not well-formed XML (unclosed token); "
                                "is the report complete (a killed test run leaves half a file)?"]
    conn = store.read()
    totals = q.build_totals(conn, build_id)
    assert (totals.tests, totals.passed, totals.failed, totals.errors, totals.skipped) == (11, 4, 3, 1, 3)
    reports = {r.file: r for r in q.list_reports(conn, build_id)}
    assert reports["reports/broken.xml"].problem and reports["reports/broken.xml"].totals.tests == 0
    assert reports["reports/surefire.xml"].totals.failed == 2 and reports["reports/surefire.xml"].job == "unit"
    cases = q.list_cases(conn, build_id, limit=100)
    assert sorted(c.status for c in cases[:4]) == ["error", "failed", "failed", "failed"]
    assert {c.status for c in cases[4:7]} == {"skipped"} and {c.status for c in cases[7:]} == {"passed"}
    failed = q.list_cases(conn, build_id, status="failed", limit=2, offset=1)
    assert len(failed) == 2 and all(c.status == "failed" for c in failed)
    assert q.count_cases(conn, build_id) == 11 and q.count_cases(conn, build_id, "error") == 1


def test_collecting_a_job_again_replaces_its_reports_and_leaves_other_jobs_alone(store):
    build_id = build(store)
    ingest_reports(store, build_id, "unit", files("pytest.xml"))
    ingest_reports(store, build_id, "go", files("go_junit_report_v1.xml"))
    ingest_reports(store, build_id, "unit", files("jest.xml"))
    conn = store.read()
    assert sorted((r.job, r.file) for r in q.list_reports(conn, build_id)) == [
        ("go", "reports/go_junit_report_v1.xml"), ("unit", "reports/jest.xml")]
    assert q.build_totals(conn, build_id).tests == 6


async def test_ingest_from_the_event_loop(store):
    build_id = build(store)
    summary = await aingest_reports(store, build_id, "unit", files("go_junit_report_v2.xml"))
    assert summary.totals.failed == 1 and summary.totals.errors == 1
    assert q.count_cases(store.read(), build_id) == 3


def uid_of(store, build_id) -> str:
    return get_build(store.read(), build_id).uid


def test_reports_go_with_their_build(store):
    gone, kept = build(store), build(store)
    for build_id in (gone, kept):
        ingest_reports(store, build_id, "unit", files("pytest.xml"))
    store.write(lambda conn: finish_build(conn, gone, "failure"))
    store.write(lambda conn: finish_build(conn, kept, "success"))
    uid = uid_of(store, gone)
    assert store.write(lambda conn: delete_builds(conn, [gone])) == [(gone, uid)]
    conn = store.read()
    assert conn.execute("SELECT COUNT(*) FROM test_reports WHERE build_id = ?", (gone,)).fetchone()[0] == 0
    assert conn.execute("SELECT COUNT(*) FROM test_cases WHERE build_id = ?", (gone,)).fetchone()[0] == 0
    assert q.count_cases(conn, kept) == 6


def test_the_trend_is_the_branchs_builds_with_reports_oldest_first(store):
    ids = []
    for n in range(25):
        build_id = build(store)
        ids.append(build_id)
        if n == 3:
            continue  # a build that left no report is no point on the trend
        failing = b"<failure message='x'/>" if n % 2 else b""
        ingest_reports(store, build_id, "unit", {"r.xml": b"<testsuite><testcase name='a'/><testcase name='b'>"
                                                 + failing + b"</testcase></testsuite>"})
    other = build(store, branch="feature")
    ingest_reports(store, other, "unit", files("pytest.xml"))
    points = q.trend(store.read(), "web", "main")
    assert [p.build_id for p in points] == ids[5:]
    assert [(p.totals.passed, p.totals.failed) for p in points[:2]] == [(1, 1), (2, 0)]
    until = q.trend(store.read(), "web", "main", until=ids[10], limit=5)
    assert [p.build_id for p in until] == ids[6:11]
