"""docker-py, for what the engine's own client (runner/engine/api.py) does not speak: services,
secrets, nodes, image builds, registry pushes and pulls. Imported only when one of those is asked for.

Its API errors are raised as runner/engine/errors.py's, where docker-py raises them (every one goes
through ``APIClient._raise_for_status``), so callers catch one family whichever client answered.
"""

from __future__ import annotations

from typing import Any

import docker
import docker.errors

from runner.engine.errors import api_error

__all__ = ["make_client", "kwargs_from_env", "TLSConfig", "DockerClient"]

TLSConfig = docker.tls.TLSConfig
DockerClient = docker.DockerClient  # the type of ``Engine.client``, for annotations


class _APIClient(docker.APIClient):
    def _raise_for_status(self, response: Any) -> None:
        try:
            super()._raise_for_status(response)
        except docker.errors.APIError as exc:
            request = response.request
            raise api_error(response.status_code, response.reason, exc.explanation,
                            f"{request.method} {request.path_url}") from exc


class _DockerClient(docker.DockerClient):
    def __init__(self, **kwargs: Any) -> None:  # docker-py's own sets ``api`` to a plain APIClient
        self.api = _APIClient(**kwargs)


def make_client(timeout: float, pool: int, **kwargs: Any) -> docker.DockerClient:
    """docker-py's high-level client (its ``api`` the low-level one), asking the engine its API
    version now; ``kwargs``: ``base_url`` and ``tls``."""
    return _DockerClient(version="auto", timeout=timeout, max_pool_size=pool, **kwargs)


def kwargs_from_env() -> dict[str, Any]:
    return docker.utils.kwargs_from_env()
