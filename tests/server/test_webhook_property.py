"""Property: whatever a signed sender puts in a payload's fields (lists, objects, numbers, huge and
negative ints, floats, nulls, booleans, control characters, missing keys), every webhook endpoint
answers 2xx with a well-typed stored delivery, or 4xx; never 5xx. The queue, running all along,
turns every stored delivery into a build (none fails), and a good delivery afterwards still builds.

Hypothesis drives a real server on 127.0.0.1 from a worker thread (its examples are synchronous);
each request is run on the server's event loop."""

from __future__ import annotations

import asyncio
import copy
import json
import re
import subprocess
import uuid

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runner.backends.fake import FakeBackend
from runner.scm.webhooks import Trigger
from runner.server.keys import STORE
from runner.store.db import MAX_INTEGER
from tests.server import payloads as p
from tests.server.conftest import wait_for

SECRET = "prop-secret"
PIPELINE = "name: x\nimage: conveyor-test/busybox:1\nstages:\n  - name: a\n    steps: [hi]\n"
EXAMPLES = 150


def senders(sha: str) -> list[tuple[str, str, dict]]:
    """(endpoint, event, base payload) for each provider and event Conveyor builds."""
    return [
        ("github", "push", p.github_push("acme/web", sha)),
        ("github", "pull_request", p.github_pull_request("acme/web", sha)),
        ("gitea", "push", p.gitea_push("tea/app", sha)),
        ("gitea", "pull_request", p.github_pull_request("tea/app", sha, action="synchronized")),
        ("gitlab", "Push Hook", p.gitlab_push("grp/svc", sha)),
        ("gitlab", "Tag Push Hook", p.gitlab_push("grp/svc", sha, ref="refs/tags/v1", kind="tag_push")),
        ("gitlab", "Merge Request Hook", p.gitlab_merge_request("grp/svc", sha, action="update")),
    ]


def paths(value, prefix=()) -> list[tuple]:
    """Every place in a JSON value: keys of objects and items of lists, nested ones too."""
    found = []
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, child in items:
        found.append((*prefix, key))
        found.extend(paths(child, (*prefix, key)))
    return found


CONTROL = st.text(st.characters(min_codepoint=0, max_codepoint=0x9F), min_size=1, max_size=5)
HOSTILE = st.one_of(
    st.lists(st.integers(), max_size=3), st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
    st.integers(-10, 10), st.integers(min_value=2**63 - 2, max_value=2**80), st.integers(max_value=-(2**63)),
    st.floats(allow_nan=False, allow_infinity=False), st.none(), st.booleans(), st.just(""),
    CONTROL, st.builds(lambda a, c: f"refs/heads/{a}{c}", st.text(max_size=3), CONTROL),
)


@st.composite
def deliveries(draw, bases):
    endpoint, event, base = draw(st.sampled_from(bases))
    payload = copy.deepcopy(base)
    for _ in range(draw(st.integers(1, 3))):
        where = paths(payload)
        if not where:
            break
        path = draw(st.sampled_from(where))
        parent = payload
        for key in path[:-1]:
            parent = parent[key]
        if draw(st.integers(0, 9)) == 0:
            parent.pop(path[-1])  # a missing key, or a shorter list
        else:
            parent[path[-1]] = draw(HOSTILE)
    return endpoint, event, payload


def headers_for(endpoint: str, event: str, body: bytes) -> dict:
    delivery = str(uuid.uuid4())
    if endpoint == "github":
        return p.github_headers(body, SECRET, event=event, delivery=delivery)
    if endpoint == "gitea":
        return p.gitea_headers(body, SECRET, event=event, delivery=delivery)
    return p.gitlab_headers(SECRET, event=event, delivery=delivery)


def assert_well_typed(trigger: Trigger) -> None:
    assert trigger.kind in ("push", "tag", "pull_request")
    assert isinstance(trigger.ref, str) and isinstance(trigger.fork, bool)
    assert isinstance(trigger.sha, str) and re.fullmatch(r"[0-9a-f]{40}|[0-9a-f]{64}", trigger.sha)
    for name in ("ref", "branch", "tag", "target_branch", "author"):
        value = getattr(trigger, name)
        assert value is None or (isinstance(value, str) and not re.search(r"[\x00-\x1f\x7f-\x9f]", value)), name
    assert trigger.message is None or (isinstance(trigger.message, str) and "\x00" not in trigger.message)
    assert trigger.pr_number is None or (type(trigger.pr_number) is int and 1 <= trigger.pr_number <= MAX_INTEGER)


async def test_hostile_field_types_are_never_a_5xx_and_the_queue_keeps_building(server, git_repo):
    repo = git_repo({".conveyor.yml": PIPELINE})
    sha = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True,
                         check=True).stdout.strip()
    repos = [{"name": name, "provider": provider, "path": str(repo), "secret": SECRET}
             for name, provider in (("acme/web", "github"), ("tea/app", "gitea"), ("grp/svc", "gitlab"))]
    client = await server(repos, backend=FakeBackend(), concurrency=2)
    store, loop = client.app[STORE], asyncio.get_running_loop()
    answers: dict[int, int] = {}

    async def send(endpoint: str, event: str, payload) -> None:
        body = json.dumps(payload).encode()
        answer = await client.post(f"/hooks/{endpoint}", data=body, headers=headers_for(endpoint, event, body))
        text = await answer.text()
        answers[answer.status] = answers.get(answer.status, 0) + 1
        assert answer.status in (200, 202, 400, 401, 404), (answer.status, text, payload)
        if answer.status == 400:
            assert json.loads(text)["error"], text  # a message saying what is wrong
        if answer.status == 202:
            row_id = json.loads(text)["delivery"]
            stored = await store.aread(lambda c: c.execute("SELECT trigger FROM deliveries WHERE id = ?",
                                                           (row_id,)).fetchone()[0])
            assert_well_typed(Trigger.from_json(stored))

    @settings(max_examples=EXAMPLES, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(deliveries(senders(sha)))
    def one_delivery(delivery) -> None:
        asyncio.run_coroutine_threadsafe(send(*delivery), loop).result(timeout=30)

    await asyncio.to_thread(one_delivery)
    assert answers.get(400) and answers.get(202), answers  # both sides of the property were reached

    async def queue_drained():
        rows = await store.aread(lambda c: c.execute(
            "SELECT (SELECT COUNT(*) FROM deliveries WHERE state = 'pending'), "
            "(SELECT COUNT(*) FROM builds WHERE status IN ('queued', 'running'))").fetchone())
        return tuple(rows) == (0, 0)

    await wait_for(queue_drained, timeout=120)
    states = await store.aread(lambda c: dict(c.execute("SELECT state, COUNT(*) FROM deliveries GROUP BY state")))
    assert "failed" not in states, states  # what the parser let through always became a build

    body = p.body_of(p.github_push("acme/web", sha, message="the good one"))
    good = await client.post("/hooks/github", data=body, headers=p.github_headers(body, SECRET))
    assert good.status == 202
    row_id = (await good.json())["delivery"]

    async def good_build_finished():
        row = await store.aread(lambda c: c.execute(
            "SELECT b.status FROM deliveries d JOIN builds b ON b.id = d.build_id WHERE d.id = ?",
            (row_id,)).fetchone())
        return row and row[0] not in ("queued", "running") and row[0]

    assert await wait_for(good_build_finished, timeout=60) == "success"
