"""Secrets and configs of a stack: named as ``docker stack deploy`` names them, versioned when changed.

Swarm secrets and configs are immutable, and a secret's content can never be read back. So each
object Conveyor creates carries the SHA-256 of its content in a label (``io.conveyor.digest``) and
the name it would have under ``docker stack deploy`` (``io.conveyor.object``, ``<stack>_<name>``):

- the first version gets exactly the stack-deploy name, ``<stack>_<name>``;
- a changed content gets a new object ``<stack>_<name>-<digest8>``; the file inside the container
  keeps its name (``/run/secrets/<name>``, or the ``target`` written), so the service sees no
  difference but a new task;
- content seen before reuses the object that has it.

After a successful deploy, versions that neither the new specs nor the specs from before the
deploy reference are removed (the ones before are kept so a rollback can re-apply them).
External objects must exist already; they are looked up, never created or removed.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from runner.engine import APIClient
from runner.engine import errors as derrors
from runner.errors import DeployError

__all__ = ["FileObject", "resolve_objects", "fill_refs", "referenced_ids", "remove_unused", "missing_objects"]

LABEL_OBJECT = "io.conveyor.object"
LABEL_DIGEST = "io.conveyor.digest"
NOT_CREATED = "<created by the deploy>"


@dataclass(frozen=True)
class FileObject:
    kind: str  # "secret" or "config"
    key: str  # its name in the Compose file
    name: str  # the name docker stack deploy gives it
    data: bytes | None = None  # None: external
    labels: dict[str, str] = field(default_factory=dict)
    template_driver: str | None = None

    @property
    def digest(self) -> str:
        return hashlib.sha256((self.template_driver or "").encode() + b"\0" + (self.data or b"")).hexdigest()


def _api(api: APIClient, kind: str):
    return {"list": getattr(api, f"{kind}s"), "inspect": getattr(api, f"inspect_{kind}"),
            "create": getattr(api, f"create_{kind}"), "remove": getattr(api, f"remove_{kind}")}


def _find(api: APIClient, kind: str, name: str) -> dict | None:
    try:
        return _api(api, kind)["inspect"](name)
    except derrors.NotFound:
        return None


def _resolve_one(api: APIClient, obj: FileObject, labels: dict[str, str], create: bool) -> tuple[str, str]:
    calls = _api(api, obj.kind)
    if obj.data is None:
        found = _find(api, obj.kind, obj.name)
        if found is None:
            raise DeployError(f"external {obj.kind} {obj.name!r} does not exist; create it first "
                              f"(docker {obj.kind} create {obj.name} FILE)")
        return obj.name, found["ID"]
    for have in calls["list"](filters={"label": f"{LABEL_OBJECT}={obj.name}"}):
        if (have["Spec"].get("Labels") or {}).get(LABEL_DIGEST) == obj.digest:
            return have["Spec"]["Name"], have["ID"]
    name = obj.name if _find(api, obj.kind, obj.name) is None else f"{obj.name}-{obj.digest[:8]}"
    if not create:
        return name, NOT_CREATED
    all_labels = {**obj.labels, **labels, LABEL_OBJECT: obj.name, LABEL_DIGEST: obj.digest}
    kwargs: dict[str, Any] = {"labels": all_labels}
    if obj.template_driver:
        kwargs["templating"] = {"Name": obj.template_driver}
    try:
        created = calls["create"](name, obj.data, **kwargs)
    except derrors.APIError as exc:
        raise DeployError(f"the swarm refused {obj.kind} {name!r}: {exc.explanation or exc}") from exc
    return name, created["ID"]


def resolve_objects(api: APIClient, objects: list[FileObject], labels: dict[str, str],
                    create: bool = True) -> dict[tuple[str, str], tuple[str, str]]:
    """Blocking: (kind, Compose key) -> (Swarm name, id), creating new versions when ``create``
    (a dry run does not: its ids read ``<created by the deploy>``)."""
    return {(o.kind, o.key): _resolve_one(api, o, labels, create) for o in objects}


def fill_refs(spec: dict[str, Any], resolved: dict[tuple[str, str], tuple[str, str]]) -> dict[str, Any]:
    """Put names and ids into the references ``compose_service`` left as ``{"key": ...}``, sorted by
    name as stack deploy sorts them."""
    container = spec["TaskTemplate"]["ContainerSpec"]
    for kind, field_name in (("secret", "Secrets"), ("config", "Configs")):
        refs = []
        for ref in container.get(field_name) or ():
            name, ident = resolved[(kind, ref["key"])]
            refs.append({"File": ref["File"], f"{kind.title()}ID": ident, f"{kind.title()}Name": name})
        if refs:
            container[field_name] = sorted(refs, key=lambda r: r[f"{kind.title()}Name"])
    return spec


def referenced_ids(specs: list[dict | None]) -> set[str]:
    out = set()
    for spec in specs:
        container = ((spec or {}).get("TaskTemplate") or {}).get("ContainerSpec") or {}
        out |= {r.get("SecretID") for r in container.get("Secrets") or ()}
        out |= {r.get("ConfigID") for r in container.get("Configs") or ()}
    return out - {None}


def missing_objects(api: APIClient, specs: list[dict | None]) -> list[str]:
    """Blocking: the secrets and configs the specs reference that no longer exist."""
    out = []
    for spec in specs:
        container = ((spec or {}).get("TaskTemplate") or {}).get("ContainerSpec") or {}
        for kind, field_name in (("secret", "Secrets"), ("config", "Configs")):
            for ref in container.get(field_name) or ():
                if _find(api, kind, ref[f"{kind.title()}ID"]) is None:
                    out.append(f"{kind} {ref[f'{kind.title()}Name']}")
    return sorted(set(out))


def remove_unused(api: APIClient, stack: str, keep: set[str]) -> list[str]:
    """Blocking: remove this stack's Conveyor-made versions whose ids are not in ``keep``; returns
    their names. One still in use (by a service outside Conveyor) is left alone."""
    removed = []
    for kind in ("secret", "config"):
        calls = _api(api, kind)
        for obj in calls["list"](filters={"label": [f"com.docker.stack.namespace={stack}", LABEL_OBJECT]}):
            if obj["ID"] in keep:
                continue
            try:
                calls["remove"](obj["ID"])
                removed.append(f"{kind} {obj['Spec']['Name']}")
            except derrors.APIError:
                continue  # in use or already gone
    return removed
