"""What `conveyor run` settles for earlier runs, kept off the build's critical path.

Builds and deploys that a killed runner left behind, and expired containers, volumes and networks,
must be settled by the next command; but none of it is needed to start this build's first
container. So it waits until this build's first step has started (or the build ended without one),
then runs next to the build; the command waits for it before exiting, so nothing is skipped.
"""

from __future__ import annotations

import asyncio
import logging

from runner.executor.events import BuildFinished, Event, StepStarted

__all__ = ["FirstStep", "settle_earlier_runs"]

log = logging.getLogger("conveyor.cli")


class FirstStep:
    """An event sink that notes when the build's first step starts (or the build finishes)."""

    def __init__(self) -> None:
        self.seen = asyncio.Event()

    def emit(self, event: Event) -> None:
        if isinstance(event, (StepStarted, BuildFinished)):
            self.seen.set()


async def settle_earlier_runs(store, settings, backend, first_step: FirstStep) -> None:
    """After ``first_step``: mark builds of dead processes interrupted and sweep what they left, sweep
    this instance's expired resources, settle deploys a dead runner left in flight. Never raises:
    each part that fails is logged, and the next command (or the periodic sweep) tries again."""
    from runner.build import settle_crashed_deploys
    from runner.store.recovery import recover_interrupted

    await first_step.seen.wait()
    parts = (("recovering interrupted builds", lambda: asyncio.to_thread(recover_interrupted, store, settings)),
             ("sweeping expired resources", backend.sweep),
             ("settling interrupted deploys", lambda: settle_crashed_deploys(store, settings)))
    for what, part in parts:
        try:
            await part()
        except Exception as exc:  # noqa: BLE001 - an engine that is down must not fail this build
            log.warning("%s failed (%s); the next command tries again", what, exc)
