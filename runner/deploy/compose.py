"""A Compose file (already rendered by Jinja) -> one DeploySpec per service of a stack.

The subset a Swarm stack uses: ``image``, ``command``, ``environment``, ``ports`` (short and long
form; host mode unless ``mode: ingress`` is written, see docs/deploy.md), ``networks``,
``healthcheck``, ``labels`` and ``deploy`` (``replicas``, ``update_config``, ``rollback_config``,
``resources.limits``, ``labels``, ``endpoint_mode``). Names follow ``docker stack deploy``: service
``web`` of stack ``shop`` is ``shop_web``; networks are ``shop_NAME`` unless ``external``; services
without ``networks`` join ``shop_default``. ``build:`` is refused: build in a ``build`` stage.
"""

from __future__ import annotations

import re
import shlex
from typing import Any

import yaml

from runner.errors import DeployError
from runner.plan import DeploySpec, Healthcheck, Port, UpdateConfig

__all__ = ["parse_compose", "parse_duration", "parse_bytes"]

_DUR = re.compile(r"(\d+(?:\.\d+)?)(ns|us|ms|s|m|h)")
_UNITS = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(value: Any, where: str) -> float:
    if isinstance(value, (int, float)):
        return float(value)
    text = str(value).strip()
    parts = _DUR.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise DeployError(f"{where}: {value!r} is not a duration like 10s, 1m30s or 500ms")
    return sum(float(n) * _UNITS[u] for n, u in parts)


def parse_bytes(value: Any, where: str) -> int:
    if isinstance(value, int):
        return value
    m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([kmgt]?)i?b?", str(value).strip().lower())
    if not m:
        raise DeployError(f"{where}: {value!r} is not a size like 64M or 1G")
    return int(float(m.group(1)) * 1024 ** " kmgt".index(m.group(2) or " "))


def _port(item: Any, where: str) -> Port:
    if isinstance(item, dict):
        try:
            return Port(int(item["published"]), int(item["target"]), item.get("protocol", "tcp"),
                        item.get("mode", "host"))
        except (KeyError, ValueError) as exc:
            raise DeployError(f"{where}: a port needs published and target numbers") from exc
    m = re.fullmatch(r"(?:[\d.]+:)?(\d+):(\d+)(?:/(tcp|udp))?", str(item))
    if not m:
        raise DeployError(f"{where}: port {item!r} is not PUBLISHED:TARGET[/udp] (a swarm needs both)")
    return Port(int(m.group(1)), int(m.group(2)), m.group(3) or "tcp")


def _update(cfg: Any, where: str, rollback: bool) -> UpdateConfig:
    cfg = cfg or {}
    base = UpdateConfig(failure_action="pause") if rollback else UpdateConfig()
    return UpdateConfig(order=cfg.get("order", base.order), parallelism=int(cfg.get("parallelism", base.parallelism)),
                        delay=parse_duration(cfg.get("delay", base.delay), f"{where}.delay"),
                        monitor=parse_duration(cfg.get("monitor", base.monitor), f"{where}.monitor"),
                        failure_action=cfg.get("failure_action", base.failure_action),
                        max_failure_ratio=float(cfg.get("max_failure_ratio", base.max_failure_ratio)))


def _healthcheck(hc: Any, where: str) -> Healthcheck | None:
    if not hc or hc.get("disable"):
        return None
    test = hc.get("test")
    if isinstance(test, list):
        if test[:1] == ["CMD-SHELL"]:
            cmd = " ".join(test[1:])
        elif test[:1] == ["CMD"]:
            cmd = shlex.join(test[1:])
        else:
            raise DeployError(f"{where}.test: start a list with CMD or CMD-SHELL")
    elif isinstance(test, str):
        cmd = test
    else:
        raise DeployError(f"{where}: a healthcheck needs `test`")
    return Healthcheck(cmd, parse_duration(hc.get("interval", 5), f"{where}.interval"),
                       parse_duration(hc.get("timeout", 3), f"{where}.timeout"), int(hc.get("retries", 3)),
                       parse_duration(hc.get("start_period", 0), f"{where}.start_period"))


def _env(value: Any) -> dict[str, str]:
    if isinstance(value, dict):
        return {str(k): "" if v is None else str(v) for k, v in value.items()}
    return dict((item.split("=", 1) + [""])[:2] for item in value or [])


def parse_compose(text: str, stack: str, base: DeploySpec,
                  file: str = "docker-compose.yml") -> tuple[dict[str, DeploySpec], dict[str, bool]]:
    """(service name -> DeploySpec, network name -> external?) for every service of the file."""
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise DeployError(f"{file}: not valid YAML: {exc}") from exc
    if not isinstance(doc, dict) or not isinstance(doc.get("services"), dict) or not doc["services"]:
        raise DeployError(f"{file}: needs a `services:` mapping with at least one service")
    nets, externals = {}, set()
    for name, cfg in (doc.get("networks") or {}).items():
        external = bool((cfg or {}).get("external"))
        nets[name] = ((cfg or {}).get("name") or name) if external else f"{stack}_{name}"
        if external:
            externals.add(nets[name])
    out: dict[str, DeploySpec] = {}
    used: dict[str, bool] = {}
    for svc, cfg in doc["services"].items():
        where = f"{file}: services.{svc}"
        cfg = cfg or {}
        if "build" in cfg:
            raise DeployError(f"{where}: `build` is not done by a deploy; build the image in a build stage and "
                              "name it in `image`")
        if not cfg.get("image"):
            raise DeployError(f"{where}: needs an `image`")
        dep = cfg.get("deploy") or {}
        limits = ((dep.get("resources") or {}).get("limits")) or {}
        svc_nets = cfg.get("networks") or ["default"]
        names = []
        for n in (svc_nets if isinstance(svc_nets, list) else list(svc_nets)):
            real = nets.get(n, f"{stack}_{n}")
            used[real] = real in externals
            names.append(real)
        command = cfg.get("command")
        out[f"{stack}_{svc}"] = DeploySpec(
            service=f"{stack}_{svc}", image=str(cfg["image"]), replicas=int(dep.get("replicas", 1)),
            env=_env(cfg.get("environment")),
            command=tuple(shlex.split(command) if isinstance(command, str) else command) if command else None,
            ports=tuple(_port(p, f"{where}.ports") for p in cfg.get("ports") or ()),
            networks=tuple(names), healthcheck=_healthcheck(cfg.get("healthcheck"), f"{where}.healthcheck"),
            cpus=float(limits["cpus"]) if "cpus" in limits else None,
            memory=parse_bytes(limits["memory"], f"{where}.memory") if "memory" in limits else None,
            labels={**_env(dep.get("labels")), "com.docker.stack.namespace": stack},
            update=_update(dep.get("update_config"), f"{where}.deploy.update_config", False),
            rollback=_update(dep.get("rollback_config"), f"{where}.deploy.rollback_config", True),
            target=base.target, timeout=base.timeout, stack=stack, endpoint_mode=dep.get("endpoint_mode"))
    return out, used
