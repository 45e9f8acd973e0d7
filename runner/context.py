"""What triggered a build, and how it is seen by the pipeline file and by its steps.

A ``Context`` feeds two things: the Jinja template (``template_vars``: refs, event, repo, params,
build number, and no free text) and the steps' environment (``ci_env``: the ``CI_*`` variables,
which do carry the commit message and author). Values that come from outside the pipeline file
(refs, params, names) are checked in ``Context.build``: a newline or other control character could
add YAML structure after rendering, so it is refused with ``ContextError``.
"""

from __future__ import annotations

from dataclasses import field

from runner.errors import ContextError
from runner.regex import lazy
from runner.values import Value, frozen

__all__ = ["EVENTS", "GitInfo", "Changes", "Context"]

EVENTS = ("push", "tag", "pull_request", "manual", "cron")

# C0/C1 controls, DEL, and the Unicode line/paragraph separators YAML treats as line breaks.
_CONTROL = lazy(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
# What `git check-ref-format` refuses, so a branch or tag name cannot smuggle YAML syntax either.
_BAD_REF = lazy(r"[\s~^:?*\[\\]|\.\.|@\{|^[-/.]|[/.]\Z|\.lock\Z")
_PARAM_NAME = lazy(r"^[A-Za-z_][A-Za-z0-9_]*\Z")
_SHA = lazy(r"^[0-9a-f]{4,64}\Z")


@frozen
class GitInfo(Value):
    sha: str | None = None
    short_sha: str | None = None
    branch: str | None = None
    tag: str | None = None
    ref: str | None = None
    message: str | None = None  # free text: only ever an env var, never in the template context
    author: str | None = None  # free text, likewise


@frozen
class Changes(Value):
    """The files the event changed, for ``when.changes`` (computed by ``runner.scm.changes``).

    ``files`` None means every file counts as changed (a manual run, a first build); ``basis`` says
    what was compared, in words the plan records ("push 1a2b3c4d..5e6f7a8b")."""

    files: tuple[str, ...] | None
    basis: str


@frozen
class Context(Value):
    git: GitInfo
    event: str = "push"
    repo_name: str = "repo"
    repo_url: str | None = None
    params: dict[str, str] = field(default_factory=dict)
    build_number: int | None = None
    changes: Changes | None = None  # None: not computed (lint, plan): every file counts as changed

    @classmethod
    def build(
        cls,
        *,
        sha: str | None = None,
        branch: str | None = None,
        tag: str | None = None,
        ref: str | None = None,
        message: str | None = None,
        author: str | None = None,
        event: str | None = None,
        repo_name: str = "repo",
        repo_url: str | None = None,
        params: dict[str, str] | None = None,
        build_number: int | None = None,
        changes: Changes | None = None,
    ) -> Context:
        """A checked context. Raises ``ContextError`` naming the bad value and what to do."""
        event = event or ("tag" if tag else "push")
        if event not in EVENTS:
            raise ContextError(f"unknown event {event!r}: use one of {', '.join(EVENTS)}")
        if sha is not None:
            sha = sha.strip().lower()
            if not _SHA.match(sha):
                raise ContextError(f"commit sha {sha!r} is not a hex object name")
        for what, value in (("branch", branch), ("tag", tag)):
            if value is not None:
                _check_text(what, value)
                if not value or _BAD_REF.search(value):
                    raise ContextError(f"{what} {value!r} is not a valid git ref name (see `git check-ref-format`)")
        if ref is None:
            ref = f"refs/tags/{tag}" if tag else (f"refs/heads/{branch}" if branch else None)
        for what, value in (("ref", ref), ("repository name", repo_name), ("repository url", repo_url)):
            if value is not None:
                _check_text(what, value)
        clean: dict[str, str] = {}
        for key, value in (params or {}).items():
            if not isinstance(key, str) or not _PARAM_NAME.match(key):
                raise ContextError(f"param name {key!r} must be letters, digits and _ (not starting with a digit)")
            if not isinstance(value, str):
                raise ContextError(f"param {key!r} must be a string, got {type(value).__name__}")
            _check_text(f"param {key!r}", value)
            clean[key] = value
        if build_number is not None and (not isinstance(build_number, int) or build_number < 0):
            raise ContextError(f"build number {build_number!r} must be a non-negative integer")
        git = GitInfo(sha=sha, short_sha=sha[:8] if sha else None, branch=branch, tag=tag, ref=ref,
                      message=message, author=author)
        return cls(git=git, event=event, repo_name=repo_name, repo_url=repo_url, params=clean,
                   build_number=build_number, changes=changes)

    def template_vars(self) -> dict:
        """The Jinja context. No free text (commit message, author): steps read those from env."""
        g = self.git
        return {
            "git": {"sha": g.sha, "short_sha": g.short_sha, "branch": g.branch, "tag": g.tag, "ref": g.ref},
            "event": {"kind": self.event},
            "repo": {"name": self.repo_name, "url": self.repo_url},
            "params": dict(self.params),
            "build": {"number": self.build_number},
        }

    def ci_env(self) -> dict[str, str]:
        """The CI_* variables every step sees; unknown values are empty strings, never missing."""
        g = self.git
        return {
            "CI": "true",
            "CI_COMMIT_SHA": g.sha or "",
            "CI_COMMIT_SHORT_SHA": g.short_sha or "",
            "CI_COMMIT_BRANCH": g.branch or "",
            "CI_COMMIT_TAG": g.tag or "",
            "CI_COMMIT_REF": g.ref or "",
            "CI_COMMIT_MESSAGE": g.message or "",
            "CI_COMMIT_AUTHOR": g.author or "",
            "CI_BUILD_NUMBER": "" if self.build_number is None else str(self.build_number),
            "CI_REPO_NAME": self.repo_name,
            "CI_REPO_URL": self.repo_url or "",
            "CI_PIPELINE_EVENT": self.event,
        }


def _check_text(what: str, value: str) -> None:
    if not isinstance(value, str):
        raise ContextError(f"{what} must be a string, got {type(value).__name__}")
    match = _CONTROL.search(value)
    if match:
        raise ContextError(
            f"{what} {value!r} contains a control character ({match.group()!r} at {match.start()}); "
            "newlines and control characters could change the pipeline's structure, remove them"
        )
