"""What the executor asks around a job's steps about the files the job keeps (``artifacts``,
``cache``, ``reports``): a collaborator passed into ``run_plan``, like the event sink.

``before_steps`` runs after ``start_job`` and before the first step (restore caches, put the
artifacts of the jobs it needs into the workspace); raising fails the job with the message.
``after_steps`` runs after the steps, also after a failure or a timeout (never after a cancel), and
returns ``Kept``: a ``failure`` fails the job (artifacts refused), ``warnings`` make the build pass
"with warnings" (a cache that could not be saved). ``NoFiles`` keeps nothing.
"""

from __future__ import annotations

from typing import Protocol

from runner.backends.base import Backend, JobHandle
from runner.values import Value, frozen

__all__ = ["JobFiles", "Kept", "NoFiles"]


@frozen
class Kept(Value):
    failure: str | None = None
    warnings: tuple[str, ...] = ()


class JobFiles(Protocol):
    async def before_steps(self, backend: Backend, handle: JobHandle) -> tuple[str, ...]:
        """Put what the job starts with into its workspace; return warnings."""

    async def after_steps(self, backend: Backend, handle: JobHandle, status: str) -> Kept:
        """Keep what the job's ``artifacts``, ``cache`` and ``reports`` select, given its status so far."""


class NoFiles:
    async def before_steps(self, backend: Backend, handle: JobHandle) -> tuple[str, ...]:
        return ()

    async def after_steps(self, backend: Backend, handle: JobHandle, status: str) -> Kept:
        return Kept()
