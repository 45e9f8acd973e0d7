"""Live logs: Server-Sent Events from a real Docker build, read by an HTTP client and by headless
Chromium on the build page. Log text is escaped before colours become classes."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import time

import pytest

from runner.server.ansi import to_html
from tests.server import payloads as p
from tests.server.conftest import wait_for

SECRET = "live-secret"
CHROMIUM = "/usr/bin/chromium"
LIVE_PIPELINE = r"""
name: live
image: conveyor-test/busybox:1
stages:
  - name: count
    steps:
      - 'printf "\033[1;31m<b>not bold</b>\033[0m plain\n"'
      - 'for i in 1 2 3 4 5 6 7 8 9 10; do echo "tick $i"; sleep 0.5; done'
  - name: after
    steps: ["echo finished counting"]
"""


def test_ansi_is_escaped_first_and_other_sequences_are_dropped():
    html = to_html("\x1b[1;31m<img src=x onerror=alert(1)>\x1b[0m ok\x1b[2K\x1b]8;;http://x\x07link\x1b[5G")
    assert html == '<span class="ansi-fg-1 ansi-bold">&lt;img src=x onerror=alert(1)&gt;</span> oklink'
    state: dict = {}
    assert to_html("\x1b[32mgreen", state) == '<span class="ansi-fg-2">green</span>'
    assert to_html("still green", state) == '<span class="ansi-fg-2">still green</span>'  # carried over


async def start_build(server, git_repo):
    repo = git_repo({".conveyor.yml": LIVE_PIPELINE})
    client = await server([{"name": "acme/web", "provider": "github", "path": str(repo), "secret": SECRET}])
    sha = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True,
                         check=True).stdout.strip()
    body = p.body_of(p.github_push("acme/web", sha))
    assert (await client.post("/hooks/github", data=body, headers=p.github_headers(body, SECRET))).status == 202

    async def running():
        builds = (await (await client.get("/api/builds")).json())["builds"]
        return builds and builds[0]["status"] == "running" and builds[0]["id"]

    return client, await wait_for(running, timeout=30, interval=0.05)


@pytest.mark.docker
async def test_sse_streams_the_log_while_the_build_runs_then_ends(server, git_repo, docker_client):
    client, build_id = await start_build(server, git_repo)
    response = await client.get(f"/builds/{build_id}/events")
    assert response.headers["Content-Type"].startswith("text/event-stream")
    events: list[tuple[float, str, dict]] = []
    kind = None
    async for raw in response.content:
        line = raw.decode().rstrip("\n")
        if line.startswith("event: "):
            kind = line[7:]
        elif line.startswith("data: "):
            events.append((time.monotonic(), kind, json.loads(line[6:])))
            if kind == "end":
                break
    lines = [(t, h) for t, k, d in events if k == "line" for h in d["html"]]
    texts = [h for _, h in lines]
    assert '<span class="ansi-fg-1 ansi-bold">&lt;b&gt;not bold&lt;/b&gt;</span> plain' in texts
    ticks = [t for t, h in lines if h.startswith("tick ")]
    assert len(ticks) == 10 and ticks[-1] - ticks[0] > 2.5  # they arrived over time, not at the end
    assert events[-1][1:] == ("end", {"status": "success"})
    assert [d["stage"] for _, k, d in events if k == "stage" and d["status"] == "success"] == ["count", "after"]
    # A viewer of a finished build is told at once.
    late = await client.get(f"/builds/{build_id}/events")
    assert "event: end" in await late.text()


@pytest.mark.browser
@pytest.mark.docker
async def test_browser_sees_the_log_grow_live_and_the_build_finish(server, git_repo, docker_client):
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"{CHROMIUM} is absent; .ci/run installs Debian's chromium")
    from playwright.async_api import async_playwright

    client, build_id = await start_build(server, git_repo)
    url = f"http://127.0.0.1:{client.server.port}/builds/{build_id}"
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = await browser.new_page()
            csp_errors: list[str] = []
            page.on("console", lambda m: csp_errors.append(m.text) if "Content Security Policy" in m.text else None)
            await page.goto(url)
            assert await page.locator("#log").get_attribute("data-live") == "1"
            ticks = page.locator("#log .l", has_text="tick")
            await ticks.first.wait_for(timeout=30_000)
            seen_early = await ticks.count()
            assert seen_early < 10  # the page shows lines before the step is over ...
            # The stage view follows too: the running stage's box, drawn or added live.
            await page.locator('li.stage.status-running[data-stage="count"]').wait_for(timeout=10_000)
            await page.locator("#log .l", has_text="tick 10").wait_for(timeout=30_000)
            assert await ticks.count() == 10  # ... and every one of them once
            # The escaped markup is shown as text, coloured by a class, never as an element.
            red = page.locator("#log .ansi-fg-1", has_text="<b>not bold</b>")
            assert await red.count() == 1 and await page.locator("#log b").count() == 0
            await page.locator("#status.status-success").wait_for(timeout=30_000)
            await page.wait_for_load_state("load")
            await page.locator('li.stage.status-success[data-stage="after"]').wait_for(timeout=30_000)
            assert csp_errors == []
        finally:
            await browser.close()
    await asyncio.sleep(0)


HOSTILE_PIPELINE = r"""
name: hostile
image: conveyor-test/busybox:1
stages:
  - name: noise
    steps:
      - 'digits=$(head -c 5000 /dev/zero | tr "\0" 9); printf "\033[${digits}mhostile\033[0m line\n"'
      - 'for i in 1 2 3 4; do echo "tick $i"; sleep 0.5; done'
  - name: after
    steps: ["echo finished counting"]
"""


def test_sgr_numbers_of_any_length_are_ignored_not_parsed():
    assert to_html("\x1b[" + "9" * 5000 + "mhi\x1b[1;" + ";".join(["38"] * 3000) + "m there") == \
        'hi<span class="ansi-bold"> there</span>'
    assert to_html("\x1b[38;5;" + "1" * 6 + "mx\x1b[38;5;3my") == 'x<span class="ansi-fg-3">y</span>'


@pytest.mark.docker
async def test_a_step_printing_a_5000_digit_escape_breaks_neither_the_live_log_nor_the_page(
        server, git_repo, docker_client):
    """Defect: int() over the digits raised, the live sink was dropped mid-build and the page was a 500."""
    repo = git_repo({".conveyor.yml": HOSTILE_PIPELINE})
    client = await server([{"name": "acme/web", "provider": "github", "path": str(repo), "secret": SECRET}])
    sha = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True,
                         check=True).stdout.strip()
    body = p.body_of(p.github_push("acme/web", sha))
    assert (await client.post("/hooks/github", data=body, headers=p.github_headers(body, SECRET))).status == 202
    build_id = await wait_for(lambda: _running_build(client), timeout=30, interval=0.05)
    response = await client.get(f"/builds/{build_id}/events")
    events: list[tuple[str, dict]] = []
    page_while_running = None
    kind = None
    async for raw in response.content:
        line = raw.decode().rstrip("\n")
        if line.startswith("event: "):
            kind = line[7:]
        elif line.startswith("data: "):
            events.append((kind, json.loads(line[6:])))
            if kind == "line" and "tick 1" in events[-1][1]["html"]:
                page_while_running = (await client.get(f"/builds/{build_id}")).status
            if kind == "end":
                break
    html = [h for k, d in events if k == "line" for h in d["html"]]
    assert "hostile line" in html  # the sequence is dropped, the text kept
    assert [h for h in html if h.startswith("tick ")] == [f"tick {i}" for i in range(1, 5)]
    assert "finished counting" in html  # lines after the hostile one still reached the viewer
    assert events[-1] == ("end", {"status": "success"})
    assert page_while_running == 200
    page = await client.get(f"/builds/{build_id}")
    assert page.status == 200
    text = await page.text()
    assert "hostile line" in text and "finished counting" in text


async def _running_build(client):
    builds = (await (await client.get("/api/builds")).json())["builds"]
    return builds and builds[0]["status"] == "running" and builds[0]["id"]
