"""The build list's per-branch summary: latest status and a duration trend drawn as inline SVG on
the server (no script, nothing for the CSP to allow: colours are classes from conveyor.css)."""

from __future__ import annotations

from dataclasses import dataclass

from markupsafe import Markup, escape

from runner.server.views import duration_text
from runner.store.rows import BuildRow

__all__ = ["Branch", "branch_rows", "trend_svg"]

WIDTH, HEIGHT, BAR, GAP = 160, 28, 6, 2


@dataclass(frozen=True)
class Branch:
    repo: str
    branch: str
    latest: BuildRow
    trend: Markup


def trend_svg(builds: list[BuildRow]) -> Markup:
    """One bar per build, oldest on the left, its height the build's duration against the longest
    shown; running builds are drawn to now. Each bar links to its build and says what it was."""
    longest = max((b.duration or 0 for b in builds), default=0) or 1
    bars = []
    for i, b in enumerate(builds):
        height = max(2, round((b.duration or 0) / longest * (HEIGHT - 2)))
        title = f"#{b.number} {b.status.replace('_', ' ')} {duration_text(b.duration)}".strip()
        bars.append(f'<a href="/builds/{b.id}"><rect class="bar status-{escape(b.status)}" x="{i * (BAR + GAP)}" '
                    f'y="{HEIGHT - height}" width="{BAR}" height="{height}"><title>{escape(title)}</title></rect></a>')
    width = max(len(builds) * (BAR + GAP) - GAP, BAR)
    label = f"durations of the last {len(builds)} builds"
    return Markup(f'<svg class="duration-trend" role="img" aria-label="{label}" width="{width}" height="{HEIGHT}" '
                  f'viewBox="0 0 {width} {HEIGHT}" xmlns="http://www.w3.org/2000/svg">{"".join(bars)}</svg>')


def branch_rows(histories: list[list[BuildRow]]) -> list[Branch]:
    return [Branch(h[-1].repo, h[-1].branch, h[-1], trend_svg(h)) for h in histories if h]
