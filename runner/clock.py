"""Wall-clock time for what the server does at given hours (cron schedules, the daily retention run),
passed in so tests drive time instead of sleeping.

A clock has ``now()`` (unix seconds) and ``sleep_until(when)``, which also returns early when the
clock is set back (a clock put right after it ran ahead): the sleeper works out again what is due,
instead of waiting for a ``when`` the wrong time gave it. ``SystemClock`` is the real one;
``TestClock`` only moves when a test calls ``advance``/``set``, which wakes the sleepers that are
due and returns once each of them is asleep again, so the test then sees everything they did.
"""

from __future__ import annotations

import asyncio
import time
from typing import Protocol

__all__ = ["Clock", "SystemClock", "TestClock"]


class Clock(Protocol):
    def now(self) -> float: ...

    async def sleep_until(self, when: float) -> None: ...


class SystemClock:
    # Sleep in short pieces: asyncio sleeps on the monotonic clock, and a wall clock that jumps
    # (NTP, a suspended host) must not make a 03:00 schedule fire an hour late.
    step = 30.0

    def now(self) -> float:
        return time.time()

    async def sleep_until(self, when: float) -> None:
        last = time.time()
        while (left := when - (now := time.time())) > 0:
            if now < last - 1.0:  # set back: wake, the caller works out again what is due
                return
            last = now
            await asyncio.sleep(min(left, self.step))


class TestClock:
    """A clock that stands still until told; for tests (``__test__`` keeps pytest from collecting it)."""

    __test__ = False

    def __init__(self, start: float) -> None:
        self._now = float(start)
        self._sleepers: list[tuple[float, asyncio.Future]] = []

    def now(self) -> float:
        return self._now

    async def sleep_until(self, when: float) -> None:
        if when <= self._now:
            await asyncio.sleep(0)
            return
        entry = (when, asyncio.get_running_loop().create_future())
        self._sleepers.append(entry)
        try:
            await entry[1]
        finally:
            self._sleepers.remove(entry)

    @property
    def sleeping(self) -> int:
        return sum(1 for _, fut in self._sleepers if not fut.done())

    async def wait_sleeping(self, count: int, timeout: float = 30.0) -> None:
        """Wait (in real time, bounded) until ``count`` tasks sleep on this clock."""
        deadline = time.monotonic() + timeout
        while self.sleeping < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.sleeping} task(s) sleep on the test clock, expected {count}")
            await asyncio.sleep(0.01)

    async def set(self, when: float, timeout: float = 30.0) -> None:
        """Move to ``when``, wake the sleepers due by then (all of them when it moves back, as
        ``SystemClock``'s do), and return when they sleep again."""
        before = self.sleeping
        back, self._now = when < self._now, float(when)
        for deadline, fut in list(self._sleepers):
            if (back or deadline <= self._now) and not fut.done():
                fut.set_result(None)
        await self.wait_sleeping(before, timeout)

    async def advance(self, seconds: float, timeout: float = 30.0) -> None:
        await self.set(self._now + seconds, timeout)
