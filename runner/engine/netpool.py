"""Bridge networks kept warm between builds: a build leases an idle one instead of making its own.

Creating a bridge network costs the engine about 80 ms before a build's first container can be
created, and removing it about 150 ms after its last one (iptables and namespace work, measured by
``bench/bench_run.py``): a seventh of a 20-step build. So a network a build is done with stays, empty,
for the next build, up to ``Settings.network_pool`` idle ones per engine (0: a network per build,
made and removed with it).

A lease is a container named ``<network>-lease``: created, never started, on no network, carrying the
build's labels. Container names are the engine's own exclusive lock: of two runners (two processes,
two machines sharing a remote engine, a server and a `conveyor run`) that try to lease the same
network, one gets a 409 and takes another. The lease is a job resource of the build, so whatever
removes the build's leftovers (its teardown, a sweep after a `kill -9`) ends the lease too, and a
leased network is never taken from under its build. A network is leased only when it has no
container on it: one a crashed build left behind keeps it out of use until the sweep removes it.
A network is as isolated as one made for the build: only one build's containers are ever on it.
When a build gives its network back, ``trim`` removes what is over ``Settings.network_pool``.

Pooled networks carry ``io.conveyor.pool`` and no build label: the build sweeps never remove them;
``trim`` and ``drain`` (`conveyor gc --networks`) do, each under a lease of its own that expires in
a minute (one a crash leaves blocks the network only until the next sweep). A lease carries
``io.conveyor.lease=<network>``, so ``trim`` counts the idle networks, not the leased ones. A lease
is given back only by the build that holds it (its build label is checked, its id removed), and
``holds`` says whether a build still holds its lease and network: `docker container prune` removes
a lease (created, never started) and `docker network prune` an idle network behind our back, and a
build that lost its lease must lease again, never share a network another build took meanwhile.
Blocking functions of an ``Engine``.
"""

from __future__ import annotations

import random
import secrets

from runner.engine import errors as derrors
from runner.engine.containers import ignore_missing
from runner.engine.engine import Engine
from runner.engine.labels import LABEL_BUILD, LABEL_INSTANCE, job_resource, labels_for
from runner.engine.workspace import create_from_filler, create_network

__all__ = ["POOL_LABEL", "LEASE_LABEL", "pooled", "lease", "holds", "release", "trim", "drain"]

POOL_LABEL = "io.conveyor.pool"
LEASE_LABEL = "io.conveyor.lease"  # on a lease container: the network it holds


def pooled(engine: Engine) -> list[str]:
    """The pooled networks, leased or not, in random order: runners starting together try different
    ones first."""
    names = [n["Name"] for n in engine.api.networks(filters={"label": POOL_LABEL})]
    random.shuffle(names)
    return names


def lease(engine: Engine, labels: dict[str, str], tries: list[str] | None = None) -> str:
    """Lease an idle pooled network for the build labelled ``labels`` (making one when none is idle);
    returns its name. ``tries``: the pooled networks to try, in order (default: ``pooled``). The
    lease ends when the build's job resources are removed."""
    for name in pooled(engine) if tries is None else tries:
        if _take(engine, name, labels):
            if _empty(engine, name):
                return name
            _give_back(engine, name, labels)  # a crashed build's containers are still on it, or it is gone
    name = f"conveyor-pool-{secrets.token_hex(6)}"
    _take(engine, name, labels)  # leased before it exists: nobody else can take it once listed
    create_network(engine, name, {POOL_LABEL: "bridge"})
    return name


def holds(engine: Engine, name: str, labels: dict[str, str]) -> bool:
    """Whether the build labelled ``labels`` still holds its lease of ``name``, and the network is there."""
    try:
        lease = engine.api.inspect_container(f"{name}-lease")
        engine.api.inspect_network(name)
    except derrors.NotFound:
        return False
    return (lease["Config"].get("Labels") or {}).get(LABEL_BUILD) == labels.get(LABEL_BUILD)


def release(engine: Engine, name: str, keep: int, labels: dict[str, str]) -> None:
    """End the lease of ``name`` (nothing is on it any more) and trim the pool to ``keep``: what a
    holder that outlives the lease does (a job's services network; a build's lease ends with its sweep)."""
    _give_back(engine, name, labels)
    trim(engine, keep, labels, name)


def trim(engine: Engine, keep: int, labels: dict[str, str], first: str | None = None) -> int:
    """Remove idle pooled networks while more than ``keep`` are idle, ``first`` (the one a build just
    gave back) before the others; each is leased while it goes, so a network another runner has just
    taken is never removed. Leased networks do not count: with ``keep`` or more builds running, a build
    that ends still leaves its network for the next. Returns how many went."""
    names = [n["Name"] for n in engine.api.networks(filters={"label": POOL_LABEL})]
    leased = {(c.get("Labels") or {}).get(LEASE_LABEL)
              for c in engine.api.containers(all=True, filters={"label": LEASE_LABEL})}
    idle = [name for name in names if name not in leased]
    excess = len(idle) - keep
    if excess <= 0:
        return 0
    idle.sort(key=lambda name: name != first)
    return _remove_idle(engine, idle, labels, excess)


def drain(engine: Engine, labels: dict[str, str]) -> int:
    """Remove every idle pooled network (``conveyor gc --networks``); a leased one stays. Returns
    how many went."""
    names = [n["Name"] for n in engine.api.networks(filters={"label": POOL_LABEL})]
    return _remove_idle(engine, names, labels, len(names))


def _remove_idle(engine: Engine, names: list[str], labels: dict[str, str], most: int) -> int:
    # A lock of a moment, not a build's lease: one a crash leaves expires within a minute (the next
    # sweep removes it), where the build's own labels would keep the network out of use for hours.
    lock = labels_for(f"pool-{secrets.token_hex(6)}", labels.get(LABEL_INSTANCE, ""), 60)
    removed = 0
    for name in names:
        if removed >= most:
            break
        if not _take(engine, name, lock):
            continue  # leased: in use
        try:
            if _empty(engine, name):
                engine.api.remove_network(name)
                removed += 1
        except derrors.APIError:
            pass  # gone meanwhile, or something joined it: not idle
        finally:
            _give_back(engine, name, lock)
    return removed


def _empty(engine: Engine, network: str) -> bool:
    """Whether ``network`` is there with no container on it."""
    try:
        return not engine.api.inspect_network(network).get("Containers")
    except derrors.NotFound:
        return False


def _take(engine: Engine, network: str, labels: dict[str, str]) -> bool:
    name = f"{network}-lease"
    create = dict(command=["lease"], name=name, network_disabled=True,
                  labels={**job_resource(labels, name), LEASE_LABEL: network})
    try:
        create_from_filler(engine, create, {})
        return True
    except derrors.APIError as exc:
        if exc.status_code == 409:  # another runner holds it
            return False
        raise


def _give_back(engine: Engine, network: str, labels: dict[str, str]) -> None:
    """End the lease of ``network`` if the build labelled ``labels`` holds it: one that was removed
    behind its back and taken by another build since is that build's."""
    try:
        lease = engine.api.inspect_container(f"{network}-lease")
    except derrors.NotFound:
        return
    if (lease["Config"].get("Labels") or {}).get(LABEL_BUILD) == labels.get(LABEL_BUILD):
        ignore_missing(engine.api.remove_container, lease["Id"], force=True)
