"""`backend:` in the server configuration: the server's, a repository's own, and the queue's pick."""

from __future__ import annotations

import pytest

from runner.backends.fake import FakeBackend
from runner.server.config import ServerConfigError, load_config
from runner.server.queue import BuildQueue


def _write(tmp_path, text: str):
    path = tmp_path / "conveyor.yml"
    path.write_text(text)
    return path


def test_a_repository_runs_on_its_own_backend(tmp_path):
    path = _write(tmp_path, "backend: docker\nrepos:\n"
                            "  - {name: web, provider: gitea, path: /tmp/web, backend: swarm}\n"
                            "  - {name: api, provider: gitea, path: /tmp/api}\n")
    config = load_config(path, environ={"HOME": str(tmp_path)})
    assert config.backend == "docker"
    assert config.repo("web").backend == "swarm" and config.repo("api").backend is None
    server_backend = FakeBackend()
    server_backend.name = "docker"
    queue = BuildQueue(None, config, server_backend, hub=None)
    assert queue.backend_for(config.repo("api")) is server_backend
    swarm = queue.backend_for(config.repo("web"))
    assert swarm.name == "swarm" and queue.backend_for(config.repo("web")) is swarm  # made once


@pytest.mark.parametrize("text, where", [("backend: kubernetes\n", "configuration"),
                                         ("repos:\n  - {name: web, provider: gitea, path: /tmp/w, backend: fake}\n",
                                          "repo .web.")])
def test_an_unknown_backend_is_refused_naming_the_choices(tmp_path, text, where):
    with pytest.raises(ServerConfigError, match=rf"{where}: backend .* is not one of docker, swarm, local"):
        load_config(_write(tmp_path, text), environ={"HOME": str(tmp_path)})
