"""Several `.conveyor/*.yml` files: the server runs each as its own build (the second one's lint error
shows as that build's config_error), with its own commit status. A manual build started through the
API sends commit statuses too, once its branch is resolved to a commit. Real server on 127.0.0.1,
real git repositories, a stand-in forge API served by aiohttp that records every status call."""

from __future__ import annotations

import subprocess

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from runner.backends.fake import FakeBackend
from tests.server import payloads as p
from tests.server.conftest import BUSYBOX_PIPELINE, wait_for

SECRET, TOKEN = "hook-secret", "admin-token-pipes"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
BROKEN = "name: broken\nimage: conveyor-test/busybox:1\nstagez:\n  - name: a\n    steps: [echo hi]\n"


@pytest.fixture
async def forge():
    seen: list[dict] = []

    async def record(request: web.Request) -> web.Response:
        seen.append({"path": request.path, "body": await request.json()})
        return web.json_response({}, status=201)

    app = web.Application()
    app.router.add_post("/{tail:.+}", record)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    server.seen = seen
    yield server
    await server.close()


def sha_of(repo, ref="HEAD") -> str:
    return subprocess.run(["git", "-C", str(repo), "rev-parse", ref], capture_output=True, text=True,
                          check=True).stdout.strip()


def repo_cfg(repo, forge) -> dict:
    return {"name": "acme/web", "provider": "github", "path": str(repo), "secret": SECRET,
            "status": {"token": "t", "api_url": str(forge.make_url("/api"))}}


async def finished(client, count):
    async def all_done():
        builds = (await (await client.get("/api/builds")).json())["builds"]
        done = [b for b in builds if b["status"] not in ("queued", "running")]
        return sorted(done, key=lambda b: b["id"]) if len(builds) >= count and len(done) == len(builds) else None

    return await wait_for(all_done, timeout=90)


def states(forge, context) -> list[str]:
    return [c["body"]["state"] for c in forge.seen if c["body"]["context"] == context]


@pytest.mark.docker
async def test_each_pipeline_file_is_its_own_build_with_its_own_status(server, git_repo, forge, docker_client):
    repo = git_repo({".conveyor/a-test.yml": BUSYBOX_PIPELINE, ".conveyor/b-broken.yml": BROKEN})
    sha = sha_of(repo)
    client = await server([repo_cfg(repo, forge)], admin_token=TOKEN)
    body = p.body_of(p.github_push("acme/web", sha))
    assert (await client.post("/hooks/github", data=body, headers=p.github_headers(body, SECRET))).status == 202

    first, second = await finished(client, 2)
    assert (first["pipeline"], first["status"]) == (".conveyor/a-test.yml", "success")
    assert (second["pipeline"], second["status"]) == (".conveyor/b-broken.yml", "config_error")
    assert (second["sha"], second["trigger"], second["number"]) == (sha, "webhook", 2)
    detail = await (await client.get(f"/api/builds/{second['id']}")).json()
    [diagnostic] = [d for d in detail["diagnostics"] if d["severity"] == "error"]
    assert diagnostic["file"] == ".conveyor/b-broken.yml" and "stagez" in diagnostic["message"]
    page = await (await client.get(f"/builds/{second['id']}")).text()
    assert ".conveyor/b-broken.yml" in page and "stagez" in page

    async def four_statuses():
        return len(forge.seen) >= 4

    await wait_for(four_statuses, timeout=30)
    assert states(forge, "conveyor/a-test") == ["pending", "success"]
    assert states(forge, "conveyor/b-broken") == ["pending", "error"]
    assert all(c["path"] == f"/api/repos/acme/web/statuses/{sha}" for c in forge.seen)

    # A re-run of one file's build runs that file again, not the others.
    rerun = await client.post(f"/api/builds/{second['id']}/rerun", headers=AUTH)
    assert rerun.status == 201
    builds = await finished(client, 3)
    assert len(builds) == 3 and builds[-1]["pipeline"] == ".conveyor/b-broken.yml"
    assert builds[-1]["status"] == "config_error"
    # A manual build runs every file too, each at the commit its branch pointed at when it started.
    manual = await client.post("/api/builds", json={"repo": "acme/web", "branch": "main"}, headers=AUTH)
    assert manual.status == 201
    builds = await finished(client, 5)
    assert [(b["pipeline"], b["trigger"], b["sha"]) for b in builds[3:]] == [
        (".conveyor/a-test.yml", "api:admin", sha), (".conveyor/b-broken.yml", "api:admin", sha)]


async def test_a_single_pipeline_file_keeps_one_build_and_the_plain_status_context(server, git_repo, forge):
    repo = git_repo({".conveyor/only.yml": "name: x\nimage: conveyor-test/busybox:1\nstages:\n"
                                            "  - name: a\n    steps: [hi]\n"})
    client = await server([repo_cfg(repo, forge)], backend=FakeBackend())
    sha = sha_of(repo)
    body = p.body_of(p.github_push("acme/web", sha))
    assert (await client.post("/hooks/github", data=body, headers=p.github_headers(body, SECRET))).status == 202
    [build] = await finished(client, 1)
    assert (build["status"], build["pipeline"]) == ("success", ".conveyor/only.yml")
    await wait_for(lambda: _at_least(forge, 2), timeout=30)
    assert states(forge, "conveyor") == ["pending", "success"]


async def _at_least(forge, count):
    return len(forge.seen) >= count


@pytest.mark.parametrize("ask", [{"branch": "other"}, {"tag": "v1.0"}])
async def test_a_manual_build_sends_commit_statuses_once_its_commit_is_known(server, git_repo, forge, ask):
    repo = git_repo({".conveyor.yml": "name: x\nimage: conveyor-test/busybox:1\nstages:\n"
                                      "  - name: a\n    steps: [hi]\n"})
    subprocess.run(["git", "-C", str(repo), "branch", "other"], check=True)
    subprocess.run(["git", "-C", str(repo), "tag", "v1.0"], check=True)
    client = await server([repo_cfg(repo, forge)], backend=FakeBackend(), admin_token=TOKEN)
    answer = await client.post("/api/builds", json={"repo": "acme/web", **ask}, headers=AUTH)
    assert answer.status == 201, await answer.text()
    [build] = await finished(client, 1)
    assert build["status"] == "success" and build["sha"] == sha_of(repo)
    await wait_for(lambda: _at_least(forge, 2), timeout=30)
    assert [(c["path"], c["body"]["state"]) for c in forge.seen] == [
        (f"/api/repos/acme/web/statuses/{build['sha']}", "pending"),
        (f"/api/repos/acme/web/statuses/{build['sha']}", "success"),
    ]
    assert forge.seen[-1]["body"]["target_url"].endswith(f"/builds/{build['id']}")
