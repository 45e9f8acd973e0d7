"""The durable inbox: webhook deliveries stored before the 202, turned into queued builds later.

``record_delivery`` is one write transaction with ``INSERT OR IGNORE`` under the unique index on
(provider, delivery id): of any number of concurrent copies of a delivery exactly one row is made,
and the caller learns whether it was the one. ``enqueue_pending`` turns pending deliveries into
queued builds, each delivery and its build in one transaction, so a crash at any point leaves
either a pending delivery (done again after restart) or a build (never both, never neither). A
delivery that raises while being turned into a build (a row stored by an older server, say) is
marked ``failed`` with the reason and the queue goes on with the rest. The rows themselves are
``runner.store.deliveries`` and ``runner.store.server_builds``.
"""

from __future__ import annotations

import logging
import sqlite3
import time

from runner.build_request import BuildRequest, insert_request
from runner.errors import StoreError
from runner.scm.webhooks import Trigger
from runner.store import deliveries, server_builds
from runner.store.builds import finish_build
from runner.store.db import Store
from runner.store.deliveries import list_deliveries, pending_count
from runner.store.server_builds import cancel_queued
from runner.values import frozen

__all__ = ["BuildOrder", "record_delivery", "enqueue_pending", "queue_build", "cancel_queued", "pending_count",
           "list_deliveries"]

log = logging.getLogger("conveyor.inbox")


@frozen
class BuildOrder(BuildRequest):
    """A build of a configured repository: what any build is asked for (``BuildRequest``; trigger
    ``webhook``, ``api:admin``, ``rerun:<id>``) plus what only the server knows of it."""

    fork: bool = False
    pr_number: int | None = None
    rerun_of: int | None = None
    delivery_id: int | None = None


async def record_delivery(store: Store, provider: str, delivery: str, repo: str, trigger: Trigger) -> tuple[bool, int]:
    """Store one delivery; (True, id) when it is new, (False, id) for a redelivery."""
    return await store.awrite(lambda conn: deliveries.insert(
        conn, provider, delivery, repo, trigger.kind, trigger.to_json(), time.time()))


def queue_build(conn: sqlite3.Connection, order: BuildOrder, instance: str, cancel_superseded: bool = False) -> int:
    """Insert a queued build (inside a write transaction) and cancel what it supersedes."""
    build_id, number = insert_request(conn, order, instance)
    server_builds.add(conn, build_id, config_repo=order.repo, delivery_id=order.delivery_id, fork=order.fork,
                      pr_number=order.pr_number, rerun_of=order.rerun_of)
    if cancel_superseded and order.event in ("push", "pull_request") and order.branch:
        # Only builds still waiting: a running build is left to finish (Woodpecker does the same).
        for old_id in server_builds.superseded(conn, repo=order.repo, branch=order.branch, event=order.event,
                                               before_id=build_id):
            finish_build(conn, old_id, "cancelled", f"superseded by {order.repo}#{number}")
    return build_id


def enqueue_pending(store: Store, instance: str, superseding: dict[str, bool], known: set[str]) -> list[int]:
    """Turn every pending delivery into a queued build; return the new build ids (blocking)."""
    made: list[int] = []
    for row in deliveries.pending(store.read()):
        def one(conn: sqlite3.Connection, row=row) -> int | None:
            if deliveries.state_of(conn, row["id"]) != "pending":
                return None  # someone else took it meanwhile
            if row["repo"] not in known:
                deliveries.mark_ignored(conn, row["id"], f"repository {row['repo']!r} is no longer configured")
                return None
            t = Trigger.from_json(row["trigger"])
            order = BuildOrder(
                repo=row["repo"], event=t.kind, trigger="webhook", ref=t.ref, branch=t.branch, tag=t.tag,
                sha=t.sha, message=t.message, author=t.author, fork=t.fork, pr_number=t.pr_number,
                delivery_id=row["id"], before=t.before, target_branch=t.target_branch,
            )
            build_id = queue_build(conn, order, instance, superseding.get(row["repo"], False))
            deliveries.mark_queued(conn, row["id"], build_id)
            return build_id

        try:
            build_id = store.write(one)
        except (StoreError, sqlite3.OperationalError):
            raise  # the store itself (closed, locked, disk full): the row stays pending for the next tick
        except Exception as exc:  # noqa: BLE001 - one bad row must never stop the queue
            log.exception("delivery %s could not be turned into a build", row["id"])
            reason = f"could not be turned into a build: {type(exc).__name__}: {exc}"[:1000]
            store.write(lambda conn, row=row: deliveries.mark_failed(conn, row["id"], reason))
            continue
        if build_id is not None:
            made.append(build_id)
    return made
