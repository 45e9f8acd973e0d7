"""Helpers of the deploy tests (plain functions; the fixtures are in conftest.py)."""

from __future__ import annotations

import socket
import time
import urllib.error
import urllib.request

import docker

from runner.plan import DeploySpec, Healthcheck, Port, UpdateConfig

BUSYBOX = "conveyor-test/busybox:1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(url: str, timeout: float = 2.0) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, ""


def web_spec(name: str, version: str, port: int | None = None, health: str = "/health", **kw) -> DeploySpec:
    """A busybox httpd that serves `version` at / and `ok` at /health, with a fast health check."""
    # The shell stays PID 1 and exits on SIGTERM (a bare PID 1 ignores it, and every stop would
    # wait out the 10 s grace period).
    script = (f"mkdir -p /w && echo {version} > /w/index.html && echo ok > /w/health && "
              "trap 'exit 0' TERM; httpd -f -p 8080 -h /w & wait")
    defaults = dict(
        service=name, image=BUSYBOX, replicas=1, command=("sh", "-c", script),
        ports=(Port(port, 8080),) if port else (),
        healthcheck=Healthcheck(f"wget -q -O- http://127.0.0.1:8080{health}", interval=0.5, timeout=1.0, retries=2),
        update=UpdateConfig(order="stop-first" if port else "start-first", monitor=3.0),
        rollback=UpdateConfig(order="stop-first" if port else "start-first", monitor=1.0, failure_action="pause"),
        timeout=60.0,
    )
    defaults.update(kw)
    return DeploySpec(**defaults)


def wait_http(url: str, want: str, within: float = 20.0) -> str:
    deadline = time.time() + within
    body = ""
    while time.time() < deadline:
        try:
            status, body = http_get(url)
            if status == 200 and body.strip() == want:
                return body.strip()
        except OSError:
            pass
        time.sleep(0.3)
    return body.strip()


def remove_instance(client, instance: str) -> None:
    """Remove the services, containers and networks labelled with this test's instance, waiting for
    Swarm to take the services' task containers away (a network stays in use until then)."""
    label = f"io.conveyor.instance={instance}"
    names = []
    for svc in client.services.list(filters={"label": label}):
        names.append(svc.name)
        svc.remove()
    deadline = time.time() + 30
    # sparse=True: a plain list inspects each container, and Swarm removes task containers under us.
    for name in names:
        while client.containers.list(all=True, sparse=True,
                                     filters={"label": f"com.docker.swarm.service.name={name}"}):
            if time.time() > deadline:
                break
            time.sleep(0.3)
    for c in client.containers.list(all=True, sparse=True, filters={"label": label}):
        try:
            c.remove(force=True)
        except docker.errors.NotFound:
            pass
    for net in client.networks.list(filters={"label": label}):
        while True:
            try:
                net.remove()
                break
            except Exception:  # noqa: BLE001 - still in use for a moment
                if time.time() > deadline:
                    break
                time.sleep(0.5)


class Probe:
    """Watches a deployed service from a thread: an HTTP GET every 50 ms (counted from the first
    answer on), and the service's tasks every 250 ms. ``stop()`` ends both."""

    def __init__(self, client, service: str, url: str) -> None:
        import threading

        self.client, self.service, self.url = client, service, url
        self.ok = self.failed = 0
        self.failures: list[str] = []
        self.first_ok: float | None = None
        self.running_counts: list[int] = []  # tasks running at each sample, from the first one running on
        self.task_ids: set[str] = set()  # every task the service ever had while watched
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._http, daemon=True),
                         threading.Thread(target=self._tasks, daemon=True)]
        for t in self._threads:
            t.start()

    def _http(self) -> None:
        while not self._stop.is_set():
            try:
                status, _ = http_get(self.url, timeout=1.0)
                good, why = status == 200, f"HTTP {status}"
            except OSError as exc:
                good, why = False, f"{exc.__class__.__name__}: {exc}"
            if good and self.first_ok is None:
                self.first_ok = time.monotonic()
            if self.first_ok is not None:
                if good:
                    self.ok += 1
                else:
                    self.failed += 1
                    self.failures.append(f"{time.monotonic() - self.first_ok:.2f}s {why}")
            time.sleep(0.05)

    def _tasks(self) -> None:
        while not self._stop.is_set():
            if self.first_ok is not None:
                try:
                    tasks = self.client.api.tasks(filters={"service": self.service})
                except docker.errors.APIError:
                    tasks = []
                self.task_ids |= {t["ID"] for t in tasks}
                running = sum(1 for t in tasks if t["Status"]["State"] == "running")
                if running or self.running_counts:  # from the task's first `running` on (health passed)
                    self.running_counts.append(running)
            time.sleep(0.25)

    def wait_first_answer(self, within: float = 120.0, alive=lambda: True) -> None:
        deadline = time.monotonic() + within
        while self.first_ok is None and time.monotonic() < deadline and alive():
            time.sleep(0.1)

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=5)

    def summary(self) -> str:
        return (f"{self.ok} ok, {self.failed} failed {self.failures[:5]}; running tasks seen "
                f"{sorted(set(self.running_counts))}; tasks {len(self.task_ids)}")
