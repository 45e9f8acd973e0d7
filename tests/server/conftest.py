"""A real Conveyor server on 127.0.0.1 (aiohttp's TestServer binds a free port) over a real store,
real git repositories, and, where builds run, the real Docker backend."""

from __future__ import annotations

import asyncio
import time

import pytest
import yaml
from aiohttp.test_utils import TestClient, TestServer

from runner.server.app import make_app
from runner.server.config import load_config

BUSYBOX_PIPELINE = """\
name: hello
image: conveyor-test/busybox:1
stages:
  - name: greet
    steps:
      - echo "hello from $CI_REPO_NAME at $CI_COMMIT_SHA"
  - name: check
    jobs:
      - name: one
        steps: ["echo one"]
      - name: two
        steps: ["echo two"]
"""


@pytest.fixture
async def server(tmp_path, instance):
    """Factory: ``await server(repos=[...], env={...}, **top_level)`` -> a TestClient of a running
    server. The configuration goes through a real YAML file and ``load_config``; ``env`` is the
    environment it reads (users' ``token_env``)."""
    started: list[TestClient] = []

    async def factory(repos=(), backend=None, start_queue=True, environ=None, env=None, **top) -> TestClient:
        data = {"data_dir": str(tmp_path / "data"), "instance": instance, "repos": list(repos), **top}
        path = tmp_path / f"conveyor{len(started)}.yml"
        path.write_text(yaml.safe_dump(data))
        config = load_config(path, environ={"HOME": str(tmp_path), **(environ or {}), **(env or {})})
        if backend is None:
            from runner.backends import get_backend

            backend = get_backend(config.backend, config.settings)
        app = make_app(config, backend=backend, start_queue=start_queue)
        client = TestClient(TestServer(app, host="127.0.0.1"))
        await client.start_server()
        started.append(client)
        return client

    yield factory
    for client in started:
        await client.close()


async def wait_for(predicate, timeout: float = 60.0, interval: float = 0.1):
    """Poll an async predicate until it returns something truthy."""
    deadline = time.monotonic() + timeout
    while True:
        value = await predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {predicate.__name__}")
        await asyncio.sleep(interval)
