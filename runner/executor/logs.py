"""Step output as the user sees it: framed into whole lines, secrets masked, size capped.

Backends hand the executor raw byte chunks whose borders fall anywhere: inside a line, inside a
UTF-8 character, inside a secret. ``StepLog`` turns them into whole lines in bulk (one decode and
one split per chunk, never a Python loop per byte), masks every secret value in the lines it
releases, and stops keeping output once a step has produced ``cap`` bytes, adding one visible
marker line that says how much was dropped. Capping never changes the step's status.

Why masking after framing is enough: a line is only released when its newline has arrived, so a
secret split across two chunks is whole again before it is masked. A line longer than
``max_line`` is released in pieces; the last ``longest secret - 1`` characters are held back so a
secret is never cut in two by such a break either.
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Iterable, Mapping

__all__ = ["MASK", "SecretMasker", "StepLog", "cap_marker", "step_log"]

MASK = "********"
MARKER_PREFIX = "[conveyor]"


def cap_marker(cap: int, dropped: int) -> str:
    """The line shown where a step's output was cut."""
    return (f"{MARKER_PREFIX} output capped at {_size(cap)}: {_size(dropped)} ({dropped} bytes) "
            "more were dropped; the step's status is unchanged")


def _size(n: int) -> str:
    for unit, scale in (("MiB", 1024**2), ("KiB", 1024)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


class SecretMasker:
    """Replaces every secret value in a text with ``MASK``.

    A multi-line secret (a key file) is masked line by line as well, because its lines reach the
    log one at a time.
    """

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        values: set[str] = set()
        for value in secrets:
            if not value:
                continue
            values.add(value)
            values.update(part for part in value.splitlines() if part.strip())
        # Longest first, so a secret that contains another one is masked whole.
        ordered = sorted(values, key=len, reverse=True)
        self.longest = len(ordered[0]) if ordered else 0
        self._values = ordered
        self._pattern = re.compile("|".join(map(re.escape, ordered))) if ordered else None

    def __bool__(self) -> bool:
        return self._pattern is not None

    def mask(self, text: str) -> str:
        return self._pattern.sub(MASK, text) if self._pattern else text

    def mask_cut(self, text: str) -> str:
        """``mask``, for text whose rest was dropped (the cap): an end that could be the start of a
        secret is masked too, since the rest that would have made it whole never comes."""
        text = self.mask(text)
        cut = max((k for value in self._values for k in range(min(len(value) - 1, len(text)), 0, -1)
                   if text.endswith(value[:k])), default=0)
        return text[: len(text) - cut] + MASK if cut else text


class StepLog:
    """One step's output: ``feed(chunk) -> lines``, then ``close() -> last lines``."""

    def __init__(self, masker: SecretMasker | None = None, cap: int = 4 * 1024 * 1024,
                 max_line: int = 64 * 1024) -> None:
        self.masker = masker or SecretMasker()
        self.cap = cap
        self.max_line = max(max_line, 2 * self.masker.longest + 1)
        self.kept = 0  # bytes of input kept (at most cap)
        self.dropped = 0  # bytes of input dropped after the cap
        self.lines = 0  # lines released so far, the marker included
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._partial = ""

    @property
    def capped(self) -> bool:
        return self.dropped > 0

    def feed(self, chunk: bytes | str) -> list[str]:
        """Take a chunk of output; return the whole lines it completes (masked)."""
        if isinstance(chunk, str):
            chunk = chunk.encode("utf-8", errors="replace")
        room = self.cap - self.kept
        if len(chunk) > room:
            self.dropped += len(chunk) - max(room, 0)
            chunk = chunk[: max(room, 0)]
        if not chunk:
            return []
        self.kept += len(chunk)
        text = self._partial + self._decoder.decode(chunk)
        *done, self._partial = text.split("\n")
        out = [self.masker.mask(line.removesuffix("\r")) for line in done]
        if any(len(line) > self.max_line for line in out):
            out = [piece for line in out for piece in self._pieces(line)]
        if len(self._partial) > self.max_line:
            out.extend(self._break_long_line())
        self.lines += len(out)
        return out

    def close(self) -> list[str]:
        """The step ended: flush the last partial line and, when output was dropped, the marker."""
        text = self._partial + self._decoder.decode(b"", final=True)
        self._partial = ""
        mask = self.masker.mask_cut if self.dropped else self.masker.mask
        out = list(self._pieces(mask(text.removesuffix("\r")))) if text else []
        if self.dropped:
            out.append(cap_marker(self.cap, self.dropped))
        self.lines += len(out)
        return out

    def _break_long_line(self) -> list[str]:
        # Mask what is whole, then hold back the last characters: a secret whose end has not
        # arrived yet can only start there, so it stays whole for the next chunk.
        keep = max(self.masker.longest - 1, 0)
        masked = self.masker.mask(self._partial)
        cut = len(masked) - keep
        head, self._partial = masked[:cut], masked[cut:]
        return list(self._pieces(head))

    def _pieces(self, line: str) -> list[str]:
        """A masked line cut to ``max_line`` characters (an empty line stays one line)."""
        if len(line) <= self.max_line:
            return [line]
        return [line[i: i + self.max_line] for i in range(0, len(line), self.max_line)]


def step_log(secrets: Mapping[str, str], cap: int) -> StepLog:
    """A ``StepLog`` masking the values of ``secrets``."""
    return StepLog(SecretMasker(secrets.values()), cap)
