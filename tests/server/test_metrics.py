"""GET /metrics on a real server with real builds in its store, read back with prometheus_client's
own parser; and who may read it."""

from __future__ import annotations

import subprocess

import pytest
from prometheus_client.parser import text_string_to_metric_families

from runner.server.config import ServerConfigError, load_config
from tests.server import payloads as p
from tests.server.conftest import BUSYBOX_PIPELINE, wait_for
from tests.server.test_builds import SECRET, head_sha, push

FAILING_PIPELINE = """\
name: broken
image: conveyor-test/busybox:1
stages:
  - name: test
    steps: ["echo about to fail; exit 3"]
"""


def samples(text: str) -> dict[tuple[str, tuple], float]:
    """{(sample name, sorted labels): value} of every sample in the text."""
    found = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            found[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return found


@pytest.mark.docker
async def test_metrics_count_the_builds_jobs_and_webhook_answers_of_a_real_server(server, git_repo, docker_client):
    repo = git_repo({".conveyor.yml": BUSYBOX_PIPELINE})
    # No superseding: both pushes must build (else the first queued one is cancelled by the second).
    client = await server([{"name": "acme/web", "provider": "github", "path": str(repo), "secret": SECRET,
                            "cancel_superseded": False}])
    await push(client, head_sha(repo))
    body = p.body_of(p.github_push("acme/web", head_sha(repo)))
    refused = await client.post("/hooks/github", data=body, headers=p.github_headers(body, "wrong secret"))
    assert refused.status == 401
    (repo / ".conveyor.yml").write_text(FAILING_PIPELINE)
    git = ["git", "-C", str(repo), "-c", "user.name=T", "-c", "user.email=t@example.invalid"]
    subprocess.run([*git, "commit", "-qam", "break it"], check=True)
    await push(client, head_sha(repo))

    async def both_finished():
        builds = (await (await client.get("/api/builds")).json())["builds"]
        return len(builds) == 2 and all(b["status"] not in ("queued", "running") for b in builds)

    await wait_for(both_finished, timeout=120)
    answer = await client.get("/metrics")
    assert answer.status == 200
    assert answer.headers["Content-Type"].startswith("text/plain; version=")
    got = samples(await answer.text())
    assert got[("conveyor_builds", (("status", "success"),))] == 1
    assert got[("conveyor_builds", (("status", "failure"),))] == 1
    assert got[("conveyor_builds", (("status", "cancelled"),))] == 0
    assert got[("conveyor_jobs", (("status", "success"),))] == 3  # greet, check/one, check/two
    assert got[("conveyor_jobs", (("status", "failure"),))] == 1
    assert got[("conveyor_queue_depth", ())] == 0 and got[("conveyor_running_jobs", ())] == 0
    assert got[("conveyor_inbox_pending", ())] == 0
    assert got[("conveyor_build_duration_seconds_count", ())] == 2
    assert got[("conveyor_build_duration_seconds_bucket", (("le", "+Inf"),))] == 2
    assert 0 < got[("conveyor_build_duration_seconds_sum", ())] < 240
    assert got[("conveyor_build_queue_wait_seconds_count", ())] == 2
    assert got[("conveyor_webhook_deliveries_total", (("code", "202"), ("provider", "github")))] == 2
    assert got[("conveyor_webhook_deliveries_total", (("code", "401"), ("provider", "github")))] == 1
    assert got[("conveyor_store_size_bytes", (("file", "database"),))] > 0
    assert got[("process_resident_memory_bytes", ())] > 0


async def test_metrics_from_an_address_not_allowed_need_the_admin_token(server):
    client = await server(metrics_allow=["10.0.0.0/8", "fd00::/8"], admin_token="metrics-admin")
    refused = await client.get("/metrics")
    assert refused.status == 403 and "metrics_allow" in await refused.text()
    wrong = await client.get("/metrics", headers={"Authorization": "Bearer nope"})
    assert wrong.status == 401
    allowed = await client.get("/metrics", headers={"Authorization": "Bearer metrics-admin"})
    assert allowed.status == 200
    assert ("conveyor_queue_depth", ()) in samples(await allowed.text())


async def test_metrics_are_open_to_loopback_by_default(server):
    client = await server()
    assert (await client.get("/metrics")).status == 200


@pytest.mark.parametrize("value, message", [("127.0.0.1/32", "must be a list"), (["not-an-address"], "metrics_allow")])
def test_a_bad_metrics_allow_is_refused_with_what_to_write(tmp_path, value, message):
    import yaml

    path = tmp_path / "conveyor.yml"
    path.write_text(yaml.safe_dump({"metrics_allow": value}))
    with pytest.raises(ServerConfigError, match=message):
        load_config(path, environ={})
