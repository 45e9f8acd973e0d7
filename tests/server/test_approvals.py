"""Approvals through a real server on 127.0.0.1 with the real Docker backend: the page's buttons
(session + CSRF), the JSON route with wrong or missing auth, a bad decision, a build that does not
wait (409), and what the API and the page show afterwards."""

from __future__ import annotations

import pytest

from runner.server.keys import STORE
from tests.server.conftest import wait_for

pytestmark = pytest.mark.docker
TOKEN = "approve-token-123"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
PIPELINE = """\
name: gated
image: conveyor-test/busybox:1
stages:
  - name: test
    steps: ["echo tested"]
  - name: approve
    approval:
      message: "Ship {{ git.short_sha }} to production?"
      approvers: [admin]
  - name: ship
    steps: ["echo shipped"]
  - name: undo
    when: {status: failure}
    steps: ["echo rolled back"]
"""


async def waiting_build(server, git_repo):
    repo = git_repo({".conveyor.yml": PIPELINE})
    client = await server([{"name": "acme/web", "provider": "github", "path": str(repo)}], admin_token=TOKEN)
    created = await client.post("/api/builds", json={"repo": "acme/web"}, headers=AUTH)
    assert created.status == 201
    build_id = (await created.json())["id"]

    async def waiting():
        data = await (await client.get(f"/api/builds/{build_id}")).json()
        return data if data["status"] == "waiting" else None

    data = await wait_for(waiting)
    return client, build_id, data


async def finished(client, build_id):
    async def done():
        data = await (await client.get(f"/api/builds/{build_id}")).json()
        return data if data["status"] not in ("queued", "running", "waiting") else None

    return await wait_for(done)


async def test_approve_with_the_pages_buttons(server, git_repo, docker_client):
    client, build_id, data = await waiting_build(server, git_repo)
    (asked,) = data["approvals"]
    assert asked["stage"] == "approve" and asked["message"].startswith("Ship ") and asked["decision"] is None
    assert asked["approvers"] == ["admin"]
    uid = (await client.app[STORE].aread(lambda c: c.execute("SELECT uid FROM builds WHERE id = ?",
                                                                (build_id,)).fetchone()))[0]
    assert docker_client.containers.list(all=True, filters={"label": f"io.conveyor.build={uid}"}) == []

    anonymous = await (await client.get(f"/builds/{build_id}")).text()
    assert "to production?" in anonymous and 'value="approve"' not in anonymous and "Log in" in anonymous
    login = await client.post("/login", data={"token": TOKEN}, allow_redirects=False)
    assert login.status == 303
    page = await (await client.get(f"/builds/{build_id}")).text()
    assert 'action="/api/builds/%d/approvals"' % build_id in page
    assert 'value="approve">Approve</button>' in page and 'value="reject">Reject</button>' in page
    # The session cookie alone (what a cross-site form would carry) is refused.
    forged = await client.post(f"/api/builds/{build_id}/approvals", data={"decision": "approve"},
                               allow_redirects=False)
    assert forged.status == 403
    csrf = page.split('name="csrf" value="', 1)[1].split('"', 1)[0]
    ok = await client.post(f"/api/builds/{build_id}/approvals",
                           data={"csrf": csrf, "decision": "approve", "comment": "ship it"}, allow_redirects=False)
    assert ok.status == 303 and ok.headers["Location"] == f"/builds/{build_id}"

    data = await finished(client, build_id)
    assert data["status"] == "success"
    stages = {s["name"]: s["status"] for s in data["stages"]}
    assert stages == {"test": "success", "approve": "success", "ship": "success", "undo": "skipped"}
    (decided,) = data["approvals"]
    assert (decided["decision"], decided["decided_by"], decided["comment"]) == ("approved", "admin", "ship it")
    assert decided["decided_at"] >= decided["requested"]
    page = await (await client.get(f"/builds/{build_id}")).text()
    assert "approved by admin" in page and ": ship it" in page and 'value="approve"' not in page
    assert docker_client.containers.list(all=True, filters={"label": f"io.conveyor.build={uid}"}) == []


async def test_the_json_route_checks_auth_and_input_and_a_reject_fails_the_stage(server, git_repo, docker_client):
    client, build_id, _ = await waiting_build(server, git_repo)
    url = f"/api/builds/{build_id}/approvals"
    missing = await client.post(url, json={"decision": "approve"})
    assert missing.status == 401 and "Bearer" in (await missing.json())["error"]
    wrong = await client.post(url, json={"decision": "approve"}, headers={"Authorization": "Bearer nope"})
    assert wrong.status == 401 and "that token belongs to no user" in (await wrong.json())["error"]
    bad = await client.post(url, json={"decision": "maybe"}, headers=AUTH)
    assert bad.status == 400 and '"approve" or "reject"' in (await bad.json())["error"]
    not_json = await client.post(url, data=b"approve", headers={**AUTH, "Content-Type": "application/json"})
    assert not_json.status == 400
    nowhere = await client.post("/api/builds/999/approvals", json={"decision": "approve"}, headers=AUTH)
    assert nowhere.status == 404
    # None of these decided anything: the build still waits.
    assert (await (await client.get(f"/api/builds/{build_id}")).json())["status"] == "waiting"

    rejected = await client.post(url, json={"decision": "reject", "comment": "not on a Friday"}, headers=AUTH)
    assert rejected.status == 200
    assert (await rejected.json())["approval"]["decision"] == "rejected"
    data = await finished(client, build_id)
    assert data["status"] == "failure"
    stages = {s["name"]: (s["status"], s["reason"]) for s in data["stages"]}
    assert stages["approve"] == ("failure", "rejected by admin: not on a Friday")
    assert stages["ship"][0] == "skipped" and stages["undo"][0] == "success"

    late = await client.post(url, json={"decision": "approve"}, headers=AUTH)
    assert late.status == 409 and "not waiting for an approval" in (await late.json())["error"]
    assert (await (await client.get(f"/api/builds/{build_id}")).json())["approvals"][0]["decision"] == "rejected"
