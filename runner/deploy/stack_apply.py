"""What a stack deploy and a stack rollback share: claiming every service, preparing the swarm
(networks, secrets, configs) and writing a set of specs then watching them all at once."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

from runner.deploy import history
from runner.deploy.compose import ComposeStack
from runner.deploy.compose_objects import fill_refs, resolve_objects
from runner.deploy.service import live_service
from runner.deploy.spec import LABEL_INSTANCE, LABEL_MANAGED, apply_spec
from runner.deploy.watch import WatchResult, watch_service
from runner.engine import Engine
from runner.engine import errors as derrors
from runner.engine import types as dtypes
from runner.errors import DeployError
from runner.store.db import Store

__all__ = ["claim_all", "apply_and_watch", "prepare_stack", "bound_specs"]

Log = Callable[[str], None]


async def claim_all(stack: contextlib.AsyncExitStack, store: Store, target: str, names: list[str], fields: dict,
                    log: Log, per_service: dict[str, dict] | None = None) -> dict[str, int]:
    """Claim every service in name order (two stack deploys never deadlock); locks live in ``stack``."""
    ids = {}
    for name in sorted(names):
        await stack.enter_async_context(history.service_lock(target, name))
        ids[name] = await history.claim(store, {"service": name, "target": target, **fields,
                                                **(per_service or {}).get(name, {})}, log)
    return ids


async def apply_and_watch(swarm: Engine, specs: dict[str, dict | None], timeout: float,
                          log: Log) -> dict[str, WatchResult]:
    """Write every spec (None: remove the service) at once, then watch them all at once."""

    async def write(name: str, spec: dict | None):
        current = await swarm.call(live_service, swarm, name)
        if spec is None:
            if current is not None:
                await swarm.call(swarm.api.remove_service, current["ID"])
        else:
            await swarm.call(apply_spec, swarm.api, spec, current)
        return (current or {}).get("UpdateStatus")

    stale = dict(zip(specs, await asyncio.gather(*(write(n, s) for n, s in specs.items()))))
    names = [n for n, s in specs.items() if s is not None]
    results = await asyncio.gather(*(watch_service(swarm, n, timeout, log, stale=stale[n]) for n in names))
    return dict(zip(names, results))


def _networks(swarm: Engine, compose: ComposeStack, labels: dict[str, str]) -> None:
    for name in compose.external_networks:
        try:
            net = swarm.api.inspect_network(name)
        except derrors.NotFound as exc:
            raise DeployError(f"network {name!r} is declared external but does not exist; create a swarm-scoped "
                              f"network first (docker network create -d overlay {name})") from exc
        if net.get("Scope") != "swarm":
            raise DeployError(f"external network {name!r} is {net.get('Scope')}-scoped; a stack needs a swarm one")
    for name, opts in compose.networks.items():
        if swarm.client.networks.list(names=[name]):
            continue
        ipam = dtypes.IPAMConfig(driver=opts["ipam"]["Driver"], pool_configs=[
            dtypes.IPAMPool(subnet=c["Subnet"]) for c in opts["ipam"]["Config"]]) if opts["ipam"] else None
        try:
            # Attachable whatever the file says: a stack's `verify` command joins the network.
            swarm.client.networks.create(name, driver=opts["driver"], options=opts["options"], ipam=ipam,
                                         internal=opts["internal"], attachable=True,
                                         labels={**opts["labels"], **labels}, scope="swarm")
        except derrors.APIError as exc:
            if exc.status_code != 409:  # created meanwhile by a concurrent deploy
                raise DeployError(f"cannot create network {name!r}: {exc.explanation or exc}") from exc


def prepare_stack(swarm: Engine, compose: ComposeStack, labels: dict[str, str], create: bool = True) -> dict[str, dict]:
    """Blocking: networks created, secrets and configs created or found (new versions when the
    content changed), and the service specs with their references bound. ``create=False`` (a dry
    run) changes nothing on the swarm."""
    if create:
        _networks(swarm, compose, labels)
    resolved = resolve_objects(swarm.api, compose.objects, labels, create)
    return bound_specs(compose, resolved, labels)


def bound_specs(compose: ComposeStack, resolved: dict, labels: dict[str, str]) -> dict[str, dict[str, Any]]:
    """The specs with their secret/config references filled in and Conveyor's service labels added."""
    import copy

    out = {}
    for name, spec in compose.services.items():
        spec = fill_refs(copy.deepcopy(spec), resolved)
        spec["Labels"] = {**spec["Labels"], LABEL_INSTANCE: labels[LABEL_INSTANCE], LABEL_MANAGED: "1"}
        out[name] = spec
    return out
