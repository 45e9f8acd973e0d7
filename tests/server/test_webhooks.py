"""Webhook acceptance over real HTTP: signatures, redeliveries, caps, bad bodies, unknown repos.

The server here is paused (deliveries wait in the inbox) unless a test is about what the queue makes
of them, so these tests need no engine."""

from __future__ import annotations

import asyncio
import json
import subprocess

import pytest

from runner.backends.fake import FakeBackend
from runner.scm import webhooks
from runner.server.keys import STORE
from tests.server import payloads as p
from tests.server.conftest import wait_for

SECRET = "s3cret-hook"
SHA = "1" * 40


def repo_cfg(**extra):
    return {"name": "acme/web", "provider": "github", "url": "https://github.com/acme/web.git", "secret": SECRET,
            **extra}


async def deliveries(client):
    store = client.app[STORE]
    return await store.aread(lambda c: [dict(r) for r in c.execute("SELECT * FROM deliveries ORDER BY id")])


async def test_signed_push_is_stored_then_a_redelivery_is_a_no_op(server):
    client = await server([repo_cfg()], paused=True)
    body = p.body_of(p.github_push("acme/web", SHA, message="Fix <script>"))
    headers = p.github_headers(body, SECRET, delivery="d-1")
    first = await client.post("/hooks/github", data=body, headers=headers)
    assert first.status == 202, await first.text()
    again = await client.post("/hooks/github", data=body, headers=headers)
    assert again.status == 200 and (await again.json())["duplicate"] is True
    rows = await deliveries(client)
    assert len(rows) == 1 and rows[0]["delivery"] == "d-1" and rows[0]["state"] == "pending"
    trigger = json.loads(rows[0]["trigger"])
    assert (trigger["kind"], trigger["branch"], trigger["sha"], trigger["fork"]) == ("push", "main", SHA, False)
    assert first.headers["Content-Security-Policy"].startswith("default-src 'none'")


async def test_bad_or_missing_signature_is_401_and_stores_nothing(server):
    client = await server([repo_cfg()], paused=True)
    body = p.body_of(p.github_push("acme/web", SHA))
    wrong = await client.post("/hooks/github", data=body, headers=p.github_headers(body, "not-the-secret"))
    missing = await client.post("/hooks/github", data=body, headers=p.github_headers(body, None))
    # A signature of other bytes: the check is over the raw body, not the parsed JSON.
    other = p.github_headers(body + b" ", SECRET)
    tampered = await client.post("/hooks/github", data=body, headers=other)
    assert (wrong.status, missing.status, tampered.status) == (401, 401, 401)
    assert await deliveries(client) == []


async def test_provider_is_the_endpoints_not_the_headers(server):
    gitea = {"name": "tea/app", "provider": "gitea", "url": "https://gitea.example.com/tea/app.git", "secret": SECRET}
    lab = {"name": "grp/svc", "provider": "gitlab", "url": "https://gitlab.example.com/grp/svc.git", "secret": SECRET}
    client = await server([repo_cfg(), gitea, lab], paused=True)
    body = p.body_of(p.gitea_push("tea/app", SHA))
    ok = await client.post("/hooks/gitea", data=body, headers=p.gitea_headers(body, SECRET))
    assert ok.status == 202, await ok.text()
    # Gitea's delivery carries X-GitHub-* headers; a GitHub-style signature alone on /hooks/gitea is refused.
    github_style = {**p.github_headers(body, SECRET), "X-Gitea-Event": "push"}
    refused = await client.post("/hooks/gitea", data=body, headers=github_style)
    assert refused.status == 401
    # ... and a Gitea delivery sent to /hooks/github is checked as GitHub's: no valid signature there.
    wrong_door = await client.post("/hooks/github", data=body, headers=p.gitea_headers(body, SECRET))
    assert wrong_door.status == 401
    lab_body = p.body_of(p.gitlab_push("grp/svc", SHA, ref="refs/tags/v1.2.0", kind="tag_push"))
    tagged = await client.post("/hooks/gitlab", data=lab_body, headers=p.gitlab_headers(SECRET, "Tag Push Hook"))
    assert tagged.status == 202, await tagged.text()
    bad_token = await client.post("/hooks/gitlab", data=lab_body, headers=p.gitlab_headers("nope", "Tag Push Hook"))
    assert bad_token.status == 401
    kinds = [(r["provider"], json.loads(r["trigger"])["kind"], json.loads(r["trigger"])["tag"]) for r in await deliveries(client)]
    assert kinds == [("gitea", "push", None), ("gitlab", "tag", "v1.2.0")]


async def test_twenty_concurrent_copies_of_one_delivery_make_one_build(server, git_repo):
    repo = git_repo({".conveyor.yml": "name: x\nimage: conveyor-test/busybox:1\nstages:\n  - name: a\n    steps: [hi]\n"})
    sha = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True,
                         check=True).stdout.strip()
    # The queue runs here (fake backend: this is about the inbox, not containers).
    client = await server([{"name": "acme/web", "path": str(repo), "secret": SECRET}], backend=FakeBackend())
    body = p.body_of(p.github_push("acme/web", sha))
    headers = p.github_headers(body, SECRET, delivery="same-delivery")
    answers = await asyncio.gather(*(client.post("/hooks/github", data=body, headers=headers) for _ in range(20)))
    statuses = sorted(r.status for r in answers)
    assert statuses == [200] * 19 + [202]
    assert len(await deliveries(client)) == 1

    async def built():
        rows = await client.app[STORE].aread(lambda c: c.execute("SELECT status FROM builds").fetchall())
        return [r[0] for r in rows] if rows and rows[0][0] == "success" else None

    assert await wait_for(built, timeout=30) == ["success"]
    await asyncio.sleep(0.5)  # give a second build, if one were made, the time to appear
    assert len(await client.app[STORE].aread(lambda c: c.execute("SELECT id FROM builds").fetchall())) == 1


async def test_oversize_bodies_are_413_whether_announced_or_streamed(server):
    client = await server([repo_cfg()], paused=True)
    announced = await client.post("/hooks/github", data=b"x" * 10,
                                  headers={"Content-Length": str(26 * 2**20), **p.github_headers(b"", SECRET)},
                                  skip_auto_headers=())
    assert announced.status == 413

    sent = 0

    async def endless():  # chunked: no Content-Length to trust, so the cap must hold while reading
        nonlocal sent
        chunk = b"y" * 2**20
        for _ in range(64):
            sent += len(chunk)
            yield chunk

    try:
        streamed = await client.post("/hooks/github", data=endless(), headers=p.github_headers(b"", SECRET))
        assert streamed.status == 413
    except Exception as exc:  # the server may close the connection right after answering 413
        assert "413" in str(exc) or isinstance(exc, (ConnectionError, OSError)), exc
    assert sent < 64 * 2**20  # it stopped reading long before the end
    # The cap is the hook routes' only: other routes keep aiohttp's own 1 MiB limit.
    assert await deliveries(client) == []


async def test_malformed_bodies_are_400(server):
    client = await server([repo_cfg()], paused=True)
    # The last one nests deeper than the JSON parser recurses: still the sender's fault, not a 500.
    for body in (b"{not json", b"[1, 2]", p.body_of({"ref": "refs/heads/main"}), b"[" * 100_000 + b"]" * 100_000):
        answer = await client.post("/hooks/github", data=body, headers=p.github_headers(body, SECRET))
        assert answer.status == 400, (body, await answer.text())
        assert "error" in await answer.json()


def _set(payload: dict, path: str, value) -> dict:
    *parents, last = path.split(".")
    target = payload
    for key in parents:
        target = target[key]
    target[last] = value
    return payload


@pytest.mark.parametrize("provider,event,payload,path,value,says", [
    ("github", "push", p.github_push("acme/web", SHA), "ref", "refs/heads/ma\nin",
     "ref contains a control character ('\\n' at 13)"),
    ("github", "push", p.github_push("acme/web", SHA), "after", "z" * 40, "after must be a commit sha"),
    ("github", "push", p.github_push("acme/web", SHA), "head_commit.author", "Octo", "head_commit.author must be an object"),
    ("github", "push", p.github_push("acme/web", SHA), "deleted", "yes", "deleted must be true or false"),
    ("github", "push", p.github_push("acme/web", SHA), "repository.full_name", {"a": 1},
     "repository.full_name must be a string, not an object"),
    ("github", "pull_request", p.github_pull_request("acme/web", SHA), "pull_request.head.ref", "x\x1by",
     "pull_request.head.ref contains a control character"),
    ("github", "pull_request", p.github_pull_request("acme/web", SHA), "number", 2**64,
     "number must be between 1 and 9223372036854775807"),
    ("github", "pull_request", p.github_pull_request("acme/web", SHA), "pull_request.base.ref", None,
     "pull_request.base.ref is missing"),
    ("gitea", "push", p.gitea_push("tea/app", SHA), "commits", "x", "commits must be a list, not a string"),
    ("gitea", "push", p.gitea_push("tea/app", SHA), "head_commit.message", "a\x00b", "head_commit.message contains a NUL"),
    ("gitlab", "Push Hook", p.gitlab_push("grp/svc", SHA), "checkout_sha", 5, "checkout_sha must be a string, not a number"),
    ("gitlab", "Push Hook", p.gitlab_push("grp/svc", SHA), "user_name", "a\u2028b", "user_name contains a control character"),
    ("gitlab", "Merge Request Hook", p.gitlab_merge_request("grp/svc", SHA), "object_attributes.iid", "3",
     "object_attributes.iid must be a whole number, not a string"),
    ("gitlab", "Merge Request Hook", p.gitlab_merge_request("grp/svc", SHA), "object_attributes.target_branch",
     ["main"], "object_attributes.target_branch must be a string, not a list"),
    ("gitlab", "Merge Request Hook", p.gitlab_merge_request("grp/svc", SHA), "object_attributes.last_commit.id",
     "abc", "object_attributes.last_commit.id must be a commit sha"),
])
async def test_a_field_of_the_wrong_type_is_a_400_naming_it(server, provider, event, payload, path, value, says):
    gitea = {"name": "tea/app", "provider": "gitea", "url": "https://gitea.example.com/tea/app.git", "secret": SECRET}
    lab = {"name": "grp/svc", "provider": "gitlab", "url": "https://gitlab.example.com/grp/svc.git", "secret": SECRET}
    client = await server([repo_cfg(), gitea, lab], paused=True)
    body = p.body_of(_set(json.loads(json.dumps(payload)), path, value))
    headers = {"github": lambda: p.github_headers(body, SECRET, event), "gitea": lambda: p.gitea_headers(body, SECRET, event),
               "gitlab": lambda: p.gitlab_headers(SECRET, event)}[provider]()
    answer = await client.post(f"/hooks/{provider}", data=body, headers=headers)
    assert answer.status == 400, await answer.text()
    assert (await answer.json())["error"].startswith(says)
    assert await deliveries(client) == []


async def test_unknown_repository_is_404_and_other_methods_405(server):
    client = await server([repo_cfg()], paused=True)
    body = p.body_of(p.github_push("someone/else", SHA))
    unknown = await client.post("/hooks/github", data=body, headers=p.github_headers(body, SECRET))
    assert unknown.status == 404
    named = await client.post("/hooks/github?repo=nope", data=body, headers=p.github_headers(body, SECRET))
    assert named.status == 404
    assert (await client.get("/hooks/github")).status == 405
    assert (await client.put("/hooks/gitlab", data=b"{}")).status == 405


async def test_ping_deletions_and_filtered_branches_start_nothing(server):
    client = await server([repo_cfg(branches=["main", "release/*"])], paused=True)
    ping = p.body_of({"zen": "Keep it logically awesome.", "hook_id": 1, "repository": {"full_name": "acme/web"}})
    assert (await client.post("/hooks/github", data=ping, headers=p.github_headers(ping, SECRET, "ping"))).status == 200
    deleted = p.body_of(p.github_push("acme/web", SHA, deleted=True))
    answer = await client.post("/hooks/github", data=deleted, headers=p.github_headers(deleted, SECRET))
    assert answer.status == 200 and "deleted" in (await answer.json())["ignored"]
    other = p.body_of(p.github_push("acme/web", SHA, ref="refs/heads/wip"))
    answer = await client.post("/hooks/github", data=other, headers=p.github_headers(other, SECRET))
    assert answer.status == 200 and "not in the branches" in (await answer.json())["ignored"]
    release = p.body_of(p.github_push("acme/web", SHA, ref="refs/heads/release/2.0"))
    assert (await client.post("/hooks/github", data=release, headers=p.github_headers(release, SECRET))).status == 202
    closed = p.body_of(p.github_pull_request("acme/web", SHA, action="closed"))
    answer = await client.post("/hooks/github", data=closed, headers=p.github_headers(closed, SECRET, "pull_request"))
    assert answer.status == 200 and "ignored" in await answer.json()
    assert [json.loads(r["trigger"])["branch"] for r in await deliveries(client)] == ["release/2.0"]


@pytest.mark.parametrize(
    "provider,payload,event,fork",
    [
        ("github", p.github_pull_request("acme/web", SHA, head_full_name="evil/web"), "pull_request", True),
        ("github", p.github_pull_request("acme/web", SHA, action="synchronize"), "pull_request", False),
        ("gitlab", p.gitlab_merge_request("acme/web", SHA, fork=True), "Merge Request Hook", True),
        ("gitlab", p.gitlab_merge_request("acme/web", SHA, action="update"), "Merge Request Hook", False),
        ("gitea", {**p.github_pull_request("acme/web", SHA, head_full_name="evil/web"), "action": "synchronized"},
         "pull_request", True),
    ],
)
def test_pull_requests_parse_with_fork_detection(provider, payload, event, fork):
    trigger = webhooks.parse(provider, event, payload)
    assert isinstance(trigger, webhooks.Trigger)
    assert (trigger.kind, trigger.sha, trigger.fork, trigger.target_branch) == ("pull_request", SHA, fork, "main")


def test_a_gitlab_merge_request_that_does_not_name_both_projects_counts_as_a_fork():
    # The safe side, as for a GitHub pull request whose head repository is gone: no secrets, no deploy.
    mr = p.gitlab_merge_request("acme/web", SHA)
    for key in ("source_project_id", "target_project_id"):
        del mr["object_attributes"][key]
    assert webhooks.parse("gitlab", "Merge Request Hook", mr).fork is True


def test_gitlab_title_edit_of_a_merge_request_starts_nothing():
    edit = p.gitlab_merge_request("acme/web", SHA, action="update", oldrev=False)
    assert isinstance(webhooks.parse("gitlab", "Merge Request Hook", edit), webhooks.Ignored)


async def test_gitlab_delivery_ids_and_a_byte_identical_retry_without_one(server):
    lab = {"name": "grp/svc", "provider": "gitlab", "url": "https://gitlab.example.com/grp/svc.git", "secret": SECRET}
    client = await server([lab], paused=True)
    body = p.body_of(p.gitlab_push("grp/svc", SHA))
    keyed = {**p.gitlab_headers(SECRET), "Idempotency-Key": "idem-1"}
    del keyed["X-Gitlab-Event-UUID"]
    assert (await client.post("/hooks/gitlab", data=body, headers=keyed)).status == 202
    assert (await client.post("/hooks/gitlab", data=body, headers=keyed)).status == 200
    bare = p.gitlab_headers(SECRET)
    del bare["X-Gitlab-Event-UUID"]
    other = p.body_of(p.gitlab_push("grp/svc", "3" * 40))
    assert (await client.post("/hooks/gitlab", data=other, headers=bare)).status == 202
    assert (await client.post("/hooks/gitlab", data=other, headers=bare)).status == 200
    assert [r["delivery"][:7] for r in await deliveries(client)] == ["idem-1", "sha256:"]


async def test_githubs_form_encoded_deliveries_are_accepted_too(server):
    from urllib.parse import urlencode

    client = await server([repo_cfg()], paused=True)
    body = urlencode({"payload": json.dumps(p.github_push("acme/web", SHA))}).encode()
    headers = {**p.github_headers(body, SECRET), "Content-Type": "application/x-www-form-urlencoded"}
    answer = await client.post("/hooks/github", data=body, headers=headers)
    assert answer.status == 202, await answer.text()
    empty = urlencode({"other": "x"}).encode()
    headers = {**p.github_headers(empty, SECRET), "Content-Type": "application/x-www-form-urlencoded"}
    assert (await client.post("/hooks/github", data=empty, headers=headers)).status == 400


async def test_checking_signatures_of_a_big_body_does_not_stall_the_server(server):
    # Before anything is authenticated, a 24 MiB body is checked against every secret of the
    # provider: that hashing runs off the event loop, or anyone could stall every build's live log.
    repos = [repo_cfg(name=f"acme/web{i}", url=f"https://github.com/acme/web{i}.git", secret=f"s-{i}")
             for i in range(16)]
    client = await server(repos, paused=True)
    body = b" " * (24 * 2**20)
    gaps, stop = [], asyncio.Event()

    async def ticker():
        loop = asyncio.get_running_loop()
        last = loop.time()
        while not stop.is_set():
            await asyncio.sleep(0.005)
            now = loop.time()
            gaps.append(now - last)
            last = now

    ticking = asyncio.create_task(ticker())
    answer = await client.post("/hooks/github", data=body, headers=p.github_headers(body, "wrong"))
    stop.set()
    await ticking
    assert answer.status == 401
    assert max(gaps) < 0.15, f"the loop stalled for {max(gaps):.3f} s"  # hashing it all takes ~0.2 s
