"""``EngineAPI``: the Docker Engine's HTTP API spoken directly, for the calls every build makes.

Containers, exec, archives, volumes, networks and image checks go over ``http.client`` to the
engine's socket (``unix://``) or port (``tcp://``, with TLS when the target has it), on kept-alive
connections. docker-py and requests cost a `conveyor run` about a third of its CPU before its first
container (their imports) and a millisecond or so of request handling per call; neither is on a
build's path any more (docs/backends.md, "Talking to the engine").

Every other call (services, secrets, nodes, image builds, pushes and pulls with the registry's
credentials) is docker-py's: an attribute this class lacks is looked up on docker-py's ``APIClient``
of the same engine, made on first use (``fallback``). The methods here keep docker-py's names,
arguments and return values, and both raise the errors of runner/engine/errors.py, so a caller
never knows which client answered. Blocking, like docker-py: run through ``Engine.call``.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import select
import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from typing import Any, BinaryIO
from urllib.parse import quote, urlencode, urlsplit

from runner.engine.errors import DockerException, api_error

__all__ = ["EngineAPI", "tls_context", "DEFAULT_SOCKET"]

DEFAULT_SOCKET = "unix:///var/run/docker.sock"
_BLOCK = 1 << 20  # bytes per write of a request body (http.client's default is 8 KiB)
# docker-py's create_host_config keywords this client takes, and the engine's names for them.
_HOST_CONFIG = {"binds": "Binds", "network_mode": "NetworkMode", "privileged": "Privileged", "cap_drop": "CapDrop",
                "cap_add": "CapAdd", "security_opt": "SecurityOpt", "pids_limit": "PidsLimit", "mem_limit": "Memory",
                "memswap_limit": "MemorySwap", "nano_cpus": "NanoCpus", "log_config": "LogConfig"}


def tls_context(ca: str | None, cert: str | None, key: str | None, verify: bool = True) -> ssl.SSLContext:
    """The TLS of a ``tcp://`` engine: its CA (verified unless ``verify`` is False) and our client cert."""
    try:
        context = ssl.create_default_context(cafile=ca if verify else None)
        if not verify:
            context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
        if cert and key:
            context.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        raise DockerException(f"cannot use the TLS files {ca}, {cert}, {key} ({exc}); check the target's "
                              "tls entry, or DOCKER_CERT_PATH") from None
    return context


class EngineAPI:
    """One engine's API (``url``: ``unix://PATH``, ``tcp://HOST:PORT``; None: ``DOCKER_HOST`` or the
    local socket). ``timeout`` bounds each call but the streams of a step; at most ``pool`` idle
    connections are kept. Nothing is asked of the engine before the first call."""

    def __init__(self, url: str | None, tls: ssl.SSLContext | None = None, *, timeout: float = 60,
                 pool: int = 64, fallback: Callable[[], Any] | None = None) -> None:
        self.url = url or os.environ.get("DOCKER_HOST") or DEFAULT_SOCKET
        self.timeout, self._pool_size, self._fallback = timeout, pool, fallback
        self._connect = _connector(self.url, tls)
        self._idle: list[http.client.HTTPConnection] = []
        self._lock = threading.Lock()
        self._prefix: str | None = None  # "/v1.41": the engine's API version, asked on the first call

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or self.__dict__.get("_fallback") is None:
            raise AttributeError(name)
        return getattr(self._fallback(), name)  # docker-py's APIClient: a call this class does not make

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()

    # -- the engine ---------------------------------------------------------------------------------

    def version(self) -> dict[str, Any]:
        return self._json("GET", "/version", versioned=False)

    def info(self) -> dict[str, Any]:
        return self._json("GET", "/info")

    def inspect_image(self, image: str) -> dict[str, Any]:
        return self._json("GET", f"/images/{_q(image)}/json")

    # -- containers ---------------------------------------------------------------------------------

    @staticmethod
    def create_host_config(**options: Any) -> dict[str, Any]:
        """docker-py's ``create_host_config`` for the options jobs and services use; an option given
        as None (or False) is left to the engine's default."""
        unknown = set(options) - set(_HOST_CONFIG)
        if unknown:
            raise TypeError(f"host config options not supported here: {', '.join(sorted(unknown))}")
        return {_HOST_CONFIG[k]: v for k, v in options.items() if v is not None and v is not False}

    def create_container(self, image: str, command: list[str] | None = None, *, name: str | None = None,
                         labels: dict[str, str] | None = None, environment: dict[str, str] | None = None,
                         working_dir: str | None = None, entrypoint: list[str] | None = None,
                         hostname: str | None = None, network_disabled: bool = False,
                         host_config: dict[str, Any] | None = None,
                         networking_config: dict[str, Any] | None = None,
                         stdin_open: bool = False) -> dict[str, Any]:
        config = {"Image": image, "Cmd": command, "Entrypoint": entrypoint, "Labels": labels or {},
                  "Env": _env(environment), "WorkingDir": working_dir, "Hostname": hostname,
                  "NetworkDisabled": network_disabled, "HostConfig": host_config or {},
                  "NetworkingConfig": networking_config, "OpenStdin": stdin_open or None}
        body = {k: v for k, v in config.items() if v is not None}
        return self._json("POST", "/containers/create", params={"name": name} if name else None, body=body)

    def start(self, container: str) -> None:
        self._call("POST", f"/containers/{_q(container)}/start")

    def inspect_container(self, container: str) -> dict[str, Any]:
        return self._json("GET", f"/containers/{_q(container)}/json")

    def attach(self, container: str) -> ExecStream:
        """The container's stdin (``ExecStream.send``) and its output as it comes, stdout and stderr
        in the order the engine sent them; it must have been created with ``stdin_open``."""
        conn, resp = self._open("POST", f"/containers/{_q(container)}/attach", timeout=None,
                                params={"stream": True, "stdin": True, "stdout": True, "stderr": True})
        return ExecStream(conn, resp)

    def remove_container(self, container: str, force: bool = False, v: bool = False) -> None:
        self._call("DELETE", f"/containers/{_q(container)}", params={"force": force, "v": v})

    def wait(self, container: str, timeout: float | None = None) -> dict[str, Any]:
        """Until the container stops; ``timeout`` (default: the client's) raises DockerException."""
        return self._json("POST", f"/containers/{_q(container)}/wait", timeout=timeout or "default")

    def logs(self, container: str, stdout: bool = True, stderr: bool = True, tail: int | str = "all") -> bytes:
        data = self._call("GET", f"/containers/{_q(container)}/logs",
                          params={"stdout": stdout, "stderr": stderr, "tail": tail})
        return b"".join(_frames_of(data))

    def containers(self, all: bool = False, filters: dict[str, Any] | None = None) -> list[dict[str, Any]]:  # noqa: A002
        return self._json("GET", "/containers/json", params={"all": all, "filters": _filters(filters)})

    # -- exec: a job's steps ------------------------------------------------------------------------

    def exec_create(self, container: str, cmd: list[str], stdout: bool = True, stderr: bool = True,
                    environment: dict[str, str] | None = None, workdir: str | None = None) -> dict[str, Any]:
        body = {"AttachStdin": False, "AttachStdout": stdout, "AttachStderr": stderr, "Tty": False, "Cmd": cmd,
                "Env": _env(environment), "Privileged": False, "User": ""}
        if workdir is not None:
            body["WorkingDir"] = workdir
        return self._json("POST", f"/containers/{_q(container)}/exec", body=body)

    def exec_start(self, exec_id: str, stream: bool = False) -> bytes | ExecStream:
        """The exec's output, stdout and stderr in the order the engine sent them: all of it once it
        ended, or (``stream``) an ``ExecStream`` of its chunks as they come."""
        conn, resp = self._open("POST", f"/exec/{_q(exec_id)}/start", body={"Detach": False, "Tty": False},
                                timeout=None if stream else "default")  # a step may be silent for long
        out = ExecStream(conn, resp)
        return out if stream else b"".join(out)

    def exec_inspect(self, exec_id: str) -> dict[str, Any]:
        return self._json("GET", f"/exec/{_q(exec_id)}/json")

    # -- files in and out of a container -------------------------------------------------------------

    def put_archive(self, container: str, path: str, data: bytes | BinaryIO) -> bool:
        self._call("PUT", f"/containers/{_q(container)}/archive", params={"path": path}, data=data,
                   headers={"Content-Type": "application/x-tar"})
        return True

    def get_archive(self, container: str, path: str, chunk_size: int = _BLOCK) -> tuple[Iterator[bytes], dict]:
        """A tar of ``path``, as chunks read while the caller iterates, and the path's stat."""
        conn, resp = self._open("GET", f"/containers/{_q(container)}/archive", params={"path": path})
        stat = _path_stat(resp.getheader("X-Docker-Container-Path-Stat"))

        def chunks() -> Iterator[bytes]:
            try:
                while chunk := resp.read(chunk_size):
                    yield chunk
            finally:
                conn.close()

        return chunks(), stat

    def archive_stat(self, container: str, path: str) -> dict[str, Any] | None:
        """The stat of ``path`` in the container (name, size, mode, linkTarget), None when absent."""
        conn, resp = self._open("HEAD", f"/containers/{_q(container)}/archive", params={"path": path},
                                missing_ok=True)
        resp.read()  # nothing: a HEAD's answer has no body, and reading it ends it
        self._give(conn, resp)
        return None if resp.status == 404 else _path_stat(resp.getheader("X-Docker-Container-Path-Stat"))

    # -- volumes and networks -----------------------------------------------------------------------

    def create_volume(self, name: str, labels: dict[str, str] | None = None) -> dict[str, Any]:
        return self._json("POST", "/volumes/create", body={"Name": name, "Labels": labels or {}})

    def remove_volume(self, name: str, force: bool = False) -> None:
        self._call("DELETE", f"/volumes/{_q(name)}", params={"force": force})

    def volumes(self, filters: dict[str, Any] | None = None) -> dict[str, Any]:
        return self._json("GET", "/volumes", params={"filters": _filters(filters)})

    def networks(self, filters: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        return self._json("GET", "/networks", params={"filters": _filters(filters)})

    def inspect_network(self, network: str) -> dict[str, Any]:
        return self._json("GET", f"/networks/{_q(network)}")

    def create_network(self, name: str, driver: str | None = None, labels: dict[str, str] | None = None,
                       check_duplicate: bool | None = None) -> dict[str, Any]:
        body = {"Name": name, "Driver": driver, "Labels": labels or {}, "CheckDuplicate": check_duplicate}
        return self._json("POST", "/networks/create", body={k: v for k, v in body.items() if v is not None})

    def remove_network(self, network: str) -> None:
        self._call("DELETE", f"/networks/{_q(network)}")

    # -- HTTP -------------------------------------------------------------------------------------------

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        data = self._call(method, path, **kwargs)
        return json.loads(data) if data else None

    def _call(self, method: str, path: str, **kwargs: Any) -> bytes:
        conn, resp = self._open(method, path, **kwargs)
        data = self._read_all(conn, resp, method, path)
        self._give(conn, resp)
        return data

    def _read_all(self, conn: http.client.HTTPConnection, resp: http.client.HTTPResponse, method: str,
                  path: str) -> bytes:
        try:
            return resp.read()
        except (OSError, http.client.HTTPException) as exc:  # a timeout (`wait`), or the engine went away
            conn.close()
            raise DockerException(f"the Docker engine at {self.url} stopped answering {method} {path} ({exc})") from None

    def _open(self, method: str, path: str, *, params: dict[str, Any] | None = None, body: Any = None,
              data: bytes | BinaryIO | None = None, headers: dict[str, str] | None = None,
              timeout: float | None | str = "default", versioned: bool = True,
              missing_ok: bool = False) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
        """Send the request and read the answer's head; an error status raises (a 404 too unless
        ``missing_ok``). ``timeout``: seconds for each wait on the engine (default: the client's);
        None: the client's for the head, no limit once the answer has begun (a step's output)."""
        url = (self._version_prefix() if versioned else "") + path + _query(params)
        headers = dict(headers or {})
        if body is not None:
            data, headers["Content-Type"] = json.dumps(body).encode(), "application/json"
        if data is not None and not isinstance(data, bytes):
            headers["Content-Length"] = str(os.fstat(data.fileno()).st_size - data.tell())
        conn = self._take()
        if timeout not in ("default", None):
            conn.timeout = timeout
            if conn.sock is not None:
                conn.sock.settimeout(timeout)
        try:
            conn.request(method, url, body=data, headers=headers)
            sock = conn.sock  # http.client lets go of it when the answer runs to the connection's end
            resp = conn.getresponse()
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            raise DockerException(f"the Docker engine at {self.url} did not answer {method} {path} ({exc})") from None
        if resp.status >= 400 and not (missing_ok and resp.status == 404):
            text = self._read_all(conn, resp, method, path).decode(errors="replace")
            self._give(conn, resp)
            raise api_error(resp.status, resp.reason, _explanation(text), f"{method} {path}")
        if timeout is None:  # a stream (a step's output): no limit once it has begun
            sock.settimeout(None)
            conn.sock = sock  # kept, for the stream's ``close`` to wake its reader
        return conn, resp

    def _version_prefix(self) -> str:
        if self._prefix is None:  # docker-py's version="auto": the engine's own API version
            version = self.version().get("ApiVersion")
            if not version:
                raise DockerException(f"the Docker engine at {self.url} did not say its API version")
            self._prefix = f"/v{version}"
        return self._prefix

    def _take(self) -> http.client.HTTPConnection:
        while True:
            with self._lock:
                conn = self._idle.pop() if self._idle else None
            if conn is None:
                return self._connect(self.timeout)
            if not _dropped(conn):
                conn.timeout = self.timeout
                conn.sock.settimeout(self.timeout)
                return conn
            conn.close()

    def _give(self, conn: http.client.HTTPConnection, resp: http.client.HTTPResponse) -> None:
        """Keep the connection for the next call, unless the answer ends it (or enough are kept)."""
        with self._lock:
            if not resp.will_close and resp.isclosed() and len(self._idle) < self._pool_size:
                self._idle.append(conn)
                return
        conn.close()


class ExecStream:
    """The output of a running exec or an attached container: the engine's multiplexed frames (an
    8-byte header, then the payload), iterated as payloads; ``send`` writes to an attached
    container's stdin; ``close`` (from any thread) ends the iteration at once."""

    def __init__(self, conn: http.client.HTTPConnection, resp: http.client.HTTPResponse) -> None:
        self._conn, self._resp = conn, resp

    def __iter__(self) -> Iterator[bytes]:
        try:
            while len(header := _read(self._resp, 8)) == 8:
                payload = _read(self._resp, int.from_bytes(header[4:], "big"))
                if payload:
                    yield payload
        finally:
            self._resp.close()
            self._conn.close()

    def send(self, data: bytes) -> None:
        sock = self._conn.sock
        if sock is None:
            raise OSError("the stream is closed")
        sock.sendall(data)

    def close(self) -> None:
        sock = self._conn.sock
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)  # wakes the reader blocked in recv
            except OSError:
                pass


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout, blocksize=_BLOCK)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self._path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


def _connector(url: str, tls: ssl.SSLContext | None) -> Callable[[float], http.client.HTTPConnection]:
    parts = urlsplit(url)
    if parts.scheme == "unix":
        path = parts.path or parts.netloc
        return lambda timeout: _UnixConnection(path, timeout)
    if parts.scheme in ("tcp", "http", "https") and parts.hostname:
        tls = tls or (ssl.create_default_context() if parts.scheme == "https" else None)
        host, port = parts.hostname, parts.port or (2376 if tls else 2375)
        if tls is not None:
            return lambda timeout: http.client.HTTPSConnection(host, port, timeout=timeout, context=tls,
                                                               blocksize=_BLOCK)
        return lambda timeout: http.client.HTTPConnection(host, port, timeout=timeout, blocksize=_BLOCK)
    raise DockerException(f"cannot reach a Docker engine at {url!r}: give unix:///path/to/docker.sock "
                          "or tcp://host:port (with TLS: the target's tls files, or DOCKER_TLS_VERIFY and "
                          "DOCKER_CERT_PATH)")


def _dropped(conn: http.client.HTTPConnection) -> bool:
    """Whether an idle kept-alive connection was closed by the engine meanwhile (readable at rest)."""
    if conn.sock is None:
        return True
    try:  # poll, not select: a server's descriptors may be numbered past select's 1024
        poller = select.poll()
        poller.register(conn.sock, select.POLLIN)
        return bool(poller.poll(0))
    except (OSError, ValueError):
        return True


def _read(resp: http.client.HTTPResponse, n: int) -> bytes:
    """Exactly ``n`` bytes of ``resp`` (fewer only at its end)."""
    data = resp.read(n)
    while 0 < len(data) < n:
        more = resp.read(n - len(data))
        if not more:
            break
        data += more
    return data


def _frames_of(data: bytes) -> Iterator[bytes]:
    at = 0
    while len(data) - at >= 8:
        size = int.from_bytes(data[at + 4:at + 8], "big")
        yield data[at + 8:at + 8 + size]
        at += 8 + size


def _q(name: str) -> str:
    return quote(name, safe="/:@")


def _query(params: dict[str, Any] | None) -> str:
    if not params:
        return ""
    pairs = {k: ("1" if v else "0") if isinstance(v, bool) else v for k, v in params.items() if v is not None}
    return "?" + urlencode(pairs) if pairs else ""


def _filters(filters: dict[str, Any] | None) -> str | None:
    """docker-py's ``convert_filters``: every value a list of strings, as JSON."""
    if not filters:
        return None
    out = {}
    for key, value in filters.items():
        if isinstance(value, bool):
            value = "true" if value else "false"
        out[key] = [str(v) for v in (value if isinstance(value, list) else [value])]
    return json.dumps(out)


def _env(environment: dict[str, str] | None) -> list[str] | None:
    return None if environment is None else [f"{k}={v}" for k, v in environment.items()]


def _explanation(text: str) -> str:
    try:
        return json.loads(text)["message"]
    except (ValueError, KeyError, TypeError):
        return text.strip()


def _path_stat(header: str | None) -> dict[str, Any]:
    return json.loads(base64.b64decode(header)) if header else {}
