"""run_plan on the scripted fake backend: exact events, fast."""

from __future__ import annotations

import asyncio
import time

import pytest

from runner.backends.base import BuildRef
from runner.backends.fake import FakeBackend, FakeStep
from runner.errors import BackendUnavailable, ImageNotFound
from runner.executor import events as ev
from runner.executor.actions import ActionResult
from runner.executor.logs import MASK
from runner.executor.run import run_plan
from runner.plan import Job, Plan, Post, Stage, Step, When


class Recorder:
    def __init__(self):
        self.events: list[ev.Event] = []

    def emit(self, event):
        self.events.append(event)

    def of(self, kind, **match):
        return [e for e in self.events if isinstance(e, kind) and all(getattr(e, k) == v for k, v in match.items())]

    def status(self, kind, **match):
        return [e.status for e in self.of(kind, **match)]

    def lines(self, **match):
        return [line for e in self.of(ev.StepOutput, **match) for line in e.lines]


def job(name, *runs, **kw):
    return Job(name, "img", tuple(Step(r, r) if isinstance(r, str) else r for r in runs), **kw)


def stage(name, *jobs, **kw):
    return Stage(name, "jobs", jobs=jobs, **kw)


@pytest.fixture
def build(tmp_path):
    return BuildRef(id="b1", source=tmp_path)


async def run(plan, build, backend, **kw):
    sink = Recorder()
    status = await run_plan(plan, build, backend, sink, **kw)
    assert isinstance(sink.events[0], ev.BuildStarted) and isinstance(sink.events[-1], ev.BuildFinished)
    assert sink.events[-1].status == status
    return status, sink


async def test_stages_in_order_and_a_failure_skips_the_rest(build):
    backend = FakeBackend(script={"boom": FakeStep(output=[b"bad\n"], exit=2)})
    plan = Plan("p", stages=(
        stage("one", job("a", "ok1", "ok2")),
        stage("two", job("b", "boom", "after")),
        stage("three", job("c", "never")),
        stage("cleanup", job("d", "always-runs"), when=When(("always",))),
        stage("rescue", job("e", "on-failure"), when=When(("failure",))),
        stage("filtered", job("f", "x"), skip_reason="branch 'dev' is not in [main]"),
    ))
    status, sink = await run(plan, build, backend)
    assert status == "failure"
    assert [(e.stage, e.status) for e in sink.of(ev.StageFinished)] == [
        ("one", "success"), ("two", "failure"), ("three", "skipped"), ("cleanup", "success"),
        ("rescue", "success"), ("filtered", "skipped")]
    assert sink.of(ev.StageFinished, stage="filtered")[0].reason == "branch 'dev' is not in [main]"
    ran = [c[2] for c in backend.calls if c[0] == "exec_step"]
    assert ran == ["ok1", "ok2", "boom", "always-runs", "on-failure"]  # "after" never ran: the job stopped
    assert sink.of(ev.StepFinished, job="b")[0].exit_code == 2
    assert "exit code 2" in sink.events[-1].reason and "'two'" in sink.events[-1].reason
    assert backend.calls[-1] == ("teardown", "b1")
    assert sorted(c[1] for c in backend.calls if c[0] == "stop_job") == ["a", "b", "d", "e"]


async def test_failure_only_stage_is_skipped_on_success(build):
    plan = Plan("p", stages=(stage("one", job("a", "ok")), stage("rescue", job("r", "x"), when=When(("failure",)))))
    status, sink = await run(plan, build, FakeBackend())
    assert status == "success"
    assert sink.status(ev.StageFinished, stage="rescue") == ["skipped"]


async def test_retry_reruns_a_failed_step_with_a_new_attempt(build):
    backend = FakeBackend(script={"flaky": FakeStep(exit=[1, 1, 0])})
    plan = Plan("p", stages=(stage("s", job("a", Step("flaky", "flaky", retry=2))),))
    status, sink = await run(plan, build, backend)
    assert status == "success"
    assert [(e.attempt, e.status) for e in sink.of(ev.StepFinished)] == [(1, "failure"), (2, "failure"), (3, "success")]
    assert [e.attempt for e in sink.of(ev.StepStarted)] == [1, 2, 3]


async def test_retry_gives_up_and_never_retries_a_timeout(build):
    backend = FakeBackend(script={"bad": FakeStep(exit=1), "slow": FakeStep(delay=5)})
    plan = Plan("p", stages=(stage("s", job("a", Step("bad", "bad", retry=1)), job("b", Step("slow", "slow", timeout=0.2, retry=3))),))
    status, sink = await run(plan, build, backend)
    assert sink.status(ev.StepFinished, job="a") == ["failure", "failure"]
    assert sink.status(ev.StepFinished, job="b") == ["timed_out"]
    assert sink.of(ev.StepFinished, job="b")[0].reason == "timed out after 0.2s"
    assert "slow" in backend.stopped_steps
    assert status == "timed_out" and sink.status(ev.JobFinished, job="b") == ["timed_out"]


async def test_job_timeout_and_build_timeout(build):
    backend = FakeBackend(script={"slow": FakeStep(delay=5)})
    plan = Plan("p", stages=(stage("s", job("a", "quick", "slow", timeout=0.3)),))
    began = time.monotonic()
    status, sink = await run(plan, build, backend)
    assert status == "timed_out" and time.monotonic() - began < 2
    assert sink.of(ev.StepFinished, job="a")[-1].reason == "job timed out after 0.3s"

    plan = Plan("p", stages=(stage("s", job("a", "slow")), stage("t", job("b", "x"))), timeout=0.3,
                post=Post(always=(job("p", "post"),)))
    status, sink = await run(plan, build, backend)
    assert status == "timed_out" and sink.events[-1].reason == "build timed out after 0.3s"
    assert sink.status(ev.StepFinished) == ["timed_out"] and sink.status(ev.StageFinished) == ["timed_out"]
    assert not sink.of(ev.StageStarted, stage="t") and not sink.of(ev.StageStarted, stage="post:always")
    assert backend.calls[-1][0] == "teardown"


async def test_post_blocks(build):
    backend = FakeBackend(script={"boom": FakeStep(exit=1)})
    post = Post(always=(job("pa", "always"),), success=(job("ps", "on-success"),), failure=(job("pf", "on-failure"),))
    status, sink = await run(Plan("p", stages=(stage("s", job("a", "ok")),), post=post), build, backend)
    assert status == "success"
    assert [e.stage for e in sink.of(ev.StageStarted)] == ["s", "post:always", "post:success"]
    status, sink = await run(Plan("p", stages=(stage("s", job("a", "boom")),), post=post), build, backend)
    assert status == "failure"
    assert [e.stage for e in sink.of(ev.StageStarted)] == ["s", "post:always", "post:failure"]
    # A failing post job fails an otherwise green build.
    status, sink = await run(Plan("p", stages=(stage("s", job("a", "ok")),), post=Post(always=(job("pa", "boom"),))),
                             build, backend)
    assert status == "failure" and sink.events[-1].reason.startswith("post:always")


async def test_cancel_event_stops_steps_and_tears_down(build):
    backend = FakeBackend(script={"forever": FakeStep(delay=60)})
    cancel = asyncio.Event()
    plan = Plan("p", stages=(stage("s", job("a", "forever"), job("b", "forever")), stage("t", job("c", "x"))),
                post=Post(always=(job("p", "post"),)))
    asyncio.get_running_loop().call_later(0.2, cancel.set)
    began = time.monotonic()
    status, sink = await run(plan, build, backend, cancel=cancel)
    assert status == "cancelled" and time.monotonic() - began < 2
    assert sink.status(ev.StepFinished) == ["cancelled", "cancelled"]
    assert sink.status(ev.JobFinished) == ["cancelled", "cancelled"]
    assert sink.status(ev.StageFinished) == ["cancelled"]
    assert sorted(backend.stopped_steps) == ["forever", "forever"]
    assert [c[0] for c in backend.calls[-3:]] == ["stop_job", "stop_job", "teardown"]


async def test_cancelling_the_task_cleans_up_then_reraises(build):
    backend = FakeBackend(script={"forever": FakeStep(delay=60)})
    sink = Recorder()
    task = asyncio.ensure_future(run_plan(Plan("p", stages=(stage("s", job("a", "forever")),)), build, backend, sink))
    await asyncio.sleep(0.1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert sink.events[-1].status == "cancelled"
    assert backend.calls[-1][0] == "teardown" and ("stop_job", "a") in backend.calls


async def test_secrets_are_env_and_masked_even_split_across_chunks(build):
    backend = FakeBackend(script={"leak": FakeStep(output=lambda run: [
        b"token=" + run.env["TOKEN"][:5].encode(), run.env["TOKEN"][5:].encode() + b" end\nagain s3cr",
        b"et-value-42\n"])})
    status, sink = await run(Plan("p", stages=(stage("s", job("a", "leak")),)), build, backend,
                             secrets={"TOKEN": "s3cret-value-42"})
    assert status == "success"
    assert sink.lines() == [f"token={MASK} end", f"again {MASK}"]


async def test_log_cap_adds_a_marker_and_keeps_the_status(build):
    backend = FakeBackend(script={"noisy": FakeStep(output=[b"x" * 99 + b"\n"] * 50)})
    status, sink = await run(Plan("p", stages=(stage("s", job("a", "noisy")),)), build, backend, log_cap=1000)
    assert status == "success" and sink.status(ev.StepFinished) == ["success"]
    lines = sink.lines()
    assert lines[:10] == ["x" * 99] * 10 and len(lines) == 11
    assert "capped" in lines[-1] and "4000 bytes" in lines[-1]


async def test_concurrency_limit_caps_jobs_at_once(build):
    backend = FakeBackend(script={"work": FakeStep(delay=0.1)})
    plan = Plan("p", stages=(stage("s", *(job(f"j{i}", "work") for i in range(6))),))
    status, _ = await run(plan, build, backend, concurrency=2)
    assert status == "success" and backend.peak_running == 2
    backend = FakeBackend(script={"work": FakeStep(delay=0.1)})
    began = time.monotonic()
    await run(plan, build, backend, concurrency=6)
    assert backend.peak_running == 6 and time.monotonic() - began < 0.5


async def test_setup_and_start_failures_are_reported(build):
    status, sink = await run(Plan("p", stages=(stage("s", job("a", "x")),)), build,
                             FakeBackend(fail_available=BackendUnavailable("no engine: start dockerd")))
    assert status == "failure" and sink.events[-1].reason == "no engine: start dockerd"
    assert len(sink.events) == 2
    backend = FakeBackend(fail_start={"a": ImageNotFound("image 'nope:1' is missing: run conveyor images bootstrap")})
    status, sink = await run(Plan("p", stages=(stage("s", job("a", "x"), job("b", "y")),)), build, backend)
    assert status == "failure"
    assert sink.of(ev.JobFinished, job="a")[0].reason.startswith("image 'nope:1'")
    assert sink.status(ev.JobFinished, job="b") == ["success"]
    assert backend.calls[-1][0] == "teardown"


async def test_action_stages(build):
    seen = {}

    async def deploy(stage, ctx):
        seen["status"], seen["number"] = ctx.status, ctx.number
        ctx.log("rolling out with hunter2")
        return ActionResult("success")

    async def broken(stage, ctx):
        raise RuntimeError("kaput: login hunter2 refused")

    plan = Plan("p", stages=(Stage("ship", "deploy"), Stage("img", "build"), Stage("back", "rollback")))
    status, sink = await run(plan, build, FakeBackend(), actions={"deploy": deploy, "build": broken},
                             secrets={"PW": "hunter2"}, action_context={"number": 7})
    assert seen == {"status": "success", "number": 7}
    assert sink.lines(stage="ship") == [f"rolling out with {MASK}"]
    assert [(e.stage, e.job, e.status) for e in sink.of(ev.JobFinished)] == [
        ("ship", "deploy", "success"), ("img", "build", "failure")]
    assert sink.of(ev.StageFinished, stage="img")[0].reason.endswith(f"kaput: login {MASK} refused")
    assert "hunter2" not in repr(sink.events)
    assert sink.status(ev.StageFinished, stage="back") == ["skipped"]
    status, sink = await run(Plan("p", stages=(Stage("back", "rollback"),)), build, FakeBackend())
    assert sink.of(ev.StageFinished)[0].reason == "this runner has no rollback support"


async def test_step_env_merges_job_step_and_secrets(build):
    seen = {}
    backend = FakeBackend(script={"env": FakeStep(output=lambda run: seen.update(run.env) or [])})
    j = Job("a", "img", (Step("env", "env", env={"B": "step", "C": "step"}),), env={"A": "job", "B": "job", "CI": "true"})
    await run(Plan("p", stages=(stage("s", j),)), build, backend, secrets={"C": "secret"})
    assert seen == {"A": "job", "B": "step", "C": "secret", "CI": "true"}


async def test_a_step_whose_node_died_makes_the_job_interrupted_not_failed(build):
    """StepExit(interrupted=True): the job and the build are `interrupted`, the node named; a stage
    with a real failure beside it stays a failure (the code is known bad)."""
    backend = FakeBackend(script={"lost": FakeStep(output=[b"half\n"], interrupted=1)})
    plan = Plan("p", stages=(stage("s", job("a", "lost", "after")), stage("next", job("b", "never"))))
    status, sink = await run(plan, build, backend)
    assert sink.status(ev.StepFinished, job="a") == ["interrupted"]
    assert sink.of(ev.StepFinished, job="a")[0].exit_code is None
    assert sink.status(ev.JobFinished, job="a") == ["interrupted"]
    assert "node fake-1 went down" in sink.of(ev.JobFinished, job="a")[0].reason
    assert [c[2] for c in backend.calls if c[0] == "exec_step"] == ["lost"]  # "after" never ran
    assert sink.status(ev.StageFinished) == ["interrupted", "skipped"]
    assert status == "interrupted" and "node fake-1" in sink.events[-1].reason
    assert ("stop_job", "a") in backend.calls and backend.calls[-1] == ("teardown", "b1")

    both = FakeBackend(script={"lost": FakeStep(interrupted=1), "bad": FakeStep(exit=3)})
    status, sink = await run(Plan("p", stages=(stage("s", job("a", "lost"), job("b", "bad")),)), build, both)
    assert status == "failure" and sorted(sink.status(ev.JobFinished)) == ["failure", "interrupted"]


async def test_retry_runs_an_interrupted_step_again(build):
    """retry covers an interruption, and a failure after one: attempt 1 interrupted, 2 fails, 3 passes."""
    backend = FakeBackend(script={"flaky": FakeStep(output=[b"try\n"], exit=[0, 1, 0], interrupted=(1,))})
    plan = Plan("p", stages=(stage("s", job("a", Step("flaky", "flaky", retry=2), "next")),))
    status, sink = await run(plan, build, backend)
    assert [(e.attempt, e.status) for e in sink.of(ev.StepFinished, step=0)] == [
        (1, "interrupted"), (2, "failure"), (3, "success")]
    assert sink.status(ev.JobFinished, job="a") == ["success"] and status == "success"
    assert [c[2] for c in backend.calls if c[0] == "exec_step"] == ["flaky", "flaky", "flaky", "next"]

    gave_up = FakeBackend(script={"lost": FakeStep(interrupted=(1, 2))})
    status, sink = await run(Plan("p", stages=(stage("s", job("a", Step("lost", "lost", retry=1))),)), build, gave_up)
    assert sink.status(ev.StepFinished) == ["interrupted", "interrupted"] and status == "interrupted"
