"""Benchmark of running Conveyor itself: /metrics, idle memory, backups. Prints figures, never fails.

1. GET /metrics of a real `conveyor serve` with 10,000 builds (30,000 jobs, 200 deploys) in its
   store, each build carrying a 3 KiB plan as real ones do. Three figures: the scrape as Prometheus
   sees it (one every 15 s hits the 1 s cache never, so "uncached", timed over HTTP, one a second);
   a burst of back-to-back scrapes (mostly served from the cache); and the collection alone,
   in-process, uncached, 300 times. The floor is a static file over the same HTTP path.
2. Idle RSS of that server after it ran one real build on the Docker backend, so every plugin, the
   deploy actions and docker-py are loaded (goal <= 80 MB).
3. `conveyor backup` of a ~1 GiB store (log chunks) against `sqlite3 SRC ".backup DEST"` of the same
   file, best of 3 each, alternating (goal <= 1.5x). `--backup-mib N` picks another size.

    python bench/bench_ops.py [--backup-mib 1024] [--uncached-scrapes 20]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
TOKEN = "bench-admin-token"
PIPELINE = "name: one\nimage: conveyor-test/busybox:1\nstages:\n  - name: say\n    steps: ['echo loaded']\n"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def timed_get(url: str) -> tuple[float, bytes]:
    start = time.perf_counter()
    body = urllib.request.urlopen(url, timeout=10).read()
    return (time.perf_counter() - start) * 1000, body


def seed(data_dir: Path, builds: int) -> None:
    """Finished builds with a plan each, three jobs each, and some deploys, written straight in."""
    from runner.store.db import Store

    Store(data_dir).close()  # the schema
    conn = sqlite3.connect(data_dir / "conveyor.db")
    now = time.time()
    plan = json.dumps({"stages": [{"name": f"s{i}", "env": "x" * 100} for i in range(25)]})
    conn.executemany(
        "INSERT INTO builds (id, repo, number, uid, instance, event, ref, branch, sha, message, trigger, status, "
        "plan, created, started, finished) VALUES (?, 'bench/app', ?, ?, 'bench', 'push', 'refs/heads/main', "
        "'main', ?, ?, 'webhook', ?, ?, ?, ?, ?)",
        [(i, i, uuid.uuid4().hex[:12], hashlib.sha1(str(i).encode()).hexdigest(), f"change {i}",
          ("success", "failure")[i % 7 == 0], plan, now - 100_000 + i * 5, now - 100_000 + i * 5 + (i % 40),
          now - 100_000 + i * 5 + (i % 40) + 30 + i % 600) for i in range(1, builds + 1)])
    conn.executemany(
        "INSERT INTO jobs (build_id, stage, name, status, started, finished) VALUES (?, ?, ?, ?, 0, 1)",
        [(i, "test", name, ("success", "failure")[i % 7 == 0 and name == "unit"]) for i in range(1, builds + 1)
         for name in ("unit", "lint", "docs")])
    conn.executemany(
        "INSERT INTO deploys (service, kind, status, spec_after, started, finished) VALUES (?, ?, ?, ?, 0, 1)",
        [(f"svc{i % 5}", ("deploy", "rollback")[i % 10 == 0], ("succeeded", "rolled_back")[i % 13 == 0],
          "{}" * 500) for i in range(200)])
    conn.commit()
    conn.close()


def make_repo(path: Path) -> Path:
    path.mkdir(parents=True)
    (path / ".conveyor.yml").write_text(PIPELINE)
    git = ["git", "-C", str(path), "-c", "user.name=Bench", "-c", "user.email=bench@example.invalid"]
    subprocess.run([*git, "init", "-q", "-b", "main"], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-qm", "bench"], check=True)
    return path


def run_one_build(base: str) -> str:
    request = urllib.request.Request(base + "/api/builds", method="POST",
                                     data=json.dumps({"repo": "bench/app", "branch": "main"}).encode(),
                                     headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"})
    build = json.loads(urllib.request.urlopen(request, timeout=10).read())
    build_id = build.get("id") or build.get("build", {}).get("id")
    for _ in range(600):
        status = json.loads(urllib.request.urlopen(f"{base}/api/builds/{build_id}", timeout=10).read())["status"]
        if status not in ("queued", "running"):
            return status
        time.sleep(0.1)
    return "still running after 60 s"


def bench_server(tmp: Path, uncached_scrapes: int) -> None:
    data_dir = tmp / "data"
    port = free_port()
    config = tmp / "conveyor.yml"
    config.write_text(yaml.safe_dump({
        "port": port, "data_dir": str(data_dir), "instance": "bench" + uuid.uuid4().hex[:6], "admin_token": TOKEN,
        "repos": [{"name": "bench/app", "provider": "github", "path": str(make_repo(tmp / "repo"))}],
    }))
    seed(data_dir, 10_000)
    proc = subprocess.Popen([sys.executable, "-m", "runner", "serve", "--config", str(config)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                urllib.request.urlopen(base + "/api/builds?limit=1", timeout=2).read()
                break
            except OSError:
                time.sleep(0.1)
        status = run_one_build(base)
        time.sleep(2.0)
        idle = rss_mb(proc.pid)

        floor = [timed_get(base + "/static/live.js")[0] for _ in range(300)]
        uncached = []
        for _ in range(uncached_scrapes):
            time.sleep(1.05)  # past the 1 s cache: every scrape below runs the queries
            ms, body = timed_get(base + "/metrics")
            uncached.append(ms)
        burst = [timed_get(base + "/metrics")[0] for _ in range(300)]
        print("GET /metrics, 10,000 builds / 30,000 jobs / 200 deploys in the store")
        print(f"  uncached over HTTP ({uncached_scrapes} scrapes, 1 s apart): p50 {pct(uncached, 50):.1f} ms, "
              f"p99 {pct(uncached, 99):.1f} ms (goal p99 < 20 ms; {len(body) // 1024} KiB)")
        print(f"  back-to-back (300, mostly cached): p50 {pct(burst, 50):.1f} ms, p99 {pct(burst, 99):.1f} ms")
        print(f"  floor (static file, same path): p50 {pct(floor, 50):.1f} ms, p99 {pct(floor, 99):.1f} ms; "
              f"uncached/floor p50 {pct(uncached, 50) / pct(floor, 50):.1f}x")
        bench_collection(data_dir)
        print("idle server RSS (after one real build on the Docker backend: its plugins loaded)")
        print(f"  {idle:.1f} MB after the build ({status}), {rss_mb(proc.pid):.1f} MB after the scrapes "
              "(goal <= 80 MB)")
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()


def bench_collection(data_dir: Path) -> None:
    """The queries and the text alone, in this process, never cached."""
    from prometheus_client import generate_latest

    from runner.server import metrics
    from runner.server.app import make_app
    from runner.server.config import load_config
    from runner.store.db import Store

    store = Store(data_dir)
    try:
        app = make_app(load_config(None, data_dir=data_dir), backend=object(), store=store, start_queue=False)
        registry = app[metrics._SCRAPE].registry
        start = time.perf_counter()
        generate_latest(registry)  # the first one reads every build's times once (stats.Tally)
        first = (time.perf_counter() - start) * 1000
        times = []
        for _ in range(300):
            start = time.perf_counter()
            generate_latest(registry)
            times.append((time.perf_counter() - start) * 1000)
        print(f"  collection alone, in-process (300): p50 {pct(times, 50):.1f} ms, p99 {pct(times, 99):.1f} ms; "
              f"the first after start-up {first:.1f} ms")
    finally:
        store.close()


def bench_backup(tmp: Path, mib: int) -> None:
    from runner.store.db import Store

    data_dir = tmp / "big"
    Store(data_dir).close()
    conn = sqlite3.connect(data_dir / "conveyor.db")
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("INSERT INTO builds (id, repo, number, uid, instance, event, status, created) "
                 "VALUES (1, 'big', 1, 'big1', 'bench', 'push', 'success', 0)")
    chunk = ("a log line of a chatty build, number %08d\n" * 1500)  # ~64 KiB, like a stored chunk
    rows = mib * 1024 * 1024 // (len(chunk) + 9)
    for start in range(0, rows, 1000):
        conn.executemany("INSERT INTO log_chunks (build_id, seq, first_line, lines, text, time) VALUES (1, ?, 0, 1500, ?, 0)",
                         [(i, chunk.replace("%08d", f"{i:08d}")) for i in range(start, min(rows, start + 1000))])
        conn.commit()
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    size = (data_dir / "conveyor.db").stat().st_size
    sqlite3_cli = shutil.which("sqlite3")
    ours, theirs, ours_inproc = [], [], []
    from runner.store.backup import backup

    for attempt in range(3):
        for dest in tmp.glob("copy-*"):
            dest.unlink()
        if sqlite3_cli:
            start = time.perf_counter()
            subprocess.run([sqlite3_cli, str(data_dir / "conveyor.db"), f".backup {tmp / 'copy-sqlite.db'}"], check=True)
            theirs.append(time.perf_counter() - start)
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "runner", "backup", str(tmp / "copy-ours.db"), "--data-dir",
                        str(data_dir)], check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
        ours.append(time.perf_counter() - start)
        start = time.perf_counter()
        backup(data_dir, tmp / "copy-inproc.db")
        ours_inproc.append(time.perf_counter() - start)
    print(f"backup of a {size / 2**30:.2f} GiB store ({size // 2**20} MiB; best of 3)")
    print(f"  conveyor backup (the command): {min(ours):.2f} s; backup() in-process: {min(ours_inproc):.2f} s")
    if theirs:
        print(f"  sqlite3 .backup (the command): {min(theirs):.2f} s; ratio {min(ours) / min(theirs):.2f}x "
              "(goal <= 1.5x)")
    else:
        print("  sqlite3 is not installed (apt-get install sqlite3): no ratio")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backup-mib", type=int, default=1024, help="size of the store backed up (default 1024)")
    parser.add_argument("--uncached-scrapes", type=int, default=20)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="conveyor-bench-ops-"))
    try:
        bench_server(tmp, args.uncached_scrapes)
        bench_backup(tmp, args.backup_mib)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
