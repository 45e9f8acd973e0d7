"""Approval stages' ``approvers`` enforced by a real server (the scripted fake backend runs the
steps; the approval stage itself waits in the store as it does in production): a developer cannot
decide, a deployer not named cannot, the named one can and is recorded as the decider."""

from __future__ import annotations

from runner.backends.fake import FakeBackend
from runner.server.users import User, may_approve
from tests.server.conftest import wait_for
from tests.server.people import ENV, USERS

PIPELINE = """\
name: gated
image: conveyor-test/busybox:1
stages:
  - name: test
    steps: ["echo tested"]
  - name: approve
    approval:
      message: "Ship it?"
      approvers: [rel]
  - name: ship
    steps: ["echo shipped"]
"""
REL = {"name": "rel", "roles": ["deployer"], "token_env": "REL_TOKEN"}


def who(name: str) -> dict[str, str]:
    token = {"rel": "rel-token-0123456789"}.get(name) or ENV[f"{name.upper()}_TOKEN"]
    return {"Authorization": f"Bearer {token}"}


async def test_only_a_named_approver_decides_and_is_recorded(server, git_repo):
    repo = git_repo({".conveyor.yml": PIPELINE})
    client = await server([{"name": "acme/web", "provider": "github", "path": str(repo)}], backend=FakeBackend(),
                          users=[*USERS, REL], env={**ENV, "REL_TOKEN": "rel-token-0123456789"})
    build_id = (await (await client.post("/api/builds", json={"repo": "acme/web"}, headers=who("developer"))).json())["id"]

    async def status(wanted):
        data = await (await client.get(f"/api/builds/{build_id}")).json()
        return data if data["status"] in wanted else None

    await wait_for(lambda: status(("waiting",)))
    url, body = f"/api/builds/{build_id}/approvals", {"decision": "approve", "comment": "ok"}
    developer = await client.post(url, json=body, headers=who("developer"))
    assert developer.status == 403 and "needs the deployer role" in (await developer.json())["error"]
    for role in ("deployer", "admin"):  # not named, and no role of theirs is named
        answer = await client.post(url, json=body, headers=who(role))
        assert answer.status == 403, role
        assert "its approvers are rel" in (await answer.json())["error"]
    assert (await status(("waiting",)))["approvals"][0]["decision"] is None
    named = await client.post(url, json=body, headers=who("rel"))
    assert named.status == 200, await named.text()
    data = await wait_for(lambda: status(("success", "failure")))
    assert data["status"] == "success"
    (approval,) = data["approvals"]
    assert (approval["decision"], approval["decided_by"], approval["comment"]) == ("approved", "rel", "ok")
    entries = (await (await client.get("/api/audit?action=approve", headers=who("admin"))).json())["entries"]
    assert [(e["actor"], e["build_id"], e["detail"]) for e in entries] == [
        ("rel", build_id, {"stage": "approve", "comment": "ok"})]


def test_a_role_among_approvers_lets_that_role_and_higher_in_but_never_below_deployer():
    dev, dep, adm = (User(n, (r,), token=n) for n, r in (("d", "developer"), ("p", "deployer"), ("a", "admin")))
    assert not may_approve(None, ())
    assert [may_approve(u, ()) for u in (dev, dep, adm)] == [False, True, True]
    assert [may_approve(u, ("deployer",)) for u in (dev, dep, adm)] == [False, True, True]
    assert [may_approve(u, ("admin",)) for u in (dev, dep, adm)] == [False, False, True]
    # Naming a developer in the pipeline file does not let them approve: they could name themselves.
    assert [may_approve(u, ("d", "p")) for u in (dev, dep, adm)] == [False, True, False]
