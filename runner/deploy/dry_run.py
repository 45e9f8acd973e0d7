"""What a deploy would write, without writing it: the exact Swarm service specs of a deploy stage
(one service or a Compose stack), and for each service that exists the difference to its live spec.

Secrets and configs are looked up but not created: a version the deploy would create shows its
name and ``<created by the deploy>`` as its id. With a registry on the target, images are pinned to
``name@sha256:...`` as the deploy would pin them; an image the registry does not hold yet (the build
stage before the deploy pushes it) keeps its tag, and a note says so. The labels that name the deploy row
(``io.conveyor.deploy``) are not known before the row exists and are left out.
"""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass
from pathlib import Path

from runner.deploy.compose import ComposeStack
from runner.deploy.compose_objects import NOT_CREATED
from runner.deploy.registry import pin
from runner.deploy.service import live_service
from runner.deploy.spec import LABEL_DEPLOY, LABEL_INSTANCE, LABEL_STACK, service_spec
from runner.deploy.stack_apply import bound_specs, prepare_stack
from runner.engine import Engine
from runner.engine import errors as derrors
from runner.errors import DeployError
from runner.plan import DeploySpec

__all__ = ["SpecPreview", "preview_service", "preview_stack", "diff_lines"]


@dataclass(frozen=True)
class SpecPreview:
    name: str
    spec: dict
    live: dict | None  # the live service's Spec; None: the deploy would create it, or no swarm asked
    notes: tuple[str, ...] = ()  # what the spec cannot show yet (an image pinned only at deploy time)


def _pinned(swarm: Engine | None, image: str) -> tuple[str, tuple[str, ...]]:
    """Blocking: the image as the deploy would write it, and a note when that is not known yet."""
    if swarm is None or swarm.target.registry is None:
        return image, ()
    try:
        pinned = pin(swarm.client, image, swarm.target.registry)
    except DeployError as exc:
        return image, (f"{image}: not pinned here ({exc}); the deploy pins the digest its build pushes",)
    return (pinned.ref if pinned else image), ()


def _live(swarm: Engine | None, name: str) -> dict | None:
    if swarm is None:
        return None
    found = live_service(swarm, name)
    if found is None:
        return None
    spec = found["Spec"]
    spec["Labels"] = {k: v for k, v in (spec.get("Labels") or {}).items() if k != LABEL_DEPLOY}
    task = spec.get("TaskTemplate") or {}
    for att in task.get("Networks") or ():  # the engine keeps ids; the deploy writes names
        try:
            att["Target"] = swarm.api.inspect_network(att["Target"])["Name"]
        except derrors.NotFound:
            pass
    # Defaults the engine fills in on its own: not a difference the deploy makes.
    if task.get("ForceUpdate") == 0:
        del task["ForceUpdate"]
    if task.get("Runtime") == "container":
        del task["Runtime"]
    if (task.get("ContainerSpec") or {}).get("Isolation") == "default":
        del task["ContainerSpec"]["Isolation"]
    return spec


def preview_service(swarm: Engine | None, spec: DeploySpec, instance: str) -> list[SpecPreview]:
    """Blocking: the spec a single-service deploy would write."""
    image, notes = _pinned(swarm, spec.image)
    desired = service_spec(spec, spec.service, image, {LABEL_INSTANCE: instance})
    return [SpecPreview(spec.service, desired, _live(swarm, spec.service), notes)]


def preview_stack(swarm: Engine | None, compose: ComposeStack, instance: str) -> list[SpecPreview]:
    """Blocking: the specs a stack deploy would write (secret/config names as the deploy would pick
    them when a swarm is given; the stack-deploy names otherwise)."""
    labels = {LABEL_INSTANCE: instance, LABEL_STACK: compose.stack}
    if swarm is not None:
        specs = prepare_stack(swarm, compose, labels, create=False)
    else:
        specs = bound_specs(compose, {(o.kind, o.key): (o.name, NOT_CREATED) for o in compose.objects}, labels)
    previews = []
    for name, spec in sorted(specs.items()):
        container = spec["TaskTemplate"]["ContainerSpec"]
        container["Image"], notes = _pinned(swarm, container["Image"])
        previews.append(SpecPreview(name, spec, _live(swarm, name), notes))
    return previews


def _engine_defaults(spec: dict) -> dict:
    """The spec as the engine will store it: what it fills in when a stack deploy leaves it out."""
    spec = json.loads(json.dumps(spec))
    if "Replicated" in spec.get("Mode", {}):
        spec["Mode"]["Replicated"].setdefault("Replicas", 1)
    spec.setdefault("EndpointSpec", {}).setdefault("Mode", "vip")
    return spec


def diff_lines(preview: SpecPreview) -> list[str]:
    """A unified diff of the live spec against the one the deploy would write (empty: no change)."""
    if preview.live is None:
        return []
    old = json.dumps(preview.live, indent=2, sort_keys=True).splitlines()
    new = json.dumps(_engine_defaults(preview.spec), indent=2, sort_keys=True).splitlines()
    return list(difflib.unified_diff(old, new, f"{preview.name} (live)", f"{preview.name} (this deploy)", lineterm=""))


def compose_root(path: Path) -> tuple[Path, str]:
    """(folder its paths are relative to, file name) of a Compose file given on the command line."""
    path = path.resolve()
    return path.parent, path.name
