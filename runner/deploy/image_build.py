"""The ``build`` stage: build an image from the workspace through the engine API.

No Docker socket is mounted anywhere: the runner sends the context (see ``workspace.py``) to the
engine's ``/build`` endpoint itself and streams the builder's output into the stage log line by
line. Nothing is pulled (``pull=False``: no registry is assumed reachable; base images must be
local or pullable by the engine's own policy). Intermediate containers are always removed.
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import Callable
from pathlib import Path

from runner.deploy.workspace import context_tar
from runner.engine import DockerClient, Engine
from runner.engine import errors as derrors
from runner.errors import DeployError
from runner.plan import BuildSpec

__all__ = ["build_image"]


def _stream(client: DockerClient, spec: BuildSpec, context: bytes, labels: dict[str, str],
            emit: Callable[[str], None]) -> str:
    """Blocking: run the build, emit each output line, return the image id (raise on failure)."""
    image_id = None
    stream = client.api.build(fileobj=io.BytesIO(context), custom_context=True, tag=spec.tag,
                              dockerfile=spec.dockerfile, buildargs=dict(spec.args) or None, target=spec.target,
                              rm=True, forcerm=True, pull=False, decode=True, labels=labels)
    for item in stream:
        if "stream" in item:
            for line in item["stream"].splitlines():
                if line.strip():
                    emit(line.rstrip())
        elif "status" in item:
            emit(item["status"] + (f" {item['progress']}" if item.get("progress") else ""))
        if "aux" in item and "ID" in item["aux"]:
            image_id = item["aux"]["ID"]
        if "error" in item:
            raise DeployError(f"image build failed: {item['error'].strip()}")
    if image_id is None:
        image_id = client.images.get(spec.tag).id
    return image_id


async def build_image(engine: Engine, spec: BuildSpec, source: Path, volume: str | None,
                      log: Callable[[str], None], labels: dict[str, str] | None = None,
                      helper_labels: dict[str, str] | None = None) -> str:
    """Build ``spec`` from the workspace; lines go to ``log`` as they come. Returns the image id.

    ``labels`` go on the image (its provenance; every container of it inherits them), and
    ``helper_labels`` on the container that copies the context out of a workspace volume. The
    build runs on the engine's threads (``Engine.call``), like every other engine call."""
    if not spec.tag:
        raise DeployError("a build needs a `tag`, e.g. web:{{ git.short_sha }}")
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[str | None] = asyncio.Queue()

    def emit(line: str) -> None:  # from the build thread: hand lines to the loop, log them there
        loop.call_soon_threadsafe(queue.put_nowait, line)

    def work() -> str:
        client = engine.client
        try:
            ctx = context_tar(client, source, volume, spec.context, helper_labels)
            emit(f"sending build context {spec.context} ({len(ctx) / 1024:.0f} KiB) to the engine")
            return _stream(client, spec, ctx, dict(labels or {}), emit)
        except derrors.BuildError as exc:
            raise DeployError(f"image build failed: {exc}") from exc
        except derrors.APIError as exc:
            raise DeployError(f"image build failed: {exc.explanation or exc}") from exc
        finally:
            loop.call_soon_threadsafe(queue.put_nowait, None)

    task = asyncio.ensure_future(engine.call(work))

    async def consume() -> str:
        while (line := await queue.get()) is not None:
            log(line)
        return await task

    try:
        return await asyncio.wait_for(consume(), spec.timeout)  # timeout None: no limit
    except asyncio.TimeoutError:
        raise DeployError(f"image build timed out after {spec.timeout:g}s") from None
