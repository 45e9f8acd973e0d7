"""A bare mirror per repository in the data directory; a build's source is checked out from it.

Fetching into one mirror and cloning locally from it (hard links) makes a build's checkout cheap and
keeps network fetches to one per push. GitPython calls block, so every public coroutine here crosses
into a thread at one seam, ``_blocking``; a lock per mirror keeps two fetches of one repository from
racing on its refs.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import shutil
import threading
from pathlib import Path

import git

from runner.errors import SourceError

__all__ = ["Mirror", "PIPELINE_FILE", "PIPELINE_DIR"]

PIPELINE_FILE = ".conveyor.yml"
PIPELINE_DIR = ".conveyor"
_SHA = re.compile(r"[0-9a-f]{7,40}")
_locks: dict[Path, threading.Lock] = {}
_locks_guard = threading.Lock()


def _lock_for(path: Path) -> threading.Lock:
    with _locks_guard:
        return _locks.setdefault(path, threading.Lock())


async def _blocking(fn, *args):
    """The one seam where GitPython's blocking calls leave the event loop."""
    return await asyncio.to_thread(fn, *args)


class Mirror:
    """The mirror of one repository (``source``: a clone URL or a local path)."""

    def __init__(self, data_dir: Path, name: str, source: str) -> None:
        safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", name)[:60]
        digest = hashlib.sha256(source.encode()).hexdigest()[:10]
        self.path = Path(data_dir) / "mirrors" / f"{safe}-{digest}.git"
        self.source = source

    # -- coroutines for the server ------------------------------------------------------------

    async def fetch(self, sha: str, ref: str | None = None) -> None:
        await _blocking(self.fetch_sync, sha, ref)

    async def checkout(self, sha: str, dest: Path) -> Path:
        return await _blocking(self.checkout_sync, sha, dest)

    async def has_pipeline(self, sha: str) -> bool:
        return await _blocking(self.has_pipeline_sync, sha)

    # -- the blocking work ----------------------------------------------------------------------

    def _repo(self) -> git.Repo:
        if (self.path / "HEAD").exists():
            return git.Repo(self.path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        repo = git.Repo.init(self.path, bare=True)
        with repo.config_writer() as cfg:
            cfg.set_value('remote "origin"', "url", self.source)
            # Every ref, pull/merge-request heads included, so a pull request's sha is here too.
            cfg.set_value('remote "origin"', "fetch", "+refs/*:refs/*")
            cfg.set_value('remote "origin"', "mirror", "true")
        return repo

    def _has(self, repo: git.Repo, sha: str) -> bool:
        try:
            repo.git.cat_file("-e", f"{sha}^{{commit}}")
            return True
        except git.GitCommandError:
            return False

    def _fetch_all(self, repo: git.Repo) -> None:
        """Every ref of the source into the mirror (call it holding the mirror's lock)."""
        try:
            repo.git.fetch("--prune", "--quiet", "origin")
        except git.GitCommandError as exc:
            raise SourceError(
                f"cannot fetch {self.source}: {exc.stderr.strip() or exc}; check the repository's url/path "
                "and that this host may read it"
            ) from exc

    def fetch_sync(self, sha: str, ref: str | None = None) -> None:
        """Make sure commit ``sha`` is in the mirror: fetch all refs, then the sha itself if needed."""
        if not _SHA.fullmatch(sha or ""):
            raise SourceError(f"{sha!r} is not a commit sha; a webhook or --sha must name a hex commit id")
        with _lock_for(self.path):
            repo = self._repo()
            if self._has(repo, sha):
                return
            self._fetch_all(repo)
            if not self._has(repo, sha):
                try:  # a sha no ref points at any more (force-pushed) may still be fetchable by id
                    repo.git.fetch("--quiet", "origin", sha)
                except git.GitCommandError:
                    pass
            if not self._has(repo, sha):
                raise SourceError(f"commit {sha} is not in {self.source} (force-pushed away?); push it again")

    def resolve_sync(self, ref: str) -> str:
        """Fetch, then the commit sha that ``ref`` (refs/heads/main, refs/tags/v1) points at."""
        with _lock_for(self.path):
            repo = self._repo()
            self._fetch_all(repo)
            try:
                return repo.git.rev_parse("--verify", "--quiet", f"{ref}^{{commit}}").strip()
            except git.GitCommandError:
                short = ref.split("/", 2)[-1]
                raise SourceError(f"{short!r} is not a branch or tag of {self.source}; name one that exists") from None

    def checkout_sync(self, sha: str, dest: Path) -> Path:
        """Check commit ``sha`` out into ``dest`` (made fresh), detached, with its own .git."""
        dest = Path(dest)
        if dest.exists():
            shutil.rmtree(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        try:
            git.Repo.clone_from(str(self.path), str(dest), no_checkout=True, local=True)
            work = git.Repo(dest)
            work.git.checkout("--quiet", "--detach", sha)
        except git.GitCommandError as exc:
            raise SourceError(f"cannot check out {sha} from the mirror {self.path}: {exc.stderr.strip()}") from exc
        return dest

    def pipeline_texts_sync(self, sha: str) -> dict[str, str]:
        """The pipeline files of commit ``sha`` (path -> text), chosen as ``find_pipeline_files``
        chooses them, read from the mirror without a checkout."""
        tree = git.Repo(self.path).commit(sha).tree
        names = {item.name: item for item in tree}
        for name in (PIPELINE_FILE, ".conveyor.yaml"):
            if name in names and names[name].type == "blob":
                return {name: names[name].data_stream.read().decode("utf-8", "replace")}
        folder = names.get(PIPELINE_DIR)
        if folder is None or folder.type != "tree":
            return {}
        return {f"{PIPELINE_DIR}/{b.name}": b.data_stream.read().decode("utf-8", "replace")
                for b in sorted(folder, key=lambda b: b.name) if b.type == "blob" and b.name.endswith((".yml", ".yaml"))}

    def has_pipeline_sync(self, sha: str) -> bool:
        """Whether ``sha`` has a pipeline where ``runner.dsl.find_pipeline_files`` looks:
        ``.conveyor.yml`` / ``.conveyor.yaml``, or ``.conveyor/*.yml`` / ``*.yaml``."""
        commit = git.Repo(self.path).commit(sha)
        tree = commit.tree
        names = {item.name: item for item in tree}
        if any(n in names and names[n].type == "blob" for n in (PIPELINE_FILE, ".conveyor.yaml")):
            return True
        folder = names.get(PIPELINE_DIR)
        return bool(folder is not None and folder.type == "tree" and
                    any(b.type == "blob" and b.name.endswith((".yml", ".yaml")) for b in folder))
