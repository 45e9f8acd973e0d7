"""The aiohttp application: webhooks, the JSON API, live logs and the pages, around one store and
one build queue. ``make_app`` builds it; ``serve`` runs it until interrupted.
"""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web

from runner.clock import Clock, SystemClock
from runner.notify import Notifications
from runner.server import api, approvals, artifact_routes, audit, environments, hooks, login, metrics, pages, reports, run_form, schedule_routes
from runner.server.auth import Auth
from runner.server.config import ServerConfig
from runner.server.ids import parse_id
from runner.server.keys import (
    AUTH, BACKEND, BACKGROUND, CLOCK, CONFIG, DAILY_GC, HUB, NOTIFICATIONS, OWN_STORE, QUEUE, REPORTER, SCHEDULER,
    START_QUEUE, STORE, TEMPLATES,
)
from runner.server.daily_gc import DailyGc
from runner.server.queue import BuildQueue
from runner.server.scheduler import Scheduler
from runner.server.sessions import load_secret
from runner.server.sse import LiveHub, stream
from runner.server.status import StatusReporter
from runner.store.db import Store

__all__ = ["make_app", "serve", "CSP"]

log = logging.getLogger("conveyor.server")

CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
       "form-action 'self'; frame-ancestors 'none'; base-uri 'none'")


@web.middleware
async def api_errors(request: web.Request, handler):
    """API clients get errors as JSON with a message, like every other API answer."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400 or not request.path.startswith("/api/"):
            raise
        headers = {k: v for k, v in exc.headers.items() if k.lower() in ("www-authenticate", "allow", "retry-after")}
        return web.json_response({"error": (exc.text or exc.reason or "").strip()}, status=exc.status,
                                 headers=headers)


async def _security_headers(request: web.Request, response: web.StreamResponse) -> None:
    """Every answer, pages, static files, errors and streams alike, before its headers go out."""
    response.headers.setdefault("Content-Security-Policy", CSP)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    response.headers.setdefault("X-Frame-Options", "DENY")


async def _events(request: web.Request) -> web.StreamResponse:
    build_id = parse_id(request.match_info["id"])
    if build_id is None:
        raise web.HTTPNotFound(text="no such build\n")
    store = request.app[STORE]

    async def status_of(bid: int) -> str | None:
        row = await store.aread(lambda c: c.execute("SELECT status FROM builds WHERE id = ?", (bid,)).fetchone())
        return row[0] if row else None

    row = await store.aread(lambda c: c.execute("SELECT repo FROM builds WHERE id = ?", (build_id,)).fetchone())
    if row is None:
        raise web.HTTPNotFound(text="no such build\n")
    request.app[AUTH].check_read(request, row[0], "no such build")
    return await stream(request, request.app[HUB], build_id, status_of)


def make_app(config: ServerConfig, *, backend=None, store: Store | None = None,
             start_queue: bool = True, clock: Clock | None = None) -> web.Application:
    """The application. ``backend`` defaults to the configured one; ``store`` to the data dir's;
    ``clock`` (schedules, the daily retention run) to the system's."""
    app = web.Application(middlewares=[api_errors])
    app.on_response_prepare.append(_security_headers)
    app[CONFIG] = config
    app[AUTH] = Auth(config)
    app[HUB] = LiveHub()
    app[TEMPLATES] = pages.make_templates()
    app[BACKGROUND] = set()
    app[OWN_STORE] = store is None
    app[STORE] = store
    app[BACKEND] = backend
    app[START_QUEUE] = start_queue
    app[CLOCK] = clock or SystemClock()
    hooks.add_routes(app)
    api.add_routes(app)
    artifact_routes.add_routes(app)
    approvals.add_routes(app)
    pages.add_routes(app)
    login.add_routes(app)
    audit.add_routes(app)
    schedule_routes.add_routes(app)
    metrics.add_routes(app)
    reports.add_routes(app)
    run_form.add_routes(app)
    environments.add_routes(app)
    app.router.add_get("/builds/{id}/events", _events)
    app.on_startup.append(_startup)
    app.on_shutdown.append(_shutdown)
    app.on_cleanup.append(_cleanup)
    return app


async def _startup(app: web.Application) -> None:
    config: ServerConfig = app[CONFIG]
    if app[STORE] is None:
        app[STORE] = await asyncio.to_thread(Store, config.settings.data_dir)
    # Sessions are signed with a secret that survives restarts (docs/server.md, "Users and roles").
    secret = config.session_secret.encode() if config.session_secret else \
        await asyncio.to_thread(load_secret, config.settings.data_dir)
    app[AUTH].start(secret)
    if app[BACKEND] is None:
        from runner.backends import get_backend

        app[BACKEND] = get_backend(config.backend, config.settings)
    app[REPORTER] = StatusReporter(config.public_url)
    app[NOTIFICATIONS] = Notifications(app[STORE], config.public_url)
    app[QUEUE] = BuildQueue(app[STORE], config, app[BACKEND], app[HUB], app[REPORTER],
                            notifications=app[NOTIFICATIONS])
    app[SCHEDULER] = Scheduler(app[STORE], config, app[QUEUE], app[CLOCK])
    app[DAILY_GC] = DailyGc(app[STORE], config, app[CLOCK])
    if app[START_QUEUE]:
        await app[QUEUE].start()
        # After the queue's start-up: builds a crash left running are settled before any prune,
        # and slots missed while the server was down fire now, once.
        app[SCHEDULER].start()
        app[DAILY_GC].start()


async def _shutdown(app: web.Application) -> None:
    # Live viewers hold open streams; end them so the server can stop.
    for build_id in list(app[HUB].builds):
        app[HUB].close(build_id, "running")


async def _cleanup(app: web.Application) -> None:
    await app[SCHEDULER].stop()
    await app[DAILY_GC].stop()
    await app[QUEUE].stop()
    await app[NOTIFICATIONS].close()  # retries still pending are dropped, each logged
    background = list(app[BACKGROUND])
    for task in background:
        task.cancel()
    # Wait for them: a cancelled rollback still records how it ended, and the store closes next.
    await asyncio.gather(*background, return_exceptions=True)
    await app[REPORTER].close()
    if app[OWN_STORE]:
        await asyncio.to_thread(app[STORE].close)


def serve(config: ServerConfig, *, backend=None) -> None:
    """Run the server until Ctrl-C / SIGTERM."""
    app = make_app(config, backend=backend)
    print(f"conveyor serve: http://{config.host}:{config.port}/ (data in {config.settings.data_dir})", flush=True)
    web.run_app(app, host=config.host, port=config.port, print=None, access_log=None,
                handle_signals=True, shutdown_timeout=10)
