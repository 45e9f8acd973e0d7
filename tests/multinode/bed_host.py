"""Host-level primitives of the test bed (tests/multinode/bed.py): iproute2, processes, mounts.

Everything here acts only on what its caller names (a namespace, a directory, a pid), so the bed's
teardown can find its own leftovers without touching anything else on the host.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path


class BedError(RuntimeError):
    """The bed could not be brought up; the message says what failed and where its log is."""


def ip(*args: str) -> None:
    proc = subprocess.run(["ip", *args], capture_output=True, text=True)
    if proc.returncode != 0:
        raise BedError(f"ip {' '.join(args)} failed: {proc.stderr.strip()} (the bed needs root and iproute2)")


def netns_list() -> list[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def mounts_under(prefix: str) -> list[str]:
    with open("/proc/mounts") as f:
        return [m for m in (line.split()[1] for line in f) if m.startswith(prefix)]


def kill_matching(needle: str) -> None:
    """SIGKILL processes whose command line names ``needle`` (a node's private directory)."""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            args = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if needle in args:
            send_signal(int(proc.name), signal.SIGKILL)


def send_signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    try:
        return stat.read_text().split(") ")[1][0] != "Z"
    except (OSError, IndexError):
        return False


def read_int(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def rmdir(path: Path) -> None:
    try:
        path.rmdir()
    except OSError:
        pass


def kill_engine(node_dir: Path, cgroup: str, grace: float) -> None:
    """Stop one node's engine: its dockerd (SIGTERM, SIGKILL after ``grace`` s; 0: at once), then
    SIGKILL its containerd and shims (their command lines name ``node_dir``) and its containers
    (orphaned by a killed dockerd; they live under the node's cgroup parent)."""
    pid = read_int(node_dir / "docker.pid")
    if pid and alive(pid):
        os.kill(pid, signal.SIGTERM if grace else signal.SIGKILL)
        deadline = time.monotonic() + grace
        while alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if alive(pid):
            os.kill(pid, signal.SIGKILL)
    kill_matching(f"{node_dir}/")
    for procs in Path("/sys/fs/cgroup").glob(f"pids/{cgroup}/**/cgroup.procs"):
        for p in procs.read_text().split():
            send_signal(int(p), signal.SIGKILL)
