"""``Engine``: one Docker engine (a target), its client, and the one thread seam to it.

Every docker-py call is blocking. Backends and deploy code run them only through ``Engine.call``,
on the engine's own thread pool, never on the event loop: the pool is sized for one streaming step
per running job plus the short calls around them (the default pool of ``asyncio.to_thread`` has
only ``cpu + 4`` threads, and eight jobs streaming output would starve it). The client is made on
first use, in a thread (it asks the engine for its API version), with a connection pool as large as
the thread pool, so a step costs three short HTTP calls (exec create, start, inspect) and nothing
else. ``open_target`` gives a deploy the engine of a named target, checked to be a swarm manager.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import docker

from runner.engine.targets import DEFAULT_TARGET, Target, load_targets
from runner.errors import BackendUnavailable, DeployError, NotASwarm
from runner.settings import Settings

__all__ = ["Engine", "APIClient", "DockerClient", "open_target", "default_engine", "JOB_TIMEOUT", "DEPLOY_TIMEOUT"]

T = TypeVar("T")
APIClient = docker.APIClient  # the types of ``Engine.api`` and ``Engine.client``, for annotations
DockerClient = docker.DockerClient
THREADS = 64
JOB_TIMEOUT = 60  # seconds a job's non-streaming engine call may take (docker-py's default)
DEPLOY_TIMEOUT = 120  # the same for a deploy's (a registry push or pull may be slow)


class Engine:
    """One target's engine: ``client`` (docker-py's high-level client), ``api`` (its low-level one)
    and ``call``, the only way to run them from the event loop. A ``client`` passed in stays its
    maker's to close; the one the engine makes is closed with it."""

    def __init__(self, target: Target | None = None, client: docker.DockerClient | None = None, *,
                 threads: int = THREADS, timeout: float = DEPLOY_TIMEOUT) -> None:
        self.target = target or Target(DEFAULT_TARGET)
        self.threads, self.timeout = threads, timeout
        self._client, self._owns_client = client, client is None
        self._lock = threading.Lock()
        self._pool = concurrent.futures.ThreadPoolExecutor(threads, thread_name_prefix="conveyor-docker")

    @property
    def base_url(self) -> str | None:
        return self.target.url

    @property
    def where(self) -> str:
        """Where the engine is, for messages."""
        return self.target.url or os.environ.get("DOCKER_HOST") or "the local socket"

    async def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run the blocking ``fn(*args, **kwargs)`` on the engine's threads, off the event loop."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, functools.partial(fn, *args, **kwargs))

    @property
    def client(self) -> docker.DockerClient:
        """Blocking on first use (the engine is asked for its API version)."""
        if self._client is None:
            with self._lock:
                if self._client is None:
                    self._client = docker.DockerClient(version="auto", timeout=self.timeout,
                                                       max_pool_size=self.threads, **self._client_kwargs())
        return self._client

    @property
    def api(self) -> docker.APIClient:
        return self.client.api

    def _client_kwargs(self) -> dict[str, Any]:
        target = self.target
        if target.url is None or target.from_env:
            kwargs = docker.utils.kwargs_from_env()
            if target.url:
                kwargs["base_url"] = target.url
            return kwargs
        tls = None
        if (files := target.tls_files()) is not None:
            ca, cert, key = files
            tls = docker.tls.TLSConfig(client_cert=(cert, key), ca_cert=ca, verify=True)
        return {"base_url": target.url, "tls": tls}

    # -- blocking: what any user of the engine asks first ---------------------------------------

    def ping(self) -> dict[str, Any]:
        """The engine's ``info`` (CPU count, swarm state, ...), or BackendUnavailable saying what to do."""
        try:  # `info` answers only from a working engine: no `ping` round trip before it
            return self.api.info()
        except Exception as exc:  # noqa: BLE001 - any failure here means "no engine"
            raise BackendUnavailable(
                f"no Docker engine answers at {self.where} ({exc}); start dockerd, set DOCKER_HOST, "
                "or run with --backend local"
            ) from None

    def check_manager(self) -> None:
        """Raise DeployError unless the target's engine answers, NotASwarm unless it is a swarm manager."""
        name = self.target.name
        try:
            info = self.client.info()
        except docker.errors.DockerException as exc:
            raise DeployError(f"target {name!r}: the Docker engine does not answer ({exc}); "
                              "start it or fix the target's url") from exc
        swarm = info.get("Swarm") or {}
        if swarm.get("LocalNodeState") != "active":
            raise NotASwarm(f"target {name!r}: the Docker engine is not in a swarm; "
                            "run `docker swarm init` on it (or `docker swarm join` an existing swarm)")
        if not swarm.get("ControlAvailable"):
            raise NotASwarm(f"target {name!r}: this engine is a swarm worker, not a manager; "
                            "point the target at a manager (`docker node ls` there lists them)")

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        if self._client is not None and self._owns_client:
            self._client.close()


def default_engine(settings: Settings, timeout: float = JOB_TIMEOUT) -> Engine:
    """The engine jobs run on: ``DOCKER_HOST`` (``Settings.docker_host``) or the local socket. Its
    client is made on first use."""
    return Engine(Target.default(settings), timeout=timeout)


async def open_target(settings: Settings, name: str | None, *, manager: bool = True) -> Engine:
    """The engine of the named target (None: the default), connected, and (``manager``) checked to
    be a swarm manager: a deploy needs one, an image build does not."""
    targets = await asyncio.to_thread(load_targets, settings)  # reads the targets file; no engine yet
    key = name or DEFAULT_TARGET
    if key not in targets:
        known = ", ".join(sorted(targets))
        raise DeployError(f"unknown deploy target {key!r}; known targets: {known} "
                          f"(add it to {Path(settings.data_dir) / 'targets.yml'})")
    engine = Engine(targets[key], timeout=DEPLOY_TIMEOUT)
    try:
        await engine.call(_connect, engine, key, manager)
    except BaseException:
        engine.close()
        raise
    return engine


def _connect(engine: Engine, key: str, manager: bool) -> None:
    try:
        engine.client
    except docker.errors.DockerException as exc:
        raise DeployError(f"target {key!r}: cannot reach the Docker engine ({exc}); start it or fix the url") from exc
    if manager:
        engine.check_manager()
