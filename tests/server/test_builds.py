"""From a signed push to a finished build on the real Docker backend, and what the API, the page and
the badge then show. Also: no pipeline file, and a fork's pull request (no secrets, no deploy)."""

from __future__ import annotations

import subprocess

import pytest

from runner.server.keys import CONFIG, STORE
from tests.server import payloads as p
from tests.server.conftest import BUSYBOX_PIPELINE, wait_for

SECRET = "hook-secret"
pytestmark = pytest.mark.docker


def head_sha(repo) -> str:
    return subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True,
                          check=True).stdout.strip()


async def push(client, sha, full_name="acme/web", ref="refs/heads/main"):
    body = p.body_of(p.github_push(full_name, sha, ref=ref))
    answer = await client.post("/hooks/github", data=body, headers=p.github_headers(body, SECRET))
    assert answer.status == 202, await answer.text()


async def finished_builds(client, count=1):
    async def done():
        builds = (await (await client.get("/api/builds")).json())["builds"]
        finished = [b for b in builds if b["status"] not in ("queued", "running")]
        return finished if len(finished) >= count else None

    return await wait_for(done, timeout=90)


async def test_push_runs_a_build_in_docker_and_the_api_page_and_badge_show_it(server, git_repo, docker_client):
    repo = git_repo({".conveyor.yml": BUSYBOX_PIPELINE})
    client = await server([{"name": "acme/web", "provider": "github", "path": str(repo), "secret": SECRET}])
    sha = head_sha(repo)
    await push(client, sha)
    [build] = await finished_builds(client)
    assert build["status"] == "success", build
    assert (build["sha"], build["branch"], build["trigger"], build["event"]) == (sha, "main", "webhook", "push")
    detail = await (await client.get(f"/api/builds/{build['id']}")).json()
    assert [s["name"] for s in detail["stages"]] == ["greet", "check"]
    assert sorted(j["name"] for j in detail["stages"][1]["jobs"]) == ["one", "two"]
    log = await (await client.get(f"/api/builds/{build['id']}/log")).text()
    assert f"hello from acme/web at {sha}" in log and "one" in log
    page = await client.get(f"/builds/{build['id']}")
    html = await page.text()
    assert page.status == 200 and "Content-Security-Policy" in page.headers
    assert 'data-stage="greet"' in html and "hello from acme/web" in html and 'data-live="0"' in html
    listing = await (await client.get("/")).text()
    assert "acme/web #1" in listing and sha[:8] in listing
    badge = await client.get("/badge/acme/web.svg?branch=main")
    assert badge.headers["Content-Type"].startswith("image/svg+xml") and "success" in await badge.text()
    # The workspace checkout is removed once the build is over (just after its final status is
    # written, so poll for it); the mirror stays for the next push.
    data_dir = client.app[CONFIG].settings.data_dir

    async def checkout_removed():
        return not any((data_dir / "workspaces").iterdir())

    await wait_for(checkout_removed, timeout=10)
    assert any((data_dir / "mirrors").iterdir())
    rows = await client.app[STORE].aread(lambda c: c.execute("SELECT state, build_id FROM deliveries").fetchall())
    assert [(r[0], r[1]) for r in rows] == [("queued", build["id"])]


async def test_a_commit_without_a_pipeline_is_a_skipped_build_with_the_reason(server, git_repo, docker_client):
    repo = git_repo({"README.md": "no pipeline here\n"})
    client = await server([{"name": "acme/web", "provider": "github", "path": str(repo), "secret": SECRET}])
    await push(client, head_sha(repo))
    [build] = await finished_builds(client)
    assert build["status"] == "skipped" and ".conveyor.yml" in build["reason"]


FORK_PIPELINE = """\
name: pr
on: {pull_request: {}}
image: conveyor-test/busybox:1
stages:
  - name: look
    steps:
      - 'if [ -n "$DEPLOY_KEY" ]; then echo has-secret; else echo no-secret; fi'
  - name: ship
    deploy: {service: never-created, image: "conveyor-test/busybox:1"}
"""


async def test_a_forks_pull_request_gets_no_secrets_and_cannot_deploy(server, git_repo, docker_client):
    repo = git_repo({".conveyor.yml": FORK_PIPELINE})
    sha = head_sha(repo)
    client = await server([{"name": "acme/web", "provider": "github", "path": str(repo), "secret": SECRET,
                            "secrets": {"DEPLOY_KEY": "hunter2-value"}}])
    body = p.body_of(p.github_pull_request("acme/web", sha, head_full_name="mallory/web"))
    answer = await client.post("/hooks/github", data=body, headers=p.github_headers(body, SECRET, "pull_request"))
    assert answer.status == 202
    [build] = await finished_builds(client)
    log = await (await client.get(f"/api/builds/{build['id']}/log")).text()
    assert "no-secret" in log and "has-secret" not in log
    detail = await (await client.get(f"/api/builds/{build['id']}")).json()
    ship = next(s for s in detail["stages"] if s["name"] == "ship")
    assert build["status"] == "failure" and ship["status"] == "failure" and "refused" in (ship["reason"] or log)
