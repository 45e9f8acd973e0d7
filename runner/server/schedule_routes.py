"""Cron schedules over HTTP: ``GET /api/schedules``, the ``/schedules`` page, and "run now"
(``POST /api/schedules/{repo}/{name}/run``, authenticated like every mutation; the page's form
carries the session's CSRF token)."""

from __future__ import annotations

from aiohttp import web

from runner.server.keys import AUTH, SCHEDULER
from runner.server.pages import render

__all__ = ["add_routes"]


async def list_schedules(request: web.Request) -> web.Response:
    return web.json_response({"schedules": await request.app[SCHEDULER].listing()})


async def schedules_page(request: web.Request) -> web.Response:
    return render(request, "schedules.html", schedules=await request.app[SCHEDULER].listing())


async def run_now(request: web.Request) -> web.Response:
    who = await request.app[AUTH].require(request)
    scheduler = request.app[SCHEDULER]
    repo, name = request.match_info["repo"], request.match_info["name"]
    schedule = scheduler.find(repo, name)
    if schedule is None:
        raise web.HTTPNotFound(text=f"repository {repo!r} has no schedule {name!r}; GET /api/schedules lists them\n")
    build_id = await scheduler.run_now(schedule, f"api:{who}")
    if "Authorization" not in request.headers and request.content_type in (
            "application/x-www-form-urlencoded", "multipart/form-data"):
        raise web.HTTPSeeOther(f"/builds/{build_id}")
    return web.json_response({"id": build_id, "url": f"/api/builds/{build_id}"}, status=201)


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_get("/api/schedules", list_schedules)
    r.add_post("/api/schedules/{repo:.+}/{name}/run", run_now)
    r.add_get("/schedules", schedules_page)
