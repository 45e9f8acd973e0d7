"""Diagnostics: what is wrong with a pipeline file, where, and how bad.

Every stage of loading (render, YAML, schema, lint, compile) appends to one ``Diagnostics``
collector instead of raising, so the user sees every problem at once, compiler style::

    .conveyor.yml:17:5: error: unknown key 'stpes' in stage 'test' (did you mean 'steps'?)

Lines and columns are 1-based. Warnings never block a build.
"""

from __future__ import annotations

from dataclasses import asdict

from runner.regex import lazy
from runner.values import Value, frozen

__all__ = ["Diagnostic", "Diagnostics", "ERROR", "WARNING", "printable"]

_CONTROL = lazy(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def printable(text: str) -> str:
    """``text`` on one line with its control characters as escapes (``\\n``, ``\\x1b``): a name a
    pipeline or a job chose, shown in a terminal, can neither break a line nor send escape codes."""
    return _CONTROL.sub(lambda m: repr(m.group())[1:-1], text)

ERROR = "error"
WARNING = "warning"


@frozen
class Diagnostic(Value):
    severity: str  # "error" | "warning"
    code: str  # a stable short name, e.g. "unknown-key", "yaml-syntax", "template"
    message: str
    file: str
    line: int
    col: int
    path: str = ""  # where in the document, e.g. "stages[0].jobs[1].image"

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}: {self.severity}: {self.message}"

    def to_dict(self) -> dict:
        return asdict(self)


# A hostile file (aliases repeating one mistake) could have millions of problems, each quoting
# what it names: the first MAX_KEPT are kept, each message cut to MAX_MESSAGE characters, and the rest
# are counted ("N more problems").
MAX_KEPT = 200
MAX_MESSAGE = 1000
MAX_HINTS = 50  # "did you mean" searches per file: each is difflib over every name it could be


class Diagnostics:
    """An ordered collector for one file."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.items: list[Diagnostic] = []
        self.count = 0  # every problem added, kept or not
        self.errors = 0
        self.hints_left = MAX_HINTS

    def add(self, severity: str, code: str, message: str, line: int, col: int, path: str = "") -> None:
        self.count += 1
        self.errors += severity == ERROR
        if len(self.items) >= MAX_KEPT:
            return
        if len(message) > MAX_MESSAGE:
            message = message[:MAX_MESSAGE] + " [...]"
        path = path if len(path) <= MAX_MESSAGE else path[:MAX_MESSAGE] + "[...]"
        # One diagnostic, one line: a value quoted in a message may carry a newline or escape code.
        message = printable(message)
        self.items.append(Diagnostic(severity, code, message, self.file, max(1, line), max(1, col), path))

    def error(self, code: str, message: str, line: int, col: int, path: str = "") -> None:
        self.add(ERROR, code, message, line, col, path)

    def warning(self, code: str, message: str, line: int, col: int, path: str = "") -> None:
        self.add(WARNING, code, message, line, col, path)

    @property
    def has_errors(self) -> bool:
        return self.errors > 0

    def sorted(self) -> list[Diagnostic]:
        """In file order; equal positions keep the order they were found in. Problems beyond those
        kept end the list as one more, saying how many."""
        items = sorted(self.items, key=lambda d: (d.line, d.col))
        if (more := self.count - len(self.items)) > 0:
            errors = self.errors - sum(d.severity == ERROR for d in self.items)
            items.append(Diagnostic(ERROR if errors else WARNING, "too-many",
                                    f"{more} more problem(s) not shown ({errors} of them errors); fix these first",
                                    self.file, items[-1].line, 1))
        return items
