"""What the engine's calls raise, for code outside ``runner.engine`` (imported as
``from runner.engine import errors as derrors``), and ``short(exc)``, what an engine error says in
one line.

One family for both clients: the engine's HTTP API spoken directly (runner/engine/api.py) and
docker-py, whose API errors are turned into these where it raises them (runner/engine/dockerpy.py).
The names and attributes are docker-py's (``status_code``, ``explanation``), so a caller catches
``derrors.NotFound`` whichever client answered, and nothing here imports docker-py.
"""

from __future__ import annotations

__all__ = ["DockerException", "APIError", "NotFound", "ImageNotFound", "BuildError", "api_error", "short"]

# What the engine says when a 404 is about an image (docker-py's list): such a 404 is ImageNotFound.
_IMAGE_MISSING = ("no such image", "not found: does not exist or no pull access", "repository does not exist",
                  "was found but does not match the specified platform")


class DockerException(Exception):
    """The engine could not be asked, or refused."""


class APIError(DockerException):
    """The engine answered with an error status."""

    def __init__(self, message: str, status_code: int | None = None, explanation: str | None = None) -> None:
        super().__init__(message)
        self.status_code, self.explanation = status_code, explanation

    def is_client_error(self) -> bool:
        return self.status_code is not None and 400 <= self.status_code < 500

    def is_server_error(self) -> bool:
        return self.status_code is not None and 500 <= self.status_code < 600


class NotFound(APIError):
    pass


class ImageNotFound(NotFound):
    pass


class BuildError(DockerException):
    pass


def api_error(status: int, reason: str, explanation: str | None, where: str) -> APIError:
    """The error of an answer with ``status`` (>= 400) to the request ``where`` ("GET /path"),
    worded as docker-py words it: '404 Client Error for GET /x: Not Found ("no such container")'."""
    kind = "Client" if status < 500 else "Server"
    message = f"{status} {kind} Error for {where}: {reason}"
    if explanation:
        message += f' ("{explanation}")'
    cls = APIError
    if status == 404:
        lowered = (explanation or "").lower()
        cls = ImageNotFound if any(fragment in lowered for fragment in _IMAGE_MISSING) else NotFound
    return cls(message, status, explanation)


def short(exc: Exception) -> str:
    """The first line of the engine's explanation (at most 300 characters), for messages."""
    text = getattr(exc, "explanation", None) or str(exc)
    return str(text).strip().splitlines()[0][:300] if text else type(exc).__name__
