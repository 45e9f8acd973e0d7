"""Regular expressions compiled when first used, not when their module is imported.

A short command pays for every pattern its imports compile, used or not: PyYAML's import alone
compiled a reader pattern of every printable Unicode range (about a seventh of a `conveyor lint` on
a clean interpreter) that libyaml's parser, the one Conveyor uses, never asks for. ``lazy`` is a
pattern that compiles on its first method call; ``compiled_when_used`` makes the ``re.compile``
calls of one import lazy, for third-party modules such as PyYAML (``runner/yamllib.py``).
"""

from __future__ import annotations

import re
import threading
from contextlib import contextmanager
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = ["lazy", "compiled_when_used"]

_compile = re.compile
# What a pattern is used for; the first use of any of them compiles it and binds them all.
_ATTRIBUTES = ("match", "fullmatch", "search", "sub", "subn", "split", "findall", "finditer", "scanner",
               "pattern", "flags", "groups", "groupindex")


class LazyPattern:
    """Behaves as ``re.compile(source, flags)`` for its methods and attributes; compiles once, on the
    first of them. Two threads that race may both compile: the result is the same."""

    def __init__(self, source: str | bytes, flags: int = 0) -> None:
        self._source, self._flags = source, flags

    def __getattr__(self, name: str):
        # Only reached while the pattern is not compiled (or for a name a Pattern lacks): after the
        # first use, the bound methods sit in the instance and are found without this call.
        if name.startswith("__") or name not in _ATTRIBUTES:
            raise AttributeError(name)
        compiled = _compile(self._source, self._flags)
        for attribute in _ATTRIBUTES:
            setattr(self, attribute, getattr(compiled, attribute))
        return getattr(compiled, name)

    def __repr__(self) -> str:
        return f"lazy({self._source!r})"


def lazy(source: str | bytes, flags: int = 0) -> LazyPattern:
    """A pattern compiled on first use: for module-level patterns that a run may never need."""
    return LazyPattern(source, flags)


@contextmanager
def compiled_when_used() -> Iterator[None]:
    """While inside, ``re.compile`` called from this thread returns a ``LazyPattern``; other threads
    get real patterns (they may test ``isinstance(p, re.Pattern)`` or hand it to ``re.sub``). Only for
    imports whose code calls the methods of its patterns, as PyYAML's does."""
    me = threading.get_ident()

    def compile_later(source, flags=0):
        if threading.get_ident() != me or not isinstance(source, (str, bytes)):
            return _compile(source, flags)
        return LazyPattern(source, flags)

    re.compile = compile_later
    try:
        yield
    finally:
        re.compile = _compile
