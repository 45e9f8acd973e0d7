"""Conveyor's exceptions. Every error a user can meet says what to do next.

::

    ConveyorError
    ├── ConfigError            the pipeline file is wrong (carries the Diagnostics)
    ├── TemplateError          Jinja rendering failed or hit a sandbox/resource limit
    ├── ContextError           a value from outside the file is unusable (control characters, ...)
    ├── BackendError           where jobs run is broken
    │   ├── BackendUnavailable the engine does not answer / is not installed
    │   ├── ImageNotFound      an image is neither local nor pullable
    │   └── ServiceError       a job's service did not start or become ready (carries its log)
    ├── StoreError             the SQLite store cannot be opened or written
    │   ├── BuildNotFound      no build matches what the user named
    │   └── NotWaiting         an approval decision for a build that waits for none
    ├── SourceError            git: no repository, unknown sha, fetch failed
    ├── DeployError            a deploy or rollback could not be carried out
    │   ├── NotASwarm          the target engine is not a swarm manager
    │   └── NoDeployToRollBackTo
    └── WebhookError           a delivery was refused (bad signature, malformed, ...)
"""

from __future__ import annotations

__all__ = [
    "ConveyorError",
    "ConfigError",
    "TemplateError",
    "ContextError",
    "BackendError",
    "BackendUnavailable",
    "ImageNotFound",
    "ServiceError",
    "StoreError",
    "BuildNotFound",
    "NotWaiting",
    "SourceError",
    "DeployError",
    "NotASwarm",
    "NoDeployToRollBackTo",
    "WebhookError",
]


class ConveyorError(Exception):
    """Base of every error Conveyor raises on purpose."""


class ConfigError(ConveyorError):
    def __init__(self, diagnostics: list) -> None:  # list[Diagnostic]
        self.diagnostics = list(diagnostics)
        super().__init__("\n".join(str(d) for d in self.diagnostics) or "invalid pipeline")


class TemplateError(ConveyorError):
    pass


class ContextError(ConveyorError):
    pass


class BackendError(ConveyorError):
    pass


class BackendUnavailable(BackendError):
    pass


class ImageNotFound(BackendError):
    pass


class ServiceError(BackendError):
    """A job's service did not start or become ready. ``log`` holds the lines (the service's last
    log lines) the job's log shows, since no step of the job ran to show them."""

    def __init__(self, message: str, log: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.log = tuple(log)


class StoreError(ConveyorError):
    pass


class BuildNotFound(StoreError):
    @classmethod
    def of(cls, build_id: int) -> BuildNotFound:
        """The one wording of a missing build (a private one, to an anonymous reader, reads the same)."""
        return cls(f"there is no build with id {build_id}; `conveyor builds` lists them")


class NotWaiting(StoreError):
    """A decision came for a build that is not waiting for an approval (any more)."""


class SourceError(ConveyorError):
    pass


class DeployError(ConveyorError):
    pass


class NotASwarm(DeployError):
    pass


class NoDeployToRollBackTo(DeployError):
    pass


class WebhookError(ConveyorError):
    pass
