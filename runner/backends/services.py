"""Services (sidecars) of a Docker job: one container per service, started with the job, removed
with it (docs/backends.md, "Services").

A job with services gets a bridge network of its own, ``<job container>-svc``: every service joins
it with its name as a network alias, and so does the job's container (which stays on the build's
network too). A network per job, not the build's: concurrent jobs of one build (a matrix) each have
their own ``db``, and on one shared network the alias ``db`` would answer with all of them.

Services get the job's labels (so every sweep of the build removes them) plus
``io.conveyor.service``, and the job's safety limits, but never privileges, host volumes or the
workspace. The services and the job's container start concurrently; ``ready`` then waits for each
service's probe (``ready.tcp``: a LISTEN socket on the port in the service's own ``/proc/net/tcp``
or ``tcp6``; ``ready.cmd``: ``sh -c CMD`` exec'd in the service exits 0) until ``ready.within``.

After that, one watcher thread per service waits for it to exit. A service that dies while the job
runs fails the job: its steps are stopped (TERM, KILL after the grace) and the step reports the
death with the service's last log lines (``death``). Every blocking call crosses into threads
through ``DockerEngine.call``, the backend's one seam.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from docker import errors as derrors

from runner.backends.docker_blocking import DockerEngine
from runner.errors import BackendError, ServiceError
from runner.plan import Service

__all__ = ["Sidecars", "Death", "LABEL_SERVICE", "TAIL"]

LABEL_SERVICE = "io.conveyor.service"
TAIL = 50  # log lines of a failed service shown in the job log
LISTEN = "0A"  # the state column of /proc/net/tcp for a listening socket
# Only what a service keeps of the job's host config: its limits and its no-new-privileges.
KEPT_LIMITS = ("security_opt", "pids_limit", "mem_limit", "memswap_limit", "nano_cpus")


@dataclass(frozen=True)
class Death:
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

    def __init__(self, engine: DockerEngine, job_container: str, services: Sequence[Service],
                 labels: dict[str, str], job_host: dict[str, Any], caps: Sequence[str],
                 ensure_image: Callable[[str], Awaitable[None]], grace: float) -> None:
        self.engine, self.services, self.grace = engine, tuple(services), grace
        self.network = f"{job_container}-svc"
        self.names = {s.name: f"{job_container}-svc-{_slug(s.name)}" for s in self.services}
        self.labels = labels
        self.host = {k: job_host[k] for k in KEPT_LIMITS if k in job_host}
        self.host.update(privileged=False, cap_drop=["ALL"], cap_add=list(caps), network_mode=self.network)
        self.ensure_image = ensure_image
        self.ids: dict[str, str] = {}  # service name -> container id, as soon as it exists
        self.death: Death | None = None
        self.stopping = False
        self._job_cid: str | None = None
        self._watchers: list[asyncio.Future] = []

    async def start(self) -> None:
        """Create the job's service network and start every service (concurrently); no waiting."""
        await asyncio.gather(*(self.ensure_image(image) for image in {s.image for s in self.services}))
        await self.engine.call(_blocking_create_network, self.engine, self.network, self.labels)
        await asyncio.gather(*(self._start_one(s) for s in self.services))

    async def ready(self, job_cid: str) -> None:
        """Put the job's container on the service network and wait for every service to be ready;
        raise ``ServiceError`` (with the service's last log lines) for the first that is not."""
        self._job_cid = job_cid
        await _first_failure([self.engine.call(_blocking_connect, self.engine, self.network, job_cid),
                              *(self._wait_ready(s) for s in self.services)])
        self._watchers = [asyncio.ensure_future(self._watch(s.name)) for s in self.services]

    async def remove(self, also: Awaitable[None] | None = None) -> None:
        """Remove the services, with ``also`` (the job container's removal: it holds their network),
        then their network. Idempotent; nothing already gone is an error."""
        self.stopping = True
        engine = self.engine
        ids, self.ids = list(self.ids.values()), {}
        removals = [engine.call(engine._blocking_remove_container, cid) for cid in ids]
        results = await asyncio.gather(*removals, *([also] if also is not None else []), return_exceptions=True)
        await engine.call(_blocking_remove_network, engine, self.network)
        for result in results:
            if isinstance(result, BaseException):
                raise result
        for watcher in self._watchers:
            watcher.cancel()

    # -- one service -------------------------------------------------------------------------

    async def _start_one(self, service: Service) -> None:
        create = dict(
            image=service.image, name=self.names[service.name], environment=dict(service.env),
            labels={**self.labels, LABEL_SERVICE: service.name}, hostname=_slug(service.name)[:63],
            networking_config={self.network: {"Aliases": [service.name]}},
        )
        if service.command is not None:  # like Compose's `command:`: the image's entrypoint stays
            create["command"] = ["sh", "-c", service.command]
        engine = self.engine
        self.ids[service.name] = await engine.call(_blocking_create, engine, create, self.host)
        await engine.call(_blocking_start, engine, self.ids[service.name], service.name)

    async def _wait_ready(self, service: Service) -> None:
        ready, cid, engine = service.ready, self.ids[service.name], self.engine
        loop = asyncio.get_running_loop()
        deadline = loop.time() + (ready.within if ready else 0.0)
        pause, last = 0.02, ""
        while True:
            state = await engine.call(_blocking_state, engine, cid)
            if not state.get("Running"):
                raise await self._failure(service, f"exited with code {state.get('ExitCode')} before it was ready")
            if ready is None:
                return
            ok, last = await engine.call(_blocking_probe, engine, cid, ready.tcp, ready.cmd)
            if ok:
                return
            if loop.time() >= deadline:
                what = f"nothing listens on tcp port {ready.tcp}" if ready.tcp else f"`{ready.cmd}` failed{last}"
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
        code = await engine.call(_blocking_wait, engine, cid, lambda: self.stopping)
        if self.stopping or self.death is not None or code is None:
            return
        log = await engine.call(_blocking_tail, engine, cid)
        self.death = Death(name, code, tuple(log))
        # The running step cannot succeed without its service: stop it now instead of letting it
        # wait for a connection until the job's timeout. No later step starts (see DockerBackend).
        for signal, pause in (("TERM", self.grace), ("KILL", 0.0)):
            if self._job_cid is None or self.stopping:
                return
            await engine.call(engine._blocking_signal_steps, self._job_cid, signal)
            await asyncio.sleep(pause)


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


# -- blocking calls (run on the engine's threads by DockerEngine.call) -------------------------


def _blocking_create_network(engine: DockerEngine, name: str, labels: dict[str, str]) -> None:
    try:
        engine.api.create_network(name, driver="bridge", labels=labels, check_duplicate=True)
    except derrors.APIError as exc:
        raise BackendError(f"could not create the job's service network {name} ({_short(exc)}); the engine may "
                           "be out of address pools: remove unused networks with `docker network ls`") from None


def _blocking_remove_network(engine: DockerEngine, name: str) -> None:
    for attempt in range(5):
        try:
            engine.api.remove_network(name)
            return
        except derrors.NotFound:
            return
        except derrors.APIError:  # a container the engine is still removing holds it: retry
            if attempt == 4:
                return  # the build's teardown removes it by label
            time.sleep(0.2 * (attempt + 1))


def _blocking_create(engine: DockerEngine, create: dict[str, Any], host: dict[str, Any]) -> str:
    api = engine.api
    networking = api.create_networking_config(
        {net: api.create_endpoint_config(aliases=cfg["Aliases"]) for net, cfg in create.pop("networking_config").items()})
    return api.create_container(host_config=api.create_host_config(**host), networking_config=networking,
                                **create)["Id"]


def _blocking_start(engine: DockerEngine, cid: str, name: str) -> None:
    try:
        engine.api.start(cid)
    except derrors.APIError as exc:
        raise ServiceError(f"service {name!r} could not start ({_short(exc)}); check its image and command") from None


def _blocking_connect(engine: DockerEngine, network: str, cid: str) -> None:
    engine.api.connect_container_to_network(cid, network)


def _blocking_state(engine: DockerEngine, cid: str) -> dict[str, Any]:
    try:
        return engine.api.inspect_container(cid)["State"]
    except derrors.NotFound:
        return {"Running": False, "ExitCode": "unknown (the container was removed)"}


def _blocking_probe(engine: DockerEngine, cid: str, tcp: int | None, cmd: str | None) -> tuple[bool, str]:
    """One readiness probe inside the service: (ready?, what the failed probe said)."""
    api = engine.api
    argv = ["cat", "/proc/net/tcp", "/proc/net/tcp6"] if tcp is not None else ["sh", "-c", cmd]
    try:
        exec_id = api.exec_create(cid, argv, stdout=True, stderr=cmd is not None)["Id"]
        out = api.exec_start(exec_id).decode(errors="replace")
        code = api.exec_inspect(exec_id).get("ExitCode")
    except derrors.APIError as exc:  # the service is stopping: the next state check says so
        return False, f": {_short(exc)}"
    if tcp is not None:
        return _listening(out, tcp), ""
    tail = out.strip().splitlines()[-1:] if out.strip() else []
    return code == 0, f" (exit {code}{': ' + tail[0][:200] if tail else ''})"


def _listening(proc_net_tcp: str, port: int) -> bool:
    """Whether a /proc/net/tcp{,6} text has a socket listening on ``port`` (any address)."""
    wanted = f"{port:04X}"
    for line in proc_net_tcp.splitlines():
        fields = line.split()
        if len(fields) > 3 and fields[3] == LISTEN and fields[1].rpartition(":")[2] == wanted:
            return True
    return False


def _blocking_tail(engine: DockerEngine, cid: str) -> list[str]:
    try:
        text = engine.api.logs(cid, stdout=True, stderr=True, tail=TAIL).decode(errors="replace")
    except derrors.APIError:
        return []
    return text.splitlines()[-TAIL:]


def _blocking_wait(engine: DockerEngine, cid: str, stopping: Callable[[], bool]) -> int | None:
    """Block until the service's container stops: its exit code; None once it was removed or its
    job is stopping."""
    while not stopping():
        try:
            return int(engine.api.wait(cid, timeout=None)["StatusCode"])
        except derrors.NotFound:
            return None
        except Exception:  # noqa: BLE001 - a dropped connection (or a closed client): look again
            time.sleep(0.5)
    return None


def _short(exc: Exception) -> str:
    text = getattr(exc, "explanation", None) or str(exc)
    return str(text).strip().splitlines()[0][:300] if text else type(exc).__name__
