"""The JSON API under ``/api``. Reading is open, except a private repository's builds (``auth``); every
mutation is POST, needs a user whose role reaches the route's (``developer`` to run, cancel and
re-run, ``deployer`` to roll back) and is written to the audit log. A form post from the page is
answered with a redirect back to the page; an API client gets JSON.
"""

from __future__ import annotations

import asyncio
import logging
import re

from aiohttp import web

from runner.errors import BuildNotFound, ConveyorError
from runner.server import audit
from runner.server.ids import ID_RULE, parse_id
from runner.server.inbox import BuildOrder, list_deliveries
from runner.server.keys import AUTH, BACKGROUND, CONFIG, QUEUE, STORE
from runner.server.users import may_approve
from runner.server.views import build_json, deploy_rows, log_text
from runner.store import builds as q

__all__ = ["add_routes"]

log = logging.getLogger("conveyor.api")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,200}")


def _from_page(request: web.Request) -> bool:
    return "Authorization" not in request.headers and request.content_type in (
        "application/x-www-form-urlencoded", "multipart/form-data")


def _answer(request: web.Request, status: int, location: str, **data) -> web.Response:
    if _from_page(request):
        raise web.HTTPSeeOther(location)
    return web.json_response(data, status=status)


def _build_id(request: web.Request) -> int:
    build_id = parse_id(request.match_info["id"])
    if build_id is None:
        raise web.HTTPNotFound(text=f"no such build: build ids are {ID_RULE}; GET /api/builds lists them\n")
    return build_id


async def _existing_build(request: web.Request) -> q.BuildRow:
    """The build the path names, or a 404 with how to find one (JSON through ``app.api_errors``);
    a build the asker may not read is a 404 with the same words (``auth.check_read``)."""
    build_id = _build_id(request)
    try:
        build = await request.app[STORE].aread(lambda c: q.get_build(c, build_id))
    except BuildNotFound as exc:
        raise web.HTTPNotFound(text=str(exc)) from None
    request.app[AUTH].check_read(request, build.repo, str(BuildNotFound.of(build_id)))
    return build


async def list_builds(request: web.Request) -> web.Response:
    try:
        limit = int(request.query.get("limit", "50"))
    except ValueError:
        return web.json_response({"error": "limit must be a whole number from 1 to 500"}, status=400)
    before = parse_id(request.query["before"]) if "before" in request.query else None
    if "before" in request.query and before is None:
        return web.json_response({"error": f"before must be a build id ({ID_RULE})"}, status=400)
    if not 1 <= limit <= 500:  # SQLite reads LIMIT -1 as "no limit": the whole history in one answer
        return web.json_response({"error": "limit must be between 1 and 500; page with before=<id>"}, status=400)
    repo, status = request.query.get("repo"), request.query.get("status")
    hide = request.app[AUTH].list_filter(request)
    rows = await request.app[STORE].aread(
        lambda c: q.list_builds(c, repo=repo, status=status, before=before, limit=limit, **hide))
    return web.json_response({"builds": [build_json(b) for b in rows]})


async def get_build(request: web.Request) -> web.Response:
    build_id = _build_id(request)
    try:
        detail = await request.app[STORE].aread(lambda c: q.get_detail(c, build_id))
    except BuildNotFound as exc:
        return web.json_response({"error": str(exc)}, status=404)
    request.app[AUTH].check_read(request, detail.build.repo, str(BuildNotFound.of(build_id)))
    return web.json_response(build_json(detail.build, detail))


async def get_log(request: web.Request) -> web.Response:
    build_id = (await _existing_build(request)).id
    text = await request.app[STORE].aread(lambda c: log_text(c, build_id))
    return web.Response(text=text, content_type="text/plain")


async def list_deploys(request: web.Request) -> web.Response:
    rows = await deploy_rows(request.app[STORE], request.query.get("service"))
    rows = [r for r in rows if request.app[AUTH].can_read(request, r["repo"])]
    return web.json_response({"deploys": rows})


async def get_deliveries(request: web.Request) -> web.Response:
    """Webhook deliveries, newest first: ``failed`` ones carry why no build came of them."""
    state = request.query.get("state") or None
    rows = await request.app[STORE].aread(lambda c: list_deliveries(c, state))
    rows = [r for r in rows if request.app[AUTH].can_read(request, r["repo"])]
    return web.json_response({"deliveries": rows})


async def create_build(request: web.Request) -> web.Response:
    user = await request.app[AUTH].require(request, "developer")
    data = await request.post() if _from_page(request) else await _json_body(request)
    config = request.app[CONFIG]
    repo = config.repo(str(data.get("repo", "")))
    if repo is None:
        return web.json_response({"error": f"repository {data.get('repo')!r} is not configured; "
                                           f"known: {sorted(config.repos)}"}, status=404)
    branch, tag, sha = (data.get(k) or None for k in ("branch", "tag", "sha"))
    params = data.get("params") or {}
    if isinstance(params, str):  # the page's textarea: one NAME=value a line
        params = dict(line.split("=", 1) for line in params.splitlines() if "=" in line)
    if _from_page(request):  # the Run form's fields, one per declared param (runner/server/run_form.py)
        params = {**params, **{k[6:]: str(v) for k, v in data.items() if k.startswith("param.")}}
    if not isinstance(params, dict) or not all(isinstance(v, str) for v in params.values()):
        return web.json_response({"error": "params must be an object of string values"}, status=400)
    if not (branch or tag or sha):
        branch = "main"
    for value in (branch, tag):
        if value is not None and (not isinstance(value, str) or not re.fullmatch(r"[\w./-]{1,200}", value)):
            return web.json_response({"error": f"{value!r} is not a branch or tag name"}, status=400)
    if sha is not None and not (isinstance(sha, str) and re.fullmatch(r"[0-9a-f]{40}", sha)):
        return web.json_response({"error": "sha must be a full 40-hex commit id"}, status=400)
    ref = f"refs/tags/{tag}" if tag else f"refs/heads/{branch}" if branch else None
    build_id = await request.app[QUEUE].submit(BuildOrder(
        repo=repo.name, event="manual", trigger=f"api:{user.name}", ref=ref, branch=branch, tag=tag, sha=sha,
        params={str(k): str(v) for k, v in params.items()},
    ))
    build = await request.app[STORE].aread(lambda c: q.get_build(c, build_id))
    await audit.record(request, user, "run", build=build, ref=ref or sha,
                       **({"params": sorted(params)} if params else {}))
    return _answer(request, 201, f"/builds/{build_id}", id=build_id, url=f"/api/builds/{build_id}")


async def _json_body(request: web.Request) -> dict:
    try:
        data = await request.json()
    except ValueError:
        raise web.HTTPBadRequest(text="the body must be a JSON object, e.g. {\"repo\": \"web\"}\n") from None
    if not isinstance(data, dict):
        raise web.HTTPBadRequest(text="the body must be a JSON object\n")
    return data


async def cancel_build(request: web.Request) -> web.Response:
    user = await request.app[AUTH].require(request, "developer")
    build = await _existing_build(request)
    build_id = build.id
    outcome = await request.app[QUEUE].cancel(build_id, user.name)
    status = 409 if outcome == "finished" else 202
    if outcome != "finished":
        await audit.record(request, user, "cancel", build=build, outcome=outcome)
    return _answer(request, status, f"/builds/{build_id}", id=build_id, outcome=outcome)


async def rerun_build(request: web.Request) -> web.Response:
    user = await request.app[AUTH].require(request, "developer")
    old = await _existing_build(request)
    build_id = old.id
    if old.status in ("queued", "running", "waiting"):
        return web.json_response({"error": f"build {old.label} has not finished; cancel it first"}, status=409)
    try:
        new_id = await request.app[QUEUE].rerun(build_id, user.name)
    except LookupError as exc:
        return web.json_response({"error": str(exc)}, status=409)
    await audit.record(request, user, "rerun", build=old, new_build=new_id)
    return _answer(request, 201, f"/builds/{new_id}", id=new_id, url=f"/api/builds/{new_id}")


async def rollback(request: web.Request) -> web.Response:
    """Re-apply a recorded deploy of a service; the result lands in the deploy history."""
    user = await request.app[AUTH].require(request, "deployer")
    service = request.match_info["name"]
    if not _NAME.fullmatch(service):
        return web.json_response({"error": "not a service name"}, status=400)
    data = await request.post() if _from_page(request) else (await _json_body(request) if request.can_read_body else {})
    to = parse_id(data["to"]) if data.get("to") not in (None, "") else None
    if data.get("to") not in (None, "") and to is None:
        return web.json_response({"error": f"`to` must be a deploy id ({ID_RULE}) from GET /api/deploys"},
                                 status=400)
    target = data.get("target") or None
    if target is not None and not (isinstance(target, str) and _NAME.fullmatch(target)):
        return web.json_response({"error": "`target` must be the name of a deploy target (a string from "
                                           "targets.yml); leave it out for the default target"}, status=400)
    from runner.engine import DEFAULT_TARGET, open_target
    from runner.deploy.rollback import choose_target, rollback_service
    from runner.deploy.service import Provenance

    settings, store = request.app[CONFIG].settings, request.app[STORE]
    try:
        # Say now when there is nothing to roll back to; only the long part runs after the 202.
        chosen = await choose_target(store, target or DEFAULT_TARGET, service, to)
        guard = await _guarding(settings, chosen, target or DEFAULT_TARGET, service)
        if guard is not None and not may_approve(user, guard.approvers):  # as for a promotion there
            raise web.HTTPForbidden(text=f"rolling back {service} in environment {guard.name} is for "
                                         f"{', '.join(guard.approvers)}; {user.name} is not one of them\n")
        swarm = await open_target(settings, target)
    except ConveyorError as exc:
        return web.json_response({"error": str(exc)}, status=409)
    to = chosen["id"]

    async def run() -> None:
        try:
            lines: list[str] = []
            outcome = await rollback_service(swarm, store, service, lines.append,
                                             Provenance(trigger=f"api:{user.name}", instance=settings.instance), to=to)
            log.info("rollback of %s: %s %s", service, outcome.status, outcome.reason or "")
        except Exception as exc:  # noqa: BLE001 - recorded in the history by the deploy code
            log.warning("rollback of %s failed: %s", service, exc)
        finally:
            await asyncio.to_thread(swarm.close)

    task = asyncio.create_task(run(), name=f"rollback-{service}")
    request.app[BACKGROUND].add(task)
    task.add_done_callback(request.app[BACKGROUND].discard)
    # Its outcome lands in the deploy history; the log says who started it and towards what.
    await audit.record(request, user, "rollback", what=f"service {service}", to=to, target=target or DEFAULT_TARGET)
    return _answer(request, 202, f"/deploys?service={service}", service=service, to=to, started=True)


async def _guarding(settings, chosen, target: str, service: str):
    """The environment with approvers that the service is in (the one its deploy recorded, else
    the one whose names it has on the target), or None."""
    from runner.deploy.config import load_deploy_config

    config = await asyncio.to_thread(load_deploy_config, settings)
    env = config.environments.get(chosen.get("environment") or "") or config.owner(target, service)
    return env if env is not None and env.approvers else None


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_get("/api/builds", list_builds)
    r.add_post("/api/builds", create_build)
    r.add_get("/api/builds/{id}", get_build)
    r.add_get("/api/builds/{id}/log", get_log)
    r.add_post("/api/builds/{id}/cancel", cancel_build)
    r.add_post("/api/builds/{id}/rerun", rerun_build)
    r.add_get("/api/deploys", list_deploys)
    r.add_get("/api/deliveries", get_deliveries)
    r.add_post("/api/services/{name}/rollback", rollback)
