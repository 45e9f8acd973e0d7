"""``POST /hooks/github``, ``/hooks/gitlab``, ``/hooks/gitea``: deliveries into the durable inbox.

Order of work for one delivery, each step able to refuse it:

1. Content-Length over 25 MiB: 413 before reading anything. Then the body is read in chunks from
   the stream and reading stops as soon as it passes the cap (413), so a liar never fills memory.
2. The signature is checked over those raw bytes against the secret of every repository configured
   for this provider (``?repo=NAME`` narrows it to one): no match and no repository without a secret
   is a 401 (a 404 when NAME is not configured). Nothing is parsed before this.
3. JSON and the provider's shape (400 when malformed), then the repository it names: it must be one
   whose secret matched (401 when it is configured with another secret, 404 when it is unknown).

A private repository must not show that it exists (docs/server.md, "Visibility"): to a caller who may
not read it, one whose secret the delivery does not match answers exactly what a missing one answers
(in 2 and in 3: a 404 with the same words). A delivery signed with its secret, or a signed-in viewer
(a bearer token), gets the precise answers.
4. Ping: 200. Deleted branches, closed pull requests, other events, filtered branches: 200 ignored.
5. The delivery is committed to the inbox (unique per delivery id): 202; a redelivery: 200.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import urllib.parse

from aiohttp import web

from runner.errors import WebhookError
from runner.scm import webhooks
from runner.server.config import RepoConfig, ServerConfig
from runner.server.inbox import record_delivery
from runner.server.keys import AUTH, CONFIG, QUEUE, STORE

__all__ = ["MAX_BODY", "add_routes"]

MAX_BODY = 25 * 1024 * 1024
_CHUNK = 256 * 1024


async def read_capped(request: web.Request, cap: int = MAX_BODY) -> bytes:
    if request.content_length is not None and request.content_length > cap:
        raise web.HTTPRequestEntityTooLarge(max_size=cap, actual_size=request.content_length,
                                            text=f"the body is over {cap // 2**20} MiB; webhooks are capped\n")
    parts, size = [], 0
    while True:
        chunk = await request.content.read(_CHUNK)
        if not chunk:
            break
        size += len(chunk)
        if size > cap:
            raise web.HTTPRequestEntityTooLarge(max_size=cap, actual_size=size,
                                                text=f"the body is over {cap // 2**20} MiB; webhooks are capped\n")
        parts.append(chunk)
    return b"".join(parts)


def _json(status: int, **data) -> web.Response:
    return web.json_response(data, status=status)


def _matches(repo: RepoConfig, full_name: str, urls: set[str]) -> bool:
    return repo.forge_name.lower() == full_name.lower() or (repo.url is not None and repo.url in urls)


def _shown(request: web.Request, repo: RepoConfig) -> bool:
    """Whether the caller may learn that ``repo`` exists: a public one, or a signed-in viewer asking.
    A forge's own Authorization header (Gitea can send one) is no user: it only makes nothing shown."""
    if repo.visibility == "public":
        return True
    user = request.app[AUTH].page_user(request)
    return user is not None and user.has("viewer")


def _not_configured(name: str) -> web.Response:
    # The words of a missing repository, also for a private one the delivery is not signed for.
    return _json(404, error=f"repository {name!r} is not configured on this server for this delivery: add it "
                            "under repos:, or, when it is there, set the webhook secret on the forge to its secret")


async def receive(request: web.Request, provider: str) -> web.Response:
    config: ServerConfig = request.app[CONFIG]
    body = await read_capped(request)
    candidates = [r for r in config.repos.values() if r.provider == provider]
    named = request.query.get("repo")
    if named is not None:
        candidates = [r for r in candidates if r.name == named]

    def check() -> list[RepoConfig]:
        if not candidates:  # hash as much for a missing name as for one configured: timing tells nothing
            webhooks.verify(provider, "no repository", body, request.headers)
        return [r for r in candidates if r.secret and webhooks.verify(provider, r.secret, body, request.headers)]

    # Unauthenticated bytes hashed once per secret: a big body is hashed off the loop, like its JSON.
    signed = await asyncio.to_thread(check) if len(body) > _CHUNK else check()
    unsigned_ok = [r for r in candidates if not r.secret]
    if not signed and not unsigned_ok:
        if named is not None and not any(_shown(request, r) for r in candidates):
            return _not_configured(named)
        return _json(401, error="bad or missing signature: the webhook secret on the forge must match the "
                                "repository's secret in the server configuration")
    try:
        if request.content_type == "application/x-www-form-urlencoded":
            # GitHub's default content type for a new webhook: the JSON sits in the `payload` field.
            form = urllib.parse.parse_qs(body.decode("utf-8"), strict_parsing=False)
            if not form.get("payload"):
                raise WebhookError("a form-encoded delivery needs a `payload` field holding the JSON")
            body_json = form["payload"][0]
        else:
            body_json = body
        payload = await asyncio.to_thread(json.loads, body_json) if len(body) > _CHUNK else json.loads(body_json)
        event = webhooks.event_name(provider, request.headers)
        result = webhooks.parse(provider, event, payload)
        if isinstance(result, webhooks.Ping):
            return _json(200, pong=True)
        full_name, urls = webhooks.repo_identity(provider, payload)
    except (ValueError, UnicodeDecodeError) as exc:
        return _json(400, error=f"the body is not valid JSON: {exc}")
    except RecursionError:  # json.loads recurses per nesting level: a crafted body must not be a 500
        return _json(400, error="the body's JSON nests too deeply to be a webhook payload")
    except WebhookError as exc:
        return _json(400, error=str(exc))
    repo = next((r for r in signed + unsigned_ok if _matches(r, full_name, urls)), None)
    if repo is None:
        if any(_matches(r, full_name, urls) and _shown(request, r)
               for r in config.repos.values() if r.provider == provider):
            return _json(401, error=f"the signature does not match the secret configured for {full_name}")
        return _not_configured(full_name)
    if isinstance(result, webhooks.Ignored):
        return _json(200, ignored=result.reason)
    if not repo.wants_branch(result.filter_branch):
        return _json(200, ignored=f"branch {result.filter_branch!r} is not in the branches of {repo.name}")
    delivery = webhooks.delivery_id(provider, request.headers)
    if not delivery:  # an old GitLab sends none: the body's digest makes a byte-identical retry a no-op
        delivery = "sha256:" + hashlib.sha256(body).hexdigest()
    new, row_id = await record_delivery(request.app[STORE], provider, delivery[:200], repo.name, result)
    if not new:
        return _json(200, duplicate=True, delivery=row_id)
    request.app[QUEUE].wake()
    return _json(202, queued=True, delivery=row_id)


def add_routes(app: web.Application) -> None:
    for provider in webhooks.PROVIDERS:
        async def handler(request: web.Request, provider=provider) -> web.Response:
            return await receive(request, provider)
        app.router.add_post(f"/hooks/{provider}", handler)
    # Forgejo sends Gitea-shaped deliveries; give it its own name too.
    async def forgejo(request: web.Request) -> web.Response:
        return await receive(request, "gitea")

    app.router.add_post("/hooks/forgejo", forgejo)
