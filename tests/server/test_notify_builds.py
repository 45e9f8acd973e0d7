"""Notifications from real builds of a running server (local backend, real git, real SQLite, real
receivers on 127.0.0.1): which builds are told (`on:`, `fixed`), and that a receiver that hangs
never holds up a build or the queue behind it."""

from __future__ import annotations

import hashlib
import hmac
import json
import subprocess

from runner.backends.local import LocalBackend
from tests.plugins.receivers import start_receiver
from tests.server.conftest import wait_for

ADMIN = {"Authorization": "Bearer adm-token"}
PIPELINE = """\
name: notified
image: conveyor-test/busybox:1
stages:
  - name: test
    steps: ['test "$(cat result)" = pass']
"""


def commit(repo, result: str) -> None:
    (repo / "result").write_text(result + "\n")
    git = ["git", "-C", str(repo), "-c", "user.name=Test", "-c", "user.email=test@example.invalid"]
    subprocess.run([*git, "commit", "--allow-empty", "-qam", f"result: {result}"], check=True)


async def run_to_end(client, branch="main") -> dict:
    answer = await client.post("/api/builds", json={"repo": "acme/web", "branch": branch}, headers=ADMIN)
    assert answer.status == 201, await answer.text()
    build_id = (await answer.json())["id"]

    async def finished():
        build = await (await client.get(f"/api/builds/{build_id}")).json()
        return build if build["status"] not in ("queued", "running") else None

    return await wait_for(finished, timeout=60)


def config(repo, notify) -> dict:
    return {"name": "acme/web", "provider": "github", "path": str(repo), "notify": notify}


async def test_failure_fixed_and_success_reach_the_rules_that_want_them(server, git_repo):
    hook, slack = await start_receiver(), await start_receiver()
    repo = git_repo({".conveyor.yml": PIPELINE, "result": "fail\n"})
    client = await server([config(repo, [
        {"type": "webhook", "url": hook.url, "secret_env": "HOOK_SECRET", "on": ["failure", "fixed"]},
        {"type": "slack", "url_env": "SLACK_URL", "on": ["success"]},
    ])], backend=LocalBackend(), admin_token="adm-token", environ={"HOOK_SECRET": "k3y", "SLACK_URL": slack.url})
    try:
        statuses = []
        for result in ("fail", "fail", "pass", "pass"):
            if statuses:
                commit(repo, result)
            statuses.append((await run_to_end(client))["status"])
        assert statuses == ["failure", "failure", "success", "success"]

        async def all_arrived():
            return len(hook.got) == 3 and len(slack.got) == 2

        await wait_for(all_arrived, timeout=20)
        events = [json.loads(r.body) for r in hook.got]
        assert [(e["number"], e["event"]) for e in events] == [(1, "build.failure"), (2, "build.failure"),
                                                                 (3, "build.fixed")]
        assert events[2]["previous_status"] == "failure" and events[2]["status"] == "success"
        for received in hook.got:  # every one signed with the secret from the environment
            digest = hmac.new(b"k3y", received.body, hashlib.sha256).hexdigest()
            assert received.headers["X-Conveyor-Signature-256"] == f"sha256={digest}"
        # `on: [success]` hears about every green build, the fix included, and nothing else.
        assert [json.loads(r.body)["text"].split("|")[1] for r in slack.got] == \
            ["acme/web #3 is fixed on main>", "acme/web #4 passed on main>"]
    finally:
        await hook.close()
        await slack.close()


async def test_a_hanging_receiver_never_holds_up_a_build(server, git_repo):
    """The receiver answers nothing for an hour; the notifier may wait 60 s an attempt. The build is
    finished and the next one in the queue (concurrency 1) has run and finished while the receiver
    still holds the first notice."""
    hook = await start_receiver(then="hang")
    repo = git_repo({".conveyor.yml": PIPELINE, "result": "fail\n"})
    client = await server([config(repo, [
        {"type": "webhook", "url": hook.url, "secret_env": "HOOK_SECRET", "timeout": 60, "retries": 5},
    ])], backend=LocalBackend(), admin_token="adm-token", concurrency=1, environ={"HOOK_SECRET": "k3y"})
    try:
        first = await run_to_end(client)
        assert first["status"] == "failure"
        second = await run_to_end(client)
        assert second["status"] == "failure"
        await wait_for(lambda: _true(len(hook.got) >= 2), timeout=10)
        # Both notices are still unanswered (each hangs in its first attempt) ...
        assert len(hook.got) == 2
        # ... and each build was over before its notice even left: the notice follows the build.
        by_number = {json.loads(r.body)["number"]: r.at for r in hook.got}
        assert by_number[1] >= first["finished"] and by_number[2] >= second["finished"]
        # The second build did not wait for the first's notice: it started before that notice's
        # first attempt could have ended (60 s).
        assert second["started"] - first["finished"] < 30
    finally:
        await hook.close()


async def _true(value):
    return value
