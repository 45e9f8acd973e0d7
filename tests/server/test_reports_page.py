"""The build page's Tests section in headless Chromium: a real build (Docker backend, busybox)
through the real server, its job's JUnit report ingested as the collection step hands it over, then
the page shows the counts, the failed tests first with their messages and output, a link from each
to its job's log section, a refused hostile file, and the branch's trend, all under the CSP."""

from __future__ import annotations

import os

import pytest

from runner.reports import aingest_reports
from runner.server.keys import STORE
from tests.server.conftest import wait_for

CHROMIUM = "/usr/bin/chromium"
TOKEN = "reports-admin-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
PIPELINE = """\
name: reports
image: conveyor-test/busybox:1
stages:
  - name: build
    jobs:
      - name: compile
        steps: ["echo compiled"]
  - name: test
    jobs:
      - name: unit
        steps: ["echo 'tests/test_cart.py::test_total FAILED'", "echo done"]
"""
REPORT = b"""<?xml version="1.0" encoding="utf-8"?>
<testsuites><testsuite name="pytest" tests="4">
<testcase classname="tests.test_cart" name="test_add" time="0.001"/>
<testcase classname="tests.test_cart" name="test_total" time="0.020"><failure message="assert 20 == 30">def test_total():
&gt;       assert cart.total() == 30
E       assert 20 == 30</failure><system-out>cart has 2 items</system-out></testcase>
<testcase classname="tests.test_db" name="test_connect" time="0.100"><error message="ConnectionRefusedError: db:5432">refused</error></testcase>
<testcase classname="tests.test_cart" name="test_coupon" time="0"><skipped message="coupons are not built yet"/></testcase>
</testsuite></testsuites>
"""
LAUGHS = (b'<?xml version="1.0"?><!DOCTYPE l [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;">]>'
          b"<testsuite>&b;</testsuite>")


async def _finished(client, build_id):
    async def done():
        data = await (await client.get(f"/api/builds/{build_id}")).json()
        return data if data["status"] not in ("queued", "running") else None

    return await wait_for(done, timeout=120, interval=0.2)


@pytest.mark.browser
@pytest.mark.docker
async def test_the_page_shows_failed_tests_with_messages_and_links_to_the_job_log(server, git_repo, docker_client):
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"{CHROMIUM} is absent; .ci/run installs Debian's chromium")
    from playwright.async_api import async_playwright

    repo = git_repo({".conveyor.yml": PIPELINE})
    client = await server([{"name": "acme/reports", "provider": "github", "path": str(repo)}], admin_token=TOKEN)
    store = client.app[STORE]
    build_ids = []
    for n in range(2):  # two builds of main: the trend has two bars
        created = await client.post("/api/builds", json={"repo": "acme/reports"}, headers=AUTH)
        build_id = (await created.json())["id"]
        assert (await _finished(client, build_id))["status"] == "success"
        report = REPORT if n else REPORT.replace(b"<failure", b"<skipped").replace(b"</failure>", b"</skipped>")
        summary = await aingest_reports(store, build_id, "unit",
                                        {"reports/unit.xml": report, "reports/laughs.xml": LAUGHS})
        assert summary.problems and "declares a DTD" in summary.problems[0]
        build_ids.append(build_id)
    build_id = build_ids[-1]
    detail = await (await client.get(f"/api/builds/{build_id}")).json()
    unit_job = next(j for s in detail["stages"] for j in s["jobs"] if j["name"] == "unit")
    assert unit_job["status"] == "success"
    url = f"http://127.0.0.1:{client.server.port}/builds/{build_id}"

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = await browser.new_page(viewport={"width": 1280, "height": 900})
            csp_errors: list[str] = []
            page.on("console", lambda m: csp_errors.append(m.text) if "Content Security Policy" in m.text else None)
            await page.goto(url)
            totals = page.locator("section.tests .test-totals")
            await totals.wait_for()
            text = " ".join((await totals.inner_text()).split())
            assert "4 tests: 1 passed, 1 failed, 1 errors, 1 skipped" in text and "from 2 reports" in text
            assert "bad" in await page.locator(".count-failed").get_attribute("class")

            # Failed tests first, each with its message in sight.
            cases = page.locator("ol.test-failures li.test-case")
            assert await cases.count() == 2
            titles = await cases.evaluate_all("els => els.map(e => e.dataset.test)")
            assert sorted(titles) == ["tests.test_cart.test_total", "tests.test_db.test_connect"]
            total = page.locator("li.test-case[data-test='tests.test_cart.test_total']")
            assert await total.locator(".test-message").inner_text() == "assert 20 == 30"
            assert await total.locator(".test-message").is_visible()
            assert "ConnectionRefusedError: db:5432" in await page.locator(
                "li.test-case[data-test='tests.test_db.test_connect'] .test-message").inner_text()
            # Trace and output behind a click.
            stdout = total.locator(".test-stdout")
            assert not await stdout.is_visible()
            await total.locator("details.test-output summary").click()
            assert await stdout.inner_text() == "cart has 2 items" and await stdout.is_visible()
            assert "assert cart.total() == 30" in await total.locator(".test-detail").inner_text()

            # The hostile file is named with why it was refused.
            problem = page.locator("ul.test-problems li[data-file='reports/laughs.xml']")
            assert "declares a DTD" in await problem.inner_text()
            # Skipped tests folded, with their reason.
            await page.locator("details.test-skipped summary").click()
            assert "coupons are not built yet" in await page.locator("details.test-skipped").inner_text()

            # The link goes to the unit job's log section.
            await total.locator("a.test-log").click()
            await page.wait_for_function("location.hash.startsWith('#log-job-')")
            target = await page.evaluate("location.hash.slice(1)")
            section = page.locator(f"details.step[id='{target}']")
            assert (await section.locator("summary .step-title").inner_text()).startswith("test / unit /")
            assert "test_total FAILED" in await section.inner_text()
            assert await section.is_visible()

            # The trend: one bar per build of main, this one marked; each a link to its build.
            bars = page.locator("svg.trend a.trend-bar")
            assert await bars.evaluate_all("els => els.map(e => e.dataset.build)") == [str(i) for i in build_ids]
            assert await page.locator(f"svg.trend a[data-build='{build_id}'] rect.current").count() == 1
            assert await page.locator(f"svg.trend a[data-build='{build_ids[0]}'] rect.seg-broken").count() == 1
            await page.screenshot(path="/tmp/conveyor-tests-page.png", full_page=True)
            await page.goto(f"http://127.0.0.1:{client.server.port}/tests/trend.svg?repo=acme/reports&branch=main")
            assert await page.locator("svg a.trend-bar").count() == 2
            assert csp_errors == []
        finally:
            await browser.close()
