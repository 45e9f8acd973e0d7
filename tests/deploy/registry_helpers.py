"""Helpers of the registry and promotion tests (the ``registries`` fixture is in conftest.py)."""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

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


def make_image(client, tag: str, text: str, instance: str) -> str:
    """A small local image whose /version holds ``text`` (so each test's bytes differ); its id."""
    dockerfile = f"FROM conveyor-test/busybox:1\nRUN echo {text} > /version\n"
    image, _ = client.images.build(fileobj=io.BytesIO(dockerfile.encode()), tag=tag, pull=False, rm=True,
                                   labels={"io.conveyor.image.instance": instance})
    return image.id
