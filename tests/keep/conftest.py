"""Builds that keep files, run for real: a git repository in a temp dir, the Docker backend, the
store of a real server on 127.0.0.1 (tests/server/conftest.py's ``server``)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from runner.backends.docker import DockerBackend
from runner.build import BuildRequest, create_build, run_build
from runner.server.keys import CONFIG, STORE
from runner.store import builds as q
from tests.conftest import make_git_repo
from tests.server.conftest import server  # noqa: F401 - the fixture, shared


@pytest.fixture
def engine(docker_client, instance):
    from runner.settings import Settings

    backend = DockerBackend(Settings(instance=instance), grace=1.0)
    yield backend
    asyncio.run(backend.sweep(keep=[]))
    backend.close()


class Builds:
    """Run builds of a repository into a server's store, the way its queue does."""

    def __init__(self, client, backend, repo: Path, settings) -> None:
        self.client, self.backend, self.repo, self.settings = client, backend, repo, settings
        self.store = client.app[STORE]

    async def run(self, *, fork: bool = False, on_reports=None, sha: str | None = None,
                  secrets: dict[str, str] | None = None) -> q.BuildRow:
        request = BuildRequest(repo="app", event="push", branch="main", sha=sha, trigger="test")
        build_id = await asyncio.to_thread(create_build, self.store, request, self.settings.instance)
        await run_build(self.store, self.settings, build_id, self.repo, backend=self.backend, fork=fork,
                        on_reports=on_reports, secrets=secrets)
        return await self.store.aread(lambda c: q.get_build(c, build_id))

    async def log(self, build_id: int) -> str:
        from runner.server.views import log_text

        return await self.store.aread(lambda c: log_text(c, build_id))


@pytest.fixture
def builds(server, engine, tmp_path):  # noqa: F811 - the fixture imported above
    async def factory(pipeline: str, files: dict[str, str] | None = None, **top) -> Builds:
        repo = make_git_repo(tmp_path / "repo", {".conveyor.yml": pipeline, **(files or {})})
        client = await server(start_queue=False, **top)
        return Builds(client, engine, repo, client.app[CONFIG].settings)

    return factory
