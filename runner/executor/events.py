"""What the executor tells the world: event dataclasses, the EventSink protocol, NullSink.

Events are emitted in order from the event loop. ``EventSink.emit`` is synchronous and must not
block: a sink that does I/O hands the event to its own thread or queue (the store's writer does).
Log output arrives as ``StepOutput`` events holding whole lines, already masked and capped.

Identifiers: ``stage`` is the stage name; ``job`` is the job name, unique within its stage (post
jobs use the stage name ``post:always``, ``post:success`` or ``post:failure``); ``step`` is the
step's index within its job.

Order (runner/executor/run.py, dag.py): per job JobStarted, StepStarted/StepOutput*/StepFinished
per attempt, JobFinished, between its stage's StageStarted and StageFinished; with ``needs`` the jobs
of several stages may run at once, so stages interleave. A job skipped or cancelled before it
started gets only JobFinished. A stage that does not run (a compile-time
filter, ``when``, an earlier failure) still gets StageStarted and StageFinished("skipped", reason),
so every stage of the plan has a row; steps after a job's failing step get no events. An action
stage (build/deploy/rollback) appears as one job and one step (index 0) named after its kind.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

__all__ = [
    "Event",
    "BuildStarted",
    "BuildFinished",
    "StageStarted",
    "StageFinished",
    "JobStarted",
    "JobFinished",
    "StepStarted",
    "StepOutput",
    "StepFinished",
    "EventSink",
    "NullSink",
    "FanoutSink",
]


@dataclass(frozen=True)
class Event:
    time: float  # time.time() when it happened


@dataclass(frozen=True)
class BuildStarted(Event):
    pass


@dataclass(frozen=True)
class BuildFinished(Event):
    status: str
    reason: str | None = None
    warnings: tuple[str, ...] = ()  # a successful build's allowed failures ("with warnings")


@dataclass(frozen=True)
class StageStarted(Event):
    stage: str


@dataclass(frozen=True)
class StageFinished(Event):
    stage: str
    status: str
    reason: str | None = None  # e.g. the skip reason, or why a deploy failed


@dataclass(frozen=True)
class JobStarted(Event):
    stage: str
    job: str


@dataclass(frozen=True)
class JobFinished(Event):
    stage: str
    job: str
    status: str
    reason: str | None = None
    allowed: bool = False  # a failure its allow_failure accepts: the build does not fail for it


@dataclass(frozen=True)
class StepStarted(Event):
    stage: str
    job: str
    step: int
    name: str
    attempt: int = 1


@dataclass(frozen=True)
class StepOutput(Event):
    stage: str
    job: str
    step: int
    lines: tuple[str, ...] = field(default_factory=tuple)  # without trailing newlines


@dataclass(frozen=True)
class StepFinished(Event):
    stage: str
    job: str
    step: int
    status: str
    exit_code: int | None = None
    attempt: int = 1
    reason: str | None = None  # "out of memory", "timed out after 5s", "log capped", ...


class EventSink(Protocol):
    def emit(self, event: Event) -> None:
        """Take one event; never block the event loop."""


class NullSink:
    def emit(self, event: Event) -> None:
        pass


class FanoutSink:
    """Several sinks as one; a sink that raises is reported once and then left out, so a broken
    plugin or viewer never stops a build."""

    def __init__(self, *sinks: EventSink) -> None:
        self.sinks = list(sinks)

    def add(self, sink: EventSink) -> None:
        self.sinks.append(sink)

    def emit(self, event: Event) -> None:
        for sink in list(self.sinks):
            try:
                sink.emit(event)
            except Exception as exc:  # noqa: BLE001 - a sink must not break the build
                self.sinks.remove(sink)
                import logging

                logging.getLogger("conveyor.events").error("event sink %r failed and was removed: %s", sink, exc)
