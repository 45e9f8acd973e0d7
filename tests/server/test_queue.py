"""The queue's logic over the real HTTP API, with the scripted fake backend (these tests are about
ordering, limits and who may do what, not about containers): global concurrency, cancel of queued
and running builds, superseded pushes, re-runs, manual runs with parameters, token and CSRF checks."""

from __future__ import annotations

import subprocess

from runner.backends.fake import FakeBackend, FakeStep
from runner.server.auth import SESSION_COOKIE
from runner.server.keys import STORE
from tests.server import payloads as p
from tests.server.conftest import wait_for

SECRET, TOKEN = "hook-secret", "admin-token-123"
PIPELINE = """\
name: q
image: conveyor-test/busybox:1
params:
  target: {default: staging}
stages:
  - name: work
    steps: ["hold", "echo target={{ params.target }}"]
"""
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def sha_of(repo, ref="HEAD") -> str:
    return subprocess.run(["git", "-C", str(repo), "rev-parse", ref], capture_output=True, text=True,
                          check=True).stdout.strip()


async def start(server, git_repo, hold=1.0, concurrency=1, **top):
    repo = git_repo({".conveyor.yml": PIPELINE})
    subprocess.run(["git", "-C", str(repo), "branch", "other"], check=True)
    backend = FakeBackend(script={"hold": FakeStep(output=[b"holding\n"], delay=hold)})
    client = await server([{"name": "acme/web", "provider": "github", "path": str(repo), "secret": SECRET}],
                          backend=backend, concurrency=concurrency, admin_token=TOKEN, **top)
    return client, repo, backend


async def push(client, sha, branch="main", delivery=None):
    body = p.body_of(p.github_push("acme/web", sha, ref=f"refs/heads/{branch}"))
    answer = await client.post("/hooks/github", data=body, headers=p.github_headers(body, SECRET, delivery=delivery))
    assert answer.status == 202, await answer.text()


async def builds(client):
    rows = await client.app[STORE].aread(lambda c: c.execute("SELECT * FROM builds ORDER BY id").fetchall())
    return [dict(r) for r in rows]


async def status_is(client, build_id, *wanted):
    async def check():
        rows = {b["id"]: b for b in await builds(client)}
        return rows.get(build_id) if rows.get(build_id, {}).get("status") in wanted else None

    check.__name__ = f"build {build_id} in {wanted}"
    return await wait_for(check, timeout=30)


async def test_one_build_at_a_time_and_each_runs_to_success(server, git_repo):
    client, repo, backend = await start(server, git_repo, hold=0.3, concurrency=1)
    sha = sha_of(repo)
    for branch in ("main", "other", "main"):
        await push(client, sha, branch)
    for build_id in (1, 2, 3):
        await status_is(client, build_id, "success", "cancelled")
    rows = await builds(client)
    ran = [b for b in rows if b["status"] == "success"]
    assert len(ran) >= 2
    spans = sorted((b["started"], b["finished"]) for b in ran)
    assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:])), spans  # never two at once
    assert backend.peak_running == 1


async def test_a_newer_push_cancels_the_older_queued_build_of_its_branch(server, git_repo):
    client, repo, _ = await start(server, git_repo, hold=3, concurrency=1)
    sha = sha_of(repo)
    await push(client, sha, "main")
    await status_is(client, 1, "running")
    await push(client, sha, "main")  # queued behind #1
    await push(client, sha, "other")  # another branch: untouched
    await push(client, sha, "main")  # supersedes #2, not the running #1
    second = await status_is(client, 2, "cancelled")
    assert second["reason"] == "superseded by acme/web#4"
    for build_id in (1, 3, 4):
        await status_is(client, build_id, "success")


async def test_cancel_queued_and_running_builds_then_rerun(server, git_repo):
    client, repo, backend = await start(server, git_repo, hold=30, concurrency=1)
    sha = sha_of(repo)
    await push(client, sha, "main")
    await push(client, sha, "other")
    await status_is(client, 1, "running")

    async def holding():
        return any(call[0] == "exec_step" for call in backend.calls)

    await wait_for(holding, timeout=30)
    queued = await client.post("/api/builds/2/cancel", headers=AUTH)
    assert queued.status == 202 and (await queued.json())["outcome"] == "cancelled"
    running = await client.post("/api/builds/1/cancel", headers=AUTH)
    assert running.status == 202 and (await running.json())["outcome"] == "cancelling"
    await status_is(client, 1, "cancelled")
    assert "hold" in backend.stopped_steps
    again = await client.post("/api/builds/1/cancel", headers=AUTH)
    assert again.status == 409
    backend.script = {"hold": FakeStep(output=[b"quick\n"])}
    rerun = await client.post("/api/builds/2/rerun", headers=AUTH)
    assert rerun.status == 201
    new_id = (await rerun.json())["id"]
    done = await status_is(client, new_id, "success")
    assert (done["trigger"], done["sha"], done["branch"]) == ("rerun:2", sha, "other")


async def test_manual_run_with_params_resolves_the_branch(server, git_repo):
    client, repo, _ = await start(server, git_repo, hold=0)
    answer = await client.post("/api/builds", json={"repo": "acme/web", "branch": "other",
                                                    "params": {"target": "production"}}, headers=AUTH)
    assert answer.status == 201, await answer.text()
    build = await status_is(client, (await answer.json())["id"], "success")
    assert (build["event"], build["sha"], build["trigger"]) == ("manual", sha_of(repo, "other"), "api:admin")
    assert "echo target=production" in build["plan"]  # the parameter reached the template
    shown = await (await client.get(f"/api/builds/{build['id']}")).json()
    assert shown["params"] == {"target": "production"}
    log = await (await client.get(f"/api/builds/{build['id']}/log")).text()
    # Steps are counted from 1, as `conveyor run` and `conveyor show` count them.
    assert log.startswith("--- work / work / step 1\nholding\n"), log
    bad = await client.post("/api/builds", json={"repo": "nope"}, headers=AUTH)
    assert bad.status == 404
    wrong = await client.post("/api/builds", json={"repo": "acme/web", "branch": "no\nsuch"}, headers=AUTH)
    assert wrong.status == 400
    for method, path in (("GET", "/log"), ("POST", "/cancel"), ("POST", "/rerun")):
        missing = await client.request(method, f"/api/builds/999{path}", headers=AUTH)
        assert missing.status == 404 and "no build with id 999" in (await missing.json())["error"]


async def test_mutations_need_the_token_or_a_session_with_its_csrf_token(server, git_repo):
    client, repo, _ = await start(server, git_repo, hold=0)
    assert (await client.post("/api/builds", json={"repo": "acme/web"})).status == 401
    wrong = await client.post("/api/builds", json={"repo": "acme/web"}, headers={"Authorization": "Bearer nope"})
    assert wrong.status == 401 and "error" in await wrong.json()
    assert (await client.get("/api/builds/1/cancel")).status == 405
    assert (await client.post("/login", data={"token": "nope"})).status == 401
    login = await client.post("/login", data={"token": TOKEN}, allow_redirects=False)
    assert login.status == 303
    cookie = login.cookies[SESSION_COOKIE]
    assert cookie["httponly"] and cookie["samesite"] == "Strict"
    # The cookie alone (what a cross-site form would carry) is not enough.
    forged = await client.post("/api/builds", data={"repo": "acme/web"}, allow_redirects=False)
    assert forged.status == 403
    page = await (await client.get("/")).text()
    csrf = page.split('name="csrf" value="', 1)[1].split('"', 1)[0]
    ok = await client.post("/api/builds", data={"repo": "acme/web", "branch": "main", "csrf": csrf},
                           allow_redirects=False)
    assert ok.status == 303 and ok.headers["Location"].startswith("/builds/")


async def test_without_an_admin_token_changes_are_refused_with_what_to_do(server, git_repo):
    repo = git_repo({".conveyor.yml": PIPELINE})
    client = await server([{"name": "acme/web", "provider": "github", "path": str(repo)}], backend=FakeBackend())
    answer = await client.post("/api/builds", json={"repo": "acme/web"}, headers=AUTH)
    assert answer.status == 403 and "admin_token" in (await answer.json())["error"]
