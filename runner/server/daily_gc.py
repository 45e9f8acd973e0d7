"""The server's daily retention run: ``runner.retention.collect`` 10 minutes after start-up, then
every 24 hours. Not at once: a server just (re)started has builds to settle and start first, and an
operator who starts one to look at an old data directory gets a moment to `conveyor gc --dry-run`.

The same code as ``conveyor gc``; it runs in a thread and deletes in bounded batches through the
store's writer, so builds, webhooks and the page go on while it works. Time comes from a ``Clock``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading

from runner.clock import Clock
from runner.retention import DAY, collect
from runner.server.config import ServerConfig
from runner.store.db import Store

__all__ = ["DailyGc"]

log = logging.getLogger("conveyor.retention")
FIRST_AFTER = 600.0  # seconds after start-up


class DailyGc:
    def __init__(self, store: Store, config: ServerConfig, clock: Clock, every: float = DAY,
                 first_after: float = FIRST_AFTER) -> None:
        self.store, self.config, self.clock, self.every = store, config, clock, every
        self.first_after = first_after
        self.runs = 0  # passes completed, for the log and for tests
        self._task: asyncio.Task | None = None
        self._stop = threading.Event()
        self._run: asyncio.Future | None = None  # the pass working in its thread, if any

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="conveyor-retention")

    async def stop(self) -> None:
        self._stop.set()  # a pass in its thread ends after its current transaction ...
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._run is not None:  # ... and is waited for: the store closes after this
            with contextlib.suppress(Exception):
                await self._run

    async def _loop(self) -> None:
        await self.clock.sleep_until(self.clock.now() + self.first_after)
        while True:
            started = self.clock.now()
            try:
                self._run = asyncio.ensure_future(asyncio.to_thread(
                    collect, self.store, self.config.retention_for, started, stop=self._stop))
                report = await asyncio.shield(self._run)  # a cancel must not orphan the thread
                if report.removed:
                    log.info("retention removed %d build(s), %d bytes", len(report.removed), report.freed)
            except Exception:  # noqa: BLE001 - tomorrow's run must still happen
                log.exception("the retention run failed; it runs again in a day")
            self.runs += 1
            await self.clock.sleep_until(started + self.every)
