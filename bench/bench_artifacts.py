"""Benchmark of artifacts and caches (issue 10, "Speed"). Prints figures and ratios against floors
measured in this run, with the same tree, the same engine and the same kind of container.

    python bench/bench_artifacts.py                 # 200 MB in 2,000 files (needs the engine)
    python bench/bench_artifacts.py --mb 50         # a smaller tree, 2,000 files still

- save: ``export_files`` from a job's container + storing blobs (sha256 each) vs ``docker cp`` of
  the same tree out of the same container into a host directory. Goal: ratio <= 1.3.
- restore: packing the blobs + ``import_files`` into a fresh job container vs ``docker cp`` of the
  host tree into a fresh container. Goal: ratio <= 1.3.
- cache restore: ``Caches.find`` + ``import_files`` of the compressed archive vs ``docker exec -i
  CID tar -xzf -`` of the same archive into a fresh container. Goal: ratio <= 1.3.
- python-app: two builds of the python-app sample (copied, with a ``cache:`` on its unit job and a
  step that byte-compiles the standard library into the cache, the kind of work a dependency cache
  saves); the second build restores it. Both durations printed.
Not a test: it never fails on speed, it reports.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from runner.backends.base import BuildRef  # noqa: E402
from runner.backends.docker import DockerBackend  # noqa: E402
from runner.build import BuildRequest, create_build, run_build  # noqa: E402
from runner.keep import Artifacts, Caches  # noqa: E402
from runner.plan import Job, Step  # noqa: E402
from runner.settings import Settings  # noqa: E402
from runner.store.db import Store  # noqa: E402

IMAGE = "conveyor-test/busybox:1"
FILES = 2000


def _timed(fn, *args, **kwargs):
    began = time.perf_counter()
    fn(*args, **kwargs)
    return time.perf_counter() - began


async def _atimed(coro):
    began = time.perf_counter()
    await coro
    return time.perf_counter() - began


def _sh(*cmd, stdin=None) -> None:
    subprocess.run(cmd, check=True, capture_output=True, stdin=stdin)


async def _job(backend, build):
    return await backend.start_job(build, Job("bench", IMAGE, (Step("s", "true"),)))


async def files_round(backend, store, tmp: Path, mb: int, instance: str) -> dict[str, float]:
    size = mb * 1024 * 1024 // FILES
    build_id = create_build(store, BuildRequest(repo="bench", event="manual"), instance)  # rows need a build
    row = store.read().execute("SELECT uid FROM builds WHERE id = ?", (build_id,)).fetchone()
    build = BuildRef(row[0], tmp / "src", instance)
    await backend.setup(build)
    out: dict[str, float] = {}
    try:
        handle = await _job(backend, build)
        make = (f"mkdir -p tree && i=0; while [ $i -lt {FILES} ]; do "
                f"head -c {size} /dev/urandom > tree/f$i.bin; i=$((i+1)); done")
        async for _ in backend.exec_step(handle, Step("make", make), {}):
            pass
        cid = handle.data.id
        arts = Artifacts(store, 0)
        archive = tmp / "out.tar"
        uid = build.id

        async def save():
            await backend.export_files(handle, ["tree/"], archive)
            await asyncio.to_thread(arts.save, build_id, uid, f"job-{uuid.uuid4().hex[:6]}", archive, time.time(), None)

        out["save"] = await _atimed(save())
        floor_dir = tmp / f"cp-{uuid.uuid4().hex[:6]}"
        out["save floor"] = _timed(_sh, "docker", "cp", f"{cid}:/workspace/tree", str(floor_dir))
        job = store.read().execute("SELECT job FROM artifacts LIMIT 1").fetchone()[0]
        await backend.stop_job(handle)

        fresh = await _job(backend, build)

        async def restore():
            tar = tmp / "in.tar"
            await asyncio.to_thread(arts.pack, build_id, uid, [job], tar)
            await backend.import_files(fresh, tar)

        out["restore"] = await _atimed(restore())
        await backend.stop_job(fresh)
        floor = await _job(backend, build)
        out["restore floor"] = _timed(_sh, "docker", "cp", str(floor_dir), f"{floor.data.id}:/workspace/tree2")
        await backend.stop_job(floor)

        caches = Caches(store, 0)
        await asyncio.to_thread(caches.save, "bench", "pip", archive)
        cached = await asyncio.to_thread(caches.find, "bench", ["pip"])
        fresh = await _job(backend, build)

        async def cache_restore():
            found = await asyncio.to_thread(caches.find, "bench", ["pip"])
            await backend.import_files(fresh, found[1])

        out["cache restore"] = await _atimed(cache_restore())
        await backend.stop_job(fresh)
        floor = await _job(backend, build)
        with open(cached[1], "rb") as data:
            out["cache floor"] = _timed(_sh, "docker", "exec", "-i", floor.data.id, "tar", "-xzf", "-", "-C",
                                        "/workspace", stdin=data)
        await backend.stop_job(floor)
        shutil.rmtree(floor_dir, ignore_errors=True)
        shutil.rmtree(store.data_dir / "artifacts", ignore_errors=True)
        shutil.rmtree(store.data_dir / "caches", ignore_errors=True)
        store.write(lambda c: c.execute("DELETE FROM caches"))
        store.write(lambda c: c.execute("DELETE FROM artifacts"))
    finally:
        await backend.teardown(build)
    return out


PYTHON_CACHE = """\
        env: {PYTHONPYCACHEPREFIX: /workspace/.cache/pycache}
        cache:
          key: {files: [calc/__init__.py], prefix: pycache}
          paths: [.cache/pycache]
"""


async def python_app(settings: Settings, tmp: Path) -> tuple[float, float]:
    repo = tmp / "python-app"
    shutil.copytree(ROOT / "sample-repos" / "python-app", repo)
    text = (repo / ".conveyor.yml").read_text()
    text = text.replace("      - name: unit\n", "      - name: unit\n" + PYTHON_CACHE, 1)
    text = text.replace("          - python3 --version\n",
                        "          - python3 --version\n          - python3 -m compileall -q /usr/lib/python3.11\n", 1)
    (repo / ".conveyor.yml").write_text(text)
    backend = DockerBackend(settings)
    times = []
    with Store(settings.data_dir) as store:
        for _ in range(2):
            build_id = create_build(store, BuildRequest(repo="python-app", event="manual", branch="main"),
                                    settings.instance)
            began = time.perf_counter()
            status = await run_build(store, settings, build_id, repo, backend=backend)
            times.append(time.perf_counter() - began)
            if status != "success":
                raise SystemExit(f"the python-app build ended {status}; is conveyor-test/python:3.11 there?")
    await backend.sweep(keep=[])
    backend.close()
    return times[0], times[1]


async def main(mb: int, rounds: int) -> None:
    instance = "bench-" + uuid.uuid4().hex[:8]
    with tempfile.TemporaryDirectory(prefix="conveyor-bench-") as name:
        tmp = Path(name)
        (tmp / "src").mkdir()
        settings = Settings(data_dir=tmp / "data", instance=instance)
        backend = DockerBackend(settings)
        results: dict[str, list[float]] = {}
        with Store(tmp / "store") as store:
            for _ in range(rounds):
                for key, value in (await files_round(backend, store, tmp, mb, instance)).items():
                    results.setdefault(key, []).append(value)
        await backend.sweep(keep=[])
        backend.close()
        med = {k: statistics.median(v) for k, v in results.items()}
        print(f"artifacts and caches: {mb} MB in {FILES} files, median of {rounds} round(s)")
        for what, floor in (("save", "save floor"), ("restore", "restore floor"), ("cache restore", "cache floor")):
            print(f"  {what:14s} {med[what]:6.2f}s   floor {med[floor]:6.2f}s   ratio {med[what] / med[floor]:.2f}"
                  f"  (goal <= 1.30)")
        first, second = await python_app(settings, tmp)
        print(f"  python-app     first build {first:.2f}s, second build (cache hit) {second:.2f}s, "
              f"ratio {second / first:.2f} (goal < 1.00)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mb", type=int, default=200, help="size of the tree in MB (default 200)")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    asyncio.run(main(args.mb, args.rounds))
