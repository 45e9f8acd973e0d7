"""The git context of a working tree (GitPython): what `conveyor lint/plan/run DIR` builds for.

A directory that is not a git repository still works: no sha, and the directory's name as the
repository name, so a pipeline can be tried out before the first commit.
"""

from __future__ import annotations

import re
from pathlib import Path

from runner.context import Context

__all__ = ["context_from_worktree"]

_USERINFO = re.compile(r"^([a-z][a-z0-9+.-]*://)[^/@]*@", re.I)


def context_from_worktree(path, *, branch=None, tag=None, event=None, params=None, build_number=None) -> Context:
    """The context of HEAD of the repository at ``path``; explicit arguments win over what git says."""
    root = Path(path).resolve()
    sha = message = author = url = None
    head_branch = None
    name = root.name
    try:
        import git  # GitPython; imported here so `conveyor lint` without git installed still loads

        repo = git.Repo(root, search_parent_directories=True)
    except Exception:  # not a repository, or no git binary: a plain directory
        repo = None
    if repo is not None:
        if repo.working_tree_dir:
            name = Path(repo.working_tree_dir).name
        try:
            commit = repo.head.commit
            sha, message = commit.hexsha, commit.message.strip()
            author = f"{commit.author.name} <{commit.author.email}>"
        except ValueError:  # no commits yet
            pass
        if not repo.head.is_detached:
            head_branch = repo.head.ref.name
        try:
            url = _USERINFO.sub(r"\1", repo.remotes.origin.url)  # never leak credentials into CI_REPO_URL
        except (AttributeError, IndexError, ValueError):
            url = None
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
