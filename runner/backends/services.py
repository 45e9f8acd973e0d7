"""Services (sidecars) of a Docker job: one container per service, started with the job, removed
with it (docs/backends.md, "Services").

A job with services runs on a bridge network of its own, leased from the build network pool
(runner/engine/netpool.py; ``<job container>-svc``, made and removed, with ``network_pool: 0``),
instead of the build's: every service joins it with its name as a network alias. A network per job: concurrent
jobs of one build (a matrix) each have their own ``db``, and on one shared network the alias ``db``
would answer with all of them.

Services get the job's labels, each with its own `io.conveyor.job-resource` mark (so every
sweep of the build removes them and their network), plus
``io.conveyor.service``, and the job's safety limits, but never privileges, host volumes or the
workspace. The services and the job's container start concurrently, and each service's probe
runs as soon as it started, until ``ready.within``: ``ready.tcp`` is a connection from the runner
(a local engine) or else a LISTEN socket on the port in the service's own ``/proc/net/tcp{,6}``;
``ready.cmd`` is ``sh -c CMD`` exec'd in the service, exiting 0.

After that, one watcher thread per service waits for it to exit. A service that dies while the job
runs fails the job: its steps are stopped (TERM, KILL after the grace) and the step reports the
death with the service's last log lines (``death``). Every blocking call
(runner/backends/services_blocking.py) crosses into threads through ``Engine.call``.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any

from runner.backends.docker_blocking import signal_steps
from runner.backends.pump import uncancelled
from runner.backends.services_blocking import (TAIL, _blocking_accepts, _blocking_create, _blocking_create_network,
                                               _blocking_probe, _blocking_remove_network, _blocking_start,
                                               _blocking_state, _blocking_tail, _blocking_wait)
from runner.engine import netpool
from runner.engine.containers import remove_container
from runner.engine.engine import Engine
from runner.engine.labels import job_resource
from runner.errors import ServiceError
from runner.plan import Service
from runner.values import Value, frozen

__all__ = ["Sidecars", "Death", "LABEL_SERVICE", "TAIL"]

logger = logging.getLogger("conveyor.docker.services")

LABEL_SERVICE = "io.conveyor.service"
# Only what a service keeps of the job's host config: its limits and its no-new-privileges.
KEPT_LIMITS = ("security_opt", "pids_limit", "mem_limit", "memswap_limit", "nano_cpus")


@frozen
class Death(Value):
    """A service that exited while its job ran."""

    service: str
    code: int
    log: tuple[str, ...]

    @property
    def reason(self) -> str:
        return f"service {self.service!r} exited with code {self.code} while the job ran"

    def notice(self) -> bytes:
        """What the step's log shows: the reason, then the service's last log lines."""
        lines = [f"[conveyor] {self.reason}; its last {len(self.log)} log lines:", *self.log]
        return ("\n".join(lines) + "\n").encode()


class Sidecars:
    """The services of one job on the Docker backend."""

    def __init__(self, engine: Engine, job_container: str, services: Sequence[Service],
                 labels: dict[str, str], job_host: dict[str, Any], caps: Sequence[str],
                 ensure_image: Callable[[str], Awaitable[None]], grace: float, pool: int = 0) -> None:
        self.engine, self.services, self.grace = engine, tuple(services), grace
        # Leased from the build network pool (runner/engine/netpool.py) in start, unless ``pool`` is 0.
        self.network, self.pool, self._leased = f"{job_container}-svc", pool, False
        self.names = {s.name: f"{job_container}-svc-{_slug(s.name)}" for s in self.services}
        self.labels = labels
        self.host = {k: job_host[k] for k in KEPT_LIMITS if k in job_host}
        self.host.update(privileged=False, cap_drop=["ALL"], cap_add=list(caps), network_mode=self.network)
        self.ensure_image = ensure_image
        self.ids: dict[str, str] = {}  # service name -> container id, as soon as it exists
        self.death: Death | None = None
        # Whether this runner may reach the service network (a local engine): a tcp probe that
        # connects costs no exec (~0.1 s); else the probe reads the service's /proc/net/tcp.
        self.direct = True
        self.stopping = False
        self._job_cid: str | None = None
        self._watchers: list[asyncio.Future] = []

    async def start(self, job_container: Coroutine[Any, Any, None]) -> None:
        """Create the network, then start the job's container (``job_container``, to be made on
        ``self.network``) and every service together; return when all services are ready. Raise
        ``ServiceError`` (with the service's last log lines) for the first that fails. What was
        made is recorded at once (``ids``), so ``remove`` after a failure or cancellation finds it."""
        try:
            if self.pool > 0:
                self.network = await uncancelled(self.engine.call(netpool.lease, self.engine, self.labels))
                self._leased = True
                self.host["network_mode"] = self.network
            else:
                await uncancelled(self.engine.call(_blocking_create_network, self.engine, self.network,
                                                  job_resource(self.labels, self.network)))
        except BaseException:
            job_container.close()  # never started: nothing of it to remove
            raise
        await _first_failure([job_container, *(self._start_one(s) for s in self.services)])

    def watch(self, job_cid: str) -> None:
        """From now on, a service that exits fails the job (``death``) and stops its steps."""
        self._job_cid = job_cid
        self._watchers = [asyncio.ensure_future(self._watch(s.name)) for s in self.services]

    async def remove(self, also: Awaitable[None] | None = None) -> None:
        """Remove the services, with ``also`` (the job container's removal: it holds their network),
        then their network. Idempotent; nothing already gone is an error."""
        self.stopping = True
        engine = self.engine
        ids, self.ids = list(self.ids.values()), {}
        removals = [engine.call(remove_container, engine, cid) for cid in ids]
        results = await asyncio.gather(*removals, *([also] if also is not None else []), return_exceptions=True)
        if not self._leased:
            await engine.call(_blocking_remove_network, engine, self.network)
        elif not any(isinstance(r, BaseException) for r in results):  # empty now: back to the pool
            self._leased = False
            await engine.call(netpool.release, engine, self.network, self.pool, self.labels)
        # else the build's teardown sweeps what is left, and the lease with it
        for watcher in self._watchers:
            watcher.cancel()
        for result in results:
            if isinstance(result, BaseException):
                raise result

    # -- one service -------------------------------------------------------------------------

    async def _start_one(self, service: Service) -> None:
        create = dict(
            image=service.image, name=self.names[service.name], environment=dict(service.env),
            labels={**job_resource(self.labels, self.names[service.name]), LABEL_SERVICE: service.name}, hostname=_slug(service.name)[:63],
            networking_config={self.network: {"Aliases": [service.name]}},
        )
        if service.command is not None:  # like Compose's `command:`: the image's entrypoint stays
            create["command"] = ["sh", "-c", service.command]
        await self.ensure_image(service.image)
        await uncancelled(self._create_and_start(service.name, create))
        await self._wait_ready(service)

    async def _create_and_start(self, name: str, create: dict[str, Any]) -> None:
        engine = self.engine
        self.ids[name] = await engine.call(_blocking_create, engine, create, self.host)
        await engine.call(_blocking_start, engine, self.ids[name], name)

    async def _wait_ready(self, service: Service) -> None:
        ready, cid, engine = service.ready, self.ids[service.name], self.engine
        loop = asyncio.get_running_loop()
        deadline = loop.time() + (ready.within if ready else 0.0)
        pause, last = 0.02, ""
        while True:
            state = await engine.call(_blocking_state, engine, cid, self.network)
            if not state.get("Running"):
                raise await self._failure(service, f"exited with code {state.get('ExitCode')} before it was ready")
            if ready is None:
                return
            ok = False
            if ready.tcp is not None and self.direct and state.get("Address"):
                accepted = await engine.call(_blocking_accepts, state["Address"], ready.tcp)
                # Only a connection is an answer: a refusal may come from a firewall on the way.
                ok, self.direct = accepted is True, accepted is not None
            if not ok:
                ok, last = await engine.call(_blocking_probe, engine, cid, ready.tcp, ready.cmd)
            if ok:
                return
            if loop.time() >= deadline:
                what = (f"nothing listens on tcp port {ready.tcp} of its network address" if ready.tcp
                        else f"`{ready.cmd}` failed{last}")
                raise await self._failure(service, f"was not ready within {ready.within:g}s ({what})")
            await asyncio.sleep(min(pause, max(0.0, deadline - loop.time())))
            pause = min(pause * 2, 0.5)

    async def _failure(self, service: Service, what: str) -> ServiceError:
        log = await self.engine.call(_blocking_tail, self.engine, self.ids[service.name])
        header = f"[conveyor] service {service.name!r} {what}; its last {len(log)} log lines:"
        return ServiceError(f"service {service.name!r} {what}; its last log lines are in the job log",
                            log=(header, *log))

    async def _watch(self, name: str) -> None:
        """Wait for the service to exit; unless the job is stopping, record it and stop the steps."""
        engine, cid = self.engine, self.ids.get(name)
        if cid is None:
            return
        try:
            code = await engine.call(_blocking_wait, engine, cid, lambda: self.stopping)
            if self.stopping or self.death is not None or code is None:
                return
            log = await engine.call(_blocking_tail, engine, cid)
            self.death = Death(name, code, tuple(log))
            # The running step cannot succeed without its service: stop it now instead of letting
            # it wait for a connection until the job's timeout. No later step starts (DockerBackend).
            for signal, pause in (("TERM", self.grace), ("KILL", 0.0)):
                if self._job_cid is None or self.stopping:
                    return
                await engine.call(signal_steps, engine, self._job_cid, signal)
                await asyncio.sleep(pause)
        except Exception as exc:  # noqa: BLE001 - a watcher must not fail anything; the engine went away
            logger.warning("watching service %s of %s stopped: %s", name, self.network, exc)


async def _first_failure(aws: Sequence[Awaitable[Any]]) -> None:
    """Await all; on the first error cancel the rest and raise it (a failed service needs no wait
    for the others' ``within``)."""
    tasks = [asyncio.ensure_future(a) for a in aws]
    try:
        for next_done in asyncio.as_completed(tasks):
            await next_done
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:40] or "service"
