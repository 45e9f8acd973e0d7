"""Commit statuses against a real HTTP forge stand-in on 127.0.0.1; the configuration file; static
files and symlinks; the deploy history page and the badge."""

from __future__ import annotations

import asyncio
import subprocess

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from runner.backends.fake import FakeBackend
from runner.server.config import ServerConfigError, load_config
from runner.server.keys import CONFIG, STORE
from runner.server.pages import WEB_DIR
from runner.server.status import StatusReporter
from runner.store.db import Store
from tests.server import payloads as p
from tests.server.conftest import wait_for

SHA = "2" * 40


@pytest.fixture
async def forge():
    """A stand-in forge API that records every status call."""
    seen: list[dict] = []

    async def record(request: web.Request) -> web.Response:
        body = await request.json() if request.content_type == "application/json" else dict(await request.post())
        seen.append({"path": request.path, "headers": dict(request.headers), "body": body})
        return web.json_response({"ok": True}, status=201)

    app = web.Application()
    app.router.add_post("/{tail:.+}", record)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    server.seen = seen
    yield server
    await server.close()


def repo_with_status(provider: str, api_url: str):
    from runner.server.config import RepoConfig, StatusConfig

    return RepoConfig(name="acme/web", provider=provider, url="https://example.invalid/acme/web.git",
                      status=StatusConfig(token="tok-1", api_url=api_url))


@pytest.mark.parametrize("provider,path,auth_header,auth_value,state_key", [
    ("github", f"/repos/acme/web/statuses/{SHA}", "Authorization", "Bearer tok-1", "state"),
    ("gitea", f"/repos/acme/web/statuses/{SHA}", "Authorization", "token tok-1", "state"),
    ("gitlab", f"/projects/acme%2Fweb/statuses/{SHA}", "PRIVATE-TOKEN", "tok-1", "state"),
])
async def test_each_forge_gets_its_own_status_call(forge, provider, path, auth_header, auth_value, state_key):
    reporter = StatusReporter("http://ci.example")
    try:
        repo = repo_with_status(provider, str(forge.make_url("/")))
        assert await reporter.report(repo, SHA, "failure", 5)
    finally:
        await reporter.close()
    [call] = forge.seen
    assert call["headers"][auth_header] == auth_value
    assert call["path"].endswith(path) or call["path"] == path.replace("%2F", "/")
    assert call["body"][state_key] == ("failed" if provider == "gitlab" else "failure")
    assert call["body"]["target_url"] == "http://ci.example/builds/5"


async def test_a_forge_that_is_down_never_fails_the_build(server, git_repo):
    repo = git_repo({".conveyor.yml": "name: x\nimage: conveyor-test/busybox:1\nstages:\n  - name: a\n    steps: [hi]\n"})
    sha = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True,
                         check=True).stdout.strip()
    client = await server([{"name": "acme/web", "path": str(repo), "secret": "s",
                            "status": {"token": "t", "api_url": "http://127.0.0.1:9/"}}], backend=FakeBackend())
    body = p.body_of(p.github_push("acme/web", sha))
    assert (await client.post("/hooks/github", data=body, headers=p.github_headers(body, "s"))).status == 202

    async def done():
        rows = await client.app[STORE].aread(lambda c: c.execute("SELECT status FROM builds").fetchall())
        return rows and rows[0][0] not in ("queued", "running") and rows[0][0]

    assert await wait_for(done, timeout=30) == "success"


async def test_statuses_follow_the_build_through_the_queue(server, git_repo, forge):
    repo = git_repo({".conveyor.yml": "name: x\nimage: conveyor-test/busybox:1\nstages:\n  - name: a\n    steps: [hi]\n"})
    sha = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True,
                         check=True).stdout.strip()
    client = await server([{"name": "acme/web", "path": str(repo), "secret": "s", "status": {
        "token": "t", "api_url": str(forge.make_url("/api/v3"))}}], backend=FakeBackend())
    body = p.body_of(p.github_push("acme/web", sha))
    await client.post("/hooks/github", data=body, headers=p.github_headers(body, "s"))

    async def two():
        return len(forge.seen) >= 2

    await wait_for(two, timeout=30)
    assert [c["body"]["state"] for c in forge.seen] == ["pending", "success"]
    assert forge.seen[0]["path"] == f"/api/v3/repos/acme/web/statuses/{sha}"


def test_config_defaults_env_secrets_and_clear_errors(tmp_path):
    defaults = load_config(None, environ={"HOME": str(tmp_path)})
    assert (defaults.host, defaults.port, defaults.repos) == ("127.0.0.1", 8080, {})
    assert defaults.settings.data_dir == tmp_path / ".local" / "share" / "conveyor"
    toml = tmp_path / "conveyor.toml"
    toml.write_text('port = 9090\nadmin_token_env = "ADMIN"\n[[repos]]\nname = "web"\nprovider = "forgejo"\n'
                    'path = "repo"\nsecret_env = "HOOK"\nbranches = ["main"]\n')
    config = load_config(toml, environ={"HOME": str(tmp_path), "ADMIN": "a", "HOOK": "h"}, host="0.0.0.0")
    web_repo = config.repos["web"]
    assert (config.port, config.host, config.admin_token) == (9090, "0.0.0.0", "a")
    assert (web_repo.provider, web_repo.secret, web_repo.path) == ("gitea", "h", (tmp_path / "repo").resolve())
    with pytest.raises(ServerConfigError, match=r"secret_env names \$HOOK, which is not set"):
        load_config(toml, environ={"HOME": str(tmp_path), "ADMIN": "a"})
    bad = tmp_path / "bad.yml"
    bad.write_text("repos:\n  - name: web\n    url: https://x/y.git\n    provder: github\n")
    with pytest.raises(ServerConfigError, match="unknown key"):
        load_config(bad, environ={})
    bad.write_text("repos:\n  - name: web\n    provider: svn\n    url: https://x\n")
    with pytest.raises(ServerConfigError, match="provider 'svn' is unknown"):
        load_config(bad, environ={})


async def test_static_files_never_follow_symlinks_and_pages_carry_a_csp(server):
    client = await server(paused=True)
    css = await client.get("/static/conveyor.css")
    assert css.status == 200 and "Content-Security-Policy" in css.headers
    link = WEB_DIR / "static" / "test-link-to-passwd.txt"
    try:
        link.symlink_to("/etc/passwd")
        assert (await client.get(f"/static/{link.name}")).status in (403, 404)
    finally:
        link.unlink()
    assert (await client.get("/static/../../runner/server/app.py")).status in (403, 404)
    for path in ("/", "/deploys", "/login", "/builds/999"):
        answer = await client.get(path)
        assert "script-src 'self'" in answer.headers["Content-Security-Policy"], path


async def test_deploy_history_page_and_badge(server):
    client = await server(paused=True, admin_token="tok")

    def insert(conn):
        for i, status in enumerate(("succeeded", "failed", "succeeded"), 1):
            conn.execute("INSERT INTO deploys (service, target, image, status, trigger, started, finished) "
                         "VALUES ('web', 'default', ?, ?, 'cli', ?, ?)", (f"web:{i}", status, 100.0 * i, 100.0 * i + 5))
        conn.execute("INSERT INTO builds (repo, number, uid, instance, event, branch, status, created) "
                     "VALUES ('acme/web', 1, 'u1', 'x', 'push', 'main', 'failure', 1)")

    await client.app[STORE].awrite(insert)
    api = await (await client.get("/api/deploys?service=web")).json()
    assert [d["image"] for d in api["deploys"]] == ["web:3", "web:2", "web:1"]
    page = await (await client.get("/deploys")).text()
    assert "web:1" in page and "Roll back" not in page  # buttons only for a logged-in admin
    await client.post("/login", data={"token": "tok"})
    page = await (await client.get("/deploys")).text()
    assert page.count("Roll back to this") == 1  # the older good deploy, not the current one
    badge = await (await client.get("/badge/acme/web.svg?branch=main")).text()
    assert "failure" in badge and "<svg" in badge
    unknown = await (await client.get("/badge/none.svg")).text()
    assert "unknown" in unknown


async def test_a_config_error_build_page_shows_every_diagnostic_and_the_rendered_pipeline(server, git_repo):
    bad = ("name: broken\nimage: conveyor-test/busybox:1\nstages:\n  - name: test\n    stpes: ['echo hi']\n"
           "  - name: {{ 'sec' ~ 'ond' }}\n    steps: []\n")
    repo = git_repo({".conveyor.yml": bad})
    sha = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True,
                         check=True).stdout.strip()
    client = await server([{"name": "acme/web", "path": str(repo), "secret": "s"}], backend=FakeBackend())
    body = p.body_of(p.github_push("acme/web", sha))
    await client.post("/hooks/github", data=body, headers=p.github_headers(body, "s"))

    async def done():
        rows = await client.app[STORE].aread(lambda c: c.execute("SELECT id, status FROM builds").fetchall())
        return rows and rows[0][1] not in ("queued", "running") and tuple(rows[0])

    build_id, status = await wait_for(done, timeout=30)
    assert status == "config_error"
    page = await client.get(f"/builds/{build_id}")
    html = await page.text()
    assert page.status == 200
    assert "stpes" in html and "severity-error" in html
    assert html.count('<li class="severity-error">') >= 2  # all of them at once, not just the first
    assert "- name: second" in html  # the rendered text, numbered, opened for a config error


def test_serve_refuses_a_wrong_configuration_with_the_reason(tmp_path):
    from click.testing import CliRunner

    from runner.cli import cli

    bad = tmp_path / "conveyor.yml"
    bad.write_text("repos:\n  - name: web\n    provider: github\n")
    result = CliRunner().invoke(cli, ["serve", "--config", str(bad)])
    assert result.exit_code == 1
    assert "give exactly one of `url:` (clone URL) or `path:`" in result.output


async def test_the_build_list_pages_newest_first(server):
    client = await server(paused=True)

    def insert(conn):
        conn.executemany(
            "INSERT INTO builds (repo, number, uid, instance, event, branch, message, status, created) "
            "VALUES (?, ?, ?, 'x', 'push', 'main', ?, ?, ?)",
            [("acme/web" if i % 2 else "acme/api", i, f"u{i}", f"<i>change {i}</i>", "success", float(i))
             for i in range(1, 61)])

    await client.app[STORE].awrite(insert)
    first = await (await client.get("/")).text()
    assert first.count('<tr class="status-') == 50 and 'href="/?before=11"' in first
    assert "&lt;i&gt;change 60&lt;/i&gt;" in first and "<i>change" not in first  # escaped
    older = await (await client.get("/?before=11")).text()
    assert older.count('<tr class="status-') == 10 and "Older builds" not in older
    api = await (await client.get("/api/builds?limit=3&before=10&repo=acme/web")).json()
    assert [b["number"] for b in api["builds"]] == [9, 7, 5]
    assert (await client.get("/api/builds?limit=x")).status == 400
    for limit in ("-1", "0", "501"):  # -1 would be SQLite's "no limit"
        answer = await client.get(f"/api/builds?limit={limit}")
        assert answer.status == 400 and "between 1 and 500" in (await answer.json())["error"]


async def test_shutdown_lets_background_work_record_its_end_before_the_store_closes(server, tmp_path):
    # A rollback started from the page runs in the background; cancelled at shutdown, it still
    # writes down how it ended. The store must not close under it.
    from runner.server.keys import BACKGROUND

    client = await server(paused=True)
    app, started = client.app, asyncio.Event()

    async def rollback_like():
        started.set()
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            await asyncio.sleep(0.2)  # the engine answers its last call
            await app[STORE].awrite(lambda c: c.execute(
                "INSERT INTO deliveries (provider, delivery, repo, event, trigger, received) "
                "VALUES ('github', 'end-of-rollback', 'r', 'push', '{}', 0)"))
            raise

    task = asyncio.create_task(rollback_like())
    app[BACKGROUND].add(task)
    await started.wait()
    await client.close()
    assert task.done() and task.cancelled()
    with Store(app[CONFIG].settings.data_dir) as store:
        rows = store.query("SELECT delivery FROM deliveries")
    assert [r[0] for r in rows] == ["end-of-rollback"]
