"""The backend contract: where the jobs of a plan run.

A backend turns a ``Job`` into an isolated place (a container, a host directory, a script) and runs
the job's steps in it one after another. The executor drives it; the backend knows nothing of
stages, retries, statuses, logs or the store.

Call order, for one build::

    await backend.available()                 # raises BackendUnavailable with a reason to act on
    await backend.setup(build)                # per-build resources: the workspace, filled; network
    await backend.workspace_ready(build)      # before a stage action reads the workspace
    backend.workspace(build)                  # where the workspace is, for stage actions (any time now)
    handle = await backend.start_job(build, job)          # once per job (jobs may run concurrently)
    await backend.import_files(handle, archive)           # caches, needed artifacts (any number of times)
    async for item in backend.exec_step(handle, step, env):  # once per step attempt, in order
        ...                                   # bytes chunks of output, then one StepExit
    await backend.export_files(handle, globs, dest, limit)  # artifacts, caches, reports (also after a failure)
    await backend.stop_job(handle)            # always, also after a failed start_job
    await backend.idle(build)                 # an approval waits: nothing runs (jobs start again after)
    await backend.teardown(build)             # always, also after a failed setup

Rules every backend keeps (``tests/backends/test_contract.py`` checks them all):

- ``exec_step`` is an async iterator: it yields ``bytes`` chunks of the step's combined
  stdout/stderr in order (chunk borders are arbitrary, not lines), and ends with exactly one
  ``StepExit``. A step whose place died under it (not the step's fault: a Swarm node went down)
  ends with ``StepExit(interrupted=True)`` and a reason naming the place. The step runs
  ``sh -e -c <step.run>`` with ``env`` (the job's env merged with the step's) in the job's working
  directory (the build workspace, ``job.workdir``).
- If the consumer stops early (``aclose()``, or the task is cancelled, as on a step timeout), the
  step's processes are stopped: SIGTERM, then SIGKILL after ``grace`` seconds. ``exec_step`` returns
  promptly after that; it never leaves a step running.
- The workspace has one owner, the backend: it names it and fills it from ``build.source``,
  starting in ``setup`` (the fill may go on beside the first jobs' starts), so it holds the checkout
  before any ``start_job`` returns and once ``workspace_ready`` returns. ``workspace(build)``, between
  ``setup`` and ``teardown``, says where it is (an engine volume, or a directory on the runner's host);
  a stage action (a ``build`` stage's context, a stack's Compose file) reads it through that, after
  ``workspace_ready``, and never derives a name of its own.
- Jobs of one build share the workspace; files a step writes are seen by the next step, by later
  jobs of the build and by stage actions after them.
- ``stop_job`` and ``teardown`` are idempotent, never raise for "already gone", and are safe after a
  failed or cancelled ``start_job``/``setup``. ``teardown`` removes everything the build made.
- ``start_job`` raises ``ImageNotFound`` (naming the image) or ``BackendError`` with a message the
  user can act on; the executor reports it as the job's failure.
- A job's ``services`` are started by ``start_job``, which returns once they are ready (or raises
  ``ServiceError``, whose ``log`` lines the executor shows), and removed by ``stop_job``. A backend
  that cannot run them refuses the job in ``start_job`` with a ``BackendError`` saying so.
- ``export_files(handle, globs, dest, limit, max_files)`` writes the workspace files that ``globs`` select
  (runner/backends/files.py: a glob keeps what it matches and everything under a directory it
  matches) to the tar file ``dest``, named by their path in the workspace, and returns how many;
  regular files and symlinks only. Past ``limit`` bytes of file data (0: no limit) it raises
  ``FilesTooLargeError`` naming the file that passed it, before that file's data is copied; past
  ``max_files`` files or symlinks (0: no limit), ``TooManyFilesError``.
  ``import_files(handle, archive)`` unpacks such a tar into the workspace. Both work between
  ``start_job`` and ``stop_job`` (export also after a failed step, and in a container that died),
  never beside a running step of the same job, and go through the same
  seam as the rest (the Docker backend: ``get_archive``/``put_archive`` on the job's container,
  never a bind mount). Neither ever reads or writes outside the workspace: a symlink that leads out
  (an absolute target, or one climbing above the workspace), an absolute path or a ``..`` raises
  ``WorkspacePathError`` naming the path, and nothing of that archive is written.
- ``start_job`` and ``exec_step`` of different jobs may run concurrently; the steps of one job never
  overlap.
- No method blocks the event loop: blocking client calls cross into threads at one named seam.
"""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runner.errors import BackendError
from runner.plan import Job, Step
from runner.values import Value, frozen

__all__ = ["Backend", "BuildRef", "JobHandle", "StepExit", "Workspace"]


@frozen
class BuildRef(Value):
    """The build a backend works for."""

    id: str  # unique across instances, safe in resource names: [a-z0-9-]
    source: Path  # the checkout to copy into the workspace
    instance: str = "default"  # which runner owns the resources (labels, sweeps)
    labels: dict[str, str] = field(default_factory=dict)  # extra labels (repo, build number)
    # How long the build's resources may have to live, at least (seconds); None: the runner's
    # resource_ttl. A build that waits for an approval outlives that, and the sweeps of other
    # runs must not take its workspace meanwhile.
    lifetime: float | None = None
    # A hint: the images the plan's jobs use. A backend may check them while ``setup`` makes the
    # workspace, so the first jobs do not each wait for the check; ``start_job`` still answers for
    # its own image (a missing one fails that job, never ``setup``).
    images: tuple[str, ...] = ()


@frozen
class Workspace(Value):
    """Where a build's workspace is, for what reads it outside a job. Exactly one is set."""

    volume: str | None = None  # an engine volume (Docker backend), read through the engine API
    path: Path | None = None  # a directory on the runner's host (local and fake backends)


@dataclass
class JobHandle:
    """What ``start_job`` returns; ``data`` belongs to the backend."""

    build: BuildRef
    job: Job
    data: Any = None


@frozen
class StepExit(Value):
    code: int  # the exit status; 128+N after signal N; -1 when unknown
    oom_killed: bool = False
    reason: str | None = None  # a backend's own explanation, e.g. "container vanished"
    # The step's place went away under it (a Swarm node died), so its code says nothing about the
    # step: the job ends ``interrupted``, not ``failure``, and ``retry`` runs the step again.
    interrupted: bool = False


class Backend(abc.ABC):
    name: str = "?"
    grace: float = 5.0  # seconds between SIGTERM and SIGKILL when a step is stopped

    @abc.abstractmethod
    async def available(self) -> None:
        """Raise ``BackendUnavailable`` saying what to do when this backend cannot run jobs."""

    @abc.abstractmethod
    async def setup(self, build: BuildRef) -> None:
        """Make the build's shared resources (workspace filled from ``build.source``, network)."""

    async def workspace_ready(self, build: BuildRef) -> None:
        """Return once the workspace holds the checkout. A backend may go on filling it after
        ``setup``, beside the first jobs' starts; its ``start_job`` returns only once it is filled."""

    async def idle(self, build: BuildRef) -> None:
        """Nothing of the build runs for a while (it waits for an approval; every job before has
        stopped): let go of what the next ``start_job`` can get again, keeping the workspace."""

    @abc.abstractmethod
    def workspace(self, build: BuildRef) -> Workspace:
        """Where the build's workspace is (after ``setup``); ``BackendError`` before it."""

    @abc.abstractmethod
    async def start_job(self, build: BuildRef, job: Job) -> JobHandle:
        """Start the job's isolated place (container) and return its handle."""

    @abc.abstractmethod
    def exec_step(self, handle: JobHandle, step: Step, env: dict[str, str]) -> AsyncIterator[bytes | StepExit]:
        """Run one step; yield output chunks, then one StepExit."""

    @abc.abstractmethod
    async def stop_job(self, handle: JobHandle) -> None:
        """Destroy the job's place. Idempotent."""

    @abc.abstractmethod
    async def teardown(self, build: BuildRef) -> None:
        """Remove everything the build made. Idempotent."""

    async def export_files(self, handle: JobHandle, globs: Sequence[str], dest: Path, limit: int = 0,
                           max_files: int = 0) -> int:
        """Write the workspace files ``globs`` select to the tar ``dest``; return how many.
        FilesTooLargeError once their sizes pass ``limit`` bytes, TooManyFilesError past ``max_files``
        (0: no limit)."""
        raise BackendError(f"the {self.name} backend cannot copy files out of a workspace")

    async def import_files(self, handle: JobHandle, archive: Path) -> None:
        """Unpack the tar ``archive`` into the workspace (before the job's first step)."""
        raise BackendError(f"the {self.name} backend cannot copy files into a workspace")

    async def sweep(self) -> int:
        """Remove what crashed builds of this instance left behind; return how many things went."""
        return 0
