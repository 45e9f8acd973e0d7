"""Helpers of the multi-node tests: a pipeline that deploys to the bed, a build run, a probe."""

from __future__ import annotations

import asyncio
import http.client
import subprocess
import threading
import time
import urllib.error
import urllib.request

from runner.backends.docker import DockerBackend
from runner.build import BuildRequest, create_build, run_build

GIT = ["-c", "user.name=Test", "-c", "user.email=test@example.invalid"]

# A busybox httpd answering "<version> <node hostname>" at / and "ok" at /health (none when the
# version is "broken"). NODE comes from a Swarm template, so a response says which node served it.
# The shell stays PID 1 and leaves on SIGTERM at once (a bare PID 1 would wait out the grace period).
PIPELINE = """\
name: spread
image: conveyor-test/busybox:1
stages:
  - name: ship
    deploy:
      target: bed
      service: {service}
      image: conveyor-test/busybox:1
      replicas: 3
      env: {{VERSION: "{version}", NODE: "{{% raw %}}{{{{.Node.Hostname}}}}{{% endraw %}}"}}
      command: ["sh", "-c", "mkdir -p /w && echo \\\"$VERSION $NODE\\\" > /w/index.html && {health}trap 'exit 0' TERM; httpd -f -p 8080 -h /w & wait"]
      ports: ["{port}:8080"]
      placement:
        preferences: [{{spread: node.labels.bed}}]
        max_replicas_per_node: 1
      healthcheck: {{cmd: "wget -q -O- http://127.0.0.1:8080/health", interval: 1s, timeout: 1s, retries: 2}}
      update: {{order: stop-first, parallelism: 1, delay: 2s}}
      rollback: {{order: stop-first, parallelism: 1}}
      timeout: {timeout}s
"""


def pipeline(service: str, port: int, version: str, timeout: int = 90) -> str:
    health = "" if version == "broken" else "echo ok > /w/health && "
    return PIPELINE.format(service=service, port=port, version=version, health=health, timeout=timeout)


def commit(repo, text: str, message: str) -> str:
    """Write the pipeline into ``repo`` (created when new), commit it, and return the commit."""
    repo.mkdir(parents=True, exist_ok=True)
    if not (repo / ".git").exists():
        subprocess.run(["git", "-C", str(repo), "init", "-q", "-b", "main"], check=True)
    (repo / ".conveyor.yml").write_text(text)
    subprocess.run(["git", "-C", str(repo), *GIT, "add", "-A"], check=True)
    subprocess.run(["git", "-C", str(repo), *GIT, "commit", "-q", "-m", message], check=True)
    return subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], check=True, capture_output=True,
                          text=True).stdout.strip()


async def run(store, settings, repo, sha: str, instance: str) -> str:
    """One build of ``repo`` at ``sha`` through Conveyor's own code path; its final status."""
    request = BuildRequest(repo="spread", event="manual", branch="main", sha=sha)
    build_id = await asyncio.to_thread(create_build, store, request, instance)
    return await run_build(store, settings, build_id, repo, backend=DockerBackend(settings))


def get(url: str, timeout: float = 1.0) -> str | None:
    """The body of a 200 answer, or None (refused, timed out, cut short, another status). A task
    stopped by a rolling update may close a connection it has already answered the headers of:
    that is an IncompleteRead (an HTTPException, not an OSError), no answer from this node."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.read().decode().strip() if resp.status == 200 else None
    except (OSError, urllib.error.URLError, http.client.HTTPException):
        return None


def wait_all(urls: list[str], want: str, within: float = 60.0) -> list[str | None]:
    """Poll until every url answers a body starting with ``want``; the last bodies seen."""
    deadline = time.monotonic() + within
    while True:
        bodies = [get(u) for u in urls]
        if all(b and b.split()[0] == want for b in bodies) or time.monotonic() > deadline:
            return bodies
        time.sleep(0.3)


class SpreadProbe:
    """A client of the service as users of a multi-node deploy reach it: it knows every node's
    address and, like a DNS round-robin client or a load balancer, moves to the next node when
    one refuses. Every 50 ms one request, starting at the next node each time. A request *fails*
    when no node answers; a node refusing while another answers is counted per node (with
    host-mode ports and stop-first, a node's port is closed while its task is replaced)."""

    def __init__(self, urls: list[str]) -> None:
        self.urls = urls
        self.ok = self.failed = 0
        self.refused = {u: 0 for u in urls}
        self.served: dict[str, set[str]] = {u: set() for u in urls}  # bodies each node answered
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._started = time.monotonic()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        i = 0
        while not self._stop.is_set():
            order = self.urls[i % len(self.urls):] + self.urls[:i % len(self.urls)]
            i += 1
            for url in order:
                body = get(url)
                if body is not None:
                    self.ok += 1
                    self.served[url].add(body)
                    break
                self.refused[url] += 1
            else:
                self.failed += 1
                self.failures.append(f"{time.monotonic() - self._started:.2f}s")
            time.sleep(0.05)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def summary(self) -> str:
        return (f"{self.ok} ok, {self.failed} failed {self.failures[:5]}; refused per node {self.refused}; "
                f"served {self.served}")
