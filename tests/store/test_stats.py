"""The incremental duration histograms of /metrics agree with counting every build from scratch,
across the moment rows settle, and their queries use the covering indexes."""

from __future__ import annotations

import random

from runner.store.db import Store
from runner.store.stats import Tally, build_durations, queue_waits

BOUNDS = (1, 5, 30, 120)


def set_time(store: Store, build_id: int, column: str, value: float) -> None:
    store.write(lambda c: c.execute(f"UPDATE builds SET {column} = ? WHERE id = ?", (value, build_id)))


def naive(values: list[float]) -> tuple[list[tuple[float, int]], int, float]:
    return [(b, sum(v <= b for v in values)) for b in BOUNDS], len(values), sum(values)


def test_tallies_match_a_full_count_as_builds_arrive_and_settle(tmp_path):
    """Builds are created, started and finished over simulated hours, each time written a few
    seconds after it was taken (as the writer thread may), with scrapes in between."""
    rng = random.Random(7)
    durations, waits = build_durations(BOUNDS), queue_waits(BOUNDS)
    times: dict[int, dict[str, float]] = {}
    with Store(tmp_path) as store:
        now = 10_000.0
        for step in range(1, 1201):
            now += rng.choice([0.1, 1, 10, 60])
            queued = [i for i, t in times.items() if "started" not in t]
            running = [i for i, t in times.items() if "started" in t and "finished" not in t]
            move = rng.random()
            if move < 0.4 or not (queued or running):
                build_id = store.write(lambda c: c.execute(
                    "INSERT INTO builds (repo, number, uid, instance, event, status, created) VALUES "
                    "('r', ?, ?, 'i', 'push', 'queued', ?)", (step, f"u{step}", now)).lastrowid)
                times[build_id] = {"created": now}
            elif move < 0.7 and queued:
                build_id = rng.choice(queued)
                times[build_id]["started"] = max(now - rng.uniform(0, 5), times[build_id]["created"])
                set_time(store, build_id, "started", times[build_id]["started"])
            elif running:
                build_id = rng.choice(running)
                times[build_id]["finished"] = max(now - rng.uniform(0, 5), times[build_id]["started"])
                set_time(store, build_id, "finished", times[build_id]["finished"])
            if step % 20 == 0:  # a scrape now and then, while earlier rows settle behind it
                conn = store.read()
                d, w = durations.read(conn, now), waits.read(conn, now)
                expected_d = naive([t["finished"] - t["started"] for t in times.values() if "finished" in t])
                expected_w = naive([t["started"] - t["created"] for t in times.values() if "started" in t])
                assert (d.buckets, d.count) == expected_d[:2] and abs(d.total - expected_d[2]) < 1e-6
                assert (w.buckets, w.count) == expected_w[:2] and abs(w.total - expected_w[2]) < 1e-6
        assert durations._mark > 10_000 and expected_d[1] > 100  # rows did settle, and there were many


def test_the_tally_reads_only_an_index(tmp_path):
    with Store(tmp_path) as store:
        for tally in (build_durations(BOUNDS), queue_waits(BOUNDS)):
            plan = " ".join(r[3] for r in store.read().execute("EXPLAIN QUERY PLAN " + tally._sql, (0.0, 1.0)))
            assert "COVERING INDEX" in plan, plan
    assert Tally.SETTLE_SECONDS >= 60  # a row written a moment after its time was taken still counts
