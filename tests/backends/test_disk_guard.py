"""The workspace size limit: a step that writes past it is stopped within seconds, with the limit in
its reason. Real engine for Docker, a real directory for the local backend."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest

from runner.backends.base import BuildRef
from runner.backends.disk_guard import format_size
from runner.backends.docker import DockerBackend
from runner.backends.local import LocalBackend
from runner.executor import events as ev
from runner.executor.run import run_plan
from runner.plan import Job, Plan, Stage, Step
from runner.server.config import ServerConfigError, load_config
from runner.settings import Settings, parse_size
from tests.conftest import BUSYBOX

MIB = 1024**2
# Writes 5 MiB into the workspace, then would idle for a minute: only the guard can end it early.
FILL = "dd if=/dev/zero of=big bs=1024 count=5120 2>/dev/null; echo written; sleep 60"


class Recorder:
    def __init__(self):
        self.events = []

    def emit(self, event):
        self.events.append(event)


def plan_of(image: str) -> Plan:
    return Plan("p", stages=(Stage("s", "jobs", jobs=(Job("fill", image, (
        Step("small", "echo a > small.txt"), Step("fill", FILL), Step("never", "echo never"))),)),))


async def run_and_check(backend, build) -> None:
    sink = Recorder()
    began = time.monotonic()
    status = await run_plan(plan_of(BUSYBOX), build, backend, sink)
    elapsed = time.monotonic() - began
    assert status == "failure"
    steps = [(e.step, e.status, e.exit_code, e.reason) for e in sink.events if isinstance(e, ev.StepFinished)]
    assert steps == [(0, "success", 0, None), (1, "failure", 137, "the workspace grew past 1 MiB")]
    job = next(e for e in sink.events if isinstance(e, ev.JobFinished))
    assert (job.status, job.reason) == ("failure", "step 'fill': the workspace grew past 1 MiB")
    assert elapsed < 20, f"took {elapsed:.1f}s: the guard should stop the step within seconds"


@pytest.mark.docker
async def test_docker_step_writing_past_the_workspace_limit_is_stopped_with_the_reason(
        docker_client, tmp_path, instance):
    (tmp_path / "README").write_text("hello\n")
    backend = DockerBackend(Settings(instance=instance, workspace_limit=MIB), grace=1.0)
    build = BuildRef(id="g" + uuid.uuid4().hex[:10], source=tmp_path, instance=instance)
    try:
        await run_and_check(backend, build)
        label = {"label": f"io.conveyor.build={build.id}"}
        assert docker_client.containers.list(all=True, filters=label) == []
        assert docker_client.volumes.list(filters=label) == []
    finally:
        await backend.sweep(keep=[])
        backend.close()


async def test_local_step_writing_past_the_workspace_limit_is_stopped_with_the_reason(tmp_path):
    (tmp_path / "src").mkdir()
    backend = LocalBackend(grace=1.0, root=tmp_path, workspace_limit=MIB)
    await run_and_check(backend, BuildRef(id="l" + uuid.uuid4().hex[:10], source=tmp_path / "src"))
    await asyncio.sleep(0)
    assert [p.name for p in tmp_path.iterdir()] == ["src"]  # the workspace is gone with the build


async def test_a_workspace_under_the_limit_is_left_alone(tmp_path):
    (tmp_path / "src").mkdir()
    backend = LocalBackend(grace=1.0, root=tmp_path, workspace_limit=8 * MIB)
    plan = Plan("p", stages=(Stage("s", "jobs", jobs=(Job("ok", BUSYBOX, (
        Step("fill", FILL.replace("sleep 60", "sleep 3")),)),)),))
    assert await run_plan(plan, BuildRef(id="u" + uuid.uuid4().hex[:10], source=tmp_path / "src"),
                          backend, Recorder()) == "success"


def test_the_limit_is_settable_per_runner_and_said_in_the_users_units(tmp_path):
    assert Settings().workspace_limit == 10 * 1024**3 and format_size(10 * 1024**3) == "10 GiB"
    assert format_size(1536 * 1024) == "1.5 MiB" and format_size(512) == "512 bytes"
    assert Settings.from_env({"CONVEYOR_WORKSPACE_LIMIT": "2G"}).workspace_limit == 2 * 1024**3
    assert parse_size("512MiB", "x") == 512 * MIB
    with pytest.raises(ValueError, match="CONVEYOR_WORKSPACE_LIMIT must be a size like 10G"):
        Settings.from_env({"CONVEYOR_WORKSPACE_LIMIT": "9" * 5000})
    config = tmp_path / "conveyor.yml"
    config.write_text("workspace_limit: 20G\n")
    assert load_config(config, environ={"HOME": str(tmp_path)}).settings.workspace_limit == 20 * 1024**3
    config.write_text("workspace_limit: lots\n")
    with pytest.raises(ServerConfigError, match="workspace_limit must be a size like 10G"):
        load_config(config, environ={"HOME": str(tmp_path)})


@pytest.mark.docker
async def test_a_job_container_that_ended_meanwhile_is_skipped_not_warned_about(docker_client, instance, caplog):
    # Jobs end while the guard measures: a container gone or no longer running is passed over for
    # the next attached one, and the measure neither fails nor says "could not measure".
    from runner.backends.disk_guard import docker_guard
    from runner.engine.engine import Engine
    from runner.engine.targets import Target

    labels = {"io.conveyor.instance": instance}
    ended = docker_client.containers.create(BUSYBOX, ["true"], labels=labels)  # never started
    running = docker_client.containers.run(BUSYBOX, ["sleep", "30"], detach=True, labels=labels)
    engine = Engine(Target("default"))
    try:
        guard = docker_guard(engine, limit=1024**3)
        guard.attached = {"no-such-container": "/", ended.id: "/", running.id: "/etc"}
        used = await guard._measure()
        assert used is not None and 0 < used < 10 * MIB  # /etc of the running one
        assert "could not measure" not in caplog.text
    finally:
        engine.close()
        ended.remove(force=True)
        running.remove(force=True)
