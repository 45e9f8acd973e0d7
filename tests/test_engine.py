"""The engine's seam, its clients and its targets, without a swarm: where ``Engine.call`` runs, that
a build's calls never load docker-py while the others go to it with the same errors, what a target
that cannot be reached or named says, and whose TLS a target takes."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading

import docker
import pytest

from runner.engine import Engine, Target, open_target
from runner.engine.errors import DockerException
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
def test_a_build_s_calls_never_load_docker_py_and_the_rest_raise_the_same_errors():
    # In a fresh interpreter: what a job does (image check, container, exec, archive, removal) goes
    # over the engine's API without docker-py; a call only docker-py makes (services) loads it, and
    # its "not found" is the same class a caller catches for the engine's own.
    code = """
import sys, time
from runner.engine import Engine, Target, errors
engine = Engine(Target("default"))
api = engine.api
api.inspect_image("conveyor-test/busybox:1")
cid = api.create_container("conveyor-test/busybox:1", ["sleep", "30"], labels={"io.conveyor.test": "1"},
                           host_config=api.create_host_config(network_mode="none", pids_limit=64))["Id"]
try:
    api.start(cid)
    exec_id = api.exec_create(cid, ["sh", "-c", "echo out; echo err >&2; exit 3"])["Id"]
    assert sorted(api.exec_start(exec_id).split()) == [b"err", b"out"], "both streams (their order is the engine's)"
    assert api.exec_inspect(exec_id)["ExitCode"] == 3
    assert api.archive_stat(cid, "/etc/hostname")["name"] == "hostname"
    assert api.archive_stat(cid, "/no/such/file") is None
    started = time.monotonic()
    try:
        api.wait(cid, timeout=1)  # the container sleeps on: the wait gives up after its timeout
        raise AssertionError("wait returned while the container runs")
    except errors.DockerException:
        assert time.monotonic() - started < 10
    assert api.inspect_container(cid)["State"]["Running"]  # and the client goes on
finally:
    api.remove_container(cid, force=True)
try:
    api.inspect_container(cid)
except errors.NotFound:
    pass
assert "docker" not in sys.modules, "a build's calls loaded docker-py"
try:
    api.inspect_service("no-such-service-here")
except errors.NotFound as exc:
    assert exc.status_code == 404 and "not found" in str(exc)
assert "docker" in sys.modules
engine.close()
print("ok")
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


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
    assert plain._url_and_tls() == ("tcp://127.0.0.1:1", None)
    named = Engine(Target("prod", "tcp://127.0.0.1:1", {k: str(tmp_path / f"{k}.pem") for k in ("ca", "cert", "key")}))
    assert isinstance(named._client_kwargs()["tls"], docker.tls.TLSConfig)
    with pytest.raises(DockerException, match=r"cannot use the TLS files .*ca\.pem"):  # its own files, not garbage
        named._url_and_tls()
    default = Engine(Target.default(Settings(docker_host="tcp://127.0.0.1:2")))
    kwargs = default._client_kwargs()
    assert kwargs["base_url"] == "tcp://127.0.0.1:2" and isinstance(kwargs["tls"], docker.tls.TLSConfig)
    with pytest.raises(DockerException, match="cannot use the TLS files"):  # DOCKER_CERT_PATH's
        default._url_and_tls()
    monkeypatch.delenv("DOCKER_TLS_VERIFY")
    monkeypatch.delenv("DOCKER_CERT_PATH")
    assert default._url_and_tls() == ("tcp://127.0.0.1:2", None)
    for engine in (plain, named, default):
        engine.close()
