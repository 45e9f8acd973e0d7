"""The backend contract (runner/backends/base.py), checked against every backend.

The fake backend runs nothing, so each command below comes with its scripted twin: the real
backends run the shell text, the fake one plays the script. The assertions are the same.
"""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest

from runner.backends.base import BuildRef, StepExit
from runner.backends.docker import DockerBackend
from runner.backends.fake import FakeBackend, FakeStep
from runner.backends.local import LocalBackend
from runner.deploy.workspace import read_text
from runner.errors import BackendError
from runner.plan import Job, Step
from runner.settings import Settings
from tests.conftest import BUSYBOX

ORDER = "printf 'one\\ntwo\\n'; echo three >&2; printf 'four'; exit 3"
ENV = 'echo "$GREETING $WHO"; cat marker.txt'
WRITE = "echo shared-by-jobs > shared.txt"
READ = "cat shared.txt"
LONG = "echo $$ > long.pid; echo started; sleep 31; echo never"
CHECK = "if kill -0 $(cat long.pid) 2>/dev/null; then echo alive; else echo gone; fi"
SLEEP = "sleep 1"


def _fake_script(backend: FakeBackend) -> dict[str, FakeStep]:
    def write(run):
        run.workspace["shared.txt"] = "shared-by-jobs\n"
        return []

    return {
        ORDER: FakeStep(output=[b"one\ntw", b"o\nthree\n", b"four"], exit=3),
        ENV: FakeStep(output=lambda run: [f"{run.env['GREETING']} {run.env['WHO']}\n".encode(),
                                          run.workspace["marker.txt"].encode()]),
        WRITE: FakeStep(output=write),
        READ: FakeStep(output=lambda run: [run.workspace["shared.txt"].encode()]),
        LONG: FakeStep(output=[b"started\n", b"never\n"], chunk_delay=30),
        CHECK: FakeStep(output=lambda run: [b"gone\n" if "long" in backend.stopped_steps else b"alive\n"]),
        SLEEP: FakeStep(delay=1),
    }


@pytest.fixture(params=["fake", "local", "docker"])
def backend(request, instance):
    if request.param == "fake":
        fake = FakeBackend()
        fake.script = _fake_script(fake)
        yield fake
    elif request.param == "local":
        yield LocalBackend(grace=1.0)
    else:
        request.getfixturevalue("docker_client")
        docker = DockerBackend(Settings(instance=instance), grace=1.0)
        yield docker
        asyncio.run(docker.sweep(keep=[]))  # nothing of this test's instance may survive it
        docker.close()


@pytest.fixture
def build(tmp_path, instance):
    source = tmp_path / "checkout"
    source.mkdir()
    (source / "marker.txt").write_text("from the checkout\n")
    return BuildRef(id="c" + uuid.uuid4().hex[:10], source=source, instance=instance)


def job(name="job", *runs):
    return Job(name, BUSYBOX, tuple(Step(f"s{i}", run) for i, run in enumerate(runs)))


async def run_step(backend, handle, run, env=None, name="step"):
    out, exits = b"", []
    async for item in backend.exec_step(handle, Step(name, run), env or {}):
        if isinstance(item, StepExit):
            exits.append(item)
        else:
            assert not exits, "output after the StepExit"
            out += item
    assert len(exits) == 1, "exactly one StepExit ends a step"
    return out, exits[0]


async def test_the_workspace_holds_the_checkout_from_setup_on(backend, build, request):
    """A stage action reads the workspace through ``workspace(build)``, before any job has started
    (a pipeline whose first stage is a build stage), and sees what steps wrote after they ran."""
    with pytest.raises(BackendError, match="before setup"):
        backend.workspace(build)
    await backend.setup(build)
    try:
        where = backend.workspace(build)
        assert (where.volume is None) != (where.path is None), where
        client = request.getfixturevalue("docker_client") if where.volume else None

        def read(name: str) -> str:
            return read_text(client, where.path, where.volume, name)

        assert await asyncio.to_thread(read, "marker.txt") == "from the checkout\n"
        handle = await backend.start_job(build, job())
        assert (await run_step(backend, handle, WRITE))[1].code == 0
        await backend.stop_job(handle)
        if backend.name != "fake":  # the fake's steps write only into its simulated workspace
            assert await asyncio.to_thread(read, "shared.txt") == "shared-by-jobs\n"
    finally:
        await backend.teardown(build)


async def test_output_in_order_then_exit_code(backend, build):
    await backend.available()
    await backend.setup(build)
    try:
        handle = await backend.start_job(build, job())
        out, exit = await run_step(backend, handle, ORDER)
        assert out.decode().split("\n") == ["one", "two", "three", "four"]
        assert exit.code == 3 and not exit.oom_killed
        out, exit = await run_step(backend, handle, "true" if backend.name != "fake" else "unscripted")
        assert (out, exit.code) == (b"", 0)
        await backend.stop_job(handle)
    finally:
        await backend.teardown(build)


async def test_env_and_workspace_as_working_directory(backend, build):
    await backend.setup(build)
    try:
        handle = await backend.start_job(build, job())
        out, exit = await run_step(backend, handle, ENV, {"GREETING": "hello", "WHO": "conveyor"})
        assert out.decode() == "hello conveyor\nfrom the checkout\n" and exit.code == 0
        if backend.name == "docker":
            out, _ = await run_step(backend, handle, "pwd")
            assert out.decode().strip() == "/workspace"
        await backend.stop_job(handle)
    finally:
        await backend.teardown(build)


async def test_jobs_share_the_workspace(backend, build):
    await backend.setup(build)
    try:
        first = await backend.start_job(build, job("first"))
        assert (await run_step(backend, first, WRITE))[1].code == 0
        await backend.stop_job(first)
        second = await backend.start_job(build, job("second"))
        out, exit = await run_step(backend, second, READ)
        assert (out, exit.code) == (b"shared-by-jobs\n", 0)
        await backend.stop_job(second)
    finally:
        await backend.teardown(build)


async def test_stop_and_teardown_are_idempotent_and_safe_after_failed_start(backend, build):
    with pytest.raises(BackendError):
        await backend.start_job(build, job())  # no setup yet: refused with a reason
    await backend.teardown(build)  # nothing was made: still fine
    await backend.setup(build)
    handle = await backend.start_job(build, job())
    await backend.stop_job(handle)
    await backend.stop_job(handle)
    await backend.teardown(build)
    await backend.teardown(build)


async def test_closing_a_step_early_stops_its_processes(backend, build):
    await backend.setup(build)
    try:
        handle = await backend.start_job(build, job())
        steps = backend.exec_step(handle, Step("long", LONG), {})
        first = await steps.__anext__()
        assert first.startswith(b"started")
        began = time.monotonic()
        await steps.aclose()
        assert time.monotonic() - began < 4.0, "aclose must return promptly"
        out, _ = await run_step(backend, handle, CHECK)
        assert out == b"gone\n"
        await backend.stop_job(handle)
    finally:
        await backend.teardown(build)


async def test_jobs_run_concurrently(backend, build):
    await backend.setup(build)
    try:
        handles = await asyncio.gather(*(backend.start_job(build, job(f"j{i}")) for i in range(3)))
        began = time.monotonic()
        results = await asyncio.gather(*(run_step(backend, h, SLEEP) for h in handles))
        elapsed = time.monotonic() - began
        assert [exit.code for _, exit in results] == [0, 0, 0]
        assert elapsed < 2.0, f"three 1 s steps in parallel took {elapsed:.2f}s"
        await asyncio.gather(*(backend.stop_job(h) for h in handles))
    finally:
        await backend.teardown(build)
