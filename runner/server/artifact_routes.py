"""Artifacts over HTTP: the list of a build's artifacts and each file, streamed.

``GET /api/builds/{id}/artifacts`` lists them (JSON); ``GET /api/builds/{id}/artifacts/{path}``
sends one file with ``FileResponse`` (range requests, ``Content-Length``), its type guessed from its
name and always as an attachment, so a kept HTML file never runs as a page of this server.
``?job=NAME`` picks a job's file when several jobs kept the same path (default: the last kept).
Reading follows the same rule as the build's log: open to whoever may read the log, for builds
from forks too.
"""

from __future__ import annotations

import mimetypes
import urllib.parse

from aiohttp import web

from runner.errors import BuildNotFound
from runner.keep.artifacts import Artifacts
from runner.server.ids import ID_RULE, parse_id
from runner.server.keys import AUTH, CONFIG, STORE
from runner.store import artifacts as sql
from runner.store import builds as q

__all__ = ["add_routes", "artifact_rows"]


async def _build(request: web.Request) -> q.BuildRow:
    build_id = parse_id(request.match_info["id"])
    if build_id is None:
        raise web.HTTPNotFound(text=f"no such build: build ids are {ID_RULE}; GET /api/builds lists them\n")
    try:
        build = await request.app[STORE].aread(lambda c: q.get_build(c, build_id))
    except BuildNotFound as exc:
        raise web.HTTPNotFound(text=str(exc)) from None
    # A private repository's artifacts are read like its log: the same 404 as a missing build.
    request.app[AUTH].check_read(request, build.repo, str(BuildNotFound.of(build.id)))
    return build


async def artifact_rows(store, build_id: int) -> list[sql.Artifact]:
    return await store.aread(lambda c: sql.for_build(c, build_id))


async def list_artifacts(request: web.Request) -> web.Response:
    build = await _build(request)
    rows = await artifact_rows(request.app[STORE], build.id)
    base = f"/api/builds/{build.id}/artifacts/"
    items = [dict(a.to_json(), url=base + urllib.parse.quote(a.path) + f"?job={urllib.parse.quote(a.job)}")
             for a in rows]
    return web.json_response({"build": build.id, "artifacts": items, "total": sum(a.size for a in rows),
                              "limit": request.app[CONFIG].settings.artifact_limit})


async def get_artifact(request: web.Request) -> web.StreamResponse:
    build = await _build(request)
    path, job = request.match_info["path"], request.query.get("job")
    found = await request.app[STORE].aread(lambda c: sql.find(c, build.id, path, job))
    if found is None:
        raise web.HTTPNotFound(text=f"build {build.id} kept no artifact {path!r}; GET /api/builds/{build.id}/artifacts "
                                    "lists what it kept\n")
    if found.expired is not None:
        raise web.HTTPGone(text=f"artifact {path!r} of build {build.id} expired (expire_in of job {found.job!r})\n")
    if found.link is not None:
        raise web.HTTPNotFound(text=f"artifact {path!r} is a symlink to {found.link}; download that path instead\n")
    blob = Artifacts(request.app[STORE], 0).blob(build.uid, found.sha256)
    if not blob.is_file():
        raise web.HTTPGone(text=f"artifact {path!r} of build {build.id} is no longer stored\n")
    name = path.rsplit("/", 1)[-1]
    kind = mimetypes.guess_type(name)[0] or "application/octet-stream"
    quoted = urllib.parse.quote(name)
    return web.FileResponse(blob, headers={
        "Content-Type": kind,
        "Content-Disposition": f"attachment; filename=\"{_ascii(name)}\"; filename*=UTF-8''{quoted}",
        "X-Content-Type-Options": "nosniff",
        "ETag": f'"{found.sha256}"',
    })


def _ascii(name: str) -> str:
    return "".join(c if 32 <= ord(c) < 127 and c not in '"\\' else "_" for c in name)


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/builds/{id}/artifacts", list_artifacts)
    app.router.add_get("/api/builds/{id}/artifacts/{path:(?s:.+)}", get_artifact)  # (?s): a name may hold a newline
