"""Where jobs run: one contract (``base.Backend``), several homes, picked by name."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from runner.backends.base import Backend, BuildRef, JobHandle, StepExit
from runner.errors import BackendError
from runner.settings import Settings

__all__ = ["Backend", "BuildRef", "JobHandle", "StepExit", "BACKENDS", "build_sweeper", "get_backend"]

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


def build_sweeper(settings: Settings) -> Callable[[str], Awaitable[int]]:
    """What removes the job resources one crashed build left (``sweep_build(build_id)``), whichever
    backend ran it: on a swarm manager the Swarm backend's (the build's job services and secrets,
    then its containers, volumes and networks), elsewhere the Docker backend's. Both match by the
    build's labels, so a build that left nothing costs a few list calls. Blocking (one ``info``)."""
    from runner.backends import swarm_blocking
    from runner.backends.swarm import SwarmBackend

    swarm = SwarmBackend(settings)
    try:
        if swarm_blocking.is_manager(swarm.engine):
            return swarm.sweep_build
    except BaseException:  # no engine answers: the caller says so; this client goes
        swarm.close()
        raise
    swarm.close()
    return get_backend("docker", settings).sweep_build
