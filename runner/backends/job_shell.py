"""How a job's steps reach its container: one shell per job, the container's main process, reads
the steps from its stdin, the way GitLab Runner's Docker executor feeds a job its script.

Why not ``docker exec`` per step: every exec costs the engine a runtime start (``runc exec``),
about 40 ms on an idle engine and several times that while other jobs' containers are starting; a
shell that reads its next step forks it in about a millisecond (docs/backends.md, "Steps").

For each step the backend writes one command (``step_command``)::

    ( exec env -- 'NAME=value' ... sh -e -c 'SCRIPT' ) </dev/null >/proc/self/fd/1 2>&1; conveyor_step_end $? MARKER

The step runs in a subshell, so nothing it sets (variables, directory, traps) reaches the next, and
the redirections are the subshell's own (the job shell's messages, "Killed", stay out of the
output). Its env goes through ``env`` rather than ``export``: a shell refuses to export some names
(bash, ``/bin/sh`` on Fedora or UBI images, holds ``UID`` read-only), while ``env`` hands any name
to the step as an engine's exec would. Its stdin is /dev/null (the shell's own stdin is this
protocol). Its stdout and stderr are one pipe, so its output keeps the order it was written in,
opened afresh through ``/proc``: a step that leaves that pipe non-blocking (Node does) changes its
own open file, not the one later steps and the marker are written to, which would otherwise lose
output and the end of every later step once the pipe is full. When the step ends,
``conveyor_step_end`` (defined by ``FIRST_LINE``) prints the marker, the step's exit status (128+N
after signal N) and the container's count of OOM kills so far, read from its memory cgroup without a
fork. The marker is random per step: output cannot end a step by accident (``StepEnd`` finds it).
Output that comes after the marker (a process the step left in the background) is handed to whatever
reads next. While it waits for a step the shell reaps every child that ends, the orphans the step
left behind included (ash, dash and bash all wait for any child).
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping

__all__ = ["SHELL", "FIRST_LINE", "new_marker", "step_command", "StepEnd"]

# The container's main process: a shell reading commands from its stdin (kept open by the engine).
SHELL = ["sh", "-s"]
# Written once, before the first step: a `docker stop` ends the shell at once instead of after its
# grace period (a shell that is PID 1 ignores TERM unless it traps it); the shell's own messages
# ("Terminated" after a step it waited for was killed) would reach the output on a second pipe,
# in no order with the step's, so they go nowhere; and the function that ends each step's output
# with its marker, status and the container's OOM kill count (memory cgroup v2, else v1; empty
# where neither is readable), read with builtins only.
FIRST_LINE = (
    b"trap 'exit 0' TERM; exec 2>/dev/null; "
    b"conveyor_step_end() { o=; for f in /sys/fs/cgroup/memory.events /sys/fs/cgroup/memory/memory.oom_control; "
    b'do [ -r "$f" ] && while read -r k v; do [ "$k" = oom_kill ] && o=$v; done <"$f"; done; '
    b'echo "$2 $1 $o"; }\n'
)


def new_marker() -> bytes:
    return b"conveyor-step-end-" + secrets.token_hex(16).encode()


def step_command(script: str, env: Mapping[str, str], marker: bytes) -> bytes:
    """The command that runs one step with ``env`` added to the container's own environment.

    Raises ValueError for a NUL byte, which no process can receive in its arguments or environment,
    and for a name that is empty or holds ``=``, which no environment can hold."""
    pairs = [f"{name}={value}" for name, value in env.items()]
    if "\0" in script or any("\0" in pair for pair in pairs):
        raise ValueError("the step's script or environment holds a NUL byte, which no process can receive")
    if bad := [name for name in env if not name or "=" in name]:
        raise ValueError(f"environment variable name(s) {bad} cannot be passed to a process (empty, or with '=')")
    assign = "".join(f"{_quote(pair)} " for pair in pairs)
    line = (f"( exec env -- {assign}sh -e -c {_quote(script)} ) </dev/null >/proc/self/fd/1 2>&1; "
            f"conveyor_step_end $? {marker.decode()}\n")
    return line.encode("utf-8", "surrogateescape")


class StepEnd:
    """Splits the job shell's output into the step's own and the end of the step.

    ``feed`` returns the part of the bytes given that is the step's output (holding back a tail
    that could be the beginning of the marker) and, once the marker's line is complete, the
    step's exit status. ``rest`` is then what came after it, and ``oom_kills`` the container's
    count of OOM kills when the step ended (None: its memory cgroup was not readable)."""

    def __init__(self, marker: bytes, before: bytes = b"") -> None:
        self.marker = marker
        self.held = before
        self.rest = b""
        self.oom_kills: int | None = None

    def feed(self, data: bytes) -> tuple[bytes, int | None]:
        buf = self.held + data if self.held else data
        at = buf.find(self.marker)
        if at >= 0:
            end = buf.find(b"\n", at)
            if end < 0:  # the status is still on its way
                self.held = buf[at:]
                return buf[:at], None
            status, kills, *_ = buf[at + len(self.marker):end].split() + [b"", b""]
            self.held, self.rest = b"", buf[end + 1:]
            self.oom_kills = int(kills) if kills.isdigit() else None
            return buf[:at], int(status) if status.isdigit() else -1
        keep = _marker_start(buf, self.marker)
        self.held = buf[len(buf) - keep:] if keep else b""
        return buf[:len(buf) - keep], None

    def flush(self) -> bytes:
        """What is held back, once no marker can come (the shell's output ended)."""
        held, self.held = self.held, b""
        return held


def _marker_start(buf: bytes, marker: bytes) -> int:
    """The length of the longest end of ``buf`` that begins ``marker`` (0: none)."""
    at = buf.find(marker[:1], max(0, len(buf) - len(marker) + 1))
    while at >= 0:
        if marker.startswith(buf[at:]):
            return len(buf) - at
        at = buf.find(marker[:1], at + 1)
    return 0


def _quote(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"
