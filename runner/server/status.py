"""Commit statuses back to the forge: pending when a build starts, then success or failure.

Only for repositories with a status token. Every build sends ``pending`` once its commit is known
(a manual build's branch is resolved first) and its final status at the end. The call has a short timeout; any failure is logged and
swallowed, because a forge being down must never fail or delay a build.

- GitHub: ``POST {api}/repos/{owner}/{repo}/statuses/{sha}`` (JSON), ``Authorization: Bearer``.
- GitLab: ``POST {api}/projects/{url-encoded path}/statuses/{sha}`` (form), ``PRIVATE-TOKEN``.
- Gitea/Forgejo: ``POST {api}/repos/{owner}/{repo}/statuses/{sha}`` (JSON), ``Authorization: token``.
"""

from __future__ import annotations

import logging
from pathlib import PurePosixPath
from urllib.parse import quote

import aiohttp

from runner.server.config import RepoConfig

__all__ = ["StatusReporter", "forge_state"]

log = logging.getLogger("conveyor.status")

_GITHUB = {"pending": "pending", "running": "pending", "success": "success", "skipped": "success"}
_GITLAB = {"pending": "pending", "running": "running", "success": "success", "cancelled": "canceled",
           "skipped": "skipped"}
_DESCRIPTIONS = {"pending": "queued", "running": "running", "success": "passed", "failure": "failed",
                 "cancelled": "cancelled", "timed_out": "timed out", "config_error": "pipeline file is wrong",
                 "interrupted": "interrupted", "skipped": "no pipeline"}


def forge_state(provider: str, status: str) -> str:
    """A build status in the words of the forge's API."""
    if provider == "gitlab":
        return _GITLAB.get(status, "failed")
    state = _GITHUB.get(status)
    if state:
        return state
    return "error" if status in ("config_error", "interrupted", "cancelled") else "failure"


class StatusReporter:
    def __init__(self, public_url: str, timeout: float = 10.0) -> None:
        self.public_url = public_url
        self.timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=self.timeout)
        return self._session

    async def report(self, repo: RepoConfig, sha: str | None, status: str, build_id: int,
                     pipeline: str | None = None) -> bool:
        """Send one status; True when the forge accepted it. Never raises. ``pipeline`` names the
        file when a commit has several, so each gets its own status (``conveyor/deploy``) and one
        file's success never hides another's failure."""
        cfg = repo.status
        if not cfg.token or not cfg.api_url or not sha:
            return False
        context = cfg.context if pipeline is None else f"{cfg.context}/{PurePosixPath(pipeline).stem}"
        api = cfg.api_url.rstrip("/")
        target = f"{self.public_url}/builds/{build_id}"
        state = forge_state(repo.provider, status)
        description = f"build {_DESCRIPTIONS.get(status, status)}"
        try:
            if repo.provider == "gitlab":
                url = f"{api}/projects/{quote(repo.forge_name, safe='')}/statuses/{sha}"
                request = self._client().post(
                    url, headers={"PRIVATE-TOKEN": cfg.token},
                    data={"state": state, "name": context, "target_url": target, "description": description},
                )
            else:
                scheme = "Bearer" if repo.provider == "github" else "token"
                url = f"{api}/repos/{repo.forge_name}/statuses/{sha}"
                request = self._client().post(
                    url, headers={"Authorization": f"{scheme} {cfg.token}", "Accept": "application/json"},
                    json={"state": state, "context": context, "target_url": target, "description": description},
                )
            async with request as response:
                if response.status >= 300:
                    body = (await response.text())[:200]
                    log.warning("commit status for %s@%s: %s answered %s: %s", repo.name, sha[:8], url,
                                response.status, body)
                    return False
                return True
        except Exception as exc:  # noqa: BLE001 - a forge that is down never fails a build
            log.warning("commit status for %s@%s could not be sent: %s", repo.name, sha[:8], exc)
            return False
