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


def _xml(failed: int, passed: int, errors: int = 0) -> bytes:
    cases = ([f'<testcase name="f{i}"><failure message="no"/></testcase>' for i in range(failed)]
             + [f'<testcase name="e{i}"><error message="down"/></testcase>' for i in range(errors)]
             + [f'<testcase name="p{i}"/>' for i in range(passed)])
    return f'<testsuite name="s">{"".join(cases)}</testsuite>'.encode()


def test_a_build_keeps_so_many_cases_of_each_status_and_counts_the_rest(store, monkeypatch):
    monkeypatch.setattr(q, "CASES_KEPT", 5)
    build_id = build(store)
    ingest_reports(store, build_id, "unit", {"a.xml": _xml(failed=3, passed=8)})
    ingest_reports(store, build_id, "lint", {"b.xml": _xml(failed=4, passed=1, errors=2)})
    conn = store.read()
    totals = q.build_totals(conn, build_id)
    assert (totals.tests, totals.failed, totals.errors, totals.passed) == (18, 7, 2, 9)  # every case counted
    # What fits is stored, failures before passes within the build's room for each status.
    assert q.count_cases(conn, build_id, "failed") == 5 and q.count_cases(conn, build_id, "passed") == 5
    assert q.count_cases(conn, build_id, "error") == 2
    assert {r.job: r.dropped for r in q.list_reports(conn, build_id)} == {"unit": 3, "lint": 3}
    # Collected again, a job's own stored cases are replaced, not counted against it.
    ingest_reports(store, build_id, "unit", {"a.xml": _xml(failed=1, passed=2)})
    conn = store.read()
    assert q.count_cases(conn, build_id, "failed") == 1 + 2
    assert q.count_cases(conn, build_id, "passed") == 2  # lint's one was not kept
    assert {r.job: r.dropped for r in q.list_reports(conn, build_id)} == {"unit": 0, "lint": 3}


def test_cases_come_failed_then_errors_then_skipped_then_passed_and_filter_by_status(store):
    build_id = build(store)
    ingest_reports(store, build_id, "unit", files("pytest.xml", "surefire.xml"))
    conn = store.read()
    order = [c.status for c in q.list_cases(conn, build_id)]
    assert order == sorted(order, key=q.RANKS.__getitem__) and order[0] == "failed" and order[-1] == "passed"
    for status in q.RANKS:
        chosen = q.list_cases(conn, build_id, status=status)
        assert chosen and {c.status for c in chosen} == {status}
        assert q.count_cases(conn, build_id, status) == order.count(status)
    # The filter is a range of the (build, rank) index, not a look at each failure's status.
    plan = conn.execute("EXPLAIN QUERY PLAN SELECT COUNT(*) FROM test_cases c WHERE c.build_id = ? AND c.rank = ?",
                        (build_id, 1)).fetchall()
    assert "COVERING INDEX test_cases_build (build_id=? AND rank=?)" in " ".join(r[-1] for r in plan)


def test_a_store_from_before_one_rank_per_status_is_brought_up_to_it(tmp_path):
    with Store(tmp_path / "data") as s:
        build_id = build(s)
        ingest_reports(s, build_id, "unit", files("pytest.xml", "surefire.xml"))
        want = [(c.status, c.name) for c in q.list_cases(s.read(), build_id)]
        old = {"failed": 0, "error": 0, "skipped": 1, "passed": 2}  # migration 0008's ranks

        def downgrade(conn):
            for status, rank in old.items():
                conn.execute("UPDATE test_cases SET rank = ? WHERE status = ?", (rank, status))
            conn.execute("ALTER TABLE test_reports DROP COLUMN dropped")
            conn.execute("PRAGMA user_version = 12")

        s.write(downgrade)
    with Store(tmp_path / "data") as s:
        assert s.schema_version >= 13
        conn = s.read()
        assert [(c.status, c.name) for c in q.list_cases(conn, build_id)] == want
        assert [c.status for c in q.list_cases(conn, build_id, status="error")] == ["error"]
        assert all(r.dropped == 0 for r in q.list_reports(conn, build_id))


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


def test_a_jobs_files_past_what_it_may_store_are_counted_not_held(monkeypatch):
    from runner.reports import parse_files

    monkeypatch.setattr(q, "CASES_KEPT", 4)
    first, second = parse_files({"a.xml": _xml(failed=3, passed=3), "b.xml": _xml(failed=3, passed=3)})
    assert (first.totals.tests, len(first.cases)) == (6, 6)
    # The job may store 4 of each status: one more failure and one more pass of the second file.
    assert second.totals.tests == 6 and second.totals.failed == 3
    assert [c.name for c in second.cases] == ["f0", "p0"]


def test_a_refused_file_takes_none_of_what_the_job_may_store(monkeypatch):
    from runner.reports import parse_files

    monkeypatch.setattr(q, "CASES_KEPT", 5)
    broken = _xml(failed=5, passed=0)[:-len(b"</testsuite>")]  # a killed test run: no end tag
    first, second = parse_files({"a.xml": broken, "b.xml": _xml(failed=3, passed=0)})
    assert first.problem and first.totals.tests == 0
    assert second.totals.tests == 3 and len(second.cases) == 3


def test_masked_names_that_collide_are_all_stored(store):
    build_id = build(store)
    xml = _xml(failed=1, passed=1)
    ingest_reports(store, build_id, "unit", {"r/a-tok1.xml": xml, "r/a-tok2.xml": xml}, ["tok1", "tok2"])
    reports = q.list_reports(store.read(), build_id)
    assert [r.file for r in reports] == ["r/a-********.xml", "r/a-********.xml (2)"]
    assert q.build_totals(store.read(), build_id).tests == 4


def test_one_jobs_reports_are_ingested_at_a_time_from_parse_to_write(store, monkeypatch):
    # A job's parsed cases wait in memory for the store's one writer: a second job must not parse
    # its own meanwhile, or jobs ending together add up in the server.
    import threading

    import runner.reports as reports

    parsed = []
    real = reports.parse_junit
    monkeypatch.setattr(reports, "parse_junit", lambda name, *a: parsed.append(name) or real(name, *a))
    build_id = build(store)
    gate = threading.Event()
    store.submit(lambda c: gate.wait(10))  # the writer is busy
    first = threading.Thread(target=ingest_reports, args=(store, build_id, "a", {"a.xml": _xml(1, 1)}))
    second = threading.Thread(target=ingest_reports, args=(store, build_id, "b", {"b.xml": _xml(1, 1)}))
    first.start()
    while not parsed:
        threading.Event().wait(0.01)
    second.start()
    second.join(0.5)
    assert parsed == ["a.xml"]  # the second waits while the first's cases wait for the writer
    gate.set()
    first.join(10)
    second.join(10)
    assert parsed == ["a.xml", "b.xml"] and q.build_totals(store.read(), build_id).tests == 4
