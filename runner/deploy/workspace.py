"""Reading the build's workspace from the deploy side: a build context as a tar, or one file.

Where the workspace is decides where it is read from:

- a volume given (the Docker backend keeps the workspace in a volume): a helper container
  is *created* (never started, never given the Docker socket) with the volume mounted read-only,
  and ``get_archive`` copies the path out through the engine API. Files earlier steps wrote are
  included, and it works against a remote engine too.
- otherwise: the workspace directory on the runner's host (the local backend's), tarred here.

Which of the two, and its name, comes from the backend (``Backend.workspace``): nothing here
derives a workspace's name.

Paths are relative to the workspace root and may not leave it.
"""

from __future__ import annotations

import io
import posixpath
import tarfile
import uuid
from pathlib import Path

from runner.engine import DockerClient
from runner.engine import errors as derrors
from runner.engine.labels import LABEL_BUILD, job_resource
from runner.errors import DeployError

__all__ = ["context_tar", "read_text", "HELPER_IMAGE"]

HELPER_IMAGE = "conveyor-test/busybox:1"
MOUNT = "/workspace"


def _clean(rel: str) -> str:
    norm = posixpath.normpath((rel or ".").lstrip("/") or ".")
    if norm == ".." or norm.startswith("../"):
        raise DeployError(f"path {rel!r} leaves the workspace; use a path inside it")
    return norm


def _from_volume(client: DockerClient, volume: str, rel: str, labels: dict[str, str]) -> bytes:
    name = f"conveyor-ctx-{uuid.uuid4().hex[:10]}"
    # Marked as a job resource when it carries the build's labels: a copy a crash cut short is swept.
    marks = job_resource(labels, name) if LABEL_BUILD in labels else labels
    container = client.containers.create(HELPER_IMAGE, ["true"], name=name,
                                         labels={"io.conveyor.managed": "1", **marks},
                                         volumes={volume: {"bind": MOUNT, "mode": "ro"}}, network_disabled=True)
    try:
        path = MOUNT if rel == "." else f"{MOUNT}/{rel}"
        try:
            chunks, _stat = container.get_archive(path + "/.")
        except derrors.NotFound as exc:
            raise DeployError(f"{rel} is not in the workspace; check the build's `context`") from exc
        return b"".join(chunks)
    finally:
        container.remove(force=True)


def _from_dir(root: Path, rel: str) -> bytes:
    base = (root / rel).resolve()
    if base != root.resolve() and root.resolve() not in base.parents:
        raise DeployError(f"path {rel!r} leaves the workspace (through a symlink); use a path inside it")
    if not base.is_dir():
        raise DeployError(f"{rel} is not a directory of the checkout; check the build's `context`")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for path in sorted(base.rglob("*")):
            if ".git" in path.relative_to(base).parts:
                continue  # the repository's history is never part of an image
            tar.add(path, arcname=str(path.relative_to(base)), recursive=False)
    return buf.getvalue()


def context_tar(client: DockerClient, source: Path, volume: str | None, rel: str,
                labels: dict[str, str] | None = None) -> bytes:
    """Blocking: the directory ``rel`` of the workspace as an uncompressed tar."""
    rel = _clean(rel)
    if volume:
        return _from_volume(client, volume, rel, labels or {})
    return _from_dir(Path(source), rel)


def read_text(client: DockerClient, source: Path, volume: str | None, rel: str,
              labels: dict[str, str] | None = None) -> str:
    """Blocking: one text file of the workspace."""
    rel = _clean(rel)
    if not volume:
        path = Path(source) / rel
        if not path.is_file():
            raise DeployError(f"{rel} is not a file of the checkout; check the path")
        return path.read_text()
    parent, name = posixpath.split(rel)
    tar = tarfile.open(fileobj=io.BytesIO(_from_volume(client, volume, parent or ".", labels or {})))
    for member in tar.getmembers():
        if posixpath.normpath(member.name) == name and member.isfile():
            return tar.extractfile(member).read().decode()
    raise DeployError(f"{rel} is not a file of the workspace; check the path")
