"""Webhook deliveries shaped like the providers' real ones (fields from their documentation), signed
here the way each provider signs them."""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid

ZERO = "0" * 40


def github_push(full_name: str, sha: str, ref: str = "refs/heads/main", deleted: bool = False,
                message: str = "Update README") -> dict:
    # https://docs.github.com/en/webhooks/webhook-events-and-payloads#push
    return {
        "ref": ref, "before": "a" * 40, "after": ZERO if deleted else sha, "created": False, "deleted": deleted,
        "forced": False, "base_ref": None, "compare": f"https://github.com/{full_name}/compare/aaaa...{sha[:12]}",
        "commits": [] if deleted else [{"id": sha, "tree_id": "b" * 40, "distinct": True, "message": message,
                                        "timestamp": "2026-11-26T20:00:00Z",
                                        "author": {"name": "Octo Cat", "email": "octo@example.com", "username": "octocat"},
                                        "added": [], "removed": [], "modified": ["README.md"]}],
        "head_commit": None if deleted else {"id": sha, "message": message,
                                             "author": {"name": "Octo Cat", "email": "octo@example.com"}},
        "repository": {"id": 1296269, "name": full_name.split("/")[1], "full_name": full_name, "private": False,
                       "owner": {"login": full_name.split("/")[0], "id": 1},
                       "clone_url": f"https://github.com/{full_name}.git",
                       "ssh_url": f"git@github.com:{full_name}.git", "html_url": f"https://github.com/{full_name}",
                       "default_branch": "main"},
        "pusher": {"name": "octocat", "email": "octo@example.com"},
        "sender": {"login": "octocat", "id": 1},
    }


def github_pull_request(full_name: str, sha: str, number: int = 7, action: str = "opened",
                        head_full_name: str | None = None, head_ref: str = "feature") -> dict:
    # https://docs.github.com/en/webhooks/webhook-events-and-payloads#pull_request
    head_full_name = head_full_name or full_name
    repo = lambda name: {"id": hash(name) & 0xFFFF, "full_name": name, "name": name.split("/")[1],  # noqa: E731
                         "clone_url": f"https://github.com/{name}.git", "owner": {"login": name.split("/")[0]}}
    return {
        "action": action, "number": number,
        "pull_request": {"number": number, "state": "open", "title": "Add a feature", "user": {"login": "contrib"},
                         "head": {"label": f"x:{head_ref}", "ref": head_ref, "sha": sha, "repo": repo(head_full_name)},
                         "base": {"label": "y:main", "ref": "main", "sha": "c" * 40, "repo": repo(full_name)}},
        "repository": repo(full_name), "sender": {"login": "contrib"},
    }


def gitlab_push(path: str, sha: str, ref: str = "refs/heads/main", kind: str = "push") -> dict:
    # https://docs.gitlab.com/user/project/integrations/webhook_events/#push-events
    return {
        "object_kind": kind, "event_name": kind, "before": "a" * 40, "after": sha, "ref": ref,
        "checkout_sha": None if sha == ZERO else sha, "user_id": 4, "user_name": "John Smith",
        "user_username": "jsmith", "project_id": 15,
        "project": {"id": 15, "name": path.split("/")[1], "path_with_namespace": path,
                    "web_url": f"https://gitlab.example.com/{path}", "git_http_url": f"https://gitlab.example.com/{path}.git",
                    "git_ssh_url": f"git@gitlab.example.com:{path}.git", "default_branch": "main"},
        "commits": [] if sha == ZERO else [{"id": sha, "message": "Fix the build\n", "title": "Fix the build",
                                           "author": {"name": "John Smith", "email": "john@example.com"}}],
        "total_commits_count": 1, "repository": {"name": path.split("/")[1]},
    }


def gitlab_merge_request(path: str, sha: str, iid: int = 3, action: str = "open", fork: bool = False,
                         oldrev: bool = True) -> dict:
    # https://docs.gitlab.com/user/project/integrations/webhook_events/#merge-request-events
    attrs = {"iid": iid, "title": "Add a feature", "source_branch": "feature", "target_branch": "main",
             "source_project_id": 99 if fork else 15, "target_project_id": 15, "state": "opened", "action": action,
             "last_commit": {"id": sha, "message": "feature"}}
    if action == "update" and oldrev:
        attrs["oldrev"] = "d" * 40
    return {"object_kind": "merge_request", "event_type": "merge_request", "user": {"username": "contrib"},
            "project": {"id": 15, "path_with_namespace": path, "git_http_url": f"https://gitlab.example.com/{path}.git"},
            "object_attributes": attrs}


def gitea_push(full_name: str, sha: str, ref: str = "refs/heads/main") -> dict:
    # https://docs.gitea.com/usage/webhooks (the payload is GitHub-like)
    return {
        "ref": ref, "before": "a" * 40, "after": sha, "compare_url": "",
        "commits": [{"id": sha, "message": "gitea commit\n", "author": {"name": "Tea", "email": "tea@example.com"}}],
        "head_commit": {"id": sha, "message": "gitea commit\n", "author": {"name": "Tea", "email": "tea@example.com"}},
        "repository": {"id": 3, "full_name": full_name, "name": full_name.split("/")[1],
                       "clone_url": f"https://gitea.example.com/{full_name}.git",
                       "html_url": f"https://gitea.example.com/{full_name}"},
        "pusher": {"login": "tea"}, "sender": {"login": "tea"},
    }


def body_of(payload: dict) -> bytes:
    return json.dumps(payload).encode()


def github_headers(body: bytes, secret: str | None, event: str = "push", delivery: str | None = None) -> dict:
    headers = {"Content-Type": "application/json", "X-GitHub-Event": event,
               "X-GitHub-Delivery": delivery or str(uuid.uuid4()), "User-Agent": "GitHub-Hookshot/abc"}
    if secret is not None:
        headers["X-Hub-Signature-256"] = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return headers


def gitlab_headers(secret: str | None, event: str = "Push Hook", delivery: str | None = None) -> dict:
    headers = {"Content-Type": "application/json", "X-Gitlab-Event": event,
               "X-Gitlab-Event-UUID": delivery or str(uuid.uuid4())}
    if secret is not None:
        headers["X-Gitlab-Token"] = secret
    return headers


def gitea_headers(body: bytes, secret: str | None, event: str = "push", delivery: str | None = None) -> dict:
    delivery = delivery or str(uuid.uuid4())
    # Gitea also sends X-GitHub-* headers; the endpoint, not these, decides the provider.
    headers = {"Content-Type": "application/json", "X-Gitea-Event": event, "X-Gitea-Delivery": delivery,
               "X-GitHub-Event": event, "X-GitHub-Delivery": delivery}
    if secret is not None:
        headers["X-Gitea-Signature"] = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return headers
