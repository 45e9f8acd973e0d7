"""The pipeline file's schema (DSL.md), built from the specs of ``model.py``; the build, deploy and
rollback stages' own are ``ship.py``'s.

``check_pipeline(root, cx)`` returns the checked, normalised pipeline as plain dicts (or None when
there are errors; the diagnostics say why). Rules that look across fields (trust, healthcheck vs.
monitor, image tags) live in ``lint.py``.
"""

from __future__ import annotations

from runner.context import EVENTS
from runner.dsl.depth import allow_failure, approval, check_runs_on, runs_on, services
from runner.dsl.graph import check_needs
from runner.dsl.keep import artifacts, cache, reports
from runner.dsl.model import INVALID, Cx, Either, Field, ListOf, MapOf, Obj, Spec
from runner.dsl.ship import build_stage, deploy_stage, rollback_stage
from runner.dsl.values import Bool, Command, Duration, Enum, Image, Int, Str
from runner.regex import lazy
from runner.dsl.lint import (check_environments, check_job_depth, check_stage_services, refuse_untrusted_job,
                             warn_stage_never_or_wrongly_runs)
from runner.dsl.matrix import MatrixSpec
from runner.dsl.yamlload import YMap, YNode, YScalar

__all__ = ["check_pipeline", "check_params", "STAGE_KINDS"]

STAGE_KINDS = ("steps", "jobs", "build", "deploy", "rollback", "approval")
MAX_JOBS = 500  # each job carries its full env in the plan; this bounds the plan's size
MAX_STEPS = 20_000  # steps of every job, a matrix's counted once per combination: the plan's other bound
_NAME = r"^[^\x00-\x1f\x7f]{1,100}\Z"
_NAME_HINT = ": names are 1 to 100 printable characters"


class _Wrap(Spec):
    """A shorthand: check with ``spec``, then turn the value into the long form with ``into``."""

    def __init__(self, spec: Spec, into) -> None:
        self.spec, self.into, self.expected = spec, into, spec.expected

    def check(self, node, cx, path, where):
        value = self.spec.check(node, cx, path, where)
        return INVALID if value is INVALID else self.into(value, node)


_name = Str(_NAME, _NAME_HINT)
_globs = ListOf(Str(), single=True, what="pattern")
_env = MapOf(what="environment variable name (letters, digits, _)")
_image = Image()


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
    "build": Field(build_stage), "deploy": Field(deploy_stage), "rollback": Field(rollback_stage),
    "approval": Field(approval),
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
    _ident = lazy(r"^[A-Za-z_][A-Za-z0-9_]*\Z")

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
    steps = sum(len(s.get("steps", ())) + sum(len(j.get("steps", ())) * len(j["matrix"]["combos"] if "matrix" in j
                                                                             else (1,)) for j in s.get("jobs", ()))
                for s in value["stages"])
    if steps > MAX_STEPS:
        cx.error(root.get("stages"), "too-large", f"the pipeline has {steps} steps (a matrix's once per combination); "
                 f"at most {MAX_STEPS} (split it into several pipelines in .conveyor/)", ".stages")
        return None
    before = cx.diags.errors
    check_needs(value, cx)
    check_environments(value, cx)
    if cx.diags.errors > before:
        return None
    return value
