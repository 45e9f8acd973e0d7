"""Environments at deploy time: what a deploy to ``environment: NAME`` becomes, who may deploy there,
and what is live in each environment now (the environments page, ``GET /api/environments``).

An environment names a target and adjusts what is deployed there by its own settings only: the
service name gets the environment's ``suffix`` (so staging and production may share one swarm),
every service gets the environment's ``env`` variables, and the label below names it. A stack's
*stack name* gets the suffix (``shop`` -> ``shop-staging``), so its services, networks, volumes,
secrets and configs (all named ``<stack>_<name>``) are apart from another environment's.
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

from runner.deploy import history
from runner.deploy.config import Environment
from runner.errors import DeployError
from runner.plan import DeploySpec
from runner.store.db import Store

__all__ = ["LABEL_ENVIRONMENT", "for_environment", "adjust_stack_spec", "check_branch", "check_approved", "adjust_recorded", "live_in", "overview"]

LABEL_ENVIRONMENT = "io.conveyor.environment"


def for_environment(spec: DeploySpec, env: Environment) -> DeploySpec:
    """The deploy as it runs in ``env``."""
    if spec.target and spec.target != env.target:
        raise DeployError(f"the deploy names target {spec.target!r}, but environment {env.name!r} deploys to target "
                          f"{env.target!r}: drop `target:` (the environment decides it)")
    return dataclasses.replace(
        spec, service=env.service(spec.service) if spec.service else None, env={**spec.env, **env.env},
        stack=env.service(spec.stack) if spec.stack else None,  # the same suffix rule as a service's name
        target=env.target, labels={**spec.labels, LABEL_ENVIRONMENT: env.name})


def adjust_stack_spec(spec: dict[str, Any], env: Environment) -> dict[str, Any]:
    """A stack service's spec as it runs in ``env``: the environment's variables and its label added
    (the name already carries the suffix, through the stack name)."""
    out = copy.deepcopy(spec)
    out["Labels"] = {**(out.get("Labels") or {}), LABEL_ENVIRONMENT: env.name}
    container = out["TaskTemplate"]["ContainerSpec"]
    if env.env:
        container["Env"] = _env_list(container.get("Env"), {}, env.env)
    container["Labels"] = {**(container.get("Labels") or {}), LABEL_ENVIRONMENT: env.name}
    return out


def check_branch(env: Environment, branch: str | None, tag: str | None) -> None:
    if env.allows(branch):
        return
    this = f"branch {branch}" if branch else f"tag {tag}" if tag else "no branch"
    raise DeployError(f"environment {env.name!r} takes deploys only from branch(es) {', '.join(env.branches)}; this "
                      f"build is of {this}: deploy there from an allowed branch, or promote a deploy that came from one")


def check_approved(env: Environment, approvals) -> None:
    """An environment with ``approvers`` takes a deploy only from a build in which an ``approval``
    stage that those approvers alone could answer was approved (``approvals``: the build's rows).
    Lint asks for such a stage; this is what holds at run time, when the stage was skipped by a
    filter, rejected, or asked others."""
    if not env.approvers:
        return
    wanted = set(env.approvers)
    for a in approvals:
        if a.decision == "approved" and a.approvers and set(a.approvers) <= wanted:
            return
    raise DeployError(f"environment {env.name!r} needs an approval by {', '.join(env.approvers)} before its deploy, "
                      "and this build has none approved: add an `approval` stage with those approvers before the "
                      "deploy (or promote a deploy that was approved)")


def _env_list(env: list[str] | None, drop: dict[str, str], add: dict[str, str]) -> list[str]:
    """Replace the variables one environment set with another's, keeping everything else in order."""
    kept = [e for e in env or [] if e.split("=", 1)[0] not in drop and e.split("=", 1)[0] not in add]
    return kept + [f"{k}={v}" for k, v in add.items()]


def adjust_recorded(spec: dict[str, Any], source: Environment, dest: Environment, service: str) -> dict[str, Any]:
    """A recorded ServiceSpec of ``source`` as it runs in ``dest``: the same image digest, command,
    resources and update policy; only the name, the environment's variables and its label change."""
    out = copy.deepcopy(spec)
    out["Name"] = dest.service(service)
    labels = {**(out.get("Labels") or {}), LABEL_ENVIRONMENT: dest.name}
    labels.pop("io.conveyor.deploy", None)  # the new row's id is put on when it is applied
    out["Labels"] = labels
    container = out["TaskTemplate"]["ContainerSpec"]
    container["Env"] = _env_list(container.get("Env"), source.env, dest.env)
    if not container["Env"]:
        container.pop("Env")
    container["Labels"] = {**(container.get("Labels") or {}), LABEL_ENVIRONMENT: dest.name}
    return out


async def live_in(store: Store, env: Environment, service: str) -> history.Deploy | None:
    """The deploy whose spec runs in ``env`` for ``service``, or None when nothing was deployed there."""
    return await history.live(store, env.target, env.service(service))


def _brief(row: dict) -> dict[str, Any]:
    return {k: row.get(k) for k in ("id", "kind", "status", "image", "digest", "build_number", "repo", "commit_sha",
                                    "trigger", "started", "finished", "reason", "promoted_from", "rollback_of")}


def _base_name(env: Environment, row: dict) -> tuple[str, str | None]:
    """A deployed service's name without its environment's suffix, and its stack's (None: not a
    stack): ``web-staging`` -> ``web``; ``shop-staging_web`` of stack ``shop-staging`` -> ``shop_web``, ``shop``."""
    stack = row.get("stack")
    if stack and row["service"].startswith(stack + "_"):
        base = env.base(stack)
        return base + row["service"][len(stack):], base
    return env.base(row["service"]), None


async def overview(store: Store, environments: dict[str, Environment], last: int = 5) -> list[dict[str, Any]]:
    """Per service and environment: what is live there (digest, commit, build, when, by whom) and the
    last deploys. Services are named without their environment's suffix; a stack's carry ``stack``."""

    def read(conn) -> list[dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for env in environments.values():
            for row in history.in_environment(conn, env.name, env.target):
                base, stack = _base_name(env, row)
                cell = out.setdefault(base, {"service": base, "stack": stack, "environments": {}})["environments"].setdefault(
                    env.name, {"service": row["service"], "live": None, "deploys": []})
                if len(cell["deploys"]) < last:
                    cell["deploys"].append(_brief(row))
                if cell["live"] is None and row["status"] == "succeeded" and row["spec_after"]:
                    cell["live"] = _brief(row)
        return [out[k] for k in sorted(out)]

    return await store.aread(read)
