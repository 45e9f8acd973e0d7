"""``verify``: a check after a deploy converged; its failure rolls the service back.

Two kinds, retried every second until one attempt passes or ``within`` seconds have passed:

- ``http``: the runner fetches the URL (aiohttp, no redirects followed) and wants ``status``.
- ``command``: ``sh -c COMMAND`` in a throwaway container attached to the service's first network
  (the network must be attachable; networks Conveyor creates are), exit status 0 passes. Its
  image is ``verify.image``, else the stage's default image, else ``conveyor-test/busybox:1``.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable

import aiohttp
from runner.engine import Engine
from runner.engine import errors as derrors
from runner.errors import DeployError
from runner.plan import Verify

__all__ = ["run_verify", "DEFAULT_VERIFY_IMAGE"]

DEFAULT_VERIFY_IMAGE = "conveyor-test/busybox:1"
RETRY = 1.0


async def _http_once(url: str, status: int) -> str | None:
    """None when it passed, else why not."""
    try:
        timeout = aiohttp.ClientTimeout(total=5)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            async with session.get(url, allow_redirects=False) as resp:
                if resp.status == status:
                    return None
                return f"GET {url} answered {resp.status}, wanted {status}"
    except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
        return f"GET {url} failed: {exc.__class__.__name__} {exc}".strip()


def _command_once(swarm: Engine, image: str, command: str, network: str, labels: dict[str, str]) -> str | None:
    """Blocking: run the command once in a container on ``network``; None when it exited 0."""
    name = f"conveyor-verify-{uuid.uuid4().hex[:10]}"
    container = swarm.client.containers.create(image, ["sh", "-c", command], name=name, labels=labels,
                                               network=network, detach=True)
    try:
        container.start()
        result = container.wait(timeout=60)
        if result.get("StatusCode") == 0:
            return None
        out = container.logs(tail=5).decode(errors="replace").strip().replace("\n", " | ")
        return f"verify command exited {result.get('StatusCode')}" + (f": {out}" if out else "")
    finally:
        container.remove(force=True)


async def run_verify(swarm: Engine, verify: Verify, networks: list[str], log: Callable[[str], None],
                     default_image: str | None = None, labels: dict[str, str] | None = None) -> str | None:
    """Retry the check until it passes (None) or ``verify.within`` runs out (the last failure)."""
    if verify.command is not None and not networks:
        raise DeployError("verify: a command needs the service on a network; add `networks: [NAME]` to the deploy")
    if verify.http is None and verify.command is None:
        raise DeployError("verify needs `http: URL` or `command: ...`")
    image = verify.image or default_image or DEFAULT_VERIFY_IMAGE
    deadline = time.monotonic() + verify.within
    attempt, last = 0, None
    while True:
        attempt += 1
        if verify.http is not None:
            last = await _http_once(verify.http, verify.status)
        else:
            try:
                last = await swarm.call(_command_once, swarm, image, verify.command, networks[0],
                                        {"io.conveyor.managed": "1", **(labels or {})})
            except derrors.ImageNotFound as exc:
                raise DeployError(f"verify image {image} is not on the target; build it there or set verify.image") from exc
            except derrors.APIError as exc:
                raise DeployError(f"verify: cannot run the command container: {exc.explanation or exc}") from exc
        if last is None:
            log(f"verify passed (attempt {attempt})")
            return None
        if attempt == 1 or attempt % 5 == 0:
            log(f"verify attempt {attempt}: {last}")
        if time.monotonic() + RETRY > deadline:
            log(f"verify failed after {attempt} attempts in {verify.within:g}s: {last}")
            return last
        await asyncio.sleep(RETRY)
