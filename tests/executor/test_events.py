"""FanoutSink: a sink that raises is reported and kept; the others get every event."""

from __future__ import annotations

import logging

from runner.executor.events import BuildFinished, FanoutSink, StepOutput


class Recorder:
    def __init__(self) -> None:
        self.events = []

    def emit(self, event) -> None:
        self.events.append(event)


class ChokesOnX(Recorder):
    def emit(self, event) -> None:
        if isinstance(event, StepOutput) and "x" in event.lines:
            raise ValueError("cannot show x")
        super().emit(event)


def test_a_sink_that_raises_is_reported_and_keeps_getting_later_events(caplog):
    choking, other = ChokesOnX(), Recorder()
    fanout = FanoutSink(choking, other)
    lines = [StepOutput(0.0, "s", "j", 0, (text,)) for text in ("a", "x", "b", "x", "c")]
    with caplog.at_level(logging.ERROR, logger="conveyor.events"):
        for event in lines:
            fanout.emit(event)
        fanout.emit(BuildFinished(0.0, "success"))
    assert [e.lines[0] for e in choking.events if isinstance(e, StepOutput)] == ["a", "b", "c"]
    assert other.events == [*lines, BuildFinished(0.0, "success")]
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 2  # the first failure (with its traceback), then the count at the end
    assert "failed on StepOutput" in messages[0] and caplog.records[0].exc_info is not None
    assert "failed on 2 event(s)" in messages[1]
