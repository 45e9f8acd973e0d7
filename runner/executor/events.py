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

import logging
from dataclasses import field
from typing import Protocol

from runner.values import Value, frozen

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

_log = logging.getLogger("conveyor.events")


@frozen
class Event(Value):
    time: float  # time.time() when it happened


@frozen
class BuildStarted(Event):
    pass


@frozen
class BuildFinished(Event):
    status: str
    reason: str | None = None
    warnings: tuple[str, ...] = ()  # a successful build's allowed failures ("with warnings")


@frozen
class StageStarted(Event):
    stage: str


@frozen
class StageFinished(Event):
    stage: str
    status: str
    reason: str | None = None  # e.g. the skip reason, or why a deploy failed


@frozen
class JobStarted(Event):
    stage: str
    job: str


@frozen
class JobFinished(Event):
    stage: str
    job: str
    status: str
    reason: str | None = None
    allowed: bool = False  # a failure its allow_failure accepts: the build does not fail for it


@frozen
class StepStarted(Event):
    stage: str
    job: str
    step: int
    name: str
    attempt: int = 1


@frozen
class StepOutput(Event):
    stage: str
    job: str
    step: int
    lines: tuple[str, ...] = field(default_factory=tuple)  # without trailing newlines


@frozen
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
    """Several sinks as one. A sink that raises is reported and kept: the first failure of each sink
    is logged with its traceback and the count when the build ends. Dropping it instead once cost a
    whole build its live log over one line the viewer could not render; every other sink gets every
    event either way, so a broken plugin or viewer never stops a build."""

    def __init__(self, *sinks: EventSink) -> None:
        self.sinks = list(sinks)
        self.failures: dict[int, int] = {}  # id(sink) -> events it raised on

    def add(self, sink: EventSink) -> None:
        self.sinks.append(sink)

    def emit(self, event: Event) -> None:
        for sink in list(self.sinks):
            try:
                sink.emit(event)
            except Exception:  # noqa: BLE001 - a sink must not break the build
                self._failed(sink, event)
        if isinstance(event, BuildFinished):
            for sink in self.sinks:
                if self.failures.get(id(sink)):
                    _log.error("event sink %r failed on %d event(s) of this build", sink, self.failures[id(sink)])

    def _failed(self, sink: EventSink, event: Event) -> None:
        count = self.failures[id(sink)] = self.failures.get(id(sink), 0) + 1
        if count == 1:
            _log.exception("event sink %r failed on %s; it keeps getting the next events", sink,
                           type(event).__name__)
