"""OutputPump: a reader thread's chunks reach the loop whole and in order, and the thread waits
while too much is unread (a step printing faster than the loop reads costs bounded memory)."""

from __future__ import annotations

import asyncio
import threading

from runner.backends.pump import OutputPump


async def test_chunks_arrive_in_order_and_the_reader_waits_when_too_much_is_unread():
    pump = OutputPump(asyncio.get_running_loop(), limit=4 * 1024)
    chunks = [bytes([65 + i % 26]) * 1024 for i in range(40)]
    peak = []

    def reader():
        for chunk in chunks:
            pump.push(chunk)
            peak.append(pump.size)
        pump.push(None)

    thread = threading.Thread(target=reader)
    thread.start()
    received = b""
    while (data := await pump.get()) is not None:
        received += data
        await asyncio.sleep(0.001)  # a slow consumer
    thread.join(5)
    assert received == b"".join(chunks)
    assert max(peak) <= 4 * 1024 + 1024


async def test_close_releases_a_waiting_reader():
    pump = OutputPump(asyncio.get_running_loop(), limit=10)
    thread = threading.Thread(target=lambda: [pump.push(b"x" * 8) for _ in range(5)] and pump.push(None))
    thread.start()
    await asyncio.sleep(0.1)
    assert thread.is_alive()  # blocked: nobody reads
    pump.close()
    await asyncio.to_thread(thread.join, 5)
    assert not thread.is_alive()
