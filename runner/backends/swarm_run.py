"""A job's place on the Swarm and its *runs*: a run is one service whose driver runs a stretch of
the job's steps, from the step that started it to the job's last (docs/backends.md, "Swarm"). Here:
what a run plans, whether the next ``exec_step`` is what it planned, the service's task template, and
reading one step's frames from the log stream until the step's exit, or until its task is lost (its
node went down: the step is interrupted).
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from runner.backends import swarm_blocking as sb
from runner.backends.base import StepExit
from runner.backends.docker import SHELL_CAPS, _slug
from runner.backends.pump import OutputPump
from runner.backends.swarm_driver import Begin, End, FrameReader, Output, PlannedStep
from runner.engine import types as dtypes
from runner.plan import Job, Step

__all__ = ["Place", "Run", "plan_steps", "expects", "service_template", "step_frames"]

POLL = 1.0  # seconds between looks at the task while its log is quiet
QUIET = 0.25  # seconds of a quiet log after which a held-back newline is the step's own (swarm_driver.py)
LOG_LAG = 10.0  # seconds the log may trail a task that has ended before the step counts as lost


@dataclass
class Run:
    """One service: a stretch of the job's steps, from the one that started it to the end."""

    service: str  # id
    secret: str  # id of its driver's secret
    planned: list[PlannedStep]
    reader: FrameReader
    pump: OutputPump
    follower: asyncio.Future
    consumed: int = 0  # planned steps exec_step has taken
    events: deque = field(default_factory=deque)
    over: bool = False  # the driver is done (last step ended, or one failed)
    name: str = ""  # the service's name (its tasks are still listed by it once it is removed)


@dataclass
class Place:
    """Where one job runs, and its current run."""

    name: str  # the job's services are called <name>-r<k>
    home: bool  # on the workspace node, with the build's volume
    constraints: list[str]
    nano_cpus: int  # limit and reservation, at most what the biggest node has (else it never runs)
    memory: int
    seed: list[str] = field(default_factory=list)  # names of its checkout secrets (away from home)
    seed_ids: list[str] = field(default_factory=list)
    runs: itertools.count = field(default_factory=lambda: itertools.count(1))
    run: Run | None = None
    stopped: bool = False


def service_template(place: Place, job: Job, volume: str, name: str, secret: str, labels: dict[str, str],
                     pids: int, grace: float) -> Any:
    """The task of run ``name``: the driver (secret ``secret``) as its command, the job's checkout
    secrets away from home or the build's ``volume`` at home, ``CONVEYOR_NODE`` (the node's hostname),
    the shell's few capabilities, the job's CPUs and memory as limits and reservations, and no
    restart (a task that ends stays ended)."""
    secrets = [dtypes.SecretReference(secret, f"{name}-driver", mode=0o400)]
    secrets += [dtypes.SecretReference(sid, sname, mode=0o400) for sid, sname in zip(place.seed_ids, place.seed)]
    mounts = [dtypes.Mount(job.workdir, volume, type="volume")] if place.home else []
    spec = dtypes.ContainerSpec(
        job.image, command=["sh", f"/run/secrets/{name}-driver"], labels=labels, mounts=mounts, secrets=secrets,
        # Which machine ran the job (as Jenkins' NODE_NAME): Swarm fills the template in on the node.
        env={"CONVEYOR_NODE": "{{.Node.Hostname}}"},
        hostname=_slug(job.name)[:63], stop_grace_period=int(grace * 1e9),
        cap_drop=["ALL"], cap_add=list(SHELL_CAPS))
    nano, memory = place.nano_cpus, place.memory
    resources = dtypes.Resources(cpu_limit=nano, mem_limit=memory, cpu_reservation=nano, mem_reservation=memory)
    resources["Limits"]["Pids"] = pids
    return dtypes.TaskTemplate(spec, resources=resources, restart_policy=dtypes.RestartPolicy(condition="none"),
                               placement=dtypes.Placement(constraints=place.constraints))


def plan_steps(job: Job, step: Step, env: dict[str, str]) -> list[PlannedStep]:
    """``step`` with ``env``, then the job's later steps with the env the executor will give them:
    theirs plus what ``env`` adds beyond the job's and the step's own (the build's secrets)."""
    own = {**job.env, **step.env}
    extra = {k: v for k, v in env.items() if own.get(k) != v}
    planned = [PlannedStep(0, step.run, dict(env))]
    later = next((i + 1 for i, s in enumerate(job.steps) if s == step), len(job.steps))
    for i, s in enumerate(job.steps[later:], start=1):
        planned.append(PlannedStep(i, s.run, {**job.env, **s.env, **extra}))
    return planned


def expects(run: Run, step: Step, env: dict[str, str]) -> bool:
    """Is ``step`` with ``env`` the step this run runs next (else a new run starts at it)?"""
    if run.over or run.consumed >= len(run.planned):
        return False
    nxt = run.planned[run.consumed]
    return nxt.run == step.run and nxt.env == env


async def step_frames(run: Run, index: int, task_state: Callable[[str], Awaitable[sb.TaskState | None]]
                      ) -> AsyncIterator[bytes | StepExit]:
    """The output of the run's step ``index``, then its StepExit (also when the task is lost).
    ``task_state(service)`` looks at the service's task through the manager while the log is quiet."""
    ended_at: float | None = None
    while True:
        while run.events:
            event = run.events.popleft()
            if isinstance(event, Output):
                yield event.data
            elif isinstance(event, End):
                if event.index == -1:
                    yield StepExit(-1, reason="the job's task could not unpack the checkout")
                    return
                yield StepExit(event.code)
                return
        held = run.reader.buf == b"\n"
        try:
            chunk = await asyncio.wait_for(run.pump.get(), QUIET if held else POLL)
        except TimeoutError:
            chunk = b""
        if chunk:
            run.events.extend(e for e in run.reader.feed(chunk) if not isinstance(e, Begin))
            continue
        if held:
            run.events.extend(run.reader.release_newline())
            continue
        task = await task_state(run.service)
        lost = _lost(task)
        if lost is not None:
            yield lost
            return
        if chunk is None or (task is not None and task.state in sb.ENDED):
            ended_at = ended_at or time.monotonic()
            if time.monotonic() - ended_at > LOG_LAG or chunk is None and task is None:
                yield StepExit(-1, reason=_ended_without_exit(task))
                return
            if chunk is None:
                await asyncio.sleep(POLL)


def _lost(task: sb.TaskState | None) -> StepExit | None:
    """The end of a step lost with its task (its node went down: interrupted, not the step's
    fault; the task failed to start), or None."""
    if task is None or task.node is None:
        return None
    if not task.node.ready:
        return StepExit(-1, reason=f"interrupted: node {task.node.hostname} went down while the step ran",
                        interrupted=True)
    if task.state in ("failed", "rejected") and task.error:
        return StepExit(-1, reason=f"the job's task failed on node {task.node.hostname}: {task.error}")
    return None


def _ended_without_exit(task: sb.TaskState | None) -> str:
    if task is None:
        return "the job's service is gone (removed outside Conveyor?) before the step reported its exit"
    where = f" on node {task.node.hostname}" if task.node else ""
    return f"the job's task ended ({task.state}{where}) before the step reported its exit"
