"""What builds keep beyond their log: artifacts (``artifacts.py``), caches (``caches.py``), and the
executor's hook that moves them in and out of job workspaces (``hook.py``). See docs/pipeline.md."""

from runner.keep.artifacts import ArtifactError, Artifacts
from runner.keep.caches import Caches, cache_key
from runner.keep.hook import BuildFiles

__all__ = ["Artifacts", "ArtifactError", "Caches", "cache_key", "BuildFiles"]
