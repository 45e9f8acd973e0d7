"""The approval stage over a real store: approved, rejected, timed out, answered where the build runs,
decided twice, and, on the real engine, no container of the build exists while it waits."""

from __future__ import annotations

import asyncio
import os
import time

import pytest

from runner.approval import NOT_IN_TIME, Answer, ApprovalAction
from runner.backends.base import BuildRef
from runner.backends.fake import FakeBackend
from runner.build import BuildRequest, create_build
from runner.errors import NotWaiting
from runner.executor.run import run_plan
from runner.plan import ApprovalSpec, Job, Plan, Stage, Step, When
from runner.store import approvals
from runner.store import builds as q
from runner.store.db import Store
from runner.store.recovery import recover_interrupted, this_host
from runner.store.sink import StoreSink


def jobs_stage(name, *runs, image="img", **kw):
    steps = tuple(Step(r, r) for r in runs)
    return Stage(name, "jobs", jobs=(Job(name, image, steps),), **kw)


def gate(timeout=None, approvers=()):
    return Stage("approve", "approval", approval=ApprovalSpec("Ship it?", tuple(approvers), timeout))


PLAN = Plan("p", stages=(
    jobs_stage("test", "make test"),
    gate(),
    jobs_stage("ship", "make ship"),
    jobs_stage("rollback", "undo", when=When(("failure",))),
))


@pytest.fixture
def store(tmp_path):
    with Store(tmp_path / "data") as s:
        yield s


def running_build(store, trigger="cli") -> int:
    build_id = create_build(store, BuildRequest(repo="r", event="push", trigger=trigger), "i")
    store.write(lambda c: q.mark_running(c, build_id, pid=os.getpid(), host=this_host(), started=time.time()))
    return build_id


async def start(store, build_id, plan=PLAN, backend=None, ask=None, tmp_path=None):
    """Run ``plan`` as a stored build in the background; return (task, backend)."""
    backend = backend or FakeBackend()
    build = q.get_build(store.read(), build_id)
    ref = BuildRef(id=build.uid, source=tmp_path, instance=build.instance)
    sink = StoreSink(store, build_id, plan)

    async def go():
        status = await run_plan(plan, ref, backend, sink, actions={"approval": ApprovalAction(store, build_id, ask,
                                                                                              poll=0.05)})
        sink.flush()
        await store.awrite(lambda c: q.finish_build(c, build_id, status))
        return status

    return asyncio.create_task(go()), backend


async def until_status(store, build_id, status, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (await store.aread(lambda c: q.get_build(c, build_id))).status == status:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"build never became {status}")


def stage_rows(store, build_id):
    detail = q.get_detail(store.read(), build_id)
    return {s.name: (s.status, s.reason) for s in detail.stages}, detail


async def test_approved_build_waits_then_goes_on(store, tmp_path):
    build_id = running_build(store)
    task, backend = await start(store, build_id, tmp_path=tmp_path)
    await until_status(store, build_id, "waiting")
    ran = [c[2] for c in backend.calls if c[0] == "exec_step"]
    assert ran == ["make test"]  # nothing after the gate yet
    started = [c[1] for c in backend.calls if c[0] == "start_job"]
    assert started == [c[1] for c in backend.calls if c[0] == "stop_job"] == ["test"]  # stopped before the wait
    decided = store.write(lambda c: approvals.decide(c, build_id, "approved", "alice", "looks good", time.time()))
    assert decided.decided_by == "alice" and decided.comment == "looks good"
    assert await asyncio.wait_for(task, 10) == "success"
    stages, detail = stage_rows(store, build_id)
    assert stages == {"test": ("success", None), "approve": ("success", None), "ship": ("success", None),
                      "rollback": ("skipped", "runs only when an earlier stage failed")}
    (row,) = detail.approvals
    assert (row.stage, row.message, row.decision, row.decided_by, row.comment) == (
        "approve", "Ship it?", "approved", "alice", "looks good")
    assert row.requested <= row.decided_at
    assert detail.build.status == "success"
    # Too late: the build no longer waits, so a second answer is refused and changes nothing.
    with pytest.raises(NotWaiting, match="success, not waiting"):
        store.write(lambda c: approvals.decide(c, build_id, "rejected", "bob", None, time.time()))
    assert q.get_detail(store.read(), build_id).approvals[0].decided_by == "alice"


async def test_rejected_build_fails_and_runs_its_failure_stages(store, tmp_path):
    build_id = running_build(store)
    task, backend = await start(store, build_id, tmp_path=tmp_path)
    await until_status(store, build_id, "waiting")
    store.write(lambda c: approvals.decide(c, build_id, "rejected", "bob", "not on a Friday", time.time()))
    assert await asyncio.wait_for(task, 10) == "failure"
    stages, detail = stage_rows(store, build_id)
    assert stages["approve"] == ("failure", "rejected by bob: not on a Friday")
    assert stages["ship"][0] == "skipped" and stages["rollback"] == ("success", None)
    assert [c[2] for c in backend.calls if c[0] == "exec_step"] == ["make test", "undo"]
    log = "".join(chunk.text for chunk in q.build_logs(store.read(), build_id, stage="approve"))
    assert "waiting for approval: Ship it?" in log and "rejected by bob: not on a Friday" in log


async def test_timeout_fails_the_stage(store, tmp_path):
    plan = Plan("p", stages=(gate(timeout=0.3), jobs_stage("ship", "make ship")))
    build_id = running_build(store)
    began = time.monotonic()
    task, backend = await start(store, build_id, plan, tmp_path=tmp_path)
    await until_status(store, build_id, "waiting")
    assert await asyncio.wait_for(task, 10) == "failure"
    assert 0.3 <= time.monotonic() - began < 3
    stages, detail = stage_rows(store, build_id)
    assert stages == {"approve": ("failure", NOT_IN_TIME), "ship": ("skipped", "an earlier stage failed")}
    assert (detail.approvals[0].decision, detail.approvals[0].decided_by) == ("timed_out", "conveyor")
    with pytest.raises(NotWaiting):  # an approval after the timeout is refused
        store.write(lambda c: approvals.decide(c, build_id, "approved", "alice", None, time.time()))


async def test_an_answer_where_the_build_runs(store, tmp_path):
    async def approve_here(stage, approval):
        assert approval.message == "Ship it?" and approval.pending
        return Answer("approved", "carol (--approve)")

    build_id = running_build(store)
    task, _ = await start(store, build_id, ask=approve_here, tmp_path=tmp_path)
    assert await asyncio.wait_for(task, 10) == "success"
    assert q.get_detail(store.read(), build_id).approvals[0].decided_by == "carol (--approve)"

    async def cannot_ask(stage, approval):
        return Answer("not_asked", "conveyor run", "pass --approve approve")

    build_id = running_build(store)
    task, _ = await start(store, build_id, ask=cannot_ask, tmp_path=tmp_path)
    assert await asyncio.wait_for(task, 10) == "failure"
    assert stage_rows(store, build_id)[0]["approve"] == ("failure", "pass --approve approve")


async def test_a_person_can_answer_before_a_slow_terminal(store, tmp_path):
    asked = asyncio.Event()

    async def never_answers(stage, approval):
        asked.set()
        await asyncio.sleep(3600)

    build_id = running_build(store)
    task, _ = await start(store, build_id, ask=never_answers, tmp_path=tmp_path)
    await asyncio.wait_for(asked.wait(), 5)
    store.write(lambda c: approvals.decide(c, build_id, "approved", "dave", None, time.time()))
    assert await asyncio.wait_for(task, 10) == "success"


async def test_cancelled_while_waiting_refuses_later_decisions(store, tmp_path):
    build_id = running_build(store)
    task, _ = await start(store, build_id, tmp_path=tmp_path)
    await until_status(store, build_id, "waiting")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await store.awrite(lambda c: q.finish_build(c, build_id, "cancelled", "cancelled"))
    with pytest.raises(NotWaiting, match="cancelled"):
        store.write(lambda c: approvals.decide(c, build_id, "approved", "alice", None, time.time()))


def test_recovery_leaves_a_server_build_waiting_and_interrupts_a_dead_cli_one(store, tmp_path):
    import subprocess

    dead = subprocess.Popen(["true"])
    dead.wait()

    def waiting(trigger):
        build_id = running_build(store, trigger)
        store.write(lambda c: c.execute("UPDATE builds SET pid = ? WHERE id = ?", (dead.pid, build_id)))
        store.write(lambda c: approvals.ask(c, build_id, "approve", "ok?", (), time.time(), None))
        return build_id

    server, cli = waiting("webhook"), waiting("cli")
    marked = recover_interrupted(store, sweeper=lambda uid: None)
    assert [b.id for b in marked] == [cli]
    assert q.get_build(store.read(), server).status == "waiting"
    assert q.get_build(store.read(), cli).status == "interrupted"


@pytest.mark.docker
async def test_no_container_of_the_build_exists_while_it_waits(store, tmp_path, docker_client, instance):
    from runner.backends.docker import DockerBackend
    from runner.settings import Settings

    backend = DockerBackend(Settings(data_dir=tmp_path / "data", instance=instance))
    plan = Plan("p", stages=(jobs_stage("test", "echo hi > out.txt", image="conveyor-test/busybox:1"), gate(),
                             jobs_stage("ship", "cat out.txt", image="conveyor-test/busybox:1")))
    build_id = create_build(store, BuildRequest(repo="r", event="push"), instance)
    store.write(lambda c: q.mark_running(c, build_id, pid=1, host="h", started=time.time()))
    (tmp_path / "src").mkdir()
    task, _ = await start(store, build_id, plan, backend=backend, tmp_path=tmp_path / "src")
    await until_status(store, build_id, "waiting", timeout=60)
    uid = q.get_build(store.read(), build_id).uid
    label = f"io.conveyor.build={uid}"
    assert docker_client.containers.list(all=True, filters={"label": label}) == []
    store.write(lambda c: approvals.decide(c, build_id, "approved", "alice", None, time.time()))
    assert await asyncio.wait_for(task, 60) == "success"
    # The workspace outlived the wait: the job after the gate read what the one before wrote.
    log = "".join(chunk.text for chunk in q.build_logs(store.read(), build_id, stage="ship"))
    assert log == "hi"
    assert docker_client.containers.list(all=True, filters={"label": label}) == []
    assert docker_client.volumes.list(filters={"label": label}) == []
