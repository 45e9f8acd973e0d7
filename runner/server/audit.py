"""The audit log over HTTP: ``record`` (one line in a route after a change), ``GET /api/audit``
(admins; newest first, paged with ``before``) and the ``/audit`` page (admins).

A route records after the change took effect, with what came of it, so the log says what happened,
not what was asked for: ``await audit.record(request, user, "cancel", build=row, outcome="cancelled")``.
"""

from __future__ import annotations

import time
from typing import Any

from aiohttp import web

from runner.server.ids import ID_RULE, parse_id
from runner.server.keys import AUTH, STORE
from runner.server.pages import render
from runner.server.users import User
from runner.store import audit as store_audit
from runner.store.rows import BuildRow

__all__ = ["record", "add_routes", "ACTIONS"]

ACTIONS = ("run", "cancel", "rerun", "approve", "reject", "rollback", "promote", "run_schedule", "login_failed")
PAGE = 50


async def record(request: web.Request, user: User | None, action: str, *, build: BuildRow | None = None,
                 build_id: int | None = None, repo: str | None = None, what: str | None = None,
                 detail: dict[str, Any] | None = None, **more: Any) -> None:
    """Write one entry; ``more`` goes into its detail."""
    assert action in ACTIONS, action
    if build is not None:
        build_id, repo, what = build.id, build.repo, what or f"build {build.label}"
    entry = store_audit.Entry(
        at=time.time(), actor=user.name if user else None, role=user.role if user else None, action=action,
        build_id=build_id, repo=repo, what=what, detail={**(detail or {}), **more}, address=request.remote)
    await request.app[STORE].awrite(lambda c: store_audit.write(c, entry))


def _query(request: web.Request) -> dict[str, Any]:
    before = request.query.get("before") or None
    before_id = parse_id(before) if before else None
    if before and before_id is None:
        raise web.HTTPBadRequest(text=f"before must be an audit entry id ({ID_RULE})\n")
    try:
        limit = int(request.query.get("limit", str(PAGE)))
    except ValueError:
        limit = 0
    if not 1 <= limit <= 500:
        raise web.HTTPBadRequest(text="limit must be a whole number from 1 to 500; page with before=<id>\n")
    action = request.query.get("action") or None
    if action is not None and action not in ACTIONS:
        raise web.HTTPBadRequest(text=f"action must be one of {', '.join(ACTIONS)}\n")
    return {"before": before_id, "limit": limit, "actor": request.query.get("actor") or None, "action": action}


async def _entries(request: web.Request) -> tuple[list[store_audit.Entry], int | None, dict[str, Any]]:
    await request.app[AUTH].require(request, "admin")
    query = _query(request)
    rows = await request.app[STORE].aread(lambda c: store_audit.page(c, **{**query, "limit": query["limit"] + 1}))
    more = len(rows) > query["limit"]
    rows = rows[:query["limit"]]
    return rows, rows[-1].id if more else None, query


async def list_audit(request: web.Request) -> web.Response:
    rows, next_before, _ = await _entries(request)
    return web.json_response({"entries": [r.to_json() for r in rows], "next_before": next_before})


async def audit_page(request: web.Request) -> web.Response:
    if request.app[AUTH].page_user(request) is None:
        raise web.HTTPSeeOther("/login")
    rows, next_before, query = await _entries(request)
    return render(request, "audit.html", entries=rows, next_before=next_before, actor=query["actor"],
                  action=query["action"], actions=ACTIONS)


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/audit", list_audit)
    app.router.add_get("/audit", audit_page)
