"""Benchmark of `conveyor serve` (a real server process on 127.0.0.1). Prints figures, never fails.

1. Webhook acceptance: 1,000 signed GitHub pushes from 50 concurrent clients (the server is
   --paused, so what is measured is acceptance: verify, parse, commit to the inbox, answer), then
   200 redeliveries of some of them. Every answer must be 202 (new) or 200 (redelivery) and the store
   must hold exactly one delivery each. The floor is a static file fetched the same way.
2. The build list page with 10,000 builds in the store: p50 over 200 sequential loads.
3. Idle RSS of the server process, after start-up and after the load.

    python bench/bench_server.py
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
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

import aiohttp
import yaml

ROOT = Path(__file__).resolve().parent.parent
SECRET = "bench-secret"


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


def push(sha: str, n: int) -> bytes:
    return json.dumps({
        "ref": "refs/heads/main", "before": "0" * 39 + "1", "after": sha, "deleted": False,
        "head_commit": {"id": sha, "message": f"commit {n}", "author": {"name": "Bench"}},
        "commits": [{"id": sha, "message": f"commit {n}"}],
        "repository": {"full_name": "bench/app", "clone_url": "https://github.com/bench/app.git"},
        "pusher": {"name": "bench"},
    }).encode()


def seed_builds(data_dir: Path, count: int) -> None:
    """10,000 finished builds, written straight into the store the server will open."""
    from runner.store.db import Store

    Store(data_dir).close()  # create the schema
    conn = sqlite3.connect(data_dir / "conveyor.db")
    now = time.time()
    conn.executemany(
        "INSERT INTO builds (repo, number, uid, instance, event, ref, branch, sha, message, trigger, status, "
        "created, started, finished) VALUES (?, ?, ?, 'bench', 'push', 'refs/heads/main', 'main', ?, ?, "
        "'webhook', ?, ?, ?, ?)",
        [("bench/app", i, uuid.uuid4().hex[:12], hashlib.sha1(str(i).encode()).hexdigest(), f"change {i}",
          ("success", "failure")[i % 7 == 0], now - 10_000 + i, now - 10_000 + i, now - 10_000 + i + 42)
         for i in range(1, count + 1)],
    )
    conn.commit()
    conn.close()


async def hammer(base: str, requests: list[tuple[str, bytes | None, dict]], clients: int) -> tuple[list[float], dict]:
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    queue: asyncio.Queue = asyncio.Queue()
    for item in requests:
        queue.put_nowait(item)

    async def client() -> None:
        async with aiohttp.ClientSession() as session:  # one connection per client, kept alive
            while not queue.empty():
                path, body, headers = queue.get_nowait()
                start = time.perf_counter()
                if body is None:
                    async with session.get(base + path) as r:
                        await r.read()
                else:
                    async with session.post(base + path, data=body, headers=headers) as r:
                        await r.read()
                latencies.append((time.perf_counter() - start) * 1000)
                statuses[r.status] = statuses.get(r.status, 0) + 1

    await asyncio.gather(*(client() for _ in range(clients)))
    return latencies, statuses


def signed(body: bytes, delivery: str) -> dict:
    return {"Content-Type": "application/json", "X-GitHub-Event": "push", "X-GitHub-Delivery": delivery,
            "X-Hub-Signature-256": "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()}


def main() -> None:
    tmp = Path(tempfile.mkdtemp(prefix="conveyor-bench-"))
    data_dir = tmp / "data"
    port = free_port()
    config = tmp / "conveyor.yml"
    config.write_text(yaml.safe_dump({
        "port": port, "data_dir": str(data_dir), "instance": "bench" + uuid.uuid4().hex[:6],
        "repos": [{"name": "bench/app", "provider": "github", "url": "https://github.com/bench/app.git",
                   "secret": SECRET}],
    }))
    seed_builds(data_dir, 10_000)
    proc = subprocess.Popen([sys.executable, "-m", "runner", "serve", "--config", str(config), "--paused"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                urllib.request.urlopen(base + "/api/builds?limit=1", timeout=2).read()
                break
            except OSError:
                time.sleep(0.1)
        time.sleep(1.0)
        idle_start = rss_mb(proc.pid)

        # -- 1. webhook acceptance ----------------------------------------------------------------
        deliveries = []
        for n in range(1000):
            body = push(hashlib.sha1(f"c{n}".encode()).hexdigest(), n)
            deliveries.append(("/hooks/github", body, signed(body, f"bench-{n}")))
        floor, _ = asyncio.run(hammer(base, [("/static/live.js", None, {})] * 1000, 50))
        t0 = time.perf_counter()
        latencies, statuses = asyncio.run(hammer(base, deliveries, 50))
        wall = time.perf_counter() - t0
        again, again_statuses = asyncio.run(hammer(base, deliveries[::5], 50))
        conn = sqlite3.connect(data_dir / "conveyor.db")
        stored, distinct = conn.execute("SELECT COUNT(*), COUNT(DISTINCT delivery) FROM deliveries").fetchone()
        conn.close()
        print("webhook acceptance: 1,000 signed pushes, 50 concurrent clients")
        print(f"  statuses {dict(sorted(statuses.items()))}; redeliveries of 200 of them: "
              f"{dict(sorted(again_statuses.items()))}")
        print(f"  stored deliveries {stored} (distinct ids {distinct}); exactly one each: "
              f"{stored == distinct == 1000}")
        print(f"  latency p50 {pct(latencies, 50):.1f} ms, p99 {pct(latencies, 99):.1f} ms "
              f"(target p99 < 100 ms), throughput {1000 / wall:.0f}/s")
        print(f"  floor (static file, same load): p50 {pct(floor, 50):.1f} ms, p99 {pct(floor, 99):.1f} ms; "
              f"ratio p50 {pct(latencies, 50) / pct(floor, 50):.1f}x, p99 {pct(latencies, 99) / pct(floor, 99):.1f}x")
        print(f"  redelivery p99 {pct(again, 99):.1f} ms")

        # -- 2. build list page -----------------------------------------------------------------
        page_times, api_times = [], []
        for _ in range(200):
            start = time.perf_counter()
            body = urllib.request.urlopen(base + "/", timeout=10).read()
            page_times.append((time.perf_counter() - start) * 1000)
        for _ in range(200):
            start = time.perf_counter()
            urllib.request.urlopen(base + "/api/builds", timeout=10).read()
            api_times.append((time.perf_counter() - start) * 1000)
        static = []
        for _ in range(200):
            start = time.perf_counter()
            urllib.request.urlopen(base + "/static/live.js", timeout=10).read()
            static.append((time.perf_counter() - start) * 1000)
        print("build list page, 10,000 builds in the store (200 sequential loads)")
        print(f"  GET / p50 {statistics.median(page_times):.1f} ms, p99 {pct(page_times, 99):.1f} ms "
              f"(target p50 < 50 ms; {len(body) // 1024} KiB, 50 rows)")
        print(f"  GET /api/builds p50 {statistics.median(api_times):.1f} ms; static file floor p50 "
              f"{statistics.median(static):.1f} ms; page/floor {statistics.median(page_times) / statistics.median(static):.1f}x")

        # -- 3. memory ----------------------------------------------------------------------------
        time.sleep(1.0)
        print("idle server RSS")
        print(f"  after start-up {idle_start:.1f} MB, after the load {rss_mb(proc.pid):.1f} MB (target <= 80 MB)")
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
        subprocess.run(["rm", "-rf", str(tmp)], check=False)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
