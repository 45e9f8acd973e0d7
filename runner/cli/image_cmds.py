"""`conveyor images bootstrap`: build the images Conveyor's tests and samples use, without a registry.

No registry is reachable on many build machines (and behind many firewalls), so the images are
made locally: ``conveyor-test/busybox:1`` from Debian's ``busybox-static`` and
``conveyor-test/python:3.11`` with ``debootstrap``. The work is done by runner/images/bootstrap.sh
(also usable without Python); this command runs it and streams its output. Idempotent: images that
exist are left alone unless ``--force``.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from importlib import resources

import click

__all__ = ["register", "bootstrap_script"]


def bootstrap_script() -> str:
    return str(resources.files("runner") / "images" / "bootstrap.sh")


@click.group("images")
def images() -> None:
    """Local images for pipelines on machines without a registry."""


@images.command("bootstrap")
@click.option("--force", is_flag=True, help="Rebuild the images even when they exist.")
def bootstrap(force: bool) -> None:
    """Build conveyor-test/busybox:1 and conveyor-test/python:3.11 locally (needs root for debootstrap)."""
    if shutil.which("bash") is None:
        raise click.ClickException("`bash` is needed to run the bootstrap script; install it and retry")
    if shutil.which("docker") is None:
        raise click.ClickException("the `docker` command is needed to build the images; install the Docker CLI")
    args = ["bash", bootstrap_script(), *(["--force"] if force else [])]
    # The script's output goes straight to the terminal, line by line, as it happens.
    code = subprocess.call(args, stdout=sys.stdout.fileno(), stderr=sys.stderr.fileno())
    if code != 0:
        raise click.ClickException(f"bootstrap failed (exit {code}); the lines above say which step")


def register(group: click.Group) -> None:
    group.add_command(images)
