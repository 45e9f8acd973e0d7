"""Targets: which Docker engines Conveyor talks to, and how (URL, TLS).

The default target is the engine of ``DOCKER_HOST`` (``Settings.docker_host``; unset: the local
socket), reached as docker's own client reaches it (``DOCKER_TLS_VERIFY``/``DOCKER_CERT_PATH``
included); jobs run there. More targets are named in a YAML file (``Settings.targets_file``,
default ``<data dir>/targets.yml``)::

    production:
      url: tcp://10.0.0.5:2376
      tls: {ca: /etc/conveyor/prod/ca.pem, cert: /etc/conveyor/prod/cert.pem, key: /etc/conveyor/prod/key.pem}
      registry: {url: registry.internal:5000, username_env: REG_USER, password_env: REG_PASSWORD}

and picked with ``deploy: {target: production}`` (or through an environment). The file's
``registry:`` and ``environments:`` keys are read by runner/deploy/config.py, the one parser of the
file; a target carries its registry so a deploy to it pulls and pins from there.

Plain data: the client of a target is made by ``Engine`` (runner/engine/engine.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from runner.errors import DeployError
from runner.settings import Settings

if TYPE_CHECKING:
    from runner.deploy.config import Registry

__all__ = ["DEFAULT_TARGET", "Target", "load_targets"]

DEFAULT_TARGET = "default"


@dataclass(frozen=True)
class Target:
    name: str
    url: str | None = None  # None: docker-py's default (DOCKER_HOST or the local socket)
    tls: dict[str, str] = field(default_factory=dict)  # ca, cert, key: paths of PEM files
    registry: Registry | None = None  # where its images are pulled from and pinned by digest
    # The engine of the environment (DOCKER_HOST): its TLS comes from DOCKER_TLS_VERIFY and
    # DOCKER_CERT_PATH, as docker's own client takes it; a named target's only from its `tls`.
    from_env: bool = False

    @classmethod
    def default(cls, settings: Settings, registry: Registry | None = None) -> Target:
        """The engine of ``DOCKER_HOST`` (``Settings.docker_host``), where jobs run."""
        return cls(DEFAULT_TARGET, settings.docker_host, registry=registry, from_env=True)

    def tls_files(self) -> tuple[str, str, str] | None:
        """(ca, cert, key) when the target names TLS files, checked to exist; None without ``tls``."""
        if not self.tls:
            return None
        missing = [k for k in ("ca", "cert", "key") if not self.tls.get(k)]
        if missing:
            raise DeployError(f"target {self.name!r}: tls needs ca, cert and key; add {', '.join(missing)}")
        for key in ("ca", "cert", "key"):
            if not Path(self.tls[key]).is_file():
                raise DeployError(f"target {self.name!r}: tls {key} file {self.tls[key]} does not exist")
        return self.tls["ca"], self.tls["cert"], self.tls["key"]


def load_targets(settings: Settings) -> dict[str, Target]:
    """Blocking (reads the targets file): the default target plus every named one from the file."""
    from runner.deploy.config import RESERVED, load_deploy_config, read_targets_file

    config = load_deploy_config(settings)
    targets = {DEFAULT_TARGET: Target.default(settings, config.registry_for(DEFAULT_TARGET))}
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
