"""The build stage through the engine API, and deploy targets (named, TLS, not a swarm)."""

from __future__ import annotations

import io
import socket
import uuid

import pytest
from aiohttp import web

from runner.backends.base import BuildRef
from runner.engine.labels import LABEL_JOB_RESOURCE
from runner.deploy import stage_actions
from runner.deploy.actions import IMAGE_INSTANCE, IMAGE_REPO
from runner.engine import open_target
from runner.errors import DeployError, NotASwarm
from runner.executor.actions import ActionContext
from runner.plan import BuildSpec, Plan, RollbackSpec, Stage

pytestmark = [pytest.mark.docker]


def _ctx(source, instance, lines, build_id=None, repo=None, trusted=False, volume=None):
    labels = {"io.conveyor.repo": repo} if repo else {}
    ref = BuildRef(id=build_id or uuid.uuid4().hex[:12], source=source, instance=instance, labels=labels)
    return ActionContext(build=ref, plan=Plan(name="t", stages=(), trusted=trusted), log=lines.append,
                         status="success", workspace_volume=volume)


async def test_untrusted_build_may_not_overwrite_another_repos_or_a_job_image(docker_client, settings, store,
                                                                              instance, git_repo):
    repo = git_repo(files={"Dockerfile": "FROM conveyor-test/busybox:1\nRUN echo poisoned > /etc/motd\n"})
    build = stage_actions(settings, store)["build"]
    job_image = docker_client.images.get("conveyor-test/busybox:1").id
    lines: list[str] = []
    stage = Stage(name="image", kind="build", build=BuildSpec(tag="conveyor-test/busybox:1"))
    result = await build(stage, _ctx(repo, instance, lines, repo="evil"))
    assert result.status == "failure" and "belongs to something other than a Conveyor build" in result.reason
    assert docker_client.images.get("conveyor-test/busybox:1").id == job_image  # untouched

    own = f"conveyor-test/{instance}:own"
    try:
        mine = Stage(name="image", kind="build", build=BuildSpec(tag=own))
        assert (await build(mine, _ctx(repo, instance, lines, repo="web"))).status == "success", lines
        assert (await build(mine, _ctx(repo, instance, lines, repo="web"))).status == "success", lines  # its own
        other = await build(mine, _ctx(repo, instance, lines, repo="evil"))
        assert other.status == "failure" and "belongs to repository 'web'" in other.reason
        labels = docker_client.images.get(own).labels
        assert labels[IMAGE_REPO] == "web"
        # Provenance only under the image's own names: a container of it (a Swarm task) must never
        # carry what the sweeps of job resources look for.
        assert not {"io.conveyor.build", "io.conveyor.instance", "io.conveyor.repo", LABEL_JOB_RESOURCE} & set(labels)
    finally:
        docker_client.images.remove(own, force=True)


async def test_a_tag_built_before_the_label_rename_still_belongs_to_its_repository(docker_client, settings, store,
                                                                                    instance, git_repo):
    old = f"conveyor-test/{instance}:old"
    dockerfile = "FROM conveyor-test/busybox:1\nLABEL io.conveyor.repo=web\n"
    docker_client.images.build(fileobj=io.BytesIO(dockerfile.encode()), tag=old, pull=False, rm=True)
    repo = git_repo(files={"Dockerfile": "FROM conveyor-test/busybox:1\n"})
    build = stage_actions(settings, store)["build"]
    lines: list[str] = []
    stage = Stage(name="image", kind="build", build=BuildSpec(tag=old))
    try:
        other = await build(stage, _ctx(repo, instance, lines, repo="evil"))
        assert other.status == "failure" and "belongs to repository 'web'" in other.reason
        assert (await build(stage, _ctx(repo, instance, lines, repo="web"))).status == "success", lines
        assert docker_client.images.get(old).labels[IMAGE_REPO] == "web"
    finally:
        docker_client.images.remove(old, force=True)


async def test_build_stage_streams_output_and_fails_on_a_bad_step(docker_client, settings, store, instance, git_repo):
    repo = git_repo(files={
        "app/Dockerfile": "FROM conveyor-test/busybox:1\nARG GREETING\nCOPY hello.txt /hello.txt\n"
                          "RUN echo \"$GREETING from the build\"\n",
        "app/hello.txt": "hi\n",
        "broken/Dockerfile": "FROM conveyor-test/busybox:1\nRUN echo about to fail && false\n",
    })
    build = stage_actions(settings, store)["build"]
    tag = f"conveyor-test/{instance}:1"
    lines: list[str] = []
    try:
        spec = BuildSpec(tag=tag, context="app", args={"GREETING": "hello"})
        result = await build(Stage(name="image", kind="build", build=spec), _ctx(repo, instance, lines))
        assert result.status == "success", lines
        assert any("hello from the build" in line for line in lines)
        assert any("from the checkout" in line for line in lines)
        image = docker_client.images.get(tag)
        assert image.labels[IMAGE_INSTANCE] == instance

        lines.clear()
        bad = BuildSpec(tag=f"{tag}-broken", context="broken")
        result = await build(Stage(name="image", kind="build", build=bad), _ctx(repo, instance, lines))
        assert result.status == "failure" and "image build failed" in result.reason
        assert any("about to fail" in line for line in lines)

        result = await build(Stage(name="image", kind="build", build=BuildSpec(tag=tag, context="../etc")),
                             _ctx(repo, instance, lines))
        assert result.status == "failure" and "leaves the workspace" in result.reason
    finally:
        docker_client.images.remove(tag, force=True)


async def test_build_stage_reads_the_workspace_volume(docker_client, settings, store, instance, tmp_path):
    """What earlier steps wrote into the workspace volume the backend named is in the image."""
    build_id = uuid.uuid4().hex[:12]
    volume = docker_client.volumes.create(f"{instance}-any-name", labels={"io.conveyor.instance": instance})
    tag = f"conveyor-test/{instance}:vol"
    try:
        docker_client.containers.run(
            "conveyor-test/busybox:1", ["sh", "-c", "printf 'FROM conveyor-test/busybox:1\\nCOPY made.txt /\\n' "
                                                    "> /w/Dockerfile && echo made-by-a-step > /w/made.txt"],
            volumes={volume.name: {"bind": "/w"}}, remove=True, labels={"io.conveyor.instance": instance})
        lines: list[str] = []
        result = await stage_actions(settings, store)["build"](
            Stage(name="image", kind="build", build=BuildSpec(tag=tag)),
            _ctx(tmp_path, instance, lines, build_id, volume=volume.name))
        assert result.status == "success", lines
        out = docker_client.containers.run(tag, ["cat", "/made.txt"], remove=True,
                                           labels={"io.conveyor.instance": instance})
        assert out.decode().strip() == "made-by-a-step"
    finally:
        try:
            docker_client.images.remove(tag, force=True)
        finally:
            volume.remove(force=True)


async def test_targets_say_what_is_wrong(settings, store, instance, tmp_path, docker_client):
    # An engine that answers but is not in a swarm: a tiny Engine API on 127.0.0.1.
    async def info(request):
        return web.json_response({"Swarm": {"LocalNodeState": "inactive", "ControlAvailable": False}})

    async def version(request):
        return web.json_response({"ApiVersion": "1.41", "Version": "20.10.24"})

    app = web.Application()
    app.router.add_get("/version", version)
    app.router.add_get("/{v}/version", version)
    app.router.add_get("/{v}/info", info)
    runner = web.AppRunner(app)
    await runner.setup()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    try:
        targets = tmp_path / "targets.yml"
        targets.write_text(f"lonely:\n  url: tcp://127.0.0.1:{port}\n"
                           f"secure:\n  url: tcp://127.0.0.1:{port}\n  tls: {{ca: /nope/ca.pem}}\n")
        cfg = settings.with_(targets_file=targets)
        with pytest.raises(NotASwarm, match="run `docker swarm init`"):
            await open_target(cfg, "lonely")
        with pytest.raises(DeployError, match="tls needs ca, cert and key"):
            await open_target(cfg, "secure")
        with pytest.raises(DeployError, match="unknown deploy target 'nope'; known targets: default, lonely"):
            await open_target(cfg, "nope")
        # The stage turns it into a failed stage with the message, not a crash.
        lines: list[str] = []
        result = await stage_actions(cfg, store)["rollback"](
            Stage(name="rb", kind="rollback", rollback=RollbackSpec(service="web", target="lonely")),
            _ctx(tmp_path, instance, lines))
        assert result.status == "failure" and "docker swarm init" in result.reason
    finally:
        await runner.cleanup()


async def test_a_pipeline_whose_first_stage_is_a_build_has_its_context(docker_client, settings, store, instance,
                                                                       git_repo):
    """No job runs before the build stage: the backend's setup has already filled the workspace."""
    import subprocess

    from runner.backends.docker import DockerBackend
    from runner.build import BuildRequest, create_build, run_build

    tag = f"conveyor-test/{instance}:first"
    repo = git_repo(files={
        ".conveyor.yml": f"name: first\nimage: conveyor-test/busybox:1\nstages:\n"
                         f"  - name: image\n    build: {{tag: \"{tag}\"}}\n",
        "Dockerfile": "FROM conveyor-test/busybox:1\nCOPY hello.txt /hello.txt\n",
        "hello.txt": "from the repository\n",
    })
    sha = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True,
                         check=True).stdout.strip()
    build_id = create_build(store, BuildRequest(repo="first", event="manual", branch="main", sha=sha), instance)
    try:
        status = await run_build(store, settings, build_id, repo, backend=DockerBackend(settings))
        logs = "\n".join(r[0] for r in store.query("SELECT text FROM log_chunks ORDER BY id"))
        assert status == "success", logs
        assert "from the workspace volume" in logs
        out = docker_client.containers.run(tag, ["cat", "/hello.txt"], remove=True,
                                           labels={"io.conveyor.instance": instance})
        assert out.decode() == "from the repository\n"
    finally:
        docker_client.images.remove(tag, force=True)
