"""The engine: the only code that talks to Docker (the only package that imports docker-py; a test
enforces it). See docs/architecture.md, "The engine".

- ``engine.py``: ``Engine``, one target's clients and the one thread seam (``Engine.call``) that
  backends and deploy code alike run every blocking call through; ``default_engine`` (where jobs
  run) and ``open_target`` (a deploy's target, a swarm manager);
- ``api.py``: the engine's HTTP API spoken directly, for what builds do; ``dockerpy.py``: docker-py,
  for the rest (services, image builds, the registry), loaded only when that is asked for;
- ``targets.py``: targets and their TLS (the targets file);
- ``labels.py``: the ``io.conveyor.*`` labels and the rule the sweeps match; ``sweeps.py`` the sweep;
- ``workspace.py``: a build's workspace volume and network, named and filled here once;
- ``containers.py``: images and containers every backend needs (pull if not present, create, remove);
- ``errors.py``: what both clients raise; ``types.py``: docker-py's spec types for the code outside.

Names load on first use; only ``dockerpy.py`` and ``types.py`` load docker-py.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["Engine", "APIClient", "DockerClient", "default_engine", "open_target", "Target", "DEFAULT_TARGET",
           "load_targets"]

_WHERE = {"Engine": "engine", "APIClient": "engine", "DockerClient": "dockerpy", "default_engine": "engine",
          "open_target": "engine", "Target": "targets", "DEFAULT_TARGET": "targets", "load_targets": "targets"}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(f"runner.engine.{_WHERE[name]}"), name)
    raise AttributeError(f"module 'runner.engine' has no attribute {name!r}")
