"""Fixtures shared by every test area. Real parts only: a real engine, real git, real SQLite.

Tests that need the Docker engine use the ``docker_client`` fixture (or the ``docker`` marker) and
are skipped, with the reason, only where no engine answers; CI always has one.
"""

from __future__ import annotations

import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BUSYBOX = "conveyor-test/busybox:1"
PYTHON = "conveyor-test/python:3.11"


@pytest.fixture(scope="session")
def docker_client():
    docker = pytest.importorskip("docker")
    try:
        client = docker.from_env()
        client.ping()
    except Exception as exc:  # noqa: BLE001
        pytest.skip(f"no Docker engine answers ({exc}); start dockerd to run this test")
    for image in (BUSYBOX,):
        try:
            client.images.get(image)
        except docker.errors.ImageNotFound:
            pytest.fail(f"image {image} is missing: run `conveyor images bootstrap` (or .ci/run) first")
    return client


@pytest.fixture
def instance() -> str:
    """A runner instance name unique to this test, so sweeps never touch another test's resources."""
    return "t" + uuid.uuid4().hex[:10]


def make_git_repo(dest: Path, files: dict[str, str] | None = None, sample: str | None = None,
                  branch: str = "main", message: str = "initial commit") -> Path:
    """A real git repository at ``dest``: a copy of ``sample-repos/<sample>`` and/or ``files``, committed."""
    dest.mkdir(parents=True, exist_ok=True)
    if sample:
        shutil.copytree(ROOT / "sample-repos" / sample, dest, dirs_exist_ok=True)
    for name, text in (files or {}).items():
        path = dest / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    git = ["git", "-C", str(dest), "-c", "user.name=Test", "-c", "user.email=test@example.invalid"]
    subprocess.run([*git, "init", "-q", "-b", branch], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", message], check=True)
    return dest


@pytest.fixture
def git_repo(tmp_path):
    """Factory: ``git_repo(files={...}, sample="hello")`` -> path of a fresh committed repository."""
    counter = iter(range(1000))

    def factory(files: dict[str, str] | None = None, sample: str | None = None, **kw) -> Path:
        return make_git_repo(tmp_path / f"repo{next(counter)}", files, sample, **kw)

    return factory
