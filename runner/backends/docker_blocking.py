"""The one seam between the event loop and docker-py: every blocking engine call lives here.

``DockerEngine.call(fn, ...)`` runs one of the ``_blocking_*`` methods on a thread pool of its own
(sized for one streaming step per running job plus the short calls around them: the default pool of
``asyncio.to_thread`` has only ``cpu + 4`` threads, and eight jobs streaming output would starve it).
One low-level ``APIClient`` with a large connection pool is shared by all builds, so a step costs
three short HTTP calls (exec create, start, inspect) and nothing else.
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import functools
import io
import json
import os
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

import docker
from docker import errors as derrors

from runner.backends import files
from runner.errors import BackendError, BackendUnavailable, ImageNotFound

__all__ = ["DockerEngine", "LABEL_BUILD", "LABEL_INSTANCE", "LABEL_EXPIRES", "LABEL_JOB_RESOURCE", "FILLER_IMAGE",
           "expired", "labels_for", "job_resource"]

T = TypeVar("T")
LABEL_BUILD = "io.conveyor.build"
LABEL_INSTANCE = "io.conveyor.instance"
LABEL_EXPIRES = "io.conveyor.expires"
# Set when Conveyor creates a job's container, network or volume, to that resource's own name. The
# sweeps match only resources whose label names themselves: a container inherits its image's labels
# (a Swarm task of an image a build stage made would otherwise look like a job container), but an
# image cannot know the name of a container that does not exist yet.
LABEL_JOB_RESOURCE = "io.conveyor.job-resource"
SWARM_LABELS = "com.docker.swarm."  # a Swarm task's container: never ours to remove, whatever else it carries
# An image with no files at all, imported from an empty tar (no registry, nothing to pull): the
# container that fills a workspace volume is created from it and never started.
FILLER_IMAGE = "conveyor-internal/workspace-filler:1"


class DockerEngine:
    def __init__(self, base_url: str | None = None, threads: int = 64) -> None:
        self.base_url = base_url
        self._pool = concurrent.futures.ThreadPoolExecutor(threads, thread_name_prefix="conveyor-docker")
        self._api: docker.APIClient | None = None

    async def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run a ``_blocking_*`` method on the engine's threads, off the event loop."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, functools.partial(fn, *args, **kwargs))

    @property
    def api(self) -> docker.APIClient:
        if self._api is None:
            kwargs = docker.utils.kwargs_from_env()
            if self.base_url:
                kwargs["base_url"] = self.base_url
            self._api = docker.APIClient(version="auto", max_pool_size=64, **kwargs)
        return self._api

    # -- engine and images -------------------------------------------------------------------

    def _blocking_ping(self) -> dict[str, Any]:
        """The engine's ``info`` (CPU count, ...), or BackendUnavailable saying what to do."""
        try:
            self.api.ping()
            return self.api.info()
        except Exception as exc:  # noqa: BLE001 - any failure here means "no engine"
            where = self.base_url or os.environ.get("DOCKER_HOST") or "the local socket"
            raise BackendUnavailable(
                f"no Docker engine answers at {where} ({exc}); start dockerd, set DOCKER_HOST, "
                "or run with --backend local"
            ) from None

    def _blocking_ensure_image(self, image: str) -> None:
        """Pull policy if-not-present: a local image is used as is; a missing one is pulled once."""
        try:
            self.api.inspect_image(image)
            return
        except derrors.ImageNotFound:
            pass
        repo, tag = _split_image(image)
        try:
            self.api.pull(repo, tag=tag)
            self.api.inspect_image(image)
        except Exception as exc:  # noqa: BLE001 - every pull failure gets the same advice
            raise ImageNotFound(
                f"image {image!r} is not on this engine and could not be pulled ({_short(exc)}); "
                f"run `conveyor images bootstrap` for the conveyor-test images, or "
                f"`docker pull {image}` / `docker load -i FILE` where a registry is out of reach"
            ) from None

    # -- per-build resources -----------------------------------------------------------------

    def _blocking_create_volume(self, name: str, labels: dict[str, str]) -> None:
        try:
            self.api.create_volume(name=name, labels=labels)
        except derrors.APIError as exc:
            raise BackendError(f"could not create the build's workspace volume {name} ({_short(exc)}); "
                               "check `docker volume ls` and the engine's disk space") from None

    def _blocking_create_network(self, name: str, labels: dict[str, str]) -> None:
        try:  # no lookup first: one round trip, and "already exists" (a setup run twice) is success
            self.api.create_network(name, driver="bridge", labels=labels, check_duplicate=True)
        except derrors.APIError as exc:
            if exc.status_code == 409 and "already exists" in str(exc):
                return
            raise BackendError(f"could not create the build's network {name} ({_short(exc)}); the engine may be "
                               "out of address pools: remove unused networks with `docker network ls`") from None

    def _blocking_create_container(self, create: dict[str, Any], host_config: dict[str, Any],
                                   fill: Path | None = None, fill_path: str = "") -> str:
        """Create a container; fill its workspace before it starts, so no step sees a half copy."""
        api = self.api
        cid = api.create_container(host_config=api.create_host_config(**host_config), **create)["Id"]
        if fill is not None:
            try:
                with _tar_of(fill) as archive:
                    api.put_archive(cid, fill_path, archive)
            except Exception:
                self._blocking_remove_container(cid)
                raise
        return cid

    def _blocking_fill_volume(self, volume: str, source: Path, labels: dict[str, str]) -> None:
        """Copy ``source`` into ``volume`` through a container that is created and never started."""
        name = f"{volume}-fill"
        create = dict(image=FILLER_IMAGE, command=["fill"], name=name, network_disabled=True,
                      labels=job_resource(labels, name))
        host = dict(binds=[f"{volume}:/workspace:rw"])
        try:
            try:  # the filler image is there but once per engine: import it only when the create says so
                self._blocking_create_container(create, host, source, "/workspace")
            except derrors.ImageNotFound:
                repo, tag = FILLER_IMAGE.rsplit(":", 1)
                self.api.import_image_from_data(_EMPTY_TAR, repository=repo, tag=tag)
                self._blocking_create_container(create, host, source, "/workspace")
        except derrors.APIError as exc:
            raise BackendError(f"could not fill the build's workspace volume {volume} ({_short(exc)}); "
                               "check the engine's disk space") from None
        self._blocking_remove_container(name)

    def _blocking_start_container(self, cid: str) -> None:
        try:
            self.api.start(cid)
        except Exception:
            self._blocking_remove_container(cid)
            raise

    def _blocking_remove_container(self, cid: str) -> None:
        try:
            self.api.remove_container(cid, force=True, v=False)
        except derrors.NotFound:
            pass
        except derrors.APIError as exc:
            if "already in progress" not in str(exc):
                raise

    def _blocking_oom_kills(self, cid: str) -> int:
        """How many processes the kernel's OOM killer has killed in this container so far.

        The engine sets ``State.OOMKilled`` only when the whole container dies, and here PID 1
        survives a step's OOM kill, so ask the container's memory cgroup (v2 or v1) instead."""
        try:
            exec_id = self.api.exec_create(cid, ["cat", "/sys/fs/cgroup/memory.events",
                                                 "/sys/fs/cgroup/memory/memory.oom_control"])["Id"]
            text = self.api.exec_start(exec_id).decode(errors="replace")
            if self.api.inspect_container(cid)["State"].get("OOMKilled"):
                return 1 << 30
        except derrors.NotFound:
            return 0
        counts = [int(line.split()[1]) for line in text.splitlines()
                  if line.startswith("oom_kill ") and line.split()[1].isdigit()]
        return max(counts, default=0)

    # -- steps -------------------------------------------------------------------------------

    def _blocking_exec_create(self, cid: str, cmd: list[str], env: dict[str, str], workdir: str) -> str:
        try:
            return self.api.exec_create(cid, cmd, environment=env, workdir=workdir)["Id"]
        except derrors.APIError as exc:  # NotFound included: the job's container died or was removed
            raise BackendError(f"the job's container cannot run the step ({_short(exc)}); it may have run out "
                               "of memory or been removed: see `docker events`") from None

    def _blocking_exec_stream(self, exec_id: str, push: Callable[[bytes | None], None],
                              streams: dict[str, Any]) -> None:
        """Start the exec and hand its output to ``push`` until it ends (then ``push(None)``)."""
        try:
            stream = self.api.exec_start(exec_id, stream=True)
            streams[exec_id] = stream
            for chunk in stream:
                push(chunk)
        except Exception:  # noqa: BLE001 - the socket was closed under us: the step is being stopped
            pass
        finally:
            streams.pop(exec_id, None)
            push(None)

    def _blocking_exec_inspect(self, exec_id: str) -> dict[str, Any]:
        return self.api.exec_inspect(exec_id)

    def _blocking_signal_steps(self, cid: str, signal: str) -> None:
        """Signal every process of the job's container except its keep-alive PID 1.

        ``kill -1`` reaches every process the caller may signal except init and itself: as the
        steps of one job never overlap, that is exactly the running step, whatever it spawned.
        """
        try:
            exec_id = self.api.exec_create(cid, ["sh", "-c", f"kill -{signal} -1 2>/dev/null; true"])["Id"]
            self.api.exec_start(exec_id)
        except (derrors.NotFound, derrors.APIError):
            pass  # the container is gone or stopping: so is the step

    # -- files in and out of the workspace (runner/backends/files.py) ------------------------

    def _blocking_export(self, cid: str, workdir: str, globs: list[str], dest: Path) -> int:
        """Write the workspace files that ``globs`` select to the tar ``dest``, read with
        ``get_archive`` from the job's container (running or stopped); return how many."""
        count = 0
        with tarfile.open(dest, mode="w", copybufsize=files.COPY_BUFFER) as out:
            for prefix in files.prefixes(globs):
                real = self._resolve_in_workspace(cid, workdir, prefix)
                if real is None:
                    continue  # nothing there: no match (the keeper says so)
                try:
                    chunks, _stat = self.api.get_archive(cid, _join(workdir, real), chunk_size=1 << 20)
                except derrors.NotFound:
                    continue
                count += files.filter_tar(io.BufferedReader(_ChunkReader(chunks), files.COPY_BUFFER), prefix, globs, out)
        return count

    def _resolve_in_workspace(self, cid: str, workdir: str, rel: str) -> str | None:
        """``rel`` with the symlinks among its components resolved, refusing one that leads out of the
        workspace (the engine would follow it anywhere in the container); None: no such path."""
        root = workdir.rstrip("/")
        parts, done = ([] if rel == "." else rel.split("/")), []
        while parts:
            here = "/".join([*done, parts.pop(0)])
            stat = self._path_stat(cid, _join(workdir, here))
            if stat is None:
                return None
            target = stat.get("linkTarget") or ""  # the engine resolves it fully, as an absolute path
            if not (int(stat.get("mode", 0)) & _GO_SYMLINK) or not target:
                done = here.split("/")
            elif target == root or target.startswith(root + "/"):
                done = [p for p in target[len(root) + 1:].split("/") if p]
            else:
                raise files.WorkspacePathError(f"{here} is a symlink to {target}, outside the workspace; "
                                               "artifacts and caches only keep files inside it")
        return "/".join(done) or "."

    def _path_stat(self, cid: str, path: str) -> dict | None:
        res = self.api.head(self.api._url("/containers/{0}/archive", cid), params={"path": path})
        if res.status_code == 404:
            return None
        self.api._raise_for_status(res)
        header = res.headers.get("X-Docker-Container-Path-Stat")
        return json.loads(base64.b64decode(header)) if header else {}

    def _blocking_import(self, cid: str, workdir: str, archive: Path) -> None:
        """Unpack the tar ``archive`` (checked: nothing in it may leave the workspace) into the
        workspace through the job's container."""
        with tarfile.open(archive) as tar:
            for _member in files.safe_members(tar):
                pass
        with open(archive, "rb") as data:
            if not self.api.put_archive(cid, workdir, data):
                raise BackendError(f"the engine refused to unpack files into {workdir}")

    # -- teardown and sweeps -----------------------------------------------------------------

    def _blocking_remove_job_resources(self, selector: str,
                                       keep: Callable[[dict[str, str]], bool] = lambda labels: False) -> int:
        """Remove the job containers, then networks, then volumes whose labels match ``selector``
        (``key=value``) unless ``keep``. Only what Conveyor created as a job resource is touched:
        its ``io.conveyor.job-resource`` label names the resource itself, and it is no Swarm task."""
        api, removed = self.api, 0
        filters = {"label": [LABEL_JOB_RESOURCE, selector]}
        for c in api.containers(all=True, filters=filters):
            labels = c.get("Labels") or {}
            names = [n.lstrip("/") for n in c.get("Names") or []]
            if _is_job_resource(labels, names) and not keep(labels):
                self._blocking_remove_container(c["Id"])
                removed += 1
        for n in api.networks(filters=filters):
            labels = n.get("Labels") or {}
            if _is_job_resource(labels, [n["Name"]]) and not keep(labels):
                removed += _ignore_missing(api.remove_network, n["Id"])
        for v in api.volumes(filters=filters).get("Volumes") or []:
            labels = v.get("Labels") or {}
            if _is_job_resource(labels, [v["Name"]]) and not keep(labels):
                removed += _ignore_missing(api.remove_volume, v["Name"], force=True)
        return removed

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        if self._api is not None:
            self._api.close()


_GO_SYMLINK = 1 << 27  # os.ModeSymlink in the engine's path stat


def _join(workdir: str, rel: str) -> str:
    return workdir if rel == "." else f"{workdir.rstrip('/')}/{rel}"


class _ChunkReader(io.RawIOBase):
    """A file-like view of ``get_archive``'s chunks, for a streaming ``tarfile`` (nothing in memory
    beyond one chunk; a chunk is read through a memoryview, never re-sliced into copies)."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks, self._rest, self._at = iter(chunks), memoryview(b""), 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        while self._at >= len(self._rest):
            try:
                self._rest, self._at = memoryview(next(self._chunks)), 0
            except StopIteration:
                return 0
        n = min(len(buffer), len(self._rest) - self._at)
        buffer[:n] = self._rest[self._at:self._at + n]
        self._at += n
        return n


def _is_job_resource(labels: dict[str, str], names: list[str]) -> bool:
    if any(key.startswith(SWARM_LABELS) for key in labels):
        return False
    return labels.get(LABEL_JOB_RESOURCE) in names


def job_resource(labels: dict[str, str], name: str) -> dict[str, str]:
    """``labels`` plus the mark that makes the resource called ``name`` one the sweeps may remove."""
    return {**labels, LABEL_JOB_RESOURCE: name}


def expired(labels: dict[str, str], now: float | None = None) -> bool:
    try:
        return float(labels.get(LABEL_EXPIRES, "inf")) < (time.time() if now is None else now)
    except ValueError:
        return True


def _ignore_missing(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> int:
    for attempt in range(5):
        try:
            fn(*args, **kwargs)
            return 1
        except derrors.NotFound:
            return 0
        except derrors.APIError as exc:  # still in use by a container the engine is removing: retry
            if attempt == 4:
                raise BackendError(f"could not remove {args[0]}: {_short(exc)}; "
                                   "the next `conveyor run` or the server's sweep removes it") from None
            time.sleep(0.2 * (attempt + 1))
    return 0


_EMPTY_TAR = b"\0" * 10240  # a tar archive with no members: two zero blocks, padded to one record


def _split_image(image: str) -> tuple[str, str]:
    if "@" in image:
        return image, None  # type: ignore[return-value]
    name, sep, tag = image.rpartition(":")
    if sep and "/" not in tag:
        return name, tag
    return image, "latest"


def _short(exc: Exception) -> str:
    text = getattr(exc, "explanation", None) or str(exc)
    return str(text).strip().splitlines()[0][:300] if text else type(exc).__name__


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


def labels_for(build_id: str, instance: str, ttl: float, extra: Iterable[tuple[str, str]] = ()) -> dict[str, str]:
    labels = dict(extra)
    labels.update({LABEL_BUILD: build_id, LABEL_INSTANCE: instance, LABEL_EXPIRES: str(int(time.time() + ttl))})
    return labels
