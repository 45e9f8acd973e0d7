"""The deploy configuration: targets, their registries, and environments.

One shape, read from two places (docs/deploy.md): the targets file (``targets.yml``, what
``conveyor run`` reads) and the server configuration's ``registry:`` and ``environments:`` keys
(handed over in ``Settings.deploy``; they win over the file's)::

    registry: {url: registry.example.com:5000, username_env: REG_USER, password_env: REG_PASSWORD}
    environments:
      staging: {target: default, url: https://staging.example.com, suffix: -staging}
      production: {target: prod, url: https://example.com, approvers: [admin], branches: [main]}
    prod:                                   # every other top-level key names a target
      url: tcp://10.0.0.5:2376
      registry: {url: registry.internal:5000, insecure: true}

Credentials are never in the file: ``username_env``/``password_env`` name environment variables,
read when a push or deploy needs them and handed to the engine's API with that one call.
"""

from __future__ import annotations

import fnmatch
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runner.errors import DeployError
from runner.settings import Settings
from runner.yamllib import yaml

__all__ = ["Registry", "Environment", "DeployConfig", "load_deploy_config", "parse_registry",
           "parse_environments", "lint_environments", "RESERVED"]

RESERVED = ("registry", "environments")  # top-level keys of the targets file that are not targets
_ENV_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,40}\Z")
_VAR = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*\Z")
_REG_KEYS = {"url", "username_env", "password_env", "insecure"}
_ENV_KEYS = {"target", "url", "approvers", "branches", "suffix", "env"}


@dataclass(frozen=True)
class Registry:
    url: str  # host[:port], as image references name it (a scheme is dropped when read)
    username_env: str | None = None
    password_env: str | None = None
    insecure: bool = False  # plain HTTP: the engine itself must allow it (127.0.0.0/8 always is)

    def qualify(self, ref: str) -> str:
        """``web:1`` -> ``<registry>/web:1``; a reference that already names a registry is kept."""
        first = ref.split("/", 1)[0]
        if "/" in ref and ("." in first or ":" in first or first == "localhost"):
            return ref
        return f"{self.url}/{ref}"

    def owns(self, ref: str) -> bool:
        return ref.startswith(self.url + "/")

    def auth_config(self) -> dict[str, str] | None:
        """The credentials for one engine API call (docker-py ``auth_config=``), from the
        environment now; None when the registry needs none."""
        if not self.username_env and not self.password_env:
            return None
        values = {}
        for key, var in (("username", self.username_env), ("password", self.password_env)):
            if not var:
                raise DeployError(f"registry {self.url}: set both username_env and password_env (only one is set)")
            if var not in os.environ:
                raise DeployError(f"registry {self.url}: {key}_env names ${var}, which is not set; export it where "
                                  "Conveyor runs (the value is never written to a file)")
            values[key] = os.environ[var]
        return {**values, "serveraddress": self.url}


@dataclass(frozen=True)
class Environment:
    name: str
    target: str = "default"
    url: str | None = None  # where people look at it (shown on the page)
    approvers: tuple[str, ...] = ()  # non-empty: a deploy there needs an approval stage before it
    branches: tuple[str, ...] = ()  # glob patterns of the branches that may deploy there; empty: any
    suffix: str = ""  # appended to service names here, so two environments can share one swarm
    env: dict[str, str] = field(default_factory=dict)  # variables every service here gets

    def allows(self, branch: str | None) -> bool:
        return not self.branches or (branch is not None and any(fnmatch.fnmatchcase(branch, p) for p in self.branches))

    def service(self, base: str) -> str:
        return base + self.suffix

    def base(self, service: str) -> str:
        return service[: -len(self.suffix)] if self.suffix and service.endswith(self.suffix) else service


@dataclass(frozen=True)
class DeployConfig:
    registries: dict[str, Registry]  # per target name; "default" also is every target's fallback
    environments: dict[str, Environment]
    source: str  # where it was read, for messages

    def registry_for(self, target: str) -> Registry | None:
        return self.registries.get(target) or self.registries.get("default")

    def owner(self, target: str, name: str) -> Environment | None:
        """The environment whose service (or stack) ``name`` on ``target`` is: of the environments
        on that target, the one whose ``suffix`` ends the name, the longest winning (an empty suffix
        ends every name); None when no environment is on the target."""
        fits = [e for e in self.environments.values() if e.target == target and name.endswith(e.suffix)]
        return max(fits, key=lambda e: len(e.suffix), default=None)

    def environment(self, name: str) -> Environment:
        if name not in self.environments:
            known = ", ".join(sorted(self.environments)) or "none are configured"
            raise DeployError(f"unknown environment {name!r} (known: {known}); add it under `environments:` in "
                              f"{self.source}")
        return self.environments[name]


def read_targets_file(settings: Settings) -> tuple[Path, dict[str, Any]]:
    """The targets file as a mapping ({} when it does not exist)."""
    path = settings.targets_path
    if not path.is_file():
        return path, {}
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise DeployError(f"{path}: not valid YAML ({exc}); fix the targets file") from exc
    if not isinstance(data, dict):
        raise DeployError(f"{path}: expected a mapping of target names to {{url, tls, registry}}")
    return path, data


def parse_registry(where: str, data: Any) -> Registry:
    if isinstance(data, str):
        data = {"url": data}
    if not isinstance(data, dict) or not isinstance(data.get("url"), str) or not data["url"]:
        raise DeployError(f"{where}: registry needs a `url` (host[:port], e.g. registry.example.com:5000)")
    unknown = set(data) - _REG_KEYS
    if unknown:
        raise DeployError(f"{where}: unknown registry key(s) {sorted(unknown)}; known: {sorted(_REG_KEYS)}")
    for key in ("username_env", "password_env"):
        if data.get(key) is not None and not (isinstance(data[key], str) and _VAR.match(data[key])):
            raise DeployError(f"{where}: registry {key} must name an environment variable (e.g. REGISTRY_PASSWORD); "
                              "credentials are never written in the file")
    url = re.sub(r"^[a-z]+://", "", data["url"]).rstrip("/")
    return Registry(url, data.get("username_env"), data.get("password_env"), bool(data.get("insecure", False)))


def _strings(where: str, key: str, value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise DeployError(f"{where}: `{key}` must be a list of names, e.g. [main]")
    return tuple(value)


def parse_environments(where: str, data: Any) -> dict[str, Environment]:
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise DeployError(f"{where}: `environments` must map names to {{target, url, approvers, branches}}")
    out = {}
    for name, entry in data.items():
        here = f"{where}: environment {name!r}"
        if not isinstance(name, str) or not _ENV_NAME.match(name):
            raise DeployError(f"{here}: names are lower-case letters, digits, '-' and '_'")
        entry = entry or {}
        if not isinstance(entry, dict):
            raise DeployError(f"{here}: expected a mapping with target, url, approvers, branches")
        unknown = set(entry) - _ENV_KEYS
        if unknown:
            raise DeployError(f"{here}: unknown key(s) {sorted(unknown)}; known: {sorted(_ENV_KEYS)}")
        env = entry.get("env") or {}
        if not isinstance(env, dict) or not all(isinstance(k, str) and _VAR.match(k) for k in env):
            raise DeployError(f"{here}: `env` must map variable names to values")
        suffix = str(entry.get("suffix") or "")
        if suffix and not re.fullmatch(r"[a-zA-Z0-9_.-]{1,20}", suffix):
            raise DeployError(f"{here}: `suffix` may hold letters, digits, '-', '_' and '.' (e.g. -staging)")
        out[name] = Environment(name, str(entry.get("target") or "default"), entry.get("url"),
                                _strings(here, "approvers", entry.get("approvers")),
                                _strings(here, "branches", entry.get("branches")), suffix,
                                {k: str(v) for k, v in env.items()})
    return out


def load_deploy_config(settings: Settings) -> DeployConfig:
    """Registries and environments from the targets file, then the server configuration's."""
    path, data = read_targets_file(settings)
    registries: dict[str, Registry] = {}
    if data.get("registry") is not None:
        registries["default"] = parse_registry(str(path), data["registry"])
    for name, entry in data.items():
        if name not in RESERVED and isinstance(entry, dict) and entry.get("registry") is not None:
            registries[str(name)] = parse_registry(f"{path}: target {name!r}", entry["registry"])
    environments = parse_environments(str(path), data.get("environments"))
    server = getattr(settings, "deploy", None) or {}
    source = str(path)
    if server.get("registry") is not None:
        registries["default"] = parse_registry("the server configuration", server["registry"])
    if server.get("environments") is not None:
        environments = {**environments, **parse_environments("the server configuration", server["environments"])}
        source = "the server configuration"
    return DeployConfig(registries, environments, source)


def lint_environments(settings: Settings) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """The environments as the linter takes them (``LintOptions.environments``): name, approvers."""
    config = load_deploy_config(settings)
    return tuple((name, env.approvers) for name, env in sorted(config.environments.items()))
