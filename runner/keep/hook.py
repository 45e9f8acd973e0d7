"""``BuildFiles``: the executor's ``JobFiles`` for one build (runner/executor/files.py).

Before a job's first step: its caches (policy pull or pull-push; the key, then its fallback keys)
and the artifacts of the jobs it ``needs`` are unpacked into the workspace. After its steps:
artifacts by ``when``, JUnit report files (handed to ``on_reports``), and, after a success, caches
(policy push or pull-push). A refused artifact (a symlink out of the workspace, the size cap) fails
the job; a cache or report that goes wrong is a build warning, never a failure.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import tarfile
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from runner.backends.base import Backend, JobHandle
from runner.backends.files import FilesTooLargeError, TooManyFilesError
from runner.errors import ConveyorError
from runner.executor.files import Kept
from runner.keep.artifacts import MAX_FILES, Artifacts
from runner.keep.caches import Caches, cache_key
from runner.plan import Job

__all__ = ["BuildFiles", "REPORTS_LIMIT"]

log = logging.getLogger("conveyor.keep")
REPORTS_LIMIT = 64 * 1024 * 1024  # bytes of report files read per job: a report is text, not a dump
REPORTS_FILES = 1000  # report files read per job: each is parsed and its problems listed, empty or not
_WHEN = {"on_success": ("success",), "on_failure": ("failure", "timed_out", "interrupted"),
         "always": ("success", "failure", "timed_out", "interrupted")}

OnReports = Callable[[int, str, Mapping[str, bytes]], None]  # (build id, job, {path: contents}); blocking


@dataclass
class BuildFiles:
    artifacts: Artifacts
    caches: Caches
    build_id: int
    uid: str
    namespace: str  # the caches' namespace: the repository's, or its forks'
    checkout: Path  # the build's commit, which `key: {files}` hashes
    on_reports: OnReports | None = None

    async def before_steps(self, backend: Backend, handle: JobHandle) -> tuple[str, ...]:
        job, warnings = handle.job, []
        for cache in job.cache:
            if cache.policy == "push":
                continue
            try:
                await self._restore_cache(backend, handle, cache)
            except Exception as exc:  # noqa: BLE001 - a job runs (slower) without its cache
                warnings.append(f"job {job.name!r}: cache not restored: {_say(exc)}")
        if job.needs:
            async with _scratch("conveyor-needs-") as tmp:
                archive = tmp / "needs.tar"
                count = await asyncio.to_thread(self.artifacts.pack, self.build_id, self.uid, list(job.needs), archive)
                if count:
                    await backend.import_files(handle, archive)
        return tuple(warnings)

    async def _restore_cache(self, backend: Backend, handle: JobHandle, cache) -> None:
        key = await asyncio.to_thread(cache_key, cache, self.checkout)
        found = await asyncio.to_thread(self.caches.find, self.namespace, [key, *cache.fallback_keys])
        if found is not None:
            await backend.import_files(handle, found[1])
            log.info("job %s: cache %r restored from %r", handle.job.name, key, found[0])

    async def after_steps(self, backend: Backend, handle: JobHandle, status: str) -> Kept:
        job, warnings, failure = handle.job, [], None
        keeps = (job.artifacts and status in _WHEN[job.artifacts.when]) or (job.reports and job.reports.junit) \
            or any(c.policy != "pull" for c in job.cache if status == "success")
        if not keeps:  # most jobs: no scratch directory (two trips to a thread) for nothing
            return Kept()
        async with _scratch("conveyor-keep-") as tmp:
            if job.artifacts and status in _WHEN[job.artifacts.when]:
                try:
                    await self._save_artifacts(backend, handle, tmp / "artifacts.tar")
                except ConveyorError as exc:
                    failure = f"artifacts refused: {exc}"
            if job.reports and job.reports.junit and self.on_reports is not None:
                try:
                    await self._collect_reports(backend, handle, tmp / "reports.tar")
                except Exception as exc:  # noqa: BLE001 - a report never fails the job that made it
                    warnings.append(f"job {job.name!r}: test reports not read: {_say(exc)}")
            for i, cache in enumerate(job.cache if status == "success" else ()):
                if cache.policy == "pull":
                    continue
                try:
                    await self._save_cache(backend, handle, cache, tmp / f"cache-{i}.tar")
                except Exception as exc:  # noqa: BLE001 - the next build runs without it
                    warnings.append(f"job {job.name!r}: cache not saved: {_say(exc)}")
        return Kept(failure=failure, warnings=tuple(warnings))

    async def _save_artifacts(self, backend: Backend, handle: JobHandle, archive: Path) -> None:
        spec = handle.job.artifacts
        try:  # bounded while copying: a sparse file passes the workspace limit, not this one
            await backend.export_files(handle, spec.paths, archive, limit=self.artifacts.limit, max_files=MAX_FILES)
        except TooManyFilesError as exc:
            raise self.artifacts.too_many(handle.job.name, exc) from None
        except FilesTooLargeError as exc:
            raise self.artifacts.past_limit(handle.job.name, exc) from None
        now = time.time()
        expires = now + spec.expire_in if spec.expire_in is not None else None
        await asyncio.to_thread(self.artifacts.save, self.build_id, self.uid, handle.job.name, archive, now, expires)

    async def _collect_reports(self, backend: Backend, handle: JobHandle, archive: Path) -> None:
        job: Job = handle.job
        try:
            if not await backend.export_files(handle, job.reports.junit, archive, limit=REPORTS_LIMIT,
                                              max_files=REPORTS_FILES):
                return
        except TooManyFilesError as exc:
            raise ValueError(f"{exc}; a job's reports are read from at most {REPORTS_FILES:,} files: select fewer "
                             "(e.g. one file per test run)") from None
        except FilesTooLargeError as exc:
            raise ValueError(f"{exc}, over the {REPORTS_LIMIT // (1024 * 1024)} MiB read of a job's reports; "
                             "keep fewer of them") from None
        found = await asyncio.to_thread(_read_files, archive, REPORTS_LIMIT)
        await asyncio.to_thread(self.on_reports, self.build_id, job.name, found)

    async def _save_cache(self, backend: Backend, handle: JobHandle, cache, archive: Path) -> None:
        key = await asyncio.to_thread(cache_key, cache, self.checkout)
        try:  # uncompressed: what a restore would write back into a workspace
            if not await backend.export_files(handle, cache.paths, archive, limit=self.caches.limit):
                return  # nothing to keep: an empty archive would hide a fallback key's older cache
        except FilesTooLargeError as exc:
            raise ValueError(f"{exc}, over the cache limit; cache fewer paths, or raise cache_limit "
                             "(CONVEYOR_CACHE_LIMIT)") from None
        await asyncio.to_thread(self.caches.save, self.namespace, key, archive)


@contextlib.asynccontextmanager
async def _scratch(prefix: str) -> AsyncIterator[Path]:
    """A temporary directory made and removed in a thread: removing a tar of gigabytes takes the
    file system a while, which the event loop must not wait for."""
    tmp = Path(await asyncio.to_thread(tempfile.mkdtemp, prefix=prefix))
    try:
        yield tmp
    finally:
        await asyncio.to_thread(shutil.rmtree, tmp, True)


def _read_files(archive: Path, limit: int) -> dict[str, bytes]:
    out, total = {}, 0
    with tarfile.open(archive) as tar:
        for member in tar:
            if not member.isfile():
                continue
            total += member.size
            if total > limit:
                raise ValueError(f"the report files pass {limit // (1024 * 1024)} MiB; keep fewer of them")
            out[member.name] = tar.extractfile(member).read()
    return out


def _say(exc: Exception) -> str:
    return str(exc) if isinstance(exc, ConveyorError) else f"{type(exc).__name__}: {exc}"
