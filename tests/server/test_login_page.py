"""Signing in and out on the page in headless Chromium against a real server on 127.0.0.1: the page
shows each user the buttons their role may use, a re-run made from the page is recorded under the
user's name, and the audit page shows it to an admin."""

from __future__ import annotations

import asyncio
import contextlib
import os

import pytest

from runner.backends.fake import FakeBackend, FakeStep
from tests.server.conftest import wait_for
from tests.server.people import ENV, PASSWORD, USERS, bearer

CHROMIUM = "/usr/bin/chromium"
PIPELINE = "name: x\nimage: conveyor-test/busybox:1\nstages:\n  - name: a\n    steps: [hi]\n"


async def sign_in(page, base, name, password=PASSWORD):
    await page.goto(f"{base}/login")
    await page.fill("#password-login input[name='name']", name)
    await page.fill("#password-login input[name='password']", password)
    await page.click("#password-login button")
    await page.wait_for_url(f"{base}/")


async def sign_out(page, base):
    await page.click("header form[action='/logout'] button")
    await page.wait_for_url(f"{base}/")
    assert await page.locator("header a[href='/login']").count() == 1


@pytest.mark.browser
async def test_sign_in_and_out_on_the_page_and_see_what_your_role_may_do(server, git_repo):
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"{CHROMIUM} is absent; .ci/run installs Debian's chromium")
    from playwright.async_api import async_playwright

    repo = git_repo({".conveyor.yml": PIPELINE})
    client = await server([{"name": "acme/web", "provider": "github", "path": str(repo)}], backend=FakeBackend(),
                          users=USERS, env=ENV)
    build_id = (await (await client.post("/api/builds", json={"repo": "acme/web"},
                                         headers=bearer("developer"))).json())["id"]

    async def finished():
        return (await (await client.get(f"/api/builds/{build_id}")).json())["status"] == "success"

    await wait_for(finished)
    base = f"http://127.0.0.1:{client.server.port}"
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = await browser.new_page(viewport={"width": 1280, "height": 900})
            csp_errors: list[str] = []
            page.on("console", lambda m: csp_errors.append(m.text) if "Content Security Policy" in m.text else None)
            await page.goto(f"{base}/builds/{build_id}")
            assert await page.locator("button", has_text="Re-run").count() == 0
            await page.goto(f"{base}/login")
            await page.fill("#password-login input[name='name']", "developer-user")
            await page.fill("#password-login input[name='password']", "wrong password")
            await page.click("#password-login button")
            assert "does not match a user" in await page.locator("p.error").inner_text()

            # A viewer signs in: their name shows, still no buttons.
            await sign_in(page, base, "viewer-user")
            assert (await page.locator("header .user").inner_text()).strip() == "viewer-user"
            await page.goto(f"{base}/builds/{build_id}")
            assert await page.locator("button", has_text="Re-run").count() == 0
            await sign_out(page, base)

            # A developer re-runs from the page.
            await sign_in(page, base, "developer-user")
            assert await page.locator("form.manual").count() == 1  # the way to the Run form
            assert await page.locator("header a[href='/audit']").count() == 0
            await page.goto(f"{base}/builds/{build_id}")
            await page.click("button:has-text('Re-run')")
            await page.wait_for_url(f"{base}/builds/{build_id + 1}")
            await page.screenshot(path="/tmp/conveyor-login-developer.png", full_page=True)
            await sign_out(page, base)
            cookies = {c["name"] for c in await page.context.cookies()}
            assert "conveyor_session" not in cookies

            # An admin reads the audit page.
            await sign_in(page, base, "admin-user")
            await page.click("header a[href='/audit']")
            await page.wait_for_url(f"{base}/audit")
            rows = page.locator("table.audit tbody tr")
            first = await rows.first.inner_text()
            assert "rerun" in first and "developer-user" in first and "acme/web#1" in first
            assert await page.locator("table.audit tr[data-action='login_failed']").count() == 1
            await page.screenshot(path="/tmp/conveyor-audit.png", full_page=True)
            assert csp_errors == []
        finally:
            await browser.close()
    anonymous = await client.get("/audit", allow_redirects=False)
    assert anonymous.status == 303 and anonymous.headers["Location"] == "/login"


@pytest.mark.browser
async def test_a_form_sent_as_the_live_build_ends_is_not_undone_by_the_page_reloading(server, git_repo):
    # The live page reloads itself shortly after its build ends (to show the stored log). A form the
    # user sent just before, here signing out, must win over that reload, not be cancelled by it.
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"{CHROMIUM} is absent; .ci/run installs Debian's chromium")
    from playwright.async_api import Error as PlaywrightError
    from playwright.async_api import async_playwright

    repo = git_repo({".conveyor.yml": PIPELINE})
    client = await server([{"name": "acme/web", "provider": "github", "path": str(repo)}],
                          backend=FakeBackend(script={"hi": FakeStep(delay=2.0)}), users=USERS, env=ENV)
    base = f"http://127.0.0.1:{client.server.port}"
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = await browser.new_page()
            await sign_in(page, base, "developer-user")
            build_id = (await (await client.post("/api/builds", json={"repo": "acme/web"},
                                                 headers=bearer("developer"))).json())["id"]

            async def finished():
                return (await (await client.get(f"/api/builds/{build_id}")).json())["status"] == "success"

            await page.goto(f"{base}/builds/{build_id}")
            assert await page.locator("#log[data-live='1']").count() == 1  # the build still runs

            async def held(route):  # the sign-out answers only after the page's reload would have come
                await wait_for(finished)
                await asyncio.sleep(2.0)
                with contextlib.suppress(PlaywrightError):  # cancelled by a reload: the defect
                    await route.continue_()

            await page.route(f"{base}/logout", held)
            await page.click("header form[action='/logout'] button")
            await page.wait_for_url(f"{base}/", timeout=20_000)
            assert await page.locator("header a[href='/login']").count() == 1
        finally:
            await browser.close()
