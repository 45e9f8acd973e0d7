"""`conveyor images bootstrap` against the real engine: idempotent, the images it promises exist."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import BUSYBOX, PYTHON


def test_bootstrap_is_idempotent_and_leaves_both_images(docker_client):
    before = {name: docker_client.images.get(name).id for name in (BUSYBOX,)}
    result = subprocess.run([sys.executable, "-m", "runner", "images", "bootstrap"],
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr
    assert f"{BUSYBOX} present" in result.stdout
    for name in (BUSYBOX, PYTHON):
        docker_client.images.get(name)  # raises when missing
    assert {name: docker_client.images.get(name).id for name in before} == before  # not rebuilt


def test_help_names_the_images():
    result = subprocess.run([sys.executable, "-m", "runner", "images", "bootstrap", "--help"],
                            capture_output=True, text=True)
    assert result.returncode == 0 and "conveyor-test/busybox:1" in result.stdout
