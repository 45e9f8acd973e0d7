"""The pipeline file's schema (DSL.md), built from the specs of ``model.py``.

``check_pipeline(root, cx)`` returns the checked, normalised pipeline as plain dicts (or None when
there are errors; the diagnostics say why). Rules that look across fields (trust, healthcheck vs.
monitor, image tags) live in ``lint.py``.
"""

from __future__ import annotations

import re

from runner.context import EVENTS
from runner.dsl.model import INVALID, Cx, Either, Field, ListOf, MapOf, Obj, Spec
from runner.dsl.values import Bool, Command, Duration, Enum, Int, Memory, Num, Str
from runner.dsl.depth import allow_failure, approval, check_runs_on, runs_on, services
from runner.dsl.graph import check_needs
from runner.dsl.keep import artifacts, cache, reports
from runner.dsl.lint import (check_environments, check_job_depth, check_stage_services, refuse_untrusted_job,
                             warn_short_monitor, warn_stage_never_or_wrongly_runs, warn_untagged_image)
from runner.dsl.matrix import MatrixSpec
from runner.dsl.yamlload import YMap, YNode, YScalar

__all__ = ["check_pipeline", "check_params", "STAGE_KINDS"]

STAGE_KINDS = ("steps", "jobs", "build", "deploy", "rollback", "approval")
MAX_JOBS = 500  # each job carries its full env in the plan; this bounds the plan's size
_NAME = r"^[^\x00-\x1f\x7f]{1,100}\Z"
_NAME_HINT = ": names are 1 to 100 printable characters"
_CONSTRAINT = r"^[A-Za-z0-9_.-]+ *(==|!=) *[^\s=!]+\Z"
_PORT = re.compile(r"^(\d{1,5}):(\d{1,5})(?:/(tcp|udp|sctp))?\Z")


class _Wrap(Spec):
    """A shorthand: check with ``spec``, then turn the value into the long form with ``into``."""

    def __init__(self, spec: Spec, into) -> None:
        self.spec, self.into, self.expected = spec, into, spec.expected

    def check(self, node, cx, path, where):
        value = self.spec.check(node, cx, path, where)
        return INVALID if value is INVALID else self.into(value, node)


class _Port(Spec):
    expected = "'PUBLISHED:TARGET' or a mapping with published and target"

    def check(self, node, cx, path, where):
        m = _PORT.match(node.text) if isinstance(node, YScalar) and node.value is not None else None
        if isinstance(node, YScalar) and isinstance(node.value, int) and not isinstance(node.value, bool):
            cx.error(node, "value", f"{where} needs a published port, not just {node.value}: write "
                     f"e.g. '{node.value + 10000}:{node.value}' (PUBLISHED:TARGET)", path)
            return INVALID
        if m is None:
            return self.wrong(node, cx, path, where)
        published, target = int(m.group(1)), int(m.group(2))
        if not (0 < published < 65536 and 0 < target < 65536):
            cx.error(node, "value", f"{where} has a port outside 1..65535 ('{node.text}')", path)
            return INVALID
        return {"published": published, "target": target, "protocol": m.group(3) or "tcp", "__node__": node}


_name = Str(_NAME, _NAME_HINT)
_globs = ListOf(Str(), single=True, what="pattern")
_env = MapOf(what="environment variable name (letters, digits, _)")


class _Image(Str):
    def __init__(self, warn: bool = True) -> None:
        super().__init__(r"^[^\s]+\Z", ": an image reference has no spaces")
        self.warn = warn

    def check(self, node, cx, path, where):
        value = super().check(node, cx, path, where)
        if value is not INVALID and self.warn:
            warn_untagged_image(value, node, cx, path)
        return value


_image = _Image()


def _step_from_text(text: str, node: YNode) -> dict:
    return {"run": text, "__node__": node}


_step = Either(
    scalar=_Wrap(Command(), _step_from_text),
    mapping=Obj("step", {
        "name": Field(_name), "run": Field(Command(), required=True), "timeout": Field(Duration()),
        "retry": Field(Int(0, 10)), "env": Field(_env),
    }, named=True),
    expected="a command string or a mapping with 'run'",
)
_steps = ListOf(_step, unique="name", what="step")

_when = Obj("when", {
    "branch": Field(_globs), "tag": Field(_globs), "event": Field(ListOf(Enum(*EVENTS), single=True, what="event")),
    "status": Field(ListOf(Enum("success", "failure", "always"), single=True, what="status")),
    "changes": Field(_globs),
})


def _check_job(value: dict, node: YMap, cx: Cx, path: str, label: str) -> None:
    refuse_untrusted_job(value, node, cx, path, label)
    check_runs_on(value, node, cx, path, label)
    check_job_depth(value, node, cx, path, label)


_job = Obj("job", {
    "name": Field(_name, required=True), "image": Field(_image), "steps": Field(_steps, required=True),
    "env": Field(_env), "timeout": Field(Duration()), "workdir": Field(Str(r"^/", ": use an absolute path")),
    "privileged": Field(Bool()), "volumes": Field(ListOf(Str(), what="volume")),
    "needs": Field(ListOf(_name, single=True, what="need")), "matrix": Field(MatrixSpec()),
    "fail_fast": Field(Bool()), "max_parallel": Field(Int(1, 256)), "allow_failure": Field(allow_failure),
    "when": Field(_when), "services": Field(services), "runs_on": Field(runs_on),
    "artifacts": Field(artifacts), "cache": Field(cache), "reports": Field(reports),
}, named=True, missing={"steps": "{label} has no steps"}, validate=_check_job)

_build = Obj("build", {
    "tag": Field(_Image(warn=False), required=True), "context": Field(Str()), "dockerfile": Field(Str()),
    "args": Field(MapOf(what="build argument name")), "target": Field(Str()), "timeout": Field(Duration()),
    "push": Field(Bool()),
})

_update = Obj("update", {
    "order": Field(Enum("start-first", "stop-first")), "parallelism": Field(Int(0)), "delay": Field(Duration()),
    "monitor": Field(Duration()), "failure_action": Field(Enum("rollback", "pause", "continue")),
    "max_failure_ratio": Field(Num(0.0, 1.0)),
})

_ENVIRONMENT = Str(r"^[a-z0-9][a-z0-9_-]{0,40}\Z", ": environment names are lower-case letters, digits, '-' and '_'")
_deploy = Obj("deploy", {
    "service": Field(Str(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}\Z", ": use letters, digits, '-', '_' and '.'")),
    "image": Field(_image), "replicas": Field(Int(0, 1000)), "env": Field(_env),
    "command": Field(Either(scalar=Str(), seq=ListOf(Str(), what="argument"))),
    "ports": Field(ListOf(Either(scalar=_Port(), mapping=Obj("port", {
        "published": Field(Int(1, 65535), required=True), "target": Field(Int(1, 65535), required=True),
        "protocol": Field(Enum("tcp", "udp", "sctp")), "mode": Field(Enum("host", "ingress")),
    }), expected=_Port.expected), what="port")),
    "networks": Field(ListOf(Str(), what="network")),
    "healthcheck": Field(Obj("healthcheck", {
        "cmd": Field(Str(), required=True), "interval": Field(Duration()), "timeout": Field(Duration()),
        "retries": Field(Int(0, 100)), "start_period": Field(Duration()),
    })),
    "resources": Field(Obj("resources", {"cpus": Field(Num(0.01)), "memory": Field(Memory())})),
    "labels": Field(MapOf(r"^[A-Za-z0-9][A-Za-z0-9_.-]*\Z", "label name")),
    "update": Field(_update), "rollback": Field(_update),
    "verify": Field(Obj("verify", {
        "http": Field(Str(r"^https?://", ": use an http:// or https:// URL")), "status": Field(Int(100, 599)),
        "command": Field(Str()), "image": Field(_image), "within": Field(Duration()),
    }, validate=lambda v, n, cx, p, label: _exactly_one(v, n, cx, p, label, ("http", "command")))),
    "target": Field(Str()), "timeout": Field(Duration()), "stack": Field(Str(r"^[a-zA-Z0-9][a-zA-Z0-9_-]*\Z")),
    "compose": Field(Str()), "endpoint_mode": Field(Enum("vip", "dnsrr")),
    "environment": Field(_ENVIRONMENT),
    "placement": Field(Obj("placement", {
        # Compose's shape: constraints as Swarm expressions, preferences as `- spread: DESCRIPTOR`.
        "constraints": Field(ListOf(Str(_CONSTRAINT, ": write e.g. 'node.labels.zone==a' or "
                                    "'node.role!=manager'"), single=True, what="constraint")),
        "preferences": Field(ListOf(Obj("preference", {"spread": Field(Str(r"^\S+\Z"), required=True)}),
                                    what="preference")),
        "max_replicas_per_node": Field(Int(0, 1000)),
    })),
}, validate=lambda v, n, cx, p, label: _check_deploy(v, n, cx, p, label))

_rollback = Obj("rollback", {
    "service": Field(Str()), "stack": Field(Str()), "to": Field(Int(1)), "target": Field(Str()),
    "timeout": Field(Duration()), "environment": Field(_ENVIRONMENT),
}, validate=lambda v, n, cx, p, label: _exactly_one(v, n, cx, p, label, ("service", "stack")))


def _exactly_one(value: dict, node: YMap, cx: Cx, path: str, label: str, keys: tuple[str, ...]) -> None:
    present = [k for k in keys if k in value]
    if len(present) != 1:
        found = ", ".join(present) if present else "none"
        cx.error(node, "exactly-one", f"{label} needs exactly one of {', '.join(keys)} (found {found})", path)


def _check_deploy(value: dict, node: YMap, cx: Cx, path: str, label: str) -> None:
    _exactly_one(value, node, cx, path, label, ("service", "stack"))
    if "service" in value and "image" not in value:
        cx.error(node, "missing-key", f"{label} needs 'image' (the image the service runs)", path)
    if "stack" in value and "compose" not in value:
        cx.error(node, "missing-key", f"{label} needs 'compose' (the Compose file of the stack)", path)
    rollback = value.get("rollback") or {}
    if rollback.get("failure_action") == "rollback":
        cx.error(rollback["__node__"].get("failure_action"), "value", f"'failure_action' of 'rollback' in {label} "
                 "must be pause or continue (a rollback cannot roll back)", path + ".rollback.failure_action")
    warn_short_monitor(value, node, cx, path, label)


def _stage_kind(node: YMap, cx: Cx, path: str, label: str) -> None:
    kinds = [k for k in STAGE_KINDS if k in node.entries]
    if len(kinds) != 1:
        found = ", ".join(kinds) if kinds else "none"
        cx.error(node, "stage-kind", f"{label} needs exactly one of {', '.join(STAGE_KINDS)} (found {found})", path)


def _check_stage(value: dict, node: YMap, cx: Cx, path: str, label: str) -> None:
    warn_stage_never_or_wrongly_runs(value, node, cx, path, label)
    check_stage_services(value, node, cx, path, label)
    jobs = value.get("jobs")
    if jobs == []:
        cx.error(node.get("jobs"), "empty", f"{label} has no jobs", path + ".jobs")
    if "services" in value and "jobs" not in value and "steps" not in value:
        cx.error(node.entries["services"][0], "services-without-jobs", f"{label} has services but no jobs to use "
                 "them: services run beside the jobs of a 'jobs' or 'steps' stage", path + ".services")
    if value.get("steps") == []:
        cx.error(node.get("steps"), "empty", f"{label} has no steps", path + ".steps")
    for i, job in enumerate(jobs or []):
        if job.get("steps") == []:
            cx.error(job["__node__"].get("steps"), "empty", f"job '{job['name']}' has no steps",
                     f"{path}.jobs[{i}].steps")


_stage = Obj("stage", {
    "name": Field(_name, required=True), "when": Field(_when), "env": Field(_env), "image": Field(_image),
    "timeout": Field(Duration()), "steps": Field(_steps), "jobs": Field(ListOf(_job, unique="name", what="job")),
    "build": Field(_build), "deploy": Field(_deploy), "rollback": Field(_rollback), "approval": Field(approval),
    "services": Field(services),
}, named=True, validate=_check_stage, shape=_stage_kind)

_post_job = Either(
    seq=_Wrap(_steps, lambda steps, node: {"steps": steps, "__node__": node}),
    mapping=Obj("post job", {"image": Field(_image), "env": Field(_env), "timeout": Field(Duration()),
                             "steps": Field(_steps, required=True)}),
    expected="a list of steps or a mapping with 'steps'",
)
_post = Obj("post", {"always": Field(_post_job), "success": Field(_post_job), "failure": Field(_post_job)})

_trigger = Either(
    seq=_Wrap(_globs, lambda globs, node: {"patterns": globs}),
    mapping=Obj("trigger", {"branches": Field(_globs), "tags": Field(_globs)}),
    expected="a list of patterns or a mapping", null=dict,
)
_on = Either(
    seq=_Wrap(ListOf(Enum(*EVENTS), what="event"), lambda events, node: {e: {} for e in events}),
    mapping=Obj("on", {e: Field(_trigger) for e in EVENTS}),
    expected="a list of events or a mapping of events",
)

_param = Either(
    scalar=_Wrap(Str(), lambda default, node: {"default": default, "__node__": node}),
    mapping=Obj("param", {"default": Field(Str()), "choices": Field(ListOf(Str(), what="choice")),
                          "description": Field(Str())},
                validate=lambda v, n, cx, p, label: _check_param(v, n, cx, p, label)),
    expected="a default value or a mapping with default/choices",
)


def _check_param(value: dict, node: YMap, cx: Cx, path: str, label: str) -> None:
    if "choices" in value and "default" in value and value["default"] not in value["choices"]:
        cx.error(node.get("default"), "value", f"{label}: default '{value['default']}' is not one of its choices",
                 path + ".default")


class _Params(Spec):
    expected = "a mapping of parameter names"
    _ident = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*\Z")

    def check(self, node, cx, path, where):
        if not isinstance(node, YMap):
            return self.wrong(node, cx, path, where)
        out, bad = {}, False
        for key, (knode, vnode) in node.entries.items():
            if not self._ident.match(key):
                cx.error(knode, "value", f"param name '{key}' must be letters, digits and _", f"{path}.{key}")
                bad = True
                continue
            value = _param.check(vnode, cx, f"{path}.{key}", f"param '{key}'")
            bad |= value is INVALID
            out[key] = value
        return INVALID if bad else out


_pipeline = Obj("pipeline", {
    "name": Field(_name), "on": Field(_on), "params": Field(_Params()), "env": Field(_env),
    "image": Field(_image), "timeout": Field(Duration()),
    "stages": Field(ListOf(_stage, unique="name", what="stage"), required=True), "post": Field(_post),
}, missing={"stages": "the pipeline needs 'stages': a list of stages to run in order"}, extensions=True)




def check_params(node: YNode, cx: Cx):
    """The ``params:`` block alone (read before rendering, for the defaults Jinja sees)."""
    return _Params().check(node, cx, ".params", "params")


def check_pipeline(root: YNode | None, cx: Cx) -> dict | None:
    if root is None or (isinstance(root, YScalar) and root.value is None):
        cx.diags.error("empty", "the file is empty: a pipeline needs 'stages:'", 1, 1)
        return None
    value = _pipeline.check(root, cx, "", "the pipeline")
    if value is INVALID:
        return None
    if not value["stages"]:
        cx.error(root.get("stages"), "empty", "the pipeline has no stages", ".stages")
        return None
    jobs = sum(sum(len(j["matrix"]["combos"]) if "matrix" in j else 1 for j in s.get("jobs", ())) or 1
               for s in value["stages"])
    if jobs > MAX_JOBS:
        cx.error(root.get("stages"), "too-large", f"the pipeline has {jobs} jobs; at most {MAX_JOBS} "
                 "(split it into several pipelines in .conveyor/)", ".stages")
        return None
    before = len(cx.diags.items)
    check_needs(value, cx)
    check_environments(value, cx)
    if cx.diags.has_errors and len(cx.diags.items) > before:
        return None
    return value
