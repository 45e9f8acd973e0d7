"""The status pages: server-rendered Jinja HTML from web/templates, and the SVG badge.

Templates are autoescaped; log lines arrive already escaped and coloured (``ansi.to_html``) and are
the only values marked safe. Forms that change something carry the session's CSRF token.
"""

from __future__ import annotations

import datetime
from pathlib import Path

import jinja2
from aiohttp import web
from markupsafe import Markup

from runner.bundled import WEB_DIR
from runner.errors import BuildNotFound
from runner.server.artifact_routes import artifact_rows
from runner.server.graph import pipeline_graph
from runner.server.ids import ID_RULE, parse_id
from runner.server.inbox import list_deliveries
from runner.server.keys import AUTH, CONFIG, STORE, TEMPLATES
from runner.server.branches import branch_rows
from runner.server.log_view import LogPart, log_part
from runner.server.reports import tests_view
from runner.server.users import ROLES, may_approve
from runner.server.views import deploy_rows, duration_text, size_text
from runner.store import builds as q
from runner.store.branches import branch_history

__all__ = ["WEB_DIR", "make_templates", "render", "add_routes"]

PAGE_SIZE = 50
_BADGE_COLOURS = {"success": "#2e7d32", "failure": "#c62828", "running": "#1565c0", "waiting": "#6a1b9a", "queued": "#757575",
                  "cancelled": "#757575", "timed_out": "#c62828", "config_error": "#ef6c00",
                  "interrupted": "#6d4c41", "skipped": "#9e9e9e"}


def _when(ts: float | None) -> str:
    if ts is None:
        return ""
    return datetime.datetime.fromtimestamp(ts, datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def make_templates(web_dir: Path = WEB_DIR) -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(web_dir / "templates")),
                             autoescape=jinja2.select_autoescape(["html", "svg"]), undefined=jinja2.StrictUndefined)
    env.filters["duration"] = duration_text
    env.filters["when"] = _when
    env.filters["size"] = size_text
    env.filters["safe_log"] = lambda html: Markup(html)  # already escaped by ansi.to_html
    return env


def _render(request: web.Request, name: str, http_status: int = 200, headers: dict[str, str] | None = None,
            **context) -> web.Response:
    """A page; it knows who is signed in (``user``), their CSRF token (``csrf``, None when signed
    out) and whether anyone can sign in at all (``login_enabled``)."""
    auth = request.app[AUTH]
    user = auth.page_user(request)
    context.setdefault("user", user)
    context.setdefault("csrf", auth.csrf_token(request))
    context.setdefault("login_enabled", auth.enabled)
    # A button shows only to those whose role may use it; the route checks again either way.
    context.setdefault("may", {role: user is not None and user.has(role) for role in ROLES})
    text = request.app[TEMPLATES].get_template(name).render(**context)
    return web.Response(text=text, status=http_status, content_type="text/html", headers=headers)


render = _render  # for the pages other modules add (schedules)


async def build_list(request: web.Request) -> web.Response:
    repo, status = request.query.get("repo") or None, request.query.get("status") or None
    before = parse_id(request.query["before"]) if request.query.get("before") else None
    if request.query.get("before") and before is None:
        raise web.HTTPBadRequest(text=f"before must be a build id ({ID_RULE})\n")

    auth = request.app[AUTH]
    hide = auth.list_filter(request)
    builds = await request.app[STORE].aread(
        lambda c: q.list_builds(c, repo=repo, status=status, before=before, limit=PAGE_SIZE + 1, **hide))
    more = len(builds) > PAGE_SIZE
    builds = builds[:PAGE_SIZE]
    # On the first page: deliveries the queue could not turn into builds, with why (GET /api/deliveries).
    failed = [] if before else await request.app[STORE].aread(lambda c: list_deliveries(c, "failed", limit=5))
    failed = [d for d in failed if auth.can_read(request, d.get("repo"))]
    readable = sorted(r for r in request.app[CONFIG].repos if auth.can_read(request, r))
    branches = [] if before else branch_rows(
        [h for h in await request.app[STORE].aread(lambda c: branch_history(c, repo=repo))
         if h and auth.can_read(request, h[-1].repo)])
    return _render(request, "builds.html", builds=builds, repo=repo, status=status,
                   next_before=builds[-1].id if more else None, repos=readable,
                   failed_deliveries=failed, branches=branches)


async def build_page(request: web.Request) -> web.Response:
    build_id = parse_id(request.match_info["id"])
    try:
        detail = await request.app[STORE].aread(lambda c: q.get_detail(c, build_id)) if build_id else None
    except BuildNotFound:
        detail = None
    if detail is None or not request.app[AUTH].can_read(request, detail.build.repo):
        return _render(request, "error.html", http_status=404, message="There is no such build.")
    live = detail.build.status in ("queued", "running", "waiting")
    started = detail.build.started
    part = LogPart() if live else await request.app[STORE].aread(lambda c: log_part(c, build_id, started))
    _name_steps(detail, part)
    rendered = (detail.build.rendered or "").splitlines()
    tests = await request.app[STORE].aread(lambda c: tests_view(c, detail))
    artifacts = await artifact_rows(request.app[STORE], build_id)
    user = request.app[AUTH].page_user(request)
    return _render(request, "build.html", b=detail.build, detail=detail, live=live, part=part,
                   graph=pipeline_graph(detail), rendered=rendered, tests=tests, artifacts=artifacts,
                   diagnostics=detail.build.diagnostics, approvals=detail.approvals,
                   may_decide=lambda a: may_approve(user, a.approvers))


def _name_steps(detail: q.BuildDetail, part: LogPart) -> None:
    """Each log group gets its step's name and status; a step that did not succeed starts open."""
    steps = {(j.stage, j.name, st.position, st.attempt): st for j in detail.jobs for st in j.steps}
    job_ids = {(j.stage, j.name): j.id for j in detail.jobs}
    anchored = set()
    for group in part.groups:
        step = steps.get((group["stage"], group["job"], group["step"], group["attempt"]))
        group["name"] = step.name if step else f"step {group['step'] + 1}"
        group["status"] = step.status if step else "unknown"
        # A job's first log box is its anchor (#log-job-ID): failed tests link to it.
        job_id = job_ids.get((group["stage"], group["job"]))
        group["anchor"] = f"log-job-{job_id}" if job_id is not None and job_id not in anchored else None
        anchored.add(job_id)
        group["open"] = group["status"] != "success"


async def log_more(request: web.Request) -> web.Response:
    """``/builds/{id}/log-part?after=SEQ``: the next part of a long log, as the page's HTML."""
    build_id = parse_id(request.match_info["id"])
    after = parse_id(request.query.get("after", ""))
    try:
        detail = await request.app[STORE].aread(lambda c: q.get_detail(c, build_id)) if build_id else None
    except BuildNotFound:
        detail = None
    if detail is None or after is None or not request.app[AUTH].can_read(request, detail.build.repo):
        raise web.HTTPNotFound(text="no such build or log part; after= is the seq the page linked to\n")
    part = await request.app[STORE].aread(lambda c: log_part(c, build_id, detail.build.started, after=after))
    _name_steps(detail, part)
    return _render(request, "log_steps.html", b=detail.build, part=part)


async def deploys_page(request: web.Request) -> web.Response:
    service = request.query.get("service") or None
    rows = await deploy_rows(request.app[STORE], service, limit=500)
    rows = [r for r in rows if request.app[AUTH].can_read(request, r["repo"])]
    services: dict[str, list] = {}
    for row in rows:
        services.setdefault(row["service"], []).append(row)
    return _render(request, "deploys.html", services=services, service=service)


async def badge(request: web.Request) -> web.Response:
    """``/badge/{repo}.svg?branch=main``: the newest finished build's status."""
    name = request.match_info["repo"]
    if not name.endswith(".svg"):
        raise web.HTTPNotFound()
    repo, branch = name[:-4], request.query.get("branch")
    # A private repository's badge, to an anonymous reader, is the one of a repository never built.
    readable = request.app[AUTH].can_read(request, repo)

    def read(conn):
        sql = "SELECT status FROM builds WHERE repo = ? AND status NOT IN ('queued', 'running', 'waiting', 'skipped')"
        params = [repo]
        if branch:
            sql += " AND branch = ?"
            params.append(branch)
        row = conn.execute(sql + " ORDER BY id DESC LIMIT 1", params).fetchone()
        return row[0] if row else None

    status = (await request.app[STORE].aread(read) if readable else None) or "unknown"
    label = status.replace("_", " ")
    text = request.app[TEMPLATES].get_template("badge.svg").render(
        status=label, colour=_BADGE_COLOURS.get(status, "#9e9e9e"), width=6 * len(label) + 12)
    return web.Response(text=text, content_type="image/svg+xml", headers={"Cache-Control": "no-cache, max-age=0"})


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_get("/", build_list)
    r.add_get("/builds/{id}", build_page)
    r.add_get("/builds/{id}/log-part", log_more)
    r.add_get("/deploys", deploys_page)
    r.add_get("/badge/{repo:.+}", badge)
    # Static files never follow symlinks, so a link planted in web/static cannot read the host.
    r.add_static("/static", str(WEB_DIR / "static"), follow_symlinks=False, append_version=False)
