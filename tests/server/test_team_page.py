"""The page a team lives in, in headless Chromium against a real server (local backend, real git):
the Run form asks for the pipeline's params and starts a build with them; the log is searched,
folded per step, timestamped on demand and loaded in parts; the build list shows each branch's
latest status and duration trend; everything fits a 390px phone, under the unchanged CSP."""

from __future__ import annotations

import os

import pytest

from runner.backends.local import LocalBackend
from runner.server.keys import CONFIG
from tests.server.conftest import wait_for

CHROMIUM = "/usr/bin/chromium"
TOKEN = "team-admin-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
PIPELINE = """\
name: team
image: conveyor-test/busybox:1
params:
  target: {default: staging, choices: [staging, production], description: "Where the bundle goes"}
  greeting: {default: hello, description: "Said first"}
stages:
  - name: build
    steps:
      - echo "deploying to {{ params.target }} with {{ params.greeting }}"
      - 'for i in $(seq 1 300); do echo "counted line $i"; done'
  - name: long
    steps:
      - 'yes "filler text so that the log grows past one part of the page" | head -n 20000; echo "end of the long output"'
"""


async def _finished(client, build_id):
    async def done():
        data = await (await client.get(f"/api/builds/{build_id}")).json()
        return data if data["status"] not in ("queued", "running") else None

    return await wait_for(done, timeout=60, interval=0.2)


@pytest.mark.browser
async def test_run_form_log_tools_branches_and_phone(server, git_repo):
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"{CHROMIUM} is absent; .ci/run installs Debian's chromium")
    from playwright.async_api import async_playwright

    repo = git_repo({".conveyor.yml": PIPELINE})
    client = await server([{"name": "acme/web", "provider": "github", "path": str(repo)}],
                          backend=LocalBackend(), admin_token=TOKEN)
    first = await client.post("/api/builds", json={"repo": "acme/web", "params": {"target": "staging"}}, headers=AUTH)
    assert (await _finished(client, (await first.json())["id"]))["status"] == "success"
    base = f"http://127.0.0.1:{client.server.port}"

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = await browser.new_page(viewport={"width": 1280, "height": 900})
            csp_errors: list[str] = []
            page.on("console", lambda m: csp_errors.append(m.text) if "Content Security Policy" in m.text else None)
            await page.goto(f"{base}/login")
            await page.fill("#token-login input[name='token']", TOKEN)
            await page.click("#token-login button")

            # The Run form, reached from the build list, asks for the file's params.
            await page.goto(base + "/")
            await page.click("form.manual button")
            await page.wait_for_url(f"{base}/run?repo=acme%2Fweb&branch=main")
            target = page.locator("select[name='param.target']")
            assert await target.locator("option").all_inner_texts() == ["staging", "production"]
            assert await target.input_value() == "staging"
            assert await page.locator("input[name='param.greeting']").input_value() == "hello"
            helps = await page.locator(".param-help").all_inner_texts()
            assert helps == ["Where the bundle goes", "Said first"]
            assert await page.locator(".param-type").all_inner_texts() == ["choice", "text"]
            await page.screenshot(path="/tmp/conveyor-run-form.png", full_page=True)
            await target.select_option("production")
            await page.fill("input[name='param.greeting']", "bonjour")
            await page.click("form.run button.primary")
            await page.wait_for_url(f"{base}/builds/*")
            build_id = int(page.url.rsplit("/", 1)[1])
            data = await _finished(client, build_id)
            assert data["status"] == "success" and data["params"] == {"target": "production", "greeting": "bonjour"}
            log = await (await client.get(f"/api/builds/{build_id}/log")).text()
            assert "deploying to production with bonjour" in log

            # The finished page: every step folded (they all passed), the long one in parts.
            await page.goto(f"{base}/builds/{build_id}")
            steps = page.locator("#log details.step")
            assert await steps.count() == 3
            assert await page.locator("#log details.step[open]").count() == 0
            assert await page.locator("#log a.more-log").count() == 1
            assert "end of the long output" not in await page.locator("#log").text_content()

            # Search filters lines and opens the step they are in.
            await page.fill("#log-search", "counted line 150")
            await page.locator("#log-count").filter(has_text="1 line").wait_for()
            shown = page.locator("#log details.step[open] .l:not(.miss)")
            assert await shown.all_inner_texts() == ["counted line 150"]
            assert await page.locator("#log details.step.miss").count() == 2
            await page.screenshot(path="/tmp/conveyor-log-search.png", full_page=True)
            await page.fill("#log-search", "")
            await page.locator("#log .miss").first.wait_for(state="detached")
            assert await page.locator("#log-count").inner_text() == ""

            # Timestamps on demand.
            first_line = page.locator("#log .l").first
            before = await first_line.evaluate("l => getComputedStyle(l, '::before').content")
            await page.check("#log-times")
            stamp = await first_line.evaluate("l => getComputedStyle(l, '::before').content")
            assert before in ("none", "normal") and stamp.strip('"')[:3] == "00:"

            # Collapse and expand.
            await page.click("#log-expand")
            assert await page.locator("#log details.step[open]").count() == 3
            await page.click("#log-collapse")
            assert await page.locator("#log details.step[open]").count() == 0

            # The rest of the long log, into the same step's box.
            # (Parts are whole chunks, and how many lines a chunk holds depends on how the output was
            # read: 20,000 lines are more than any one chunk, so there are two parts or more.)
            while await (more := page.locator("#log a.more-log")).count():
                href = await more.get_attribute("href")
                await more.click()
                await page.locator(f"#log a.more-log[href='{href}']").wait_for(state="detached")
            long_step = page.locator("#log details.step").filter(has_text="long /")
            assert await long_step.count() == 1
            assert "end of the long output" in await long_step.text_content()
            assert await long_step.locator(".l").count() == 20001  # 20,000 filler lines and the last one, once each

            # The build list: the branch's latest status and its two builds as a trend.
            await page.goto(base + "/")
            row = page.locator("table.branches tbody tr")
            assert await row.count() == 1
            assert "success" in await row.locator(".status").inner_text()
            assert await row.locator("svg.duration-trend rect.bar.status-success").count() == 2
            await page.screenshot(path="/tmp/conveyor-builds.png", full_page=True)

            # A phone: nothing wider than the screen.
            await page.set_viewport_size({"width": 390, "height": 844})
            for path in ("/", f"/builds/{build_id}", "/run?repo=acme/web&branch=main"):
                await page.goto(base + path)
                assert await page.evaluate("document.documentElement.scrollWidth") <= 390, path
            await page.goto(base + "/")
            await page.screenshot(path="/tmp/conveyor-builds-phone.png", full_page=True)
            await page.goto(f"{base}/builds/{build_id}")
            await page.fill("#log-search", "production")
            await page.screenshot(path="/tmp/conveyor-build-phone.png", full_page=False)
            await page.goto(base + "/run?repo=acme/web&branch=main")
            await page.screenshot(path="/tmp/conveyor-run-phone.png", full_page=True)
            assert csp_errors == []
        finally:
            await browser.close()


async def test_an_anonymous_reader_sees_the_run_page_without_making_the_server_fetch(server, git_repo):
    repo = git_repo({".conveyor.yml": PIPELINE})
    client = await server([{"name": "acme/web", "provider": "github", "path": str(repo)}], admin_token=TOKEN,
                          start_queue=False)
    page = await client.get("/run?repo=acme/web&branch=main")
    assert page.status == 200 and "Log in" in await page.text()
    assert (await client.get("/api/repos/acme/web/params")).status == 401
    data_dir = client.app[CONFIG].settings.data_dir
    assert not (data_dir / "mirrors").exists() or not any((data_dir / "mirrors").iterdir())  # nothing fetched
