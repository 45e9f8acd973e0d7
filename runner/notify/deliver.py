"""Sending notices in the background: bounded retries with backoff, every failure logged.

Nothing here is awaited by a build. ``build_finished`` only starts a task; each rule's delivery is
its own task, so one slow receiver delays no other. A pending retry is dropped (and logged) when
the server stops: notices are not stored, as Jenkins' mails are not.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from runner.notify.notice import Notice, kind_of
from runner.notify.rules import NotifyRule
from runner.store import builds as q
from runner.store.db import Store
from runner.store.outcomes import previous_outcome

__all__ = ["Notifications"]

log = logging.getLogger("conveyor.notify")


class Notifications:
    def __init__(self, store: Store, public_url: str) -> None:
        self.store, self.public_url = store, public_url.rstrip("/")
        self._tasks: set[asyncio.Task] = set()

    def build_finished(self, rules: Sequence[NotifyRule], build_id: int) -> None:
        """Tell ``rules`` how build ``build_id`` ended; returns at once."""
        if rules:
            self._spawn(self._notify(tuple(rules), build_id), f"conveyor-notify-{build_id}")

    def _spawn(self, coro, name: str) -> None:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _notify(self, rules: tuple[NotifyRule, ...], build_id: int) -> None:
        try:
            notice = await self.store.aread(lambda c: self._notice(c, build_id))
        except Exception:  # noqa: BLE001 - logged; a notice must never take anything else down
            log.exception("build %s: the notice could not be made", build_id)
            return
        if notice is None:
            return
        for rule in rules:
            if rule.wants(notice.kind):
                self._spawn(self.deliver(rule, notice), f"conveyor-notify-{build_id}-{rule.type}")

    def _notice(self, conn, build_id: int) -> Notice | None:
        build = q.get_build(conn, build_id)
        previous = previous_outcome(conn, build)
        kind = kind_of(build.status, previous)
        if kind is None:
            return None
        return Notice(
            kind=kind, repo=build.repo, number=build.number, build_id=build.id, status=build.status,
            url=f"{self.public_url}/builds/{build.id}", branch=build.branch, tag=build.tag, sha=build.sha,
            message=build.message, author=build.author, trigger=build.trigger, pipeline=build.pipeline,
            reason=build.reason, duration=build.duration, previous_status=previous)

    async def deliver(self, rule: NotifyRule, notice: Notice) -> bool:
        """Send ``notice`` through ``rule``: ``1 + retries`` attempts, each under ``timeout``, with
        doubling pauses between them. True when one succeeded; never raises (but a cancel)."""
        label = f"{notice.repo}#{notice.number} {notice.kind} via {rule.type}"
        attempts = rule.retries + 1
        for attempt in range(1, attempts + 1):
            try:
                await asyncio.wait_for(rule.notifier.send(notice), rule.timeout)
                log.info("notified %s (attempt %d)", label, attempt)
                return True
            except asyncio.CancelledError:
                log.warning("notice %s dropped: the server is stopping", label)
                raise
            except Exception as exc:  # noqa: BLE001 - whatever a notifier raises is one failed attempt
                error = "no answer in %gs" % rule.timeout if isinstance(exc, TimeoutError) else \
                    f"{type(exc).__name__}: {exc}"
                if attempt == attempts:
                    log.error("notice %s given up after %d attempt(s): %s", label, attempts, error)
                    return False
                log.warning("notice %s, attempt %d of %d failed: %s; next in %gs", label, attempt, attempts,
                            error, rule.delay(attempt))
            await asyncio.sleep(rule.delay(attempt))
        return False

    async def idle(self) -> None:
        """Wait until every notice started so far is delivered or given up (tests, benchmarks)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def close(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
