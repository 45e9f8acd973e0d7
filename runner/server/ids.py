"""Ids from outside: a build id in a URL path or ``?before=``, a deploy id in a rollback's body.

One parser for all of them, so no route hands SQLite a number it cannot hold (a 20-digit id was a
500 from ``OverflowError``) or reads ``"١٢"`` or ``" 12 "`` as 12 the way ``int()`` would. The
caller decides the answer: a path that names no build is a 404, a bad query or body value a 400.
"""

from __future__ import annotations

import re
from typing import Any

from runner.store.db import MAX_INTEGER

__all__ = ["parse_id", "ID_RULE"]

_DIGITS = re.compile(r"[0-9]{1,19}")
ID_RULE = f"a whole number from 1 to {MAX_INTEGER}"


def parse_id(value: Any) -> int | None:
    """The id ``value`` names (ASCII digits, or a JSON integer), or None when it names none."""
    if type(value) is int:  # noqa: E721 - a JSON true is no id
        number = value
    elif isinstance(value, str) and _DIGITS.fullmatch(value):
        number = int(value)
    else:
        return None
    return number if 1 <= number <= MAX_INTEGER else None
