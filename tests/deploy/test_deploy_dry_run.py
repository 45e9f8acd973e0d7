"""`conveyor deploy --dry-run` and `conveyor plan --deploy-specs` against a real swarm: the specs a
stack deploy would write, then the diff to the live services after a real deploy."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from compose_parity import remove_stack

from runner.deploy.compose_source import stack_from_dir
from runner.deploy.stack import deploy_stack

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.docker, pytest.mark.swarm]

COMPOSE = """
services:
  api:
    image: conveyor-test/busybox:1
    command: ["sh", "-c", "trap 'exit 0' TERM; sleep 1000 & wait"]
    environment: {VERSION: "{{ env.VERSION }}"}
    secrets: [token]
secrets:
  token: {file: token.txt}
"""


def _conveyor(*args, cwd, env=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "runner", *args], cwd=cwd, capture_output=True, text=True,
                          env=env, timeout=120)


async def test_dry_run_prints_specs_then_the_live_diff(swarm, store, prov, instance, git_repo, tmp_path):
    import os

    stack = f"{instance}dr"
    pipeline = (f"name: t\nimage: conveyor-test/busybox:1\nenv: {{VERSION: one}}\nstages:\n"
                f"  - name: ship\n    deploy: {{stack: {stack}, compose: deploy/stack.yml}}\n")
    repo = git_repo(files={".conveyor.yml": pipeline, "deploy/stack.yml": COMPOSE, "deploy/token.txt": "t1"})
    env = {**os.environ, "CONVEYOR_INSTANCE": instance, "CONVEYOR_DATA_DIR": str(tmp_path / "d"),
           "PYTHONPATH": str(ROOT)}  # this checkout's runner, whatever the cwd
    try:
        first = _conveyor("deploy", "--dry-run", "--json", cwd=repo, env=env)
        assert first.returncode == 0, first.stderr
        [api] = json.loads(first.stdout)
        assert api["service"] == f"{stack}_api" and api["live"] is None and api["diff"] == []
        container = api["spec"]["TaskTemplate"]["ContainerSpec"]
        assert container["Env"] == ["VERSION=one"]
        assert container["Secrets"][0]["SecretName"] == f"{stack}_token"
        assert container["Secrets"][0]["SecretID"] == "<created by the deploy>"
        assert not swarm.client.secrets.list(filters={"name": f"{stack}_token"})  # nothing was created

        compose = stack_from_dir(repo, "deploy/stack.yml", stack, {"VERSION": "one"}, False)
        assert all(o.ok for o in await deploy_stack(swarm, store, compose, 60, None, print, prov))

        same = _conveyor("plan", "--deploy-specs", ".", cwd=repo, env=env)
        assert same.returncode == 0, same.stderr
        assert f"# {stack}_api: unchanged" in same.stdout, same.stdout[same.stdout.index("---"):]

        (repo / "deploy" / "token.txt").write_text("t2")
        (repo / ".conveyor.yml").write_text(pipeline.replace("VERSION: one", "VERSION: two"))
        changed = _conveyor("deploy", "--dry-run", cwd=repo, env=env)
        assert changed.returncode == 0, changed.stderr
        assert f"# {stack}_api: would be updated" in changed.stdout
        assert '-        "VERSION=one"' in changed.stdout and '+        "VERSION=two"' in changed.stdout
        assert f'+          "SecretName": "{stack}_token-' in changed.stdout  # a new version

        direct = _conveyor("deploy", "--dry-run", "--compose", "deploy/stack.yml", "--stack", stack,
                           "--env", "VERSION=two", cwd=repo, env=env)
        assert direct.returncode == 0 and f"# {stack}_api: would be updated" in direct.stdout

        bad = _conveyor("deploy", "--dry-run", "--compose", ".conveyor.yml", "--stack", stack, cwd=repo, env=env)
        assert bad.returncode == 1 and ".conveyor.yml:1:1: error: `name` is not a key" in bad.stderr
    finally:
        remove_stack(swarm.client, stack)


def test_dry_run_pins_images_the_registry_holds_and_notes_those_it_does_not(docker_client, registries, instance,
                                                                             git_repo, tmp_path):
    """With a registry on the target, the dry run shows what the deploy writes: the digest every
    node will run; an image not pushed yet keeps its tag, with a note saying the deploy pins it."""
    import os

    from registry_helpers import write_targets

    name, stack = f"{instance}-pinned", f"{instance}pn"
    docker_client.images.get("conveyor-test/busybox:1").tag(f"{registries.open}/{name}", "1")
    for line in docker_client.images.push(f"{registries.open}/{name}", "1", stream=True, decode=True):
        assert "error" not in line, line
    pushed = [d for d in docker_client.images.get(f"{registries.open}/{name}:1").attrs["RepoDigests"]
              if d.startswith(f"{registries.open}/{name}@")]
    compose = (f"services:\n  api: {{image: '{name}:1'}}\n  late: {{image: '{name}:not-pushed-yet'}}\n")
    repo = git_repo(files={"stack.yml": compose})
    data = tmp_path / "d"
    write_targets(data / "targets.yml", {"registry": {"url": registries.open}})
    env = {**os.environ, "CONVEYOR_INSTANCE": instance, "CONVEYOR_DATA_DIR": str(data), "PYTHONPATH": str(ROOT)}
    try:
        out = _conveyor("deploy", "--dry-run", "--json", "--compose", "stack.yml", "--stack", stack, cwd=repo, env=env)
        assert out.returncode == 0, out.stderr
        specs = {p["service"]: p for p in json.loads(out.stdout)}
        assert specs[f"{stack}_api"]["spec"]["TaskTemplate"]["ContainerSpec"]["Image"] == pushed[0]
        assert specs[f"{stack}_api"]["notes"] == []
        late = specs[f"{stack}_late"]
        assert late["spec"]["TaskTemplate"]["ContainerSpec"]["Image"] == f"{name}:not-pushed-yet"
        assert "the deploy pins the digest its build pushes" in late["notes"][0]
        text = _conveyor("deploy", "--dry-run", "--compose", "stack.yml", "--stack", stack, cwd=repo, env=env)
        assert text.returncode == 0 and f"# note: {name}:not-pushed-yet: not pinned here" in text.stdout
    finally:
        docker_client.images.remove(f"{registries.open}/{name}:1")
