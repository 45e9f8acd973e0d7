"""What to build, and recording it: a ``BuildRequest`` becomes a ``queued`` build numbered next in its
repository (``create_build``, or ``insert_request`` inside a write transaction the server's queue
shares). Running it is ``runner.build.run_build``'s; this side loads nothing of the executor.
"""

from __future__ import annotations

import os
import time
from dataclasses import field

from runner.settings import new_build_id
from runner.store import builds as q
from runner.store.db import Store
from runner.store.recovery import this_host
from runner.values import Value, frozen

__all__ = ["BuildRequest", "insert_request", "create_build"]


@frozen
class BuildRequest(Value):
    """What to build: the trigger, as stored with the build (the context is made from it)."""

    repo: str
    event: str
    ref: str | None = None
    branch: str | None = None
    tag: str | None = None
    sha: str | None = None
    message: str | None = None
    author: str | None = None
    params: dict[str, str] = field(default_factory=dict)
    trigger: str = "cli"
    pipeline: str | None = None  # the pipeline file, relative to the checkout; None: the default
    repo_url: str | None = None
    before: str | None = None  # a push's previous head: `when.changes` compares before..sha
    target_branch: str | None = None  # a pull request's base branch


def insert_request(conn, request: BuildRequest, instance: str, **extra) -> tuple[int, int]:
    """Insert ``request`` as a ``queued`` build numbered next in its repo, inside a write transaction
    (the server's queue adds its own rows in the same one); return (id, number)."""
    return q.insert_build(
        conn, repo=request.repo, repo_url=request.repo_url, uid=new_build_id(), instance=instance,
        event=request.event, ref=request.ref, branch=request.branch, tag=request.tag, sha=request.sha,
        message=request.message, author=request.author, params=dict(request.params or {}),
        trigger=request.trigger, pipeline=request.pipeline, status="queued", created=time.time(),
        before=request.before, target_branch=request.target_branch, **extra,
    )


def create_build(store: Store, request: BuildRequest, instance: str) -> int:
    """Record a ``queued`` build of this process (one write transaction); return its id."""
    build_id, _number = store.write(
        lambda conn: insert_request(conn, request, instance, pid=os.getpid(), host=this_host()))
    return build_id
