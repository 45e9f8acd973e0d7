"""The server's configuration file (``conveyor.yml`` or ``.toml``; ``conveyor serve --config FILE``).

Every key has an embedded default, so ``conveyor serve`` with no file starts on 127.0.0.1:8080 with
SQLite in the data directory and no repositories. Secrets may be written in the file or named from
the environment (``secret_env: NAME``), so the file itself can be committed. See docs/server.md.
"""

from __future__ import annotations

import fnmatch
import ipaddress
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runner import plugins
from runner.deploy.config import parse_environments, parse_registry
from runner.errors import ConveyorError, DeployError
from runner.notify import NotifyConfigError, NotifyRule, parse_rules
from runner.retention import Retention, RetentionConfigError, parse_retention
from runner.scm.webhooks import PROVIDERS
from runner.server.schedules import Schedule, ScheduleConfigError, parse_schedules
from runner.server.users import User, UsersConfigError, parse_users
from runner.settings import Settings, parse_count, parse_size
from runner.yamllib import yaml

__all__ = ["ServerConfig", "RepoConfig", "StatusConfig", "ServerConfigError", "load_config"]

_DEFAULT_API = {"github": "https://api.github.com", "gitlab": "https://gitlab.com/api/v4", "gitea": None}


class ServerConfigError(ConveyorError):
    """The server configuration file is wrong; the message names the key and what to write."""


@dataclass(frozen=True)
class StatusConfig:
    """Where commit statuses are reported; only when a token is set."""

    token: str | None = None
    api_url: str | None = None
    context: str = "conveyor"


@dataclass(frozen=True)
class RepoConfig:
    name: str  # how Conveyor calls it (builds, badges); also matched against the forge's full name
    provider: str = "github"
    url: str | None = None  # clone URL ...
    path: Path | None = None  # ... or a local repository
    full_name: str | None = None  # the forge's owner/name, when it differs from `name`
    secret: str | None = None  # webhook secret; None accepts unsigned deliveries (say so in docs)
    trusted: bool = False
    branches: tuple[str, ...] = ()  # glob patterns; empty: every branch
    cancel_superseded: bool = True  # a newer push to a branch cancels its older queued build
    secrets: dict[str, str] = field(default_factory=dict)  # given to builds (never to forks)
    status: StatusConfig = field(default_factory=StatusConfig)
    schedules: tuple[Schedule, ...] = ()  # cron schedules that start builds (docs/server.md)
    retention: Retention | None = None  # None: the server's
    notify: tuple[NotifyRule, ...] = ()  # who hears how builds end (docs/server.md, Notifications)
    visibility: str = "public"  # private: reading its builds needs a signed-in user (docs/server.md, "Users")
    backend: str | None = None  # where its jobs run; None: the server's (docs/server.md, "Backends")

    @property
    def source(self) -> str:
        return str(self.path) if self.path is not None else str(self.url)

    @property
    def forge_name(self) -> str:
        return self.full_name or self.name

    def wants_branch(self, branch: str | None) -> bool:
        if not self.branches or branch is None:
            return True
        return any(fnmatch.fnmatchcase(branch, pattern) for pattern in self.branches)


@dataclass(frozen=True)
class ServerConfig:
    settings: Settings
    host: str = "127.0.0.1"
    port: int = 8080
    url: str | None = None  # the public URL, for links in commit statuses
    admin_token: str | None = None
    concurrency: int = 2  # builds at once
    backend: str = "docker"
    paused: bool = False  # accept webhooks into the inbox but start nothing (Jenkins' "quiet down")
    repos: dict[str, RepoConfig] = field(default_factory=dict)
    # Who may read GET /metrics without the admin token (docs/server.md, "Metrics").
    metrics_allow: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = (
        ipaddress.ip_network("127.0.0.1/32"), ipaddress.ip_network("::1/128"))
    retention: Retention = field(default_factory=Retention)
    users: dict[str, User] = field(default_factory=dict)  # by name; the admin_token's `admin` among them
    visibility: str = "public"  # of repositories that do not say, and of builds of unconfigured ones
    session_secret: str | None = None  # signs session cookies; None: <data_dir>/session.key

    def visibility_of(self, repo: str) -> str:
        own = self.repos.get(repo)
        return own.visibility if own is not None else self.visibility

    def retention_for(self, repo: str) -> Retention:
        """The retention of builds of ``repo`` (a configured repository's own, else the server's)."""
        own = self.repos.get(repo)
        return own.retention if own is not None and own.retention is not None else self.retention

    @property
    def schedules(self) -> list[Schedule]:
        return [s for repo in self.repos.values() for s in repo.schedules]

    @property
    def public_url(self) -> str:
        return (self.url or f"http://{self.host}:{self.port}").rstrip("/")

    def repo(self, name: str) -> RepoConfig | None:
        return self.repos.get(name)


def _read(path: Path) -> dict:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ServerConfigError(f"cannot read the configuration {path}: {exc.strerror}; check --config") from exc
    try:
        data = tomllib.loads(text) if path.suffix == ".toml" else yaml.safe_load(text)
    except (tomllib.TOMLDecodeError, yaml.YAMLError) as exc:
        raise ServerConfigError(f"{path}: not valid {'TOML' if path.suffix == '.toml' else 'YAML'}: {exc}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ServerConfigError(f"{path}: the top level must be a mapping of keys (host, port, repos, ...)")
    return data


def _secret(where: str, data: dict, key: str, environ: dict[str, str]) -> str | None:
    """``key: value`` or ``key_env: NAME`` (the value from the environment)."""
    if data.get(f"{key}_env"):
        name = data[f"{key}_env"]
        if name not in environ:
            raise ServerConfigError(f"{where}: {key}_env names ${name}, which is not set; export it or write {key}:")
        return environ[name]
    value = data.get(key)
    if value is not None and not isinstance(value, str):
        raise ServerConfigError(f"{where}: {key} must be a string")
    return value


_REPO_KEYS = {"name", "provider", "url", "path", "full_name", "secret", "secret_env", "trusted", "branches",
              "cancel_superseded", "secrets", "status", "schedules", "retention", "notify", "visibility",
              "backend"}
_TOP_KEYS = {"host", "port", "url", "data_dir", "admin_token", "admin_token_env", "concurrency", "backend",
             "instance", "paused", "repos", "targets_file", "workspace_limit", "retention", "metrics_allow",
             "users", "visibility", "session_secret", "session_secret_env", "artifact_limit", "cache_limit",
             "registry", "environments", "network_pool"}


def _visibility(where: str, value: Any) -> str:
    if value not in ("public", "private"):
        raise ServerConfigError(f"{where}: visibility must be public (anyone may read its builds) or private "
                                f"(only signed-in users may), not {value!r}")
    return value


def _repo(index: int, data: Any, base: Path, environ: dict[str, str], retention: Retention,
          visibility: str) -> RepoConfig:
    where = f"repos[{index}]"
    if not isinstance(data, dict) or not isinstance(data.get("name"), str) or not data["name"]:
        raise ServerConfigError(f"{where}: each repository needs a `name:` (for example acme/web)")
    where = f"repo {data['name']!r}"
    unknown = set(data) - _REPO_KEYS
    if unknown:
        raise ServerConfigError(f"{where}: unknown key(s) {sorted(unknown)}; known: {sorted(_REPO_KEYS)}")
    provider = data.get("provider", "github")
    if provider == "forgejo":
        provider = "gitea"
    if provider not in PROVIDERS:
        raise ServerConfigError(f"{where}: provider {provider!r} is unknown; use github, gitlab, gitea or forgejo")
    if bool(data.get("url")) == bool(data.get("path")):
        raise ServerConfigError(f"{where}: give exactly one of `url:` (clone URL) or `path:` (local repository)")
    path = (base / Path(data["path"]).expanduser()).resolve() if data.get("path") else None
    branches = data.get("branches") or ()
    if isinstance(branches, str):
        branches = (branches,)
    secrets: dict[str, str] = {}
    for name, value in (data.get("secrets") or {}).items():
        if isinstance(value, dict) and "env" in value:
            if value["env"] not in environ:
                raise ServerConfigError(f"{where}: secret {name} comes from ${value['env']}, which is not set")
            secrets[str(name)] = environ[value["env"]]
        else:
            secrets[str(name)] = str(value)
    status = data.get("status") or {}
    if not isinstance(status, dict):
        raise ServerConfigError(f"{where}: status must be a mapping (token_env, api_url, context)")
    try:
        schedules = parse_schedules(data["name"], data.get("schedules"))
        own_retention = parse_retention(where, data["retention"], retention) if "retention" in data else None
        notify = parse_rules(data["name"], data.get("notify"), plugins.notifier_types(), environ)
    except (ScheduleConfigError, RetentionConfigError, NotifyConfigError) as exc:
        raise ServerConfigError(str(exc)) from None
    return RepoConfig(
        name=data["name"], provider=provider, url=data.get("url"), path=path, full_name=data.get("full_name"),
        secret=_secret(where, data, "secret", environ), trusted=bool(data.get("trusted", False)),
        branches=tuple(str(b) for b in branches), cancel_superseded=bool(data.get("cancel_superseded", True)),
        secrets=secrets,
        status=StatusConfig(
            token=_secret(f"{where} status", status, "token", environ),
            api_url=(status.get("api_url") or _DEFAULT_API[provider]),
            context=str(status.get("context", "conveyor")),
        ),
        schedules=schedules, retention=own_retention, notify=notify,
        visibility=_visibility(where, data.get("visibility", visibility)),
        backend=_backend(where, data["backend"]) if "backend" in data else None,
    )


SERVER_BACKENDS = ("docker", "swarm", "local")


def _backend(where: str, value: Any) -> str:
    if value not in SERVER_BACKENDS:
        raise ServerConfigError(f"{where}: backend {value!r} is not one of {', '.join(SERVER_BACKENDS)} "
                                "(swarm: jobs as Swarm services, DOCKER_HOST naming a manager; docs/backends.md)")
    return value


def _networks(value: Any) -> tuple:
    """``metrics_allow``: a list of addresses or CIDR networks."""
    if isinstance(value, str) or not isinstance(value, list):
        raise ServerConfigError("metrics_allow must be a list of addresses or networks, "
                                "for example [127.0.0.1/32, 10.0.0.0/8]; [] lets only the admin token in")
    try:
        return tuple(ipaddress.ip_network(str(item), strict=False) for item in value)
    except ValueError as exc:
        raise ServerConfigError(f"metrics_allow: {exc}; write an address (10.1.2.3) or a network (10.0.0.0/8)") from None


def load_config(path: Path | None = None, *, environ: dict[str, str] | None = None, **overrides: Any) -> ServerConfig:
    """Read ``path`` (or nothing: the embedded defaults); ``overrides`` (CLI flags) win over the file."""
    env = dict(os.environ if environ is None else environ)
    data = _read(Path(path)) if path else {}
    unknown = set(data) - _TOP_KEYS
    if unknown:
        raise ServerConfigError(f"unknown key(s) {sorted(unknown)} in the configuration; known: {sorted(_TOP_KEYS)}")
    base = Path(path).resolve().parent if path else Path.cwd()
    data_dir = overrides.pop("data_dir", None) or data.get("data_dir")
    targets_file = data.get("targets_file")
    try:
        sizes = {k: parse_size(data[k], k) for k in ("workspace_limit", "artifact_limit", "cache_limit") if k in data}
        if "network_pool" in data:
            sizes["network_pool"] = parse_count(str(data["network_pool"]), "network_pool")
    except ValueError as exc:
        raise ServerConfigError(str(exc)) from None
    deploy = {k: data[k] for k in ("registry", "environments") if data.get(k) is not None}
    try:  # checked now, so a wrong key stops the server at start-up, not a deploy hours later
        parse_environments("the server configuration", deploy.get("environments"))
        if "registry" in deploy:
            parse_registry("the server configuration", deploy["registry"])
    except DeployError as exc:
        raise ServerConfigError(str(exc)) from None
    settings = Settings.from_env(
        env, data_dir=(base / Path(data_dir).expanduser()) if data_dir else None, instance=data.get("instance"),
        targets_file=(base / Path(targets_file).expanduser()) if targets_file else None,
        **sizes, deploy=deploy or None,
    )
    try:
        retention = parse_retention("configuration", data.get("retention"))
    except RetentionConfigError as exc:
        raise ServerConfigError(str(exc)) from None
    visibility = _visibility("configuration", data.get("visibility", "public"))
    repos: dict[str, RepoConfig] = {}
    raw_repos = data.get("repos") or []
    if not isinstance(raw_repos, list):
        raise ServerConfigError("repos must be a list of repositories, each with name, provider and url or path")
    for index, item in enumerate(raw_repos):
        repo = _repo(index, item, base, env, retention, visibility)
        if repo.name in repos:
            raise ServerConfigError(f"repository {repo.name!r} is configured twice; names must be unique")
        repos[repo.name] = repo
    try:
        concurrency = int(data.get("concurrency", 2))
        port = int(overrides.pop("port", None) or data.get("port", 8080))
    except (TypeError, ValueError) as exc:
        raise ServerConfigError(f"port and concurrency must be whole numbers: {exc}") from exc
    if concurrency < 1:
        raise ServerConfigError("concurrency must be at least 1 (builds at once)")
    admin_token = _secret("configuration", data, "admin_token", env) or env.get("CONVEYOR_ADMIN_TOKEN")
    try:
        users = parse_users(data.get("users"), admin_token, env)
    except UsersConfigError as exc:
        raise ServerConfigError(str(exc)) from None
    session_secret = _secret("configuration", data, "session_secret", env)
    if session_secret is not None and len(session_secret) < 32:
        raise ServerConfigError("session_secret must be at least 32 characters (openssl rand -hex 32), or leave "
                                "it out: the server keeps one in <data_dir>/session.key")
    values = dict(
        settings=settings, host=str(overrides.pop("host", None) or data.get("host", "127.0.0.1")), port=port,
        url=data.get("url"), admin_token=admin_token, concurrency=concurrency,
        backend=_backend("configuration", data.get("backend", "docker")), paused=bool(data.get("paused", False)), repos=repos,
        retention=retention, users=users, visibility=visibility, session_secret=session_secret,
    )
    if "metrics_allow" in data:
        values["metrics_allow"] = _networks(data["metrics_allow"])
    values.update({k: v for k, v in overrides.items() if v is not None})
    return ServerConfig(**values)
