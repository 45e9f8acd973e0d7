"""docker-py's spec types (Swarm services, networks) and its cancellable stream, for code outside
``runner.engine`` (imported as ``from runner.engine import types as dtypes``), so that nothing else
imports docker-py."""

from __future__ import annotations

from docker.types import (ContainerSpec, IPAMConfig, IPAMPool, Mount, Placement, Resources, RestartPolicy,
                          SecretReference, ServiceMode, TaskTemplate)
from docker.types.daemon import CancellableStream

__all__ = ["ContainerSpec", "IPAMConfig", "IPAMPool", "Mount", "Placement", "Resources", "RestartPolicy",
           "SecretReference", "ServiceMode", "TaskTemplate", "CancellableStream"]
