"""The terminal sink: a line per step start and end, output prefixed by job, colours only when asked."""

from __future__ import annotations

import io

from runner.cli.progress import ProgressSink, format_duration
from runner.executor import events as ev


def _feed(sink: ProgressSink) -> None:
    sink.emit(ev.StageStarted(0.0, "test"))
    sink.emit(ev.StepStarted(1.0, "test", "unit", 0, "make test"))
    sink.emit(ev.StepOutput(1.1, "test", "unit", 0, ("ok 1", "ok 2")))
    sink.emit(ev.StepFinished(2.5, "test", "unit", 0, "failure", exit_code=2))
    sink.emit(ev.StepStarted(3.0, "test", "unit", 0, "make test", attempt=2))
    sink.emit(ev.StepFinished(3.25, "test", "unit", 0, "timed_out", exit_code=143, attempt=2,
                              reason="timed out after 0.2s"))
    sink.emit(ev.StageFinished(4.0, "ship", "skipped", reason="only on main"))


def test_plain_lines_when_not_a_terminal():
    out = io.StringIO()
    _feed(ProgressSink(out))  # StringIO is not a tty: no colours
    assert out.getvalue().splitlines() == [
        "== stage test",
        "[unit] > step 1: make test",
        "[unit] ok 1",
        "[unit] ok 2",
        "[unit] x step 1: make test  failure (exit 2)  1.50s",
        "[unit] > step 1: make test (attempt 2)",
        "[unit] x step 1: make test  timed_out (timed out after 0.2s)  0.25s",
        "== stage ship skipped (only on main)",
    ]


def test_colours_on_request_and_output_can_be_hidden():
    out = io.StringIO()
    _feed(ProgressSink(out, color=True, output=False))
    text = out.getvalue()
    assert "\x1b[31m" in text and "ok 1" not in text  # red failure; output hidden by -q


def test_durations_read_well():
    assert [format_duration(x) for x in (None, 0.123, 75, 3725)] == ["-", "0.12s", "1m15s", "1h02m"]
