"""docker-py's exceptions, for code outside ``runner.engine`` that catches them (imported as
``from runner.engine import errors as derrors``), so that nothing else imports docker-py; and
``short(exc)``, what an engine error says in one line."""

from __future__ import annotations

from docker.errors import APIError, BuildError, DockerException, ImageNotFound, NotFound

__all__ = ["APIError", "BuildError", "DockerException", "ImageNotFound", "NotFound", "short"]


def short(exc: Exception) -> str:
    """The first line of the engine's explanation (at most 300 characters), for messages."""
    text = getattr(exc, "explanation", None) or str(exc)
    return str(text).strip().splitlines()[0][:300] if text else type(exc).__name__
