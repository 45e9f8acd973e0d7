"""Images and containers every backend needs: pull if not present, create, start, remove.

Blocking functions of an ``Engine``; run each with ``engine.call(fn, engine, ...)``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from runner.engine import errors as derrors
from runner.engine.engine import Engine
from runner.engine.errors import short
from runner.errors import BackendError, ImageNotFound

__all__ = ["ensure_image", "create_container", "start_container", "remove_container", "ignore_missing"]


def ensure_image(engine: Engine, image: str) -> None:
    """Pull policy if-not-present: a local image is used as is; a missing one is pulled once."""
    try:
        engine.api.inspect_image(image)
        return
    except derrors.ImageNotFound:
        pass
    repo, tag = _split_image(image)
    try:
        engine.api.pull(repo, tag=tag)
        engine.api.inspect_image(image)
    except Exception as exc:  # noqa: BLE001 - every pull failure gets the same advice
        raise ImageNotFound(
            f"image {image!r} is not on this engine and could not be pulled ({short(exc)}); "
            f"run `conveyor images bootstrap` for the conveyor-test images, or "
            f"`docker pull {image}` / `docker load -i FILE` where a registry is out of reach"
        ) from None


def create_container(engine: Engine, create: dict[str, Any], host_config: dict[str, Any]) -> str:
    """Create (not start) a container: ``create`` as ``EngineAPI.create_container``'s keywords,
    ``host_config`` as ``create_host_config``'s (docker-py's names). Returns its id."""
    api = engine.api
    return api.create_container(host_config=api.create_host_config(**host_config), **create)["Id"]


def start_container(engine: Engine, cid: str) -> None:
    """Start it; one that cannot start is removed."""
    try:
        engine.api.start(cid)
    except Exception:
        remove_container(engine, cid)
        raise


def remove_container(engine: Engine, cid: str) -> None:
    """Remove it, running or not, keeping its volumes; one already gone (or going) is no error."""
    try:
        engine.api.remove_container(cid, force=True, v=False)
    except derrors.NotFound:
        pass
    except derrors.APIError as exc:
        if "already in progress" not in str(exc):
            raise


def ignore_missing(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> int:
    """``fn(*args)`` (a removal): 1 when it removed something, 0 when it was gone; retried a few
    times while the resource is still in use by a container the engine is removing."""
    for attempt in range(5):
        try:
            fn(*args, **kwargs)
            return 1
        except derrors.NotFound:
            return 0
        except derrors.APIError as exc:
            if attempt == 4:
                raise BackendError(f"could not remove {args[0]}: {short(exc)}; "
                                   "the next `conveyor run` or the server's sweep removes it") from None
            time.sleep(0.2 * (attempt + 1))
    return 0


def _split_image(image: str) -> tuple[str, str]:
    if "@" in image:
        return image, None  # type: ignore[return-value]
    name, sep, tag = image.rpartition(":")
    if sep and "/" not in tag:
        return name, tag
    return image, "latest"
