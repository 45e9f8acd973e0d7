"""Every change the server accepts, tried by each role and by nobody, through a real server on
127.0.0.1 over a real store. The table below is the list of changes and the role each needs; a new
POST route that is not in it fails the first test, so no change can be added without a role."""

from __future__ import annotations

import pytest

from runner.backends.fake import FakeBackend
from tests.server.people import ENV, ROLE_NAMES, USERS, bearer

# (method, route) -> the least role that may use it.
NEEDS = {
    ("POST", "/api/builds"): "developer",
    ("POST", "/api/builds/{id}/cancel"): "developer",
    ("POST", "/api/builds/{id}/rerun"): "developer",
    ("POST", "/api/builds/{id}/approvals"): "deployer",
    ("POST", "/api/services/{name}/rollback"): "deployer",
    ("POST", "/api/schedules/{repo}/{name}/run"): "developer",
    ("POST", "/api/environments/{name}/promote"): "deployer",
    ("POST", "/logout"): "viewer",
}
# Changes not made by a user, and what guards them instead.
NOT_A_USERS = {
    ("POST", "/login"): "the sign-in itself (rate limited per address)",
    ("POST", "/hooks/github"): "webhooks: the repository's signature",
    ("POST", "/hooks/gitlab"): "webhooks: the repository's signature",
    ("POST", "/hooks/gitea"): "webhooks: the repository's signature",
    ("POST", "/hooks/forgejo"): "webhooks: the repository's signature",
}
BODIES = {
    "/api/builds": {"repo": "acme/web"},
    "/api/builds/{id}/approvals": {"decision": "approve"},
    "/api/services/{name}/rollback": {},
    "/api/environments/{name}/promote": {"service": "web", "from": "staging"},
}


def changing_routes(app) -> set[tuple[str, str]]:
    return {(r.method, r.resource.canonical) for r in app.router.routes()
            if r.method not in ("GET", "HEAD", "OPTIONS")}


async def started(server, git_repo):
    repo = git_repo({".conveyor.yml": "name: x\nimage: conveyor-test/busybox:1\nstages:\n"
                                      "  - name: a\n    steps: [hi]\n"})
    cfg = {"name": "acme/web", "provider": "github", "path": str(repo),
           "schedules": [{"name": "nightly", "cron": "0 3 * * *"}]}
    # The queue is not started: builds stay queued, so cancel has something to cancel.
    client = await server([cfg], backend=FakeBackend(), start_queue=False, users=USERS, env=ENV)
    created = await client.post("/api/builds", json={"repo": "acme/web"}, headers=bearer("admin"))
    assert created.status == 201, await created.text()
    return client, (await created.json())["id"]


def path_of(route: str, build_id: int) -> str:
    return (route.replace("{id}", str(build_id)).replace("{name}", "web")
            .replace("{repo}/{name}", "acme/web/nightly").replace("{repo}", "acme/web"))


async def test_every_change_is_in_the_table_of_roles(server, git_repo):
    client, _ = await started(server, git_repo)
    routes = changing_routes(client.server.app)
    unknown = routes - set(NEEDS) - set(NOT_A_USERS)
    assert not unknown, f"routes with no role in NEEDS: {sorted(unknown)}; add each with the role it checks"
    assert set(NEEDS) <= routes, "NEEDS lists a route the server no longer has"


@pytest.mark.parametrize("route", sorted(r for _, r in NEEDS))
async def test_each_change_refuses_nobody_and_lower_roles_and_takes_its_role_and_higher(server, git_repo, route):
    client, build_id = await started(server, git_repo)
    needed = NEEDS[("POST", route)]
    url = path_of(route, build_id)
    body = BODIES.get(route)

    answer = await client.post(url, json=body)
    assert answer.status == 401, (url, answer.status, await answer.text())
    assert answer.headers["WWW-Authenticate"] == "Bearer"
    wrong = await client.post(url, json=body, headers={"Authorization": "Bearer not-a-token"})
    assert wrong.status == 401
    for role in ROLE_NAMES:
        answer = await client.post(url, json=body, headers=bearer(role), allow_redirects=False)
        text = await answer.text()
        if ROLE_NAMES.index(role) < ROLE_NAMES.index(needed):
            assert answer.status == 403, (url, role, answer.status, text)
            assert f"needs the {needed} role" in text and f"{role}-user is a {role}" in text
        else:
            # Past the role check: what the route itself answers (created, cancelled, 409 nothing to do, ...).
            assert answer.status not in (401, 403), (url, role, answer.status, text)


async def test_what_each_role_did_is_in_the_audit_log_and_only_admins_read_it(server, git_repo):
    client, build_id = await started(server, git_repo)
    cancelled = await client.post(f"/api/builds/{build_id}/cancel", headers=bearer("developer"))
    assert cancelled.status == 202
    rerun = await client.post(f"/api/builds/{build_id}/rerun", headers=bearer("developer"))
    assert rerun.status == 201
    ran = await client.post("/api/schedules/acme/web/nightly/run", headers=bearer("developer"))
    assert ran.status == 201
    refused = await client.post(f"/api/builds/{build_id}/cancel", headers=bearer("viewer"))
    assert refused.status == 403

    for role in (None, "viewer", "developer", "deployer"):
        answer = await client.get("/api/audit", headers=bearer(role))
        assert answer.status == (401 if role is None else 403)
    entries = (await (await client.get("/api/audit", headers=bearer("admin"))).json())["entries"]
    seen = [(e["action"], e["actor"], e["role"], e["build_id"]) for e in entries]
    assert seen == [
        ("run_schedule", "developer-user", "developer", build_id + 2),
        ("rerun", "developer-user", "developer", build_id),
        ("cancel", "developer-user", "developer", build_id),
        ("run", "admin-user", "admin", build_id),
    ]
    assert entries[1]["detail"] == {"new_build": build_id + 1}
    assert entries[2]["detail"] == {"outcome": "cancelled"} and entries[2]["what"] == "build acme/web#1"
    assert entries[0]["what"] == "schedule nightly of acme/web"
    assert all(e["address"] == "127.0.0.1" for e in entries)

    # Paged newest first with before=, filtered by user or action.
    first = await (await client.get("/api/audit?limit=3", headers=bearer("admin"))).json()
    assert [e["action"] for e in first["entries"]] == ["run_schedule", "rerun", "cancel"]
    rest = await (await client.get(f"/api/audit?limit=3&before={first['next_before']}",
                                   headers=bearer("admin"))).json()
    assert [e["action"] for e in rest["entries"]] == ["run"] and rest["next_before"] is None
    mine = await (await client.get("/api/audit?actor=admin-user", headers=bearer("admin"))).json()
    assert [e["action"] for e in mine["entries"]] == ["run"]
    bad = await client.get("/api/audit?action=explode", headers=bearer("admin"))
    assert bad.status == 400 and "action must be one of" in (await bad.json())["error"]
