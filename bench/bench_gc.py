"""Benchmark of retention (`runner.retention.collect`, what `conveyor gc` and the server run).
Prints figures, never fails.

A store with 2,000 old builds of 50 log chunks each (100,000 chunks, ~100 MB of log text) is pruned
while another thread writes one small row every 5 ms, as a running build's log does. What matters
is how long those writes wait: the floor is the same writer's latency with no prune running. The
prune's own speed is printed too (builds and MB per second), for 2,000 and for 500 (the default)
log chunks a transaction.

    python bench/bench_gc.py
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from runner.build import BuildRequest, insert_request  # noqa: E402
from runner.retention import Retention, collect  # noqa: E402
from runner.store import builds as q  # noqa: E402
from runner.store.db import Store  # noqa: E402

BUILDS, CHUNKS, TEXT = 2000, 50, "x" * 1000 + "\n"


def fill(store: Store) -> None:
    old = time.time() - 200 * 86400
    text = TEXT
    for start in range(0, BUILDS, 100):
        def write(conn, start=start):
            for _ in range(start, start + 100):
                build_id, _ = insert_request(conn, BuildRequest(repo="web", event="push", branch="main"), "bench")
                conn.executemany(
                    "INSERT INTO log_chunks (build_id, step, seq, first_line, lines, text, time) "
                    "VALUES (?, 0, ?, 1, 1, ?, ?)", [(build_id, seq, text, old) for seq in range(CHUNKS)])
                q.finish_build(conn, build_id, "failure", finished=old)
        store.write(write)


def latencies(store: Store, stop: threading.Event) -> list[float]:
    """Write a tiny row every 5 ms until stopped; each write's wait, in milliseconds."""
    out: list[float] = []
    store.write(lambda c: c.execute("CREATE TABLE IF NOT EXISTS probe (t REAL)"))
    while not stop.is_set():
        began = time.perf_counter()
        store.write(lambda c: c.execute("INSERT INTO probe VALUES (?)", (began,)))
        out.append((time.perf_counter() - began) * 1000)
        time.sleep(0.005)
    return out


def probe_during(store: Store, work) -> tuple[list[float], float, object]:
    stop, result = threading.Event(), {}
    thread = threading.Thread(target=lambda: result.setdefault("lat", latencies(store, stop)))
    thread.start()
    time.sleep(0.2)
    began = time.perf_counter()
    value = work()
    took = time.perf_counter() - began
    time.sleep(0.2)
    stop.set()
    thread.join()
    return result["lat"], took, value


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * p))]


def main() -> None:
    for log_rows in (2000, 500):
        run(log_rows)


def run(log_rows: int) -> None:
    with tempfile.TemporaryDirectory() as tmp, Store(Path(tmp) / "data") as store:
        fill(store)
        size = store.path.stat().st_size / 1e6
        idle, _, _ = probe_during(store, lambda: time.sleep(3))
        busy, took, report = probe_during(
            store, lambda: collect(store, lambda r: Retention(), time.time(), log_rows=log_rows))
        print(f"retention, {log_rows} log chunks a transaction: {len(report.removed)} builds, "
              f"{BUILDS * CHUNKS:,} log chunks, store {size:.0f} MB")
        print(f"  prune took {took:.2f} s: {len(report.removed) / took:.0f} builds/s, "
              f"{report.freed / 1e6 / took:.0f} MB/s of log text")
        print(f"  a concurrent small write, floor (no prune): p50 {statistics.median(idle):.2f} ms, "
              f"p99 {pct(idle, 0.99):.2f} ms, max {max(idle):.2f} ms ({len(idle)} writes)")
        print(f"  the same write during the prune:          p50 {statistics.median(busy):.2f} ms, "
              f"p99 {pct(busy, 0.99):.2f} ms, max {max(busy):.2f} ms ({len(busy)} writes)")
        print(f"  ratio p50 {statistics.median(busy) / statistics.median(idle):.1f}x, "
              f"max wait {max(busy):.0f} ms vs the whole prune {took * 1000:.0f} ms")


if __name__ == "__main__":
    main()
