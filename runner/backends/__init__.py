"""Where jobs run: one contract (``base.Backend``), several homes, picked by name."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from runner.backends.base import Backend, BuildRef, JobHandle, StepExit
from runner.errors import BackendError
from runner.settings import Settings

if TYPE_CHECKING:
    from runner.engine.engine import Engine

__all__ = ["Backend", "BuildRef", "JobHandle", "StepExit", "BACKENDS", "build_sweeper", "get_backend"]

BACKENDS = ("docker", "swarm", "local", "fake")


def get_backend(name: str, settings: Settings | None = None, engine: Engine | None = None) -> Backend:
    """The backend called ``name``: "docker" (the default), "swarm" (one-shot Swarm services on the
    swarm whose manager DOCKER_HOST names), "local" (host processes, isolates nothing) or "fake"
    (scripted, for tests). The first two run on ``engine`` (default: ``default_engine(settings)``,
    runner/engine/engine.py), which the backend closes with itself."""
    settings = settings or Settings()
    if name in ("docker", "swarm"):
        from runner.engine.engine import default_engine

        engine = engine or default_engine(settings)
    if name == "docker":
        from runner.backends.docker import DockerBackend

        return DockerBackend(settings, engine=engine)
    if name == "swarm":
        from runner.backends.swarm import SwarmBackend

        return SwarmBackend(settings, engine=engine)
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
    from runner.engine.engine import default_engine

    engine = default_engine(settings)
    try:
        manager = swarm_blocking.is_manager(engine)
    except BaseException:  # no engine answers: the caller says so; this client goes
        engine.close()
        raise
    return get_backend("swarm" if manager else "docker", settings, engine).sweep_build
