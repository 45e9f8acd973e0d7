"""How Conveyor's cost grows with its work (issue 14). Prints each series with its floor; never fails.

1. Builds queued through the server, 1 .. 500: `POST /api/builds` N times to a real `conveyor serve`
   (local backend, one `true` step), wall per build until all finished, and the server's RSS after.
   Floor: the wall per build of a queue of 1.
2. Jobs per build, 1 .. 200: `run_build` with the fake backend (nothing runs, everything else does:
   render, plan, executor, store rows); overhead per job. Floor: per job at 1 job.
3. Log lines per step, 10^3 .. 10^6: `run_build` of one `seq 1 N` step on the local backend, in a
   child process (per-step log cap raised to 64 MiB so 10^6 lines are all kept); lines stored per
   second and the child's peak RSS. Floor: the same `seq` read by
   Python from a pipe, line by line.
4. Builds in the store, 10^3 .. 10^5 (copies of one real build's rows): `GET /` p50 through a real
   server, `conveyor builds` (whole command), database size per build. Floor: `GET /static/live.js`
   p50 and `python -c pass`.
5. Jobs per pipeline file, 50 .. 500 (the most a file may have), over 10 stages, the jobs of every
   other stage needing one of the stage before (the rest wait by stage order): lint + plan in-process
   (no template code), per job. Floor: per job at 50; peer: PyYAML's C loader on the same text.

Flat (or linear in the work itself, for 3) is the goal; a ratio that grows with N is a defect.

    python bench/bench_scale.py            # the full series (several minutes)
    python bench/bench_scale.py --quick    # short series, for a first look
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from runner.backends.fake import FakeBackend, FakeStep  # noqa: E402
from runner.build import BuildRequest, create_build, run_build  # noqa: E402
from runner.settings import Settings  # noqa: E402
from runner.store.db import Store  # noqa: E402

CHILD_ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}  # as installed: bytecode kept
TOKEN = "bench-admin-token-" + uuid.uuid4().hex


def git_repo(path: Path, pipeline: str) -> Path:
    path.mkdir(parents=True)
    (path / ".conveyor.yml").write_text(pipeline)
    git = ["git", "-C", str(path), "-c", "user.name=bench", "-c", "user.email=bench@example.invalid"]
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-q", "-m", "bench"]):
        subprocess.run([*git, *args], check=True)
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class Server:
    """A real `conveyor serve` on 127.0.0.1 with one local repository, local backend."""

    def __init__(self, tmp: Path, repo: Path, data: Path, concurrency: int = 2) -> None:
        self.port = free_port()
        config = tmp / f"server-{self.port}.yml"
        config.write_text(json.dumps({
            "port": self.port, "data_dir": str(data), "backend": "local", "concurrency": concurrency,
            "admin_token": TOKEN, "instance": "scale" + uuid.uuid4().hex[:6],
            "repos": [{"name": "app", "provider": "github", "path": str(repo)}],
        }))
        self.proc = subprocess.Popen([sys.executable, "-m", "runner", "serve", "--config", str(config)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=ROOT, env=CHILD_ENV)
        self.base = f"http://127.0.0.1:{self.port}"
        for _ in range(300):
            try:
                self.get("/api/builds?limit=1")
                return
            except OSError:
                if self.proc.poll() is not None:
                    raise SystemExit(f"the server did not start:\n{self.proc.stderr.read().decode()}")
                time.sleep(0.1)
        raise SystemExit("the server did not answer within 30 s")

    def get(self, path: str) -> bytes:
        return urllib.request.urlopen(self.base + path, timeout=30).read()

    def post(self, path: str, body: dict) -> dict:
        request = urllib.request.Request(self.base + path, data=json.dumps(body).encode(), method="POST", headers={
            "Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"})
        return json.loads(urllib.request.urlopen(request, timeout=30).read())

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def series_queue(tmp: Path, sizes: list[int]) -> None:
    print("1. builds queued through the server (local backend, one `true` step, 2 workers)")
    repo = git_repo(tmp / "queue-repo", "image: conveyor-test/busybox:1\nstages:\n  - name: s\n    steps: [\"true\"]\n")
    floor = None
    print("   first/last tenth: time per build over the first and the last tenth of the builds to finish, in")
    print("   the same run (a queue that slows as it grows or drains shows here, whatever the machine's noise)")
    print(f"   {'builds':>7} {'wall':>8} {'per build':>10} {'x floor':>8} {'server RSS':>11} {'first/last tenth':>17}")
    for n in sizes:
        data = tmp / f"queue-data-{n}"
        server = Server(tmp, repo, data)
        try:
            _queue_and_wait(server, 1)  # warm: the first build imports the executing side
            start = time.perf_counter()
            _queue_and_wait(server, n)
            wall = time.perf_counter() - start
            rss = rss_mb(server.proc.pid)
        finally:
            server.stop()
        per = wall / n
        floor = floor or per
        print(f"   {n:>7} {wall:7.2f}s {per * 1000:8.1f}ms {per / floor:7.2f}x {rss:9.1f}MB {_tenths(data, n):>17}")
    print()


def _tenths(data: Path, n: int) -> str:
    """Time per build over the first and the last tenth of the run's builds, by their finish times."""
    if n < 50:
        return "-"
    conn = sqlite3.connect(data / "conveyor.db")
    ends = [r[0] for r in conn.execute("SELECT finished FROM builds WHERE finished IS NOT NULL ORDER BY finished")]
    conn.close()
    ends, k = ends[1:], n // 10  # not the warm-up build
    first, last = (ends[k] - ends[0]) / k, (ends[-1] - ends[-1 - k]) / k
    return f"{first * 1000:.0f} / {last * 1000:.0f} ms"


def _queue_and_wait(server: Server, n: int) -> None:
    for _ in range(n):
        server.post("/api/builds", {"repo": "app", "branch": "main"})
    while any(json.loads(server.get(f"/api/builds?status={state}&limit=1"))["builds"]
              for state in ("queued", "running")):
        time.sleep(0.05)


def _pipeline_of_jobs(n: int) -> str:
    jobs = "".join(f"      - name: j{i}\n        steps: [\"echo {i}\"]\n" for i in range(n))
    return f"image: conveyor-test/busybox:1\nstages:\n  - name: s\n    jobs:\n{jobs}"


def series_jobs(tmp: Path, sizes: list[int]) -> None:
    print("2. jobs per build (fake backend: nothing runs; render, plan, executor and store rows do)")
    floor = None
    print(f"   {'jobs':>7} {'wall':>8} {'per job':>9} {'x floor':>8}")
    for n in sizes:
        repo = tmp / f"jobs-{n}"
        repo.mkdir()
        (repo / ".conveyor.yml").write_text(_pipeline_of_jobs(n))
        data = tmp / f"jobs-data-{n}"
        settings = Settings(data_dir=data, instance="scale", concurrency=n)
        with Store(data) as store:
            walls = []
            for _ in range(3):
                build_id = create_build(store, BuildRequest(repo="jobs", event="push", branch="main"), "scale")
                start = time.perf_counter()
                status = asyncio.run(run_build(store, settings, build_id, repo, backend=FakeBackend(script={})))
                walls.append(time.perf_counter() - start)
                assert status == "success", status
        wall = min(walls)
        per = wall / n
        floor = floor or per
        print(f"   {n:>7} {wall * 1000:6.1f}ms {per * 1000:7.2f}ms {per / floor:7.2f}x")
    print()


_LINES_CHILD = """
import asyncio, json, resource, sys, time
from pathlib import Path
from runner.backends import get_backend
from runner.build import BuildRequest, create_build, run_build
from runner.settings import Settings
from runner.store.db import Store
repo, data = Path(sys.argv[1]), Path(sys.argv[2])
settings = Settings(data_dir=data, instance="scale", log_cap=64 * 2**20)  # 10^6 lines fit under the cap
with Store(data) as store:
    def build(file):
        build_id = create_build(store, BuildRequest(repo="lines", event="push", branch="main", pipeline=file), "scale")
        start = time.perf_counter()
        status = asyncio.run(run_build(store, settings, build_id, repo, backend=get_backend("local", settings)))
        return build_id, status, time.perf_counter() - start
    build("one.yml")  # warm: the first build imports the executing side
    _, _, fixed = build("one.yml")  # what a build costs around its step's output
    build_id, status, wall = build(".conveyor.yml")
    stored = store.read().execute("SELECT SUM(lines) FROM log_chunks WHERE build_id = ?", (build_id,)).fetchone()[0]
print(json.dumps({"status": status, "wall": wall, "fixed": fixed, "lines": stored,
                  "rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""

_FLOOR_CHILD = """
import subprocess, sys, time
start = time.perf_counter()
proc = subprocess.Popen(["seq", "1", sys.argv[1]], stdout=subprocess.PIPE)
n = sum(1 for _ in proc.stdout)
proc.wait()
print(n / (time.perf_counter() - start))
"""


def series_lines(tmp: Path, sizes: list[int]) -> None:
    print("3. log lines per step (local backend, `seq 1 N`, whole build in a child process)")
    print("   lines/s counts the wall beyond a 1-line build's (the build's fixed cost, also printed)")
    print(f"   {'lines':>9} {'wall':>8} {'fixed':>7} {'lines/s':>10} {'floor/s':>11} {'x floor':>8} {'peak RSS':>9}")
    for n in sizes:
        repo = tmp / f"lines-{n}"
        repo.mkdir()
        for file, count in ((".conveyor.yml", n), ("one.yml", 1)):
            (repo / file).write_text(f"image: conveyor-test/busybox:1\nstages:\n  - name: s\n"
                                     f"    steps: [\"seq 1 {count}\"]\n")
        out = subprocess.run([sys.executable, "-c", _LINES_CHILD, str(repo), str(tmp / f"lines-data-{n}")],
                             capture_output=True, text=True, cwd=ROOT, env=CHILD_ENV, check=True)
        got = json.loads(out.stdout)
        assert got["status"] == "success" and got["lines"] == n, got
        floor = float(subprocess.run([sys.executable, "-c", _FLOOR_CHILD, str(n)], capture_output=True, text=True,
                                     check=True).stdout)
        beyond = got["wall"] - got["fixed"]
        if beyond < 0.2 * got["wall"]:  # the output is lost in the build's fixed cost: no honest rate
            rates = f"{'-':>10} {floor:11,.0f} {'-':>8}"
        else:
            rates = f"{n / beyond:10,.0f} {floor:11,.0f} {floor * beyond / n:7.1f}x"
        print(f"   {n:>9,} {got['wall']:7.2f}s {got['fixed']:6.2f}s {rates} {got['rss']:7.1f}MB")
    print()


def _template_build(tmp: Path, data: Path) -> int:
    """One real build (2 jobs of 3 steps, 20 lines each) whose rows are copied to fill the store."""
    repo = tmp / "store-template"
    repo.mkdir()
    steps = "".join(f"          - name: s{k}\n            run: step{k}\n" for k in range(3))
    jobs = "".join(f"      - name: j{i}\n        steps:\n{steps}" for i in range(2))
    (repo / ".conveyor.yml").write_text(f"image: conveyor-test/busybox:1\nstages:\n  - name: test\n    jobs:\n{jobs}")
    lines = [f"line {i} of a typical step's output, with some words in it\n".encode() for i in range(20)]
    backend = FakeBackend(script={f"step{k}": FakeStep(output=lines) for k in range(3)})
    with Store(data) as store:
        build_id = create_build(store, BuildRequest(repo="app", event="push", branch="main", sha="a" * 40,
                                                    message="a change"), "scale")
        assert asyncio.run(run_build(store, Settings(data_dir=data, instance="scale"), build_id, repo,
                                     backend=backend)) == "success"
    return build_id


def _copy_builds(db: Path, template: int, total: int) -> None:
    """Grow the store to ``total`` builds by copying the template build's rows."""
    conn = sqlite3.connect(db)
    have = conn.execute("SELECT COUNT(*) FROM builds").fetchone()[0]
    cols = {t: [r[1] for r in conn.execute(f"PRAGMA table_info({t})")] for t in ("builds", "stages", "jobs", "steps",
                                                                                   "log_chunks")}
    b = dict(zip(cols["builds"], conn.execute("SELECT * FROM builds WHERE id = ?", (template,)).fetchone()))
    stages = conn.execute("SELECT * FROM stages WHERE build_id = ?", (template,)).fetchall()
    jobs = conn.execute("SELECT * FROM jobs WHERE build_id = ?", (template,)).fetchall()
    steps = {j[0]: conn.execute("SELECT * FROM steps WHERE job_id = ?", (j[0],)).fetchall() for j in jobs}
    chunks = conn.execute("SELECT * FROM log_chunks WHERE build_id = ?", (template,)).fetchall()

    def insert(table: str, row: dict) -> int:
        names = [c for c in cols[table] if c != "id"]
        return conn.execute(f"INSERT INTO {table} ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})",
                            [row[c] for c in names]).lastrowid

    number = conn.execute("SELECT MAX(number) FROM builds").fetchone()[0]
    for _ in range(total - have):
        number += 1
        new = insert("builds", dict(b, number=number, uid=uuid.uuid4().hex[:12],
                                    created=b["created"] + number, finished=(b["finished"] or 0) + number))
        for s in stages:
            insert("stages", dict(zip(cols["stages"], s), build_id=new))
        job_ids = {}
        for j in jobs:
            job_ids[j[0]] = insert("jobs", dict(zip(cols["jobs"], j), build_id=new))
            for st in steps[j[0]]:
                insert("steps", dict(zip(cols["steps"], st), job_id=job_ids[j[0]]))
        for c in chunks:
            row = dict(zip(cols["log_chunks"], c), build_id=new)
            row["job_id"] = job_ids.get(row["job_id"], row["job_id"])
            insert("log_chunks", row)
    conn.commit()
    conn.close()


def _p50_ms(fn, runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def _store_part(data: Path) -> None:
    from runner.store import builds as q
    from runner.store.recovery import open_store

    store = open_store(Settings(data_dir=data, instance="scale"))
    try:
        assert len(q.list_builds(store.read(), limit=20)) == 20
    finally:
        store.close()


def series_store(tmp: Path, sizes: list[int]) -> None:
    print("4. builds in the store (copies of one real build: 2 jobs x 3 steps x 20 lines)")
    data = tmp / "store-data"
    template = _template_build(tmp, data)
    repo = git_repo(tmp / "store-repo", "image: conveyor-test/busybox:1\nstages:\n  - name: s\n    steps: [\"true\"]\n")
    bare = _p50_ms(lambda: subprocess.run([sys.executable, "-c", "pass"], env=CHILD_ENV, check=True), 5)
    print("   `conveyor builds` is the whole command; `store part` is what in it depends on the store (open,")
    print("   recover, list one page), measured in process")
    print(f"   {'builds':>8} {'GET / p50':>10} {'floor':>7} {'x':>6} {'conveyor builds':>16} {'x py start':>11}"
          f" {'store part':>11} {'db/build':>9}")
    for n in sizes:
        _copy_builds(data / "conveyor.db", template, n)
        # A store that grew build by build has its WAL checkpointed as it went (SQLite does so every
        # 1000 pages); the bulk copy leaves it all in the WAL, which the first reader would pay for.
        conn = sqlite3.connect(data / "conveyor.db")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.close()
        server = Server(tmp, repo, data)
        try:
            server.get("/")  # warm
            page = _p50_ms(lambda: server.get("/"), 50)
            static = _p50_ms(lambda: server.get("/static/live.js"), 50)
        finally:
            server.stop()
        cli = _p50_ms(lambda: subprocess.run([sys.executable, "-m", "runner", "builds", "--data-dir", str(data)],
                                             stdout=subprocess.DEVNULL, check=True, cwd=ROOT, env=CHILD_ENV), 5)
        part = _p50_ms(lambda: _store_part(data), 20)
        size = (data / "conveyor.db").stat().st_size
        print(f"   {n:>8,} {page:8.1f}ms {static:5.1f}ms {page / static:5.1f}x {cli:14.0f}ms {cli / bare:10.2f}x"
              f" {part:9.1f}ms {size / n / 1024:7.1f}KB")
    print()


def _pipeline_of_stages(n: int, stages: int = 10) -> str:
    lines = ["image: conveyor-test/busybox:1", "stages:"]
    for s in range(stages):
        lines.append(f"  - name: s{s}\n    jobs:")
        for j in range(n // stages):
            need = f", needs: [j{s - 1}-{j}]" if s % 2 else ""
            lines.append(f"      - {{name: j{s}-{j}{need}, env: {{N: '{j}'}}, steps: ['echo {s} {j}', 'true']}}")
    return "\n".join(lines) + "\n"


def series_pipeline(sizes: list[int]) -> None:
    import yaml

    from runner.context import Context
    from runner.dsl import load_pipeline

    print("5. jobs per pipeline file (lint + plan in-process, 10 stages, needs in every other one)")
    ctx = Context.build(sha="ab" * 20, branch="main", build_number=1)
    floor = None
    print(f"   {'jobs':>7} {'lint+plan':>10} {'per job':>9} {'x floor':>8} {'C loader':>9}")
    for n in sizes:
        text = _pipeline_of_stages(n)
        walls, peers = [], []
        for _ in range(7):
            start = time.perf_counter()
            loaded = load_pipeline(Path("."), ctx, text=text)
            walls.append(time.perf_counter() - start)
            start = time.perf_counter()
            yaml.load(text, Loader=yaml.CSafeLoader)
            peers.append(time.perf_counter() - start)
        assert loaded.ok, loaded.diagnostics[:3]
        wall = min(walls)
        per = wall / n
        floor = floor or per
        print(f"   {n:>7} {wall * 1000:8.1f}ms {per * 1e6:7.0f}us {per / floor:7.2f}x {min(peers) * 1000:7.1f}ms")
    print()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short series (about a minute)")
    parser.add_argument("--only", type=int, action="append", choices=range(1, 6), help="run only these series")
    args = parser.parse_args()
    only = set(args.only or range(1, 6))
    quick = args.quick
    print(f"machine: {os.cpu_count()} CPUs, Python {sys.version.split()[0]}{' (quick)' if quick else ''}\n")
    with tempfile.TemporaryDirectory(prefix="conveyor-scale-") as name:
        tmp = Path(name)
        if 1 in only:
            series_queue(tmp, [1, 10, 50] if quick else [1, 10, 100, 500])
        if 2 in only:
            series_jobs(tmp, [1, 10, 50] if quick else [1, 10, 50, 100, 200])
        if 3 in only:
            series_lines(tmp, [1_000, 10_000, 100_000] if quick else [1_000, 10_000, 100_000, 1_000_000])
        if 4 in only:
            series_store(tmp, [1_000, 10_000] if quick else [1_000, 10_000, 100_000])
        if 5 in only:
            series_pipeline([50, 200] if quick else [50, 100, 200, 500])


if __name__ == "__main__":
    main()
