"""The engine's seam and its targets, without a swarm: where ``Engine.call`` runs, that a client
passed in stays its maker's, what a target that cannot be reached or named says, and whose TLS a
target takes."""

from __future__ import annotations

import asyncio
import threading

import docker
import pytest

from runner.engine import Engine, Target, open_target
from runner.errors import DeployError
from runner.settings import Settings


async def test_call_runs_on_the_engines_threads_never_on_the_loop():
    engine = Engine(Target("default"))
    try:
        loop_thread = threading.current_thread()
        names = await asyncio.gather(*(engine.call(lambda: threading.current_thread().name) for _ in range(4)))
        assert all(n.startswith("conveyor-docker") for n in names)
        assert loop_thread.name not in names
    finally:
        engine.close()
    with pytest.raises(RuntimeError):  # closed: its threads are gone, nothing runs there any more
        await engine.call(lambda: None)


@pytest.mark.docker
async def test_a_client_passed_in_stays_open_when_the_engine_closes(docker_client):
    shared = Engine(Target("default"), docker_client)
    own = Engine(Target("default"))
    try:
        assert (await shared.call(shared.ping))["ID"] == (await own.call(own.ping))["ID"]
    finally:
        shared.close()
        own.close()
    assert docker_client.ping()  # the test session's client is its maker's to close


async def test_open_target_says_what_to_do_when_no_engine_answers(tmp_path):
    settings = Settings(data_dir=tmp_path, docker_host=f"unix://{tmp_path}/no-engine.sock")
    with pytest.raises(DeployError, match="cannot reach the Docker engine .* start it or fix the url"):
        await open_target(settings, None)
    with pytest.raises(DeployError, match="unknown deploy target 'nope'; known targets: default"):
        await open_target(settings, "nope")


def test_a_named_target_takes_tls_only_from_its_own_entry(monkeypatch, tmp_path):
    # DOCKER_TLS_VERIFY is for DOCKER_HOST (the default target), never for a target of the file.
    for name in ("ca", "cert", "key"):
        (tmp_path / f"{name}.pem").write_text("x")
    monkeypatch.setenv("DOCKER_TLS_VERIFY", "1")
    monkeypatch.setenv("DOCKER_CERT_PATH", str(tmp_path))
    plain = Engine(Target("prod", "tcp://127.0.0.1:1"))
    assert plain._client_kwargs() == {"base_url": "tcp://127.0.0.1:1", "tls": None}
    named = Engine(Target("prod", "tcp://127.0.0.1:1", {k: str(tmp_path / f"{k}.pem") for k in ("ca", "cert", "key")}))
    assert isinstance(named._client_kwargs()["tls"], docker.tls.TLSConfig)
    default = Engine(Target.default(Settings(docker_host="tcp://127.0.0.1:2")))
    kwargs = default._client_kwargs()
    assert kwargs["base_url"] == "tcp://127.0.0.1:2" and isinstance(kwargs["tls"], docker.tls.TLSConfig)
    for engine in (plain, named, default):
        engine.close()
