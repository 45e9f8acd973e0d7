"""The git context of a working tree: what `conveyor lint/plan/run DIR` builds for.

Asked of the ``git`` command (three short calls, at once) rather than GitPython: importing GitPython
costs more than the calls, and `conveyor lint` should cost what linting costs. A directory that is not a git
repository (or a machine without git) still works: no sha, and the directory's name as the
repository name, so a pipeline can be tried out before the first commit.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from runner.context import Context
from runner.regex import lazy

__all__ = ["context_from_worktree", "git_outputs"]

_USERINFO = lazy(r"^([a-z][a-z0-9+.-]*://)[^/@]*@", re.I)
_HEAD = "%H%x00%an <%ae>%x00%B"  # sha, author, message: NUL cannot occur in any of them


def _git(root: Path, *args: str) -> str | None:
    """Standard output of one git command in ``root``, or None when git fails or is missing."""
    return git_outputs(root, args)[0]


def git_outputs(root: Path, *commands: tuple[str, ...]) -> list[str | None]:
    """Standard output of each git command (None where it failed), all started at once: three short
    calls one after the other were most of the wall time of `conveyor lint` that was not Python."""
    procs = []
    for args in commands:
        try:
            procs.append(subprocess.Popen(["git", "-C", str(root), *args], stdout=subprocess.PIPE,
                                          stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL))
        except OSError:
            procs.append(None)
    outs: list[str | None] = []
    for proc in procs:
        if proc is None:
            outs.append(None)
            continue
        try:
            out, _ = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            outs.append(None)
            continue
        outs.append(out.decode("utf-8", "replace") if proc.returncode == 0 else None)
    return outs


def context_from_worktree(path, *, branch=None, tag=None, event=None, params=None, build_number=None) -> Context:
    """The context of HEAD of the repository at ``path``; explicit arguments win over what git says."""
    root = Path(path).resolve()
    sha = message = author = url = None
    head_branch = None
    name = root.name
    # The top level and the branch ("HEAD" when detached) in one call. It fails outside a repository
    # and before the first commit; then only the top level and the unborn branch are known.
    # HEAD's commit and the origin URL are asked at the same time; outside a repository all fail.
    top_branch, head, origin = git_outputs(
        root, ("rev-parse", "--show-toplevel", "--abbrev-ref", "HEAD"), ("log", "-1", f"--format={_HEAD}"),
        ("config", "--get", "remote.origin.url"))
    lines = (top_branch or "").splitlines()
    if len(lines) < 2 and (top := _git(root, "rev-parse", "--show-toplevel")):
        lines = [top.strip(), (_git(root, "symbolic-ref", "-q", "--short", "HEAD") or "HEAD").strip()]
    if len(lines) >= 2:
        name = Path(lines[0]).name
        head_branch = lines[1] if lines[1] != "HEAD" else None
        if head:
            sha, author, message = head.split("\x00", 2)
            message = message.strip()
        url = _USERINFO.sub(r"\1", origin.strip()) if origin else None  # never leak credentials into CI_REPO_URL
    if tag is not None and branch is None:
        head_branch = None  # a tag build is not on a branch
    return Context.build(
        sha=sha,
        branch=branch if branch is not None else head_branch,
        tag=tag,
        message=message,
        author=author,
        event=event,
        repo_name=name,
        repo_url=url,
        params=params,
        build_number=build_number,
    )
