"""The environments page and API on a real server and swarm: what is live where, the promote button
(session + CSRF) deploying the identical digest, refusals as 409s, and the drift marker."""

from __future__ import annotations

import subprocess

import pytest

from runner.engine import Engine, Target
from runner.deploy.config import Environment, Registry
from runner.deploy.registry import push
from runner.deploy.service import Provenance, deploy_service
from runner.server.keys import STORE
from tests.deploy.deploy_helpers import remove_instance, web_spec
from tests.deploy.registry_helpers import registries  # noqa: F401 - the fixture
from tests.server.conftest import wait_for

TOKEN = "environments-admin"
pytestmark = [pytest.mark.docker, pytest.mark.swarm]


async def test_the_page_promotes_the_live_digest_and_marks_drift(server, docker_client, instance, registries):
    registry = Registry(registries.open)
    client = await server(admin_token=TOKEN, registry={"url": registries.open}, environments={
        "staging": {"suffix": "-staging"}, "production": {"approvers": ["admin"], "url": "https://example.invalid"}})
    store = client.server.app[STORE]
    base, lines = f"{instance}-api", []
    image = docker_client.images.get("conveyor-test/busybox:1")
    swarm = Engine(Target("default", registry=registry))
    try:
        pinned = push(docker_client, image.id, f"conveyor-test/{instance}:1", registry, lines.append)
        staged = await deploy_service(swarm, store, web_spec(f"{base}-staging", "v1", image=pinned.ref), lines.append,
                                      Provenance(repo="web", build_number=3, commit_sha="c0ffee1", trigger="test",
                                                 instance=instance, environment="staging"))
        assert staged.ok, lines

        # Anonymous readers see what runs where, but the swarm is not asked about drift for them.
        listing = await (await client.get("/api/environments")).json()
        [entry] = [s for s in listing["services"] if s["service"] == base]
        assert entry["environments"]["staging"]["live"]["digest"] == pinned.digest
        assert entry["environments"]["staging"]["drift"] is None
        listing = await (await client.get("/api/environments", headers={"Authorization": f"Bearer {TOKEN}"})).json()
        [entry] = [s for s in listing["services"] if s["service"] == base]
        assert entry["environments"]["staging"]["drift"]["drifted"] is False
        assert "production" not in entry["environments"]

        unauthenticated = await client.post("/api/environments/production/promote",
                                            json={"service": base, "from": "staging"})
        assert unauthenticated.status == 401
        auth = {"Authorization": f"Bearer {TOKEN}"}
        nothing = await client.post("/api/environments/production/promote", json={"service": "nope", "from": "staging"},
                                    headers=auth)
        assert nothing.status == 409 and "nothing of 'nope' is live in 'staging'" in (await nothing.json())["error"]

        assert (await client.post("/login", data={"token": TOKEN}, allow_redirects=False)).status == 303
        page = await (await client.get("/environments")).text()
        assert 'action="/api/environments/production/promote"' in page and pinned.digest[:19] in page
        csrf = page.split('name="csrf" value="', 1)[1].split('"', 1)[0]
        answer = await client.post("/api/environments/production/promote", allow_redirects=False,
                                   data={"csrf": csrf, "service": base, "from": "staging"})
        assert answer.status == 303 and answer.headers["Location"] == "/environments"

        async def promoted():
            listing = await (await client.get("/api/environments")).json()
            cell = {s["service"]: s for s in listing["services"]}[base]["environments"].get("production")
            return cell if cell and cell["live"] else None

        cell = await wait_for(promoted, timeout=90)
        assert cell["service"] == base and cell["live"]["digest"] == pinned.digest
        assert cell["live"]["trigger"] == "api:admin" and cell["live"]["promoted_from"] == staged.deploy_id
        assert cell["live"]["build_number"] == 3 and cell["live"]["commit_sha"] == "c0ffee1"
        spec = docker_client.api.inspect_service(base)["Spec"]
        assert spec["TaskTemplate"]["ContainerSpec"]["Image"] == pinned.ref

        subprocess.run(["docker", "service", "update", "--detach", "--replicas", "2", base], check=True,
                       capture_output=True)
        page = await (await client.get("/environments")).text()
        assert "drifted" in page and "Mode.Replicated.Replicas: 1 -&gt; 2" in page
    finally:
        remove_instance(docker_client, instance)
        try:  # the tag only: busybox itself stays
            docker_client.images.remove(f"{registries.open}/conveyor-test/{instance}:1")
        except Exception:  # noqa: BLE001 - never tagged (the push failed)
            pass


def test_a_private_repositorys_deploys_leave_the_environments_view_of_those_who_may_not_read_it():
    from runner.server.environments import _readable

    def deploy(repo):
        return {"id": 1, "repo": repo, "digest": "sha256:1"}

    services = [{"service": "web", "environments": {
                    "staging": {"service": "web-staging", "live": deploy("public"), "deploys": [deploy("public")]},
                    "production": {"service": "web", "live": deploy("secret"), "deploys": [deploy("secret")]}}},
                {"service": "vault", "environments": {
                    "production": {"service": "vault", "live": deploy("secret"), "deploys": [deploy("secret")]}}}]
    seen = _readable(services, lambda repo: repo != "secret")
    assert [s["service"] for s in seen] == ["web"] and list(seen[0]["environments"]) == ["staging"]
    assert _readable(services, lambda repo: True) == services


async def test_the_api_and_page_promote_a_stack_with_its_digests(server, docker_client, instance, registries):
    from runner.deploy.compose import parse_compose
    from runner.deploy.environments import adjust_stack_spec
    from runner.deploy.stack import deploy_stack

    registry = Registry(registries.open)
    client = await server(admin_token=TOKEN, registry={"url": registries.open}, environments={
        "staging": {"suffix": "-staging"}, "production": {"env": {"APP_ENV": "production"}}})
    store = client.server.app[STORE]
    staging_env = Environment("staging", suffix="-staging")
    base, lines = f"{instance}-shop", []
    image = docker_client.images.get("conveyor-test/busybox:1")
    swarm = Engine(Target("default", registry=registry))
    try:
        pinned = push(docker_client, image.id, f"conveyor-test/{instance}:1", registry, lines.append)
        text = ("services:\n" + "".join(
            f"  {s}:\n    image: conveyor-test/{instance}:1\n"
            "    command: [\"sh\", \"-c\", \"trap 'exit 0' TERM; sleep 3600 & wait\"]\n" for s in ("api", "db")))
        outcomes = await deploy_stack(swarm, store, parse_compose(text, f"{base}-staging"), 120, None, lines.append,
                                      Provenance(repo="web", build_number=4, commit_sha="c0ffee2", trigger="test",
                                                 instance=instance, environment="staging"),
                                      adjust=lambda spec: adjust_stack_spec(spec, staging_env))
        assert all(o.ok for o in outcomes), lines
        assert docker_client.api.inspect_service(f"{base}-staging_api")["Spec"]["TaskTemplate"]["ContainerSpec"][
            "Image"] == pinned.ref

        listing = await (await client.get("/api/environments")).json()
        entry = {s["service"]: s for s in listing["services"]}[f"{base}_api"]
        assert entry["stack"] == base and entry["environments"]["staging"]["live"]["digest"] == pinned.digest

        auth = {"Authorization": f"Bearer {TOKEN}"}
        nothing = await client.post("/api/environments/production/promote", json={"stack": "nope", "from": "staging"},
                                    headers=auth)
        assert nothing.status == 409 and "nothing of stack 'nope' is live in 'staging'" in (await nothing.json())["error"]

        assert (await client.post("/login", data={"token": TOKEN}, allow_redirects=False)).status == 303
        page = await (await client.get("/environments")).text()
        assert f'name="stack" value="{base}"' in page and f"Promote stack {base} to production" in page
        answer = await client.post("/api/environments/production/promote", json={"stack": base, "from": "staging"},
                                   headers=auth)
        assert answer.status == 202, await answer.text()
        body = await answer.json()
        assert set(body["digests"].values()) == {pinned.digest}

        async def promoted():
            listing = await (await client.get("/api/environments")).json()
            cells = [{s["service"]: s for s in listing["services"]}[f"{base}_{n}"]["environments"].get("production")
                     for n in ("api", "db")]
            return cells if all(c and c["live"] for c in cells) else None

        for cell in await wait_for(promoted, timeout=90):
            assert cell["live"]["digest"] == pinned.digest and cell["live"]["trigger"] == "api:admin"
            assert cell["live"]["commit_sha"] == "c0ffee2"
        spec = docker_client.api.inspect_service(f"{base}_db")["Spec"]
        assert spec["TaskTemplate"]["ContainerSpec"]["Image"] == pinned.ref
        assert "APP_ENV=production" in spec["TaskTemplate"]["ContainerSpec"]["Env"]
    finally:
        remove_instance(docker_client, instance)
        try:
            docker_client.images.remove(f"{registries.open}/conveyor-test/{instance}:1")
        except Exception:  # noqa: BLE001 - never tagged (the push failed)
            pass
