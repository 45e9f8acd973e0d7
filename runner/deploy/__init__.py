"""The Swarm side: build images, deploy services and stacks, roll back, keep the deploy history.
See docs/deploy.md.

The package's own names (``stage_actions``, ``reconcile_in_flight``, ``provenance``) live in
``runner.deploy.entry`` and load on first use: importing a light submodule (``runner.deploy.config``,
which `conveyor lint` reads for environments) must not import docker-py with them.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["stage_actions", "reconcile_in_flight", "provenance"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        return getattr(importlib.import_module("runner.deploy.entry"), name)
    raise AttributeError(f"module 'runner.deploy' has no attribute {name!r}")
