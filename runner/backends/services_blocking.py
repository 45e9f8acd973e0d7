"""The blocking engine calls of services (runner/backends/services.py), run on the engine's threads
by ``Engine.call`` (runner/engine/engine.py), the one seam; none of them is called from the event loop."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from typing import Any

from runner.engine import errors as derrors
from runner.engine.engine import Engine
from runner.engine.errors import short as _short
from runner.errors import BackendError, ServiceError

TAIL = 50  # log lines of a failed service shown in the job log
WATCH_ROUND = 5  # seconds of one `wait` call of a service's watcher thread
LISTEN = "0A"  # the state column of /proc/net/tcp for a listening socket
LOOPBACK = ("00000000000000000000000001000000",)  # ::1 as /proc/net/tcp6 writes it (127.x is "..7F")


def _blocking_create_network(engine: Engine, name: str, labels: dict[str, str]) -> None:
    try:
        engine.api.create_network(name, driver="bridge", labels=labels, check_duplicate=True)
    except derrors.APIError as exc:
        raise BackendError(f"could not create the job's service network {name} ({_short(exc)}); the engine may "
                           "be out of address pools: remove unused networks with `docker network ls`") from None


def _blocking_remove_network(engine: Engine, name: str) -> None:
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


def _blocking_create(engine: Engine, create: dict[str, Any], host: dict[str, Any]) -> str:
    api = engine.api
    networking = {"EndpointsConfig": {net: {"Aliases": cfg["Aliases"]}
                                      for net, cfg in create.pop("networking_config").items()}}
    return api.create_container(host_config=api.create_host_config(**host), networking_config=networking,
                                **create)["Id"]


def _blocking_start(engine: Engine, cid: str, name: str) -> None:
    try:
        engine.api.start(cid)
    except derrors.APIError as exc:
        raise ServiceError(f"service {name!r} could not start ({_short(exc)}); check its image and command") from None


def _blocking_state(engine: Engine, cid: str, network: str) -> dict[str, Any]:
    """The container's state, with ``Address``: its IP address on ``network``."""
    try:
        attrs = engine.api.inspect_container(cid)
    except derrors.NotFound:
        return {"Running": False, "ExitCode": "unknown (the container was removed)"}
    networks = (attrs.get("NetworkSettings") or {}).get("Networks") or {}
    return {**attrs["State"], "Address": (networks.get(network) or {}).get("IPAddress")}


def _blocking_accepts(address: str, port: int) -> bool | None:
    """Whether ``address:port`` accepts a connection from here (False: refused); None when nothing
    answers (a remote engine, a runner inside a container): then only a probe inside can tell."""
    try:
        with socket.create_connection((address, port), timeout=0.25):
            return True
    except ConnectionRefusedError:
        return False
    except OSError:
        return None


def _blocking_probe(engine: Engine, cid: str, tcp: int | None, cmd: str | None) -> tuple[bool, str]:
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
    """Whether a /proc/net/tcp{,6} text has a socket listening on ``port`` at an address the job can
    reach: a server bound to loopback only (127.0.0.1, ::1) is out of the job's reach."""
    wanted = f"{port:04X}"
    for line in proc_net_tcp.splitlines():
        fields = line.split()
        if len(fields) > 3 and fields[3] == LISTEN:
            address, _, found = fields[1].rpartition(":")
            if found == wanted and address not in LOOPBACK and not (len(address) == 8 and address.endswith("7F")):
                return True
    return False


def _blocking_tail(engine: Engine, cid: str) -> list[str]:
    try:
        text = engine.api.logs(cid, stdout=True, stderr=True, tail=TAIL).decode(errors="replace")
    except derrors.APIError:
        return []
    return text.splitlines()[-TAIL:]


def _blocking_wait(engine: Engine, cid: str, stopping: Callable[[], bool]) -> int | None:
    """Block until the service's container stops: its exit code; None once it was removed, its job
    is stopping, or the engine is out of reach. Waits in short rounds, so no thread outlives its
    job (or its process) for long."""
    while not stopping():
        try:
            return int(engine.api.wait(cid, timeout=WATCH_ROUND)["StatusCode"])
        except derrors.NotFound:
            return None
        except Exception:  # noqa: BLE001 - the round timed out, or the client is gone: which one?
            try:
                engine.api.inspect_container(cid)
            except Exception:  # noqa: BLE001 - removed, or the engine is out of reach
                return None
    return None
