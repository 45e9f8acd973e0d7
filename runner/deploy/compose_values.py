"""Compose value syntaxes, read the way ``docker stack deploy`` reads them.

Durations are Go durations (``1m30s``, ``500ms``), sizes are go-units sizes (``64M`` is 64 MiB),
CPUs are decimal fractions turned into nano-CPUs, commands are shell words, mappings may be written
as lists of ``KEY=VALUE``. Each parser raises ``BadValue`` with what to write instead; the caller
adds the file, line and key.
"""

from __future__ import annotations

import re
import shlex
from fractions import Fraction
from typing import Any

__all__ = ["BadValue", "duration_ns", "size_bytes", "nano_cpus", "shell_words", "mapping", "env_list",
           "env_file_lines", "interpolate"]

NS = 1_000_000_000
_UNIT_NS = {"ns": 1, "us": 1_000, "µs": 1_000, "ms": 1_000_000, "s": NS, "m": 60 * NS, "h": 3600 * NS}
_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_SIZE = re.compile(r"(\d+(?:\.\d+)*) ?([kmgtp])?i?b?", re.IGNORECASE)
_VAR = re.compile(r"\$(?:(\$)|\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}|([A-Za-z_][A-Za-z0-9_]*))")


class BadValue(ValueError):
    """A value that does not parse; the message says what was expected."""


def duration_ns(value: Any) -> int:
    """A Go duration (``10s``, ``1m30s``, ``1.5h``) in nanoseconds; a bare number is seconds."""
    if isinstance(value, bool):
        raise BadValue(f"{value!r} is not a duration like 10s, 1m30s or 500ms")
    if isinstance(value, (int, float)):
        return int(Fraction(value) * NS)
    text = str(value).strip()
    parts = _DURATION.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        if text == "0":
            return 0
        raise BadValue(f"{value!r} is not a duration like 10s, 1m30s or 500ms")
    return int(sum(Fraction(n) * _UNIT_NS[u] for n, u in parts))


def size_bytes(value: Any) -> int:
    """A size as go-units reads it (binary multiples: ``64M`` is 64 MiB); a bare number is bytes."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    m = _SIZE.fullmatch(str(value).strip())
    if not m:
        raise BadValue(f"{value!r} is not a size like 512k, 64M or 1G")
    mult = 1024 ** ("kmgtp".index(m.group(2).lower()) + 1) if m.group(2) else 1
    return int(float(m.group(1)) * mult)


def nano_cpus(value: Any) -> int:
    """``0.5`` CPUs -> 500000000 nano-CPUs (exact, as ``docker`` parses them)."""
    try:
        nanos = Fraction(str(value).strip()) * NS
    except (ValueError, ZeroDivisionError) as exc:
        raise BadValue(f"{value!r} is not a number of CPUs like 0.5 or 2") from exc
    if nanos.denominator != 1:
        raise BadValue(f"{value!r} CPUs is finer than a nano-CPU; use at most 9 decimals")
    return int(nanos)


def shell_words(value: Any) -> list[str]:
    """``command``/``entrypoint``: a list as written, or a string split into shell words."""
    if isinstance(value, list):
        return [str(v) for v in value]
    try:
        return shlex.split(str(value))
    except ValueError as exc:
        raise BadValue(f"{value!r} is not valid shell words ({exc}); write a list instead") from exc


def mapping(value: Any, sep: str = "=") -> dict[str, str | None]:
    """A mapping written as a mapping or as a list of ``KEY=VALUE`` (a bare ``KEY`` has no value)."""
    if value is None:
        return {}
    if isinstance(value, dict):
        return {str(k): None if v is None else _text(v) for k, v in value.items()}
    if isinstance(value, list):
        out: dict[str, str | None] = {}
        for item in value:
            key, has, val = str(item).partition(sep)
            out[key] = val if has else None
        return out
    raise BadValue(f"{value!r} is neither a mapping nor a list of KEY{sep}VALUE")


def _text(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def env_list(env: dict[str, str | None]) -> list[str]:
    """The container's ``Env``: ``KEY=VALUE`` (or a bare ``KEY`` for an unset one), sorted."""
    return sorted(k if v is None else f"{k}={v}" for k, v in env.items())


def env_file_lines(text: str) -> dict[str, str | None]:
    """An ``env_file``: ``KEY=VALUE`` lines; blank lines and ``#`` comments skipped; no quoting."""
    out: dict[str, str | None] = {}
    for line in text.splitlines():
        line = line.lstrip()
        if not line or line.startswith("#"):
            continue
        key, has, val = line.partition("=")
        if not key.strip() or " " in key.strip():
            raise BadValue(f"line {line!r} is not KEY=VALUE")
        out[key.strip()] = val if has else None
    return out


def interpolate(text: str, env: dict[str, str], unset: list[str]) -> str:
    """``$VAR``, ``${VAR}``, ``${VAR:-default}``, ``${VAR-default}``, ``${VAR:?message}`` and ``$$``,
    from the stage's environment (what ``docker stack deploy`` takes from the shell). Names that are
    unset become empty and are appended to ``unset`` (stack deploy warns about them too)."""

    def sub(m: re.Match) -> str:
        if m.group(1):
            return "$"
        name = m.group(2) or m.group(5)
        op, arg = m.group(3), m.group(4)
        value = env.get(name)
        empty = value is None or (op is not None and op.startswith(":") and value == "")
        if op and op.endswith("-") and empty:
            return arg
        if op and op.endswith("?") and empty:
            raise BadValue(f"${{{name}}} is required: {arg or 'set it in the stage env'}")
        if value is None:
            unset.append(name)
            return ""
        return value

    return _VAR.sub(sub, text)
