"""The Run form: a manual build of a repository's branch, with a field per pipeline parameter.

The parameters come from the pipeline file(s) at the branch's head, read through the repository's
mirror after a fetch, as GitLab's "Run pipeline" form reads the file at the chosen ref: the form asks
for exactly what the build it starts will be checked against. The ``params:`` block is read without
rendering (it may not use Jinja, docs/pipeline.md), so no template runs on a page view. When the
fetch fails the form says why and still runs (the free-text field remains). ``GET
/api/repos/{repo}/params?branch=`` answers the same as JSON.
"""

from __future__ import annotations

import asyncio
import re

from aiohttp import web

from runner.dsl import declared_params
from runner.errors import SourceError
from runner.scm.mirror import Mirror
from runner.server.keys import AUTH, CONFIG
from runner.server.pages import render

__all__ = ["add_routes", "branch_params"]

_BRANCH = re.compile(r"[\w./-]{1,200}")


def _read(mirror: Mirror, branch: str) -> tuple[str, dict[str, dict]]:
    """(sha, params) at the head of ``branch``; every file's params, the first file's winning on a
    name two files declare (a manual run gives the same params to each file's build)."""
    sha = mirror.resolve_sync(f"refs/heads/{branch}")
    params: dict[str, dict] = {}
    for path, text in mirror.pipeline_texts_sync(sha).items():
        for name, spec in declared_params(text).items():
            params.setdefault(name, {"default": spec.get("default"), "choices": spec.get("choices"),
                                     "description": spec.get("description"), "file": path})
    return sha, params


async def branch_params(request: web.Request, repo_name: str, branch: str) -> dict:
    config = request.app[CONFIG]
    repo = config.repo(repo_name)
    if repo is None or not request.app[AUTH].can_read(request, repo_name):  # a private one: as if unknown
        known = sorted(r for r in config.repos if request.app[AUTH].can_read(request, r))
        raise web.HTTPNotFound(text=f"repository {repo_name!r} is not configured; known: {known}\n")
    if not _BRANCH.fullmatch(branch):
        raise web.HTTPBadRequest(text=f"{branch!r} is not a branch name\n")
    mirror = Mirror(config.settings.data_dir, repo.name, repo.source)
    try:
        sha, params = await asyncio.to_thread(_read, mirror, branch)
    except SourceError as exc:
        return {"repo": repo.name, "branch": branch, "sha": None, "params": {}, "error": str(exc)}
    return {"repo": repo.name, "branch": branch, "sha": sha, "params": params, "error": None}


async def run_page(request: web.Request) -> web.Response:
    repos = sorted(r for r in request.app[CONFIG].repos if request.app[AUTH].can_read(request, r))
    repo = request.query.get("repo") or (repos[0] if repos else "")
    branch = request.query.get("branch") or "main"
    # Reading the params fetches from the forge: only for those who may run a build, so anonymous
    # page views cannot make the server fetch (and hold the mirror) over and over.
    user = request.app[AUTH].identify(request)
    may_run = user is not None and user.has("developer")
    found = await branch_params(request, repo, branch) if repo and may_run else None
    return render(request, "run.html", repos=repos, repo=repo, branch=branch, found=found)


async def params_api(request: web.Request) -> web.Response:
    await request.app[AUTH].require(request, "developer")  # it fetches from the forge (see run_page)
    found = await branch_params(request, request.match_info["repo"], request.query.get("branch") or "main")
    return web.json_response(found)


def add_routes(app: web.Application) -> None:
    app.router.add_get("/run", run_page)
    app.router.add_get("/api/repos/{repo:.+}/params", params_api)
