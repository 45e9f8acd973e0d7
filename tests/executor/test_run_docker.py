"""run_plan end to end on the real engine: one build that exercises parallel jobs, retries, secret
masking (also split across chunks), the log cap, a failing stage, a skipped stage and post blocks."""

from __future__ import annotations

import uuid

import pytest

from runner.backends.base import BuildRef
from runner.backends.docker import DockerBackend
from runner.executor import events as ev
from runner.executor.logs import MASK
from runner.executor.run import run_plan
from runner.plan import Job, Plan, Post, Stage, Step
from runner.settings import Settings
from tests.conftest import BUSYBOX

pytestmark = pytest.mark.docker

FLAKY = "if [ -f .tried ]; then echo second try; else touch .tried; echo first try; exit 1; fi"
LEAK = 'echo "plain $TOKEN"; printf "split %s" "${TOKEN%value}"; sleep 0.3; printf "%s end\\n" "${TOKEN#s3cret-}"'


class Recorder:
    def __init__(self):
        self.events = []

    def emit(self, event):
        self.events.append(event)

    def of(self, kind, **match):
        return [e for e in self.events if isinstance(e, kind) and all(getattr(e, k) == v for k, v in match.items())]

    def lines(self, **match):
        return [line for e in self.of(ev.StepOutput, **match) for line in e.lines]


def job(name, *steps):
    return Job(name, BUSYBOX, tuple(s if isinstance(s, Step) else Step(name, s) for s in steps),
               env={"CI_JOB_NAME": name})


async def test_a_whole_build_on_docker(docker_client, tmp_path, instance):
    (tmp_path / "app.txt").write_text("checked out\n")
    build = BuildRef(id="e" + uuid.uuid4().hex[:10], source=tmp_path, instance=instance)
    plan = Plan("p", stages=(
        Stage("test", "jobs", jobs=(
            job("flaky", Step("flaky", FLAKY, retry=1)),
            job("leak", LEAK),
            job("noisy", "seq 1 100000"),
            job("files", "cat app.txt; echo $CI_JOB_NAME > from-test.txt"),
        )),
        Stage("check", "jobs", jobs=(job("fails", "cat from-test.txt; exit 4"),)),
        Stage("later", "jobs", jobs=(job("never", "echo never"),)),
    ), post=Post(always=(job("pa", "echo post-always"),), success=(job("ps", "echo no"),),
                 failure=(job("pf", "echo post-failure"),)))
    backend = DockerBackend(Settings(instance=instance), grace=1.0)
    sink = Recorder()
    try:
        status = await run_plan(plan, build, backend, sink, secrets={"TOKEN": "s3cret-value"},
                                concurrency=4, log_cap=10_000)
    finally:
        await backend.sweep(keep=[])
        backend.close()
    assert status == "failure"
    assert [(e.attempt, e.status) for e in sink.of(ev.StepFinished, job="flaky")] == [(1, "failure"), (2, "success")]
    assert sink.lines(job="flaky") == ["first try", "second try"]
    assert sink.lines(job="leak") == [f"plain {MASK}", f"split {MASK} end"]
    noisy = sink.lines(job="noisy")
    assert noisy[:3] == ["1", "2", "3"] and "capped" in noisy[-1]
    assert sink.of(ev.StepFinished, job="noisy")[0].status == "success"
    assert sink.lines(job="files") == ["checked out"]
    assert sink.lines(job="fails") == ["files"]  # the workspace is shared by later stages' jobs
    assert sink.of(ev.StepFinished, job="fails")[0].exit_code == 4
    assert [(e.stage, e.status) for e in sink.of(ev.StageFinished)] == [
        ("test", "success"), ("check", "failure"), ("later", "skipped"), ("post:always", "success"),
        ("post:failure", "success")]
    assert sink.lines(stage="post:failure") == ["post-failure"]
    # The four test jobs overlapped: each started before any of them finished.
    started = [e.time for e in sink.of(ev.JobStarted, stage="test")]
    finished = [e.time for e in sink.of(ev.JobFinished, stage="test")]
    assert max(started) < min(finished)
    label = {"label": f"io.conveyor.build={build.id}"}
    assert not docker_client.containers.list(all=True, filters=label)
    assert not docker_client.volumes.list(filters=label) and not docker_client.networks.list(filters=label)
