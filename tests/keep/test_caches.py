"""Caches for real: a miss then a hit across builds of a git repository (key from a file's hash),
a new key when that file changes, fallback keys, forks kept apart, and LRU eviction on disk."""

from __future__ import annotations

import subprocess

from runner.keep.caches import Caches
from runner.plan import Cache
from runner.keep import cache_key
from runner.store import caches as sql
from runner.store.db import Store

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
