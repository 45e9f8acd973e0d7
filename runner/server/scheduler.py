"""The server's cron scheduler: builds with event ``cron`` at each schedule's slots.

Each pass compares, per schedule, the newest slot due now with the last slot stored for it; when a
newer one is due it queues one build (trigger ``schedule:NAME``) and stores the slot in the same
write transaction. So a restart never fires a slot twice, and slots missed while the server was down
collapse into one build at start-up. A stored slot more than ``CLOCK_BACK`` ahead of the clock
(which was set far ahead, fired, then put right) is replaced by the slot due now. A schedule seen
for the first time only stores its current slot: nothing was missed before it existed. Builds go
through the queue like manual runs (``queue_build``): the sha of the branch is resolved when the
build starts.

Time comes from a ``Clock`` (``runner/clock.py``), so tests move it instead of waiting.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
import sqlite3

from runner.clock import Clock
from runner.server.config import ServerConfig
from runner.server.inbox import BuildOrder, queue_build
from runner.server.schedules import Schedule, latest_slot, next_slot
from runner.store import schedules as sq
from runner.store.db import Store

__all__ = ["Scheduler"]

log = logging.getLogger("conveyor.scheduler")
RETRY = 60.0  # seconds after a failed pass
# A stored slot this far ahead of the clock was fired by a clock that was wrong (set years ahead, then
# put right): it is forgotten, or the schedule would wait for it. A clock stepped back less than this
# (NTP) finds its slot already fired and does not fire it again. Vixie cron draws the line at 3 hours.
CLOCK_BACK = 3 * 3600.0


class Scheduler:
    def __init__(self, store: Store, config: ServerConfig, queue, clock: Clock) -> None:
        self.store, self.config, self.queue, self.clock = store, config, queue, clock
        self.schedules = config.schedules
        self._task: asyncio.Task | None = None

    # -- lifetime -------------------------------------------------------------------------------

    def start(self) -> None:
        if self.schedules:  # a server without schedules has nothing to wake up for
            self._task = asyncio.create_task(self._loop(), name="conveyor-scheduler")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _loop(self) -> None:
        while True:
            now = self.clock.now()
            wake = now + RETRY
            try:
                wake = min(next_slot(s, now) for s in self.schedules)
                await self.fire_due()
            except Exception:  # noqa: BLE001 - one bad pass must not end the schedules
                # Soon, not at the next slot: the slot due now is still owed (a locked store, ...).
                log.exception("the scheduler's pass failed; trying again in a minute")
                wake = min(wake, now + RETRY)
            await self.clock.sleep_until(wake)

    # -- firing ---------------------------------------------------------------------------------

    async def fire_due(self) -> list[int]:
        """Queue a build for every schedule with a slot due and not yet handled; return their ids."""
        now = self.clock.now()
        fired = []
        for schedule in self.schedules:
            due = latest_slot(schedule, now)
            build_id = await self.store.awrite(lambda c, s=schedule, d=due: self._fire(c, s, d, now))
            if build_id is not None:
                log.info("schedule %s of %s fired for %s: build %s", schedule.name, schedule.repo,
                         _iso(schedule, due), build_id)
                fired.append(build_id)
        if fired:
            self.queue.wake()
        return fired

    def _fire(self, conn: sqlite3.Connection, schedule: Schedule, due: float, now: float) -> int | None:
        last = sq.firing(conn, schedule.repo, schedule.name)
        if last is None:  # first sighting: remember where it starts, owe nothing before it
            sq.record_firing(conn, schedule.repo, schedule.name, due, None, None)
            return None
        if last.slot > now + CLOCK_BACK:  # the clock went far back: start again from the slot due now
            sq.record_firing(conn, schedule.repo, schedule.name, due, last.fired, last.build_id)
            return None
        if last.slot >= due:
            return None
        build_id = queue_build(conn, self._order(schedule, schedule.trigger), self.config.settings.instance)
        sq.record_firing(conn, schedule.repo, schedule.name, due, now, build_id)
        return build_id

    async def run_now(self, schedule: Schedule, who: str) -> int:
        """A build as the schedule would start it, now; the stored slot is left as it is."""
        return await self.queue.submit(self._order(schedule, f"{schedule.trigger} by {who}"))

    @staticmethod
    def _order(schedule: Schedule, trigger: str) -> BuildOrder:
        return BuildOrder(repo=schedule.repo, event="cron", trigger=trigger, ref=f"refs/heads/{schedule.branch}",
                          branch=schedule.branch, params=dict(schedule.params))

    # -- what the page and the API show ---------------------------------------------------------

    def find(self, repo: str, name: str) -> Schedule | None:
        return next((s for s in self.schedules if s.repo == repo and s.name == name), None)

    async def listing(self) -> list[dict]:
        now = self.clock.now()
        stored = await self.store.aread(sq.firings)
        out = []
        for s in self.schedules:
            last = stored.get((s.repo, s.name))
            upcoming = next_slot(s, now)
            out.append({
                "repo": s.repo, "name": s.name, "cron": s.cron, "branch": s.branch, "params": s.params,
                "timezone": s.timezone, "next": upcoming, "next_at": _iso(s, upcoming),
                "last_slot": last.slot if last and last.fired is not None else None,
                "last_fired": last.fired if last else None, "last_build_id": last.build_id if last else None,
            })
        return out


def _iso(schedule: Schedule, when: float) -> str:
    return datetime.datetime.fromtimestamp(when, schedule.zone).isoformat()
