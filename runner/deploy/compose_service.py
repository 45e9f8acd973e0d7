"""One Compose service -> the Swarm ServiceSpec ``docker stack deploy`` would write for it.

Field by field as docker/cli's ``cli/compose/convert`` does it (read there, not copied): names
scoped ``<stack>_<name>``, the stack label on the service and its containers, the image label,
environment sorted, ports sorted by published port, networks sorted by target with the service's
Compose name added as an alias on every stack network (that alias is how ``web:8080`` resolves
inside the stack), secrets and configs sorted by name. Absent keys stay absent, so the engine
fills in its own defaults exactly as it does for ``docker stack deploy``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from runner.deploy.compose_mounts import mounts
from runner.deploy.compose_values import (BadValue, duration_ns, env_list, mapping, nano_cpus, shell_words,
                                          size_bytes)

__all__ = ["convert_service", "network_name", "Problem"]

STACK_LABEL = "com.docker.stack.namespace"
IMAGE_LABEL = "com.docker.stack.image"
_NOT_USER_DEFINED = {"default", "bridge", "host", "none"}

Problem = Callable[[str, str], None]  # (dotted path, message)


def _caps(add: list, drop: list) -> tuple[list[str], list[str]]:
    def norm(c: str) -> str:
        c = str(c).strip().upper()
        return c if c in ("ALL", "RESET") or c.startswith("CAP_") else "CAP_" + c

    adds, drops = {norm(c) for c in add or ()}, {norm(c) for c in drop or ()}
    adds = {"ALL"} if "ALL" in adds else adds
    drops = {"ALL"} if "ALL" in drops else drops
    return sorted(adds - {"RESET"}), sorted(drops - adds - {"RESET"})


def _healthcheck(hc: dict) -> dict[str, Any]:
    if hc.get("disable"):
        if hc.get("test"):
            raise BadValue("`test` and `disable` cannot be set together")
        return {"Test": ["NONE"]}
    test = hc.get("test")
    out: dict[str, Any] = {}
    if test:
        out["Test"] = ["CMD-SHELL", test] if isinstance(test, str) else [str(t) for t in test]
    for key, field in (("timeout", "Timeout"), ("interval", "Interval"), ("start_period", "StartPeriod"),
                       ("start_interval", "StartInterval")):
        if hc.get(key) is not None and duration_ns(hc[key]):
            out[field] = duration_ns(hc[key])
    if hc.get("retries"):
        out["Retries"] = int(hc["retries"])
    return out


def _update(cfg: dict | None) -> dict[str, Any] | None:
    if cfg is None:
        return None
    out: dict[str, Any] = {"Parallelism": int(cfg.get("parallelism", 1))}
    if cfg.get("delay"):
        out["Delay"] = duration_ns(cfg["delay"])
    if cfg.get("failure_action"):
        out["FailureAction"] = cfg["failure_action"]
    if cfg.get("monitor"):
        out["Monitor"] = duration_ns(cfg["monitor"])
    if cfg.get("max_failure_ratio"):
        out["MaxFailureRatio"] = float(cfg["max_failure_ratio"])
    if cfg.get("order"):
        out["Order"] = cfg["order"]
    return out


def _resources(res: dict) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, field in (("limits", "Limits"), ("reservations", "Reservations")):
        if res.get(key) is None:
            continue
        part, r = {}, res[key]
        if r.get("cpus") is not None and nano_cpus(r["cpus"]):
            part["NanoCPUs"] = nano_cpus(r["cpus"])
        if r.get("memory") is not None and size_bytes(r["memory"]):
            part["MemoryBytes"] = size_bytes(r["memory"])
        if key == "limits" and r.get("pids"):
            part["Pids"] = int(r["pids"])
        if key == "reservations" and r.get("generic_resources"):
            part["GenericResources"] = [{"DiscreteResourceSpec": {"Kind": g["discrete_resource_spec"]["kind"],
                                                                  "Value": int(g["discrete_resource_spec"]["value"])}}
                                        for g in r["generic_resources"]]
        out[field] = part
    return out


def _restart(policy: dict | None, legacy: str | None) -> dict[str, Any] | None:
    if policy is not None:
        out: dict[str, Any] = {}
        if policy.get("condition"):
            out["Condition"] = policy["condition"]
        for key, field in (("delay", "Delay"), ("window", "Window")):
            if policy.get(key) is not None:
                out[field] = duration_ns(policy[key])
        if policy.get("max_attempts") is not None:
            out["MaxAttempts"] = int(policy["max_attempts"])
        return out
    if not legacy or legacy == "no":
        return None
    name, _, count = str(legacy).partition(":")
    condition = {"always": "any", "unless-stopped": "any", "on-failure": "on-failure"}.get(name)
    if condition is None:
        raise BadValue(f"restart {legacy!r} must be no, always, unless-stopped or on-failure[:N]")
    out = {"Condition": condition}
    if count and int(count) > 0:
        out["MaxAttempts"] = int(count)
    return out


def _ports(items: list) -> list[dict[str, Any]]:
    out = []
    for item in items or ():
        if isinstance(item, dict):
            out.append({"Protocol": item.get("protocol") or "tcp", "TargetPort": int(item["target"]),
                        "PublishedPort": int(item.get("published") or 0), "PublishMode": item.get("mode") or "ingress"})
            continue
        text, _, proto = str(item).partition("/")
        parts = text.split(":")
        target, published = parts[-1], parts[-2] if len(parts) > 1 else "0"
        t_lo, _, t_hi = target.partition("-")
        p_lo, _, p_hi = published.partition("-")
        if not (t_lo.isdigit() and p_lo.isdigit()):
            raise BadValue(f"port {item!r} is not [HOST:]PUBLISHED:TARGET[/PROTOCOL]")
        span = int(t_hi or t_lo) - int(t_lo)
        for i in range(span + 1):
            pub = int(p_lo) + i if int(p_lo) else 0
            out.append({"Protocol": proto or "tcp", "TargetPort": int(t_lo) + i, "PublishedPort": pub,
                        "PublishMode": "ingress"})
    return sorted(out, key=lambda p: p["PublishedPort"])


def _networks(svc_nets: Any, top: dict, stack: str, name: str) -> list[dict[str, Any]]:
    if not svc_nets:
        svc_nets = {"default": None}
    if isinstance(svc_nets, list):
        svc_nets = {n: None for n in svc_nets}
    out = []
    for net, cfg in svc_nets.items():
        if net not in top and net != "default":
            raise BadValue(f"network {net!r} is not defined in the top-level `networks`; add it there")
        target = network_name(net, top.get(net) or {}, stack)
        aliases = list((cfg or {}).get("aliases") or [])
        if target not in _NOT_USER_DEFINED and not target.startswith("container:"):
            aliases.append(name)
        att: dict[str, Any] = {"Target": target, "Aliases": aliases}
        if (cfg or {}).get("driver_opts"):
            att["DriverOpts"] = {str(k): str(v) for k, v in cfg["driver_opts"].items()}
        out.append(att)
    return sorted(out, key=lambda a: a["Target"])


def network_name(key: str, cfg: dict, stack: str) -> str:
    """``<stack>_<key>``, or the name written; an external network without one keeps its key."""
    ext = cfg.get("external")
    if ext:
        return (ext.get("name") if isinstance(ext, dict) else None) or cfg.get("name") or key
    return cfg.get("name") or f"{stack}_{key}"


def _hosts(value: Any) -> list[str]:
    if isinstance(value, dict):
        return [f"{ip} {host}" for host, ip in value.items()]
    out = []
    for item in value or ():
        host, sep, ip = str(item).replace("=", ":", 1).partition(":")
        if sep:
            out.append(f"{ip} {host}")
    return out


def _labels(value: Any) -> dict[str, str]:
    return {k: v or "" for k, v in mapping(value).items()}


def _as_list(value: Any) -> list[str]:
    return [str(v) for v in value] if isinstance(value, list) else [str(value)]


def _container(stack: str, cfg: dict, env: dict, refs: dict, problem: Problem, ctx: dict) -> dict[str, Any]:
    c: dict[str, Any] = {"Image": str(cfg["image"]),
                         "Labels": {**_labels(cfg.get("labels")), STACK_LABEL: stack},
                         # stack deploy always sends an empty Privileges; the engine keeps it as sent.
                         "Privileges": {"CredentialSpec": None, "SELinuxContext": None}}
    steps: list[tuple[str, Callable[[], None]]] = [
        ("entrypoint", lambda: c.__setitem__("Command", shell_words(cfg["entrypoint"]))),
        ("command", lambda: c.__setitem__("Args", shell_words(cfg["command"]))),
        ("hostname", lambda: c.__setitem__("Hostname", str(cfg["hostname"]))),
        ("extra_hosts", lambda: c.__setitem__("Hosts", _hosts(cfg["extra_hosts"]))),
        ("healthcheck", lambda: c.__setitem__("Healthcheck", _healthcheck(cfg["healthcheck"] or {}))),
        ("working_dir", lambda: c.__setitem__("Dir", str(cfg["working_dir"]))),
        ("user", lambda: c.__setitem__("User", str(cfg["user"]))),
        ("volumes", lambda: c.__setitem__("Mounts", mounts(cfg["volumes"], stack, ctx["volumes"], ctx["trusted"]))),
        ("stop_grace_period", lambda: c.__setitem__("StopGracePeriod", duration_ns(cfg["stop_grace_period"]))),
        ("stop_signal", lambda: c.__setitem__("StopSignal", str(cfg["stop_signal"]))),
        ("tty", lambda: c.__setitem__("TTY", bool(cfg["tty"]))),
        ("stdin_open", lambda: c.__setitem__("OpenStdin", bool(cfg["stdin_open"]))),
        ("read_only", lambda: c.__setitem__("ReadOnly", bool(cfg["read_only"]))),
        ("isolation", lambda: c.__setitem__("Isolation", str(cfg["isolation"]))),
        ("init", lambda: c.__setitem__("Init", bool(cfg["init"]))),
        ("sysctls", lambda: c.__setitem__("Sysctls", {k: v or "" for k, v in mapping(cfg["sysctls"]).items()})),
        ("ulimits", lambda: c.__setitem__("Ulimits", [
            {"Name": n, "Soft": int(u if isinstance(u, int) else u["soft"]),
             "Hard": int(u if isinstance(u, int) else u["hard"])} for n, u in sorted(cfg["ulimits"].items())])),
        ("oom_score_adj", lambda: c.__setitem__("OomScoreAdj", int(cfg["oom_score_adj"]))),
    ]
    for key, step in steps:
        if cfg.get(key) is not None:
            try:
                step()
            except (BadValue, KeyError, TypeError, ValueError, AttributeError) as exc:
                problem(key, str(exc) if isinstance(exc, BadValue) else f"is not valid here ({exc})")
    if env:
        c["Env"] = env_list(env)
    dns = {"Nameservers": _as_list(cfg.get("dns") or []), "Search": _as_list(cfg.get("dns_search") or [])}
    if dns["Nameservers"] or dns["Search"]:
        c["DNSConfig"] = {k: v for k, v in dns.items() if v}
    adds, drops = _caps(cfg.get("cap_add"), cfg.get("cap_drop"))
    if adds:
        c["CapabilityAdd"] = adds
    if drops:
        c["CapabilityDrop"] = drops
    for kind, key in (("secrets", "Secrets"), ("configs", "Configs")):
        if refs.get(kind):
            c[key] = refs[kind]
    return {k: v for k, v in c.items() if v not in ([], {}, "", None) or k in ("Labels", "Init", "Healthcheck", "Privileges")}


def _mode(dep: dict) -> dict[str, Any]:
    mode, replicas = dep.get("mode") or "replicated", dep.get("replicas")
    if mode in ("global", "global-job") and replicas is not None:
        raise BadValue("replicas can only be used with replicated or replicated-job mode")
    if mode == "global":
        return {"Global": {}}
    if mode == "global-job":
        return {"GlobalJob": {}}
    if mode == "replicated-job":
        return {"ReplicatedJob": {} if replicas is None else {"MaxConcurrent": int(replicas),
                                                               "TotalCompletions": int(replicas)}}
    if mode != "replicated":
        raise BadValue(f"mode {mode!r} must be replicated, global, replicated-job or global-job")
    return {"Replicated": {} if replicas is None else {"Replicas": int(replicas)}}


def convert_service(stack: str, name: str, cfg: dict, env: dict, refs: dict, ctx: dict,
                    problem: Problem) -> dict[str, Any]:
    """The ServiceSpec of service ``name``; each bad value goes to ``problem(key path, message)``.
    ``env``: environment (env_file merged); ``refs``: its secret and config references;
    ``ctx``: the top-level ``networks`` and ``volumes``, and whether the repository is ``trusted``."""
    dep = cfg.get("deploy") or {}
    task: dict[str, Any] = {"ContainerSpec": _container(stack, cfg, env, refs, problem, ctx)}

    def guarded(key: str, fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except (BadValue, KeyError, TypeError, ValueError, AttributeError) as exc:
            problem(key, str(exc) if isinstance(exc, BadValue) else f"is not valid here ({exc})")
            return None

    task["Resources"] = guarded("deploy.resources", lambda: _resources(dep.get("resources") or {})) or {}
    restart = guarded("deploy.restart_policy", lambda: _restart(dep.get("restart_policy"), cfg.get("restart")))
    if restart is not None:
        task["RestartPolicy"] = restart
    place = dep.get("placement") or {}
    task["Placement"] = {k: v for k, v in {
        "Constraints": [str(c) for c in place.get("constraints") or ()],
        "Preferences": [{"Spread": {"SpreadDescriptor": p["spread"]}} for p in place.get("preferences") or ()
                        if isinstance(p, dict) and p.get("spread")],
        "MaxReplicas": int(place.get("max_replicas_per_node") or 0)}.items() if v}
    task["Networks"] = guarded("networks", lambda: _networks(cfg.get("networks"), ctx["networks"], stack, name)) or []
    if cfg.get("logging"):
        task["LogDriver"] = {"Name": cfg["logging"].get("driver") or "",
                             **({"Options": {k: str(v) for k, v in cfg["logging"]["options"].items()}}
                                if cfg["logging"].get("options") else {})}
    endpoint: dict[str, Any] = {}
    if dep.get("endpoint_mode"):
        endpoint["Mode"] = str(dep["endpoint_mode"]).lower()
    ports = guarded("ports", lambda: _ports(cfg.get("ports") or []))
    if ports:
        endpoint["Ports"] = ports
    spec: dict[str, Any] = {
        "Name": f"{stack}_{name}",
        "Labels": {**_labels(dep.get("labels")), STACK_LABEL: stack, IMAGE_LABEL: str(cfg["image"])},
        "TaskTemplate": task,
        "Mode": guarded("deploy.mode", lambda: _mode(dep)) or {"Replicated": {}},
        "EndpointSpec": endpoint,
    }
    for key, field in (("update_config", "UpdateConfig"), ("rollback_config", "RollbackConfig")):
        value = guarded(f"deploy.{key}", lambda k=key: _update(dep.get(k)))
        if value is not None:
            spec[field] = value
    return spec
