"""Helpers of the Compose parity tests: deploy a file with `docker stack deploy`, read the specs
back, normalise what may differ (the stack name, the labels Conveyor adds, digests, object ids),
and list every field that differs."""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from pathlib import Path

CORPUS = Path(__file__).parent / "compose"


def stack_deploy(stack: str, file: Path, env: dict[str, str]) -> None:
    subprocess.run(["docker", "stack", "deploy", "--resolve-image", "never", "-c", file.name, stack],
                   cwd=file.parent, env={**os.environ, **env}, check=True, capture_output=True, text=True)


def stack_specs(client, stack: str) -> dict[str, dict]:
    """Compose name -> the service's Spec as the engine stores it."""
    out = {}
    for svc in client.api.services(filters={"label": f"com.docker.stack.namespace={stack}"}):
        spec = svc["Spec"]
        for att in spec["TaskTemplate"].get("Networks") or ():  # the engine stores ids: name them
            att["Target"] = client.api.inspect_network(att["Target"])["Name"]
        out[spec["Name"][len(stack) + 1:]] = spec
    return out


def normalise(spec: dict, stack: str) -> dict:
    spec = json.loads(json.dumps(spec).replace(f'"{stack}_', '"STACK_').replace(f'"{stack}"', '"STACK"'))
    spec["Labels"] = {k: v for k, v in (spec.get("Labels") or {}).items() if not k.startswith("io.conveyor.")}
    container = spec["TaskTemplate"]["ContainerSpec"]
    container["Image"] = re.sub(r"@sha256:[0-9a-f]{64}$", "", container["Image"])
    for kind in ("Secret", "Config"):  # two objects of two stacks: their ids differ by nature
        for ref in container.get(f"{kind}s") or ():
            ref[f"{kind}ID"] = ref[f"{kind}Name"]
    return spec


def differences(a, b, path: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for key in sorted(set(a) | set(b)):
            out += differences(a.get(key), b.get(key), f"{path}.{key}" if path else key)
        return out
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in differences(x, y, f"{path}[{i}]")]
    return [] if a == b else [f"{path}: docker stack deploy {a!r} != Conveyor {b!r}"]


def remove_stack(client, stack: str) -> None:
    """`docker stack rm`, then wait for the task containers and networks to go; plus the secrets
    and configs Conveyor made for it."""
    subprocess.run(["docker", "stack", "rm", stack], capture_output=True)
    for svc in client.api.services(filters={"label": f"com.docker.stack.namespace={stack}"}):
        client.api.remove_service(svc["ID"])
    label = {"label": f"com.docker.stack.namespace={stack}"}
    deadline = time.time() + 30
    while client.containers.list(all=True, sparse=True, filters=label) and time.time() < deadline:
        time.sleep(0.3)
    for kind in ("secrets", "configs", "networks", "volumes"):
        for obj in getattr(client, kind).list(filters=label):
            for _ in range(20):
                try:
                    obj.remove()
                    break
                except Exception:  # noqa: BLE001 - still in use for a moment
                    time.sleep(0.5)
