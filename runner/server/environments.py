"""Environments over HTTP: ``GET /api/environments``, the ``/environments`` page, and promotion
(``POST /api/environments/{name}/promote`` with ``{"service", "from"}``, or ``{"stack", "from"}`` for
every service of a stack; ``name`` is where to).

Reading is open. A promotion is authenticated like every mutation (the admin token, or the page's
session with its CSRF token). Everything that can refuse it (unknown environment, nothing live in
the source, not pinned to a digest, a branch the destination does not take) is checked before the
answer, as a 409 that says why; the deploy itself runs after a 202, into the deploy history.
"""

from __future__ import annotations

import asyncio
import logging
import re

from aiohttp import web

from runner.errors import ConveyorError
from runner.server.api import _answer, _from_page, _json_body
from runner.server import audit
from runner.server.keys import AUTH, BACKGROUND, CONFIG, STORE
from runner.server.users import may_approve
from runner.server.pages import render

__all__ = ["add_routes", "environments_view"]

log = logging.getLogger("conveyor.environments")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,200}")


async def environments_view(request: web.Request) -> dict:
    """Per service and environment: what is live, the last deploys, and whether the live service
    drifted from its recorded deploy (the swarm is asked once per target)."""
    from runner.deploy.config import load_deploy_config
    from runner.deploy.drift import drift_report
    from runner.deploy.environments import overview

    settings, store = request.app[CONFIG].settings, request.app[STORE]
    try:
        config = await asyncio.to_thread(load_deploy_config, settings)
    except ConveyorError as exc:
        return {"environments": [], "services": [], "error": str(exc)}
    auth = request.app[AUTH]
    services = _readable(await overview(store, config.environments), lambda repo: auth.can_read(request, repo))
    drifts = {}
    # Asking every target's swarm is for signed-in users: an anonymous page view must not cost that.
    for target in sorted({env.target for env in config.environments.values()}) if auth.identify(request) else ():
        for d in await drift_report(settings, store, None, target):
            drifts[(d.target, d.service)] = d.to_json()
    for entry in services:
        for name, cell in entry["environments"].items():
            env = config.environments[name]
            cell["drift"] = drifts.get((env.target, cell["service"])) if cell["live"] else None
    envs = [{"name": e.name, "target": e.target, "url": e.url, "approvers": list(e.approvers),
             "branches": list(e.branches), "suffix": e.suffix} for e in config.environments.values()]
    return {"environments": envs, "services": services}


def _readable(services: list[dict], can_read) -> list[dict]:
    """What a reader may see: a private repository's deploys (and a service only they made) leave."""
    out = []
    for entry in services:
        cells = {}
        for name, cell in entry["environments"].items():
            deploys = [d for d in cell["deploys"] if can_read(d.get("repo"))]
            live = cell["live"] if cell["live"] and can_read(cell["live"].get("repo")) else None
            if deploys or live:
                cells[name] = {**cell, "deploys": deploys, "live": live}
        if cells:
            out.append({**entry, "environments": cells})
    return out


async def list_environments(request: web.Request) -> web.Response:
    view = await environments_view(request)
    return web.json_response(view, status=500 if view.get("error") else 200)


async def environments_page(request: web.Request) -> web.Response:
    return render(request, "environments.html", **await environments_view(request))


async def promote(request: web.Request) -> web.Response:
    from runner.deploy.config import load_deploy_config
    from runner.deploy.promote import plan_promotion, promote as run_promotion
    from runner.deploy.stack_promote import plan_stack_promotion, promote_stack

    user = await request.app[AUTH].require(request, "deployer")
    who = user.name
    dest = request.match_info["name"]
    data = await request.post() if _from_page(request) else await _json_body(request)
    stack = data.get("stack")
    service, source = stack or data.get("service"), data.get("from")
    for key, value in (("stack" if stack else "service", service), ("from", source)):
        if not (isinstance(value, str) and _NAME.fullmatch(value)):
            return web.json_response({"error": f"`{key}` must be a name, e.g. {{\"service\": \"web\", \"from\": "
                                               "\"staging\"} (or \"stack\": \"shop\")"}, status=400)
    settings, store = request.app[CONFIG].settings, request.app[STORE]
    planner, runner = (plan_stack_promotion, promote_stack) if stack else (plan_promotion, run_promotion)
    try:
        plan = await planner(settings, store, service, source, dest)
        env = (await asyncio.to_thread(load_deploy_config, settings)).environment(dest)
    except ConveyorError as exc:
        return _answer(request, 409, "/environments", error=str(exc))
    if env.approvers and not may_approve(user, env.approvers):  # as for an approval stage
        raise web.HTTPForbidden(text=f"promoting to {dest} is for {', '.join(env.approvers)}; "
                                     f"{user.name} is not one of them\n")
    digests = {r["service"]: r["digest"] for r in plan.rows} if stack else None
    await audit.record(request, user, "promote", what=f"{'stack ' if stack else ''}{service} {source} -> {dest}",
                       detail={"stack" if stack else "service": service, "from": source, "to": dest,
                               "digest": plan.row["digest"], **({"digests": digests} if stack else {})})

    async def run() -> None:
        lines: list[str] = []
        try:
            outcome = await runner(settings, store, plan, lines.append, f"api:{who}")
            for o in outcome if stack else [outcome]:
                log.info("promotion of %s to %s: #%s %s %s", service, dest, o.deploy_id, o.status, o.reason or "")
        except Exception as exc:  # noqa: BLE001 - recorded in the history by the deploy code
            log.warning("promotion of %s to %s failed: %s", service, dest, exc)

    task = asyncio.create_task(run(), name=f"promote-{service}-{dest}")
    request.app[BACKGROUND].add(task)
    task.add_done_callback(request.app[BACKGROUND].discard)
    extra = {"stack": service, "deploys": [r["id"] for r in plan.rows], "digests": digests} if stack else {
        "service": service, "deploy": plan.row["id"], "digest": plan.row["digest"]}
    return _answer(request, 202, "/environments", to=dest, **{"from": source}, **extra, started=True)


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_get("/api/environments", list_environments)
    r.add_post("/api/environments/{name}/promote", promote)
    r.add_get("/environments", environments_page)
