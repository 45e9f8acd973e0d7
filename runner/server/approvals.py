"""``POST /api/builds/{id}/approvals``: approve or reject the approval stage a build waits at.

A decision takes a ``deployer`` (a token, or the page's session with its CSRF token) who, when the
stage names ``approvers``, is one of them by name or role (``users.may_approve``). The decision goes
into the store with the user's name as ``decided_by``, and into the audit log; the waiting stage
reads it from the store, whichever process runs the build.
"""

from __future__ import annotations

import time

from aiohttp import web

from runner.errors import NotWaiting
from runner.server import audit
from runner.server.api import _answer, _existing_build, _from_page, _json_body
from runner.server.keys import AUTH, STORE
from runner.server.users import may_approve
from runner.store import approvals

__all__ = ["add_routes"]

_DECISIONS = {"approve": "approved", "reject": "rejected"}
_COMMENT_MAX = 2000


async def decide(request: web.Request) -> web.Response:
    user = await request.app[AUTH].require(request, "deployer")
    build = await _existing_build(request)
    data = await request.post() if _from_page(request) else await _json_body(request)
    asked = str(data.get("decision", ""))
    decision = _DECISIONS.get(asked)
    if decision is None:
        return web.json_response({"error": "decision must be \"approve\" or \"reject\", e.g. "
                                           "{\"decision\": \"approve\", \"comment\": \"ship it\"}"}, status=400)
    comment = data.get("comment") or None
    if comment is not None and (not isinstance(comment, str) or len(comment) > _COMMENT_MAX):
        return web.json_response({"error": f"comment must be text of at most {_COMMENT_MAX} characters"}, status=400)

    def decide_if_allowed(conn):
        # Read the question and answer it in one write, so the approvers checked are the ones answered.
        pending = [a for a in approvals.of_build(conn, build.id) if a.pending]
        if pending and not may_approve(user, pending[0].approvers):
            return pending[0]
        return approvals.decide(conn, build.id, decision, user.name, comment, time.time())

    try:
        row = await request.app[STORE].awrite(decide_if_allowed)
    except NotWaiting as exc:
        return _answer(request, 409, f"/builds/{build.id}", error=f"build {build.label}: {exc}")
    if row.pending:
        raise web.HTTPForbidden(text=f"{user.name} may not decide stage {row.stage!r} of build {build.label}: "
                                     f"its approvers are {', '.join(row.approvers)}\n")
    await audit.record(request, user, asked, build=build, stage=row.stage, comment=comment)
    return _answer(request, 200, f"/builds/{build.id}", id=build.id, approval=row.to_json())


def add_routes(app: web.Application) -> None:
    app.router.add_post("/api/builds/{id}/approvals", decide)
