"""The job graph on the scripted fake backend: needs, stage order, matrix fail_fast/max_parallel,
allow_failure, and when.status after a needed job."""

from __future__ import annotations

import pytest

from runner.backends.base import BuildRef
from runner.backends.fake import FakeBackend, FakeStep
from runner.executor import events as ev
from runner.executor.run import run_plan
from runner.plan import AllowFailure, Job, Matrix, Plan, Stage, Step, When


class Recorder:
    def __init__(self):
        self.events: list[ev.Event] = []

    def emit(self, event):
        self.events.append(event)

    def order(self):
        """('start'|'end', job) in the order they happened."""
        return [("start" if isinstance(e, ev.JobStarted) else "end", e.job) for e in self.events
                if isinstance(e, (ev.JobStarted, ev.JobFinished))]

    def finished(self):
        return {e.job: (e.status, e.reason, e.allowed) for e in self.events if isinstance(e, ev.JobFinished)}


def job(name, run="ok", **kw):
    return Job(name, "img", (Step(run, run),), **kw)


def combo(group, value, run="ok", **kw):
    return job(f"{group} [v={value}]", run, matrix=Matrix(group, {"v": value}, **kw))


@pytest.fixture
def build(tmp_path):
    return BuildRef(id="b1", source=tmp_path)


async def go(stages, build, script, **kw):
    sink = Recorder()
    status = await run_plan(Plan("p", stages=tuple(stages)), build, FakeBackend(script=script), sink, concurrency=8, **kw)
    return status, sink


SLOW = {"slow": FakeStep(delay=0.3), "ok": FakeStep(), "boom": FakeStep(exit=1, delay=0.05)}


async def test_diamond_runs_both_branches_together_and_joins(build):
    status, sink = await go([
        Stage("one", "jobs", jobs=(job("a"),)),
        Stage("two", "jobs", jobs=(job("b", "slow", needs=("a",)), job("c", "slow", needs=("a",)))),
        Stage("three", "jobs", jobs=(job("d", needs=("b", "c")),)),
    ], build, SLOW)
    order = sink.order()
    assert status == "success"
    assert order.index(("end", "a")) < order.index(("start", "b"))
    # b and c overlap: both start before either ends
    assert max(order.index(("start", "b")), order.index(("start", "c"))) < min(order.index(("end", "b")),
                                                                                order.index(("end", "c")))
    assert order[-2:] == [("start", "d"), ("end", "d")]


async def test_a_failure_skips_what_needs_it_and_what_follows_in_stage_order_only(build):
    status, sink = await go([
        Stage("one", "jobs", jobs=(job("a"),)),
        Stage("two", "jobs", jobs=(job("b", "boom", needs=("a",)), job("c", "slow", needs=("a",)))),
        Stage("three", "jobs", jobs=(job("d", needs=("b",)), job("e", needs=("c",)), job("after"))),
        Stage("cleanup", "jobs", jobs=(job("notify", needs=("b",), when=When(status=("failure",))),)),
    ], build, SLOW)
    done = sink.finished()
    assert status == "failure"
    assert done["b"][0] == "failure" and done["c"][0] == "success" and done["e"][0] == "success"
    assert done["d"][:2] == ("skipped", "needed job 'b' failed")
    assert done["after"][:2] == ("skipped", "an earlier stage failed")
    assert done["notify"][0] == "success"  # when: status failure, after the job it needs failed
    stages = {e.stage: (e.status, e.reason) for e in sink.events if isinstance(e, ev.StageFinished)}
    assert stages["two"] == ("failure", "job 'b': step 'boom': exit code 1")
    assert sink.events[-1].reason == "stage 'two': job 'b': step 'boom': exit code 1"


async def test_needs_nothing_starts_at_once_while_an_earlier_stage_runs(build):
    status, sink = await go([
        Stage("one", "jobs", jobs=(job("long", "slow"),)),
        Stage("two", "jobs", jobs=(job("eager", needs=()), job("patient"))),
    ], build, SLOW)
    order = sink.order()
    assert status == "success"
    assert order.index(("end", "eager")) < order.index(("end", "long")) < order.index(("start", "patient"))


@pytest.mark.parametrize("fail_fast", [True, False])
async def test_matrix_fail_fast_cancels_the_siblings_or_lets_them_finish(build, fail_fast):
    jobs = (combo("unit", "1", "boom", fail_fast=fail_fast), combo("unit", "2", "slow", fail_fast=fail_fast),
            combo("unit", "3", "slow", fail_fast=fail_fast))
    status, sink = await go([Stage("test", "jobs", jobs=jobs), Stage("next", "jobs", jobs=(job("x", needs=()),))],
                            build, SLOW)
    done = sink.finished()
    assert status == "failure"
    assert done["unit [v=1]"][0] == "failure"
    assert done["x"][0] == "success"  # outside the group: unaffected
    for name in ("unit [v=2]", "unit [v=3]"):
        if fail_fast:
            assert done[name][:2] == ("cancelled", "cancelled: 'unit [v=1]' failed (fail_fast)")
        else:
            assert done[name][0] == "success"


async def test_fail_fast_skips_combinations_that_had_not_started(build):
    jobs = tuple(combo("unit", v, "boom" if v == "1" else "slow", max_parallel=1) for v in "123")
    status, sink = await go([Stage("test", "jobs", jobs=jobs)], build, SLOW)
    done = sink.finished()
    assert done["unit [v=2]"][0] == done["unit [v=3]"][0] == "cancelled"
    assert ("start", "unit [v=2]") not in sink.order()


async def test_max_parallel_caps_the_running_combinations(build):
    jobs = tuple(combo("unit", v, "slow", max_parallel=2) for v in "1234")
    status, sink = await go([Stage("test", "jobs", jobs=jobs)], build, {"slow": FakeStep(delay=0.05)})
    running = peak = 0
    for kind, _name in sink.order():
        running += 1 if kind == "start" else -1
        peak = max(peak, running)
    assert status == "success" and peak == 2


@pytest.mark.parametrize(("code", "allowed"), [(3, True), (4, False)])
async def test_allow_failure_by_exit_code(build, code, allowed):
    flaky = job("flaky", "flaky", allow_failure=AllowFailure(exit_codes=(3,)))
    status, sink = await go([
        Stage("test", "jobs", jobs=(flaky,)),
        Stage("after", "jobs", jobs=(job("next"), job("dependent", needs=("flaky",)))),
    ], build, {"flaky": FakeStep(exit=code)})
    done = sink.finished()
    assert done["flaky"] == ("failure", f"step 'flaky': exit code {code}", allowed)
    finished = sink.events[-1]
    if allowed:
        assert status == "success" and done["next"][0] == done["dependent"][0] == "success"
        assert finished.warnings == (f"job 'flaky' failed (allowed): step 'flaky': exit code {code}",)
    else:
        assert status == "failure" and done["next"][0] == "skipped" and finished.warnings == ()


async def test_a_skipped_need_skips_the_job_that_needs_it(build):
    status, sink = await go([
        Stage("one", "jobs", jobs=(job("docs", skip_reason="no changed file matches when.changes (docs/**)"),)),
        Stage("two", "jobs", jobs=(job("publish", needs=("docs",)), job("other", needs=()))),
    ], build, SLOW)
    done = sink.finished()
    assert status == "success"
    assert done["publish"][:2] == ("skipped", "needed job 'docs' was skipped")
    assert done["other"][0] == "success"


async def test_a_job_with_needs_after_an_approval_waits_for_the_answer_and_a_reject_skips_it(build):
    answered: list[str] = []

    def approval(verdict):
        async def decide(stage, ctx):
            from asyncio import sleep

            from runner.executor.actions import ActionResult

            await sleep(0.3)  # the person thinks; nothing after the question may run meanwhile
            answered.append(verdict)
            return ActionResult(verdict, None if verdict == "success" else "rejected by ana")
        return decide

    stages = [
        Stage("compile", "jobs", jobs=(job("compile"),)),
        Stage("approve", "approval"),
        Stage("ship", "jobs", jobs=(job("publish", needs=("compile",)),)),
    ]
    status, sink = await go(stages, build, SLOW, actions={"approval": approval("success")})
    assert status == "success" and answered == ["success"]
    started = [e for e in sink.events if isinstance(e, ev.JobStarted) and e.job == "publish"]
    approved = next(i for i, e in enumerate(sink.events) if isinstance(e, ev.StageFinished) and e.stage == "approve")
    assert sink.events.index(started[0]) > approved  # publish started only after the answer

    status, sink = await go(stages, build, SLOW, actions={"approval": approval("failure")})
    assert status == "failure"
    assert sink.finished()["publish"][0] == "skipped" and "approve" in sink.finished()["publish"][1]
    assert not [e for e in sink.events if isinstance(e, ev.JobStarted) and e.job == "publish"]
