"""``kill -9`` of a real `conveyor serve` process, then a restart: nothing the 202 promised is lost,
and a build the dead server was running becomes `interrupted` with its containers swept."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest
import yaml

from tests.server import payloads as p

SECRET = "crash-secret"
pytestmark = pytest.mark.docker

SLOW_PIPELINE = """\
name: slow
image: conveyor-test/busybox:1
stages:
  - name: wait
    steps: ["echo started; sleep 60"]
"""
QUICK_PIPELINE = """\
name: quick
image: conveyor-test/busybox:1
stages:
  - name: say
    steps: ["echo built after the crash"]
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    def __init__(self, config: dict, tmp_path, name: str) -> None:
        self.port = config["port"]
        self.path = tmp_path / f"{name}.yml"
        self.path.write_text(yaml.safe_dump(config))
        self.log = open(tmp_path / f"{name}.log", "wb")
        self.proc: subprocess.Popen | None = None

    def start(self, *args: str) -> ServerProcess:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen([sys.executable, "-m", "runner", "serve", "--config", str(self.path), *args],
                                     stdout=self.log, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                self.get("/api/builds")
                return self
            except OSError:
                if self.proc.poll() is not None:
                    raise AssertionError(f"the server exited: see {self.log.name}") from None
                time.sleep(0.1)
        raise AssertionError("the server did not answer within 30s")

    def get(self, path: str):
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=5) as r:
            return json.loads(r.read())

    def post(self, path: str, body: bytes, headers: dict) -> int:
        request = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", data=body, headers=headers)
        with urllib.request.urlopen(request, timeout=5) as r:
            return r.status

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def wait_build(server: ServerProcess, build_id: int, statuses: tuple[str, ...], timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        builds = {b["id"]: b for b in server.get("/api/builds")["builds"]}
        if builds.get(build_id, {}).get("status") in statuses:
            return builds[build_id]
        time.sleep(0.2)
    raise AssertionError(f"build {build_id} did not reach {statuses}: {builds.get(build_id)}")


@pytest.fixture
def config(tmp_path, instance, git_repo):
    def make(pipeline: str) -> dict:
        repo = git_repo({".conveyor.yml": pipeline})
        return {"port": free_port(), "data_dir": str(tmp_path / "data"), "instance": instance,
                "repos": [{"name": "acme/web", "provider": "github", "path": str(repo), "secret": SECRET}]}, repo
    return make


def push_body(repo) -> bytes:
    sha = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True,
                         check=True).stdout.strip()
    return p.body_of(p.github_push("acme/web", sha))


def test_kill_9_after_the_202_and_before_the_build_starts_loses_nothing(config, tmp_path, docker_client):
    cfg, repo = config(QUICK_PIPELINE)
    first = ServerProcess(cfg, tmp_path, "first").start("--paused")  # holds deliveries in the inbox
    try:
        body = push_body(repo)
        assert first.post("/hooks/github", body, p.github_headers(body, SECRET, delivery="kill-me")) == 202
        assert first.get("/api/builds")["builds"] == []  # accepted, not started
        first.kill9()
    finally:
        first.stop()
    second = ServerProcess(cfg, tmp_path, "second").start()
    try:
        build = wait_build(second, 1, ("success", "failure", "skipped", "config_error"))
        assert build["status"] == "success", build
        assert build["trigger"] == "webhook"
        body = push_body(repo)  # the forge retries the same delivery: still one build
        assert second.post("/hooks/github", body, p.github_headers(body, SECRET, delivery="kill-me")) == 200
        assert len(second.get("/api/builds")["builds"]) == 1
    finally:
        second.stop()


def test_a_build_running_when_the_server_dies_is_interrupted_and_swept(config, tmp_path, instance, docker_client):
    cfg, repo = config(SLOW_PIPELINE)
    first = ServerProcess(cfg, tmp_path, "first").start()
    labels = {"label": [f"io.conveyor.instance={instance}"]}
    try:
        body = push_body(repo)
        assert first.post("/hooks/github", body, p.github_headers(body, SECRET)) == 202
        wait_build(first, 1, ("running",))
        deadline = time.monotonic() + 30
        while not docker_client.containers.list(filters=labels) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert docker_client.containers.list(filters=labels), "the job's container never started"
        first.kill9()
    finally:
        first.stop()
    second = ServerProcess(cfg, tmp_path, "second").start()
    try:
        build = wait_build(second, 1, ("interrupted",), timeout=30)
        assert "interrupted" in build["reason"]
        assert docker_client.containers.list(all=True, filters=labels) == []
        assert docker_client.volumes.list(filters=labels) == []
        assert docker_client.networks.list(filters=labels) == []
    finally:
        second.stop()
        for container in docker_client.containers.list(all=True, filters=labels):
            container.remove(force=True)
