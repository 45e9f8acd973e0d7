"""One frozen Settings object. Nothing else in Conveyor reads ``os.environ`` for configuration.

Sources, later wins: built-in defaults < environment (``CONVEYOR_*``) < explicit arguments (CLI flags).
The server's configuration file (repositories, targets, tokens) is read by ``runner.server.config``
and builds on these settings.
"""

from __future__ import annotations

import os
import re
import uuid
from dataclasses import field, replace
from pathlib import Path

from runner.regex import lazy
from runner.values import Value, frozen

__all__ = ["Settings", "default_data_dir", "parse_count", "parse_size"]

_SIZE = lazy(r"(\d{1,15}(?:\.\d{1,6})?)\s*([kmgt]?)(?:i?b)?", re.I)


def parse_size(text: str, what: str) -> int:
    """'10G', '512M', '1.5GiB', '1048576' -> bytes (powers of 1024, as Docker); ValueError naming
    ``what`` otherwise."""
    m = _SIZE.fullmatch(str(text).strip())
    if m is None:
        raise ValueError(f"{what} must be a size like 10G, 512M or a number of bytes, not {str(text)[:40]!r}")
    return int(float(m.group(1)) * 1024 ** " kmgt".index(m.group(2).lower() or " "))


def default_data_dir(environ: dict[str, str] | None = None) -> Path:
    env = os.environ if environ is None else environ
    base = env.get("XDG_DATA_HOME") or str(Path(env.get("HOME", "~")).expanduser() / ".local" / "share")
    return Path(base) / "conveyor"


@frozen
class Settings(Value):
    data_dir: Path = field(default_factory=default_data_dir)
    docker_host: str | None = None  # None: DOCKER_HOST, else the local socket
    concurrency: int = field(default_factory=lambda: os.cpu_count() or 2)  # jobs at once, per runner
    instance: str = "default"  # names this runner in resource labels, so sweeps touch only its own
    job_memory: int = 2 * 1024**3  # bytes, per job container
    job_cpus: float = 2.0
    job_pids: int = 1024
    workspace_limit: int = 10 * 1024**3  # bytes a build's workspace may hold; 0: no limit
    log_cap: int = 4 * 1024 * 1024  # bytes per step
    artifact_limit: int = 1024**3  # bytes of artifacts one build may keep; 0: no limit
    cache_limit: int = 5 * 1024**3  # bytes all caches may take in the data directory (LRU eviction)
    network_pool: int = 4  # idle build networks kept per engine for the next builds; 0: one per build
    resource_ttl: float = 6 * 3600.0  # seconds until a leftover container/volume/network may be swept
    targets_file: Path | None = None  # named deploy targets (YAML); None: <data_dir>/targets.yml
    # The server configuration's `registry:` and `environments:` as written (checked by
    # runner.deploy.config, which reads them over the targets file's); None: only the targets file.
    deploy: dict | None = field(default=None, hash=False)

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None, **overrides) -> Settings:
        env = dict(os.environ if environ is None else environ)
        values: dict = {}
        if env.get("CONVEYOR_DATA_DIR"):
            values["data_dir"] = Path(env["CONVEYOR_DATA_DIR"]).expanduser()
        else:
            values["data_dir"] = default_data_dir(env)
        if env.get("DOCKER_HOST"):
            values["docker_host"] = env["DOCKER_HOST"]
        if env.get("CONVEYOR_CONCURRENCY"):
            values["concurrency"] = int(env["CONVEYOR_CONCURRENCY"])
        if env.get("CONVEYOR_TARGETS_FILE"):
            values["targets_file"] = Path(env["CONVEYOR_TARGETS_FILE"]).expanduser()
        if env.get("CONVEYOR_WORKSPACE_LIMIT"):
            values["workspace_limit"] = parse_size(env["CONVEYOR_WORKSPACE_LIMIT"], "CONVEYOR_WORKSPACE_LIMIT")
        for name in ("artifact_limit", "cache_limit"):
            var = f"CONVEYOR_{name.upper()}"
            if env.get(var):
                values[name] = parse_size(env[var], var)
        if env.get("CONVEYOR_NETWORK_POOL"):
            values["network_pool"] = parse_count(env["CONVEYOR_NETWORK_POOL"], "CONVEYOR_NETWORK_POOL")
        if env.get("CONVEYOR_INSTANCE"):
            values["instance"] = env["CONVEYOR_INSTANCE"]
        values.update({k: v for k, v in overrides.items() if v is not None})
        if "data_dir" in overrides and overrides["data_dir"] is not None:
            values["data_dir"] = Path(overrides["data_dir"]).expanduser()
        return cls(**values)

    @property
    def targets_path(self) -> Path:
        """The targets file: ``targets_file``, else ``targets.yml`` in the data directory."""
        return Path(self.targets_file or Path(self.data_dir) / "targets.yml")

    def has_deploy_config(self) -> bool:
        """Whether registries or environments may be configured (a targets file, or the server
        configuration's keys): without either there are none, and nothing needs to read them."""
        return bool(self.deploy) or self.targets_path.is_file()

    def with_(self, **changes) -> Settings:
        return replace(self, **changes)


def parse_count(text: str, what: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise ValueError(f"{what} must be a whole number of at least 0, not {text!r}")
    return value


def new_build_id() -> str:
    """A resource-name-safe unique id for a build: [a-z0-9]."""
    return uuid.uuid4().hex[:12]
