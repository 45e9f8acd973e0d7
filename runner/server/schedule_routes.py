"""Cron schedules over HTTP: ``GET /api/schedules``, the ``/schedules`` page (both without the private
repositories' schedules for an anonymous reader), and "run now" (``POST /api/schedules/{repo}/{name}/run``,
a ``developer``'s, written to the audit log; the page's form carries the session's CSRF token)."""

from __future__ import annotations

from aiohttp import web

from runner.server import audit
from runner.server.keys import AUTH, SCHEDULER
from runner.server.pages import render

__all__ = ["add_routes"]


async def _readable(request: web.Request) -> list[dict]:
    return [s for s in await request.app[SCHEDULER].listing() if request.app[AUTH].can_read(request, s["repo"])]


async def list_schedules(request: web.Request) -> web.Response:
    return web.json_response({"schedules": await _readable(request)})


async def schedules_page(request: web.Request) -> web.Response:
    return render(request, "schedules.html", schedules=await _readable(request))


async def run_now(request: web.Request) -> web.Response:
    user = await request.app[AUTH].require(request, "developer")
    scheduler = request.app[SCHEDULER]
    repo, name = request.match_info["repo"], request.match_info["name"]
    schedule = scheduler.find(repo, name)
    if schedule is None:
        raise web.HTTPNotFound(text=f"repository {repo!r} has no schedule {name!r}; GET /api/schedules lists them\n")
    build_id = await scheduler.run_now(schedule, f"api:{user.name}")
    await audit.record(request, user, "run_schedule", build_id=build_id, repo=repo,
                       what=f"schedule {name} of {repo}")
    if "Authorization" not in request.headers and request.content_type in (
            "application/x-www-form-urlencoded", "multipart/form-data"):
        raise web.HTTPSeeOther(f"/builds/{build_id}")
    return web.json_response({"id": build_id, "url": f"/api/builds/{build_id}"}, status=201)


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_get("/api/schedules", list_schedules)
    r.add_post("/api/schedules/{repo:.+}/{name}/run", run_now)
    r.add_get("/schedules", schedules_page)
