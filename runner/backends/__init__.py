"""Where jobs run: one contract (``base.Backend``), several homes, picked by name."""

from __future__ import annotations

from runner.backends.base import Backend, BuildRef, JobHandle, StepExit
from runner.errors import BackendError
from runner.settings import Settings

__all__ = ["Backend", "BuildRef", "JobHandle", "StepExit", "BACKENDS", "get_backend"]

BACKENDS = ("docker", "swarm", "local", "fake")


def get_backend(name: str, settings: Settings | None = None) -> Backend:
    """The backend called ``name``: "docker" (the default), "swarm" (one-shot Swarm services on the
    swarm whose manager DOCKER_HOST names), "local" (host processes, isolates nothing) or "fake"
    (scripted, for tests)."""
    settings = settings or Settings()
    if name == "docker":
        from runner.backends.docker import DockerBackend

        return DockerBackend(settings)
    if name == "swarm":
        from runner.backends.swarm import SwarmBackend

        return SwarmBackend(settings)
    if name == "local":
        from runner.backends.local import LocalBackend

        return LocalBackend(workspace_limit=settings.workspace_limit)
    if name == "fake":
        from runner.backends.fake import FakeBackend

        return FakeBackend()
    raise BackendError(f"unknown backend {name!r}; choose one of {', '.join(BACKENDS)}")
