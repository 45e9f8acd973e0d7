"""Webhook deliveries from GitHub, GitLab and Gitea/Forgejo: signature checks and payload parsing.

The provider is the endpoint's (``/hooks/github`` ...), never guessed from headers: Gitea also sends
``X-GitHub-*`` headers. Signatures are checked over the raw bytes, before anything is parsed, with
``hmac.compare_digest``. Parsing turns a provider payload into one ``Trigger`` (or says why the
delivery starts nothing: a deleted branch, a closed pull request, an event we do not build).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import asdict, dataclass
from typing import Any

from runner.errors import WebhookError

__all__ = [
    "PROVIDERS",
    "Trigger",
    "Ignored",
    "Ping",
    "verify",
    "delivery_id",
    "event_name",
    "parse",
    "repo_identity",
]

PROVIDERS = ("github", "gitlab", "gitea")
_ZERO_SHA = "0" * 40


@dataclass(frozen=True)
class Trigger:
    """What a delivery asks for, in the provider-neutral words of a build."""

    kind: str  # push, tag, pull_request
    ref: str
    sha: str
    branch: str | None = None
    tag: str | None = None
    message: str | None = None
    author: str | None = None
    pr_number: int | None = None
    target_branch: str | None = None  # a pull request's base; the branch filter applies to it
    fork: bool = False  # a pull request from another repository: no secrets, no deploy
    before: str | None = None  # a push's previous head (`when.changes` compares before..sha)

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> Trigger:
        return cls(**json.loads(text))

    @property
    def filter_branch(self) -> str | None:
        return self.target_branch if self.kind == "pull_request" else self.branch


@dataclass(frozen=True)
class Ignored:
    reason: str


@dataclass(frozen=True)
class Ping:
    pass


def _hmac_hex(secret: str, body: bytes) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify(provider: str, secret: str, body: bytes, headers: Any) -> bool:
    """True when ``headers`` carry a valid signature of ``body`` (raw bytes) for ``secret``."""
    if provider == "github":
        given = headers.get("X-Hub-Signature-256") or ""
        expected = "sha256=" + _hmac_hex(secret, body)
    elif provider == "gitlab":
        given = headers.get("X-Gitlab-Token") or ""  # GitLab sends the secret itself, not a MAC
        expected = secret
    elif provider == "gitea":
        # Gitea and Forgejo send a bare hex HMAC-SHA256; Forgejo names its own header too.
        given = headers.get("X-Gitea-Signature") or headers.get("X-Forgejo-Signature") or ""
        expected = _hmac_hex(secret, body)
    else:
        raise WebhookError(f"unknown provider {provider!r}; use one of {', '.join(PROVIDERS)}")
    return hmac.compare_digest(given.strip().encode(), expected.encode())


def delivery_id(provider: str, headers: Any) -> str | None:
    if provider == "github":
        return headers.get("X-GitHub-Delivery")
    if provider == "gitlab":
        return headers.get("X-Gitlab-Event-UUID") or headers.get("Idempotency-Key")
    return headers.get("X-Gitea-Delivery") or headers.get("X-Forgejo-Delivery")


def event_name(provider: str, headers: Any) -> str:
    if provider == "github":
        return headers.get("X-GitHub-Event") or ""
    if provider == "gitlab":
        return headers.get("X-Gitlab-Event") or ""
    return headers.get("X-Gitea-Event") or headers.get("X-Forgejo-Event") or ""


def repo_identity(provider: str, payload: dict) -> tuple[str, set[str]]:
    """(full name, clone URLs) of the repository a payload is about, to match the configuration."""
    if provider == "gitlab":
        project = _dict(payload.get("project"))
        name = project.get("path_with_namespace") or ""
        urls = {project.get("git_http_url"), project.get("git_ssh_url"), project.get("web_url")}
    else:
        repo = _dict(payload.get("repository"))
        name = repo.get("full_name") or ""
        urls = {repo.get("clone_url"), repo.get("ssh_url"), repo.get("html_url")}
    if not isinstance(name, str) or not name:
        raise WebhookError("the payload names no repository (repository.full_name / project.path_with_namespace)")
    return name, {u for u in urls if isinstance(u, str) and u}


def parse(provider: str, event: str, payload: Any) -> Trigger | Ignored | Ping:
    """Turn one decoded payload into a Trigger; raise WebhookError when its shape is wrong."""
    if not isinstance(payload, dict):
        raise WebhookError("the payload is not a JSON object")
    try:
        if provider == "github":
            return _github(event, payload)
        if provider == "gitlab":
            return _gitlab(event, payload)
        if provider == "gitea":
            return _gitea(event, payload)
    except (KeyError, TypeError, AttributeError, ValueError) as exc:
        raise WebhookError(f"malformed {provider} {event or 'event'} payload: missing or wrong field {exc}") from exc
    raise WebhookError(f"unknown provider {provider!r}")


def _dict(value: Any) -> dict:
    return value if isinstance(value, dict) else {}


def _push(payload: dict, sha: str, message: str | None, author: str | None) -> Trigger | Ignored:
    ref = payload["ref"]
    if not isinstance(ref, str) or not isinstance(sha, str):
        raise ValueError("ref")
    if payload.get("deleted") is True or sha == _ZERO_SHA:
        return Ignored(f"{ref} was deleted")
    before = payload.get("before") if isinstance(payload.get("before"), str) else None
    if ref.startswith("refs/tags/"):
        return Trigger("tag", ref, sha, tag=ref[len("refs/tags/"):], message=message, author=author, before=before)
    if ref.startswith("refs/heads/"):
        return Trigger("push", ref, sha, branch=ref[len("refs/heads/"):], message=message, author=author,
                       before=before)
    return Ignored(f"push to {ref}, which is neither a branch nor a tag")


def _github(event: str, p: dict) -> Trigger | Ignored | Ping:
    if event == "ping":
        return Ping()
    if event == "push":
        head = _dict(p.get("head_commit"))
        author = _dict(head.get("author")).get("name") or _dict(p.get("pusher")).get("name")
        return _push(p, p["after"], head.get("message"), author)
    if event == "pull_request":
        return _pull(p, p["action"], ("opened", "synchronize", "reopened"))
    return Ignored(f"github event {event!r} starts no build")


def _gitea(event: str, p: dict) -> Trigger | Ignored | Ping:
    if event == "push":
        head = _dict(p.get("head_commit")) or _dict((p.get("commits") or [{}])[-1])
        author = _dict(head.get("author")).get("name") or _dict(p.get("pusher")).get("login")
        return _push(p, p["after"], head.get("message"), author)
    if event == "pull_request":
        # Gitea says "synchronized" where GitHub says "synchronize"; accept both.
        return _pull(p, p["action"], ("opened", "synchronized", "synchronize", "reopened"))
    if event == "ping":
        return Ping()
    return Ignored(f"gitea event {event!r} starts no build")


def _pull(p: dict, action: str, wanted: tuple[str, ...]) -> Trigger | Ignored:
    if action not in wanted:
        return Ignored(f"pull request {action!r} starts no build")
    pr = p["pull_request"]
    head, base = pr["head"], pr["base"]
    number = int(p.get("number") or pr["number"])
    head_repo, base_repo = _dict(head.get("repo")), _dict(base.get("repo"))
    # A deleted fork has head.repo null: treat it as a fork, the safe side.
    fork = not head_repo or head_repo.get("full_name") != base_repo.get("full_name")
    return Trigger(
        "pull_request", f"refs/pull/{number}/head", head["sha"], branch=head["ref"],
        message=pr.get("title"), author=_dict(pr.get("user")).get("login"), pr_number=number,
        target_branch=base["ref"], fork=fork,
    )


def _gitlab(event: str, p: dict) -> Trigger | Ignored | Ping:
    kind = p.get("object_kind")
    if event in ("Push Hook", "Tag Push Hook") or kind in ("push", "tag_push"):
        sha = p.get("checkout_sha") or p["after"]
        commits = p.get("commits") or []
        head = next((c for c in commits if isinstance(c, dict) and c.get("id") == sha), {})
        message = head.get("message") or p.get("message")
        return _push(p, sha, message, p.get("user_name"))
    if event == "Merge Request Hook" or kind == "merge_request":
        attrs = p["object_attributes"]
        action = attrs.get("action")
        if action not in ("open", "reopen", "update"):
            return Ignored(f"merge request {action!r} starts no build")
        if action == "update" and "oldrev" not in attrs:
            return Ignored("merge request update without new commits")  # title/label edits
        number = int(attrs["iid"])
        # Like a GitHub pull request whose head repository is gone: unless both projects are named
        # and the same, the safe side (no secrets, no deploy).
        source, target = attrs.get("source_project_id"), attrs.get("target_project_id")
        fork = source is None or source != target
        return Trigger(
            "pull_request", f"refs/merge-requests/{number}/head", attrs["last_commit"]["id"],
            branch=attrs["source_branch"], message=attrs.get("title"),
            author=_dict(p.get("user")).get("username"), pr_number=number,
            target_branch=attrs["target_branch"], fork=fork,
        )
    return Ignored(f"gitlab event {event!r} starts no build")
