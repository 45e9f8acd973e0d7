"""Scalar specs: strings, whole numbers, numbers, booleans, durations, sizes and choices.

Each checks one positioned YAML scalar and returns its normalised value (durations in seconds, sizes
in bytes) or ``INVALID`` after recording a diagnostic that names the field and what to write instead.
"""

from __future__ import annotations

import re

from runner.dsl.lint import warn_list_item_folded_into_step, warn_untagged_image
from runner.dsl.model import INVALID, Spec, describe, short
from runner.dsl.yamlload import YScalar
from runner.regex import lazy

__all__ = ["Str", "Image", "Command", "Int", "Num", "Bool", "Duration", "Memory", "Enum", "parse_duration"]


class Str(Spec):
    expected = "a string"

    def __init__(self, pattern: str | None = None, hint: str = "") -> None:
        self.pattern = lazy(pattern) if pattern else None
        self.hint = hint

    def check(self, node, cx, path, where):
        if not isinstance(node, YScalar) or node.value is None or isinstance(node.value, bool):
            return self.wrong(node, cx, path, where)
        text = node.value if isinstance(node.value, str) else node.text  # 3.11 stays "3.11"
        if self.pattern and not self.pattern.match(text):
            cx.error(node, "value", f"{where} is not valid ('{short(text)}'){self.hint}", path)
            return INVALID
        return text


class Image(Str):
    """An image reference: no spaces; one without a tag is a warning (``warn``), as builds may change
    under it."""

    def __init__(self, warn: bool = True) -> None:
        super().__init__(r"^[^\s]+\Z", ": an image reference has no spaces")
        self.warn = warn

    def check(self, node, cx, path, where):
        value = super().check(node, cx, path, where)
        if value is not INVALID and self.warn:
            warn_untagged_image(value, node, cx, path)
        return value


class Command(Spec):
    """A step's shell command. YAML reads an unquoted ``42`` or ``true`` as a number or a boolean, not
    as the command of that name; both are refused alike, with the quoting that makes them commands."""

    expected = "a command string"

    def check(self, node, cx, path, where):
        if not isinstance(node, YScalar) or node.value is None:
            return self.wrong(node, cx, path, where)
        if not isinstance(node.value, str):
            cx.error(node, "type", f"{where} must be {self.expected}, not {describe(node)}; quote it "
                     f"('{short(node.text)}') to run it as a command", path)
            return INVALID
        warn_list_item_folded_into_step(node, cx, path, where)
        return node.value


class Int(Spec):
    def __init__(self, lo: int | None = 0, hi: int | None = None) -> None:
        self.lo, self.hi = lo, hi
        self.expected = "a whole number" + (f" from {lo}" if lo is not None else "") + (f" to {hi}" if hi is not None else "")

    def check(self, node, cx, path, where):
        if not isinstance(node, YScalar) or isinstance(node.value, bool) or not isinstance(node.value, int):
            return self.wrong(node, cx, path, where)
        if (self.lo is not None and node.value < self.lo) or (self.hi is not None and node.value > self.hi):
            cx.error(node, "value", f"{where} must be {self.expected}, not {node.value}", path)
            return INVALID
        return node.value


# Beyond these, a number or a duration is a mistake (or an attack on what converts it later: an
# .inf CPU count or approval timeout overflows the engine's nanoseconds or the page's dates).
MAX_NUMBER = 1e9
MAX_DURATION = 366 * 86400.0


class Num(Spec):
    def __init__(self, lo: float = 0.0, hi: float | None = None) -> None:
        self.lo, self.hi = lo, hi
        self.expected = f"a number from {lo:g}" + (f" to {hi:g}" if hi is not None else "")

    def check(self, node, cx, path, where):
        v = getattr(node, "value", None)
        if not isinstance(node, YScalar) or isinstance(v, bool) or not isinstance(v, (int, float)) or v != v:
            return self.wrong(node, cx, path, where)
        if v < self.lo or (self.hi is not None and v > self.hi) or v > MAX_NUMBER:  # .inf, 1e999
            cx.error(node, "value", f"{where} must be {self.expected}, not {node.text}", path)
            return INVALID
        return float(v)


class Bool(Spec):
    expected = "true or false"

    def check(self, node, cx, path, where):
        if not isinstance(node, YScalar) or not isinstance(node.value, bool):
            return self.wrong(node, cx, path, where)
        return node.value


_DURATION_PART = lazy(r"(\d+(?:\.\d+)?)(ms|h|m|s)")
_UNIT = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}


def parse_duration(text: str) -> float | None:
    """'30s', '5m', '1h30m', '500ms' -> seconds; None when it is not a duration."""
    text = text.strip()
    parts = _DURATION_PART.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        return None
    return sum(float(n) * _UNIT[u] for n, u in parts)


class Duration(Spec):
    expected = "a duration like 30s, 5m, 1h or 1h30m"

    def check(self, node, cx, path, where):
        seconds = None
        if isinstance(node, YScalar) and isinstance(node.value, (int, float)) and not isinstance(node.value, bool):
            if node.value >= 0 and node.value == node.value:  # plain numbers are seconds
                seconds = float(node.value) if node.value <= MAX_DURATION else MAX_DURATION + 1  # 10**400 too
        elif isinstance(node, YScalar) and isinstance(node.value, str):
            seconds = parse_duration(node.value)
            if seconds is None:
                cx.error(node, "duration", f"{where} is not a duration ('{short(node.text)}'): use e.g. 30s, 5m, "
                         "1h or 1h30m", path)
                return INVALID
        if seconds is not None:
            if seconds <= MAX_DURATION:
                return seconds
            cx.error(node, "duration", f"{where} is longer than a year ('{short(node.text)}')", path)
            return INVALID
        return self.wrong(node, cx, path, where)


_MEMORY = lazy(r"^(\d+(?:\.\d+)?)\s*([bkmg]?)i?b?\Z", re.I)
_MEM_UNIT = {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3}


class Memory(Spec):
    expected = "a size like 256M or 1G"

    def check(self, node, cx, path, where):
        if isinstance(node, YScalar) and isinstance(node.value, int) and not isinstance(node.value, bool):
            if 0 <= node.value < 2**63:
                return node.value
            cx.error(node, "value", f"{where} must be from 0 to 2^63 - 1 bytes, not {short(node.text)}", path)
            return INVALID
        if isinstance(node, YScalar) and isinstance(node.value, str):
            m = _MEMORY.match(node.value.strip())
            size = float(m.group(1)) * _MEM_UNIT[m.group(2).lower()] if m else None
            if size is not None and size < 2**63:  # inf and beyond what the engine takes are refused
                return int(size)
            if size is not None:
                cx.error(node, "value", f"{where} is too large ('{short(node.text)}'): use e.g. 256M or 1G", path)
                return INVALID
            cx.error(node, "value", f"{where} is not a size ('{short(node.text)}'): use e.g. 256M or 1G", path)
            return INVALID
        return self.wrong(node, cx, path, where)


class Enum(Spec):
    def __init__(self, *choices: str) -> None:
        self.choices = choices
        self.expected = "one of " + ", ".join(choices)

    def check(self, node, cx, path, where):
        if not isinstance(node, YScalar) or not isinstance(node.value, str):
            return self.wrong(node, cx, path, where)
        if node.value not in self.choices:
            cx.error(node, "value", f"{where} must be one of {', '.join(self.choices)}, not "
                     f"'{short(node.value)}'{cx.did_you_mean(node.value, self.choices)}", path)
            return INVALID
        return node.value
