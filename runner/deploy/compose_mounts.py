"""A service's ``volumes:`` as Swarm mounts, named as ``docker stack deploy`` names them.

Short form ``SOURCE:TARGET[:MODE]`` and long form (``type``, ``source``, ``target``, ``read_only``,
``consistency``, ``bind.propagation``, ``volume.nocopy``, ``tmpfs.size``). A named volume must be in
the top-level ``volumes`` and becomes ``<stack>_<name>`` (or its ``name:``) with the stack label and
its driver; an external one keeps its name. Bind mounts reach into the node's file system, so only
a trusted repository may write them, and only with an absolute path (the node has no checkout for a
relative one to be relative to).
"""

from __future__ import annotations

from typing import Any

from runner.deploy.compose_values import BadValue, mapping, size_bytes

__all__ = ["mounts"]

_PROPAGATION = {"private", "rprivate", "shared", "rshared", "slave", "rslave"}


def _short(text: str) -> dict[str, Any]:
    parts = text.split(":")
    if len(parts) == 1:
        return {"type": "volume", "target": parts[0]}
    if len(parts) > 3:
        raise BadValue(f"{text!r} is not SOURCE:TARGET[:MODE]")
    source, target = parts[0], parts[1]
    modes = parts[2].split(",") if len(parts) == 3 else []
    kind = "bind" if source.startswith(("/", ".", "~")) else "volume"
    out: dict[str, Any] = {"type": kind, "source": source, "target": target, "read_only": "ro" in modes}
    if kind == "volume" and "nocopy" in modes:
        out["volume"] = {"nocopy": True}
    if kind == "bind" and _PROPAGATION & set(modes):
        out["bind"] = {"propagation": next(m for m in modes if m in _PROPAGATION)}
    return out


def _named(item: dict, mount: dict, stack: str, volumes: dict) -> None:
    source = item.get("source")
    if not source:  # an anonymous volume
        return
    if source not in volumes:
        raise BadValue(f"volume {source!r} is not defined in the top-level `volumes`; add it there")
    top = volumes[source] or {}
    options: dict[str, Any] = {}
    if (item.get("volume") or {}).get("nocopy"):
        options["NoCopy"] = True
    ext = top.get("external")
    if ext:
        mount["Source"] = (ext.get("name") if isinstance(ext, dict) else None) or top.get("name") or source
    else:
        mount["Source"] = top.get("name") or f"{stack}_{source}"
    if not top.get("external"):
        options["Labels"] = {**mapping(top.get("labels")), "com.docker.stack.namespace": stack}
        if top.get("driver") or top.get("driver_opts") is not None:
            driver: dict[str, Any] = {"Name": top.get("driver") or ""}
            if top.get("driver_opts") is not None:
                driver["Options"] = {str(k): str(v) for k, v in top["driver_opts"].items()}
            options["DriverConfig"] = driver
    mount["VolumeOptions"] = options


def _one(item: Any, stack: str, volumes: dict, trusted: bool) -> dict[str, Any]:
    item = _short(item) if isinstance(item, str) else dict(item or {})
    kind = item.get("type") or "volume"
    if not item.get("target"):
        raise BadValue("a volume needs a `target` (the path inside the container)")
    mount: dict[str, Any] = {"Type": kind, "Target": item["target"]}
    if item.get("read_only"):
        mount["ReadOnly"] = True
    if item.get("consistency"):
        mount["Consistency"] = item["consistency"]
    if kind == "volume":
        _named(item, mount, stack, volumes)
    elif kind == "bind":
        source = str(item.get("source") or "")
        if not trusted:
            raise BadValue("a bind mount exposes the node's files; only a trusted repository may use one "
                           "(use a named volume, or mark the repository trusted)")
        if not source.startswith("/"):
            raise BadValue(f"bind source {source!r} must be an absolute path on the node (a relative "
                           "path has no checkout to be relative to there)")
        mount["Source"] = source
        if item.get("bind"):
            mount["BindOptions"] = {"Propagation": item["bind"].get("propagation", "")}
    elif kind == "tmpfs":
        if item.get("source"):
            raise BadValue("a tmpfs volume takes no `source`")
        if item.get("tmpfs"):
            mount["TmpfsOptions"] = {"SizeBytes": size_bytes(item["tmpfs"].get("size", 0))}
    else:
        raise BadValue(f"volume type {kind!r} must be volume, bind or tmpfs")
    return mount


def mounts(items: Any, stack: str, volumes: dict, trusted: bool) -> list[dict[str, Any]]:
    """The ``Mounts`` of a ContainerSpec (file order, as stack deploy keeps it)."""
    if not isinstance(items, list):
        raise BadValue("`volumes` must be a list")
    return [_one(item, stack, volumes, trusted) for item in items]
