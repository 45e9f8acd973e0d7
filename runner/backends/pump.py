"""Output of a step from a reader thread to the event loop (``OutputPump``), and cleanup that a
second cancellation cannot interrupt (``uncancelled``)."""

from __future__ import annotations

import asyncio
import contextlib
import threading

__all__ = ["OutputPump", "uncancelled"]


class OutputPump:
    """Hands output from the reader thread to the event loop, coalescing chunks that arrive while
    the loop is busy, so a step printing fast costs few loop wake-ups. The reader waits while
    ``limit`` bytes are unread, so a step printing faster than the loop keeps up costs no memory."""

    def __init__(self, loop: asyncio.AbstractEventLoop, limit: int = 8 * 1024 * 1024) -> None:
        self.loop = loop
        self.limit = limit
        self.lock = threading.Condition()
        self.ready = asyncio.Event()
        self.chunks: list[bytes] = []
        self.size = 0
        self.done = False
        self.closed = False  # the consumer went away: stop waiting for it
        self.woken = False

    def push(self, chunk: bytes | None) -> None:  # called from the reader thread
        with self.lock:
            while self.size >= self.limit and not self.closed:
                self.lock.wait(1.0)
            if chunk is None:
                self.done = True
            elif not self.closed:
                self.chunks.append(chunk)
                self.size += len(chunk)
            wake, self.woken = not self.woken, True
        if wake:
            with contextlib.suppress(RuntimeError):  # the loop is closing
                self.loop.call_soon_threadsafe(self.ready.set)

    async def get(self) -> bytes | None:
        while True:
            with self.lock:
                if self.chunks:
                    data = b"".join(self.chunks)
                    self.chunks.clear()
                    self.size = 0
                    self.lock.notify_all()
                    return data
                if self.done:
                    return None
                self.woken = False
                self.ready.clear()
            await self.ready.wait()

    def close(self) -> None:
        with self.lock:
            self.closed = True
            self.chunks.clear()
            self.lock.notify_all()


async def uncancelled(coro):
    """Run ``coro`` to its end even when the caller is cancelled meanwhile (engine calls that already
    reached a thread finish anyway: waiting for them means a teardown after us sees what they made);
    then re-raise that cancellation, or return the result."""
    task = asyncio.ensure_future(coro)
    cancelled = False
    while not task.done():
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:
            cancelled = True
    if cancelled:
        raise asyncio.CancelledError
    return task.result()
