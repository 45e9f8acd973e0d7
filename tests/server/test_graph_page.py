"""The build page's pipeline graph, from a real build (Docker backend, busybox) through the real
server, read by headless Chromium: a diamond of ``needs`` across stages drawn as SVG edges, a 2x2
matrix folded into one box with an aggregate status and its combinations behind <details>, an
allowed failure shown as a warning, and an approval approved with the page's button."""

from __future__ import annotations

import os

import pytest

from runner.server.graph import Member, group_status
from tests.server.conftest import wait_for

CHROMIUM = "/usr/bin/chromium"
TOKEN = "graph-admin-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
PIPELINE = """\
name: graph
image: conveyor-test/busybox:1
stages:
  - name: build
    jobs:
      - name: compile
        steps: ["echo compiled"]
  - name: test
    jobs:
      - name: lint
        needs: [compile]
        steps: ["echo linted"]
      - name: unit
        needs: [compile]
        matrix:
          py: ["3.11", "3.12"]
          db: [pg, sqlite]
        fail_fast: false
        allow_failure: {exit_codes: [3]}
        steps: ['if [ "$py-$db" = "3.12-sqlite" ]; then echo "sqlite on 3.12 is flaky"; exit 3; fi; echo "unit $py $db"']
  - name: package
    jobs:
      - name: bundle
        needs: [lint, unit]
        steps: ["sleep 3", "echo bundled"]
      - name: docs
        steps: ["echo documented"]
  - name: approve
    approval:
      message: "Ship the bundle?"
  - name: ship
    steps: ["echo shipped"]
"""
FLAKY = "unit [py=3.12, db=sqlite]"


def test_a_matrix_status_is_its_worst_combination_that_counts():
    def of(*statuses, allowed=()):
        return group_status([Member(f"m{i}", s, i in allowed) for i, s in enumerate(statuses)])

    assert of("success", "failure", "running") == "running"
    assert of("success", "failure", "queued") == "failure"
    assert of("success", "failure", allowed={1}) == "success"
    assert of("success", "timed_out") == "failure"
    assert of("success", "cancelled", "queued") == "cancelled"
    assert of("success", "queued") == "queued"
    assert of("skipped", "skipped") == "skipped"
    assert of("skipped", "success") == "success"


async def _status(client, build_id, wanted):
    async def reached():
        data = await (await client.get(f"/api/builds/{build_id}")).json()
        return data if data["status"] in wanted else None

    return await wait_for(reached, timeout=120, interval=0.2)


@pytest.mark.browser
@pytest.mark.docker
async def test_the_graph_shows_needs_the_matrix_and_warnings_and_the_approval_goes_on(
        server, git_repo, docker_client, tmp_path):
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"{CHROMIUM} is absent; .ci/run installs Debian's chromium")
    from playwright.async_api import async_playwright

    repo = git_repo({".conveyor.yml": PIPELINE})
    client = await server([{"name": "acme/graph", "provider": "github", "path": str(repo)}], admin_token=TOKEN)
    created = await client.post("/api/builds", json={"repo": "acme/graph"}, headers=AUTH)
    assert created.status == 201
    build_id = (await created.json())["id"]
    url = f"http://127.0.0.1:{client.server.port}/builds/{build_id}"

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = await browser.new_page(viewport={"width": 1280, "height": 900})
            csp_errors: list[str] = []
            page.on("console", lambda m: csp_errors.append(m.text) if "Content Security Policy" in m.text else None)
            await page.goto(url)
            # Live: the boxes follow the job events, the matrix box its combinations', with no reload.
            await page.locator(".graph li.stage").first.wait_for(timeout=60_000)
            # Set on the page as drawn before the matrix finished; a reload would drop it.
            assert await page.evaluate("window.drawnOnce = !document.querySelector('li.group.allowed')")
            unit = page.locator("li.group.allowed[data-group='unit']")
            await unit.wait_for(state="attached", timeout=60_000)
            assert await page.evaluate("window.drawnOnce === true")
            assert (await unit.locator("summary .job-status").text_content()).strip() == "1 failed, allowed"
            flaky = unit.locator(f"li.member.allowed.status-failure[data-job='{FLAKY}'] .job-status")
            assert (await flaky.text_content()).strip() == "failed, allowed"
            # Then the page reloads to show the approval's question.
            await page.locator(".approval[data-stage='approve']").wait_for(timeout=120_000)
            await page.locator("#status.status-waiting").wait_for(timeout=30_000)
            await _see_the_graph(page)
            approve = page.locator(".stage[data-stage='approve'] .job[data-job='approval']")
            assert "status-waiting" in await approve.get_attribute("class")
            assert await page.locator("button[value='approve']").count() == 0  # not logged in
            await page.screenshot(path="/tmp/conveyor-graph-waiting.png", full_page=True)

            # Log in with the admin token, come back, approve.
            await page.goto(f"http://127.0.0.1:{client.server.port}/login")
            await page.fill("#token-login input[name='token']", TOKEN)
            await page.click("#token-login button")
            await page.goto(url)
            await page.fill(".approval input[name='comment']", "bundle looks right")
            await page.click("button[value='approve']")
            await page.wait_for_url(url)
            # The build runs on; at its end the page reloads into its final form.
            await page.locator("#status.status-success.warned").wait_for(timeout=120_000)
            await page.locator(".stage.status-success[data-stage='ship'] .job.status-success").wait_for(timeout=30_000)
            assert (await page.locator("#status").inner_text()).strip() == "success with warnings"
            warnings = await page.locator("ul.warnings li").all_inner_texts()
            assert len(warnings) == 1 and FLAKY in warnings[0] and "allowed" in warnings[0]
            assert "bundle looks right" in await page.locator(".approval .decided").inner_text()
            await _see_the_graph(page)
            await page.locator("li.group[data-group='unit'] summary").click()
            await page.screenshot(path="/tmp/conveyor-graph-done.png", full_page=True)
            await page.set_viewport_size({"width": 390, "height": 844})
            await page.screenshot(path="/tmp/conveyor-graph-phone.png", full_page=True)
            # On a phone the graph scrolls sideways inside its box; the page itself does not.
            assert await page.evaluate("document.documentElement.scrollWidth") <= 390
            scroll = page.locator(".graph-scroll")
            assert await scroll.evaluate("e => e.scrollWidth > e.clientWidth")
            assert csp_errors == []
        finally:
            await browser.close()
    data = await _status(client, build_id, ("success",))
    assert data["warnings"] == warnings


async def _see_the_graph(page):
    columns = await page.locator(".graph li.stage").evaluate_all("els => els.map(e => e.dataset.stage)")
    assert columns == ["build", "test", "package", "approve", "ship"]
    edges = await page.locator(".graph svg path.edge").evaluate_all(
        "els => els.map(e => e.dataset.from + '->' + e.dataset.to)")
    # The diamond, and the matrix as one end of its edges (needs: [unit] waits for all four).
    assert sorted(edges) == ["compile->lint", "compile->unit", "lint->bundle", "unit->bundle"]
    # Each edge starts at the right side of the box it comes from and ends at the left of the other.
    for edge in ("compile->lint", "unit->bundle"):
        source, target = edge.split("->")
        ends = await page.evaluate(
            """([s, t]) => {
                const svg = document.querySelector('.graph svg.edges').getBoundingClientRect();
                const p = document.querySelector(`path.edge[data-from="${s}"][data-to="${t}"]`);
                const box = n => document.querySelector(`.graph [data-job="${n}"], .graph [data-group="${n}"]`)
                    .getBoundingClientRect();
                const a = p.getPointAtLength(0), b = p.getPointAtLength(p.getTotalLength());
                return {a: [a.x + svg.left, a.y + svg.top], b: [b.x + svg.left, b.y + svg.top],
                        s: box(s), t: box(t)};
            }""", [source, target])
        assert abs(ends["a"][0] - ends["s"]["right"]) <= 2 and ends["s"]["top"] < ends["a"][1] < ends["s"]["bottom"]
        assert abs(ends["b"][0] - ends["t"]["left"]) <= 2 and ends["t"]["top"] < ends["b"][1] < ends["t"]["bottom"]
    # docs has no needs: it sits in its stage's column with no edge.
    assert await page.locator(".stage[data-stage='package'] .job[data-job='docs']").count() == 1

    group = page.locator(".stage[data-stage='test'] li.group[data-group='unit']")
    assert await group.count() == 1
    assert "allowed" in await group.get_attribute("class")  # all passed but one allowed failure
    assert "status-success" in await group.get_attribute("class")
    summary = (await group.locator("summary").inner_text()).split()
    assert summary[:1] == ["unit"] and "4 jobs" in " ".join(summary) and "1 failed, allowed" in " ".join(summary)
    members = group.locator("li.member")
    assert not await members.first.is_visible()  # folded until opened
    await group.locator("summary").click()
    assert await members.count() == 4 and await members.first.is_visible()
    flaky = group.locator(f"li.member[data-job='{FLAKY}']")
    assert "status-failure" in await flaky.get_attribute("class") and "allowed" in await flaky.get_attribute("class")
    assert (await flaky.locator(".job-status").inner_text()).strip() == "failed, allowed"
    others = await group.locator("li.member:not(.allowed) .job-status").all_inner_texts()
    assert [t.strip() for t in others] == ["success"] * 3
    await group.locator("summary").click()  # fold it again
