"""Which Compose keys a stack deploy uses, which it ignores, and which nobody supports.

Three answers for every key of a Compose file, never a silent one (docs/deploy.md, "Compose"):

- used: converted into the service spec exactly as ``docker stack deploy`` converts it;
- ignored by ``docker stack deploy`` too (``build``, ``depends_on``, ``container_name`` ...): a
  warning with its line, and the key has no effect;
- unknown to both, or refused by stack deploy (``extends``, ``mem_limit`` ...): an error with its
  line and what to write instead.

``x-`` keys (extensions) are allowed at the top level, in a service and in the top-level
networks, volumes, secrets and configs, as in the Compose specification.
"""

from __future__ import annotations

import difflib

from runner.diagnostics import Diagnostics
from runner.dsl.yamlload import YMap, YNode, YSeq

__all__ = ["check_keys", "node_at", "IGNORED", "REFUSED"]

V = None  # a leaf: the value is checked by the converter, not here

_UPDATE = {k: V for k in ("parallelism", "delay", "failure_action", "monitor", "max_failure_ratio", "order")}
_DEPLOY = {
    "mode": V, "replicas": V, "labels": V, "endpoint_mode": V,
    "update_config": _UPDATE, "rollback_config": _UPDATE,
    "resources": {"limits": {"cpus": V, "memory": V, "pids": V},
                  "reservations": {"cpus": V, "memory": V, "generic_resources": V}},
    "restart_policy": {"condition": V, "delay": V, "max_attempts": V, "window": V},
    "placement": {"constraints": V, "preferences": V, "max_replicas_per_node": V},
}
_ITEM_FILE = {"source": V, "target": V, "uid": V, "gid": V, "mode": V}
_SERVICE = {
    "image": V, "command": V, "entrypoint": V, "environment": V, "env_file": V, "labels": V,
    "deploy": _DEPLOY, "ports": V, "networks": V, "volumes": V, "secrets": V, "configs": V,
    "healthcheck": {"test": V, "interval": V, "timeout": V, "retries": V, "start_period": V,
                    "start_interval": V, "disable": V},
    "user": V, "working_dir": V, "hostname": V, "stop_grace_period": V, "stop_signal": V, "sysctls": V,
    "ulimits": V, "init": V, "cap_add": V, "cap_drop": V, "logging": {"driver": V, "options": V},
    "extra_hosts": V, "dns": V, "dns_search": V, "read_only": V, "tty": V, "stdin_open": V,
    "isolation": V, "oom_score_adj": V, "restart": V,
}
_OBJECT = {"name": V, "file": V, "external": V, "labels": V, "template_driver": V}
_TOP = {
    "version": V, "services": V,
    "networks": {"*": {"name": V, "driver": V, "driver_opts": V, "external": V, "internal": V,
                       "attachable": V, "labels": V, "ipam": V}},
    "volumes": {"*": {"name": V, "driver": V, "driver_opts": V, "external": V, "labels": V}},
    "secrets": {"*": {**_OBJECT, "driver": V, "driver_opts": V}},
    "configs": {"*": _OBJECT},
}

# Keys docker stack deploy reads but does not apply to a Swarm service: warned, no effect.
IGNORED = {
    "build": "build the image in a `build` stage and name it in `image`",
    "depends_on": "Swarm starts services in no order; make a service wait for what it needs (a health check, retries)",
    "container_name": "Swarm names the task containers itself",
    "expose": "services on one network reach each other on any port",
    "links": "services reach each other by their Compose names on a shared network",
    "external_links": "attach the service to the other service's network instead",
    "cgroup_parent": "not a Swarm service setting", "cgroupns_mode": "not a Swarm service setting",
    "devices": "not a Swarm service setting", "domainname": "not a Swarm service setting",
    "ipc": "not a Swarm service setting", "mac_address": "not a Swarm service setting",
    "network_mode": "use `networks`", "pid": "not a Swarm service setting",
    "privileged": "not a Swarm service setting; grant what it needs with cap_add",
    "security_opt": "not a Swarm service setting", "shm_size": "mount a tmpfs volume on /dev/shm instead",
    "userns_mode": "not a Swarm service setting",
    "tmpfs": "docker stack deploy drops the service-level `tmpfs`; use a volume with `type: tmpfs`",
}
# Keys docker stack deploy refuses (with its hint), or that Conveyor cannot honour.
REFUSED = {
    "extends": "merge the files before deploying; `extends` is not supported by docker stack deploy",
    "volume_driver": "define a volume in the top-level `volumes` with a `driver` and use it here",
    "volumes_from": "share a volume defined in the top-level `volumes` instead",
    "cpu_quota": "use deploy.resources.limits.cpus", "cpu_shares": "use deploy.resources.reservations.cpus",
    "cpuset": "use deploy.resources", "mem_limit": "use deploy.resources.limits.memory",
    "memswap_limit": "use deploy.resources.limits.memory",
    "credential_spec": "Windows credential specs are not supported by Conveyor",
}
_NOTES = {"restart": "docker stack deploy calls `restart` unsupported yet uses it when deploy.restart_policy "
                     "is missing; Conveyor does the same; write deploy.restart_policy instead"}


def _extension_ok(path: str) -> bool:
    depth = path.count(".")
    return path == "" or path.startswith("services.") and depth == 1 or \
        any(path.startswith(k + ".") and depth == 1 for k in ("networks", "volumes", "secrets", "configs"))


def _walk(node: YNode | None, table: dict, path: str, diags: Diagnostics) -> None:
    if not isinstance(node, YMap):
        return
    for key, (knode, value) in node.entries.items():
        where = f"{path}.{key}" if path else key
        sub = table.get("*", table)
        if "*" in table:  # a user-chosen name (a network, a volume ...)
            _walk(value, sub, where, diags)
            continue
        if key.startswith("x-") and _extension_ok(path):
            continue
        if key in sub:
            if isinstance(sub[key], dict):
                _walk(value, sub[key], where, diags)
            continue
        hint = difflib.get_close_matches(key, [k for k in sub if k != "*"], 1)
        did = f" (did you mean `{hint[0]}`?)" if hint else ""
        diags.error("compose-unknown-key", f"`{where}` is not a key docker stack deploy knows{did}; "
                    "remove it or fix its spelling", knode.line, knode.col, where)


def check_keys(root: YMap, diags: Diagnostics) -> None:
    """Every key of the file into ``diags``: ignored keys as warnings, unknown ones as errors."""
    _walk(root, _TOP, "", diags)
    services = root.get("services")
    if not isinstance(services, YMap):
        return
    for name, (_k, svc) in services.entries.items():
        if name.startswith("x-") or not isinstance(svc, YMap):
            continue
        for key, (knode, value) in svc.entries.items():
            where = f"services.{name}.{key}"
            if key in IGNORED:
                diags.warning("compose-ignored-key", f"`{where}` is ignored by docker stack deploy and by "
                              f"Conveyor: {IGNORED[key]}", knode.line, knode.col, where)
            elif key in REFUSED:
                diags.error("compose-refused-key", f"`{where}` cannot be deployed to a swarm: {REFUSED[key]}",
                            knode.line, knode.col, where)
            elif key in _NOTES:
                diags.warning("compose-legacy-key", f"`{where}`: {_NOTES[key]}", knode.line, knode.col, where)
            elif key in _SERVICE or key.startswith("x-"):
                if isinstance(_SERVICE.get(key), dict):
                    _walk(value, _SERVICE[key], where, diags)
            else:
                hint = difflib.get_close_matches(key, list(_SERVICE), 1)
                did = f" (did you mean `{hint[0]}`?)" if hint else ""
                diags.error("compose-unknown-key", f"`{where}` is not a key docker stack deploy knows{did}; "
                            "remove it or fix its spelling", knode.line, knode.col, where)


def node_at(root: YNode, path: str) -> YNode | None:
    """The node at a dotted path (list items by index), for the line of a value error."""
    node: YNode | None = root
    for part in path.split("."):
        if isinstance(node, YMap) and part in node.entries:
            node = node.entries[part][1]
        elif isinstance(node, YSeq) and part.isdigit() and int(part) < len(node.items):
            node = node.items[int(part)]
        else:
            return node
    return node
