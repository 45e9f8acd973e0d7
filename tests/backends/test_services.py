"""Services (sidecars) on the Docker backend, against the real engine: reachable by name from their
job only, the job's safety defaults and labels, ready probes (tcp, cmd), a service that is never
ready, one that dies mid-job, and removal with the job on every path (success, failure, cancel,
timeout, crash sweep). Resources of this test's own ``instance`` only."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest

from runner.backends.base import BuildRef, StepExit
from runner.backends.docker import SHELL_CAPS, DockerBackend
from runner.backends.services import LABEL_SERVICE
from runner.backends.services_blocking import _blocking_accepts, _blocking_probe, _blocking_state, _listening
from runner.errors import ServiceError
from runner.executor import events as ev
from runner.executor.run import run_plan
from runner.plan import Job, Plan, Ready, Service, Stage, Step
from runner.settings import Settings
from tests.conftest import BUSYBOX

pytestmark = pytest.mark.docker

# A busybox web server answering `body` on port 8080 of host "db".
def web(body: str, **ready) -> Service:
    return Service("db", BUSYBOX, command=f"mkdir -p /www && echo {body} > /www/index.html && exec httpd -f -p 8080 -h /www",
                   ready=Ready(tcp=8080, **ready))


class JobSnapshots:
    """An event sink that, when a job finishes (after its stop_job, before the build's teardown),
    notes which containers and networks of that job still exist."""

    def __init__(self, client, build_id: str) -> None:
        self.client, self.build_id, self.events, self.left = client, build_id, [], {}

    def emit(self, event) -> None:
        self.events.append(event)
        if isinstance(event, ev.JobFinished):
            label = {"label": [f"io.conveyor.build={self.build_id}", f"io.conveyor.job={event.job}"]}
            self.left[event.job] = ([c.name for c in self.client.containers.list(all=True, filters=label)]
                                    + [n.name for n in self.client.networks.list(filters=label)])

    def of(self, kind):
        return [e for e in self.events if isinstance(e, kind)]


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
    return BuildRef(id="v" + uuid.uuid4().hex[:10], source=tmp_path / "src", instance=instance,
                    labels={"io.conveyor.repo": "demo"})


def of_build(client, build_id, *extra):
    label = {"label": [f"io.conveyor.build={build_id}", *extra]}
    return (client.containers.list(all=True, filters=label), client.networks.list(filters=label),
            client.volumes.list(filters=label))


async def output_of(backend, handle, run):
    out, exits = b"", []
    async for item in backend.exec_step(handle, Step("s", run), {}):
        if isinstance(item, StepExit):
            exits.append(item)
        else:
            out += item
    return out.decode(), exits[0]


async def test_each_job_reaches_its_own_service_by_name_with_the_job_defaults(backend, build, docker_client, settings):
    await backend.available()
    await backend.setup(build)
    try:
        # Two concurrent jobs of one build (a matrix) each have a "db": each must reach its own.
        one, two = await asyncio.gather(backend.start_job(build, Job("unit [db=one]", BUSYBOX, (), services=(web("one"),))),
                                        backend.start_job(build, Job("unit [db=two]", BUSYBOX, (), services=(web("two"),))))
        for handle, body in ((one, "one"), (two, "two")):
            out, done = await output_of(backend, handle, "wget -q -O- http://db:8080/")
            assert (out, done.code) == (f"{body}\n", 0)
        service = docker_client.containers.get(one.data.services.ids["db"]).attrs
        host = service["HostConfig"]
        assert host["Privileged"] is False and host["CapDrop"] == ["ALL"] and sorted(host["CapAdd"]) == sorted(SHELL_CAPS)
        assert host["SecurityOpt"] == ["no-new-privileges"]
        assert host["PidsLimit"] == 256 and host["Memory"] == 96 * 1024**2 and host["NanoCpus"] == 10**9
        assert service["Mounts"] == [] and not host.get("Binds")  # no workspace, no socket, no host volume
        labels = service["Config"]["Labels"]
        job_labels = docker_client.containers.get(one.data.id).attrs["Config"]["Labels"]
        # The job's labels, with the sweep mark naming the service's own container (runner/engine/labels.py).
        assert labels == {**job_labels, LABEL_SERVICE: "db", "io.conveyor.job-resource": service["Name"].lstrip("/")}
        assert labels["io.conveyor.build"] == build.id and labels["io.conveyor.repo"] == "demo"
        networks = service["NetworkSettings"]["Networks"]
        assert list(networks) == [one.data.services.network] and "db" in networks[one.data.services.network]["Aliases"]
        job_networks = docker_client.containers.get(one.data.id).attrs["NetworkSettings"]["Networks"]
        assert list(job_networks) == [one.data.services.network]  # the job's own network, not the build's
        # stop_job removes the job's services and their network, before any teardown.
        await backend.stop_job(one)
        containers, nets, _ = of_build(docker_client, build.id, "io.conveyor.job=unit [db=one]")
        assert containers == [] and nets == []
        two = {"label": [f"io.conveyor.build={build.id}", "io.conveyor.job=unit [db=two]"]}
        assert len(docker_client.containers.list(filters=two)) == 2  # the other job and its service run on
        await backend.stop_job(one)  # idempotent
    finally:
        await backend.teardown(build)
    assert of_build(docker_client, build.id) == ([], [], [])


async def test_a_cmd_probe_waits_until_it_exits_0(backend, build):
    service = Service("cache", BUSYBOX, command="sleep 1; mkdir /w; echo cached > /w/index.html; touch /tmp/up; exec httpd -f -p 8081 -h /w",
                      env={"MODE": "test"}, ready=Ready(cmd='test -f /tmp/up && test "$MODE" = test', within=20))
    await backend.setup(build)
    try:
        began = time.monotonic()
        handle = await backend.start_job(build, Job("j", BUSYBOX, (), services=(service,)))
        assert time.monotonic() - began >= 1.0
        out, done = await output_of(backend, handle, "wget -q -O- http://cache:8081/")
        assert (out, done.code) == ("cached\n", 0)
    finally:
        await backend.teardown(build)


async def test_a_service_never_ready_fails_the_job_before_its_first_step_with_its_log(backend, build, docker_client):
    never = Service("db", BUSYBOX, command="echo starting up; echo 'FATAL: bad config' >&2; exec sleep 300",
                    ready=Ready(tcp=5432, within=1.5))
    plan = Plan("p", stages=(Stage("test", "jobs", jobs=(Job("unit", BUSYBOX, (Step("t", "echo ran"),),
                                                             services=(never,)),)),))
    sink = JobSnapshots(docker_client, build.id)
    began = time.monotonic()
    assert await run_plan(plan, build, backend, sink) == "failure"
    assert time.monotonic() - began < 1.5 + 8
    (job,) = sink.of(ev.JobFinished)
    assert job.status == "failure"
    assert "service 'db' was not ready within 1.5s (nothing listens on tcp port 5432 of its network address)" in job.reason
    assert [(s.step, s.name) for s in sink.of(ev.StepStarted)] == [(0, "services")]  # the step "t" never ran
    lines = [line for out in sink.of(ev.StepOutput) for line in out.lines]
    assert "starting up" in lines and "FATAL: bad config" in lines and "ran" not in lines
    assert sink.left == {"unit": []}
    assert of_build(docker_client, build.id) == ([], [], [])


async def test_a_service_that_exits_before_ready_fails_at_once(backend, build):
    crashed = Service("db", BUSYBOX, command="echo no disk; exit 4", ready=Ready(tcp=5432, within=30))
    await backend.setup(build)
    try:
        began = time.monotonic()
        with pytest.raises(ServiceError) as err:
            await backend.start_job(build, Job("j", BUSYBOX, (), services=(crashed,)))
        assert time.monotonic() - began < 10  # not the 30 s of `within`
        assert "service 'db' exited with code 4 before it was ready" in str(err.value)
        assert "no disk" in err.value.log
    finally:
        await backend.teardown(build)


async def test_a_service_that_dies_mid_job_fails_the_running_step_and_is_reported(backend, build, docker_client):
    dying = Service("db", BUSYBOX, command="sleep 2; echo 'db: out of disk, exiting'; exit 3")
    plan = Plan("p", stages=(Stage("test", "jobs", jobs=(Job("unit", BUSYBOX, (
        Step("long", "echo testing; sleep 60"), Step("after", "echo after")), services=(dying,)),)),))
    sink = JobSnapshots(docker_client, build.id)
    began = time.monotonic()
    assert await run_plan(plan, build, backend, sink) == "failure"
    assert time.monotonic() - began < 2 + backend.grace + 10  # the step was stopped, not left to its 60 s
    (step,) = sink.of(ev.StepFinished)
    assert step.status == "failure" and step.reason == "service 'db' exited with code 3 while the job ran"
    lines = [line for out in sink.of(ev.StepOutput) for line in out.lines]
    assert "db: out of disk, exiting" in lines and "after" not in lines
    assert "service 'db' exited with code 3" in sink.of(ev.JobFinished)[0].reason
    assert sink.left == {"unit": []}


@pytest.mark.parametrize("way", ["cancel", "job timeout", "timeout while waiting for ready"])
async def test_cancel_and_timeout_remove_the_services_with_the_job(backend, build, docker_client, way):
    service = web("x") if way != "timeout while waiting for ready" else Service(
        "db", BUSYBOX, command="exec sleep 300", ready=Ready(tcp=5432, within=60))
    job = Job("unit", BUSYBOX, (Step("long", "echo up; sleep 120"),), services=(service,),
              timeout=None if way == "cancel" else 4.0)
    plan = Plan("p", stages=(Stage("test", "jobs", jobs=(job,)),))
    sink, cancel = JobSnapshots(docker_client, build.id), asyncio.Event()
    task = asyncio.ensure_future(run_plan(plan, build, backend, sink, cancel=cancel))
    if way == "cancel":
        while not sink.of(ev.StepOutput):
            await asyncio.sleep(0.05)
        running = {"label": [f"io.conveyor.build={build.id}", "io.conveyor.job=unit"]}
        assert len(docker_client.containers.list(filters=running)) == 2  # the job's and its service's
        cancel.set()
    began = time.monotonic()
    status = await asyncio.wait_for(task, 30)
    assert status == ("cancelled" if way == "cancel" else "timed_out")
    assert time.monotonic() - began < 15
    assert sink.left == {"unit": []}
    assert of_build(docker_client, build.id) == ([], [], [])


async def test_the_crash_sweep_removes_services_by_label(build, docker_client, settings):
    crashed = DockerBackend(settings, grace=1.0)  # a runner that dies without stop_job or teardown
    await crashed.setup(build)
    await crashed.start_job(build, Job("unit", BUSYBOX, (), services=(web("x"),)))
    made = sorted(c.name.rsplit("-", 1)[-1] for c in of_build(docker_client, build.id)[0])
    # The job's and the service's containers, and the leases of the build's and the job's pooled
    # networks (which carry no build label themselves); the workspace volume.
    assert made == ["1", "db", "lease", "lease"] and len(of_build(docker_client, build.id)[2]) == 1
    crashed.close()
    restarted = DockerBackend(settings)
    try:
        assert await restarted.sweep_build(build.id) == 5  # those 4 containers, 1 volume
    finally:
        restarted.close()
    assert of_build(docker_client, build.id) == ([], [], [])


async def test_both_tcp_probes_see_only_what_the_job_can_reach(backend, build):
    """The runner's own connect (a local engine) and the probe inside the service (elsewhere) agree:
    a server bound to the service's loopback only is not ready."""
    both = Service("db", BUSYBOX, command="mkdir /w; httpd -p 8080 -h /w; exec httpd -f -p 127.0.0.1:8081 -h /w",
                   ready=Ready(tcp=8080))
    await backend.setup(build)
    try:
        handle = await backend.start_job(build, Job("j", BUSYBOX, (), services=(both,)))
        engine, sidecars = backend.engine, handle.data.services
        cid = sidecars.ids["db"]
        address = (await engine.call(_blocking_state, engine, cid, sidecars.network))["Address"]
        assert await engine.call(_blocking_accepts, address, 8080) is True
        assert await engine.call(_blocking_accepts, address, 8081) is False
        assert (await engine.call(_blocking_probe, engine, cid, 8080, None))[0] is True
        assert (await engine.call(_blocking_probe, engine, cid, 8081, None))[0] is False
    finally:
        await backend.teardown(build)


def test_tcp_readiness_reads_listening_sockets_of_both_families():
    tcp = ("  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
           "   0: 00000000:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1\n"
           "   1: 0100007F:1538 0100007F:9C40 01 00000000:00000000 00:00000000 00000000     0        0 2\n")
    tcp6 = "   0: 00000000000000000000000000000000:1538 00000000000000000000000000000000:0000 0A 0 0 0 0 0 3\n"
    loopback = ("   2: 0100007F:1539 00000000:0000 0A 0 0 0 0 0 4\n"
                "   1: 00000000000000000000000001000000:153A 00000000000000000000000000000000:0000 0A 0 0 0 0 0 5\n")
    assert _listening(tcp, 8080)
    assert not _listening(tcp, 5432)  # 5432 only has an established connection over IPv4
    assert _listening(tcp + tcp6, 5432)
    assert not _listening(loopback, 5433) and not _listening(loopback, 5434)  # out of the job's reach
