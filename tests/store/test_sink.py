"""StoreSink: events of a hand-made plan become stage/job/step rows and batched log chunks."""

from __future__ import annotations

import asyncio
import time

import pytest

from runner.build import BuildRequest, create_build
from runner.executor import events as ev
from runner.plan import Job, Plan, Post, Stage, Step
from runner.store import builds as q
from runner.store.db import Store
from runner.store.sink import StoreSink

IMAGE = "conveyor-test/busybox:1"


def _plan() -> Plan:
    unit = Job("unit", IMAGE, (Step("test", "make test", retry=1),))
    lint = Job("lint", IMAGE, (Step("lint", "sh lint.sh"), Step("count", "wc -l")))
    ship = Job("ship", IMAGE, (Step("ship", "true"),))
    bye = Job("bye", IMAGE, (Step("bye", "echo bye"),))
    return Plan("p", (Stage("test", "jobs", jobs=(unit, lint)), Stage("ship", "jobs", jobs=(ship,))),
                post=Post(always=(bye,)))


@pytest.fixture
def store(tmp_path):
    with Store(tmp_path / "data") as s:
        yield s


async def test_events_become_rows_and_output_is_batched_in_order(store):
    build_id = await asyncio.to_thread(create_build, store, BuildRequest(repo="r", event="push"), "i")
    sink = StoreSink(store, build_id, _plan(), batch_lines=100, interval=0.05)
    t = time.time()
    sink.emit(ev.BuildStarted(t))
    sink.emit(ev.StageStarted(t, "test"))
    sink.emit(ev.JobStarted(t, "test", "unit"))
    sink.emit(ev.JobStarted(t, "test", "lint"))
    sink.emit(ev.StepStarted(t, "test", "unit", 0, "test", attempt=1))
    sink.emit(ev.StepStarted(t, "test", "lint", 0, "lint"))
    for i in range(250):  # interleaved jobs, more lines than one batch
        sink.emit(ev.StepOutput(t, "test", "unit", 0, (f"unit {i}",)))
        sink.emit(ev.StepOutput(t, "test", "lint", 0, (f"lint {i}a", f"lint {i}b")))
    sink.emit(ev.StepFinished(t + 1, "test", "unit", 0, "failure", exit_code=2, attempt=1))
    sink.emit(ev.StepStarted(t + 1, "test", "unit", 0, "test", attempt=2))
    sink.emit(ev.StepOutput(t + 1, "test", "unit", 0, ("second try",)))
    await asyncio.sleep(0.2)  # the timer flushes a half-full batch on its own
    chunks = await store.aread(lambda c: list(q.build_logs(c, build_id, job="unit")))
    assert chunks[-1].text == "second try" and chunks[-1].attempt == 2 and chunks[-1].first_line == 251
    sink.emit(ev.StepFinished(t + 2, "test", "unit", 0, "success", exit_code=0, attempt=2))
    sink.emit(ev.StepFinished(t + 2, "test", "lint", 0, "success", exit_code=0))
    sink.emit(ev.JobFinished(t + 2, "test", "unit", "success"))
    sink.emit(ev.JobFinished(t + 2, "test", "lint", "success"))
    sink.emit(ev.StageFinished(t + 2, "test", "success"))
    sink.emit(ev.StageFinished(t + 2, "ship", "skipped", reason="branch filter"))
    sink.emit(ev.BuildFinished(t + 3, "success"))
    await store.awrite(lambda c: None)
    assert sink.errors == []

    detail = await store.aread(lambda c: q.get_detail(c, build_id))
    assert [(s.name, s.status) for s in detail.stages] == [
        ("test", "success"), ("ship", "skipped"), ("post:always", "queued")]
    assert detail.stages[1].reason == "branch filter"
    unit = detail.jobs_of("test")[0]
    assert [(s.attempt, s.status, s.exit_code) for s in unit.steps] == [(1, "failure", 2), (2, "success", 0)]
    assert unit.steps[0].duration == pytest.approx(1.0)
    assert [j.status for j in detail.jobs_of("ship")] == ["queued"]

    lint = await store.aread(lambda c: list(q.build_logs(c, build_id, job="lint")))
    lines = "\n".join(c.text for c in lint).split("\n")
    assert lines == [f"lint {i}{x}" for i in range(250) for x in "ab"]
    assert all(c.lines == len(c.text.split("\n")) for c in lint)
    unit_lines = "\n".join(c.text for c in chunks).split("\n")
    assert unit_lines == [f"unit {i}" for i in range(250)] + ["second try"]
    # Batched: far fewer chunks than output events.
    every = await store.aread(lambda c: list(q.build_logs(c, build_id)))
    assert len(every) < 60

    # Finishing the build closes what is left: the queued post stage and ship job become skipped.
    await store.awrite(lambda c: q.finish_build(c, build_id, "success"))
    detail = await store.aread(lambda c: q.get_detail(c, build_id))
    assert detail.stages[2].status == "skipped" and detail.build.status == "success"


async def test_cancel_closes_running_rows_as_cancelled(store):
    build_id = await asyncio.to_thread(create_build, store, BuildRequest(repo="r", event="push"), "i")
    sink = StoreSink(store, build_id, _plan())
    t = time.time()
    for event in (ev.BuildStarted(t), ev.StageStarted(t, "test"), ev.JobStarted(t, "test", "unit"),
                  ev.StepStarted(t, "test", "unit", 0, "test")):
        sink.emit(event)
    sink.flush()
    await store.awrite(lambda c: q.finish_build(c, build_id, "cancelled", "Ctrl-C"))
    detail = await store.aread(lambda c: q.get_detail(c, build_id))
    unit = detail.jobs_of("test")[0]
    assert unit.status == "cancelled" and unit.steps[0].status == "cancelled"
    assert detail.stages[0].status == "cancelled" and detail.build.reason == "Ctrl-C"


def test_a_closed_store_does_not_break_the_build(tmp_path):
    store = Store(tmp_path / "d")
    build_id = create_build(store, BuildRequest(repo="r", event="push"), "i")
    store.close()
    sink = StoreSink(store, build_id, _plan())
    sink.emit(ev.StageStarted(time.time(), "test"))  # must not raise
    assert sink.errors and "closed" in str(sink.errors[0])
