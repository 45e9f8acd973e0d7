"""The terminal sink of `conveyor run`: a line per step as it starts and ends, output prefixed by job.

::

    == stage test
    [unit] > step 1: python -m unittest
    [unit] Ran 3 tests in 0.002s
    [unit] + step 1: python -m unittest  success  0.41s
    [lint] x step 1: sh lint.sh  failure (exit 2)  0.12s

Colours only when the stream is a terminal. Writes go straight to the stream (a terminal or a
pipe), one write per event, so even a step printing 200,000 lines does not stall the build.
"""

from __future__ import annotations

import sys
from typing import TextIO

import click

from runner.executor.events import (
    BuildFinished,
    Event,
    JobFinished,
    StageFinished,
    StageStarted,
    StepFinished,
    StepOutput,
    StepStarted,
)

__all__ = ["ProgressSink", "format_duration", "STATUS_COLOURS"]

STATUS_COLOURS = {
    "success": "green",
    "failure": "red",
    "timed_out": "red",
    "config_error": "red",
    "cancelled": "yellow",
    "interrupted": "yellow",
    "skipped": "bright_black",
    "running": "cyan",
    "waiting": "magenta",
    "queued": "bright_black",
}


def format_duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.2f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


class ProgressSink:
    def __init__(self, stream: TextIO | None = None, *, color: bool | None = None, output: bool = True) -> None:
        self.stream = stream or sys.stdout
        self.color = self.stream.isatty() if color is None else color
        self.output = output  # False: only the step lines (the output is still stored)
        self._names: dict[tuple[str, str, int], str] = {}
        self._started: dict[tuple[str, str, int, int], float] = {}

    def _style(self, text: str, **style) -> str:
        return click.style(text, **style) if self.color else text

    def _status(self, status: str) -> str:
        return self._style(status, fg=STATUS_COLOURS.get(status), bold=status != "success")

    def _prefix(self, job: str) -> str:
        return self._style(f"[{job}]", fg="blue")

    def _write(self, text: str) -> None:
        self.stream.write(text)
        self.stream.flush()

    def emit(self, event: Event) -> None:
        if isinstance(event, StepOutput):
            if self.output and event.lines:
                prefix = self._prefix(event.job) + " "
                self._write("".join(prefix + line + "\n" for line in event.lines))
        elif isinstance(event, StepStarted):
            self._names[(event.stage, event.job, event.step)] = event.name
            self._started[(event.stage, event.job, event.step, event.attempt)] = event.time
            again = f" (attempt {event.attempt})" if event.attempt > 1 else ""
            self._write(f"{self._prefix(event.job)} > step {event.step + 1}: {event.name}{again}\n")
        elif isinstance(event, StepFinished):
            name = self._names.get((event.stage, event.job, event.step), "")
            began = self._started.pop((event.stage, event.job, event.step, event.attempt), None)
            took = format_duration(event.time - began if began is not None else None)
            mark = "+" if event.status == "success" else "x"
            detail = f" ({event.reason})" if event.reason else ""
            if not detail and event.exit_code not in (None, 0) and event.status != "success":
                detail = f" (exit {event.exit_code})"
            self._write(f"{self._prefix(event.job)} {mark} step {event.step + 1}: {name}  "
                        f"{self._status(event.status)}{detail}  {took}\n")
        elif isinstance(event, JobFinished):
            if event.status != "success" and event.reason:
                self._write(f"{self._prefix(event.job)} job {self._status(event.status)}: {event.reason}\n")
        elif isinstance(event, StageStarted):
            self._write(self._style(f"== stage {event.stage}", bold=True) + "\n")
        elif isinstance(event, StageFinished):
            if event.status == "skipped":
                why = f" ({event.reason})" if event.reason else ""
                self._write(self._style(f"== stage {event.stage} skipped{why}", fg="bright_black") + "\n")
            elif event.status != "success":  # the reason is on the job's line already
                self._write(f"== stage {event.stage} {self._status(event.status)}\n")
        elif isinstance(event, BuildFinished):
            pass  # `conveyor run` prints the summary line itself, with the build's number
