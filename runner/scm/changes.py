"""The files an event changed, for ``when.changes`` (GitPython; blocking: call it in a thread).

Computed before the pipeline is compiled and handed to it in ``Context.changes``, so the language
never runs git. What is compared (docs/pipeline.md):

- a push: ``before..after``; when ``before`` is unknown or all zeros (a new branch), the branch's last
  successful build, else every file counts;
- a pull request: its head against the merge base with the target branch;
- a manual or cron run: every file counts;
- ``conveyor run``: the working tree (untracked files included) against HEAD, or against
  ``--changes-from REF``.
"""

from __future__ import annotations

from pathlib import Path

from runner.context import Changes
from runner.errors import SourceError

__all__ = ["worktree_changes", "event_changes"]

_ZERO = "0" * 40


def _repo(path: Path):
    import git

    try:
        return git.Repo(path, search_parent_directories=True)
    except (git.InvalidGitRepositoryError, git.NoSuchPathError):
        return None


def _names(output: str) -> tuple[str, ...]:
    return tuple(sorted({line for line in output.splitlines() if line}))


def _diff(repo, *revs: str) -> tuple[str, ...]:
    return _names(repo.git.diff("--name-only", "--no-renames", *revs))


def _short(rev: str) -> str:
    return rev[:8] if len(rev) == 40 else rev


def worktree_changes(path: Path, changes_from: str | None = None, at_commit: bool = False) -> Changes:
    """What ``conveyor run`` compares: the working tree (or HEAD with ``--commit``) against HEAD or REF.

    Asked of the ``git`` command, its calls started at once, not of GitPython: this is on the path
    of every `conveyor run` before its first step, and importing GitPython cost more than the calls."""
    from runner.scm.worktree import git_outputs

    base = changes_from or ("HEAD^" if at_commit else "HEAD")
    asks = [("rev-parse", "--show-toplevel"), ("rev-parse", "--verify", "--quiet", f"{base}^{{commit}}"),
            ("diff", "--name-only", "--no-renames", base, *(("HEAD",) if at_commit else ()))]
    if not at_commit:
        asks.append(("ls-files", "--others", "--exclude-standard", "--full-name"))  # untracked files count too
    top, valid, changed, *untracked = git_outputs(Path(path), *asks)
    if top is None:
        return Changes(None, "not a git repository")
    if valid is None:
        if changes_from:
            raise SourceError(f"--changes-from {changes_from!r} is not a commit of this repository; "
                              "name a branch, tag or sha")
        return Changes(None, f"{base} does not exist (no earlier commit)")
    if changed is None:
        raise SourceError(f"git could not compare the working tree with {base}; check `git diff {base}` there")
    if at_commit:
        return Changes(_names(changed), f"HEAD against {base}")
    files = _names("\n".join((changed, *(u or "" for u in untracked))))
    # Paths relative to the directory built when it is below the repository's root.
    below = Path(path).resolve().relative_to(Path(top.strip()).resolve()).as_posix()
    if below != ".":
        files = tuple(f[len(below) + 1:] for f in files if f.startswith(below + "/"))
    return Changes(files, f"the working tree against {base}")


def event_changes(checkout: Path, *, event: str, sha: str | None, before: str | None = None,
                  target_branch: str | None = None, last_good: str | None = None) -> Changes:
    """What a server build compares, from the event and the checkout's history."""
    import git

    if event in ("manual", "cron"):
        return Changes(None, f"a {event} run")
    repo = _repo(Path(checkout))
    if repo is None or not sha:
        return Changes(None, "the commit is unknown")
    try:
        if event == "pull_request" and target_branch:
            for ref in (f"origin/{target_branch}", target_branch):
                try:
                    base = repo.git.merge_base(sha, ref).strip()
                except git.GitCommandError:
                    continue
                return Changes(_diff(repo, base, sha), f"the pull request against {target_branch} "
                               f"(merge base {_short(base)})")
            return Changes(None, f"the target branch {target_branch} is not in the checkout")
        if before and before != _ZERO:
            try:
                return Changes(_diff(repo, before, sha), f"push {_short(before)}..{_short(sha)}")
            except git.GitCommandError:
                pass  # a force-push may have taken `before` away: fall back to the last good build
        if last_good:
            try:
                return Changes(_diff(repo, last_good, sha), f"since the last successful build ({_short(last_good)})")
            except git.GitCommandError:
                pass
        return Changes(None, "no earlier successful build of this branch")
    except git.GitCommandError as exc:
        return Changes(None, f"git could not compare ({exc.stderr.strip() or exc})")
