"""``POST /api/builds/{id}/approvals``: approve or reject the approval stage a build waits at.

Authenticated like every mutation (the admin token, or the page's session with its CSRF token).
The decision goes into the store; the waiting stage reads it from there, whichever process runs the
build. Until the server has named users every decision is the admin's: the stage's ``approvers``
are stored and shown, and are checked once a deciding user can be told from another.
"""

from __future__ import annotations

import time

from aiohttp import web

from runner.errors import NotWaiting
from runner.server.api import _answer, _existing_build, _from_page, _json_body
from runner.server.keys import AUTH, STORE
from runner.store import approvals

__all__ = ["add_routes"]

_DECISIONS = {"approve": "approved", "reject": "rejected"}
_COMMENT_MAX = 2000


async def decide(request: web.Request) -> web.Response:
    who = await request.app[AUTH].require(request)
    build = await _existing_build(request)
    data = await request.post() if _from_page(request) else await _json_body(request)
    decision = _DECISIONS.get(str(data.get("decision", "")))
    if decision is None:
        return web.json_response({"error": "decision must be \"approve\" or \"reject\", e.g. "
                                           "{\"decision\": \"approve\", \"comment\": \"ship it\"}"}, status=400)
    comment = data.get("comment") or None
    if comment is not None and (not isinstance(comment, str) or len(comment) > _COMMENT_MAX):
        return web.json_response({"error": f"comment must be text of at most {_COMMENT_MAX} characters"}, status=400)
    try:
        row = await request.app[STORE].awrite(
            lambda c: approvals.decide(c, build.id, decision, who, comment, time.time()))
    except NotWaiting as exc:
        return _answer(request, 409, f"/builds/{build.id}", error=f"build {build.label}: {exc}")
    return _answer(request, 200, f"/builds/{build.id}", id=build.id, approval=row.to_json())


def add_routes(app: web.Application) -> None:
    app.router.add_post("/api/builds/{id}/approvals", decide)
