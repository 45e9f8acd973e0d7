"""A signed webhook with a wrong type in it used to block the build queue for good: its delivery was
answered 202, and every tick after that failed binding a list to SQLite, across restarts. Now the
field is refused with a 400 naming it, and a row that still fails (one an older server stored) is
marked failed with the reason while the queue goes on. Real server, real git, real Docker engine."""

from __future__ import annotations

import json
import subprocess
import time

import pytest

from runner.store.db import Store
from tests.server import payloads as p
from tests.server.conftest import BUSYBOX_PIPELINE, wait_for

SECRET = "hook-secret"
TOKEN = "admin-token-hostile"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
pytestmark = pytest.mark.docker


def head_sha(repo) -> str:
    return subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True,
                          check=True).stdout.strip()


def hostile_push(full_name: str, sha: str) -> dict:
    payload = p.github_push(full_name, sha)
    payload["head_commit"]["message"] = ["a", "list", {"where": "a string belongs"}]
    return payload


def settled(client):
    """A predicate: every delivery has left `pending` (the list, newest first, once it has)."""
    async def deliveries_settled():
        rows = (await (await client.get("/api/deliveries")).json())["deliveries"]
        return rows if rows and all(r["state"] != "pending" for r in rows) else None

    return deliveries_settled


async def build_status(client, build_id, timeout=90):
    async def finished():
        build = await (await client.get(f"/api/builds/{build_id}")).json()
        return build if build["status"] not in ("queued", "running") else None

    finished.__name__ = f"build {build_id} to finish"
    return await wait_for(finished, timeout=timeout)


@pytest.mark.parametrize("secret", [SECRET, None], ids=["signed", "repo-without-secret"])
async def test_a_hostile_push_is_a_400_naming_the_field_and_the_next_push_builds(server, git_repo, docker_client,
                                                                                 secret):
    repo = git_repo({".conveyor.yml": BUSYBOX_PIPELINE})
    cfg = {"name": "acme/web", "provider": "github", "path": str(repo)}
    if secret:
        cfg["secret"] = secret
    client = await server([cfg], admin_token=TOKEN)
    sha = head_sha(repo)
    body = p.body_of(hostile_push("acme/web", sha))
    hostile = await client.post("/hooks/github", data=body, headers=p.github_headers(body, secret))
    assert hostile.status == 400
    assert (await hostile.json())["error"] == "head_commit.message must be a string, not a list"

    body = p.body_of(p.github_push("acme/web", sha))
    good = await client.post("/hooks/github", data=body, headers=p.github_headers(body, secret))
    assert good.status == 202, await good.text()
    [delivery] = await wait_for(settled(client), timeout=30)  # the refused one stored nothing
    assert delivery["state"] == "queued", delivery
    build_id = delivery["build_id"]
    assert (await build_status(client, build_id))["status"] == "success"
    manual = await client.post("/api/builds", json={"repo": "acme/web", "branch": "main"}, headers=AUTH)
    assert manual.status == 201, await manual.text()
    assert (await build_status(client, (await manual.json())["id"]))["status"] == "success"


async def test_a_bad_row_an_older_server_stored_is_marked_failed_and_the_queue_goes_on(server, git_repo,
                                                                                         docker_client, tmp_path):
    """The inbox of a server that accepted the hostile push before this fix, then restarted: the
    bad delivery fails with its reason (API and page), the good delivery and a manual build run."""
    repo = git_repo({".conveyor.yml": BUSYBOX_PIPELINE})
    sha = head_sha(repo)
    store = Store(tmp_path / "data")
    bad = {"kind": "push", "ref": "refs/heads/main", "sha": sha, "branch": "main", "tag": None,
           "message": ["a", "list"], "author": None, "pr_number": None, "target_branch": None, "fork": False}
    good = {**bad, "message": "fine"}
    for n, trigger in enumerate((bad, good)):
        store.write(lambda c, n=n, trigger=trigger: c.execute(
            "INSERT INTO deliveries (provider, delivery, repo, event, trigger, received) VALUES (?, ?, ?, ?, ?, ?)",
            ("github", f"old-{n}", "acme/web", "push", json.dumps(trigger), time.time())))
    store.close()

    client = await server([{"name": "acme/web", "provider": "github", "path": str(repo), "secret": SECRET}],
                          admin_token=TOKEN)
    manual = await client.post("/api/builds", json={"repo": "acme/web", "branch": "main"}, headers=AUTH)
    assert manual.status == 201
    second, first = await wait_for(settled(client), timeout=30)
    assert first["state"] == "failed" and first["build_id"] is None
    assert first["note"].startswith("could not be turned into a build: ProgrammingError")
    assert second["state"] == "queued"
    assert (await build_status(client, second["build_id"]))["status"] == "success"
    assert (await build_status(client, (await manual.json())["id"]))["status"] == "success"
    failed = (await (await client.get("/api/deliveries?state=failed")).json())["deliveries"]
    assert [d["id"] for d in failed] == [first["id"]]
    page = await (await client.get("/")).text()
    assert "Webhook deliveries that started no build" in page and "ProgrammingError" in page
    # Still failed, never retried into a stuck queue, after another restart of the server.
    await client.close()
    again = await server([{"name": "acme/web", "provider": "github", "path": str(repo), "secret": SECRET}])
    body = p.body_of(p.github_push("acme/web", sha, message="after the restart"))
    assert (await again.post("/hooks/github", data=body, headers=p.github_headers(body, SECRET))).status == 202
    rows = await wait_for(settled(again), timeout=30)
    assert [r["state"] for r in rows] == ["queued", "queued", "failed"]
    assert (await build_status(again, rows[0]["build_id"]))["status"] == "success"
