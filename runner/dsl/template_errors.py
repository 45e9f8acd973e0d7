"""Where on its line a template error is, and what to do about it.

Jinja reports the line of an error but not its column. The message names what it tripped on (the
token the parser did not expect, the undefined name, the refused attribute, an unclosed comment), so
the column is where that first appears inside a template tag of the line; failing that, the line's
first tag. ``${#VAR}`` (shell's length of VAR) opens a Jinja comment: that error says so and names the
two ways to keep shell text away from Jinja.
"""

from __future__ import annotations

import re

from runner.regex import lazy

__all__ = ["locate"]

_TAG = lazy(r"\{[{%#].*?(?:[}%#]\}|$)")
# The parser's names for closing delimiters, as they appear in "got '…'" and "unexpected '…'".
_DELIMITERS = {"end of print statement": "}}", "end of statement block": "%}", "end of comment": "#}"}
_QUOTED = [
    lazy(r"^'([^']+)' is undefined"),  # undefined value: 'nope' is undefined
    lazy(r"has no attribute '([^']+)'"),  # undefined value: 'dict object' has no attribute 'x'
    lazy(r"access to attribute '([^']+)'"),  # refused by the sandbox
    lazy(r"unknown tag '([^']+)'"),
    lazy(r"(?:got|unexpected) '([^']+)'"),
    lazy(r"^template '([^']+)'"),  # an import that is not found or escapes
    lazy(r"No (?:filter|test) named '([^']+)'"),
]
_SHELL_LENGTH = lazy(r"\$\{#")
RAW_HINT = ("`${#` is shell (the length of a variable), but `{#` starts a Jinja comment: wrap the shell "
            "in {% raw %}…{% endraw %}, or write ${{ '{#' }}VAR}")


def locate(message: str, source_line: str | None) -> tuple[int, str]:
    """(1-based column, message) for a template error found on ``source_line``."""
    if source_line is None:
        return 1, message
    if "end of comment tag" in message and (shell := _SHELL_LENGTH.search(source_line)):
        return shell.start() + 2, f"{message}; {RAW_HINT}"
    tags = [m.span() for m in _TAG.finditer(source_line)]
    for pattern in _patterns(message):
        for start, end in tags:
            if m := pattern.search(source_line, start, end):
                return m.start() + 1, message
    return (tags[0][0] + 1 if tags else 1), message


def _patterns(message: str) -> list[re.Pattern]:
    """What to look for, best first: a name as a name (or as an attribute, for a missing attribute),
    then the bare text."""
    if "end of comment tag" in message:
        return [re.compile(re.escape("{#"))]
    body = message.split(": ", 1)[-1]
    for pattern in _QUOTED:
        if m := pattern.search(body):
            needle = _DELIMITERS.get(m.group(1), m.group(1))
            text = re.escape(needle)
            if not re.fullmatch(r"\w+", needle):
                return [re.compile(text)]
            as_attribute = re.compile(rf"(?<=\.){text}\b")
            as_name = re.compile(rf"(?<![\w.]){text}\b")
            first = as_attribute if "has no attribute" in body else as_name
            return [first, as_name if first is as_attribute else as_attribute, re.compile(text)]
    return []
