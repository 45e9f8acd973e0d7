"""How a job's steps reach its container: one shell per job, the container's main process, reads
the steps from its stdin, the way GitLab Runner's Docker executor feeds a job its script.

Why not ``docker exec`` per step: every exec costs the engine a runtime start (``runc exec``),
about 40 ms on an idle engine and several times that while other jobs' containers are starting; a
shell that reads its next step forks it in about a millisecond (docs/backends.md, "Steps").

For each step the backend writes one command (``step_command``)::

    ( export 'NAME=value'; ...; exec sh -e -c 'SCRIPT' ) </dev/null 2>&1; echo "MARKER $?"

The step runs in a subshell, so nothing it sets (variables, directory, traps) reaches the next; its
stdin is /dev/null (the shell's own stdin is this protocol); its stdout and stderr are one pipe,
so its output keeps the order it was written in. When it ends the shell prints the marker and its
exit status (128+N after signal N). The marker is random per step: output cannot end a step by
accident (``StepEnd`` finds it). Output that comes after the marker (a process the step left in the
background) is handed to whatever reads next. While it waits for a step the shell reaps every
child that ends, the orphans the step left behind included (ash, dash and bash all wait for any
child).
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping

from runner.regex import lazy

__all__ = ["SHELL", "FIRST_LINE", "new_marker", "step_command", "StepEnd"]

# The container's main process: a shell reading commands from its stdin (kept open by the engine).
SHELL = ["sh", "-s"]
# Written once, before the first step: a `docker stop` ends the shell at once instead of after its
# grace period (a shell that is PID 1 ignores TERM unless it traps it); the shell's own messages
# ("Terminated" after a step it waited for was killed) would reach the output on a second pipe,
# in no order with the step's, so they go nowhere.
FIRST_LINE = b"trap 'exit 0' TERM; exec 2>/dev/null\n"
_NAME = lazy(r"[A-Za-z_][A-Za-z0-9_]*")


def new_marker() -> bytes:
    return b"conveyor-step-end-" + secrets.token_hex(16).encode()


def step_command(script: str, env: Mapping[str, str], marker: bytes) -> bytes:
    """The command that runs one step with ``env`` added to the container's own environment.

    Raises ValueError for a NUL byte, which no process can receive in its arguments or environment."""
    pairs = [f"{name}={value}" for name, value in env.items()]
    if "\0" in script or any("\0" in pair for pair in pairs):
        raise ValueError("the step's script or environment holds a NUL byte, which no process can receive")
    exports = "".join(f"export {_quote(pair)}; " for pair, name in zip(pairs, env) if _NAME.fullmatch(name))
    # A name the shell cannot export (an engine's env may carry any) goes through `env` instead.
    odd = [_quote(pair) for pair, name in zip(pairs, env) if not _NAME.fullmatch(name)]
    run = f"exec env {' '.join(odd)} sh -e -c " if odd else "exec sh -e -c "
    line = f'( {exports}{run}{_quote(script)} ) </dev/null 2>&1; echo "{marker.decode()} $?"\n'
    return line.encode("utf-8", "surrogateescape")


class StepEnd:
    """Splits the job shell's output into the step's own and the end of the step.

    ``feed`` returns the part of the bytes given that is the step's output (holding back a tail
    that could be the beginning of the marker) and, once the marker's line is complete, the
    step's exit status. ``rest`` is then what came after it."""

    def __init__(self, marker: bytes, before: bytes = b"") -> None:
        self.marker = marker
        self.held = before
        self.rest = b""

    def feed(self, data: bytes) -> tuple[bytes, int | None]:
        buf = self.held + data if self.held else data
        at = buf.find(self.marker)
        if at >= 0:
            end = buf.find(b"\n", at)
            if end < 0:  # the status is still on its way
                self.held = buf[at:]
                return buf[:at], None
            status = buf[at + len(self.marker):end].strip()
            self.held, self.rest = b"", buf[end + 1:]
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
