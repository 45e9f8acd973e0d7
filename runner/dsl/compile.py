"""Checked pipeline + Context -> frozen Plan.

Decided here, once: which stages the branch/tag/event filters skip (``Stage.skip_reason``), the
defaults (image, env, timeouts), the full environment of every job (plan env with ``CI_*``, stage
env, job env, ``CI_STAGE_NAME``/``CI_JOB_NAME``/``CI_WORKSPACE``), step names, and whether the
file's ``on:`` lets this event start a build at all. Only ``when.status`` is left for run time.
"""

from __future__ import annotations

import shlex
from functools import lru_cache

from runner.context import Context
from runner.dsl.lint import healthcheck_window
from runner.dsl.model import Cx
from runner.plan import (BuildSpec, DeploySpec, Healthcheck, Job, Plan, Port, Post, RollbackSpec, Stage,
                         Step, UpdateConfig, Verify, When)

__all__ = ["compile_plan", "glob_match", "matches", "trigger_decision", "DEFAULT_EVENTS"]

DEFAULT_EVENTS = ("push", "tag", "manual")  # without `on:`: every push (tags are pushes too) and manual run


@lru_cache(maxsize=256)
def _glob_tokens(pattern: str) -> tuple[str, ...]:
    tokens, i = [], 0
    while i < len(pattern):
        if pattern.startswith("**", i):
            tokens.append("**")
            i += 2
        else:
            tokens.append(pattern[i] if pattern[i] in "*?" else "=" + pattern[i])
            i += 1
    return tuple(tokens)


def glob_match(pattern: str, text: str) -> bool:
    """'*' stays within one path segment, '**' crosses '/', '?' is one character.

    Matched by sweeping the set of reachable positions (O(pattern * text)), not by a backtracking
    regex: a pattern comes from the pipeline file and must not be able to stall the runner."""
    n = len(text)
    reach = [True] + [False] * n  # reach[j]: the tokens so far can match text[:j]
    for token in _glob_tokens(pattern):
        new = [False] * (n + 1)
        if token == "**":
            first = reach.index(True) if True in reach else n + 1
            new[first:] = [True] * (n + 1 - first)
        elif token == "*":
            for j in range(n + 1):
                new[j] = reach[j] or (j > 0 and new[j - 1] and text[j - 1] != "/")
        else:
            for j in range(n):
                if reach[j] and (text[j] == token[1:] if token[0] == "=" else text[j] != "/"):
                    new[j + 1] = True
        reach = new
        if not any(reach):
            return False
    return reach[n]


def matches(patterns: list[str], text: str | None) -> bool:
    """Any positive pattern matches (or there are none) and no '!pattern' does."""
    if text is None:
        return False
    include = [p for p in patterns if not p.startswith("!")]
    exclude = [p[1:] for p in patterns if p.startswith("!")]
    return (not include or any(glob_match(p, text) for p in include)) and not any(glob_match(p, text) for p in exclude)


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


def _skip_reason(when: dict, ctx: Context) -> str | None:
    if "event" in when and ctx.event not in when["event"]:
        return f"event {ctx.event} is not in when.event ({', '.join(when['event'])})"
    if "branch" in when and not matches(when["branch"], ctx.git.branch):
        on = f"branch '{ctx.git.branch}'" if ctx.git.branch else "the build is not on a branch and"
        return f"{on} does not match when.branch ({', '.join(when['branch'])})"
    if "tag" in when and not matches(when["tag"], ctx.git.tag):
        on = f"tag '{ctx.git.tag}'" if ctx.git.tag else "the build has no tag and"
        return f"{on} does not match when.tag ({', '.join(when['tag'])})"
    return None


def _step_name(run: str) -> str:
    line = next((ln.strip() for ln in run.splitlines() if ln.strip()), "step")
    return line if len(line) <= 60 else line[:57] + "..."


def _steps(raw: list[dict]) -> tuple[Step, ...]:
    taken = {s["name"] for s in raw if "name" in s}
    steps = []
    for s in raw:
        name = s.get("name")
        if name is None:  # a shell string: named after its first line, made unique within the job
            base = name = _step_name(s["run"])
            n = 2
            while name in taken:
                name, n = f"{base} ({n})", n + 1
            taken.add(name)
        steps.append(Step(name=name, run=s["run"], timeout=s.get("timeout"), retry=s.get("retry", 0),
                          env=dict(s.get("env", {}))))
    return tuple(steps)


class _Compiler:
    def __init__(self, value: dict, ctx: Context, cx: Cx) -> None:
        self.value, self.ctx, self.cx = value, ctx, cx
        self.env = {**ctx.ci_env(), **value.get("env", {})}
        self.image = value.get("image")

    def job(self, raw: dict, name: str, stage_name: str, stage_env: dict, image: str | None, timeout) -> Job | None:
        image = raw.get("image") or image
        if image is None:
            self.cx.error(raw["__node__"], "no-image", f"job '{name}' has no image: set 'image' in the job, "
                          "its stage or at the top of the file", "")
            return None
        workdir = raw.get("workdir", "/workspace")
        env = {**stage_env, **raw.get("env", {}), "CI_STAGE_NAME": stage_name, "CI_JOB_NAME": name,
               "CI_WORKSPACE": workdir}
        return Job(name=name, image=image, steps=_steps(raw["steps"]), env=env,
                   timeout=raw.get("timeout", timeout), workdir=workdir, privileged=raw.get("privileged", False),
                   volumes=tuple(raw.get("volumes", ())))

    def stage(self, raw: dict) -> Stage:
        name = raw["name"]
        when = raw.get("when", {})
        status = tuple(when.get("status", ("success",)))
        image = raw.get("image") or self.image
        env = {**self.env, **raw.get("env", {})}
        common = dict(name=name, when=When(status=("always",) if "always" in status else status),
                      skip_reason=_skip_reason(when, self.ctx), image=image)
        if "steps" in raw:
            job = self.job({**raw, "image": image}, name, name, env, image, raw.get("timeout"))
            return Stage(kind="jobs", jobs=(job,) if job else (), **common)
        if "jobs" in raw:
            jobs = [self.job(j, j["name"], name, env, image, raw.get("timeout")) for j in raw["jobs"]]
            return Stage(kind="jobs", jobs=tuple(j for j in jobs if j), **common)
        if "build" in raw:
            b = raw["build"]
            spec = BuildSpec(tag=b["tag"], context=b.get("context", "."), dockerfile=b.get("dockerfile", "Dockerfile"),
                             args=dict(b.get("args", {})), target=b.get("target"),
                             timeout=b.get("timeout", raw.get("timeout")))
            return Stage(kind="build", build=spec, **common)
        if "deploy" in raw:
            return Stage(kind="deploy", deploy=self.deploy(raw["deploy"], image), **common)
        r = raw["rollback"]
        spec = RollbackSpec(service=r.get("service"), stack=r.get("stack"), to=r.get("to"), target=r.get("target"),
                            timeout=r.get("timeout", 300.0))
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
        return DeploySpec(
            service=d.get("service"), image=d.get("image"), replicas=d.get("replicas", 1), env=dict(d.get("env", {})),
            command=tuple(command) if command is not None else None, ports=ports, networks=tuple(d.get("networks", ())),
            healthcheck=hc, cpus=res.get("cpus"), memory=res.get("memory"), labels=dict(d.get("labels", {})),
            update=UpdateConfig(**update), rollback=UpdateConfig(**rollback), verify=verify, target=d.get("target"),
            timeout=d.get("timeout", 300.0), stack=d.get("stack"), compose=d.get("compose"),
            endpoint_mode=d.get("endpoint_mode"),
        )

    def post(self) -> Post:
        blocks = {}
        for block in ("always", "success", "failure"):
            raw = (self.value.get("post") or {}).get(block)
            if raw is None:
                blocks[block] = ()
                continue
            stage_name = f"post:{block}"
            job = self.job(raw, block, stage_name, self.env, self.image, raw.get("timeout"))
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
                timeout=value.get("timeout"), trusted=trusted, source=source)


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
