"""What a notifier is told about a finished build, and which kind of news it is."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from runner.values import Value, frozen

__all__ = ["Notice", "kind_of", "BROKEN"]

# A build that ended in one of these broke something the team should look at. Cancelled,
# interrupted (the server died) and skipped builds say nothing about the code: no news.
BROKEN = ("failure", "timed_out", "config_error")


def kind_of(status: str, previous: str | None) -> str | None:
    """``failure``, ``fixed`` (a success after a broken build of the same branch, as Jenkins's
    "back to normal"), ``success``, or None for a status nobody is told about. ``previous`` is the
    status of the branch's last build that succeeded or broke (see ``store.outcomes``)."""
    if status in BROKEN:
        return "failure"
    if status == "success":
        return "fixed" if previous in BROKEN else "success"
    return None


@frozen
class Notice(Value):
    """One finished build, as every notifier sees it (the webhook's JSON body is ``to_json()``)."""

    kind: str  # failure | fixed | success
    repo: str
    number: int
    build_id: int
    status: str  # the build's own status: success, failure, timed_out, config_error
    url: str  # the build's page
    branch: str | None = None
    tag: str | None = None
    sha: str | None = None
    message: str | None = None  # the commit message
    author: str | None = None
    trigger: str | None = None
    pipeline: str | None = None
    reason: str | None = None  # why it ended so (the first failing step, ...)
    duration: float | None = None  # seconds
    previous_status: str | None = None

    @property
    def title(self) -> str:
        """One line for a subject or a chat message: ``acme/web #12 failed on main``."""
        verb = {"failure": "failed", "fixed": "is fixed", "success": "passed"}[self.kind]
        where = f" on {self.branch}" if self.branch else (f" at {self.tag}" if self.tag else "")
        if self.status in ("timed_out", "config_error"):
            verb = {"timed_out": "timed out", "config_error": "has a broken pipeline file"}[self.status]
        return f"{self.repo} #{self.number} {verb}{where}"

    def to_json(self) -> dict[str, Any]:
        return {"event": f"build.{self.kind}", **asdict(self)}
