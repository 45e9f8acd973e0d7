"""A build's bridge network on the Docker backend, from its first job to its teardown.

Leased from the engine's pool of idle build networks (runner/engine/netpool.py, docs/backends.md
"The build network pool"), or, with ``Settings.network_pool`` 0, made as ``conveyor-<build>`` and
removed by the build's sweep. While the build waits for an approval the lease is given back
(``idle``) and the next job leases one again (``name``). The lease is one of the build's job
resources: the build's sweep ends it, and ``trim`` afterwards keeps the pool to its size.

Taking a lease costs the engine a container create (the lease), as long as the first job's own
container create: ``likely`` names the idle network the lease tries first, so that container is
created for it while the lease is taken, and started only once ``name`` confirms it (a network
another runner took meanwhile costs that container a second create, on the network leased).
"""

from __future__ import annotations

import asyncio
import contextlib
import time

from runner.backends.pump import uncancelled
from runner.engine import netpool
from runner.engine.engine import Engine
from runner.engine.labels import job_resource
from runner.engine.workspace import create_network, network_name

__all__ = ["BuildNetwork"]

# How long a confirmed lease is trusted before a container starts on it without asking the engine
# again: jobs starting together pay nothing, a job minutes later asks once (``confirm``).
TRUSTED_FOR = 5.0


class BuildNetwork:
    def __init__(self, engine: Engine, build_id: str, labels: dict[str, str], pool: int) -> None:
        self.engine, self.build_id, self.labels, self.pool = engine, build_id, labels, pool
        self.current = ""  # the network's name while the build holds one
        self._lock = asyncio.Lock()  # one lease at a time
        self._tries: list[str] = []  # the pooled networks the next lease tries, in order
        self._checked = 0.0  # when the lease was last known held (monotonic)

    async def name(self) -> str:
        """The build's network, leased (or made) on first use and again after ``idle``."""
        if not self.current:
            async with self._lock:
                if not self.current:
                    try:
                        self.current = await uncancelled(self.engine.call(self._get, self._tries or None))
                        self._checked = time.monotonic()
                    finally:
                        self._tries = []  # kept until now: ``likely`` names the first while it is tried
        return self.current

    async def confirm(self) -> str:
        """``name()``, checked just before a container starts on it: a lease or a network removed
        behind the build's back (`docker container prune` takes the lease, `docker network prune` an
        idle network) is leased again, so the build never shares a network another build took."""
        name = await self.name()
        if self.pool <= 0 or time.monotonic() - self._checked < TRUSTED_FOR:
            return name
        if await self.engine.call(netpool.holds, self.engine, name, self.labels):
            self._checked = time.monotonic()
            return name
        async with self._lock:
            if self.current == name:
                self.current = ""  # lost: the next lease is a fresh one
        return await self.name()

    async def likely(self) -> str:
        """The build's network if it holds one; else the idle network its lease will try first
        (containers may be created for it, never started before ``name`` confirms it); with none
        idle, or no pool, ``name()``."""
        if not (self.current or self._tries) and self.pool > 0:
            pooled = await self.engine.call(netpool.pooled, self.engine)
            if not (self.current or self._tries):
                self._tries = pooled
        return self._tries[0] if self._tries and not self.current else await self.name()

    async def settle(self) -> None:
        """Wait for a lease in flight (a teardown must not sweep before it is taken)."""
        async with self._lock:
            pass

    def _get(self, tries: list[str] | None) -> str:
        if self.pool > 0:
            return netpool.lease(self.engine, self.labels, tries)
        name = network_name(self.build_id)
        create_network(self.engine, name, job_resource(self.labels, name))
        return name

    async def idle(self) -> None:
        """Nothing of the build runs for a while: give a pooled network back (one whose lease is still
        being taken, once it is)."""
        if self.pool <= 0:
            return
        async with self._lock:
            if not self.current:
                return
            given, self.current = self.current, ""
            await uncancelled(self.engine.call(netpool.release, self.engine, given, self.pool, self.labels))

    async def trim(self) -> None:
        """After the build's sweep ended the lease: keep the pool to its size. A trim that fails
        only leaves one more idle network."""
        if self.current and self.pool > 0:
            with contextlib.suppress(Exception):
                await self.engine.call(netpool.trim, self.engine, self.pool, self.labels, self.current)
