"""``GET /metrics``: Prometheus text format, for a scraper on an allowed address or with a user's token.

Almost everything is counted from the store at scrape time (``runner/store/stats.py``: index-only
queries), not by instrumenting each code path: the store already knows every build, job, delivery
and deploy, and it survives restarts. What the store never sees is counted here in memory: the
answer given to every webhook delivery, rejected ones included. The text is made in a thread (the
queries block) and kept for a second, so a burst of scrapes costs one round of queries.
"""

from __future__ import annotations

import asyncio
import ipaddress
import time
from collections import Counter

from aiohttp import web
from prometheus_client import CollectorRegistry, ProcessCollector, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from runner import __version__
from runner.plan import STATUSES
from runner.scm.webhooks import PROVIDERS
from runner.server.keys import AUTH, CONFIG, STORE
from runner.store import stats

__all__ = ["add_routes", "DURATION_BUCKETS", "QUEUE_WAIT_BUCKETS"]

DURATION_BUCKETS = (5, 10, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200)
QUEUE_WAIT_BUCKETS = (0.5, 1, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)
CACHE_SECONDS = 1.0

_DELIVERIES = web.AppKey("webhook_answers", Counter)
_SCRAPE = web.AppKey("metrics_scrape", object)


class _StoreCollector:
    """The store's counts, as metric families; ``collect`` runs in a worker thread."""

    def __init__(self, app: web.Application) -> None:
        self.app = app
        self.durations = stats.build_durations(DURATION_BUCKETS)
        self.waits = stats.queue_waits(QUEUE_WAIT_BUCKETS)

    def collect(self):
        store = self.app[STORE]
        conn = store.read()
        builds = stats.builds_by_status(conn)
        jobs = stats.jobs_by_status(conn)
        yield _labelled("conveyor_builds", "Builds in the store, by status.", "status", builds)
        yield _labelled("conveyor_jobs", "Jobs in the store, by status.", "status", jobs)
        yield GaugeMetricFamily("conveyor_queue_depth", "Builds queued, waiting for a free worker.",
                                value=builds.get("queued", 0))
        yield GaugeMetricFamily("conveyor_inbox_pending", "Webhook deliveries stored, not yet turned into builds.",
                                value=stats.pending_deliveries(conn))
        yield GaugeMetricFamily("conveyor_running_builds", "Builds running now.", value=builds.get("running", 0))
        yield GaugeMetricFamily("conveyor_running_jobs", "Jobs running now.", value=jobs.get("running", 0))
        yield _histogram("conveyor_build_duration_seconds", "From start to end of each finished build.",
                         self.durations.read(conn, time.time()))
        yield _histogram("conveyor_build_queue_wait_seconds", "From queued to started, for each started build.",
                         self.waits.read(conn, time.time()))
        deploys = GaugeMetricFamily("conveyor_deploys", "Deploys and rollbacks in the history, by outcome.",
                                    labels=["kind", "status"])
        for (kind, status), n in sorted(stats.deploys_by_outcome(conn).items()):
            deploys.add_metric([kind, status], n)
        yield deploys
        size = GaugeMetricFamily("conveyor_store_size_bytes", "Size of the SQLite store on disk.", labels=["file"])
        for name, n in stats.store_files(store.path).items():
            size.add_metric([name], n)
        yield size
        answers = CounterMetricFamily("conveyor_webhook_deliveries", "Webhook deliveries since the server "
                                      "started, by provider and HTTP status of the answer.", labels=["provider", "code"])
        for (provider, code), n in sorted(self.app[_DELIVERIES].items()):
            answers.add_metric([provider, str(code)], n)
        yield answers
        info = GaugeMetricFamily("conveyor_info", "This Conveyor's version.", labels=["version"])
        info.add_metric([__version__], 1)
        yield info


def _labelled(name: str, documentation: str, label: str, values: dict[str, int]) -> GaugeMetricFamily:
    """Every known status appears, 0 included, so a query never has to tell "none" from "missing"."""
    family = GaugeMetricFamily(name, documentation, labels=[label])
    for key, n in sorted({**dict.fromkeys(STATUSES, 0), **values}.items()):
        family.add_metric([key], n)
    return family


def _histogram(name: str, documentation: str, h: stats.Histogram) -> HistogramMetricFamily:
    buckets = [(repr(float(bound)), n) for bound, n in h.buckets] + [("+Inf", h.count)]
    return HistogramMetricFamily(name, documentation, buckets=buckets, sum_value=h.total)


class _Scrape:
    """The last text made and when; one regeneration at a time."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.text = b""
        self.made = -CACHE_SECONDS
        self.lock = asyncio.Lock()

    async def text_now(self) -> bytes:
        async with self.lock:
            if time.monotonic() - self.made >= CACHE_SECONDS:
                self.text = await asyncio.to_thread(generate_latest, self.registry)
                self.made = time.monotonic()
            return self.text


def _allowed(request: web.Request) -> None:
    """Allowed addresses read freely; anyone else needs a user's token (403 without, 401 wrong)."""
    try:
        peer = ipaddress.ip_address(request.remote or "")
    except ValueError:
        peer = None
    if isinstance(peer, ipaddress.IPv6Address) and peer.ipv4_mapped:
        peer = peer.ipv4_mapped
    if peer is not None and any(peer in network for network in request.app[CONFIG].metrics_allow):
        return
    header = request.headers.get("Authorization", "")
    if header:
        scheme, _, given = header.partition(" ")
        if scheme.lower() == "bearer" and request.app[AUTH].bearer_user(request, given.strip()) is not None:
            return  # any user: the figures are counts across repositories, never a build's contents
        raise web.HTTPUnauthorized(text="that token belongs to no user; send Authorization: Bearer <a user's token>\n",
                                   headers={"WWW-Authenticate": "Bearer"})
    raise web.HTTPForbidden(text=f"metrics are not readable from {request.remote}: add it to metrics_allow in "
                                 "the server configuration, or send Authorization: Bearer <a user's token>\n")


async def _metrics(request: web.Request) -> web.Response:
    _allowed(request)
    body = await request.app[_SCRAPE].text_now()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST, "Cache-Control": "no-store"})


@web.middleware
async def _count_webhook_answers(request: web.Request, handler):
    if not request.path.startswith("/hooks/"):
        return await handler(request)
    provider = request.path[len("/hooks/"):].split("/", 1)[0]
    provider = "gitea" if provider == "forgejo" else provider if provider in PROVIDERS else "other"
    code = 500
    try:
        response = await handler(request)
        code = response.status
        return response
    except web.HTTPException as exc:
        code = exc.status
        raise
    finally:
        request.app[_DELIVERIES][(provider, code)] += 1


def add_routes(app: web.Application) -> None:
    """``GET /metrics`` and the webhook answer counter (a middleware)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_StoreCollector(app))
    ProcessCollector(registry=registry)  # process_resident_memory_bytes, open fds, CPU seconds
    app[_DELIVERIES] = Counter()
    app[_SCRAPE] = _Scrape(registry)
    app.middlewares.append(_count_webhook_answers)
    app.router.add_get("/metrics", _metrics)
