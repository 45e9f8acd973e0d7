"""The driver of a Swarm job: a POSIX sh script (busybox runs it) that runs a job's steps in order
inside one task, and the reader that takes its framed output apart again on the runner's side.

The runner sees a task only through the manager's log stream (``service logs``), one stream for
all steps, so the driver frames each step::

    \\n@@conveyor:<nonce>:begin <i>\\n   <the step's output, stdout and stderr merged>   \\n@@conveyor:<nonce>:end <i> <status>\\n

The nonce is random per service and reaches the task only inside the driver, which travels as a
Swarm secret (never in the service's spec, its env or its command line): a step that prints marker
lines, or a log of an earlier build, cannot end a step or fake its status. (A step that reads the
driver's file under ``/run/secrets`` could forge its *own* exit status, which gains it nothing it
could not have with ``exit``.) The newline before each marker ends a last line the step left open,
and the reader drops exactly that one newline again, so a step's output arrives byte for byte (as
text: the engine's log driver stores lines as UTF-8).

Each step runs in the background of the driver, which waits for it: a shell runs its traps only
between commands, and ``wait`` is one it leaves at once on a signal. After a failing step it stops: the executor either gives up or retries that step, and a
retry is a new service that starts at it (runner/backends/swarm.py).
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["PlannedStep", "driver_script", "new_nonce", "FrameReader", "Begin", "Output", "End"]

SEED_DIR = "/run/secrets"  # where the checkout's chunks are, for a job off the workspace's node


@dataclass(frozen=True)
class PlannedStep:
    index: int  # the step's position in the job
    run: str
    env: dict[str, str]


def new_nonce() -> str:
    return secrets.token_hex(16)


def _quote(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"


def driver_script(nonce: str, workdir: str, steps: Sequence[PlannedStep], seed: Sequence[str] = ()) -> str:
    """The driver for ``steps``; ``seed``: secret names whose concatenation is a gzip tar to unpack
    into ``workdir`` first (a job placed away from the build's workspace volume)."""
    mark = f"@@conveyor:{nonce}:"
    # PID 1 ignores a signal it has no handler for: on the TERM of the service's removal, pass it to
    # every other process of the container (the running step, whatever it started) and leave.
    lines = ["#!/bin/sh", "trap 'kill -TERM -1 2>/dev/null; exit 143' TERM", f"W={_quote(workdir)}",
             'mkdir -p "$W" || exit 0']
    if seed:
        chunks = " ".join(_quote(f"{SEED_DIR}/{name}") for name in seed)
        lines.append(f'cat {chunks} | gunzip -c | tar -x -C "$W" || '
                     f"{{ printf '\\n%s\\n' {_quote(mark + 'seed-failed')}; exit 0; }}")
    for step in steps:
        bad = [k for k in step.env if not k or "=" in k]
        if bad:
            raise ValueError(f"environment variable name(s) {bad} cannot be passed to a process (empty, or with '=')")
        # As the Docker backend's job shell does (runner/backends/job_shell.py): the env through `env`,
        # which takes names a shell refuses to export (bash's read-only UID), and the output pipe
        # opened afresh, so a step that leaves it non-blocking cannot cost later steps their output.
        assign = "".join(f"{_quote(f'{k}={v}')} " for k, v in sorted(step.env.items()))
        lines += [
            f"printf '\\n%s\\n' {_quote(f'{mark}begin {step.index}')}",
            f'(cd "$W" && exec env -- {assign}sh -e -c {_quote(step.run)}) </dev/null >/proc/self/fd/1 2>&1 &',
            'wait "$!"; rc=$?',
            f"printf '\\n%s %s\\n' {_quote(f'{mark}end {step.index}')} \"$rc\"",
            '[ "$rc" -eq 0 ] || exit 0',
        ]
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class Begin:
    index: int


@dataclass(frozen=True)
class Output:
    data: bytes


@dataclass(frozen=True)
class End:
    index: int
    code: int


class FrameReader:
    """Turns the log stream's bytes (arbitrary chunk borders) into Begin, Output and End events.
    Output outside a step (the seeding's) is dropped; a ``seed-failed`` marker ends as End(-1, -1)."""

    def __init__(self, nonce: str) -> None:
        self.prefix = f"\n@@conveyor:{nonce}:".encode()
        self.buf = b""
        self.step: int | None = None

    def feed(self, data: bytes) -> list[Begin | Output | End]:
        self.buf += data
        events: list[Begin | Output | End] = []
        while True:
            at = self.buf.find(self.prefix)
            if at < 0:
                keep = self._partial_prefix()
                self._output(self.buf[:len(self.buf) - keep], events)
                self.buf = self.buf[len(self.buf) - keep:]
                return events
            self._output(self.buf[:at], events)
            nl = self.buf.find(b"\n", at + len(self.prefix))
            if nl < 0:
                self.buf = self.buf[at:]
                return events
            words = self.buf[at + len(self.prefix):nl].decode(errors="replace").split()
            self.buf = self.buf[nl + 1:]  # a marker line brings its own leading newline
            events += self._marker(words)

    def _marker(self, words: list[str]) -> list[Begin | Output | End]:
        try:
            if words[0] == "begin":
                self.step = int(words[1])
                return [Begin(self.step)]
            if words[0] == "end":
                self.step = None
                return [End(int(words[1]), int(words[2]))]
            if words[0] == "seed-failed":
                return [End(-1, -1)]
        except (IndexError, ValueError):
            pass
        return []

    def release_newline(self) -> list[Output]:
        """The newline held back at the end of the stream (it may be the one before a marker) as
        output, for a stream that has been quiet a while: a line shows when it is printed, not when
        the step ends. The cost: a step that ends with an unterminated line and then stays quiet
        gets a newline after it (line-based logs look the same)."""
        if self.buf != b"\n" or self.step is None:
            return []
        self.buf = b""
        return [Output(b"\n")]

    def _output(self, data: bytes, events: list) -> None:
        if data and self.step is not None:
            events.append(Output(data))

    def _partial_prefix(self) -> int:
        """How many bytes at the end of the buffer could be the start of a marker."""
        for n in range(min(len(self.prefix) - 1, len(self.buf)), 0, -1):
            if self.buf.endswith(self.prefix[:n]):
                return n
        return 0
