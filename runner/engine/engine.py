"""``Engine``: one Docker engine (a target), its clients, and the one thread seam to it.

Every engine call is blocking. Backends and deploy code run them only through ``Engine.call``, on
the engine's own thread pool, never on the event loop: the pool is sized for one streaming step per
running job plus the short calls around them (the default pool of ``asyncio.to_thread`` has only
``cpu + 4`` threads, and eight jobs streaming output would starve it). ``api`` speaks the engine's
HTTP API itself for what builds do (runner/engine/api.py), with as many kept-alive connections as
threads, so a step costs three short HTTP calls (exec create, start, inspect) and nothing else;
what it does not speak (services, image builds, the registry) is docker-py's, loaded on first use
(``client``, runner/engine/dockerpy.py). ``open_target`` gives a deploy the engine of a named
target, checked to be a swarm manager.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import os
import ssl
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from runner.engine.api import EngineAPI, tls_context
from runner.engine.errors import DockerException
from runner.engine.targets import DEFAULT_TARGET, Target, load_targets
from runner.errors import BackendUnavailable, DeployError, NotASwarm
from runner.settings import Settings

if TYPE_CHECKING:
    import docker

__all__ = ["Engine", "APIClient", "open_target", "default_engine", "JOB_TIMEOUT", "DEPLOY_TIMEOUT"]

T = TypeVar("T")
APIClient = EngineAPI  # the type of ``Engine.api``, for annotations
THREADS = 64
JOB_TIMEOUT = 60  # seconds a job's non-streaming engine call may take (docker-py's default)
DEPLOY_TIMEOUT = 120  # the same for a deploy's (a registry push or pull may be slow)


class Engine:
    """One target's engine: ``api`` (the engine's HTTP API, docker-py's low-level client for the
    calls it does not make itself), ``client`` (docker-py's high-level client) and ``call``, the
    only way to run them from the event loop. Neither client asks the engine anything until used."""

    def __init__(self, target: Target | None = None, *, threads: int = THREADS,
                 timeout: float = DEPLOY_TIMEOUT) -> None:
        self.target = target or Target(DEFAULT_TARGET)
        self.threads, self.timeout = threads, timeout
        self._api: EngineAPI | None = None
        self._client: docker.DockerClient | None = None
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
    def api(self) -> EngineAPI:
        """The engine's API; nothing is asked before the first call."""
        if self._api is None:
            with self._lock:
                if self._api is None:
                    url, tls = self._url_and_tls()
                    self._api = EngineAPI(url, tls, timeout=self.timeout, pool=self.threads,
                                          fallback=lambda: self.client.api)
        return self._api

    @property
    def client(self) -> docker.DockerClient:
        """docker-py's client: loads docker-py, and blocks on first use (it asks the engine for its
        API version)."""
        if self._client is None:
            from runner.engine import dockerpy

            with self._lock:
                if self._client is None:
                    self._client = dockerpy.make_client(self.timeout, self.threads, **self._client_kwargs())
        return self._client

    def _url_and_tls(self) -> tuple[str | None, ssl.SSLContext | None]:
        """Where ``api`` connects, and its TLS: a target of the targets file takes both from its own
        entry; the default target (``from_env``) takes DOCKER_HOST's TLS from the environment, as
        the docker CLI and docker-py do."""
        target = self.target
        if target.url is None or target.from_env:
            return target.url, _tls_from_env()
        files = target.tls_files()
        return target.url, None if files is None else tls_context(*files)

    def _client_kwargs(self) -> dict[str, Any]:
        """docker-py's arguments for the same engine and TLS as ``api``."""
        from runner.engine import dockerpy

        target = self.target
        if target.url is None or target.from_env:
            kwargs = dockerpy.kwargs_from_env()
            if target.url:
                kwargs["base_url"] = target.url
            return kwargs
        tls = None
        if (files := target.tls_files()) is not None:
            ca, cert, key = files
            tls = dockerpy.TLSConfig(client_cert=(cert, key), ca_cert=ca, verify=True)
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
            info = self.api.info()
        except DockerException as exc:
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
        if self._api is not None:
            self._api.close()
        if self._client is not None:
            self._client.close()


def _tls_from_env() -> ssl.SSLContext | None:
    """docker-py's ``kwargs_from_env`` TLS: on when DOCKER_TLS_VERIFY or DOCKER_CERT_PATH is set
    (the certificates in DOCKER_CERT_PATH, else ~/.docker); the engine verified unless
    DOCKER_TLS_VERIFY is empty or unset."""
    verify_env, cert_path = os.environ.get("DOCKER_TLS_VERIFY"), os.environ.get("DOCKER_CERT_PATH") or None
    verify = verify_env is not None and verify_env != ""
    if not (verify or cert_path):
        return None
    folder = Path(cert_path or Path.home() / ".docker")
    return tls_context(str(folder / "ca.pem"), str(folder / "cert.pem"), str(folder / "key.pem"), verify=verify)


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
    except Exception as exc:  # noqa: BLE001 - docker-py raises its own and requests' errors here
        raise DeployError(f"target {key!r}: cannot reach the Docker engine ({exc}); start it or fix the url") from exc
    if manager:
        engine.check_manager()
