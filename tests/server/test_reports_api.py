"""Test reports through a real server and a real store: a build made the normal way
(``create_build``), its job's JUnit files ingested as the collection step hands them over, then
read back through ``GET /api/builds/{id}/tests`` (failures first, paged), the trend (JSON and SVG),
the build page, and ``conveyor show`` in a separate process on the same data directory."""

from __future__ import annotations

import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

from runner.build import BuildRequest, create_build
from runner.reports import aingest_reports
from runner.server.keys import STORE
from runner.store.builds import finish_build

DATA = Path(__file__).parents[1] / "reports" / "data"
ROOT = Path(__file__).parents[2]


def _many(n: int, broken) -> bytes:
    cases = "".join(
        f"<testcase classname='pkg.t' name='test_{i}' time='0.001'>"
        + (f"<failure message='case {i} broke'>trace {i}</failure>" if i in broken else "")
        + "</testcase>" for i in range(n))
    return f"<testsuite name='big'>{cases}</testsuite>".encode()


async def _build(store, branch="main") -> int:
    import asyncio

    build_id = await asyncio.to_thread(create_build, store, BuildRequest(repo="web", event="push", branch=branch),
                                       "t-reports-api")
    await store.awrite(lambda c: finish_build(c, build_id, "failure"))
    return build_id


async def test_the_api_gives_totals_reports_and_failures_first_in_pages(server, tmp_path):
    client = await server(start_queue=False)
    store = client.app[STORE]
    build_id = await _build(store)
    await aingest_reports(store, build_id, "unit", {
        "reports/pytest.xml": (DATA / "pytest.xml").read_bytes(),
        "reports/big.xml": _many(250, broken=range(0, 250, 50)),
        "reports/evil.xml": b'<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]><testsuite>&e;</testsuite>',
    })

    data = await (await client.get(f"/api/builds/{build_id}/tests?limit=4")).json()
    assert data["totals"] == {"tests": 256, "passed": 247, "failed": 6, "errors": 1, "skipped": 2,
                              "time": data["totals"]["time"]}
    evil = next(r for r in data["reports"] if r["file"] == "reports/evil.xml")
    assert "declares a DTD" in evil["problem"] and evil["tests"] == 0
    assert [c["status"] for c in data["cases"]] and all(c["status"] in ("failed", "error") for c in data["cases"])
    assert data["count"] == 256 and data["next"] == f"/api/builds/{build_id}/tests?limit=4&offset=4"
    seen = list(data["cases"])
    url = data["next"]
    while url:
        page = await (await client.get(url)).json()
        seen += page["cases"]
        url = page["next"]
    assert len(seen) == 256 and len({(c["file"], c["name"]) for c in seen}) == 256
    statuses = [c["status"] for c in seen]
    assert statuses[:7].count("passed") == 0 and statuses[7:9] == ["skipped", "skipped"]
    assert set(statuses[9:]) == {"passed"}

    failed = await (await client.get(f"/api/builds/{build_id}/tests?status=failed")).json()
    assert failed["count"] == 6 and failed["next"] is None
    divide = next(c for c in failed["cases"] if c["name"] == "test_divide")
    assert divide["message"].startswith("assert 0.5 == 2") and "dividing 1 by 2" in divide["stdout"]
    assert divide["job"] == "unit" and divide["classname"] == "tests.test_math"

    for query, says in (("status=broken", "status must be one of"), ("limit=0", "limit must be"),
                        ("limit=x", "limit must be"), ("offset=-1", "offset must be")):
        answer = await client.get(f"/api/builds/{build_id}/tests?{query}")
        assert answer.status == 400 and says in (await answer.json())["error"]
    missing = await client.get("/api/builds/999999/tests")
    assert missing.status == 404 and "no build with id 999999" in (await missing.json())["error"]
    none = await (await client.get(f"/api/builds/{await _build(store)}/tests")).json()
    assert none["totals"]["tests"] == 0 and none["cases"] == [] and none["reports"] == []


async def test_the_trend_and_conveyor_show(server, tmp_path):
    client = await server(start_queue=False)
    store = client.app[STORE]
    ids = []
    for n in range(4):
        build_id = await _build(store)
        ids.append(build_id)
        await aingest_reports(store, build_id, "unit", {"r.xml": _many(20, broken=range(n + 1))})
    other = await _build(store, branch="feature")
    await aingest_reports(store, other, "unit", {"r.xml": _many(5, broken=range(5))})

    trend = await (await client.get("/api/tests/trend?repo=web&branch=main")).json()
    assert [(b["id"], b["failed"], b["passed"]) for b in trend["builds"]] == [
        (ids[0], 1, 19), (ids[1], 2, 18), (ids[2], 3, 17), (ids[3], 4, 16)]
    answer = await client.get(f"/tests/trend.svg?repo=web&branch=main&until={ids[2]}")
    assert answer.content_type == "image/svg+xml"
    svg = ET.fromstring(await answer.text())  # well-formed SVG
    ns = {"s": "http://www.w3.org/2000/svg"}
    bars = svg.findall("s:a", ns)
    assert [a.get("data-build") for a in bars] == [str(i) for i in ids[:3]]
    assert "3 failed" in bars[2].find("s:title", ns).text and bars[2].find("s:rect[@class='current']", ns) is not None
    red = [float(a.find("s:rect[@class='seg-broken']", ns).get("height")) for a in bars]
    assert red[0] < red[1] < red[2]
    assert (await client.get("/tests/trend.svg?repo=web")).status == 400

    page = await (await client.get(f"/builds/{ids[3]}")).text()
    assert "4 failed" in page and "case 3 broke" in page and "<svg" in page and 'data-build="%d"' % other not in page

    data_dir = client.app[STORE].data_dir
    shown = subprocess.run([sys.executable, "-m", "runner", "show", f"id:{ids[3]}", "--data-dir", str(data_dir)],
                           capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    at = lines.index("tests: 20 (16 passed, 4 failed, 0 errors, 0 skipped) from 1 report")
    assert lines[at + 1:at + 5] == [f"  failed: pkg.t.test_{i} [unit]: case {i} broke" for i in range(4)]


async def test_cases_past_what_a_build_keeps_are_counted_and_said_everywhere(server, monkeypatch):
    from runner.store import reports as r

    monkeypatch.setattr(r, "CASES_KEPT", 10)
    client = await server(start_queue=False)
    store = client.app[STORE]
    build_id = await _build(store)
    await aingest_reports(store, build_id, "unit", {"r.xml": _many(30, broken=range(12))})

    data = await (await client.get(f"/api/builds/{build_id}/tests?limit=100")).json()
    assert data["totals"]["tests"] == 30 and data["totals"]["failed"] == 12
    assert data["count"] == 20 and len(data["cases"]) == 20 and data["next"] is None
    assert [x["dropped"] for x in data["reports"]] == [10]
    page = await (await client.get(f"/builds/{build_id}")).text()
    assert "10 cases are counted above but not listed: a build keeps at most 10 cases of each status" in page

    shown = subprocess.run([sys.executable, "-m", "runner", "show", f"id:{build_id}", "--data-dir",
                            str(store.data_dir)], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert shown.returncode == 0, shown.stderr
    # A separate process, so not patched: the count is the stored one, the cap the real one.
    assert "  10 cases counted but not kept: a build keeps at most 100,000 of each status" in shown.stdout
