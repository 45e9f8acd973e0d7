"""A build's workspace on an engine: the volume ``conveyor-<build>-ws`` (named here, once), filled
once from the checkout, and the build's bridge network ``conveyor-<build>``.

The volume is filled with ``put_archive`` into a container that is created from an empty image
(``FILLER_IMAGE``, imported from an empty tar: no registry, nothing to pull) and never started, so
a build stage that comes first already has its context and no step ever sees a half copy. Whatever
reads the workspace outside a job asks the backend (``Backend.workspace(build)``), never derives the
name. Blocking functions of an ``Engine``; run each with ``engine.call(fn, engine, ...)``.
"""

from __future__ import annotations

import io
import tarfile
import tempfile
from pathlib import Path

from runner.engine import errors as derrors
from runner.engine.containers import create_container, remove_container
from runner.engine.engine import Engine
from runner.engine.errors import short
from runner.engine.labels import job_resource
from runner.errors import BackendError

__all__ = ["FILLER_IMAGE", "volume_name", "network_name", "create_volume", "fill_volume", "create_network",
           "create_from_filler"]

FILLER_IMAGE = "conveyor-internal/workspace-filler:1"
_EMPTY_TAR = b"\0" * 10240  # a tar archive with no members: two zero blocks, padded to one record


def volume_name(build_id: str) -> str:
    return f"conveyor-{build_id}-ws"


def network_name(build_id: str) -> str:
    return f"conveyor-{build_id}"


def create_volume(engine: Engine, name: str, labels: dict[str, str]) -> None:
    try:
        engine.api.create_volume(name=name, labels=labels)
    except derrors.APIError as exc:
        raise BackendError(f"could not create the build's workspace volume {name} ({short(exc)}); "
                           "check `docker volume ls` and the engine's disk space") from None


def create_network(engine: Engine, name: str, labels: dict[str, str]) -> None:
    try:  # no lookup first: one round trip, and "already exists" (a setup run twice) is success
        engine.api.create_network(name, driver="bridge", labels=labels, check_duplicate=True)
    except derrors.APIError as exc:
        if exc.status_code == 409 and "already exists" in str(exc):
            return
        raise BackendError(f"could not create the build's network {name} ({short(exc)}); the engine may be "
                           "out of address pools: remove unused networks with `docker network ls`") from None


def fill_volume(engine: Engine, volume: str, source: Path, labels: dict[str, str]) -> None:
    """Copy ``source`` into ``volume`` through a container that is created and never started."""
    name = f"{volume}-fill"
    create = dict(command=["fill"], name=name, network_disabled=True, labels=job_resource(labels, name))
    host = dict(binds=[f"{volume}:/workspace:rw"])
    try:
        cid = create_from_filler(engine, create, host)
        try:
            with _tar_of(source) as archive:
                engine.api.put_archive(cid, "/workspace", archive)
        finally:
            remove_container(engine, cid)
    except derrors.APIError as exc:
        raise BackendError(f"could not fill the build's workspace volume {volume} ({short(exc)}); "
                           "check the engine's disk space") from None


def create_from_filler(engine: Engine, create: dict, host: dict) -> str:
    """Create (never to start) a container of the empty filler image; the image is there but once
    per engine, so it is imported only when the create says it is missing. Returns the id."""
    create = dict(create, image=FILLER_IMAGE)
    try:
        return create_container(engine, create, host)
    except derrors.ImageNotFound:
        repo, tag = FILLER_IMAGE.rsplit(":", 1)
        engine.api.import_image_from_data(_EMPTY_TAR, repository=repo, tag=tag)
        return create_container(engine, create, host)


class _tar_of:
    """A tar of ``source`` (everything, ``.git`` included, so `git` works in steps), owned by root,
    written to a temporary file so a big checkout does not sit in memory."""

    def __init__(self, source: Path) -> None:
        self.source = Path(source)
        self.file = tempfile.TemporaryFile()

    def __enter__(self) -> io.IOBase:
        def owned_by_root(info: tarfile.TarInfo) -> tarfile.TarInfo:
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            return info

        with tarfile.open(fileobj=self.file, mode="w") as tar:
            for entry in sorted(self.source.iterdir()):
                tar.add(entry, arcname=entry.name, filter=owned_by_root)
        self.file.seek(0)
        return self.file

    def __exit__(self, *exc: object) -> None:
        self.file.close()
