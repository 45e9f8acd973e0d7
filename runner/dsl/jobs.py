"""Checked jobs -> plan ``Job``s: step names, env, matrix combinations, needs, services, own ``when``.

A job with a ``matrix`` becomes one ``Job`` per combination, named ``unit [py=3.11, db=pg]``, with
the axis values as env vars (they win over the job's env) and ``${axis}`` replaced in its image
and services. ``needs: [unit]`` expands to every combination of ``unit``; a combination's own name
works too.
"""

from __future__ import annotations

from runner.context import Context
from runner.dsl.filters import changes_decision, skip_reason
from runner.dsl.matrix import combination_name, expand
from runner.dsl.model import Cx
from runner.plan import AllowFailure, Artifacts, Cache, Job, Matrix, Ready, Reports, Service, Step, When

__all__ = ["JobCompiler"]


def _step_name(run: str) -> str:
    line = next((ln.strip() for ln in run.splitlines() if ln.strip()), "step")
    return line if len(line) <= 60 else line[:57] + "..."


def _steps(raw: list[dict]) -> tuple[Step, ...]:
    taken = {s["name"] for s in raw if "name" in s}
    suffix: dict[str, int] = {}  # per base name, the next number to try: linear, however many repeat
    steps = []
    for s in raw:
        name = s.get("name")
        if name is None:  # a shell string: named after its first line, made unique within the job
            base = name = _step_name(s["run"])
            n = suffix.get(base, 2)
            while name in taken:
                name, n = f"{base} ({n})", n + 1
            suffix[base] = n
            taken.add(name)
        steps.append(Step(name=name, run=s["run"], timeout=s.get("timeout"), retry=s.get("retry", 0),
                          env=dict(s.get("env", {}))))
    return tuple(steps)


def _services(stage: dict, job: dict, combo: dict[str, str]) -> tuple[Service, ...]:
    merged = {**(stage.get("services") or {}), **(job.get("services") or {})}  # the job's own win by name
    out = []
    for name, s in merged.items():
        r = s.get("ready")
        ready = Ready(tcp=r.get("tcp"), cmd=r.get("cmd"), within=r["within"]) if r else None
        command = s.get("command")
        out.append(Service(name=name, image=expand(s["image"], combo),
                           command=expand(command, combo) if command is not None else None,
                           env={k: expand(v, combo) for k, v in s.get("env", {}).items()}, ready=ready))
    return tuple(out)


def _allow_failure(value) -> AllowFailure | None:
    if value is True:
        return AllowFailure()
    if isinstance(value, dict):
        return AllowFailure(exit_codes=tuple(value["exit_codes"]))
    return None


def _keeps(raw: dict) -> dict:
    """The job's ``artifacts``, ``cache`` and ``reports`` as plan types."""
    out: dict = {}
    if a := raw.get("artifacts"):
        out["artifacts"] = Artifacts(paths=tuple(a["paths"]), expire_in=a.get("expire_in"),
                                     when=a.get("when", "on_success"))
    caches = []
    for c in raw.get("cache") or ():
        key = c.get("key", "default")
        files = prefix = None
        if isinstance(key, dict):
            files, prefix, key = tuple(key["files"]), key.get("prefix"), None
        caches.append(Cache(paths=tuple(c["paths"]), key=key, files=files or (), prefix=prefix,
                            policy=c.get("policy", "pull-push"), fallback_keys=tuple(c.get("fallback_keys", ()))))
    if caches:
        out["cache"] = tuple(caches)
    if r := raw.get("reports"):
        out["reports"] = Reports(junit=tuple(r["junit"]))
    return out


class JobCompiler:
    def __init__(self, value: dict, ctx: Context, cx: Cx) -> None:
        self.ctx, self.cx = ctx, cx
        self.groups: dict[str, list[str]] = {}  # authored name -> concrete job names (a matrix: all of them)
        for stage in value["stages"]:
            for job in stage.get("jobs", ()):
                combos = (job.get("matrix") or {}).get("combos")
                self.groups[job["name"]] = [combination_name(job["name"], c) for c in combos] if combos else [job["name"]]

    def job(self, raw: dict, name: str, stage_name: str, env: dict, image: str | None, timeout, **extra) -> Job | None:
        if image is None:
            self.cx.error(raw["__node__"], "no-image", f"job '{name}' has no image: set 'image' in the job, "
                          "its stage or at the top of the file", "")
            return None
        workdir = raw.get("workdir", "/workspace")
        env = {**env, "CI_STAGE_NAME": stage_name, "CI_JOB_NAME": name, "CI_WORKSPACE": workdir}
        return Job(name=name, image=image, steps=_steps(raw["steps"]), env=env, timeout=raw.get("timeout", timeout),
                   workdir=workdir, privileged=raw.get("privileged", False), volumes=tuple(raw.get("volumes", ())),
                   **extra)

    def _needs(self, raw: dict) -> tuple[str, ...] | None:
        if "needs" not in raw:
            return None
        names = [concrete for want in raw["needs"] for concrete in self.groups.get(want, [want])]
        return tuple(dict.fromkeys(names))

    def compile(self, raw: dict, stage: dict, stage_env: dict, image: str | None,
                stage_decision: str | None) -> list[Job]:
        """The plan jobs of one authored job (several for a matrix)."""
        when = raw.get("when") or {}
        skip = skip_reason(when, self.ctx)
        decision = stage_decision
        if skip is None:
            skip, own = changes_decision(when, self.ctx)
            decision = "; ".join(d for d in (stage_decision, own) if d) or None
        status = tuple(when["status"]) if "status" in when else None
        common = dict(**_keeps(raw), needs=self._needs(raw), allow_failure=_allow_failure(raw.get("allow_failure")),
                      runs_on=tuple(raw.get("runs_on", ())), skip_reason=skip, decision=decision,
                      when=When(status=("always",) if "always" in status else status) if status else None)
        env = {**stage_env, **raw.get("env", {})}
        own_image = raw.get("image") or image
        matrix = raw.get("matrix")
        if matrix is None:
            job = self.job(raw, raw["name"], stage["name"], env, own_image, stage.get("timeout"),
                           services=_services(stage, raw, {}), **common)
            return [job] if job else []
        jobs = []
        for combo in matrix["combos"]:
            name = combination_name(raw["name"], combo)
            spec = Matrix(group=raw["name"], values=dict(combo), fail_fast=raw.get("fail_fast", True),
                          max_parallel=raw.get("max_parallel"))
            job = self.job(raw, name, stage["name"], {**env, **combo},
                           expand(own_image, combo) if own_image else None, stage.get("timeout"),
                           matrix=spec, services=_services(stage, raw, combo), **common)
            if job is None:
                return []
            jobs.append(job)
        return jobs
