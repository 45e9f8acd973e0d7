"""A build waiting for an approval survives a real restart of `conveyor serve` (a subprocess), both a
clean stop and a ``kill -9``: it stays `waiting`, holds no container meanwhile, and once approved
goes on after the approval stage in a fresh checkout, without running the finished stages again."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request

import pytest

from runner.store import builds as q
from runner.store.db import Store
from tests.server.test_crash import ServerProcess, free_port, wait_build

pytestmark = pytest.mark.docker
TOKEN = "restart-token-123"
PIPELINE = """\
name: gated
image: conveyor-test/busybox:1
stages:
  - name: test
    steps: ["echo tested; echo scratch > made-by-test.txt"]
  - name: approve
    approval:
      message: "Ship it?"
      timeout: 10m
  - name: ship
    steps: ["cat committed.txt; if [ -e made-by-test.txt ]; then echo old workspace; else echo fresh checkout; fi"]
"""


def post(server: ServerProcess, path: str, data: dict) -> tuple[int, dict]:
    request = urllib.request.Request(f"http://127.0.0.1:{server.port}{path}", data=json.dumps(data).encode(),
                                     headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


@pytest.fixture
def setup(tmp_path, instance, git_repo):
    repo = git_repo({".conveyor.yml": PIPELINE, "committed.txt": "from the commit\n"})
    cfg = {"port": free_port(), "data_dir": str(tmp_path / "data"), "instance": instance, "admin_token": TOKEN,
           "repos": [{"name": "acme/web", "provider": "github", "path": str(repo)}]}
    return cfg, tmp_path / "data"


def containers(docker_client, instance):
    return docker_client.containers.list(all=True, filters={"label": [f"io.conveyor.instance={instance}"]})


def check_resumed(server, data_dir, build_id):
    build = wait_build(server, build_id, ("success", "failure", "cancelled", "interrupted"), timeout=60)
    assert build["status"] == "success", build
    with Store(data_dir) as store:
        log = {(c.stage, c.text) for c in q.build_logs(store.read(), build_id)}
        stages = {s.name: s.status for s in q.get_detail(store.read(), build_id).stages}
    assert stages == {"test": "success", "approve": "success", "ship": "success"}
    texts = [text for stage, text in log if stage == "test"]
    assert texts == ["tested"]  # the finished stage did not run again
    assert ("ship", "from the commit\nfresh checkout") in log  # a new checkout of the build's commit


def test_a_waiting_build_survives_a_clean_restart_and_a_kill_9(setup, tmp_path, instance, docker_client):
    cfg, data_dir = setup
    first = ServerProcess(cfg, tmp_path, "first").start()
    try:
        assert post(first, "/api/builds", {"repo": "acme/web"})[0] == 201
        wait_build(first, 1, ("waiting",))
        assert containers(docker_client, instance) == []  # nothing runs while it waits
        first.stop()  # SIGTERM: a clean stop must not cancel it
    finally:
        first.stop()
    second = ServerProcess(cfg, tmp_path, "second").start()
    try:
        assert wait_build(second, 1, ("waiting",))["status"] == "waiting"
        status, body = post(second, "/api/builds/1/approvals", {"decision": "approve", "comment": "after restart"})
        assert status == 200, body
        check_resumed(second, data_dir, 1)
        detail = second.get("/api/builds/1")
        assert detail["approvals"][0]["decided_by"] == "admin" and detail["approvals"][0]["comment"] == "after restart"

        # Again, now with the server killed while it waits, and the decision given while it is down.
        assert post(second, "/api/builds", {"repo": "acme/web"})[0] == 201
        wait_build(second, 2, ("waiting",))
        second.kill9()
    finally:
        second.stop()
    env = {**os.environ, "CONVEYOR_DATA_DIR": str(data_dir), "CONVEYOR_INSTANCE": instance}
    approved = subprocess.run([sys.executable, "-m", "runner", "approve", "id:2", "-m", "while down"], env=env,
                              capture_output=True, text=True, timeout=60)
    assert approved.returncode == 0, approved.stderr
    with Store(data_dir) as store:
        assert q.get_build(store.read(), 2).status == "waiting"  # nobody runs it until the server is back
    third = ServerProcess(cfg, tmp_path, "third").start()
    try:
        check_resumed(third, data_dir, 2)
        assert third.get("/api/builds/2")["approvals"][0]["comment"] == "while down"
    finally:
        third.stop()
    labels = {"label": [f"io.conveyor.instance={instance}"]}
    assert containers(docker_client, instance) == []
    assert docker_client.volumes.list(filters=labels) == [] and docker_client.networks.list(filters=labels) == []


WARNED_PIPELINE = """\
name: warned
image: conveyor-test/busybox:1
stages:
  - name: test
    jobs:
      - name: flaky
        allow_failure: true
        steps: ["echo flaky; exit 3"]
  - name: approve
    approval: {message: "Ship it anyway?", timeout: 10m}
  - name: ship
    jobs:
      - name: lint
        allow_failure: true
        steps: ["exit 4"]
"""


def test_warnings_from_before_the_approval_survive_a_restart(tmp_path, instance, git_repo):
    repo = git_repo({".conveyor.yml": WARNED_PIPELINE})
    data_dir = tmp_path / "data"
    cfg = {"port": free_port(), "data_dir": str(data_dir), "instance": instance, "admin_token": TOKEN,
           "repos": [{"name": "acme/web", "provider": "github", "path": str(repo)}]}
    before = "job 'flaky' failed (allowed): "
    first = ServerProcess(cfg, tmp_path, "first").start()
    try:
        assert post(first, "/api/builds", {"repo": "acme/web"})[0] == 201
        wait_build(first, 1, ("waiting",))
        waiting = first.get("/api/builds/1")
        assert [w.startswith(before) for w in waiting["warnings"]] == [True], waiting  # shown while it waits
        first.kill9()
    finally:
        first.stop()
    env = {**os.environ, "CONVEYOR_DATA_DIR": str(data_dir), "CONVEYOR_INSTANCE": instance}
    approved = subprocess.run([sys.executable, "-m", "runner", "approve", "id:1"], env=env,
                              capture_output=True, text=True, timeout=60)
    assert approved.returncode == 0, approved.stderr
    second = ServerProcess(cfg, tmp_path, "second").start()
    try:
        build = wait_build(second, 1, ("success", "failure", "cancelled", "interrupted"), timeout=60)
        assert build["status"] == "success", build
        warnings = second.get("/api/builds/1")["warnings"]
        with urllib.request.urlopen(f"http://127.0.0.1:{second.port}/builds/1", timeout=10) as r:
            page = r.read().decode()
    finally:
        second.stop()
    assert len(warnings) == 2 and warnings[0].startswith(before) and warnings[1].startswith("job 'lint' failed"), warnings
    assert "with warnings" in page and "job &#39;flaky&#39; failed (allowed)" in page, page
    shown = subprocess.run([sys.executable, "-m", "runner", "show", "id:1"], env=env,
                           capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0, shown.stderr
    assert "success with warnings" in shown.stdout and f"warning:  {before}" in shown.stdout, shown.stdout
