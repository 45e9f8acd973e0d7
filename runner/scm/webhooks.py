"""Webhook deliveries from GitHub, GitLab and Gitea/Forgejo: signature checks and payload parsing.

The provider is the endpoint's (``/hooks/github`` ...), never guessed from headers: Gitea also sends
``X-GitHub-*`` headers. Signatures are checked over the raw bytes, before anything is parsed, with
``hmac.compare_digest``. Parsing turns a provider payload into one ``Trigger`` (or says why the
delivery starts nothing: a deleted branch, a closed pull request, an event we do not build). Every
field is read through ``runner.scm.payload.Fields``, so a Trigger holds only well-typed values and a
wrong one is a ``WebhookError`` naming the field, never something the queue trips over later.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import asdict, dataclass
from typing import Any

from runner.errors import WebhookError
from runner.scm.payload import Fields

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
    root = Fields(payload)
    if provider == "gitlab":
        repo = root.obj("project")
        keys = ("path_with_namespace", "git_http_url", "git_ssh_url", "web_url")
    else:
        repo = root.obj("repository")
        keys = ("full_name", "clone_url", "ssh_url", "html_url")
    if repo is None or not repo.has(keys[0]):
        raise WebhookError("the payload names no repository (repository.full_name / project.path_with_namespace)")
    name = repo.name(keys[0], required=True)
    urls = {repo.name(key) for key in keys[1:]}
    return name, {u for u in urls if u}


def parse(provider: str, event: str, payload: Any) -> Trigger | Ignored | Ping:
    """Turn one decoded payload into a Trigger; raise WebhookError naming the field whose value is
    missing or of the wrong type (see ``runner.scm.payload``)."""
    root = Fields(payload)
    if provider == "github":
        return _github(event, root)
    if provider == "gitlab":
        return _gitlab(event, root)
    if provider == "gitea":
        return _gitea(event, root)
    raise WebhookError(f"unknown provider {provider!r}")


def _login(person: Fields | None, key: str) -> str | None:
    return person.name(key) if person is not None else None


def _push(p: Fields, sha_key: str, message: str | None, author: str | None) -> Trigger | Ignored:
    ref = p.name("ref", required=True)
    deleted = p.flag("deleted")
    sha = p.sha(sha_key)
    if deleted or sha == _ZERO_SHA:
        return Ignored(f"{ref} was deleted")
    before = p.sha("before", required=False)  # all zeros on a new branch: the changes module knows
    if ref.startswith("refs/tags/"):
        return Trigger("tag", ref, sha, tag=ref[len("refs/tags/"):], message=message, author=author, before=before)
    if ref.startswith("refs/heads/"):
        return Trigger("push", ref, sha, branch=ref[len("refs/heads/"):], message=message, author=author,
                       before=before)
    return Ignored(f"push to {ref}, which is neither a branch nor a tag")


def _github(event: str, p: Fields) -> Trigger | Ignored | Ping:
    if event == "ping":
        return Ping()
    if event == "push":
        head = p.obj("head_commit")
        message = head.text("message") if head else None
        author = _login(head.obj("author") if head else None, "name") or _login(p.obj("pusher"), "name")
        return _push(p, "after", message, author)
    if event == "pull_request":
        return _pull(p, ("opened", "synchronize", "reopened"))
    return Ignored(f"github event {event!r} starts no build")


def _gitea(event: str, p: Fields) -> Trigger | Ignored | Ping:
    if event == "push":
        commits = p.objects("commits")
        head = p.obj("head_commit") or (commits[-1] if commits else None)
        message = head.text("message") if head else None
        author = _login(head.obj("author") if head else None, "name") or _login(p.obj("pusher"), "login")
        return _push(p, "after", message, author)
    if event == "pull_request":
        # Gitea says "synchronized" where GitHub says "synchronize"; accept both.
        return _pull(p, ("opened", "synchronized", "synchronize", "reopened"))
    if event == "ping":
        return Ping()
    return Ignored(f"gitea event {event!r} starts no build")


def _pull(p: Fields, wanted: tuple[str, ...]) -> Trigger | Ignored:
    action = p.name("action", required=True)
    if action not in wanted:
        return Ignored(f"pull request {action!r} starts no build")
    pr = p.obj("pull_request", required=True)
    head, base = pr.obj("head", required=True), pr.obj("base", required=True)
    number = p.number("number") or pr.number("number", required=True)
    head_repo, base_repo = head.obj("repo"), base.obj("repo")
    # A deleted fork has head.repo null: treat it as a fork, the safe side.
    head_name = head_repo.name("full_name") if head_repo else None
    base_name = base_repo.name("full_name") if base_repo else None
    fork = head_name is None or head_name != base_name
    return Trigger(
        "pull_request", f"refs/pull/{number}/head", head.sha("sha"), branch=head.name("ref", required=True),
        message=pr.text("title"), author=_login(pr.obj("user"), "login"), pr_number=number,
        target_branch=base.name("ref", required=True), fork=fork,
    )


def _gitlab(event: str, p: Fields) -> Trigger | Ignored | Ping:
    kind = p.name("object_kind")
    if event in ("Push Hook", "Tag Push Hook") or kind in ("push", "tag_push"):
        sha_key = "checkout_sha" if p.sha("checkout_sha", required=False) else "after"
        sha = p.sha(sha_key)
        head = next((c for c in p.objects("commits") if c.sha("id", required=False) == sha), None)
        message = (head.text("message") if head else None) or p.text("message")
        return _push(p, sha_key, message, p.name("user_name"))
    if event == "Merge Request Hook" or kind == "merge_request":
        attrs = p.obj("object_attributes", required=True)
        action = attrs.name("action")
        if action not in ("open", "reopen", "update"):
            return Ignored(f"merge request {action!r} starts no build")
        if action == "update" and not attrs.has("oldrev"):
            return Ignored("merge request update without new commits")  # title/label edits
        number = attrs.number("iid", required=True)
        # Like a GitHub pull request whose head repository is gone: unless both projects are named
        # and the same, the safe side (no secrets, no deploy).
        source, target = attrs.ident("source_project_id"), attrs.ident("target_project_id")
        fork = source is None or source != target
        return Trigger(
            "pull_request", f"refs/merge-requests/{number}/head", attrs.obj("last_commit", required=True).sha("id"),
            branch=attrs.name("source_branch", required=True), message=attrs.text("title"),
            author=_login(p.obj("user"), "username"), pr_number=number,
            target_branch=attrs.name("target_branch", required=True), fork=fork,
        )
    return Ignored(f"gitlab event {event!r} starts no build")
