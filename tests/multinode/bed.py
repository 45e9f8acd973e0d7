"""A throw-away N-node Docker Swarm on one Linux host, for the multi-node tests and benchmark.

Each node is an extra ``dockerd`` (its own data root, exec root, socket and containerd) started
in its own network namespace (``nsenter --net``: ``ip netns exec`` would remount /sys and hide the
cgroup v1 hierarchy dockerd needs) and its own UTS namespace (a distinct hostname, so ``docker node
ls`` tells the nodes apart). The nodes' veths hang off a bridge in a "switch" namespace; one veth
gives the host an address on that segment (``<net>.1``), so host-side tests reach ports published
on each node at ``<net>.11``, ``<net>.12``, ... Nothing is added to the host's firewall, the
segment has no default route, and the host's own engine is only read (``docker save``).

No IPVS is assumed: services publish ports in host mode (or use ``endpoint_mode: dnsrr``).

    python3 tests/multinode/bed.py up|down|env

``down`` is idempotent and also clears what a crashed earlier run left (processes found by their
private paths and cgroup parent, mounts, cgroups, namespaces, the uplink); ``up`` runs it first.
A lock file keeps two beds (two worktrees, two test sessions) from sharing the names and addresses.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from bed_host import BedError, ip, kill_engine, kill_matching, mounts_under, netns_list, rmdir

IMAGES = ("conveyor-test/busybox:1",)
LOCK = Path("/tmp/conveyor-bed.lock")


@dataclass(frozen=True)
class Node:
    index: int
    ip: str
    dir: Path
    prefix: str

    @property
    def name(self) -> str:  # hostname, netns name suffix, and the value of the node label `bed`
        return f"n{self.index}"

    @property
    def hostname(self) -> str:
        return f"{self.prefix}n{self.index}"

    @property
    def netns(self) -> str:
        return f"{self.prefix}n{self.index}"

    @property
    def docker_host(self) -> str:
        return f"unix://{self.dir}/docker.sock"

    @property
    def cgroup(self) -> str:  # --cgroup-parent: where this node's containers live, found again by `down`
        return f"{self.prefix}bed-n{self.index}"


@dataclass
class Bed:
    nodes_count: int = 3
    root: Path = Path("/tmp/conveyor-bed")
    prefix: str = "cvb"
    net: str = "10.250.0"
    addr_pool: str = "10.251.0.0/16"
    images: tuple[str, ...] = IMAGES
    source_docker_host: str = "unix:///var/run/docker.sock"
    timings: dict[str, float] = field(default_factory=dict)
    _lock_fd: int | None = None
    _procs: dict[int, subprocess.Popen] = field(default_factory=dict)  # launchers, reaped by _kill_node

    @property
    def nodes(self) -> list[Node]:
        return [Node(i, f"{self.net}.{10 + i}", self.root / f"n{i}", self.prefix)
                for i in range(1, self.nodes_count + 1)]

    @property
    def manager(self) -> Node:
        return self.nodes[0]

    @property
    def uplink(self) -> str:
        return f"{self.prefix}h0"

    @property
    def switch(self) -> str:
        return f"{self.prefix}sw"

    # ---- up

    def up(self) -> None:
        t0 = time.monotonic()
        self._take_lock()
        self.down()  # whatever a crashed earlier run left
        self.root.mkdir(parents=True)
        self._timed("network", self._network)
        self._timed("dockerds", lambda: self._parallel(self._start_dockerd, self.nodes))
        self._timed("swarm", self._swarm)
        self._timed("images", self._images)
        self.timings["up"] = time.monotonic() - t0
        (self.root / "bed.json").write_text(json.dumps(self.env()))

    def _network(self) -> None:
        sw = self.switch
        ip("netns", "add", sw)
        ip("-n", sw, "link", "set", "lo", "up")
        ip("-n", sw, "link", "add", "br0", "type", "bridge")
        ip("-n", sw, "link", "set", "br0", "up")
        ip("link", "add", self.uplink, "type", "veth", "peer", "name", "up0", "netns", sw)
        ip("addr", "add", f"{self.net}.1/24", "dev", self.uplink)
        ip("link", "set", self.uplink, "up")
        ip("-n", sw, "link", "set", "up0", "master", "br0", "up")
        for node in self.nodes:
            ip("netns", "add", node.netns)
            ip("-n", node.netns, "link", "set", "lo", "up")
            ip("-n", sw, "link", "add", node.name, "type", "veth", "peer", "name", "eth0", "netns", node.netns)
            ip("-n", sw, "link", "set", node.name, "master", "br0", "up")
            ip("-n", node.netns, "addr", "add", f"{node.ip}/24", "dev", "eth0")
            ip("-n", node.netns, "link", "set", "eth0", "up")
            # No default route on purpose: nothing a test starts can leave the private segment.

    def _start_dockerd(self, node: Node) -> None:
        node.dir.mkdir(parents=True, exist_ok=True)
        for driver in ("overlay2", "fuse-overlayfs", "vfs"):  # the first the host's filesystem allows
            if self._launch_dockerd(node, driver):
                return
            kill_matching(f"{node.dir}/")
            shutil.rmtree(node.dir / "data", ignore_errors=True)
            shutil.rmtree(node.dir / "exec", ignore_errors=True)
        raise BedError(f"{node.name}: dockerd did not start with any storage driver; see {node.dir}/dockerd.log")

    def _launch_dockerd(self, node: Node, driver: str) -> bool:
        config = {
            "data-root": f"{node.dir}/data", "exec-root": f"{node.dir}/exec",
            "pidfile": f"{node.dir}/docker.pid", "hosts": [node.docker_host],
            "storage-driver": driver, "cgroup-parent": f"/{node.cgroup}",
            "labels": [f"bed.node={node.name}"],
            "log-driver": "json-file", "log-opts": {"max-size": "5m", "max-file": "1"},
        }
        (node.dir / "daemon.json").write_text(json.dumps(config))
        log = open(node.dir / "dockerd.log", "ab")  # noqa: SIM115 - handed to the child
        # DOCKER_SERVICE_PREFER_OFFLINE_IMAGE: tasks use the loaded image; no registry is reachable.
        env = {**os.environ, "DOCKER_SERVICE_PREFER_OFFLINE_IMAGE": "1"}
        proc = subprocess.Popen(
            ["nsenter", f"--net=/run/netns/{node.netns}", "unshare", "--uts", "sh", "-c",
             f"hostname {node.hostname}; exec dockerd --config-file {node.dir}/daemon.json"],
            stdout=log, stderr=log, stdin=subprocess.DEVNULL, env=env, start_new_session=True)
        log.close()
        self._procs[node.index] = proc
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and proc.poll() is None:
            if self.docker(node, "version", "--format", "{{.Server.Version}}", check=False).returncode == 0:
                (node.dir / "driver").write_text(driver)
                return True
            time.sleep(0.2)
        proc.kill()
        proc.wait()
        return False

    def _swarm(self) -> None:
        m = self.manager
        self.docker(m, "swarm", "init", "--advertise-addr", m.ip, "--listen-addr", f"{m.ip}:2377",
                    "--default-addr-pool", self.addr_pool, "--default-addr-pool-mask-length", "24",
                    "--task-history-limit", "2", "--dispatcher-heartbeat", "2s")
        token = self.docker(m, "swarm", "join-token", "-q", "worker").stdout.strip()
        for node in self.nodes[1:]:
            self.docker(node, "swarm", "join", "--token", token, "--advertise-addr", node.ip,
                        "--listen-addr", f"{node.ip}:2377", f"{m.ip}:2377")
        deadline = time.monotonic() + 30
        while True:
            states = self.docker(m, "node", "ls", "--format", "{{.Hostname}} {{.Status}}").stdout.split("\n")
            ready = [s.split()[0] for s in states if s.endswith(" Ready")]
            if len(ready) == self.nodes_count:
                break
            if time.monotonic() > deadline:
                raise BedError(f"only {ready} of {self.nodes_count} nodes are Ready after 30 s")
            time.sleep(0.3)
        # Node label bed=n1..nN: what tests pin to (node.labels.bed) and spread over.
        for node in self.nodes:
            self.docker(m, "node", "update", "--label-add", f"bed={node.name}", node.hostname)

    def _images(self) -> None:
        tar = self.root / "images.tar"
        subprocess.run(["docker", "save", "-o", str(tar), *self.images], check=True, capture_output=True,
                       env={**os.environ, "DOCKER_HOST": self.source_docker_host})
        self._parallel(lambda n: self.docker(n, "load", "-q", "-i", str(tar)), self.nodes)
        tar.unlink()

    # ---- use

    def env(self) -> dict[str, str]:
        """DOCKER_HOST of the manager, and each node's socket and address."""
        out = {"DOCKER_HOST": self.manager.docker_host}
        for n in self.nodes:
            out[f"BED_{n.name.upper()}_HOST"] = n.docker_host
            out[f"BED_{n.name.upper()}_IP"] = n.ip
        return out

    def docker(self, node: Node, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        """The docker CLI against one node's engine."""
        proc = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=120,
                              env={**os.environ, "DOCKER_HOST": node.docker_host})
        if check and proc.returncode != 0:
            raise BedError(f"{node.name}: docker {' '.join(args)} failed: {proc.stderr.strip()}")
        return proc

    def fail_node(self, node: Node) -> None:
        """A node's engine dies (power loss): SIGKILL its dockerd, containerd, shims and containers.
        Its address stays, so requests to it are refused, as with a dead host behind a live switch."""
        self._kill_node(node, grace=0)

    def restart_node(self, node: Node) -> None:
        """Start a failed node's engine again on its kept data: it rejoins the swarm by itself."""
        if not self._launch_dockerd(node, (node.dir / "driver").read_text()):
            raise BedError(f"{node.name}: dockerd did not start again; see {node.dir}/dockerd.log")

    # ---- down

    def down(self) -> None:
        """Stop every node and remove everything ``up`` made; safe to call at any point, twice, or
        after a crash of an earlier run (it finds leftovers by their names and paths)."""
        t0 = time.monotonic()
        dirs = sorted(self.root.glob("n*")) if self.root.is_dir() else []
        nodes = [Node(int(d.name[1:]), "", d, self.prefix) for d in dirs if d.name[1:].isdigit()]
        self._parallel(lambda n: self._kill_node(n, grace=3.0), nodes)
        for mount in sorted(mounts_under(f"{self.root}/"), reverse=True):  # deepest first
            subprocess.run(["umount", "-l", mount], capture_output=True)
        for cg in Path("/sys/fs/cgroup").glob(f"*/{self.prefix}bed-n*"):
            for d in sorted((p for p in cg.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
                rmdir(d)
            rmdir(cg)
        for ns in netns_list():
            if ns == self.switch or (ns.startswith(f"{self.prefix}n") and ns[len(self.prefix) + 1:].isdigit()):
                ip("netns", "del", ns)  # deleting a namespace deletes the veths in it
        subprocess.run(["ip", "link", "del", self.uplink], capture_output=True)
        if self.root.exists():
            shutil.rmtree(self.root, ignore_errors=True)
        self.timings["down"] = time.monotonic() - t0

    @property
    def holds_lock(self) -> bool:
        return self._lock_fd is not None

    def release(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def _kill_node(self, node: Node, grace: float) -> None:
        launcher = self._procs.pop(node.index, None)
        kill_engine(node.dir, node.cgroup, grace)
        if launcher is not None:  # reap it
            launcher.kill()
            launcher.wait()

    # ---- helpers

    def _take_lock(self) -> None:
        if self._lock_fd is None:
            self._lock_fd = os.open(LOCK, os.O_RDWR | os.O_CREAT, 0o644)
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX)  # waits while another session's bed is up

    def _timed(self, name: str, fn) -> None:
        t0 = time.monotonic()
        fn()
        self.timings[name] = time.monotonic() - t0

    @staticmethod
    def _parallel(fn, items) -> None:
        items = list(items)
        if items:
            with ThreadPoolExecutor(len(items)) as pool:
                list(pool.map(fn, items))


def main(argv: list[str]) -> int:
    bed = Bed()
    cmd = argv[1] if len(argv) > 1 else ""
    if cmd == "up":
        try:
            bed.up()
        except BaseException:
            bed.down()
            raise
        for k, v in bed.env().items():
            print(f"export {k}={v}")
        print("timings: " + ", ".join(f"{k} {v:.1f}s" for k, v in bed.timings.items()), file=sys.stderr)
    elif cmd == "down":
        bed._take_lock()
        bed.down()
        print(f"down in {bed.timings['down']:.1f}s", file=sys.stderr)
    elif cmd == "env":
        path = bed.root / "bed.json"
        if not path.is_file():
            print("no bed is up; run `python3 tests/multinode/bed.py up`", file=sys.stderr)
            return 1
        for k, v in json.loads(path.read_text()).items():
            print(f"export {k}={v}")
    else:
        print("usage: bed.py up|down|env", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
