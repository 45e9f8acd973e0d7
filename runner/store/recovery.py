"""After a crash: builds whose process is gone become `interrupted`, and what they left is swept.

Every command that opens the store calls ``open_store`` (or ``recover_interrupted`` itself; ``conveyor
run`` does it next to its own build, once that build's first step has started), so after a ``kill -9``
of ``conveyor run`` the next ``conveyor builds`` already shows the truth. A build
is stale when it is ``running`` and the process recorded for it (pid on host) is dead, a zombie, a
newer process that reused the pid, or on another host (whose pids mean nothing here). A ``queued``
or ``waiting`` build made by ``conveyor run`` whose process died is stale too; the server's queued
and waiting builds are the server's (it resumes a waiting build after a restart).

Containers, the volume and the network of a stale build are removed through the Docker backend's
``sweep_build``; when the engine is a swarm manager, through the Swarm backend's, which first removes
the build's job services (``backend: swarm``) and their secrets (runner/backends ``build_sweeper``).
Both match job resources only (never a service the build deployed: it keeps running); when the
engine is down the build is still marked, and the backend's own sweep of expired resources removes
them later.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
import socket
import time
from collections.abc import Callable

from runner.settings import Settings
from runner.store.builds import BuildRow, unfinished_builds
from runner.store.db import Store

__all__ = ["open_store", "recover_interrupted", "process_alive", "this_host", "deploys_in_flight"]

log = logging.getLogger("conveyor.store")


def this_host() -> str:
    return socket.gethostname()


def deploys_in_flight(conn) -> bool:
    """Whether any deploy row is still ``deploying``: one a dead runner left, to settle (runner.deploy)."""
    return conn.execute("SELECT 1 FROM deploys WHERE status = 'deploying' LIMIT 1").fetchone() is not None


def _process_start(pid: int) -> float | None:
    """When ``pid`` started (unix seconds), from /proc; None where that cannot be read."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        with open("/proc/stat", "rb") as f:
            boot = next(float(line.split()[1]) for line in f if line.startswith(b"btime"))
        return boot + int(fields[19]) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError, StopIteration):
        return None


def _is_zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] == b"Z"
    except (OSError, IndexError):
        return False


def process_alive(pid: int | None, host: str | None, since: float | None = None) -> bool:
    """Is the process that claimed a build still the one running it?"""
    if not pid or host != this_host():
        return False
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # alive, owned by someone else
    if _is_zombie(pid):
        return False
    started = _process_start(pid)
    # A process born after the build was created is not the one that ran it (pid reuse).
    return not (started is not None and since is not None and started > since + 2.0)


def _is_stale(build: BuildRow) -> bool:
    if build.status == "running":
        # The pid was recorded when the build started, which for a server's build may be long after
        # it was queued (and after a restart): a process younger than that is a reused pid.
        return not process_alive(build.pid, build.host, build.started or build.created)
    if build.status == "queued" and build.trigger == "cli":
        return not process_alive(build.pid, build.host, build.created)
    if build.status == "waiting" and build.trigger == "cli":
        # Only the `conveyor run` that waits can go on with it. A server's waiting build holds no
        # process or container: a restarted server resumes it, so it stays waiting.
        return not process_alive(build.pid, build.host, build.started or build.created)
    return False


def _default_sweeper(settings: Settings) -> Callable[[str], object]:
    from runner.backends import build_sweeper  # lazy: most commands never need the engine

    return build_sweeper(settings)


def _sweep(uid: str, sweeper: Callable[[str], object]) -> None:
    result = sweeper(uid)
    if inspect.isawaitable(result):
        asyncio.run(_awaited(result))


async def _awaited(awaitable) -> object:
    return await awaitable


def recover_interrupted(store: Store, settings: Settings | None = None, *,
                        sweeper: Callable[[str], object] | None = None) -> list[BuildRow]:
    """Mark stale builds `interrupted` and sweep their resources; return the builds marked.
    Blocking (call it through ``asyncio.to_thread`` from a loop)."""
    stale = [b for b in unfinished_builds(store.read()) if _is_stale(b)]
    if not stale:
        return []
    now = time.time()

    def mark(conn) -> list[int]:
        done = []
        for b in stale:
            where = f"pid {b.pid} on {b.host}" if b.pid else "its process"
            reason = f"interrupted: {where} stopped before the build finished (killed or crashed)"
            cur = conn.execute(
                "UPDATE builds SET status = 'interrupted', reason = ?, finished = ? "
                "WHERE id = ? AND status = ? AND COALESCE(pid, -1) = COALESCE(?, -1)",
                (reason, now, b.id, b.status, b.pid),
            )
            if cur.rowcount:
                done.append(b.id)
                for table in ("steps", "jobs", "stages"):
                    scope = "job_id IN (SELECT id FROM jobs WHERE build_id = ?)" if table == "steps" else "build_id = ?"
                    conn.execute(
                        f"UPDATE {table} SET status = 'interrupted', finished = ? WHERE {scope} AND status = 'running'",
                        (now, b.id),
                    )
                    if table != "steps":
                        conn.execute(
                            f"UPDATE {table} SET status = 'skipped' WHERE build_id = ? AND status = 'queued'", (b.id,)
                        )
        return done

    marked = set(store.write(mark))
    stale = [b for b in stale if b.id in marked]
    if stale:
        try:
            sweep = sweeper or _default_sweeper(settings or Settings.from_env())
            for b in stale:
                _sweep(b.uid, sweep)
        except Exception as exc:  # noqa: BLE001 - an engine that is down must not stop `builds`
            log.warning("could not sweep the resources of interrupted builds (%s); the periodic sweep "
                        "removes them once the engine answers", exc)
    return stale


def open_store(settings: Settings, *, recover: bool = True) -> Store:
    """Open the store in ``settings.data_dir`` and settle what a crash left behind."""
    store = Store(settings.data_dir)
    if recover:
        try:
            recover_interrupted(store, settings)
        except BaseException:
            store.close()
            raise
    return store
