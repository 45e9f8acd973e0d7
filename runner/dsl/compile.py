"""Checked pipeline + Context -> frozen Plan.

Decided here, once: which stages and jobs the branch/tag/event/changes filters skip
(``Stage.skip_reason``, ``Job.skip_reason``; ``Job.decision`` says which changed files matched), the
defaults (image, env, timeouts), the full environment of every job (plan env with ``CI_*``, stage
env, job env, matrix values, ``CI_STAGE_NAME``/``CI_JOB_NAME``/``CI_WORKSPACE``), step names, matrix
combinations and the ``needs`` they expand to, and whether the file's ``on:`` lets this event start
a build at all. Only ``when.status`` is left for run time.
"""

from __future__ import annotations

import shlex

from runner.context import Context
from runner.dsl.filters import changes_decision, glob_match, matches, skip_reason
from runner.dsl.jobs import JobCompiler
from runner.dsl.lint import healthcheck_window
from runner.dsl.model import Cx
from runner.plan import (ApprovalSpec, BuildSpec, DeploySpec, Healthcheck, Placement, Plan, Port, Post,
                         RollbackSpec, Stage, UpdateConfig, Verify, When)

__all__ = ["compile_plan", "glob_match", "matches", "trigger_decision", "skip_reason", "DEFAULT_EVENTS"]

DEFAULT_EVENTS = ("push", "tag", "manual")  # without `on:`: every push (tags are pushes too) and manual run


def trigger_decision(on: dict | None, ctx: Context) -> str | None:
    """None when the file's ``on:`` lets this event start a build, else the reason it does not."""
    if on is None:
        return None if ctx.event in DEFAULT_EVENTS else f"the pipeline has no 'on:' and {ctx.event} events need one"
    if ctx.event not in on:
        return f"'on:' does not list {ctx.event} events"
    rule = on[ctx.event] or {}
    ref = ctx.git.tag if ctx.event == "tag" else ctx.git.branch
    patterns = rule.get("patterns") or rule.get("tags" if ctx.event == "tag" else "branches")
    if patterns and not matches(patterns, ref):
        return f"{ctx.event} of '{ref}' does not match on.{ctx.event} ({', '.join(patterns)})"
    return None


class _Compiler:
    def __init__(self, value: dict, ctx: Context, cx: Cx) -> None:
        self.value, self.ctx, self.cx = value, ctx, cx
        self.env = {**ctx.ci_env(), **value.get("env", {})}
        self.image = value.get("image")
        self.jobs = JobCompiler(value, ctx, cx)

    def stage(self, raw: dict) -> Stage:
        name = raw["name"]
        when = raw.get("when", {})
        status = tuple(when.get("status", ("success",)))
        image = raw.get("image") or self.image
        env = {**self.env, **raw.get("env", {})}
        skip, decision = skip_reason(when, self.ctx), None
        if skip is None:
            skip, decision = changes_decision(when, self.ctx)
        common = dict(name=name, when=When(status=("always",) if "always" in status else status),
                      skip_reason=skip, image=image, env=dict(raw.get("env", {})))
        if "steps" in raw:
            job = {k: v for k, v in raw.items() if k not in ("when", "services")}
            jobs = self.jobs.compile(job, raw, env, image, decision)
            return Stage(kind="jobs", jobs=tuple(jobs), **common)
        if "jobs" in raw:
            jobs = [j for job in raw["jobs"] for j in self.jobs.compile(job, raw, env, image, decision)]
            return Stage(kind="jobs", jobs=tuple(jobs), **common)
        if "approval" in raw:
            a = raw["approval"]
            spec = ApprovalSpec(message=a.get("message", ""), approvers=tuple(a.get("approvers", ())),
                                timeout=a.get("timeout"))
            return Stage(kind="approval", approval=spec, **common)
        if "build" in raw:
            b = raw["build"]
            spec = BuildSpec(tag=b["tag"], context=b.get("context", "."), dockerfile=b.get("dockerfile", "Dockerfile"),
                             args=dict(b.get("args", {})), target=b.get("target"),
                             timeout=b.get("timeout", raw.get("timeout")), push=b.get("push"))
            return Stage(kind="build", build=spec, **common)
        if "deploy" in raw:
            return Stage(kind="deploy", deploy=self.deploy(raw["deploy"], image), **common)
        r = raw["rollback"]
        spec = RollbackSpec(service=r.get("service"), stack=r.get("stack"), to=r.get("to"), target=r.get("target"),
                            timeout=r.get("timeout", 300.0), environment=r.get("environment"))
        return Stage(kind="rollback", rollback=spec, **common)

    def deploy(self, d: dict, image: str | None) -> DeploySpec:
        health = d.get("healthcheck")
        hc = None
        if health:
            hc = Healthcheck(cmd=health["cmd"], interval=health.get("interval", 5.0), timeout=health.get("timeout", 3.0),
                             retries=health.get("retries", 3), start_period=health.get("start_period", 0.0))
        update = {k: v for k, v in (d.get("update") or {}).items() if k != "__node__"}
        if hc and "monitor" not in update:  # long enough to see a failing healthcheck
            update["monitor"] = max(UpdateConfig.monitor, healthcheck_window(health) + hc.interval)
        rollback = {"failure_action": "pause", **{k: v for k, v in (d.get("rollback") or {}).items() if k != "__node__"}}
        ports = tuple(Port(published=p["published"], target=p["target"], protocol=p.get("protocol", "tcp"),
                           mode=p.get("mode", "host")) for p in d.get("ports", ()))
        v = d.get("verify")
        verify = None
        if v:
            verify = Verify(http=v.get("http"), status=v.get("status", 200), command=v.get("command"),
                            image=v.get("image") or (image if v.get("command") else None), within=v.get("within", 30.0))
        command = d.get("command")
        if isinstance(command, str):
            command = shlex.split(command)
        res = d.get("resources", {})
        place = d.get("placement") or {}
        placement = Placement(constraints=tuple(c.replace(" ", "") for c in place.get("constraints", ())),
                              preferences=tuple(p["spread"] for p in place.get("preferences", ())),
                              max_replicas_per_node=place.get("max_replicas_per_node", 0))
        return DeploySpec(
            service=d.get("service"), image=d.get("image"), replicas=d.get("replicas", 1), env=dict(d.get("env", {})),
            command=tuple(command) if command is not None else None, ports=ports, networks=tuple(d.get("networks", ())),
            healthcheck=hc, cpus=res.get("cpus"), memory=res.get("memory"), labels=dict(d.get("labels", {})),
            update=UpdateConfig(**update), rollback=UpdateConfig(**rollback), verify=verify, target=d.get("target"),
            timeout=d.get("timeout", 300.0), stack=d.get("stack"), compose=d.get("compose"),
            endpoint_mode=d.get("endpoint_mode"), environment=d.get("environment"), placement=placement,
        )

    def post(self) -> Post:
        blocks = {}
        for block in ("always", "success", "failure"):
            raw = (self.value.get("post") or {}).get(block)
            if raw is None:
                blocks[block] = ()
                continue
            job = self.jobs.job(raw, block, f"post:{block}", {**self.env, **raw.get("env", {})},
                                raw.get("image") or self.image, raw.get("timeout"))
            blocks[block] = (job,) if job else ()
        return Post(**blocks)


def compile_plan(value: dict, ctx: Context, cx: Cx, *, source: str = ".conveyor.yml", trusted: bool = False) -> Plan | None:
    """The frozen plan, or None when compiling found errors (recorded in ``cx``)."""
    _check_params(value, ctx, cx)
    c = _Compiler(value, ctx, cx)
    stages = tuple(c.stage(s) for s in value["stages"])
    post = c.post()
    if cx.diags.has_errors:
        return None
    return Plan(name=value.get("name") or ctx.repo_name, stages=stages, post=post, env=c.env,
                timeout=value.get("timeout"), trusted=trusted, source=source, params=_params(value, ctx))


def _params(value: dict, ctx: Context) -> dict[str, str]:
    """The build's params as Jinja saw them: the declared defaults, then what was given."""
    declared = value.get("params") or {}
    defaults = {k: spec["default"] for k, spec in declared.items() if isinstance(spec.get("default"), str)}
    return {**defaults, **ctx.params}


def _check_params(value: dict, ctx: Context, cx: Cx) -> None:
    declared = value.get("params")
    if declared is None:
        return
    node = value["__node__"].entries["params"][0]  # the `params:` key
    for key in ctx.params:
        if key not in declared:
            cx.error(node, "param", f"param '{key}' was given but 'params:' does not declare it "
                     f"(declared: {', '.join(declared) or 'none'})", ".params")
    for key, spec in declared.items():
        given = ctx.params.get(key, spec.get("default"))
        if given is None:
            cx.error(spec["__node__"], "param", f"param '{key}' has no default and was not given: "
                     f"pass --param {key}=VALUE", f".params.{key}")
        elif "choices" in spec and given not in spec["choices"]:
            cx.error(spec["__node__"], "param", f"param '{key}' is '{given}', not one of its choices "
                     f"({', '.join(spec['choices'])})", f".params.{key}")
