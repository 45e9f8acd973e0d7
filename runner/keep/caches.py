"""Caches between builds: gzip-compressed tars under ``data_dir/caches/``, rows in the store.

A cache lives in a namespace: the repository's, or, for a build from a fork, the repository's fork
namespace, so a fork never writes an archive that a trusted build restores. Its key is the plan's
literal key, or ``prefix-`` plus a hash of the named files at the build's commit. Saving evicts the
least recently used archives until every cache fits under ``limit`` bytes. An archive is written
under a ``.partial`` name and renamed once whole: one that failed (a full disk) is removed at once,
one a killed process left is removed by a later save. Every method blocks (file I/O, the store):
call it in a thread.
"""

from __future__ import annotations

import hashlib
import os
import time
import uuid
import zlib
from pathlib import Path

from runner.plan import Cache
from runner.store import caches as sql
from runner.store.caches import CacheRow
from runner.store.db import Store

__all__ = ["Caches", "cache_key", "namespace"]

_FILE_KEY_CHARS = 16
_STALE = 3600  # seconds since a .partial archive was written to: no save is still writing it
# Builds from forks run code no one with write access has reviewed: together their caches hold at
# most this share of the limit, so a fork's big caches cannot evict the repository's own.
FORKS_SHARE = 0.25


def namespace(repo: str, fork: bool) -> str:
    return f"{repo}#fork" if fork else repo


def cache_key(cache: Cache, checkout: Path) -> str:
    """The cache's key: its literal key, or ``prefix-`` + a hash of ``files`` in the checkout (a
    missing file hashes as missing, so adding it later changes the key)."""
    if cache.key is not None:
        return cache.key
    digest = hashlib.sha256()
    root = checkout.resolve()
    for rel in sorted(cache.files):
        path = (root / rel).resolve()
        digest.update(rel.encode() + b"\0")
        if (path == root or root in path.parents) and path.is_file():
            digest.update(hashlib.sha256(path.read_bytes()).digest())
        else:
            digest.update(b"missing")
    short = digest.hexdigest()[:_FILE_KEY_CHARS]
    return f"{cache.prefix}-{short}" if cache.prefix else short


class Caches:
    def __init__(self, store: Store, limit: int) -> None:
        self.store, self.limit = store, limit
        self.root = store.data_dir / "caches"

    def find(self, ns: str, keys: list[str]) -> tuple[str, Path] | None:
        """The first of ``keys`` with an archive in ``ns``, marked used now; None when none has one."""
        conn = self.store.read()
        for key in keys:
            row = sql.get(conn, ns, key)
            if row is not None and (self.root / row.file).is_file():
                self.store.write(lambda c: sql.touch(c, ns, key, time.time()))
                return key, self.root / row.file
        return None

    def save(self, ns: str, key: str, archive: Path) -> int:
        """Compress the tar ``archive`` as the cache ``key`` of ``ns``, then evict past the limit;
        return its compressed size. ValueError when it alone is over the limit."""
        self.root.mkdir(parents=True, exist_ok=True)
        stem = hashlib.sha256(ns.encode() + b"\0" + key.encode()).hexdigest()[:24]
        name = f"{stem}-{uuid.uuid4().hex[:8]}.tar.gz"  # a new file: a restore may still read the old one
        target, partial = self.root / name, self.root / f"{name}.partial"
        self._drop_stale()
        try:
            with open(archive, "rb") as src, open(partial, "wb") as out:
                # Level 1: dependency caches are mostly compressed already; speed matters more than bytes.
                packer = zlib.compressobj(1, zlib.DEFLATED, 31)
                while chunk := src.read(1 << 20):
                    out.write(packer.compress(chunk))
                out.write(packer.flush())
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
        size = partial.stat().st_size
        forks_limit = int(self.limit * FORKS_SHARE) if self.limit else None
        fork = ns.endswith("#fork")
        if self.limit and size > (forks_limit if fork else self.limit):
            partial.unlink()
            over = (f"over the quarter of the cache limit that builds from forks share ({forks_limit} bytes)" if fork
                    else f"over the cache limit of {self.limit} bytes")
            raise ValueError(f"cache {key!r} is {size} bytes compressed, {over}; "
                             "cache fewer paths, or raise cache_limit (CONVEYOR_CACHE_LIMIT)")
        os.replace(partial, target)
        now = time.time()
        row = CacheRow(ns, key, name, size, now, now)

        def record(conn) -> list[str]:
            old = sql.put(conn, row)
            evicted = sql.evict(conn, self.limit, forks_limit) if self.limit else []
            return [old] * (old is not None) + [r.file for r in evicted]

        try:
            gone = self.store.write(record)
        except BaseException:
            target.unlink(missing_ok=True)  # no row names it
            raise
        for file in gone:
            (self.root / file).unlink(missing_ok=True)
        return size

    def _drop_stale(self) -> None:
        """Remove the ``.partial`` archives of saves a killed process never finished."""
        cutoff = time.time() - _STALE
        for path in self.root.glob("*.partial"):
            try:
                if path.stat().st_mtime < cutoff:
                    path.unlink()
            except FileNotFoundError:
                pass

    def remove(self, ns: str | None, key: str | None) -> list[CacheRow]:
        rows = self.store.write(lambda c: sql.remove(c, ns, key))
        for row in rows:
            (self.root / row.file).unlink(missing_ok=True)
        return rows

    def list(self, ns: str | None = None) -> list[CacheRow]:
        return sql.list_caches(self.store.read(), ns)

