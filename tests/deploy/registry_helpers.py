"""Helpers of the registry and promotion tests, and the ``registries`` fixture (tests/deploy and
tests/server import it)."""

from __future__ import annotations

import os
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml


@dataclass(frozen=True)
class Registries:
    open: str  # 127.0.0.1:PORT, no auth
    auth: str  # 127.0.0.1:PORT, htpasswd basic auth
    user: str
    password: str


def write_targets(path: Path, data: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture(scope="session")
def registries(tmp_path_factory):
    """The two local registries (no auth, basic auth) as ``.ci/run`` started them, or started here
    by the same script when the tests run on their own. A missing ``docker-registry`` fails."""
    started: list[int] = []
    if not os.environ.get("CONVEYOR_TEST_REGISTRY"):
        folder = tmp_path_factory.mktemp("registries")
        script = Path(__file__).resolve().parents[2] / ".ci" / "registry"
        out = subprocess.run(["bash", str(script), str(folder)], capture_output=True, text=True)
        assert out.returncode == 0, f"could not start the test registries: {out.stderr}"
        for line in out.stdout.splitlines():
            key, _, value = line.removeprefix("export ").partition("=")
            os.environ[key] = value
        started = [int(p.read_text()) for p in folder.glob("*.pid")]
    yield Registries(os.environ["CONVEYOR_TEST_REGISTRY"], os.environ["CONVEYOR_TEST_REGISTRY_AUTH"],
                     os.environ["CONVEYOR_TEST_REGISTRY_USER"], os.environ["CONVEYOR_TEST_REGISTRY_PASSWORD"])
    for pid in started:
        os.kill(pid, signal.SIGTERM)
