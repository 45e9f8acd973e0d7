"""Test reports over HTTP: ``GET /api/builds/{id}/tests`` (totals, per-file reports, cases failures
first, paged), the branch trend as JSON (``GET /api/tests/trend``) and as an SVG drawn here
(``/tests/trend.svg``), and what the build page shows (``tests_view``).
"""

from __future__ import annotations

import sqlite3
from typing import Any

from aiohttp import web

from runner.errors import BuildNotFound
from runner.reports.junit import STATUSES
from runner.server.ids import ID_RULE, parse_id
from runner.server.keys import AUTH, STORE, TEMPLATES
from runner.server.trend import TREND_BUILDS, trend_chart
from runner.store import builds as q
from runner.store import reports as r
from runner.store.rows import BuildDetail

__all__ = ["add_routes", "tests_view"]

PAGE_FAILURES = 50  # failed cases listed on the build page; the API pages through the rest
PAGE_SKIPPED = 50
MAX_LIMIT = 1000


def tests_view(conn: sqlite3.Connection, detail: BuildDetail) -> dict[str, Any] | None:
    """The build page's Tests section, or None when the build stored no report."""
    build = detail.build
    reports = r.list_reports(conn, build.id)
    if not reports:
        return None
    totals = r.build_totals(conn, build.id)
    # The job's log section on the page is anchored by the job's row id (see build.html).
    job_ids = {j.name: j.id for j in detail.jobs}
    failures = r.list_cases(conn, build.id, limit=PAGE_FAILURES) if totals.broken else []
    failures = [c for c in failures if c.status in ("failed", "error")]
    skipped = r.list_cases(conn, build.id, status="skipped", limit=PAGE_SKIPPED) if totals.skipped else []
    points = r.trend(conn, build.repo, build.branch, until=build.id) if build.branch else []
    return {
        "totals": totals, "reports": reports, "problems": [x for x in reports if x.problem],
        "dropped": sum(x.dropped for x in reports), "kept": f"{r.CASES_KEPT:,}",
        "failures": failures, "more_failures": totals.broken - len(failures),
        "skipped": skipped, "job_anchor": {name: f"log-job-{jid}" for name, jid in job_ids.items()},
        "trend": trend_chart(points, current=build.id) if len(points) > 1 else None,
    }


def _int(request: web.Request, name: str, default: int, low: int, high: int) -> int:
    text = request.query.get(name)
    if text is None:
        return default
    try:
        value = int(text)
    except ValueError:
        value = low - 1
    if not low <= value <= high:
        raise web.HTTPBadRequest(text=f"{name} must be a whole number from {low} to {high}\n")
    return value


async def build_tests(request: web.Request) -> web.Response:
    build_id = parse_id(request.match_info["id"])
    if build_id is None:
        raise web.HTTPNotFound(text=f"no such build: build ids are {ID_RULE}; GET /api/builds lists them\n")
    status = request.query.get("status") or None
    if status is not None and status not in STATUSES:
        raise web.HTTPBadRequest(text=f"status must be one of {', '.join(STATUSES)}\n")
    limit = _int(request, "limit", 100, 1, MAX_LIMIT)
    offset = _int(request, "offset", 0, 0, 2**31)

    build = await request.app[STORE].aread(lambda c: _build_or_none(c, build_id))
    if build is None or not request.app[AUTH].can_read(request, build.repo):
        raise web.HTTPNotFound(text=str(BuildNotFound.of(build_id)))

    def read(conn: sqlite3.Connection) -> dict[str, Any]:
        q.get_build(conn, build_id)  # BuildNotFound -> 404 (deleted meanwhile)
        count = r.count_cases(conn, build_id, status)
        nxt = None
        if offset + limit < count:
            filt = f"status={status}&" if status else ""
            nxt = f"/api/builds/{build_id}/tests?{filt}limit={limit}&offset={offset + limit}"
        return {"build": build_id, "totals": r.build_totals(conn, build_id).to_json(),
                "reports": [x.to_json() for x in r.list_reports(conn, build_id)], "count": count,
                "offset": offset, "limit": limit, "next": nxt,
                "cases": [c.to_json() for c in r.list_cases(conn, build_id, status=status, limit=limit,
                                                            offset=offset)]}

    try:
        return web.json_response(await request.app[STORE].aread(read))
    except BuildNotFound as exc:
        raise web.HTTPNotFound(text=str(exc)) from None


def _build_or_none(conn: sqlite3.Connection, build_id: int) -> q.BuildRow | None:
    try:
        return q.get_build(conn, build_id)
    except BuildNotFound:
        return None


def _branch(request: web.Request) -> tuple[str, str, int | None]:
    repo, branch = request.query.get("repo"), request.query.get("branch")
    if not repo or not branch:
        raise web.HTTPBadRequest(text="name the branch: ?repo=NAME&branch=NAME\n")
    until = request.query.get("until")
    until_id = parse_id(until) if until else None
    if until and until_id is None:
        raise web.HTTPBadRequest(text=f"until must be a build id ({ID_RULE})\n")
    return repo, branch, until_id


async def _trend(request: web.Request, repo: str, branch: str, until: int | None, limit: int) -> list:
    # A private repository's trend is, to an anonymous reader, the one of a repository never built.
    if not request.app[AUTH].can_read(request, repo):
        return []
    return await request.app[STORE].aread(lambda c: r.trend(c, repo, branch, until=until, limit=limit))


async def trend_json(request: web.Request) -> web.Response:
    repo, branch, until = _branch(request)
    limit = _int(request, "limit", TREND_BUILDS, 1, 200)
    points = await _trend(request, repo, branch, until, limit)
    return web.json_response({"repo": repo, "branch": branch, "builds": [
        {"id": p.build_id, "number": p.number, "status": p.status, **p.totals.to_json()} for p in points]})


async def trend_svg(request: web.Request) -> web.Response:
    repo, branch, until = _branch(request)
    points = await _trend(request, repo, branch, until, TREND_BUILDS)
    text = request.app[TEMPLATES].get_template("trend.svg").render(
        chart=trend_chart(points, current=until))
    return web.Response(text=text, content_type="image/svg+xml", headers={"Cache-Control": "no-cache, max-age=0"})


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/builds/{id}/tests", build_tests)
    app.router.add_get("/api/tests/trend", trend_json)
    app.router.add_get("/tests/trend.svg", trend_svg)
