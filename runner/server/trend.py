"""The pass/fail trend of a branch as an SVG drawn on the server: one stacked bar per build (passed
at the bottom, then skipped, failed and errors on top, where the eye looks), scaled to the biggest
run, each bar a link to its build with its counts as a tooltip. Colours are SVG attributes, not
styles, so the page's CSP (no inline styles) allows the chart inline as well as at its own URL.
"""

from __future__ import annotations

from dataclasses import dataclass

from runner.store.reports import TrendPoint

__all__ = ["TREND_BUILDS", "Bar", "Chart", "trend_chart"]

TREND_BUILDS = 20
BAR, GAP, HEIGHT, PAD, LABEL = 14, 4, 60, 4, 14
COLOURS = {"passed": "#2e7d32", "skipped": "#9e9e9e", "broken": "#c62828"}


@dataclass(frozen=True)
class Segment:
    kind: str  # passed, skipped, broken
    y: float
    height: float
    colour: str


@dataclass(frozen=True)
class Bar:
    build_id: int
    number: int
    x: float
    title: str
    segments: tuple[Segment, ...]
    current: bool


@dataclass(frozen=True)
class Chart:
    width: int
    height: int
    baseline: float
    bars: tuple[Bar, ...]
    title: str


def trend_chart(points: list[TrendPoint], current: int | None = None) -> Chart:
    top = max((p.totals.tests for p in points), default=0) or 1
    bars = []
    for i, p in enumerate(points):
        t = p.totals
        y = float(PAD + HEIGHT)
        segments = []
        for kind, count in (("passed", t.passed), ("skipped", t.skipped), ("broken", t.broken)):
            if count:
                height = max(1.0, round(HEIGHT * count / top, 1))
                y -= height
                segments.append(Segment(kind, round(y, 1), height, COLOURS[kind]))
        title = (f"#{p.number}: {t.passed} passed, {t.failed} failed, {t.errors} errors, {t.skipped} skipped"
                 f" ({p.status})")
        bars.append(Bar(p.build_id, p.number, PAD + i * (BAR + GAP), title, tuple(segments), p.build_id == current))
    width = PAD * 2 + max(len(points), 1) * (BAR + GAP) - GAP
    last = points[-1].totals if points else None
    summary = (f"Tests of the last {len(points)} builds with reports; the newest: {last.passed} passed, "
               f"{last.broken} failed") if last else "No build of this branch stored test reports yet"
    return Chart(width, PAD * 2 + HEIGHT + LABEL, PAD + HEIGHT, tuple(bars), summary)
