"""Live logs: an EventSink per running build that feeds Server-Sent Events subscribers.

A running build keeps its messages so far in memory (capped), so a viewer that connects late first
gets everything from the start and then the live tail, with no gap and no line twice: replaying the
history and subscribing happen in one step of the event loop. Finished builds are read from the
store instead. A slow viewer whose queue fills up is dropped, never the build.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field

from aiohttp import web

from runner.executor.events import (
    BuildFinished, Event, JobFinished, JobStarted, StageFinished, StageStarted, StepOutput, StepStarted,
)
from runner.server.ansi import to_html

__all__ = ["LiveHub", "LiveBuild", "stream"]

_HISTORY_CAP = 50_000  # messages kept per running build for late viewers
_QUEUE_CAP = 10_000  # messages a viewer may fall behind before it is dropped


def _sse(kind: str, data: dict) -> bytes:
    return f"event: {kind}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


@dataclass
class LiveBuild:
    build_id: int
    history: list[bytes] = field(default_factory=list)
    viewers: set[asyncio.Queue] = field(default_factory=set)
    truncated: bool = False
    finished: bool = False
    _colour: dict = field(default_factory=dict)  # ANSI state per (stage, job, step)

    def publish(self, kind: str, data: dict) -> None:
        message = _sse(kind, data)
        if len(self.history) < _HISTORY_CAP:
            self.history.append(message)
        else:
            self.truncated = True
        for queue in list(self.viewers):
            try:
                queue.put_nowait(message)
            except asyncio.QueueFull:  # too slow: drop it; its EventSource reconnects and replays
                self.viewers.discard(queue)
                while not queue.empty():
                    queue.get_nowait()
                queue.put_nowait(None)

    def emit(self, event: Event) -> None:
        """The EventSink side: one executor event becomes one SSE message."""
        if isinstance(event, StepOutput):
            state = self._colour.setdefault((event.stage, event.job, event.step), {})
            self.publish("line", {"stage": event.stage, "job": event.job, "step": event.step,
                                  "html": [to_html(line, state) for line in event.lines]})
        elif isinstance(event, StepStarted):
            self.publish("step", {"stage": event.stage, "job": event.job, "step": event.step,
                                  "name": event.name, "attempt": event.attempt})
        elif isinstance(event, StageStarted):
            self.publish("stage", {"stage": event.stage, "status": "running", "time": event.time})
        elif isinstance(event, StageFinished):
            self.publish("stage", {"stage": event.stage, "status": event.status, "reason": event.reason,
                                   "time": event.time})
        elif isinstance(event, JobStarted):
            self.publish("job", {"stage": event.stage, "job": event.job, "status": "running", "time": event.time})
        elif isinstance(event, JobFinished):
            self.publish("job", {"stage": event.stage, "job": event.job, "status": event.status,
                                 "reason": event.reason, "allowed": event.allowed, "time": event.time})
        elif isinstance(event, BuildFinished):
            self.publish("status", {"status": event.status, "reason": event.reason})

    def subscribe(self) -> asyncio.Queue:
        queue: asyncio.Queue = asyncio.Queue(maxsize=_QUEUE_CAP + len(self.history) + 2)
        # A reconnecting viewer starts over: "reset" tells the page to clear what it shows.
        queue.put_nowait(_sse("reset", {"truncated": self.truncated}))
        for message in self.history:
            queue.put_nowait(message)
        if self.finished:
            queue.put_nowait(None)
        else:
            self.viewers.add(queue)
        return queue


class LiveHub:
    """The running builds' live streams, by build id."""

    def __init__(self) -> None:
        self.builds: dict[int, LiveBuild] = {}

    def open(self, build_id: int) -> LiveBuild:
        live = self.builds.get(build_id)
        if live is None:
            live = self.builds[build_id] = LiveBuild(build_id)
        return live

    def close(self, build_id: int, status: str) -> None:
        live = self.builds.pop(build_id, None)
        if live is None:
            return
        live.publish("end", {"status": status})
        live.finished = True
        for queue in list(live.viewers):
            try:
                queue.put_nowait(None)
            except asyncio.QueueFull:
                pass
        live.viewers.clear()


async def stream(request: web.Request, hub: LiveHub, build_id: int, status_of) -> web.StreamResponse:
    """Serve one viewer: history, then live messages, then ``end``. ``status_of`` is an async
    function giving the build's stored status (None when there is no such build)."""
    response = web.StreamResponse(headers={
        "Content-Type": "text/event-stream", "Cache-Control": "no-cache", "X-Accel-Buffering": "no",
    })
    await response.prepare(request)
    # A queued build is not live yet: wait for it to start (or end) with a heartbeat comment.
    while build_id not in hub.builds:
        status = await status_of(build_id)
        if status not in ("queued", "running", "waiting"):
            await response.write(_sse("end", {"status": status}))
            return response
        await response.write(b": waiting\n\n")
        await asyncio.sleep(0.5)
    queue = hub.builds[build_id].subscribe()
    live = hub.builds.get(build_id)
    try:
        while True:
            try:
                message = await asyncio.wait_for(queue.get(), timeout=15)
            except asyncio.TimeoutError:
                await response.write(b": keep-alive\n\n")
                continue
            if message is None:
                break
            await response.write(message)
    finally:
        if live is not None:
            live.viewers.discard(queue)
    return response
