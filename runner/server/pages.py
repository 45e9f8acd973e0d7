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

from runner.errors import BuildNotFound
from runner.server.artifact_routes import artifact_rows
from runner.server.auth import SESSION_COOKIE
from runner.server.graph import pipeline_graph
from runner.server.ids import ID_RULE, parse_id
from runner.server.inbox import list_deliveries
from runner.server.keys import AUTH, CONFIG, STORE, TEMPLATES
from runner.server.views import deploy_rows, duration_text, log_html, size_text
from runner.store import builds as q

__all__ = ["WEB_DIR", "make_templates", "render", "add_routes"]

WEB_DIR = Path(__file__).resolve().parents[2] / "web"
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


def _render(request: web.Request, name: str, http_status: int = 200, **context) -> web.Response:
    auth = request.app[AUTH]
    context.setdefault("csrf", auth.csrf_token(request))
    context.setdefault("admin_enabled", bool(auth.token))
    text = request.app[TEMPLATES].get_template(name).render(**context)
    return web.Response(text=text, status=http_status, content_type="text/html")


render = _render  # for the pages other modules add (schedules)


async def build_list(request: web.Request) -> web.Response:
    repo, status = request.query.get("repo") or None, request.query.get("status") or None
    before = parse_id(request.query["before"]) if request.query.get("before") else None
    if request.query.get("before") and before is None:
        raise web.HTTPBadRequest(text=f"before must be a build id ({ID_RULE})\n")

    builds = await request.app[STORE].aread(
        lambda c: q.list_builds(c, repo=repo, status=status, before=before, limit=PAGE_SIZE + 1))
    more = len(builds) > PAGE_SIZE
    builds = builds[:PAGE_SIZE]
    # On the first page: deliveries the queue could not turn into builds, with why (GET /api/deliveries).
    failed = [] if before else await request.app[STORE].aread(lambda c: list_deliveries(c, "failed", limit=5))
    return _render(request, "builds.html", builds=builds, repo=repo, status=status,
                   next_before=builds[-1].id if more else None, repos=sorted(request.app[CONFIG].repos),
                   failed_deliveries=failed)


async def build_page(request: web.Request) -> web.Response:
    build_id = parse_id(request.match_info["id"])
    try:
        detail = await request.app[STORE].aread(lambda c: q.get_detail(c, build_id)) if build_id else None
    except BuildNotFound:
        detail = None
    if detail is None:
        return _render(request, "error.html", http_status=404, message="There is no such build.")
    live = detail.build.status in ("queued", "running", "waiting")
    log = [] if live else await request.app[STORE].aread(lambda c: log_html(c, build_id))
    rendered = (detail.build.rendered or "").splitlines()
    step_names = {(j.stage, j.name, st.position): st.name for j in detail.jobs for st in j.steps}
    for group in log:
        group["name"] = step_names.get((group["stage"], group["job"], group["step"]), f"step {group['step'] + 1}")
    artifacts = await artifact_rows(request.app[STORE], build_id)
    return _render(request, "build.html", b=detail.build, detail=detail, live=live, log=log,
                   graph=pipeline_graph(detail), rendered=rendered,
                   diagnostics=detail.build.diagnostics, approvals=detail.approvals, artifacts=artifacts)


async def deploys_page(request: web.Request) -> web.Response:
    service = request.query.get("service") or None
    rows = await deploy_rows(request.app[STORE], service, limit=500)
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

    def read(conn):
        sql = "SELECT status FROM builds WHERE repo = ? AND status NOT IN ('queued', 'running', 'waiting', 'skipped')"
        params = [repo]
        if branch:
            sql += " AND branch = ?"
            params.append(branch)
        row = conn.execute(sql + " ORDER BY id DESC LIMIT 1", params).fetchone()
        return row[0] if row else None

    status = await request.app[STORE].aread(read) or "unknown"
    label = status.replace("_", " ")
    text = request.app[TEMPLATES].get_template("badge.svg").render(
        status=label, colour=_BADGE_COLOURS.get(status, "#9e9e9e"), width=6 * len(label) + 12)
    return web.Response(text=text, content_type="image/svg+xml", headers={"Cache-Control": "no-cache, max-age=0"})


async def login_form(request: web.Request) -> web.Response:
    return _render(request, "login.html", error=None)


async def login(request: web.Request) -> web.Response:
    auth = request.app[AUTH]
    form = await request.post()
    if not auth.check_token(str(form.get("token", ""))):
        return _render(request, "login.html", http_status=401, error="That is not the admin token.")
    response = web.HTTPSeeOther("/")
    response.set_cookie(SESSION_COOKIE, auth.new_session(), httponly=True, samesite="Strict", path="/",
                        secure=request.secure, max_age=7 * 24 * 3600)
    raise response


async def logout(request: web.Request) -> web.Response:
    await request.app[AUTH].require(request)
    response = web.HTTPSeeOther("/")
    response.del_cookie(SESSION_COOKIE, path="/")
    raise response


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_get("/", build_list)
    r.add_get("/builds/{id}", build_page)
    r.add_get("/deploys", deploys_page)
    r.add_get("/badge/{repo:.+}", badge)
    r.add_get("/login", login_form)
    r.add_post("/login", login)
    r.add_post("/logout", logout)
    # Static files never follow symlinks, so a link planted in web/static cannot read the host.
    r.add_static("/static", str(WEB_DIR / "static"), follow_symlinks=False, append_version=False)
