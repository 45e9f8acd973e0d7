"""The server's daily retention run on a real store, driven by a test clock: 10 minutes after
start-up, then every 24 hours, with the configuration's retention (server-wide and per repository)."""

from __future__ import annotations

import time

import yaml
from aiohttp.test_utils import TestClient, TestServer

from runner.clock import TestClock
from runner.server.app import make_app
from runner.server.config import load_config
from runner.server.keys import DAILY_GC, STORE
from tests.retention_helpers import add_build, add_deploy, surviving


async def test_the_server_prunes_once_a_day_with_the_configured_retention(tmp_path, instance):
    path = tmp_path / "conveyor.yml"
    path.write_text(yaml.safe_dump({
        "data_dir": str(tmp_path / "data"), "instance": instance, "backend": "local",
        "retention": {"days": 30, "keep_last": 20},
        "repos": [{"name": "acme/api", "path": str(tmp_path), "retention": {"keep_last": 2}}],
    }))
    config = load_config(path, environ={"HOME": str(tmp_path)})
    start = time.time()
    clock = TestClock(start)
    client = TestClient(TestServer(make_app(config, clock=clock), host="127.0.0.1"))
    await client.start_server()
    try:
        await clock.wait_sleeping(1)  # no schedules: only the retention run sleeps
        gc, store = client.app[DAILY_GC], client.app[STORE]
        old, _ = add_build(store, "web", "main", "failure", 400, start)
        for _ in range(20):
            add_build(store, "web", "main", "failure", 1, start)
        assert gc.runs == 0
        await clock.advance(599)
        assert gc.runs == 0 and old in surviving(store)  # not at once at start-up
        await clock.advance(1)
        assert gc.runs == 1 and old not in surviving(store)
        start += 600
        # Added after the first pass; 40 days old by the test clock's "now".
        web = [add_build(store, "web", "main", "failure", 40, start)[0] for _ in range(22)]
        api = [add_build(store, "acme/api", "main", "failure", 40, start)[0] for _ in range(3)]
        _, live = add_build(store, "web", "feature", "failure", 400, start)
        add_deploy(store, "web-svc", live)
        everything = surviving(store)

        await clock.advance(23 * 3600)
        assert gc.runs == 1 and surviving(store) == everything
        await clock.advance(3600)  # 24 hours after the first run
        assert gc.runs == 2
        assert surviving(store) == everything - {web[0], web[1], api[0]}
        assert store.read().execute("SELECT COUNT(*) FROM deploys").fetchone()[0] == 1

        await clock.advance(24 * 3600)  # the next day: nothing more may go
        assert gc.runs == 3 and surviving(store) == everything - {web[0], web[1], api[0]}
    finally:
        await client.close()
