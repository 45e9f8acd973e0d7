"""A deploying build must never hurt the service it deployed when it ends, crashes or is recovered.

The build stage's image used to carry the labels the sweeps remove by; every Swarm task of it
inherited them, so the build's own teardown (and crash recovery after a `kill -9`, and a server
restart) killed the service it had just deployed. Each test here watches the service with an HTTP
probe from its first answer (verify passing) until 10 s after the build ended or was recovered:
zero failed requests, and exactly one task running all along.

The pipeline starts with its `build:` stage, so it also proves a first-stage build has its context.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from deploy_helpers import Probe, free_port, remove_instance
from runner.engine.labels import LABEL_JOB_RESOURCE
from tests.conftest import ROOT
from tests.server import payloads as p
from tests.server.test_crash import ServerProcess, push_body, wait_build

pytestmark = [pytest.mark.docker, pytest.mark.swarm]
WINDOW = 10.0  # seconds watched after the build ended

PIPELINE = """\
name: keep-serving
image: conveyor-test/busybox:1
stages:
  - name: image
    build: {{tag: "{image}"}}
  - name: deploy
    deploy:
      service: {service}
      image: "{image}"
      ports: ["{port}:8080"]
      healthcheck: {{cmd: "wget -q -O- http://127.0.0.1:8080/health", interval: 1s, timeout: 1s, retries: 2}}
      update: {{order: stop-first, monitor: 4s}}
      rollback: {{order: stop-first, monitor: 2s}}
      verify: {{http: "http://127.0.0.1:{port}/health", status: 200, within: 30s}}
      timeout: 90s
  - name: after
    steps: ["echo after the deploy; sleep {linger}"]
"""


@pytest.fixture
def service(git_repo, instance, swarm_engine):
    """A repository whose pipeline builds, deploys and verifies ``<instance>-web``; yields (repo,
    name, url, pipeline text maker) and removes the service and the image afterwards."""
    name, port = f"{instance}-web", free_port()
    image = f"{instance}-web:1"

    def repo_with(linger: int):
        text = PIPELINE.format(service=name, image=image, port=port, linger=linger)
        files = {".conveyor.yml": text}
        for rel in ("Dockerfile", "serve.sh", "www/index.html", "www/health", "www/version"):
            files[rel] = (ROOT / "sample-repos" / "web-service" / rel).read_text()
        return git_repo(files=files)

    yield repo_with, name, f"http://127.0.0.1:{port}/"
    remove_instance(swarm_engine, instance)
    try:
        swarm_engine.images.remove(image, force=True)
    except Exception:  # noqa: BLE001 - never built
        pass


def _env(settings, instance) -> dict[str, str]:
    return {**os.environ, "CONVEYOR_DATA_DIR": str(settings.data_dir), "CONVEYOR_INSTANCE": instance}


def _job_resources(client, instance) -> list:
    labels = {"label": [LABEL_JOB_RESOURCE, f"io.conveyor.instance={instance}"]}
    return [*client.containers.list(all=True, sparse=True, filters=labels), *client.volumes.list(filters=labels),
            *client.networks.list(filters=labels)]


def _watch_then_check(probe: Probe, client, instance) -> None:
    time.sleep(WINDOW)
    probe.stop()
    assert probe.ok > 50 and probe.failed == 0, probe.summary()
    assert len(probe.running_counts) > 20 and set(probe.running_counts) == {1}, probe.summary()
    assert len(probe.task_ids) == 1, probe.summary()  # never killed and replaced
    assert _job_resources(client, instance) == []  # the build's own resources did go


def test_conveyor_run_ending_leaves_the_deployed_service_serving(service, settings, instance, swarm_engine):
    repo_with, name, url = service
    repo = repo_with(linger=0)
    probe = Probe(swarm_engine, name, url)
    try:
        run = subprocess.run([sys.executable, "-m", "runner", "run", str(repo), "--commit"], env=_env(settings, instance),
                             capture_output=True, text=True, timeout=300)
        assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
        assert "from the workspace volume" in run.stdout and "verify passed" in run.stdout, run.stdout[-3000:]
        assert probe.first_ok is not None, "the service never answered"
        _watch_then_check(probe, swarm_engine, instance)
    finally:
        probe.stop()


def test_kill_9_in_a_later_stage_then_conveyor_builds_leaves_the_service_serving(service, settings, instance,
                                                                                 swarm_engine):
    repo_with, name, url = service
    repo = repo_with(linger=120)
    env = _env(settings, instance)
    probe = Probe(swarm_engine, name, url)
    run = subprocess.Popen([sys.executable, "-m", "runner", "run", str(repo), "--commit"], env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        probe.wait_first_answer(alive=lambda: run.poll() is None)
        deadline = time.monotonic() + 60
        while not _later_stage_running(swarm_engine, instance):
            assert time.monotonic() < deadline and run.poll() is None, "the later stage never started"
            time.sleep(0.2)
        run.send_signal(signal.SIGKILL)
        run.wait(timeout=10)
        assert _job_resources(swarm_engine, instance), "the killed build left nothing to recover"

        builds = subprocess.run([sys.executable, "-m", "runner", "builds"], env=env, capture_output=True, text=True,
                                timeout=120)
        assert builds.returncode == 0 and "interrupted" in builds.stdout, builds.stdout + builds.stderr
        _watch_then_check(probe, swarm_engine, instance)
    finally:
        probe.stop()
        if run.poll() is None:
            run.kill()


def test_a_server_restart_recovering_a_crashed_build_leaves_the_service_serving(service, tmp_path, instance,
                                                                                swarm_engine):
    repo_with, name, url = service
    repo = repo_with(linger=120)
    cfg = {"port": free_port(), "data_dir": str(tmp_path / "server-data"), "instance": instance,
           "repos": [{"name": "acme/web", "provider": "github", "path": str(repo), "secret": "s3cret"}]}
    first = ServerProcess(cfg, tmp_path, "first").start()
    probe = Probe(swarm_engine, name, url)
    try:
        body = push_body(repo)
        assert first.post("/hooks/github", body, p.github_headers(body, "s3cret")) == 202
        probe.wait_first_answer()
        deadline = time.monotonic() + 60
        while not _later_stage_running(swarm_engine, instance):
            assert time.monotonic() < deadline, f"the later stage never started: {first.get('/api/builds')}"
            time.sleep(0.2)
        first.kill9()
    finally:
        first.stop()
    second = ServerProcess(cfg, tmp_path, "second").start()
    try:
        wait_build(second, 1, ("interrupted",), timeout=60)
        _watch_then_check(probe, swarm_engine, instance)
    finally:
        probe.stop()
        second.stop()


def _later_stage_running(client, instance) -> bool:
    labels = {"label": [LABEL_JOB_RESOURCE, f"io.conveyor.instance={instance}", "io.conveyor.job=after"]}
    return bool(client.api.containers(filters=labels))
