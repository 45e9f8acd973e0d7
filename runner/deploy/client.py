"""Deploy targets: which Docker engine a deploy talks to, and the blocking seam to it.

The default target is the engine of ``DOCKER_HOST`` (``Settings.docker_host``; unset: the local
socket). More targets are named in a YAML file (``Settings.targets_file``, default
``<data dir>/targets.yml``)::

    production:
      url: tcp://10.0.0.5:2376
      tls: {ca: /etc/conveyor/prod/ca.pem, cert: /etc/conveyor/prod/cert.pem, key: /etc/conveyor/prod/key.pem}
      registry: {url: registry.internal:5000, username_env: REG_USER, password_env: REG_PASSWORD}

and picked with ``deploy: {target: production}`` (or through an environment). Every target must be
a swarm manager. The file's ``registry:`` and ``environments:`` keys are read by ``config.py``.

Every docker-py call is blocking; the deploy code calls them only through ``Swarm.call`` (one
``asyncio.to_thread`` seam), never from the event loop directly.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import docker

from runner.deploy.config import RESERVED, Registry, load_deploy_config, read_targets_file
from runner.errors import DeployError, NotASwarm
from runner.settings import Settings

__all__ = ["DEFAULT_TARGET", "Target", "Swarm", "load_targets", "open_target"]

DEFAULT_TARGET = "default"
T = TypeVar("T")


@dataclass(frozen=True)
class Target:
    name: str
    url: str | None = None  # None: docker-py's default (DOCKER_HOST or the local socket)
    tls: dict[str, str] = field(default_factory=dict)  # ca, cert, key: paths of PEM files
    registry: Registry | None = None  # where its images are pulled from and pinned by digest

    def client(self) -> docker.DockerClient:
        if self.url is None:
            return docker.from_env(timeout=120)
        tls = None
        if self.tls:
            missing = [k for k in ("ca", "cert", "key") if not self.tls.get(k)]
            if missing:
                raise DeployError(f"target {self.name!r}: tls needs ca, cert and key; add {', '.join(missing)}")
            for key in ("ca", "cert", "key"):
                if not Path(self.tls[key]).is_file():
                    raise DeployError(f"target {self.name!r}: tls {key} file {self.tls[key]} does not exist")
            tls = docker.tls.TLSConfig(client_cert=(self.tls["cert"], self.tls["key"]), ca_cert=self.tls["ca"],
                                       verify=True)
        return docker.DockerClient(base_url=self.url, tls=tls, timeout=120)


def load_targets(settings: Settings) -> dict[str, Target]:
    """The default target plus every named one from the targets file (when it exists)."""
    config = load_deploy_config(settings)
    targets = {DEFAULT_TARGET: Target(DEFAULT_TARGET, settings.docker_host,
                                      registry=config.registry_for(DEFAULT_TARGET))}
    path, data = read_targets_file(settings)
    for name, entry in data.items():
        if name in RESERVED:
            continue
        if not isinstance(entry, dict) or not isinstance(entry.get("url"), str):
            raise DeployError(f"{path}: target {name!r} needs a `url` (e.g. tcp://host:2376)")
        tls = entry.get("tls") or {}
        if not isinstance(tls, dict):
            raise DeployError(f"{path}: target {name!r}: `tls` must be a mapping of ca, cert, key")
        targets[str(name)] = Target(str(name), entry["url"], {str(k): str(v) for k, v in tls.items()},
                                    config.registry_for(str(name)))
    return targets


class Swarm:
    """One swarm manager's engine. ``call`` is the only way deploy code reaches docker-py."""

    def __init__(self, target: Target, client: docker.DockerClient) -> None:
        self.target = target
        self.client = client
        self.api = client.api

    async def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return await asyncio.to_thread(functools.partial(fn, *args, **kwargs))

    def check_manager(self) -> None:
        """Blocking: raise NotASwarm unless this engine is a swarm manager."""
        try:
            info = self.client.info()
        except docker.errors.DockerException as exc:
            raise DeployError(f"target {self.target.name!r}: the Docker engine does not answer ({exc}); "
                              "start it or fix the target's url") from exc
        swarm = info.get("Swarm") or {}
        if swarm.get("LocalNodeState") != "active":
            raise NotASwarm(f"target {self.target.name!r}: the Docker engine is not in a swarm; "
                            "run `docker swarm init` on it (or `docker swarm join` an existing swarm)")
        if not swarm.get("ControlAvailable"):
            raise NotASwarm(f"target {self.target.name!r}: this engine is a swarm worker, not a manager; "
                            "point the target at a manager (`docker node ls` there lists them)")

    def close(self) -> None:
        self.client.close()


async def open_target(settings: Settings, name: str | None) -> Swarm:
    """Connect to the named target (None: the default) and make sure it is a swarm manager."""
    targets = await asyncio.to_thread(load_targets, settings)  # reads the targets file
    key = name or DEFAULT_TARGET
    if key not in targets:
        known = ", ".join(sorted(targets))
        raise DeployError(f"unknown deploy target {key!r}; known targets: {known} "
                          f"(add it to {Path(settings.data_dir) / 'targets.yml'})")
    target = targets[key]
    try:
        client = await asyncio.to_thread(target.client)
    except docker.errors.DockerException as exc:
        raise DeployError(f"target {key!r}: cannot reach the Docker engine ({exc}); start it or fix the url") from exc
    swarm = Swarm(target, client)
    try:
        await swarm.call(swarm.check_manager)
    except BaseException:
        swarm.close()
        raise
    return swarm
