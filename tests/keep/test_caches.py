"""Caches for real: a miss then a hit across builds of a git repository (key from a file's hash),
a new key when that file changes, fallback keys, forks kept apart, and LRU eviction on disk."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from runner.keep.caches import Caches
from runner.plan import Cache
from runner.keep import cache_key
from runner.store import caches as sql
from runner.store.db import Store
from tests.conftest import ROOT

PIPELINE = """\
image: conveyor-test/busybox:1
stages:
  - name: deps
    jobs:
      - name: install
        steps:
          - "if [ -f .cache/pip/wheel ]; then echo HIT $(cat .cache/pip/wheel); else echo MISS; fi"
          - "mkdir -p .cache/pip && echo built-at-$CI_COMMIT_SHA > .cache/pip/wheel"
        cache:
          key: {files: [requirements.txt], prefix: pip}
          fallback_keys: [pip-main]
          paths: [.cache/pip]
"""


def _commit(repo, name: str, text: str) -> str:
    (repo / name).write_text(text)
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.invalid"]
    subprocess.run([*git, "commit", "-qam", f"change {name}"], check=True)
    return subprocess.run([*git, "rev-parse", "HEAD"], check=True, capture_output=True, text=True).stdout.strip()


async def test_a_cache_misses_then_hits_and_a_changed_key_file_misses_again(builds):
    b = await builds(PIPELINE, {"requirements.txt": "requests==2\n", "README": "one\n"})
    first = await b.run()
    assert first.status == "success", first.reason
    assert "MISS" in await b.log(first.id)
    key = cache_key(Cache(paths=(".cache/pip",), key=None, files=("requirements.txt",), prefix="pip"), b.repo)
    assert key.startswith("pip-") and [r.key for r in Caches(b.store, 0).list("app")] == [key]

    sha = _commit(b.repo, "README", "two\n")  # the key's file did not change
    second = await b.run(sha=sha)
    log = await b.log(second.id)
    assert "HIT built-at-" in log and "MISS" not in log

    _commit(b.repo, "requirements.txt", "requests==3\n")  # a new key, no fallback cache yet
    third = await b.run()
    assert "MISS" in await b.log(third.id)
    assert len(Caches(b.store, 0).list("app")) == 2


async def test_a_fork_build_never_writes_a_key_trusted_builds_read(builds):
    b = await builds(PIPELINE, {"requirements.txt": "requests==2\n"})
    fork = await b.run(fork=True)
    assert fork.status == "success" and "MISS" in await b.log(fork.id)
    rows = Caches(b.store, 0).list()
    assert [r.namespace for r in rows] == ["app#fork"]
    trusted = await b.run()
    assert "MISS" in await b.log(trusted.id)  # the fork's archive was not restored
    fork_again = await b.run(fork=True)
    assert "HIT" in await b.log(fork_again.id)  # forks share their own namespace
    assert sorted(r.namespace for r in Caches(b.store, 0).list()) == ["app", "app#fork"]


def _archive(tmp_path, name: str, size: int):
    import io
    import os
    import tarfile

    path = tmp_path / f"{name}.tar"
    with tarfile.open(path, "w") as tar:
        info = tarfile.TarInfo(name)
        info.size = size
        tar.addfile(info, io.BytesIO(os.urandom(size)))  # random: compression keeps its size
    return path


def test_least_recently_used_caches_go_first_under_the_total_limit(tmp_path):
    with Store(tmp_path / "data") as store:
        caches = Caches(store, limit=250_000)
        for name in ("a", "b"):
            caches.save("app", name, _archive(tmp_path, name, 100_000))
        assert caches.find("app", ["a"])[0] == "a"  # used: now newer than b
        caches.save("app", "c", _archive(tmp_path, "c", 100_000))
        assert sorted(r.key for r in caches.list()) == ["a", "c"]
        files = sorted(p.name for p in (tmp_path / "data" / "caches").iterdir())
        assert files == sorted(r.file for r in sql.list_caches(store.read()))  # b's archive is gone too
        try:
            caches.save("app", "huge", _archive(tmp_path, "huge", 300_000))
        except ValueError as exc:
            assert "over the cache limit" in str(exc) and "CONVEYOR_CACHE_LIMIT" in str(exc)
        else:
            raise AssertionError("a cache bigger than the whole limit must be refused")
        assert sorted(r.key for r in caches.list()) == ["a", "c"]


def test_caches_from_forks_share_a_quarter_of_the_limit_and_never_evict_the_repositorys(tmp_path):
    # A fork's build runs code no one with write access reviewed: its big caches used to push the
    # repository's own out of the LRU.
    with Store(tmp_path / "data") as store:
        caches = Caches(store, limit=400_000)
        for name in ("deps", "tools"):
            caches.save("app", name, _archive(tmp_path, name, 100_000))
        for i in range(5):  # each fits the forks' share (100,000 bytes) alone; together they do not
            caches.save("app#fork", f"f{i}", _archive(tmp_path, f"f{i}", 90_000))
        kept = {(r.namespace, r.key) for r in caches.list()}
        assert {("app", "deps"), ("app", "tools")} <= kept
        assert [k for ns, k in kept if ns == "app#fork"] == ["f4"]  # the most recent fork cache only
        with pytest.raises(ValueError, match="quarter of the cache limit that builds from forks share"):
            caches.save("app#fork", "big", _archive(tmp_path, "big", 150_000))
        # The repository's own may be that big, and past the whole limit the forks' go first.
        caches.save("app", "big", _archive(tmp_path, "big", 150_000))
        assert {(r.namespace, r.key) for r in caches.list()} == {("app", "deps"), ("app", "tools"), ("app", "big")}


async def test_a_sparse_file_past_the_limit_is_not_cached_nor_copied_to_the_runner(builds):
    # 2 GiB of holes: nothing in the workspace, 2 GiB of zeros in a tar (and in the workspace it is
    # restored into); refused at the file's header, a warning as a cache that cannot be saved is.
    b = await builds("""\
image: conveyor-test/busybox:1
stages:
  - name: deps
    jobs:
      - name: install
        steps: ["mkdir -p .cache && truncate -s 2G .cache/big.bin"]
        cache: {key: k, paths: [.cache]}
""", cache_limit="1M")
    from tests.keep.test_artifacts import _peak_of_temp_archives

    peak, stop = _peak_of_temp_archives("conveyor-keep-")
    try:
        build = await b.run()
    finally:
        stop.set()
    assert build.status == "success"
    assert build.warnings == ["job 'install': cache not saved: ValueError: the files selected pass 1 MiB at "
                              ".cache/big.bin (2 GiB), over the cache limit; cache fewer paths, or raise cache_limit "
                              "(CONVEYOR_CACHE_LIMIT)"]
    assert peak[0] < 64 * 1024, f"the runner wrote {peak[0]} bytes of an archive it refuses"
    assert Caches(b.store, 0).list() == []


_FULL_DISK = """
import resource, signal, sys
from pathlib import Path
from runner.keep.caches import Caches
from runner.store.db import Store

with Store(Path(sys.argv[1])) as store:
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG, as on a full disk
    resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, resource.RLIM_INFINITY))
    try:
        Caches(store, 0).save("app", "k", Path(sys.argv[2]))
    except OSError as exc:
        print("refused:", exc)
"""


def test_an_archive_that_could_not_be_written_leaves_nothing_behind(tmp_path):
    data = tmp_path / "data"
    with Store(data):
        pass
    archive = _archive(tmp_path, "big", 1_000_000)
    done = subprocess.run([sys.executable, "-c", _FULL_DISK, str(data), str(archive)], cwd=ROOT,
                          env={"PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=60)
    assert "refused: [Errno 27] File too large" in done.stdout, done.stderr
    assert list((data / "caches").iterdir()) == []  # no half archive that no row names, on a disk already full
    # One a killed process left (kill -9 mid-write) goes with the next save once nothing writes to it.
    left = data / "caches" / "0123-abcd.tar.gz.partial"
    left.write_bytes(b"half")
    old = time.time() - 7200
    os.utime(left, (old, old))
    with Store(data) as store:
        Caches(store, 0).save("app", "k", _archive(tmp_path, "small", 1000))
        assert [p.name for p in (data / "caches").iterdir()] == [r.file for r in Caches(store, 0).list()]
