"""Scalars by the YAML 1.2 core schema: only ``true``/``false`` are booleans (``on``, ``yes``, ``no``
stay strings), integers in decimal, ``0o`` octal or ``0x`` hex, and the explicit core tags
(``!!str``, ``!!int``, ...). Numbers longer than ``MAX_INT_CHARS`` are refused by the loader."""

from __future__ import annotations

import math

from runner.regex import lazy

__all__ = ["CORE", "MAX_INT_CHARS", "resolve", "long_number", "tagged"]

_NULL = {"", "~", "null", "Null", "NULL"}
_BOOL = {"true": True, "True": True, "TRUE": True, "false": False, "False": False, "FALSE": False}
_INT = lazy(r"^[-+]?[0-9]+\Z")
_INT_OCT = lazy(r"^0o[0-7]+\Z")
_INT_HEX = lazy(r"^0x[0-9a-fA-F]+\Z")
_FLOAT = lazy(r"^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?\Z")
_INF = lazy(r"^[-+]?\.(inf|Inf|INF)\Z")
_NAN = lazy(r"^\.(nan|NaN|NAN)\Z")
_NUMBER_START = frozenset("-+.0123456789")  # how every number above begins: other text is a string
CORE = "tag:yaml.org,2002:"
# Longer integers are refused: Python's int() raises beyond 4,300 digits and float() overflows past
# about 10**308 (250 hex digits stay below it); no value in a pipeline needs more than a few dozen.
MAX_INT_CHARS = 250


def resolve(text: str) -> object:
    """The value of a plain (unquoted, untagged) scalar."""
    if text in _NULL:
        return None
    if text in _BOOL:
        return _BOOL[text]
    if text[0] not in _NUMBER_START:  # most scalars (commands, names): no pattern to try
        return text
    if _INT.match(text):
        return int(text)
    if _INT_OCT.match(text):
        return int(text[2:], 8)
    if _INT_HEX.match(text):
        return int(text[2:], 16)
    if _FLOAT.match(text) and any(c.isdigit() for c in text):
        return float(text)
    if _INF.match(text):
        return -math.inf if text.startswith("-") else math.inf
    if _NAN.match(text):
        return math.nan
    return text


def long_number(text: str) -> bool:
    """An integer written with more than ``MAX_INT_CHARS`` characters (too large to convert safely)."""
    return len(text) > MAX_INT_CHARS and bool(_INT.match(text) or _INT_OCT.match(text) or _INT_HEX.match(text))


def tagged(kind: str | None, text: str) -> object:
    """The value of ``text`` under the core tag ``!!kind``; ValueError when it is not one, LookupError
    when the tag is not a core scalar tag."""
    if kind == "str":
        return text
    if kind == "int":
        if len(text) > MAX_INT_CHARS:
            raise ValueError(text)
        return int(text, 0)
    if kind == "float":
        return float(text)
    if kind == "bool":
        if text not in _BOOL:
            raise ValueError(text)
        return _BOOL[text]
    if kind == "null":
        return None
    raise LookupError(kind)
