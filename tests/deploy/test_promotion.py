"""Build once, deploy everywhere, end to end through the CLI: `conveyor run` builds and pushes once,
deploys to staging, waits for its approval; `conveyor promote` puts the very digest live in staging
into production; production rolls back while staging stays; a hand-made change shows as drift.

Both environments live on the one single-node swarm of the test bed, as two services: staging's
service carries the environment's `suffix` (`-staging`), production's none. That is how two
environments share a swarm (docs/deploy.md); with two swarms, each environment names its target.
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
stages:
  - name: image
    build: {{tag: "conveyor-test/{inst}:{{{{ git.short_sha }}}}"}}
  - name: staging
    deploy:
      environment: staging
      service: {inst}-web
      image: "conveyor-test/{inst}:{{{{ git.short_sha }}}}"
      command: ["sh", "-c", "trap 'exit 0' TERM; cat /version; httpd -f -p 8080 -h / & wait"]
      labels: {{io.conveyor.instance: {inst}}}
      update: {{order: start-first, monitor: 1s}}
  - name: sign-off
    approval: {{message: "promote {inst}-web to production?"}}
"""


@pytest.fixture
def cli(tmp_path, instance):
    env = {**os.environ, "CONVEYOR_INSTANCE": instance, "CONVEYOR_DATA_DIR": str(tmp_path / "data"),
           "PYTHONUNBUFFERED": "1"}

    def run(*args):
        return subprocess.run([sys.executable, "-m", "runner", *args], env=env, capture_output=True, text=True,
                              timeout=300, stdin=subprocess.DEVNULL)

    run.data = tmp_path / "data"
    return run


def _commit(repo, version: str) -> None:
    (repo / "Dockerfile").write_text(f"FROM conveyor-test/busybox:1\nRUN echo {version} > /version\n")
    git = ["git", "-C", str(repo), "-c", "user.name=T", "-c", "user.email=t@example.invalid"]
    subprocess.run([*git, "commit", "-qam", version], check=True)


def _image(client, name: str) -> str:
    return client.api.inspect_service(name)["Spec"]["TaskTemplate"]["ContainerSpec"]["Image"]


def _env(client, name: str) -> list[str]:
    return client.api.inspect_service(name)["Spec"]["TaskTemplate"]["ContainerSpec"].get("Env") or []


async def test_build_once_deploy_to_staging_approve_promote_roll_production_back_and_see_drift(
        docker_client, swarm, cli, instance, registries, git_repo):
    write_targets(cli.data / "targets.yml", {
        "registry": {"url": registries.open},
        "environments": {
            "staging": {"target": "default", "suffix": "-staging", "env": {"APP_ENV": "staging"}},
            "production": {"target": "default", "approvers": ["admin"], "branches": ["main"],
                           "env": {"APP_ENV": "production"}, "url": "https://example.invalid"},
        }})
    repo = git_repo(files={".conveyor.yml": PIPELINE.format(inst=instance),
                           "Dockerfile": "FROM conveyor-test/busybox:1\nRUN echo v1 > /version\n"})
    staging, production = f"{instance}-web-staging", f"{instance}-web"
    try:
        run = cli("run", str(repo), "--approve", "sign-off")
        assert run.returncode == 0, run.stdout + run.stderr
        assert run.stdout.count("pushed ") == 1  # built and pushed once
        v1 = _image(docker_client, staging)
        assert v1.startswith(f"{registries.open}/conveyor-test/{instance}@sha256:")
        assert "APP_ENV=staging" in _env(docker_client, staging)

        promoted = cli("promote", f"{instance}-web", "--from", "staging", "--to", "production")
        assert promoted.returncode == 0, promoted.stdout + promoted.stderr
        assert _image(docker_client, production) == v1  # the identical digest, nothing rebuilt
        assert "APP_ENV=production" in _env(docker_client, production)
        assert "APP_ENV=staging" not in _env(docker_client, production)
        rows = json.loads(cli("deploys", production, "--json").stdout)
        prod_v1 = rows[0]
        assert (prod_v1["environment"], prod_v1["status"], prod_v1["kind"]) == ("production", "succeeded", "deploy")
        assert prod_v1["digest"] == v1.split("@", 1)[1] and prod_v1["trigger"].startswith("cli:")
        staging_row = json.loads(cli("deploys", staging, "--json").stdout)[0]
        assert prod_v1["promoted_from"] == staging_row["id"] and prod_v1["commit_sha"] == staging_row["commit_sha"]

        # A second version goes to staging and on to production ...
        _commit(repo, "v2")
        assert cli("run", str(repo), "--approve", "sign-off").returncode == 0
        v2 = _image(docker_client, staging)
        assert v2 != v1 and "@sha256:" in v2
        assert cli("promote", f"{instance}-web", "--from", "staging", "--to", "production").returncode == 0
        assert _image(docker_client, production) == v2

        # ... and production alone goes back to v1.
        back = cli("rollback", production)
        assert back.returncode == 0, back.stdout + back.stderr
        assert _image(docker_client, production) == v1 and _image(docker_client, staging) == v2
        rolled = json.loads(cli("deploys", production, "--json").stdout)[0]
        assert (rolled["kind"], rolled["rollback_of"], rolled["environment"]) == ("rollback", prod_v1["id"],
                                                                                  "production")
        environments = json.loads(cli("environments", "--json").stdout)
        cells = {e["service"]: e for e in environments}[f"{instance}-web"]["environments"]
        assert cells["staging"]["live"]["digest"] == v2.split("@", 1)[1]
        assert cells["production"]["live"]["digest"] == v1.split("@", 1)[1]

        # Nothing drifted yet; a hand-made `docker service update` is named field by field.
        clean = cli("deploys", "--drift", production)
        assert clean.returncode == 0 and "as recorded" in clean.stdout, clean.stdout + clean.stderr
        subprocess.run(["docker", "service", "update", "--detach", "--env-add", "HOTFIX=1", production],
                       check=True, capture_output=True)
        drift = cli("deploys", "--drift")
        assert drift.returncode == 1, drift.stdout + drift.stderr
        assert f"{production}: DRIFTED" in drift.stdout and "TaskTemplate.ContainerSpec.Env: +HOTFIX=1" in drift.stdout
        assert f"{staging}: as recorded" in drift.stdout

        # A refused promotion changes nothing and says why.
        nothing = cli("promote", "no-such", "--from", "staging", "--to", "production")
        assert nothing.returncode == 2 and "nothing of 'no-such' is live in 'staging'" in nothing.stderr
    finally:
        remove_instance(docker_client, instance)  # the services first: their tasks hold the images
        for image in docker_client.images.list(filters={"label": f"io.conveyor.image.instance={instance}"}):
            docker_client.images.remove(image.id, force=True)
