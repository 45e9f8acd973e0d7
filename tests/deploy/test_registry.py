"""Ship: a build stage pushes to a real registry (Debian's docker-registry), deploys pin the digest,
credentials go with the call, and a refusing or unreachable registry fails the stage clearly."""

from __future__ import annotations

import json
import urllib.request
import uuid

import pytest
from deploy_helpers import free_port, web_spec
from registry_helpers import write_targets

from runner.backends.base import BuildRef
from runner.deploy import history, stage_actions
from runner.executor.actions import ActionContext
from runner.plan import BuildSpec, Plan, Stage

pytestmark = [pytest.mark.docker, pytest.mark.swarm]


def _ctx(source, instance, lines, branch="main"):
    ref = BuildRef(id=uuid.uuid4().hex[:12], source=source, instance=instance, labels={"io.conveyor.repo": "web"})
    plan = Plan(name="t", stages=(), env={"CI_COMMIT_BRANCH": branch} if branch else {})
    return ActionContext(build=ref, plan=plan, log=lines.append, status="success", number=7, commit="c0ffee")


def _manifest_digest(registry: str, repo: str, tag: str, auth: tuple[str, str] | None = None) -> str:
    req = urllib.request.Request(f"http://{registry}/v2/{repo}/manifests/{tag}", method="HEAD", headers={
        "Accept": "application/vnd.docker.distribution.manifest.v2+json"})
    if auth:
        import base64
        req.add_header("Authorization", "Basic " + base64.b64encode(":".join(auth).encode()).decode())
    with urllib.request.urlopen(req, timeout=5) as resp:
        return resp.headers["Docker-Content-Digest"]


def _tags(registry: str, repo: str) -> list[str]:
    with urllib.request.urlopen(f"http://{registry}/v2/{repo}/tags/list", timeout=5) as resp:
        return json.loads(resp.read())["tags"]


@pytest.fixture
def web_repo(git_repo, instance):
    return git_repo(files={"Dockerfile": f"FROM conveyor-test/busybox:1\nRUN echo {instance} > /version\n"})


async def test_build_pushes_and_the_deploy_runs_the_pushed_digest(docker_client, swarm, settings, store, instance,
                                                                 registries, web_repo):
    write_targets(settings.data_dir / "targets.yml", {"registry": {"url": registries.open}})
    actions = stage_actions(settings, store)
    repo, tag = f"conveyor-test/{instance}", "1"
    lines: list[str] = []
    try:
        built = await actions["build"](Stage(name="image", kind="build", build=BuildSpec(tag=f"{repo}:{tag}")),
                                       _ctx(web_repo, instance, lines))
        assert built.status == "success", lines
        assert _tags(registries.open, repo) == [tag]
        digest = _manifest_digest(registries.open, repo, tag)
        assert any(f"pushed {registries.open}/{repo}:{tag} ({digest})" in line for line in lines), lines

        name = f"{instance}-pinned"
        spec = web_spec(name, "v1", image=f"{repo}:{tag}")
        deployed = await actions["deploy"](Stage(name="deploy", kind="deploy", deploy=spec),
                                           _ctx(web_repo, instance, lines))
        assert deployed.status == "success", lines
        image = docker_client.api.inspect_service(name)["Spec"]["TaskTemplate"]["ContainerSpec"]["Image"]
        assert image == f"{registries.open}/{repo}@{digest}"
        row = (await history.latest(store, "default", name))
        assert row["digest"] == digest and row["image"] == f"{repo}:{tag}" and row["status"] == "succeeded"
        # The task runs the pushed bytes: its container's image is the one the tag names here.
        task = docker_client.api.tasks(filters={"service": name, "desired-state": "running"})[0]
        assert task["Spec"]["ContainerSpec"]["Image"] == image
    finally:
        for ref in (f"{repo}:{tag}", f"{registries.open}/{repo}:{tag}"):
            try:
                docker_client.images.remove(ref, force=True)
            except Exception:  # noqa: BLE001 - already gone
                pass


async def test_basic_auth_goes_with_the_call_and_a_wrong_password_fails_with_the_registrys_message(
        docker_client, swarm, settings, store, instance, registries, web_repo, monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # any ~/.docker/config.json written would land here
    write_targets(settings.data_dir / "targets.yml", {"registry": {
        "url": registries.auth, "username_env": "TEST_REG_USER", "password_env": "TEST_REG_PASSWORD"}})
    monkeypatch.setenv("TEST_REG_USER", registries.user)
    monkeypatch.setenv("TEST_REG_PASSWORD", "wrong-password")
    actions = stage_actions(settings, store)
    repo = f"conveyor-test/{instance}"
    build = Stage(name="image", kind="build", build=BuildSpec(tag=f"{repo}:2"))
    lines: list[str] = []
    try:
        refused = await actions["build"](build, _ctx(web_repo, instance, lines))
        assert refused.status == "failure"
        assert f"registry {registries.auth}:" in refused.reason
        assert "unauthorized" in refused.reason.lower() or "authentication required" in refused.reason.lower()
        assert "check the credentials" in refused.reason and "password_env" in refused.reason

        monkeypatch.setenv("TEST_REG_PASSWORD", registries.password)
        lines.clear()
        pushed = await actions["build"](build, _ctx(web_repo, instance, lines))
        assert pushed.status == "success", lines
        digest = _manifest_digest(registries.auth, repo, "2", (registries.user, registries.password))

        name = f"{instance}-authed"
        deployed = await actions["deploy"](Stage(name="deploy", kind="deploy",
                                                 deploy=web_spec(name, "v1", image=f"{repo}:2")),
                                           _ctx(web_repo, instance, lines))
        assert deployed.status == "success", lines
        image = docker_client.api.inspect_service(name)["Spec"]["TaskTemplate"]["ContainerSpec"]["Image"]
        assert image == f"{registries.auth}/{repo}@{digest}"
        assert not (tmp_path / "home" / ".docker").exists()  # no credentials written to disk
    finally:
        for ref in (f"{repo}:2", f"{registries.auth}/{repo}:2"):
            try:
                docker_client.images.remove(ref, force=True)
            except Exception:  # noqa: BLE001 - already gone
                pass


async def test_an_unreachable_registry_fails_the_build_and_the_deploy_clearly(docker_client, swarm, settings, store,
                                                                             instance, web_repo):
    nowhere = f"127.0.0.1:{free_port()}"
    write_targets(settings.data_dir / "targets.yml", {"registry": {"url": nowhere}})
    actions = stage_actions(settings, store)
    repo = f"conveyor-test/{instance}"
    lines: list[str] = []
    try:
        result = await actions["build"](Stage(name="image", kind="build", build=BuildSpec(tag=f"{repo}:3")),
                                        _ctx(web_repo, instance, lines))
        assert result.status == "failure"
        assert f"registry {nowhere}:" in result.reason and "connection refused" in result.reason
        assert "is the registry running" in result.reason

        name = f"{instance}-unpinned"
        result = await actions["deploy"](Stage(name="deploy", kind="deploy", deploy=web_spec(name, "v1",
                                                                                             image=f"{repo}:3")),
                                         _ctx(web_repo, instance, lines))
        assert result.status == "failure" and "is the registry running" in result.reason
        assert await history.latest(store, "default", name) is None  # nothing recorded, nothing changed
        assert not docker_client.services.list(filters={"name": name})
    finally:
        for ref in (f"{repo}:3", f"{nowhere}/{repo}:3"):  # tagged into the registry before the push failed
            try:
                docker_client.images.remove(ref, force=True)
            except Exception:  # noqa: BLE001 - already gone
                pass


async def test_push_true_without_a_registry_says_where_to_configure_one(settings, store, instance, web_repo,
                                                                         docker_client):
    tag = f"conveyor-test/{instance}:4"
    try:
        result = await stage_actions(settings, store)["build"](
            Stage(name="image", kind="build", build=BuildSpec(tag=tag, push=True)), _ctx(web_repo, instance, []))
        assert result.status == "failure" and "no registry is configured" in result.reason
    finally:
        docker_client.images.remove(tag, force=True)
