"""Who may deploy what holds however a pipeline is written, through the CLI on the real
single-node swarm: a pipeline's own `env:` cannot say it is of another branch, a deploy that leaves
`environment:` out cannot write a guarded environment's service, a version put back by a rollback
is promoted only if the build that made it could have been, and an untrusted repository cannot
take over another repository's service.
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

DEPLOY = """\
image: conveyor-test/busybox:1
{top}stages:
  - name: prod
    deploy:
      {where}
      service: {name}
      image: conveyor-test/busybox:1
      command: ["sh", "-c", "echo {says}; sleep 3600"]
      labels: {{io.conveyor.instance: {inst}}}
      update: {{monitor: 1s}}
"""


@pytest.fixture
def cli(tmp_path, instance, docker_client):
    env = {**os.environ, "CONVEYOR_INSTANCE": instance, "CONVEYOR_DATA_DIR": str(tmp_path / "data"),
           "PYTHONUNBUFFERED": "1"}

    def run(*args):
        return subprocess.run([sys.executable, "-m", "runner", *args], env=env, capture_output=True, text=True,
                              timeout=300, stdin=subprocess.DEVNULL)

    run.data = tmp_path / "data"
    yield run
    remove_instance(docker_client, instance)
    for image in docker_client.images.list(filters={"label": f"io.conveyor.image.instance={instance}"}):
        docker_client.images.remove(image.id, force=True)


def _commit(repo, files: dict[str, str]) -> None:
    for name, text in files.items():
        (repo / name).write_text(text)
    git = ["git", "-C", str(repo), "-c", "user.name=T", "-c", "user.email=t@example.invalid"]
    subprocess.run([*git, "commit", "-qam", "change"], check=True)


def _rows(cli, service: str) -> list[dict]:
    return json.loads(cli("deploys", service, "--json").stdout)


def test_a_pipelines_env_cannot_claim_another_branch(cli, instance, git_repo):
    write_targets(cli.data / "targets.yml", {"environments": {"production": {"target": "default",
                                                                            "branches": ["main"]}}})
    pipeline = DEPLOY.format(top="env: {CI_COMMIT_BRANCH: main}\n", where="environment: production",
                             name=f"{instance}-web", inst=instance, says="sneaked")
    ran = cli("run", str(git_repo(files={".conveyor.yml": pipeline})), "--branch", "feature-x")
    assert ran.returncode == 1
    assert "takes deploys only from branch(es) main; this build is of branch feature-x" in ran.stdout + ran.stderr
    assert _rows(cli, f"{instance}-web") == []


def test_a_deploy_without_environment_cannot_write_a_guarded_environments_service(
        cli, instance, git_repo, docker_client):
    write_targets(cli.data / "targets.yml", {"environments": {
        "production": {"target": "default", "approvers": ["admin"], "branches": ["main"]},
        "staging": {"target": "default", "suffix": "-staging"}}})
    approved = DEPLOY.replace("stages:\n", "stages:\n  - name: sign-off\n    approval: {{approvers: [admin]}}\n")
    repo = git_repo(files={".conveyor.yml": approved.format(top="", where="environment: production",
                                                            name=f"{instance}-web", inst=instance, says="approved")})
    assert cli("run", str(repo), "--branch", "main", "--approve", "sign-off").returncode == 0

    _commit(repo, {".conveyor.yml": DEPLOY.format(top="", where="target: default", name=f"{instance}-web",
                                                  inst=instance, says="rogue")})
    ran = cli("run", str(repo), "--branch", "feature-x")
    assert ran.returncode == 1
    said = ran.stdout + ran.stderr
    assert f"service '{instance}-web' on target 'default' is environment 'production''s" in said
    assert "deploy it with `environment: production`" in said
    # Looked at after the build: production still runs what was approved, and its history says so.
    spec = docker_client.api.inspect_service(f"{instance}-web")["Spec"]
    assert "rogue" not in json.dumps(spec) and "approved" in json.dumps(spec)
    assert [(r["environment"], r["status"]) for r in _rows(cli, f"{instance}-web")] == [("production", "succeeded")]

    # A name of no guarded environment (staging's suffix) still deploys without `environment:`.
    _commit(repo, {".conveyor.yml": DEPLOY.format(top="", where="target: default", name=f"{instance}-web-staging",
                                                  inst=instance, says="free")})
    assert cli("run", str(repo), "--branch", "feature-x").returncode == 0


def test_a_version_put_back_by_a_rollback_is_promoted_only_if_its_own_build_may_be(
        cli, instance, git_repo, docker_client, registries):
    write_targets(cli.data / "targets.yml", {"registry": {"url": registries.open}, "environments": {
        "staging": {"target": "default", "suffix": "-staging"},
        "production": {"target": "default", "branches": ["main"]}}})
    staging = """\
image: conveyor-test/busybox:1
stages:
  - name: image
    build: {{tag: "conveyor-test/{inst}:{{{{ git.short_sha }}}}"}}
  - name: staging
    deploy:
      environment: staging
      service: {inst}-web
      image: "conveyor-test/{inst}:{{{{ git.short_sha }}}}"
      command: ["sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait"]
      labels: {{io.conveyor.instance: {inst}}}
      update: {{order: start-first, monitor: 1s}}
""".format(inst=instance)
    repo = git_repo(files={".conveyor.yml": staging,
                           "Dockerfile": "FROM conveyor-test/busybox:1\nRUN echo FEATURE > /version\n"})
    assert cli("run", str(repo), "--branch", "feature-x").returncode == 0
    refused = cli("promote", f"{instance}-web", "--from", "staging", "--to", "production")
    assert refused.returncode == 2 and "this build is of branch feature-x" in refused.stderr

    # A build of main deploys its own version to staging, then its rollback stage puts feature-x's back.
    undo = f"  - name: undo\n    rollback: {{service: {instance}-web, environment: staging}}\n"
    _commit(repo, {".conveyor.yml": staging + undo,
                   "Dockerfile": "FROM conveyor-test/busybox:1\nRUN echo MAIN > /version\n"})
    assert cli("run", str(repo), "--branch", "main").returncode == 0
    assert _rows(cli, f"{instance}-web-staging")[0]["kind"] == "rollback"
    again = cli("promote", f"{instance}-web", "--from", "staging", "--to", "production")
    assert again.returncode == 2 and "this build is of branch feature-x" in again.stderr, again.stdout + again.stderr
    assert _rows(cli, f"{instance}-web") == []


def test_an_untrusted_repository_cannot_take_over_another_repositorys_service(cli, instance, git_repo,
                                                                              docker_client):
    # Deploys share the swarm: a service's name is the traffic other services send to it.
    first = git_repo(files={".conveyor.yml": DEPLOY.format(top="", where="target: default", name=f"{instance}-web",
                                                           inst=instance, says="theirs")})
    other = git_repo(files={".conveyor.yml": DEPLOY.format(top="", where="target: default", name=f"{instance}-web",
                                                           inst=instance, says="mine")})
    assert cli("run", str(first), "--branch", "main").returncode == 0
    taken = cli("run", str(other), "--branch", "main")
    assert taken.returncode == 1
    assert (f"service '{instance}-web' on target 'default' was deployed by repository '{first.name}'; an untrusted "
            "repository deploys only its own services") in taken.stdout + taken.stderr
    spec = json.dumps(docker_client.api.inspect_service(f"{instance}-web")["Spec"])
    assert "theirs" in spec and "mine" not in spec
    # Its own service it deploys again, and a trusted repository may take the name over.
    assert cli("run", str(first), "--branch", "main").returncode == 0
    assert cli("run", str(other), "--branch", "main", "--trusted").returncode == 0
    assert "mine" in json.dumps(docker_client.api.inspect_service(f"{instance}-web")["Spec"])


def test_a_rollback_to_a_chosen_version_is_held_to_the_environments_guards(cli, instance, git_repo, docker_client):
    write_targets(cli.data / "targets.yml", {"environments": {"production": {"target": "default",
                                                                            "branches": ["main"]}}})
    repo = git_repo(files={".conveyor.yml": DEPLOY.format(top="", where="environment: production",
                                                          name=f"{instance}-web", inst=instance, says="one")})
    assert cli("run", str(repo), "--branch", "main").returncode == 0
    _commit(repo, {".conveyor.yml": DEPLOY.format(top="", where="environment: production", name=f"{instance}-web",
                                                  inst=instance, says="two")})
    assert cli("run", str(repo), "--branch", "main").returncode == 0
    first = _rows(cli, f"{instance}-web")[-1]["id"]

    undo = f"image: conveyor-test/busybox:1\nstages:\n  - name: undo\n    rollback: " \
           f"{{service: {instance}-web, environment: production, to: {first}}}\n"
    _commit(repo, {".conveyor.yml": undo})
    ran = cli("run", str(repo), "--branch", "feature-x")
    assert ran.returncode == 1
    assert "takes deploys only from branch(es) main; this build is of branch feature-x" in ran.stdout + ran.stderr
    assert "echo two;" in json.dumps(docker_client.api.inspect_service(f"{instance}-web")["Spec"])
    assert cli("run", str(repo), "--branch", "main").returncode == 0  # from main it may
    assert "echo one;" in json.dumps(docker_client.api.inspect_service(f"{instance}-web")["Spec"])
