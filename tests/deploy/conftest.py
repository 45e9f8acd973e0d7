"""Fixtures for the deploy tests: a real single-node swarm, a real store, services named per test.

Every service, network and container a test makes carries ``io.conveyor.instance=<instance>`` and a
name starting with the instance, and only those are removed afterwards.
"""

from __future__ import annotations

import subprocess

import pytest
from deploy_helpers import remove_instance

from runner.engine import Engine, Target
from runner.deploy.service import Provenance
from runner.settings import Settings
from runner.store.db import Store


@pytest.fixture(scope="session")
def swarm_engine(docker_client):
    info = docker_client.info()
    if (info.get("Swarm") or {}).get("LocalNodeState") != "active":
        subprocess.run(["docker", "swarm", "init", "--advertise-addr", "127.0.0.1"], check=True,
                       capture_output=True)
    return docker_client


@pytest.fixture
def swarm(swarm_engine, instance):
    s = Engine(Target("default"))
    yield s
    s.close()  # its threads and connections; the session's client is its own
    remove_instance(swarm_engine, instance)


@pytest.fixture
def settings(tmp_path, instance):
    return Settings(data_dir=tmp_path / "data", instance=instance)


@pytest.fixture
def store(settings):
    s = Store(settings.data_dir)
    yield s
    s.close()


@pytest.fixture
def prov(instance):
    return Provenance(repo="web", build_number=1, commit_sha="abc1234", trigger="test", instance=instance)


from registry_helpers import registries  # noqa: E402,F401 - the fixture, shared with tests/server
