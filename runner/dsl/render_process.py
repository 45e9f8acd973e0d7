"""The runner's side of the render child: start it warm once, then hand it one request per render.

``_render_child.py`` explains the child. Here: it is started on the first render of a process (so a
command that renders nothing never pays for it), restarted when it has died or when this process is
a fork of the one that started it, and shared by threads. Each render gets fresh descriptors: the
request travels in an anonymous memory file, the answer and errors in pipes read here, and the
status pipe says the fork's exit code or that the child's wall limit stopped it.
"""

from __future__ import annotations

import json
import os
import selectors
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Outcome", "prestart", "run"]

_CHILD = Path(__file__).with_name("_render_child.py")
_GRACE = 2.0  # beyond the wall limit, how long to wait for the child's own verdict


@dataclass(frozen=True)
class Outcome:
    code: int | None  # the fork's exit code (negative: killed by that signal); None when unknown
    out: bytes
    err: bytes
    timed_out: bool = False


class _Child:
    """The warm child process and our end of its control socket."""

    def __init__(self) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-I", "-S", str(_CHILD), json.dumps(_jinja_paths())],
                stdin=theirs, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd="/", env={})
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        self.control = ours
        self.owner = os.getpid()

    def usable(self) -> bool:
        return self.owner == os.getpid() and self.proc.poll() is None

    def close(self) -> None:
        self.control.close()  # the child exits on end of file
        if self.owner == os.getpid():
            try:
                self.proc.wait(timeout=1)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


_lock = threading.Lock()
_child: _Child | None = None


def prestart() -> None:
    """Start the warm child now, without waiting for it to be ready (a command that knows it will
    render calls this early, so the child starts beside the command's own work)."""
    with _lock:
        _ensure_child()


def _ensure_child() -> _Child:
    global _child
    if _child is None or not _child.usable():
        if _child is not None and _child.owner == os.getpid():
            _child.close()
        _child = _Child()
    return _child


def _send(fds: list[int], wall_seconds: float) -> None:
    """Hand one request's descriptors to the warm child, starting it (again) when needed."""
    global _child
    message = f"render {wall_seconds:g}".encode()
    with _lock:
        for attempt in (1, 2):
            _ensure_child()
            try:
                socket.send_fds(_child.control, [message], fds)
                return
            except OSError:
                _child.close()  # it died between the check and the send; one fresh start
                _child = None
                if attempt == 2:
                    raise


# What a fork's answer may be, in bytes: the rendered text (at most template.MAX_OUTPUT characters)
# as JSON, each character escaped to at most 12 bytes, with room for the rest; and short errors.
_MOST = {"out": 12 * 1024 * 1024 + 65536, "err": 65536, "status": 4096}


def run(request: bytes, wall_seconds: float) -> Outcome:
    """Render ``request`` (the child's JSON) in a fresh fork of the warm child; raises ``OSError``
    only when no child can be started or forked (out of processes or memory)."""
    payload = os.memfd_create("conveyor-render", os.MFD_CLOEXEC)
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    st_r, st_w = os.pipe()
    try:
        _write_all(payload, request)
        os.lseek(payload, 0, os.SEEK_SET)
        _send([payload, out_w, err_w, st_w], wall_seconds)
    except BaseException:
        for fd in (out_r, err_r, st_r):
            os.close(fd)
        raise
    finally:
        for fd in (payload, out_w, err_w, st_w):
            os.close(fd)
    return _collect(out_r, err_r, st_r, time.monotonic() + wall_seconds + _GRACE)


def _collect(out_r: int, err_r: int, st_r: int, deadline: float) -> Outcome:
    """Read the answer, errors and status until all three close (the fork and its reaping are done).
    Each is read up to its cap (``_MOST``): a fork that writes more is not believed, and closing our
    ends stops it (its next write fails), without this process holding what it wrote."""
    chunks: dict[int, list[bytes]] = {out_r: [], err_r: [], st_r: []}
    most = {out_r: _MOST["out"], err_r: _MOST["err"], st_r: _MOST["status"]}
    with selectors.DefaultSelector() as selector:
        for fd in chunks:
            selector.register(fd, selectors.EVENT_READ)
        try:
            while selector.get_map():
                left = deadline - time.monotonic()
                if left <= 0:  # the child itself is stuck: give up on this render, not on the runner
                    return Outcome(None, b"", b"", timed_out=True)
                for key, _ in selector.select(left):
                    data = os.read(key.fd, 65536)
                    if data:
                        chunks[key.fd].append(data)
                        most[key.fd] -= len(data)
                        if most[key.fd] < 0:
                            return Outcome(None, b"", b"the renderer's answer was larger than its limit")
                    else:
                        selector.unregister(key.fd)
        finally:
            for fd in chunks:
                os.close(fd)
    status = b"".join(chunks[st_r]).decode().split("\n")
    code = next((int(s.split()[1]) for s in status if s.startswith("exit ")), None)
    return Outcome(code, b"".join(chunks[out_r]), b"".join(chunks[err_r]), timed_out="timeout" in status)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _jinja_paths() -> list[str]:
    """Where Jinja and MarkupSafe are installed, for the child's path; found without importing them
    here (Jinja's import is ~30 ms this process would pay for nothing: only the child renders)."""
    from importlib.util import find_spec

    paths = set()
    for name in ("jinja2", "markupsafe"):
        spec = find_spec(name)
        if spec is None or not spec.submodule_search_locations:
            raise OSError(f"{name} is not installed; reinstall Conveyor (pip install -e .)")
        paths.add(str(Path(spec.submodule_search_locations[0]).resolve().parent))
    return sorted(paths)
