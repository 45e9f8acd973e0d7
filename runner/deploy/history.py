"""Deploy history: the ``deploys`` rows, the per-service claim that serialises deploys, and the
start-up reconcile of deploys a dead runner left in flight.

Every write is ``durable=True`` (``synchronous=FULL``): the operator rolls back from these rows.

Serialising: within a process an asyncio lock per (target, service); across processes the unique
index ``deploys_in_flight`` allows one ``deploying`` row per service. A second deploy waits for the
first (it is not refused); a claim whose process is dead (same host) or whose heartbeat is older
than ``STALE`` seconds is marked ``unknown`` and taken over.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sqlite3
import time
from collections.abc import Callable
from typing import Any

from runner.store.db import Store

__all__ = ["Deploy", "STATUSES", "claim", "update", "finish", "deployed_by_build", "heartbeat", "get", "list_deploys", "last_good_before",
           "latest", "live", "in_environment", "build_ref", "services_on", "targets", "batch_rows", "service_lock", "mark_dead_in_flight", "HEARTBEAT",
           "STALE"]

STATUSES = ("deploying", "succeeded", "rolled_back", "failed", "unknown")
HEARTBEAT = 5.0
STALE = 120.0
HOST = socket.gethostname()
_locks: dict[tuple[str, str], asyncio.Lock] = {}

Deploy = dict  # a row as a dict; spec_before/spec_after decoded from JSON


def service_lock(target: str, service: str) -> asyncio.Lock:
    return _locks.setdefault((target, service), asyncio.Lock())


def _row(row: sqlite3.Row | None) -> Deploy | None:
    if row is None:
        return None
    out = dict(row)
    for key in ("spec_before", "spec_after"):
        out[key] = json.loads(out[key]) if out[key] else None
    return out


def _pid_alive(pid: int | None, host: str | None) -> bool:
    if not pid or host != HOST:
        return host != HOST  # another host's claim: only its heartbeat can tell
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _stale(row: sqlite3.Row, now: float) -> bool:
    if row["pid"] == os.getpid() and row["host"] == HOST:
        return False  # our own claim: the in-process lock orders those
    if not _pid_alive(row["pid"], row["host"]):
        return True
    return (row["heartbeat"] or row["started"]) < now - STALE


async def claim(store: Store, fields: dict[str, Any], log: Callable[[str], None] | None = None,
                poll: float = 0.5) -> int:
    """Insert a ``deploying`` row for (target, service), waiting while another deploy holds it."""
    waited = False

    def attempt(conn: sqlite3.Connection) -> int | None:
        now = time.time()
        holder = conn.execute("SELECT * FROM deploys WHERE target = ? AND service = ? AND status = 'deploying'",
                              (fields.get("target", "default"), fields["service"])).fetchone()
        if holder is not None:
            if not _stale(holder, now):
                return None
            conn.execute("UPDATE deploys SET status = 'unknown', finished = ?, reason = ? WHERE id = ?",
                         (now, "taken over: the process deploying it is gone", holder["id"]))
        values = {**fields, "status": "deploying", "pid": os.getpid(), "host": HOST, "heartbeat": now,
                  "started": now}
        for key in ("spec_before", "spec_after"):
            if isinstance(values.get(key), dict):
                values[key] = json.dumps(values[key], sort_keys=True)
        cols = ", ".join(values)
        marks = ", ".join("?" for _ in values)
        return conn.execute(f"INSERT INTO deploys ({cols}) VALUES ({marks})", list(values.values())).lastrowid

    while True:
        row_id = await store.awrite(attempt, durable=True)
        if row_id is not None:
            return row_id
        if not waited and log:
            log(f"another deploy of {fields['service']} is in flight; waiting for it to finish")
            waited = True
        await asyncio.sleep(poll)


async def update(store: Store, deploy_id: int, **fields: Any) -> None:
    for key in ("spec_before", "spec_after"):
        if isinstance(fields.get(key), dict):
            fields[key] = json.dumps(fields[key], sort_keys=True)
    sets = ", ".join(f"{k} = ?" for k in fields)
    await store.awrite(lambda conn: conn.execute(f"UPDATE deploys SET {sets} WHERE id = ?",
                                                 [*fields.values(), deploy_id]), durable=True)


async def finish(store: Store, deploy_id: int, status: str, reason: str | None = None, **fields: Any) -> None:
    assert status in STATUSES and status != "deploying", status
    await update(store, deploy_id, status=status, reason=reason, finished=time.time(), **fields)


async def heartbeat(store: Store, deploy_ids: list[int]) -> None:
    """Refresh the claims every HEARTBEAT seconds until cancelled."""
    while True:
        await asyncio.sleep(HEARTBEAT)
        marks = ",".join("?" for _ in deploy_ids)
        await store.awrite(lambda conn: conn.execute(
            f"UPDATE deploys SET heartbeat = ? WHERE id IN ({marks}) AND status = 'deploying'",
            [time.time(), *deploy_ids]))


async def get(store: Store, deploy_id: int) -> Deploy | None:
    return await store.aread(lambda c: _row(c.execute("SELECT * FROM deploys WHERE id = ?", (deploy_id,)).fetchone()))


async def last_repo(store: Store, target: str, name: str) -> str | None:
    """The repository of the newest deploy of the service or stack ``name`` on ``target`` that names
    one (None: never deployed by a build of a repository)."""
    row = await store.aread(lambda c: c.execute(
        "SELECT repo FROM deploys WHERE target = ? AND (service = ? OR stack = ?) AND repo IS NOT NULL "
        "ORDER BY id DESC LIMIT 1", (target, name, name)).fetchone())
    return row[0] if row else None


async def origin(store: Store, row: Deploy) -> Deploy:
    """The deploy whose version ``row`` runs: ``row`` itself, or for a rollback the row it put back
    (followed until a deploy; ``rollback_of`` always names an older row, so this ends). A rollback
    run by a pipeline records the build that ran it, not the build of what it put back: checks of
    where a version came from (a promotion's branch rule) must ask the origin."""
    while row["kind"] == "rollback" and row.get("rollback_of"):
        older = await get(store, row["rollback_of"])
        if older is None:  # pruned: the rollback's own record is all there is
            break
        row = older
    return row


async def latest(store: Store, target: str, service: str) -> Deploy | None:
    return await store.aread(lambda c: _row(c.execute(
        "SELECT * FROM deploys WHERE target = ? AND service = ? AND status != 'deploying' ORDER BY id DESC LIMIT 1",
        (target, service)).fetchone()))


async def live(store: Store, target: str, service: str) -> Deploy | None:
    """The deploy whose spec the service runs, as far as the history knows: its newest succeeded
    deploy or rollback (a later failed one put that back, or never replaced it)."""
    return await store.aread(lambda c: _row(c.execute(
        "SELECT * FROM deploys WHERE target = ? AND service = ? AND status = 'succeeded' AND spec_after IS NOT NULL "
        "ORDER BY id DESC LIMIT 1", (target, service)).fetchone()))


def in_environment(conn: sqlite3.Connection, environment: str, target: str) -> list[Deploy]:
    """Blocking: every deploy to ``environment`` on ``target``, newest first."""
    return [_row(r) for r in conn.execute("SELECT * FROM deploys WHERE environment = ? AND target = ? "
                                          "ORDER BY id DESC", (environment, target)).fetchall()]


async def services_on(store: Store, target: str) -> list[str]:
    """The services of ``target`` with a succeeded deploy or rollback, by name."""
    return await store.aread(lambda c: [r[0] for r in c.execute(
        "SELECT DISTINCT service FROM deploys WHERE target = ? AND status = 'succeeded' ORDER BY service",
        (target,)).fetchall()])


async def targets(store: Store) -> list[str]:
    """Every target the history has deploys on."""
    return await store.aread(lambda c: [r[0] for r in c.execute(
        "SELECT DISTINCT target FROM deploys ORDER BY target").fetchall()])


async def build_ref(store: Store, build_uid: str | None) -> tuple[str | None, str | None]:
    """The branch and tag of the build that made a deploy ((None, None) for a deploy by hand)."""
    row = await store.aread(lambda c: c.execute("SELECT branch, tag FROM builds WHERE uid = ?",
                                                (build_uid,)).fetchone()) if build_uid else None
    return (row[0], row[1]) if row else (None, None)


async def last_good_before(store: Store, target: str, service: str, before_id: int) -> Deploy | None:
    """The newest succeeded deploy (not a rollback) of the service older than ``before_id``."""
    return await store.aread(lambda c: _row(c.execute(
        "SELECT * FROM deploys WHERE target = ? AND service = ? AND kind = 'deploy' AND status = 'succeeded' "
        "AND id < ? AND spec_after IS NOT NULL ORDER BY id DESC LIMIT 1", (target, service, before_id)).fetchone()))


async def other_targets(store: Store, name: str, target: str) -> list[str]:
    """The targets other than ``target`` that have deploys of the service (or stack) ``name``."""
    return await store.aread(lambda c: [r[0] for r in c.execute(
        "SELECT DISTINCT target FROM deploys WHERE (service = ? OR stack = ?) AND target != ? ORDER BY target",
        (name, name, target)).fetchall()])


async def deployed_by_build(store: Store, target: str, name: str, build_uid: str) -> bool:
    """Whether this build wrote a deploy row for the service (or stack) ``name``."""
    return await store.aread(lambda c: c.execute(
        "SELECT 1 FROM deploys WHERE target = ? AND (service = ? OR stack = ?) AND build_uid = ? AND kind = 'deploy' "
        "LIMIT 1", (target, name, name, build_uid)).fetchone() is not None)


async def batch_rows(store: Store, batch: str) -> list[Deploy]:
    return await store.aread(lambda c: [_row(r) for r in c.execute(
        "SELECT * FROM deploys WHERE batch = ? ORDER BY id", (batch,)).fetchall()])


def list_deploys(store: Store, service: str | None = None, limit: int = 50,
                 target: str | None = None) -> list[Deploy]:
    """Blocking: newest first. ``service`` matches a service name or a stack name."""
    sql, params = "SELECT * FROM deploys", []
    where = []
    if service:
        where.append("(service = ? OR stack = ?)")
        params += [service, service]
    if target:
        where.append("target = ?")
        params.append(target)
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY id DESC LIMIT ?"
    params.append(limit)
    return [_row(r) for r in store.query(sql, params)]


async def mark_dead_in_flight(store: Store) -> list[Deploy]:
    """Mark every ``deploying`` row whose process is gone as ``unknown``; return those rows."""

    def fn(conn: sqlite3.Connection) -> list[Deploy]:
        now = time.time()
        dead = [r for r in conn.execute("SELECT * FROM deploys WHERE status = 'deploying'").fetchall()
                if _stale(r, now)]
        for r in dead:
            conn.execute("UPDATE deploys SET status = 'unknown', finished = ?, reason = ? WHERE id = ?",
                         (now, "the runner died while deploying; not re-run", r["id"]))
        return [_row(r) for r in dead]

    return await store.awrite(fn, durable=True)
