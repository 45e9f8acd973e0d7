"""The plan: the frozen, JSON-serialisable IR between understanding a pipeline and running it.

``dsl.compile`` produces a ``Plan``; the executor, the backends and the deploy code consume it and
never see YAML or Jinja. A plan is stored with every build, printed by ``conveyor plan`` and can be
replayed. Everything here is plain data: durations are seconds (float), mappings are ``dict[str,
str]`` and sequences are tuples, so ``Plan.from_json(plan.to_json()) == plan``.

Shape::

    Plan
      stages: Stage*          run in order
        kind: "jobs"          jobs: Job* (run concurrently), each with steps: Step*
        kind: "build"         build: BuildSpec       (image built through the engine API)
        kind: "deploy"        deploy: DeploySpec     (Swarm service or Compose stack)
        kind: "rollback"      rollback: RollbackSpec (re-apply a recorded spec)
        kind: "approval"      approval: ApprovalSpec (the build waits for a person)
      post: Post              always / success / failure jobs, after all stages

Pipeline depth (docs/pipeline.md): a job may carry ``needs`` (the DAG: names of concrete jobs,
matrix parents already expanded by the compiler), its ``matrix`` coordinates, ``allow_failure``,
``services`` (sidecars), and a compile-time ``skip_reason``/``decision`` from its own ``when``.
What a job keeps (docs/pipeline.md): ``artifacts``, ``cache`` and ``reports``; their paths are globs
relative to the workspace, checked at lint never to leave it.

Bump ``PLAN_VERSION`` on any change that an older reader would misunderstand; ``READABLE_VERSIONS``
lists the older versions this code still reads (every field added since has a default).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import field
from typing import Any

from runner.values import Value, frozen

__all__ = [
    "PLAN_VERSION",
    "Step",
    "Service",
    "Ready",
    "Matrix",
    "AllowFailure",
    "Artifacts",
    "Cache",
    "Reports",
    "Job",
    "ApprovalSpec",
    "When",
    "BuildSpec",
    "Port",
    "Healthcheck",
    "UpdateConfig",
    "Verify",
    "DeploySpec",
    "RollbackSpec",
    "Stage",
    "Post",
    "Plan",
    "PlanFormatError",
]

PLAN_VERSION = 3
# 2 added pipeline depth; 3 added the build's ``params`` and a stage's own ``env`` (the Compose file
# of a stack deploy is rendered with both). An older plan reads as one without them.
READABLE_VERSIONS = (1, 2, 3)

# Statuses of DSL.md. A stage's `when.status` lists the build statuses (so far) it runs under.
STATUSES = (
    "queued",
    "running",
    "waiting",  # a build at an approval stage (the stage's own `when.status` never sees it)
    "success",
    "failure",
    "cancelled",
    "timed_out",
    "skipped",
    "config_error",
    "interrupted",
)


class PlanFormatError(ValueError):
    """A stored plan could not be read back (wrong version or shape)."""


@frozen
class Step(Value):
    name: str
    run: str  # a shell script, run with `sh -e -c`
    timeout: float | None = None  # seconds; None: bounded only by the job and build timeouts
    retry: int = 0  # extra attempts after a failure (not after a timeout or cancellation)
    env: dict[str, str] = field(default_factory=dict)


@frozen
class Ready(Value):
    """When a service counts as ready: a TCP port accepts, or a command exits 0 (run inside it)."""

    tcp: int | None = None
    cmd: str | None = None
    within: float = 30.0


@frozen
class Service(Value):
    """A sidecar container on the build's network, reachable from the job as host ``name``."""

    name: str
    image: str
    command: str | None = None  # run with `sh -c`; None: the image's own command
    env: dict[str, str] = field(default_factory=dict)
    ready: Ready | None = None  # None: ready once started


@frozen
class Matrix(Value):
    """Where a job came from when a ``matrix`` expanded it: its parent's name and coordinates."""

    group: str  # the authored job name, e.g. "unit"; the job's own name is "unit [py=3.11, db=pg]"
    values: dict[str, str] = field(default_factory=dict)
    fail_fast: bool = True  # a failed combination cancels its running and waiting siblings
    max_parallel: int | None = None  # combinations of this group running at once


@frozen
class AllowFailure(Value):
    """``allow_failure``: a failure of this job (any exit code, or only these) does not fail the build."""

    exit_codes: tuple[int, ...] = ()  # empty: any failure is allowed


@frozen
class Artifacts(Value):
    """Files kept after the job: listed and downloadable, and put into the workspace of jobs that need it."""

    paths: tuple[str, ...]  # globs relative to the workspace; a directory means everything under it
    expire_in: float | None = None  # seconds after the job; None: kept as long as the build
    when: str = "on_success"  # "on_success", "on_failure" or "always"


@frozen
class Cache(Value):
    """Files restored before the job's first step and saved after it succeeds, under a key.

    The key is ``key`` (already rendered), or, when ``files`` is set (and ``key`` None), ``prefix`` plus
    a hash of those files at the build's commit (computed when the job runs: the plan holds no file
    contents)."""

    paths: tuple[str, ...]
    key: str | None = "default"
    files: tuple[str, ...] = ()
    prefix: str | None = None
    policy: str = "pull-push"  # "pull-push", "pull" (restore only) or "push" (save only)
    fallback_keys: tuple[str, ...] = ()  # tried in order when the key has no cache yet


@frozen
class Reports(Value):
    """Report files read out of the workspace after the job's steps (also after a failure)."""

    junit: tuple[str, ...] = ()  # globs of JUnit XML files


@frozen
class Job(Value):
    name: str
    image: str
    steps: tuple[Step, ...]
    env: dict[str, str] = field(default_factory=dict)  # plan env + stage env + job env, CI_* included
    timeout: float | None = None
    workdir: str = "/workspace"  # where the build's workspace is mounted, CI_WORKSPACE
    privileged: bool = False  # only ever True when the repo is trusted (refused at lint otherwise)
    volumes: tuple[str, ...] = ()  # host volumes "src:dst[:ro]", trusted repos only
    # None: the job keeps stage order; (): it starts at once; names: concrete job names (any stage)
    # it waits for, a matrix parent already expanded into all its combinations.
    needs: tuple[str, ...] | None = None
    matrix: Matrix | None = None
    allow_failure: AllowFailure | None = None
    services: tuple[Service, ...] = ()  # the stage's services and the job's own, expanded
    runs_on: tuple[str, ...] = ()  # node labels: "key=value" or "key" (backend: swarm)
    skip_reason: str | None = None  # set at compile time when the job's own `when` excludes it
    decision: str | None = None  # why it runs, when `when.changes` decided (e.g. matched files)
    when: When | None = None  # the job's own `when.status`; None: its stage's
    artifacts: Artifacts | None = None
    cache: tuple[Cache, ...] = ()
    reports: Reports | None = None


@frozen
class When(Value):
    """Run-time condition. Branch, tag and event filters are decided at compile time (a stage they
    exclude is kept with ``Stage.skip_reason`` set), so only the build status is left for run time."""

    status: tuple[str, ...] = ("success",)  # "success", "failure", or "always" (any status)


@frozen
class BuildSpec(Value):
    tag: str
    context: str = "."
    dockerfile: str = "Dockerfile"
    args: dict[str, str] = field(default_factory=dict)
    target: str | None = None
    timeout: float | None = None
    push: bool | None = None  # None: push when a registry is configured; the digest pins deploys


@frozen
class Port(Value):
    published: int
    target: int
    protocol: str = "tcp"
    mode: str = "host"  # "host" by default: the routing mesh needs IPVS (see docs/deploy.md)


@frozen
class Healthcheck(Value):
    cmd: str  # run with `sh -c` inside the task's container (CMD-SHELL)
    interval: float = 5.0
    timeout: float = 3.0
    retries: int = 3
    start_period: float = 0.0


@frozen
class UpdateConfig(Value):
    """Swarm `UpdateConfig` (and, with the same keys, `RollbackConfig`)."""

    order: str = "start-first"
    parallelism: int = 1
    delay: float = 0.0
    monitor: float = 5.0
    failure_action: str = "rollback"  # only meaningful for `update`
    max_failure_ratio: float = 0.0


@frozen
class Placement(Value):
    """Swarm placement of a service's tasks. Empty: any node, Swarm's default spread."""

    constraints: tuple[str, ...] = ()  # e.g. "node.labels.zone==a", "node.role!=manager"
    preferences: tuple[str, ...] = ()  # spread descriptors, in order, e.g. "node.labels.zone"
    max_replicas_per_node: int = 0  # 0: no limit


@frozen
class Verify(Value):
    """A check after convergence: an HTTP status fetched by the runner, or a command run in a
    container attached to the service's network. Exactly one of http / command is set."""

    http: str | None = None
    status: int = 200
    command: str | None = None
    image: str | None = None  # image of the command's container; default: the job default image
    within: float = 30.0  # keep retrying until this many seconds have passed


@frozen
class DeploySpec(Value):
    """One Swarm service (``service`` set) or a Compose stack (``stack`` and ``compose`` set)."""

    service: str | None = None
    image: str | None = None
    replicas: int = 1
    env: dict[str, str] = field(default_factory=dict)
    command: tuple[str, ...] | None = None
    ports: tuple[Port, ...] = ()
    networks: tuple[str, ...] = ()
    healthcheck: Healthcheck | None = None
    cpus: float | None = None  # resources.cpus (limit)
    memory: int | None = None  # resources.memory (limit), bytes
    labels: dict[str, str] = field(default_factory=dict)
    update: UpdateConfig = field(default_factory=UpdateConfig)
    rollback: UpdateConfig = field(default_factory=lambda: UpdateConfig(failure_action="pause"))
    verify: Verify | None = None
    target: str | None = None  # a named target from the configuration; None: DOCKER_HOST
    timeout: float = 300.0  # convergence deadline
    stack: str | None = None
    compose: str | None = None  # path of the Compose file inside the workspace
    endpoint_mode: str | None = None  # "vip" or "dnsrr"
    environment: str | None = None  # a configured environment: its target, branches, approvers, settings
    placement: Placement = field(default_factory=Placement)


@frozen
class RollbackSpec(Value):
    service: str | None = None
    stack: str | None = None
    to: int | None = None  # a deploy id from the history; None: the last good deploy before the current
    target: str | None = None
    timeout: float = 300.0
    environment: str | None = None  # the environment the deploy went to: its target and service name


@frozen
class ApprovalSpec(Value):
    message: str = ""
    approvers: tuple[str, ...] = ()  # user names or roles; empty: anyone allowed to approve
    timeout: float | None = None  # seconds; then the stage fails (not approved in time)


@frozen
class Stage(Value):
    name: str
    kind: str  # "jobs", "build", "deploy", "rollback", "approval"
    jobs: tuple[Job, ...] = ()
    build: BuildSpec | None = None
    deploy: DeploySpec | None = None
    rollback: RollbackSpec | None = None
    approval: ApprovalSpec | None = None
    when: When = field(default_factory=When)
    skip_reason: str | None = None  # set at compile time when a branch/tag/event filter excludes it
    image: str | None = None  # default image for build/deploy helpers (verify command etc.)
    env: dict[str, str] = field(default_factory=dict)  # the stage's own `env:` (its jobs carry it merged)


@frozen
class Post(Value):
    always: tuple[Job, ...] = ()
    success: tuple[Job, ...] = ()
    failure: tuple[Job, ...] = ()


@frozen
class Plan(Value):
    name: str
    stages: tuple[Stage, ...]
    post: Post = field(default_factory=Post)
    env: dict[str, str] = field(default_factory=dict)  # CI_* and the file's top-level env
    timeout: float | None = None  # the whole build
    trusted: bool = False
    source: str = ".conveyor.yml"  # the pipeline file this came from, relative to the repo
    params: dict[str, str] = field(default_factory=dict)  # the build's params, declared defaults filled in
    version: int = PLAN_VERSION

    def jobs(self) -> typing.Iterator[Job]:
        """Every job of every stage and post block, in order."""
        for stage in self.stages:
            yield from stage.jobs
        yield from self.post.always
        yield from self.post.success
        yield from self.post.failure

    def to_dict(self) -> dict[str, Any]:
        return _to_data(self)

    def to_json(self, indent: int | None = 2) -> str:
        import json  # here and in from_json: `conveyor lint` makes plans and never stores one

        return json.dumps(self.to_dict(), indent=indent, sort_keys=False)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Plan:
        version = data.get("version") if isinstance(data, dict) else None
        if version not in READABLE_VERSIONS:
            raise PlanFormatError(
                f"plan version {version!r} is not one of {READABLE_VERSIONS}; re-run `conveyor plan` with this version"
            )
        try:
            return _from_data(cls, {**data, "version": PLAN_VERSION})
        except (TypeError, KeyError, ValueError) as exc:
            raise PlanFormatError(f"stored plan has an unexpected shape: {exc}") from exc

    @classmethod
    def from_json(cls, text: str) -> Plan:
        import json

        return cls.from_dict(json.loads(text))


def _to_data(value: Any) -> Any:
    if dataclasses.is_dataclass(value):
        return {f.name: _to_data(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, (tuple, list)):
        return [_to_data(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _to_data(v) for k, v in value.items()}
    return value


def _from_data(tp: Any, data: Any) -> Any:
    """Rebuild a value of type ``tp`` from JSON data, guided by the dataclass annotations."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if data is None:
            return None
        return _from_data(args[0], data)
    if dataclasses.is_dataclass(tp):
        hints = typing.get_type_hints(tp)
        known = {f.name for f in dataclasses.fields(tp)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown field(s) {sorted(unknown)} in {tp.__name__}")
        return tp(**{k: _from_data(hints[k], v) for k, v in data.items()})
    if origin is tuple:
        (item, *_rest) = typing.get_args(tp)
        return tuple(_from_data(item, v) for v in data)
    if origin is dict:
        _k, vt = typing.get_args(tp)
        return {str(k): _from_data(vt, v) for k, v in data.items()}
    if tp is float and isinstance(data, int):
        return float(data)
    return data
