"""Ship: push a built image to a registry, and pin a deploy's image to the digest the registry holds.

Every call is blocking (run it through ``Engine.call``). Credentials go to the engine with the one
API call that needs them (docker-py ``auth_config=``, or, for a service create/update, the client's
in-memory login of ``logged_in``); nothing is written to ``~/.docker/config.json`` or anywhere else.

A pinned reference is ``repository@sha256:...``: the manifest digest the registry answered the
push with, so every node of the swarm pulls exactly the same bytes whatever happens to the tag.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from runner.deploy.config import Registry
from runner.engine import DockerClient
from runner.engine import errors as derrors
from runner.errors import DeployError

__all__ = ["Pinned", "push", "pin", "pin_for_build", "remember_push", "split_ref", "logged_in", "registry_error"]

# What each build's `build` stages pushed, by (build uid, tag as written and as qualified): a deploy
# later in the same build pins exactly the digest its push answered with, even on a target whose
# engine does not have the image or that names no registry of its own. A build's stages run in one
# process; the newest few hundred pushes are kept.
_PUSHES: OrderedDict[tuple[str, str], tuple[Pinned, Registry]] = OrderedDict()
_PUSHES_LOCK = threading.Lock()
_MAX_PUSHES = 512


@dataclass(frozen=True)
class Pinned:
    ref: str  # repository@sha256:...
    digest: str  # sha256:...


def split_ref(ref: str) -> tuple[str, str | None, str | None]:
    """``host:5000/web:1`` -> (``host:5000/web``, ``1``, None); ``web@sha256:ab`` -> (``web``, None, ``sha256:ab``)."""
    digest = None
    if "@" in ref:
        ref, digest = ref.split("@", 1)
    name, _, tag = ref.rpartition(":")
    if not name or "/" in tag:  # no tag: the colon (if any) was a registry port
        return ref, None, digest
    return name, tag, digest


def registry_error(registry: Registry, message: str) -> DeployError:
    """The registry's (or engine's) own message, plus what to do about it."""
    text = message.strip()
    low = text.lower()
    if any(w in low for w in ("unauthorized", "authentication required", "no basic auth", "denied", "401")):
        hint = (f"check the credentials of registry {registry.url} (username_env/password_env in the targets "
                "file or the server configuration)" if registry.username_env else
                f"registry {registry.url} wants a login: set username_env and password_env for it")
    elif any(w in low for w in ("connection refused", "no such host", "i/o timeout", "dial tcp", "no route",
                                "timeout exceeded", "eof")):
        hint = f"is the registry running and reachable from the Docker engine at {registry.url}? check its url"
    elif "http response to https client" in low:
        hint = (f"registry {registry.url} speaks plain HTTP: add it to the engine's insecure-registries "
                "(/etc/docker/daemon.json; 127.0.0.0/8 is allowed by default) and set insecure: true")
    else:
        hint = f"see the registry's log at {registry.url}"
    return DeployError(f"registry {registry.url}: {text} ({hint})")


def _check_insecure(client: DockerClient, registry: Registry) -> None:
    """``insecure: true`` only works when the engine already allows HTTP to that registry."""
    if not registry.insecure:
        return
    config = client.info().get("RegistryConfig") or {}
    index = (config.get("IndexConfigs") or {}).get(registry.url)
    host = registry.url.split(":", 1)[0]
    if index is not None and index.get("Secure") is False:
        return
    if host in ("localhost",) or host.startswith("127."):
        return  # the engine's default 127.0.0.0/8 insecure range
    raise DeployError(f"registry {registry.url} is marked insecure (plain HTTP), but the Docker engine does not "
                      "allow that: add it to insecure-registries in /etc/docker/daemon.json and restart dockerd")


def push(client: DockerClient, image_id: str, tag: str, registry: Registry,
         emit: Callable[[str], None]) -> Pinned:
    """Tag ``image_id`` into the registry and push it; returns the pinned reference the push made."""
    _check_insecure(client, registry)
    target = registry.qualify(tag)
    repository, version, _ = split_ref(target)
    version = version or "latest"
    if not registry.owns(target):
        raise DeployError(f"the tag {tag} names another registry than {registry.url}; drop the registry from the "
                          f"tag (e.g. {tag.split('/', 1)[-1]}) or set push: false")
    client.api.tag(image_id, repository, version)
    emit(f"pushing {repository}:{version} to {registry.url}")
    digest = None
    try:
        for item in client.api.push(repository, tag=version, stream=True, decode=True,
                                    auth_config=registry.auth_config()):
            if "error" in item:
                raise registry_error(registry, item.get("error") or str(item.get("errorDetail")))
            if "Digest" in (item.get("aux") or {}):
                digest = item["aux"]["Digest"]
            elif item.get("status") and item.get("id") is None:
                emit(item["status"])
    except derrors.APIError as exc:
        raise registry_error(registry, exc.explanation or str(exc)) from exc
    if digest is None:
        raise DeployError(f"registry {registry.url}: the push of {repository}:{version} ended without a digest")
    emit(f"pushed {repository}:{version} ({digest})")
    return Pinned(f"{repository}@{digest}", digest)


def pin(client: DockerClient, ref: str, registry: Registry | None) -> Pinned | None:
    """The digest-pinned form of ``ref``: as written when it has one; else, with a registry, the repo
    digest a push left on the local image, or what the registry answers for the tag. None: no
    registry, so there is nothing to pin against."""
    repository, _, digest = split_ref(ref)
    if digest:
        return Pinned(ref, digest)
    if registry is None:
        return None
    qualified = registry.qualify(ref)
    repository, _, _ = split_ref(qualified)
    for name in (qualified, ref):
        try:
            local = client.images.get(name)
        except derrors.ImageNotFound:
            continue
        # RepoDigests lists every repository the image was pushed to (or pulled from); only the
        # one of this registry is ours. Several pushes of other images to the same tag leave only
        # the newest, and the local image is the one the tag names here.
        for entry in local.attrs.get("RepoDigests") or []:
            if entry.startswith(repository + "@"):
                return Pinned(entry, entry.split("@", 1)[1])
    try:
        data = client.api.inspect_distribution(qualified, auth_config=registry.auth_config() if
                                               registry.owns(qualified) else None)
    except derrors.APIError as exc:
        raise registry_error(registry, f"cannot find {qualified}: {exc.explanation or exc}; push it first "
                                       "(a build stage pushes when a registry is configured)") from exc
    digest = data["Descriptor"]["digest"]
    return Pinned(f"{repository}@{digest}", digest)


def remember_push(build_uid: str, tag: str, pinned: Pinned, registry: Registry) -> None:
    with _PUSHES_LOCK:
        for key in {tag, registry.qualify(tag)}:
            _PUSHES[(build_uid, key)] = (pinned, registry)
            _PUSHES.move_to_end((build_uid, key))
        while len(_PUSHES) > _MAX_PUSHES:
            _PUSHES.popitem(last=False)


def pin_for_build(client: DockerClient, ref: str, registry: Registry | None,
                  build_uid: str | None) -> tuple[Pinned | None, Registry | None]:
    """Blocking: ``pin`` that first takes what this build pushed for ``ref``; returns the pinned
    reference and the registry its pulls need credentials for (None, None: nothing to pin against)."""
    with _PUSHES_LOCK:
        recorded = _PUSHES.get((build_uid, ref)) if build_uid and "@" not in ref else None
    if recorded is not None:
        return recorded
    return pin(client, ref, registry), registry


def logged_in(client: DockerClient, registry: Registry | None) -> None:
    """Give the client the registry's credentials in memory, so the engine's service create/update
    carries them to every node that pulls (``docker service create --with-registry-auth``).
    docker-py's ``login`` asks the engine to check them first; a refusal is the registry's message."""
    if registry is None:
        return
    auth = registry.auth_config()
    if auth is None:
        return
    try:
        client.login(auth["username"], auth["password"], registry=registry.url, reauth=True)
    except derrors.APIError as exc:
        raise registry_error(registry, exc.explanation or str(exc)) from exc
