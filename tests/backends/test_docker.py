"""What only the Docker backend promises: safe container defaults, image errors, OOM, timeouts that
kill, cancellation that leaves nothing behind, sweeps by label. Real engine; resources of this test's
own ``instance`` only."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest

from runner.backends.base import BuildRef, StepExit
from runner.backends.docker import SHELL_CAPS, DockerBackend
from runner.errors import ImageNotFound
from runner.executor import events as ev
from runner.executor.run import run_plan
from runner.plan import Job, Plan, Stage, Step
from runner.settings import Settings
from tests.conftest import BUSYBOX, PYTHON

pytestmark = pytest.mark.docker


class Recorder:
    def __init__(self):
        self.events = []

    def emit(self, event):
        self.events.append(event)


@pytest.fixture
def settings(instance):
    return Settings(instance=instance, job_memory=96 * 1024**2, job_pids=256, job_cpus=1.0)


@pytest.fixture
def backend(docker_client, settings):
    backend = DockerBackend(settings, grace=1.0)
    yield backend
    asyncio.run(backend.sweep(keep=[]))
    backend.close()


@pytest.fixture
def build(tmp_path, instance):
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "README").write_text("hello\n")
    return BuildRef(id="d" + uuid.uuid4().hex[:10], source=tmp_path / "src", instance=instance,
                    labels={"io.conveyor.repo": "demo"})


def of_build(client, build_id):
    label = {"label": f"io.conveyor.build={build_id}"}
    return (client.containers.list(all=True, filters=label), client.networks.list(filters=label),
            client.volumes.list(filters=label))


async def test_containers_get_safe_defaults_and_labels(backend, build, docker_client, settings):
    await backend.available()
    await backend.setup(build)
    try:
        handle = await backend.start_job(build, Job("unit tests", BUSYBOX, ()))
        attrs = docker_client.containers.get(handle.data.id).attrs
        host = attrs["HostConfig"]
        assert host["Privileged"] is False
        assert host["CapDrop"] == ["ALL"] and sorted(host["CapAdd"]) == sorted(SHELL_CAPS)
        assert host["SecurityOpt"] == ["no-new-privileges"]
        assert host["PidsLimit"] == 256 and host["Memory"] == 96 * 1024**2 and host["NanoCpus"] == 10**9
        network = docker_client.networks.get(host["NetworkMode"])  # leased from the pool, for this build only
        assert network.attrs["Labels"].get("io.conveyor.pool") and list(network.attrs["Containers"]) == [handle.data.id]
        assert not any("docker.sock" in m.get("Source", "") for m in attrs["Mounts"])
        assert [m["Name"] for m in attrs["Mounts"]] == [f"conveyor-{build.id}-ws"]
        labels = attrs["Config"]["Labels"]
        assert labels["io.conveyor.build"] == build.id and labels["io.conveyor.instance"] == build.instance
        assert float(labels["io.conveyor.expires"]) > time.time() and labels["io.conveyor.repo"] == "demo"
        assert attrs["Name"].startswith(f"/conveyor-{build.id}-unit-tests")
        # A dropped capability is really gone: root may not change the clock or mount.
        out = b""
        async for item in backend.exec_step(handle, Step("probe", "mount -t tmpfs x /mnt && echo mounted"), {}):
            out += item if isinstance(item, bytes) else b""
        assert b"mounted" not in out
    finally:
        await backend.teardown(build)
    assert of_build(docker_client, build.id) == ([], [], [])


async def test_missing_image_names_it_and_says_what_to_do(backend, build):
    await backend.setup(build)
    try:
        image = "127.0.0.1:1/conveyor-missing/nothing:1"  # a pull fails at once: nothing listens there
        with pytest.raises(ImageNotFound) as err:
            await backend.start_job(build, Job("a", image, ()))
        assert image in str(err.value) and "conveyor images bootstrap" in str(err.value)
    finally:
        await backend.teardown(build)


async def test_out_of_memory_is_reported(backend, build, docker_client):
    docker_client.images.get(PYTHON)
    await backend.setup(build)
    try:
        handle = await backend.start_job(build, Job("hog", PYTHON, ()))
        exits = [i async for i in backend.exec_step(handle, Step("hog", "python3 -c 'b = bytearray(400 * 2**20)'"), {})
                 if isinstance(i, StepExit)]
        assert exits[0].code == 137 and exits[0].oom_killed and exits[0].reason == "out of memory"
        # A step whose child was killed for memory fails for that reason, whatever its own exit (make's 2).
        exits = [i async for i in backend.exec_step(
            handle, Step("make", "python3 -c 'b = bytearray(400 * 2**20)' || exit 2"), {}) if isinstance(i, StepExit)]
        assert exits[0].code == 2 and exits[0].oom_killed and exits[0].reason == "out of memory"
        # A later step killed by a plain SIGKILL is not blamed on memory.
        exits = [i async for i in backend.exec_step(handle, Step("k", "kill -9 $$"), {}) if isinstance(i, StepExit)]
        assert exits[0].code == 137 and not exits[0].oom_killed
    finally:
        await backend.teardown(build)


async def test_a_step_leaving_its_output_non_blocking_costs_later_steps_nothing(backend, build):
    # Node leaves stdout O_NONBLOCK. Shared with later steps, that open file would make the next step
    # that outpaces the engine's reading lose output to EAGAIN, and then its end: the job would hang.
    await backend.setup(build)
    try:
        handle = await backend.start_job(build, Job("node-like", PYTHON, ()))
        got = []
        for run in ("python3 -c 'import os; os.set_blocking(1, False)'",
                    "head -c 4000000 /dev/zero | tr '\\0' x", "echo after"):
            out, exits = b"", []
            async for item in backend.exec_step(handle, Step("s", run), {}):
                if isinstance(item, StepExit):
                    exits.append(item)
                else:
                    out += item
            got.append((len(out), out.strip(b"x"), exits[0].code))
        assert got == [(0, b"", 0), (4000000, b"", 0), (6, b"after\n", 0)]
    finally:
        await backend.teardown(build)


async def test_step_timeout_kills_a_step_that_ignores_sigterm(backend, build, docker_client):
    plan = Plan("p", stages=(Stage("s", "jobs", jobs=(Job("a", BUSYBOX, (
        Step("stubborn", "trap '' TERM; echo waiting; sleep 60 & wait; sleep 60", timeout=1.0),)),)),))
    sink = Recorder()
    began = time.monotonic()
    status = await run_plan(plan, build, backend, sink)
    elapsed = time.monotonic() - began
    assert status == "timed_out"
    finished = [e for e in sink.events if isinstance(e, ev.StepFinished)]
    assert finished[0].status == "timed_out" and finished[0].reason == "timed out after 1s"
    assert elapsed < 1.0 + backend.grace + 3.0, f"took {elapsed:.1f}s"
    assert of_build(docker_client, build.id) == ([], [], [])


async def test_cancel_removes_every_resource_of_the_build_within_10s(backend, build, docker_client):
    plan = Plan("p", stages=(Stage("s", "jobs", jobs=tuple(
        Job(f"j{i}", BUSYBOX, (Step("long", "echo up; sleep 120"),)) for i in range(2))),))
    sink, cancel = Recorder(), asyncio.Event()
    task = asyncio.ensure_future(run_plan(plan, build, backend, sink, cancel=cancel, concurrency=2))
    while sum(isinstance(e, ev.StepOutput) for e in sink.events) < 2:
        await asyncio.sleep(0.05)
    assert len(docker_client.containers.list(filters={"label": f"io.conveyor.build={build.id}"})) == 2  # running
    began = time.monotonic()
    cancel.set()
    assert await task == "cancelled"
    assert time.monotonic() - began < 10
    assert of_build(docker_client, build.id) == ([], [], [])
    assert sink.events[-1].status == "cancelled"


async def test_sweep_removes_leftovers_by_label(docker_client, settings, build, tmp_path, instance):
    crashed = DockerBackend(settings)  # a runner that dies without teardown
    await crashed.setup(build)
    await crashed.start_job(build, Job("a", BUSYBOX, ()))
    other = BuildRef(id="o" + uuid.uuid4().hex[:10], source=build.source, instance="x" + instance)
    await crashed.setup(other)  # another instance's build: no sweep of ours may touch it
    await crashed.workspace_ready(other)  # its fill's container is gone (the fill runs beside setup)
    try:
        # The job's container and its network's lease (the network is pooled: no build label), the volume.
        assert [len(x) for x in of_build(docker_client, build.id)] == [2, 0, 1]
        fresh = DockerBackend(settings)
        assert await fresh.sweep() == 0  # not expired, and nobody said it is dead
        assert await fresh.sweep(keep=[build.id]) == 0  # alive elsewhere
        assert await fresh.sweep(keep=[]) == 3
        assert of_build(docker_client, build.id) == ([], [], [])
        assert [len(x) for x in of_build(docker_client, other.id)] == [1, 0, 1]
        assert await fresh.sweep_build(other.id) == 2
        assert of_build(docker_client, other.id) == ([], [], [])
        fresh.close()
    finally:
        await crashed.teardown(other)
        await crashed.teardown(build)
        crashed.close()


async def test_a_vanished_container_fails_the_step_with_a_reason(backend, build, docker_client):
    plan = Plan("p", stages=(Stage("s", "jobs", jobs=(Job("a", BUSYBOX, (
        Step("first", "echo ready; sleep 0.3"), Step("second", "echo never"))),)),))
    sink = Recorder()
    task = asyncio.ensure_future(run_plan(plan, build, backend, sink))
    while not any(isinstance(e, ev.StepOutput) for e in sink.events):
        await asyncio.sleep(0.02)
    docker_client.containers.list(filters={"label": f"io.conveyor.build={build.id}"})[0].remove(force=True)
    assert await task == "failure"
    failed = [e for e in sink.events if isinstance(e, ev.StepFinished) and e.status == "failure"]
    assert failed and ("container" in failed[0].reason or failed[0].exit_code == 137), failed
    assert of_build(docker_client, build.id) == ([], [], [])


async def test_a_step_silent_for_longer_than_the_engine_timeout_still_finishes(build, settings):
    """A step's output has no time limit (a compile may print nothing for minutes), only the engine's
    short calls have one: with that limit at 1.5 s, a step silent for 3 s must end as it ends."""
    from runner.engine import Engine, Target

    backend = DockerBackend(settings, grace=1.0, engine=Engine(Target.default(settings), timeout=1.5))
    await backend.setup(build)
    try:
        handle = await backend.start_job(build, Job("quiet", BUSYBOX, ()))
        items = [i async for i in backend.exec_step(handle, Step("quiet", "sleep 3; echo done"), {})]
    finally:
        await backend.teardown(build)
        backend.close()
    assert b"".join(i for i in items if isinstance(i, bytes)) == b"done\n"
    assert items[-1] == StepExit(0)


async def steps_of(backend, handle, *runs: str, env: dict[str, str] | None = None) -> list[tuple[bytes, int]]:
    found = []
    for run in runs:
        items = [i async for i in backend.exec_step(handle, Step("s", run), env or {})]
        found.append((b"".join(i for i in items if isinstance(i, bytes)), items[-1].code))
    return found


async def test_steps_share_the_container_but_nothing_of_each_other(backend, build):
    """Each step gets its env exactly (quotes, newlines, $ and backslashes untouched) and starts as
    a fresh shell: what one step sets, changes or reads does not reach the next."""
    value = "it's \"quoted\"\n$HOME `id` \\ ünïcode"
    await backend.setup(build)
    try:
        handle = await backend.start_job(build, Job("a", BUSYBOX, ()))
        assert await steps_of(backend, handle, "printf '%s' \"$V\"; export LEAK=1; cd /; cat", env={"V": value}) \
            == [(value.encode(), 0)]
        assert await steps_of(backend, handle, 'echo "${LEAK:-none} ${V:-unset} $(pwd)"') \
            == [(b"none unset /workspace\n", 0)]
    finally:
        await backend.teardown(build)


async def test_a_process_a_step_leaves_running_does_not_hold_it_open(backend, build, docker_client):
    """A step ends when its script does (as on GitLab or GitHub Actions), not when the last process
    holding its output does; the next steps run beside what it left, and the teardown ends it."""
    await backend.setup(build)
    try:
        handle = await backend.start_job(build, Job("a", BUSYBOX, ()))
        began = time.monotonic()
        assert await steps_of(backend, handle, "sleep 30 & echo left") == [(b"left\n", 0)]
        assert time.monotonic() - began < 5
        assert await steps_of(backend, handle, "echo next; exit 3") == [(b"next\n", 3)]
    finally:
        await backend.teardown(build)
    assert of_build(docker_client, build.id) == ([], [], [])


async def test_orphans_of_a_step_are_reaped(backend, build):
    await backend.setup(build)
    try:
        handle = await backend.start_job(build, Job("a", BUSYBOX, ()))
        script = "sh -c 'sleep 0.1 &'; sleep 0.5; cat /proc/[0-9]*/stat | awk '{print $3}' | sort | uniq -c"
        out = b""
        async for item in backend.exec_step(handle, Step("orphans", script), {}):
            out += item if isinstance(item, bytes) else b""
        assert b" Z" not in out and b"S" in out, out
    finally:
        await backend.teardown(build)


async def test_cancel_while_containers_are_being_created_leaves_nothing(backend, docker_client, tmp_path, instance):
    plan = Plan("p", stages=(Stage("s", "jobs", jobs=tuple(
        Job(f"j{i}", BUSYBOX, (Step("long", "sleep 60"),)) for i in range(2))),))
    for delay in (0.05, 0.2, 0.4):
        build = BuildRef(id="k" + uuid.uuid4().hex[:10], source=tmp_path, instance=instance)
        cancel = asyncio.Event()
        asyncio.get_running_loop().call_later(delay, cancel.set)
        assert await run_plan(plan, build, backend, Recorder(), cancel=cancel, concurrency=2) == "cancelled"
        assert of_build(docker_client, build.id) == ([], [], []), f"leftovers after a cancel at {delay}s"


async def test_an_engine_that_does_not_answer_is_reported_with_what_to_do(tmp_path):
    from runner.errors import BackendUnavailable

    backend = DockerBackend(Settings(docker_host=f"unix://{tmp_path}/no-engine.sock"))
    with pytest.raises(BackendUnavailable) as err:
        await backend.available()
    assert "no-engine.sock" in str(err.value) and "start dockerd" in str(err.value)
    backend.close()


async def test_the_periodic_sweep_outlives_an_engine_that_does_not_answer(instance, tmp_path):
    # docker-py raises its own errors (not BackendError) when the engine is away; the server's
    # sweep task must keep trying, or leftovers of crashed builds are never removed.
    from runner.engine import Engine, Target

    engine = Engine(Target("default", f"unix://{tmp_path}/no-engine.sock", from_env=True))
    backend = DockerBackend(Settings(instance=instance), engine=engine)
    tries = []
    sweeps = asyncio.create_task(backend.sweep_periodically(interval=0.05, keep=lambda: tries.append(1) or []))
    try:
        await asyncio.sleep(0.5)
        assert not sweeps.done(), sweeps.exception()
        assert len(tries) >= 3
    finally:
        sweeps.cancel()
        backend.close()


async def test_sweeps_never_touch_what_only_looks_like_a_job_resource(docker_client, settings, build, instance):
    """A container of an image that carries Conveyor's labels (a Swarm task of an image a build stage
    made) inherits them: it names another resource, or it is a Swarm task, so no sweep removes it."""
    import docker

    from runner.engine.labels import LABEL_JOB_RESOURCE, labels_for

    base = labels_for(build.id, instance, -1)  # expired already: the instance sweep wants it gone
    inherited = docker_client.containers.create(BUSYBOX, ["true"], name=f"{instance}-task-a",
                                                labels={**base, LABEL_JOB_RESOURCE: f"conveyor-{build.id}-ws"})
    task = docker_client.containers.create(BUSYBOX, ["true"], name=f"{instance}-task-b",
                                           labels={**base, LABEL_JOB_RESOURCE: f"{instance}-task-b",
                                                   "com.docker.swarm.task.id": "abc"})
    job = docker_client.containers.create(BUSYBOX, ["true"], name=f"{instance}-job",
                                          labels={**base, LABEL_JOB_RESOURCE: f"{instance}-job"})
    backend = DockerBackend(settings)
    try:
        assert await backend.sweep_build(build.id) == 1
        assert await backend.sweep(keep=[]) == 0
        left = docker_client.containers.list(all=True, filters={"label": f"io.conveyor.build={build.id}"})
        assert {c.name for c in left} == {inherited.name, task.name}
        with pytest.raises(docker.errors.NotFound):
            job.reload()
    finally:
        backend.close()
        for c in (inherited, task):
            c.remove(force=True)


async def test_a_build_that_may_wait_long_keeps_its_workspace_past_the_runners_ttl(build, docker_client, instance):
    import dataclasses

    short = Settings(instance=instance, resource_ttl=1.0)  # resources "expire" after a second
    mine, another_run = DockerBackend(short), DockerBackend(short)
    waiting = dataclasses.replace(build, lifetime=3600.0)  # it may wait an hour for an approval
    await mine.setup(waiting)
    try:
        await asyncio.sleep(1.5)
        await another_run.sweep()  # what a `conveyor run` of the same instance does at its start
        docker_client.volumes.get(f"conveyor-{build.id}-ws")  # the waiting build's workspace is still there
        leases = [c.name for c in of_build(docker_client, build.id)[0] if c.name.endswith("-lease")]
        assert len(leases) == 1  # its network is still leased to it, and there
        assert docker_client.networks.get(leases[0].removesuffix("-lease")).attrs["Labels"]["io.conveyor.pool"]
    finally:
        await mine.teardown(waiting)


async def test_every_job_sees_the_whole_checkout_at_its_first_step(backend, build, docker_client, monkeypatch):
    # The fill runs beside the jobs' container starts; here it is made the slower of the two (it
    # starts late), and a big file must still be whole at every job's first step.
    import hashlib
    import os

    from runner.backends import docker as docker_backend

    fill = docker_backend.fill_volume

    def late_fill(*args):
        time.sleep(1.5)
        fill(*args)

    monkeypatch.setattr(docker_backend, "fill_volume", late_fill)
    blob = os.urandom(8 * 1024 * 1024)
    (build.source / "blob.bin").write_bytes(blob)
    (build.source / "sums").write_text(f"{hashlib.sha256(blob).hexdigest()}  blob.bin\n")
    plan = Plan("p", stages=(Stage("s", "jobs", jobs=tuple(
        Job(f"j{i}", BUSYBOX, (Step("check", "sha256sum -c sums && cat README"),)) for i in range(3))),))
    sink = Recorder()
    assert await run_plan(plan, build, backend, sink, concurrency=3) == "success"
    output = b"".join(line.encode() for e in sink.events if isinstance(e, ev.StepOutput) for line in e.lines)
    assert output.count(b"blob.bin: OK") == 3 and output.count(b"hello") == 3
    assert of_build(docker_client, build.id) == ([], [], [])


async def test_a_workspace_that_cannot_be_filled_fails_its_jobs_and_leaves_nothing(backend, build, docker_client):
    gone = BuildRef(id=build.id, source=build.source.parent / "no-such-checkout", instance=build.instance)
    plan = Plan("p", stages=(Stage("s", "jobs", jobs=tuple(
        Job(f"j{i}", BUSYBOX, (Step("never", "echo ran"),)) for i in range(2))),))
    sink = Recorder()
    assert await run_plan(plan, gone, backend, sink, concurrency=2) == "failure"
    assert not any(isinstance(e, ev.StepOutput) and any("ran" in line for line in e.lines) for e in sink.events)
    finished = [e for e in sink.events if isinstance(e, ev.JobFinished)]
    assert len(finished) == 2 and all(e.status == "failure" and "no-such-checkout" in (e.reason or "")
                                      for e in finished)
    assert of_build(docker_client, build.id) == ([], [], [])
