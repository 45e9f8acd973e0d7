"""DeploySpec -> the engine's ServiceSpec (plain Engine API JSON), and applying a spec to a swarm.

The whole spec is built here, never merged with whatever the live service has, so a deploy is
reproducible from its row and a recorded spec can be re-applied as is (that is how rollback works:
docker-py has no ``rollback=previous`` and we do not depend on Swarm's one-step ``PreviousSpec``).
"""

from __future__ import annotations

import copy
import json
from typing import Any

from runner.engine import APIClient
from runner.engine import errors as derrors
from runner.errors import DeployError
from runner.plan import DeploySpec, Placement, UpdateConfig

__all__ = ["LABEL_MANAGED", "LABEL_DEPLOY", "LABEL_INSTANCE", "LABEL_STACK", "service_spec", "apply_spec",
           "task_key", "with_deploy_label", "warnings_for"]

LABEL_MANAGED = "io.conveyor.managed"
LABEL_DEPLOY = "io.conveyor.deploy"  # id of the deploy row whose spec this is
LABEL_INSTANCE = "io.conveyor.instance"
LABEL_STACK = "com.docker.stack.namespace"  # the label `docker stack` uses, so its tools see our stacks
NS = 1_000_000_000


def _ns(seconds: float) -> int:
    return int(round(seconds * NS))


def _update_config(cfg: UpdateConfig, rollback: bool) -> dict[str, Any]:
    if cfg.order not in ("start-first", "stop-first"):
        raise DeployError(f"update order {cfg.order!r} is not start-first or stop-first")
    allowed = ("pause", "continue") if rollback else ("rollback", "pause", "continue")
    if cfg.failure_action not in allowed:
        raise DeployError(f"failure_action {cfg.failure_action!r} must be one of {', '.join(allowed)}")
    return {
        "Parallelism": cfg.parallelism,
        "Delay": _ns(cfg.delay),
        "FailureAction": cfg.failure_action,
        "Monitor": _ns(cfg.monitor),
        "MaxFailureRatio": cfg.max_failure_ratio,
        "Order": cfg.order,
    }


def service_spec(spec: DeploySpec, name: str, image: str, labels: dict[str, str] | None = None) -> dict[str, Any]:
    """The full Engine API ServiceSpec for one service of ``spec``."""
    container: dict[str, Any] = {"Image": image, "Labels": dict(spec.labels)}
    if spec.env:
        container["Env"] = [f"{k}={v}" for k, v in spec.env.items()]
    if spec.command is not None:
        container["Args"] = list(spec.command)  # like Compose `command`: replaces the image's CMD
    if spec.healthcheck is not None:
        hc = spec.healthcheck
        container["Healthcheck"] = {"Test": ["CMD-SHELL", hc.cmd], "Interval": _ns(hc.interval),
                                    "Timeout": _ns(hc.timeout), "Retries": hc.retries,
                                    "StartPeriod": _ns(hc.start_period)}
    limits: dict[str, int] = {}
    if spec.cpus is not None:
        limits["NanoCPUs"] = int(spec.cpus * NS)
    if spec.memory is not None:
        limits["MemoryBytes"] = int(spec.memory)
    task: dict[str, Any] = {
        "ContainerSpec": container,
        # A crashing task is restarted after 5 s, like `docker service create`'s default condition.
        "RestartPolicy": {"Condition": "any", "Delay": 5 * NS, "MaxAttempts": 0},
        "ForceUpdate": 0,
    }
    if limits:
        task["Resources"] = {"Limits": limits}
    placement = _placement(spec.placement)
    if placement:
        task["Placement"] = placement
    if spec.networks:
        task["Networks"] = [{"Target": n} for n in spec.networks]
    endpoint: dict[str, Any] = {"Mode": spec.endpoint_mode or "vip"}
    if endpoint["Mode"] not in ("vip", "dnsrr"):
        raise DeployError(f"endpoint_mode {spec.endpoint_mode!r} must be vip or dnsrr")
    if spec.ports:
        endpoint["Ports"] = [{"Protocol": p.protocol, "TargetPort": p.target, "PublishedPort": p.published,
                              "PublishMode": "host" if p.mode == "host" else "ingress"} for p in spec.ports]
    if spec.replicas < 0:
        raise DeployError(f"replicas must be 0 or more, not {spec.replicas}")
    all_labels = {**spec.labels, **(labels or {}), LABEL_MANAGED: "1"}
    return {
        "Name": name,
        "Labels": all_labels,
        "TaskTemplate": task,
        "Mode": {"Replicated": {"Replicas": spec.replicas}},
        "UpdateConfig": _update_config(spec.update, rollback=False),
        "RollbackConfig": _update_config(spec.rollback, rollback=True),
        "EndpointSpec": endpoint,
    }


def _placement(p: Placement) -> dict[str, Any]:
    """Swarm's Placement; empty when nothing is asked, so a spec without it stays as it was."""
    out: dict[str, Any] = {}
    if p.constraints:
        out["Constraints"] = list(p.constraints)
    if p.preferences:
        out["Preferences"] = [{"Spread": {"SpreadDescriptor": d}} for d in p.preferences]
    if p.max_replicas_per_node:
        out["MaxReplicas"] = p.max_replicas_per_node
    return out


def with_deploy_label(spec: dict[str, Any], deploy_id: int) -> dict[str, Any]:
    """A copy of ``spec`` whose service labels name the deploy row that applied it (service labels
    only: changing them does not restart tasks)."""
    out = copy.deepcopy(spec)
    out.setdefault("Labels", {})
    out["Labels"] = {**(out["Labels"] or {}), LABEL_DEPLOY: str(deploy_id)}
    return out


def task_key(task_template: dict[str, Any]) -> str:
    """What decides whether a task runs a given spec version (tasks do not carry the engine's
    ``Runtime`` default, so the whole template cannot be compared)."""
    t = task_template or {}
    return json.dumps([t.get("ContainerSpec"), t.get("ForceUpdate", 0), t.get("Resources")], sort_keys=True)


def apply_spec(api: APIClient, spec: dict[str, Any], current: dict[str, Any] | None) -> int:
    """Blocking: create the service, or update ``current`` (its inspect output) to exactly ``spec``.
    Returns the service's version index after the write."""
    name = spec["Name"]
    kwargs = dict(task_template=spec["TaskTemplate"], labels=spec.get("Labels") or {}, mode=spec.get("Mode"),
                  update_config=spec.get("UpdateConfig"), rollback_config=spec.get("RollbackConfig"),
                  endpoint_spec=spec.get("EndpointSpec") or {"Mode": "vip"})
    try:
        if current is None:
            api.create_service(name=name, **kwargs)
        else:
            api.update_service(current["ID"], current["Version"]["Index"], name=name, **kwargs)
        return api.inspect_service(name)["Version"]["Index"]
    except derrors.APIError as exc:
        raise DeployError(f"the swarm refused service {name!r}: {exc.explanation or exc}") from exc


def warnings_for(spec: DeploySpec) -> list[str]:
    """Lint-level warnings about a deploy (also logged when the stage runs)."""
    out = []
    hc = spec.healthcheck
    if hc is not None:
        # A task is unhealthy at the earliest after start_period + retries * (interval + timeout)
        # (the engine counts a probe that times out as a failure); a shorter monitor lets Swarm
        # declare the update a success before the health check could have failed.
        can_fail_in = hc.start_period + hc.retries * (hc.interval + hc.timeout)
        if spec.update.monitor < can_fail_in:
            out.append(f"update.monitor is {spec.update.monitor:g}s but the health check can take up to "
                       f"{can_fail_in:g}s to fail (start_period + retries x (interval + timeout)); "
                       f"set monitor to at least {can_fail_in:g}s or a failing version may be kept")
    host_ports = [p for p in spec.ports if p.mode == "host"]
    if host_ports and spec.update.order == "start-first":
        out.append("start-first with host-mode ports needs a free node per new task (a port can be bound once "
                   "per node); on a single node use order: stop-first, or endpoint_mode: dnsrr on a network")
    return out
