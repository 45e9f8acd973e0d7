"""run_build, the path shared by `conveyor run` and the server, with the scripted fake backend."""

from __future__ import annotations

import asyncio

import pytest

from runner import plugins
from runner.backends.fake import FakeBackend, FakeStep
from runner.build import BuildRequest, create_build, run_build
from runner.executor.actions import ActionResult
from runner.executor.events import JobStarted, StepOutput
from runner.hookspecs import hookimpl
from runner.settings import Settings
from runner.store import builds as q
from runner.store.db import Store

PIPELINE = """\
image: conveyor-test/busybox:1
stages:
  - name: test
    steps: ["make test"]
  - name: ship
    deploy: {service: web, image: "web:1"}
"""


@pytest.fixture
def env(tmp_path):
    source = tmp_path / "src"
    source.mkdir()
    (source / ".conveyor.yml").write_text(PIPELINE)
    settings = Settings(data_dir=tmp_path / "data", instance="t-build")
    with Store(settings.data_dir) as store:
        yield store, settings, source


async def _create(store, **kw) -> int:
    request = BuildRequest(repo="app", event="push", branch="main", sha="a" * 40, **kw)
    return await asyncio.to_thread(create_build, store, request, "t-build")


class Recorder:
    def __init__(self) -> None:
        self.events, self.started, self.finished = [], [], []

    @hookimpl
    def conveyor_event_sinks(self, build):
        return [self, BrokenSink()]

    @hookimpl
    def conveyor_build_started(self, build):
        self.started.append(build.status)

    @hookimpl
    def conveyor_build_finished(self, build, status):
        self.finished.append((build.status, status, build.finished is not None))

    def emit(self, event) -> None:
        self.events.append(event)


class BrokenSink:
    def emit(self, event) -> None:
        raise RuntimeError("a broken viewer")


async def test_plugins_see_the_build_and_deploys_can_be_refused(env):
    store, settings, source = env
    recorder = Recorder()
    plugins.plugin_manager().register(recorder)
    try:
        build_id = await _create(store)
        backend = FakeBackend(script={"make test": FakeStep(output=[b"ok 1\nok", b" 2\n"])})
        status = await run_build(store, settings, build_id, source, backend=backend, allow_deploy=False)
    finally:
        plugins.plugin_manager().unregister(recorder)
    assert status == "failure"
    assert recorder.started == ["queued"] and recorder.finished == [("failure", "failure", True)]
    lines = [line for e in recorder.events if isinstance(e, StepOutput) for line in e.lines]
    assert lines[:2] == ["ok 1", "ok 2"]
    assert any(isinstance(e, JobStarted) and e.stage == "test" for e in recorder.events)
    detail = await store.aread(lambda c: q.get_detail(c, build_id))
    ship = next(s for s in detail.stages if s.name == "ship")
    assert ship.status == "failure" and "deploy refused" in ship.reason
    assert detail.build.plan and detail.build.rendered == PIPELINE


async def test_a_cancelled_task_still_finishes_the_row(env):
    store, settings, source = env
    build_id = await _create(store)
    backend = FakeBackend(script={"make test": FakeStep(output=[b"working\n"], delay=30)})
    task = asyncio.create_task(run_build(store, settings, build_id, source, backend=backend))
    for _ in range(200):
        await asyncio.sleep(0.01)
        if backend.running:
            break
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    build = await store.aread(lambda c: q.get_build(c, build_id))
    assert build.status == "cancelled" and build.finished is not None
    assert ("teardown", build.uid) in backend.calls


async def test_the_cancel_event_gives_cancelled(env):
    store, settings, source = env
    build_id = await _create(store)
    cancel = asyncio.Event()
    backend = FakeBackend(script={"make test": FakeStep(delay=30)})
    task = asyncio.create_task(run_build(store, settings, build_id, source, backend=backend, cancel=cancel))
    await asyncio.sleep(0.2)
    cancel.set()
    assert await asyncio.wait_for(task, 10) == "cancelled"
    detail = await store.aread(lambda c: q.get_detail(c, build_id))
    assert detail.build.status == "cancelled"
    assert [s.status for s in detail.stages] == ["cancelled", "skipped"]


async def test_a_value_with_a_newline_is_a_config_error_before_anything_runs(env):
    store, settings, source = env
    build_id = await _create(store, params={"target": "x\nstages: []"})
    backend = FakeBackend()
    assert await run_build(store, settings, build_id, source, backend=backend) == "config_error"
    build = await store.aread(lambda c: q.get_build(c, build_id))
    assert "control character" in build.reason and backend.calls == []


async def test_a_build_cancelled_before_it_starts_never_runs(env):
    # The server's queue checks out a build before run_build claims it; a newer push may supersede
    # (cancel) it meanwhile. It must stay cancelled, not run (and maybe deploy) after all.
    store, settings, source = env
    build_id = await _create(store)
    await store.awrite(lambda c: q.finish_build(c, build_id, "cancelled", "superseded by app#2"))
    backend = FakeBackend(script={"make test": FakeStep(output=[b"ran\n"])})
    assert await run_build(store, settings, build_id, source, backend=backend) == "cancelled"
    build = await store.aread(lambda c: q.get_build(c, build_id))
    assert (build.status, build.reason, build.started) == ("cancelled", "superseded by app#2", None)
    assert backend.calls == []


class SlowStart:
    def __init__(self) -> None:
        import threading

        self.entered, self.release = threading.Event(), threading.Event()

    @hookimpl
    def conveyor_build_started(self, build):
        self.entered.set()
        self.release.wait(10)


async def test_a_cancel_while_a_plugin_sees_the_start_still_finishes_the_row(env):
    store, settings, source = env
    slow = SlowStart()
    plugins.plugin_manager().register(slow)
    try:
        build_id = await _create(store)
        task = asyncio.create_task(run_build(store, settings, build_id, source, backend=FakeBackend()))
        assert await asyncio.to_thread(slow.entered.wait, 10)
        task.cancel()
        slow.release.set()
        with pytest.raises(asyncio.CancelledError):
            await task
    finally:
        slow.release.set()
        plugins.plugin_manager().unregister(slow)
    build = await store.aread(lambda c: q.get_build(c, build_id))
    assert build.status == "cancelled" and build.finished is not None


IMAGE_PIPELINE = """\
image: conveyor-test/busybox:1
stages:
  - name: image
    build: {tag: "conveyor-test/busybox:1"}
"""


class ImageBuilder:
    """Stands in for the engine's image build, so this test never tags a real image."""

    def __init__(self) -> None:
        self.built = []

    @hookimpl
    def conveyor_stage_actions(self):
        async def build(stage, ctx):
            self.built.append(stage.name)
            return ActionResult("success")

        return {"build": build}


async def test_a_build_that_may_not_deploy_may_not_build_images_either(env):
    # A fork's pull request must not tag images on the runner's engine: it could replace the image
    # that trusted builds (with secrets) and deploys run next.
    store, settings, source = env
    (source / ".conveyor.yml").write_text(IMAGE_PIPELINE)
    builder = ImageBuilder()
    plugins.plugin_manager().register(builder)
    try:
        build_id = await _create(store)
        status = await run_build(store, settings, build_id, source, backend=FakeBackend(), allow_deploy=False)
    finally:
        plugins.plugin_manager().unregister(builder)
    detail = await store.aread(lambda c: q.get_detail(c, build_id))
    image = next(s for s in detail.stages if s.name == "image")
    assert builder.built == []
    assert status == "failure" and image.status == "failure" and "build refused" in image.reason


def test_a_builds_resources_live_as_long_as_the_build_may_run_or_wait():
    # The sweep of expired resources must not take those of a build that is still allowed to run:
    # one with a 12-hour limit outlives the 6-hour default, one waiting for approvals longer still.
    from runner.build_inputs import lifetime
    from runner.plan import ApprovalSpec, Plan, Stage

    settings = Settings(resource_ttl=6 * 3600.0)
    assert lifetime(Plan("p", stages=()), settings) is None  # the default applies
    assert lifetime(Plan("p", stages=(), timeout=12 * 3600.0), settings) == 12 * 3600.0
    gate = Stage("ok?", "approval", approval=ApprovalSpec(timeout=3600.0))
    assert lifetime(Plan("p", stages=(gate,)), settings) == 7 * 3600.0
    assert lifetime(Plan("p", stages=(gate,), timeout=600.0), settings) == 4200.0
