"""A Compose file (already rendered by Jinja) -> the stack ``docker stack deploy`` would make of it.

``parse_compose`` checks every key (compose_keys), converts each service (compose_service), and
lists the networks to create and the secrets and configs to create or look up (compose_objects).
It never touches the swarm. Problems are collected first and reported together, each with its
line: any error raises ``ComposeError`` with all of them; warnings travel in ``ComposeStack``.
``${VAR}`` is interpolated from the stage's environment, as stack deploy takes it from the shell.
See docs/deploy.md, "Compose files".
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from runner.deploy.compose_keys import check_keys, node_at
from runner.deploy.compose_objects import FileObject
from runner.deploy.compose_service import STACK_LABEL, convert_service, network_name
from runner.deploy.compose_values import BadValue, env_file_lines, interpolate, mapping
from runner.diagnostics import Diagnostics
from runner.dsl.yamlload import YMap, YNode, YScalar, YSeq, load_yaml, to_py
from runner.errors import DeployError

__all__ = ["ComposeStack", "ComposeError", "parse_compose"]

ReadFile = Callable[[str], str]  # a path relative to the workspace -> its text
_GO_OCTAL = re.compile(r"0[0-7]+")


class ComposeError(DeployError):
    """The Compose file cannot be deployed; ``diagnostics`` holds every problem with its line."""

    def __init__(self, diagnostics: Diagnostics) -> None:
        self.diagnostics = diagnostics
        super().__init__("\n".join(str(d) for d in diagnostics.items if d.severity == "error"))


@dataclass
class ComposeStack:
    stack: str
    services: dict[str, dict[str, Any]]  # Swarm service name -> ServiceSpec (references not yet bound)
    networks: dict[str, dict[str, Any]]  # Swarm network name -> create options
    external_networks: list[str]
    objects: list[FileObject]
    warnings: list[str] = field(default_factory=list)


def _prepare(node: YNode | None, env: dict[str, str], unset: list[str], diags: Diagnostics) -> None:
    """Interpolate ``${VAR}`` in string values, and read ``0440`` as octal, as Go's YAML does."""
    if isinstance(node, YMap):
        for _k, value in node.entries.values():
            _prepare(value, env, unset, diags)
    elif isinstance(node, YSeq):
        for item in node.items:
            _prepare(item, env, unset, diags)
    elif isinstance(node, YScalar):
        if isinstance(node.value, str) and "$" in node.value:
            try:
                node.value = interpolate(node.value, env, unset)
            except BadValue as exc:
                diags.error("compose-variable", str(exc), node.line, node.col)
        elif isinstance(node.value, int) and not node.quoted and _GO_OCTAL.fullmatch(node.text):
            node.value = int(node.text, 8)


def _objects(doc: dict, kind: str, stack: str, base: str, read: ReadFile, problem) -> list[FileObject]:
    out = []
    for key, cfg in (doc.get(f"{kind}s") or {}).items():
        if key.startswith("x-"):
            continue
        cfg = cfg or {}
        name = cfg.get("name") or f"{stack}_{key}"
        labels = {k: v or "" for k, v in mapping(cfg.get("labels")).items()}
        labels[STACK_LABEL] = stack
        if cfg.get("external"):
            ext = cfg["external"]
            out.append(FileObject(kind, key, (ext.get("name") if isinstance(ext, dict) else None) or cfg.get("name")
                                  or key))
            continue
        if cfg.get("driver") or (kind == "secret" and cfg.get("template_driver")):
            problem(f"{kind}s.{key}", f"{kind} drivers and secret templating are not supported by Conveyor; "
                                      "use `file:` or `external: true`")
            continue
        if not cfg.get("file"):
            problem(f"{kind}s.{key}", f"a {kind} needs `file:` (a path in the repository) or `external: true`")
            continue
        try:
            data = read(posixpath.normpath(posixpath.join(base, str(cfg["file"])))).encode()
        except DeployError as exc:
            problem(f"{kind}s.{key}.file", str(exc))
            continue
        out.append(FileObject(kind, key, name, data, labels, cfg.get("template_driver")))
    return out


def _refs(items: Any, kind: str, known: set[str]) -> list[dict[str, Any]]:
    refs = []
    for item in items or ():
        item = {"source": item} if isinstance(item, str) else dict(item)
        if item.get("source") not in known:
            raise BadValue(f"{kind} {item.get('source')!r} is not defined in the top-level `{kind}s`; add it there")
        mode = item.get("mode")
        refs.append({"key": item["source"], "File": {
            "Name": str(item.get("target") or item["source"]), "UID": str(item.get("uid") or "0"),
            "GID": str(item.get("gid") or "0"), "Mode": 0o444 if mode is None else int(mode)}})
    return refs


def _networks(doc: dict, stack: str) -> tuple[dict[str, dict[str, Any]], list[str]]:
    used = set()
    for cfg in (doc.get("services") or {}).values():
        nets = (cfg or {}).get("networks") or ["default"]
        used |= set(nets)
    create, external = {}, []
    for key in sorted(used):
        cfg = (doc.get("networks") or {}).get(key) or {}
        if cfg.get("external"):
            external.append(network_name(key, cfg, stack))
            continue
        ipam = cfg.get("ipam") or {}
        create[network_name(key, cfg, stack)] = {
            "driver": cfg.get("driver") or "overlay", "options": cfg.get("driver_opts"),
            "internal": bool(cfg.get("internal")), "attachable": bool(cfg.get("attachable")),
            "labels": {**{k: v or "" for k, v in mapping(cfg.get("labels")).items()}, STACK_LABEL: stack},
            "ipam": {"Driver": ipam.get("driver") or "default",
                     "Config": [{"Subnet": c["subnet"]} for c in ipam.get("config") or () if c.get("subnet")]}
            if ipam else None}
    return create, external


def _own_objects_only(doc: dict, problem) -> None:
    """An untrusted repository's stack uses only objects of its own stack. Deploys share the swarm:
    `external` (or a volume's or network's `name:`) would mount another stack's secret, config or
    data, or join its network; a volume's `driver_opts` (`type: none, o: bind, device: /etc`) or
    another driver reach the node's files as a bind mount does, which only a trusted one may use."""
    for kind in ("secrets", "configs", "volumes", "networks"):
        for key, cfg in (doc.get(kind) or {}).items():
            cfg = cfg if isinstance(cfg, dict) else {}
            noun = kind[:-1]
            if cfg.get("external"):
                problem(f"{kind}.{key}", f"an external {noun} belongs to another stack or to the node, which "
                                         "only a trusted repository may use; define it in this file, or mark the "
                                         "repository trusted")
            elif kind in ("volumes", "networks") and cfg.get("name"):
                problem(f"{kind}.{key}", f"`name:` would use the {noun} of that name, another stack's if it exists, "
                                         f"which only a trusted repository may do; drop it (the {noun} is then "
                                         f"`<stack>_{key}`), or mark the repository trusted")
            if kind == "volumes" and (cfg.get("driver_opts") is not None or cfg.get("driver") not in (None, "local")):
                problem(f"{kind}.{key}", "a volume's `driver` and `driver_opts` can mount the node's files or a "
                                         "network share (`type: none, o: bind, device: /etc`), which only a trusted "
                                         "repository may do; drop them, or mark the repository trusted")


def parse_compose(text: str, stack: str, file: str = "docker-compose.yml", *, read: ReadFile | None = None,
                  env: dict[str, str] | None = None, trusted: bool = False) -> ComposeStack:
    """The stack of a Compose file; ``read`` reads env_file and secret/config files (paths relative
    to the Compose file); raises ``ComposeError`` listing every problem with its line."""
    diags = Diagnostics(file)
    root = load_yaml(text, diags)
    if root is not None and not isinstance(root, YMap):
        diags.error("compose-shape", "a Compose file is a mapping with `services:`", root.line, root.col)
    if diags.has_errors or root is None:
        if root is None and not diags.has_errors:
            diags.error("compose-shape", "the file is empty; it needs `services:`", 1, 1)
        raise ComposeError(diags)
    unset: list[str] = []
    _prepare(root, env or {}, unset, diags)
    check_keys(root, diags)
    doc = to_py(root)
    if not isinstance(doc.get("services"), dict) or not doc["services"]:
        diags.error("compose-shape", "needs a `services:` mapping with at least one service", root.line, root.col)
        raise ComposeError(diags)
    if diags.has_errors:
        raise ComposeError(diags)

    def problem(path: str, message: str) -> None:
        node = node_at(root, path)
        diags.error("compose-value", f"`{path}`: {message}", node.line if node else 1, node.col if node else 1, path)

    if not trusted:
        _own_objects_only(doc, problem)
    base = posixpath.dirname(file)
    reader = read or (lambda rel: (_ for _ in ()).throw(DeployError(f"cannot read {rel}: no workspace")))
    objects = _objects(doc, "secret", stack, base, reader, problem) + _objects(doc, "config", stack, base, reader,
                                                                              problem)
    ctx = {"networks": doc.get("networks") or {}, "volumes": doc.get("volumes") or {}, "trusted": trusted}
    services = {}
    for name, cfg in doc["services"].items():
        if name.startswith("x-"):
            continue
        cfg, where = cfg or {}, f"services.{name}"
        if not cfg.get("image"):
            problem(where, "needs an `image` (build it in a `build` stage first)")
            continue
        merged: dict[str, str | None] = {}
        for i, path in enumerate([cfg["env_file"]] if isinstance(cfg.get("env_file"), str) else cfg.get("env_file") or []):
            try:
                merged.update(env_file_lines(reader(posixpath.normpath(posixpath.join(base, str(path))))))
            except (BadValue, DeployError) as exc:
                problem(f"{where}.env_file.{i}" if isinstance(cfg["env_file"], list) else f"{where}.env_file", str(exc))
        merged.update(mapping(cfg.get("environment")))
        refs = {}
        for kind in ("secret", "config"):
            try:
                refs[f"{kind}s"] = _refs(cfg.get(f"{kind}s"), kind, set(doc.get(f"{kind}s") or {}))
            except (BadValue, TypeError, ValueError) as exc:
                problem(f"{where}.{kind}s", str(exc))
        services[f"{stack}_{name}"] = convert_service(stack, name, cfg, merged, refs, ctx,
                                                      lambda p, m, w=where: problem(f"{w}.{p}", m))
    if diags.has_errors:
        raise ComposeError(diags)
    networks, external = _networks(doc, stack)
    warnings = [str(d) for d in diags.items]
    warnings += [f"{file}: ${{{n}}} is not set in the stage's env; it was replaced by an empty string"
                 for n in sorted(set(unset))]
    return ComposeStack(stack, services, networks, external, objects, warnings)
