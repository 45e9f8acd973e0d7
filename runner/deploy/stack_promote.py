"""Promotion of a stack: every service live in one environment's stack, deployed to another's with
exactly the same image digests, without building or reading the Compose file again.

The source is the newest stack deploy (or stack rollback) of ``<stack><source suffix>`` whose every
row succeeded. Each recorded spec is adjusted only by the destination's settings: the stack name
(``shop-staging_web`` -> ``shop_web``, its networks, named volumes, secrets and configs likewise),
the environment's variables and label. What the destination's swarm lacks is made from the
source's: networks with the same driver and options, configs with the same content (a config can
be read back). A secret cannot be read back from a swarm, so a secret version the destination does
not hold yet (by its content digest) refuses the promotion before anything changes. The services
are then claimed, written, watched and recorded together like a stack deploy (``deploy_specs``):
all of them converge, or all are put back.
"""

from __future__ import annotations

import asyncio
import base64
import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from runner.deploy import history
from runner.deploy.compose_objects import LABEL_DIGEST, LABEL_OBJECT, FileObject, resolve_objects
from runner.deploy.config import Environment, load_deploy_config
from runner.deploy.environments import LABEL_ENVIRONMENT, _env_list, check_branch
from runner.deploy.registry import logged_in
from runner.deploy.service import DeployOutcome
from runner.deploy.spec import LABEL_INSTANCE, LABEL_STACK
from runner.deploy.stack import deploy_specs
from runner.engine import Engine, open_target
from runner.engine import errors as derrors
from runner.errors import DeployError
from runner.settings import Settings
from runner.store.db import Store

__all__ = ["StackPromotion", "plan_stack_promotion", "promote_stack", "live_stack"]


@dataclass(frozen=True)
class StackPromotion:
    stack: str  # as the pipeline names it, without an environment's suffix
    source: Environment
    dest: Environment
    rows: tuple[history.Deploy, ...]  # the source's live stack deploy, one row per service

    @property
    def row(self) -> history.Deploy:
        return self.rows[0]

    def names(self) -> tuple[str, str]:
        return self.source.service(self.stack), self.dest.service(self.stack)


def live_stack(store: Store, target: str, stack: str) -> list[history.Deploy]:
    """Blocking: the rows of the newest batch of ``stack`` whose every row succeeded (what runs now), minus
    services that batch removed."""
    rows = [r for r in history.list_deploys(store, stack, limit=10_000, target=target) if r["stack"] == stack]
    batches: dict[str, list] = {}
    for r in rows:  # newest first
        batches.setdefault(r["batch"], []).append(r)
    for batch in batches.values():
        if all(r["status"] == "succeeded" for r in batch):
            return sorted((r for r in batch if r["spec_after"]), key=lambda r: r["service"])
    return []


async def plan_stack_promotion(settings: Settings, store: Store, stack: str, source: str,
                               dest: str) -> StackPromotion:
    """Check what can be checked without a swarm; raise DeployError saying what to do."""
    config = load_deploy_config(settings)
    src, dst = config.environment(source), config.environment(dest)
    if src.name == dst.name:
        raise DeployError(f"--from and --to are both {src.name!r}: promote from one environment to another")
    rows = await asyncio.to_thread(live_stack, store, src.target, src.service(stack))  # a read, off the loop
    if not rows:
        raise DeployError(f"nothing of stack {stack!r} is live in {src.name!r} (no succeeded deploy of stack "
                          f"{src.service(stack)!r} on target {src.target!r}): deploy it there first")
    loose = [r["service"] for r in rows if not r["digest"]]
    if loose:
        raise DeployError(f"stack {stack!r} in {src.name!r} runs {', '.join(loose)} without a pinned digest (no "
                          "registry was configured for it): configure a registry, deploy again, then promote")
    if dst.branches:
        origin = await history.origin(store, rows[0])
        branch, tag = await history.build_ref(store, origin["build_uid"])
        check_branch(dst, branch, tag)
    return StackPromotion(stack, src, dst, tuple(rows))


def _renamer(src_stack: str, dst_stack: str) -> Callable[[str], str]:
    def rename(name: str) -> str:
        return dst_stack + name[len(src_stack):] if name.startswith(src_stack + "_") else name
    return rename


def retarget(spec: dict[str, Any], plan: StackPromotion) -> dict[str, Any]:
    """A recorded spec of the source's stack as it runs in the destination's (references to secrets
    and configs still name the source's objects: ``_objects`` replaces them)."""
    src_stack, dst_stack = plan.names()
    rename = _renamer(src_stack, dst_stack)
    out = copy.deepcopy(spec)
    out["Name"] = rename(out["Name"])
    labels = {**(out.get("Labels") or {}), LABEL_STACK: dst_stack, LABEL_ENVIRONMENT: plan.dest.name}
    labels.pop("io.conveyor.deploy", None)  # the new row's id is put on when it is applied
    out["Labels"] = labels
    task = out["TaskTemplate"]
    container = task["ContainerSpec"]
    container["Labels"] = {**(container.get("Labels") or {}), LABEL_ENVIRONMENT: plan.dest.name}
    if LABEL_STACK in container["Labels"]:
        container["Labels"][LABEL_STACK] = dst_stack
    container["Env"] = _env_list(container.get("Env"), plan.source.env, plan.dest.env)
    if not container["Env"]:
        container.pop("Env")
    for net in task.get("Networks") or ():
        net["Target"] = rename(net["Target"])
    for mount in container.get("Mounts") or ():
        if mount.get("Type") == "volume" and mount.get("Source"):
            mount["Source"] = rename(mount["Source"])
            vol_labels = (mount.get("VolumeOptions") or {}).get("Labels") or {}
            if vol_labels.get(LABEL_STACK) == src_stack:
                vol_labels[LABEL_STACK] = dst_stack
    return out


def _networks(src: Engine, dst: Engine, pairs: set[tuple[str, str]], labels: dict[str, str]) -> None:
    """Blocking: every network the destination's specs name exists there, made like the source's."""
    for src_name, dst_name in sorted(pairs):
        if dst.client.networks.list(names=[dst_name]):
            continue
        try:
            net = src.api.inspect_network(src_name)
        except derrors.NotFound as exc:
            raise DeployError(f"network {dst_name!r} does not exist on target {dst.target.name!r}, nor does "
                              f"{src_name!r} on {src.target.name!r} to copy it from: create it first") from exc
        # What the engine assigned to the source network (its VXLAN id, its subnet) is not copied:
        # reused on one swarm it collides, and the new network's tasks would never leave "new".
        options = {k: v for k, v in (net.get("Options") or {}).items() if not k.endswith(".vxlanid_list")}
        try:
            dst.client.networks.create(dst_name, driver=net.get("Driver") or "overlay", options=options,
                                       internal=bool(net.get("Internal")), attachable=True, scope="swarm",
                                       labels={**(net.get("Labels") or {}), **labels})
        except derrors.APIError as exc:
            if exc.status_code != 409:
                raise DeployError(f"cannot create network {dst_name!r}: {exc.explanation or exc}") from exc


def _object(src: Engine, dst: Engine, kind: str, ident: str, rename: Callable[[str], str],
            labels: dict[str, str]) -> tuple[str, str]:
    """Blocking: (name, id) in the destination of the source's secret or config ``ident``."""
    inspect = getattr(src.api, f"inspect_{kind}")
    try:
        have = inspect(ident)
    except derrors.NotFound as exc:
        raise DeployError(f"the source's {kind} {ident} no longer exists: deploy the stack to the source "
                          "environment again, then promote") from exc
    spec = have["Spec"]
    own = spec.get("Labels") or {}
    if LABEL_OBJECT not in own:  # external: looked up by its own name, never created
        try:
            return spec["Name"], getattr(dst.api, f"inspect_{kind}")(spec["Name"])["ID"]
        except derrors.NotFound as exc:
            raise DeployError(f"external {kind} {spec['Name']!r} does not exist on target {dst.target.name!r}; "
                              f"create it there first (docker {kind} create {spec['Name']} FILE)") from exc
    name, digest = rename(own[LABEL_OBJECT]), own.get(LABEL_DIGEST)
    for found in getattr(dst.api, f"{kind}s")(filters={"label": f"{LABEL_OBJECT}={name}"}):
        if (found["Spec"].get("Labels") or {}).get(LABEL_DIGEST) == digest:
            return found["Spec"]["Name"], found["ID"]
    if kind == "secret":
        raise DeployError(f"secret {spec['Name']!r} has no copy with the same content in {name!r} on target "
                          f"{dst.target.name!r}, and a swarm never gives a secret's content back: deploy the stack "
                          "to the destination once from a build with this secret, then promote")
    extra = {k: v for k, v in own.items() if k not in (LABEL_OBJECT, LABEL_DIGEST, LABEL_STACK, LABEL_INSTANCE)}
    driver = (spec.get("Templating") or {}).get("Name")
    obj = FileObject("config", "c", name, base64.b64decode(spec.get("Data") or ""), extra, driver)
    if obj.digest != digest:
        raise DeployError(f"config {spec['Name']!r} does not match its recorded digest; deploy the stack again")
    return resolve_objects(dst.api, [obj], labels)[("config", "c")]


def prepare_dest(src: Engine, dst: Engine, plan: StackPromotion, labels: dict[str, str]) -> dict[str, dict]:
    """Blocking: the destination's specs, its networks, configs and secrets in place."""
    src_stack, dst_stack = plan.names()
    rename = _renamer(src_stack, dst_stack)
    specs, pairs = {}, set()
    for row in plan.rows:
        spec = retarget(row["spec_after"], plan)
        for old in row["spec_after"]["TaskTemplate"].get("Networks") or ():
            pairs.add((old["Target"], rename(old["Target"])))
        container = spec["TaskTemplate"]["ContainerSpec"]
        for kind, field in (("secret", "Secrets"), ("config", "Configs")):
            for ref in container.get(field) or ():
                key = kind.title()
                ref[f"{key}Name"], ref[f"{key}ID"] = _object(src, dst, kind, ref[f"{key}ID"], rename, labels)
        specs[spec["Name"]] = spec
    _networks(src, dst, pairs, labels)
    return specs


async def promote_stack(settings: Settings, store: Store, plan: StackPromotion, log: Callable[[str], None],
                        who: str, timeout: float = 300.0) -> list[DeployOutcome]:
    src_stack, dst_stack = plan.names()
    labels = {LABEL_INSTANCE: settings.instance, LABEL_STACK: dst_stack}
    dst = await open_target(settings, plan.dest.target)
    src = dst if plan.source.target == plan.dest.target else await open_target(settings, plan.source.target)
    try:
        specs = await dst.call(prepare_dest, src, dst, plan, labels)
        await dst.call(logged_in, dst.client, dst.target.registry)  # nodes pull the digests from it
        by_name = {_renamer(src_stack, dst_stack)(r["service"]): r for r in plan.rows}
        per = {n: {"image": r["image"], "digest": r["digest"], "repo": r["repo"], "build_uid": r["build_uid"],
                   "build_number": r["build_number"], "commit_sha": r["commit_sha"], "promoted_from": r["id"]}
               for n, r in by_name.items()}
        log(f"promoting stack {plan.stack} from {plan.source.name} ({src_stack}, batch {plan.row['batch']}) to "
            f"{plan.dest.name} as {dst_stack}: " + ", ".join(f"{n} {per[n]['digest'][:19]}" for n in sorted(per)))
        fields = {"kind": "deploy", "stack": dst_stack, "trigger": who, "environment": plan.dest.name}
        return await deploy_specs(dst, store, dst_stack, specs, fields, per, labels, timeout, None, log)
    finally:
        if src is not dst:
            src.close()
        dst.close()
