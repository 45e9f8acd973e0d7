"""Stacks through the registry and environments, end to end through the CLI (`conveyor run`, then
`conveyor promote --stack`, `conveyor rollback --stack`), checked on the swarm after each command
has ended (its build's teardown included):

- a stack deploy through a registry with basic auth pins every service to `name@sha256:...` and
  records the digests; the Compose file's Jinja saw the build's params and the stage's env;
- `conveyor promote NAME --stack` puts exactly staging's digests into production's stack (its own
  networks and config copied over, its own environment variables); production rolls back alone;
- a wrong registry password fails the stage with the registry's message and a hint, before anything
  is created.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from deploy_helpers import remove_instance
from registry_helpers import write_targets

pytestmark = [pytest.mark.docker, pytest.mark.swarm]

PIPELINE = """\
image: conveyor-test/busybox:1
params:
  greeting: hello
stages:
  - name: image
    build: {{tag: "conveyor-test/{inst}:{{{{ git.short_sha }}}}"}}
  - name: staging
    env: {{STAGE_NOTE: from-the-stage}}
    deploy: {{environment: staging, stack: {inst}, compose: stack.yml, timeout: 120s}}
"""

COMPOSE = """\
services:
  web:
    image: "conveyor-test/{inst}:{{{{ git.short_sha }}}}"
    command: ["sh", "-c", "trap 'exit 0' TERM; httpd -f -p 8080 -h / & wait"]
    environment:
      GREETING: "{{{{ params.greeting }}}}"
      JINJA_NOTE: "{{{{ env.STAGE_NOTE }}}}"
      SHELL_NOTE: "${{STAGE_NOTE}}"
    configs: [motd]
    deploy: {{update_config: {{monitor: 1s, order: start-first}}}}
  worker:
    image: "conveyor-test/{inst}:{{{{ git.short_sha }}}}"
    command: ["sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait"]
    deploy: {{update_config: {{monitor: 1s, order: start-first}}}}
configs:
  motd:
    file: ./motd.txt
"""


@pytest.fixture
def cli(tmp_path, instance, registries):
    env = {**os.environ, "CONVEYOR_INSTANCE": instance, "CONVEYOR_DATA_DIR": str(tmp_path / "data"),
           "PYTHONUNBUFFERED": "1", "T_REG_USER": registries.user, "T_REG_PASSWORD": registries.password}

    def run(*args, **extra):
        return subprocess.run([sys.executable, "-m", "runner", *args], env={**env, **extra}, capture_output=True,
                              text=True, timeout=300, stdin=subprocess.DEVNULL)

    run.data = tmp_path / "data"
    return run


def _spec(client, name: str) -> dict:
    return client.api.inspect_service(name)["Spec"]


def _image(client, name: str) -> str:
    return _spec(client, name)["TaskTemplate"]["ContainerSpec"]["Image"]


def _env(client, name: str) -> list[str]:
    return _spec(client, name)["TaskTemplate"]["ContainerSpec"].get("Env") or []


def _commit(repo, version: str) -> None:
    (repo / "Dockerfile").write_text(f"FROM conveyor-test/busybox:1\nRUN echo {version} > /version\n")
    git = ["git", "-C", str(repo), "-c", "user.name=T", "-c", "user.email=t@example.invalid"]
    subprocess.run([*git, "commit", "-qam", version], check=True)


def _cleanup(client, instance: str) -> None:
    remove_instance(client, instance)  # the services first: their tasks hold the configs and images
    for config in client.configs.list(filters={"label": f"io.conveyor.instance={instance}"}):
        config.remove()
    for image in client.images.list(filters={"label": f"io.conveyor.image.instance={instance}"}):
        client.images.remove(image.id, force=True)


async def test_stack_pinned_through_registry_sees_params_promoted_and_rolled_back_alone(
        docker_client, swarm, cli, instance, registries, git_repo):
    write_targets(cli.data / "targets.yml", {
        "registry": {"url": registries.auth, "username_env": "T_REG_USER", "password_env": "T_REG_PASSWORD"},
        "environments": {
            "staging": {"target": "default", "suffix": "-staging", "env": {"APP_ENV": "staging"}},
            "production": {"target": "default", "branches": ["main"], "env": {"APP_ENV": "production"}},
        }})
    repo = git_repo(files={".conveyor.yml": PIPELINE.format(inst=instance), "stack.yml": COMPOSE.format(inst=instance),
                           "motd.txt": "welcome\n", "Dockerfile": "FROM conveyor-test/busybox:1\nRUN echo v1 > /version\n"})
    staging = {s: f"{instance}-staging_{s}" for s in ("web", "worker")}
    production = {s: f"{instance}_{s}" for s in ("web", "worker")}
    try:
        run = cli("run", str(repo), "--param", "greeting=bonjour")
        assert run.returncode == 0, run.stdout + run.stderr
        # After the build has ended: every service runs the pushed digest, from the registry with auth.
        v1 = _image(docker_client, staging["web"])
        assert v1.startswith(f"{registries.auth}/conveyor-test/{instance}@sha256:"), v1
        assert _image(docker_client, staging["worker"]) == v1
        env = _env(docker_client, staging["web"])
        for expected in ("GREETING=bonjour", "JINJA_NOTE=from-the-stage", "SHELL_NOTE=from-the-stage",
                         "APP_ENV=staging"):
            assert expected in env, env
        assert _spec(docker_client, staging["web"])["Labels"]["io.conveyor.environment"] == "staging"
        rows = json.loads(cli("deploys", f"{instance}-staging", "--json").stdout)
        assert {r["service"] for r in rows} == set(staging.values())
        assert {r["digest"] for r in rows} == {v1.split("@", 1)[1]}
        assert all(r["environment"] == "staging" and r["status"] == "succeeded" for r in rows)

        promoted = cli("promote", instance, "--stack", "--from", "staging", "--to", "production")
        assert promoted.returncode == 0, promoted.stdout + promoted.stderr
        for s in ("web", "worker"):
            assert _image(docker_client, production[s]) == v1  # the identical digest, nothing rebuilt
        prod_env = _env(docker_client, production["web"])
        assert "APP_ENV=production" in prod_env and "APP_ENV=staging" not in prod_env
        assert "GREETING=bonjour" in prod_env
        prod_spec = _spec(docker_client, production["web"])
        assert prod_spec["Labels"]["com.docker.stack.namespace"] == instance
        assert [n["Target"] for n in prod_spec["TaskTemplate"]["Networks"]] == [
            docker_client.networks.get(f"{instance}_default").id]
        assert [c["ConfigName"] for c in prod_spec["TaskTemplate"]["ContainerSpec"]["Configs"]] == [f"{instance}_motd"]
        prod_rows = json.loads(cli("deploys", instance, "--json").stdout)
        prod_v1 = {r["service"]: r for r in prod_rows if r["stack"] == instance}
        assert set(prod_v1) == set(production.values())
        staging_ids = {r["service"]: r["id"] for r in rows}
        for s in ("web", "worker"):
            row = prod_v1[production[s]]
            assert (row["environment"], row["digest"], row["kind"]) == ("production", v1.split("@", 1)[1], "deploy")
            assert row["promoted_from"] == staging_ids[staging[s]]

        # v2 goes to staging and on to production; production alone goes back to v1.
        _commit(repo, "v2")
        assert cli("run", str(repo)).returncode == 0
        v2 = _image(docker_client, staging["web"])
        assert v2 != v1 and "GREETING=hello" in _env(docker_client, staging["web"])
        assert cli("promote", instance, "--stack", "--from", "staging", "--to", "production").returncode == 0
        assert _image(docker_client, production["worker"]) == v2
        back = cli("rollback", instance, "--stack")
        assert back.returncode == 0, back.stdout + back.stderr
        for s in ("web", "worker"):
            assert _image(docker_client, production[s]) == v1
            assert _image(docker_client, staging[s]) == v2
        rolled = [r for r in json.loads(cli("deploys", instance, "--json").stdout) if r["stack"] == instance][:2]
        assert {(r["kind"], r["digest"], r["environment"]) for r in rolled} == {
            ("rollback", v1.split("@", 1)[1], "production")}

        cells = {e["service"]: e for e in json.loads(cli("environments", "--json").stdout)}
        web = cells[f"{instance}_web"]
        assert web["stack"] == instance
        assert web["environments"]["staging"]["live"]["digest"] == v2.split("@", 1)[1]
        assert web["environments"]["production"]["live"]["digest"] == v1.split("@", 1)[1]
    finally:
        _cleanup(docker_client, instance)


async def test_stack_deploy_with_a_wrong_registry_password_fails_with_the_registrys_message(
        docker_client, swarm, cli, instance, registries, git_repo):
    write_targets(cli.data / "targets.yml", {
        "registry": {"url": registries.auth, "username_env": "T_REG_USER", "password_env": "T_REG_PASSWORD"}})
    pipeline = f"""\
image: conveyor-test/busybox:1
stages:
  - name: ship
    deploy: {{stack: {instance}, compose: stack.yml}}
"""
    compose = f"""\
services:
  web:
    image: conveyor-test/{instance}:never-pushed
"""
    repo = git_repo(files={".conveyor.yml": pipeline, "stack.yml": compose})
    try:
        run = cli("run", str(repo), T_REG_PASSWORD="not-the-password")
        assert run.returncode != 0
        out = run.stdout + run.stderr
        assert f"registry {registries.auth}:" in out and "unauthorized" in out.lower(), out
        assert f"check the credentials of registry {registries.auth}" in out, out
        assert not docker_client.services.list(filters={"name": f"{instance}_"})
        assert not docker_client.networks.list(names=[f"{instance}_default"])
    finally:
        _cleanup(docker_client, instance)
