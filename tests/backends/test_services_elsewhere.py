"""What the backends without containers do with a job's services: the local backend refuses the job
with an error that says what to do; the fake backend records them, and plays a service that never
became ready through ``fail_start``, whose log the executor shows as the job's "services" step."""

from __future__ import annotations

from runner.backends.base import BuildRef
from runner.backends.fake import FakeBackend
from runner.backends.local import LocalBackend
from runner.errors import BackendError, ServiceError
from runner.executor import events as ev
from runner.executor.run import run_plan
from runner.plan import Job, Plan, Ready, Service, Stage, Step

DB = Service("db", "conveyor-test/python:3.11", command="python3 -m http.server 5432", ready=Ready(tcp=5432))


class Recorder:
    def __init__(self):
        self.events = []

    def emit(self, event):
        self.events.append(event)

    def of(self, kind):
        return [e for e in self.events if isinstance(e, kind)]


def plan_with(*jobs: Job) -> Plan:
    return Plan("p", stages=(Stage("test", "jobs", jobs=jobs),))


async def test_local_refuses_a_job_with_services_and_runs_the_others(tmp_path):
    (tmp_path / "src").mkdir()
    sink = Recorder()
    plan = plan_with(Job("unit", "ignored", (Step("t", "echo ran"),), services=(DB,)),
                     Job("lint", "ignored", (Step("l", "echo linted"),)))
    status = await run_plan(plan, BuildRef("ls1", tmp_path / "src"), LocalBackend(grace=0.5), sink)
    assert status == "failure"
    finished = {e.job: e for e in sink.of(ev.JobFinished)}
    assert finished["lint"].status == "success"
    assert finished["unit"].status == "failure"
    assert finished["unit"].reason == ("job 'unit' has services (db), which the local backend cannot run; run it "
                                       "with --backend docker (the default), or start them yourself and remove "
                                       "`services:` from the job")
    assert [s.job for s in sink.of(ev.StepStarted)] == ["lint"]


async def test_fake_records_services_and_a_failed_start_shows_the_service_log(tmp_path):
    (tmp_path / "src").mkdir()
    not_ready = ServiceError("service 'db' was not ready within 30s (nothing listens on tcp port 5432); "
                             "its last log lines are in the job log",
                             log=("[conveyor] service 'db' was not ready ...; its last 2 log lines:",
                                  "listening on 5433", "oops"))
    backend = FakeBackend(fail_start={"unit": not_ready})
    sink = Recorder()
    plan = plan_with(Job("unit", "img", (Step("t", "echo ran"),), services=(DB,)))
    assert await run_plan(plan, BuildRef("fs1", tmp_path / "src"), backend, sink) == "failure"
    assert ("services", "unit", ("db",)) in backend.calls
    (step,) = sink.of(ev.StepFinished)
    assert (step.step, step.status, step.reason) == (0, "failure", str(not_ready))
    assert [s.name for s in sink.of(ev.StepStarted)] == ["services"]
    assert [line for out in sink.of(ev.StepOutput) for line in out.lines] == list(not_ready.log)
    assert sink.of(ev.JobFinished)[0].reason == str(not_ready)


async def test_a_failed_start_without_a_log_adds_no_step(tmp_path):
    (tmp_path / "src").mkdir()
    backend, sink = FakeBackend(fail_start={"unit": BackendError("no room")}), Recorder()
    assert await run_plan(plan_with(Job("unit", "img", (Step("t", "x"),))), BuildRef("fs2", tmp_path / "src"),
                          backend, sink) == "failure"
    assert sink.of(ev.StepStarted) == [] and sink.of(ev.JobFinished)[0].reason == "no room"
