"""`POST /api/services/{name}/rollback` re-applies a recorded deploy on the real single-node swarm."""

from __future__ import annotations

import json
import time

import pytest

from runner.server.keys import CONFIG, STORE
from tests.conftest import BUSYBOX
from tests.server.conftest import wait_for

TOKEN = "rollback-admin"
pytestmark = [pytest.mark.docker, pytest.mark.swarm]


def env_of(service) -> list[str]:
    service.reload()
    return service.attrs["Spec"]["TaskTemplate"]["ContainerSpec"].get("Env", [])


def swarm_service(docker_client, instance: str, suffix: str):
    """A real service of this test's instance (env ``V=1``), or a skip where there is no swarm."""
    if docker_client.info().get("Swarm", {}).get("LocalNodeState") != "active":
        pytest.skip("no swarm here: run `docker swarm init --advertise-addr 127.0.0.1` (.ci/run does)")
    return docker_client.services.create(
        BUSYBOX, command=["sleep", "3600"], name=f"conveyor-{instance}-{suffix}", env=["V=1"],
        labels={"io.conveyor.instance": instance}, container_labels={"io.conveyor.instance": instance})


def record(store, service, **columns) -> int:
    """A succeeded deploy row of ``service``'s live spec, as a build would have stored it."""
    service.reload()
    row = {"service": service.name, "target": "default", "image": BUSYBOX,
           "spec_after": json.dumps(service.attrs["Spec"]), "status": "succeeded", "trigger": "cli",
           "started": time.time(), "finished": time.time(), **columns}
    sql = f"INSERT INTO deploys ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})"
    return store.write(lambda conn: conn.execute(sql, tuple(row.values())).lastrowid)


async def test_rollback_from_the_api_reapplies_the_chosen_deploy(server, docker_client, instance):
    service = swarm_service(docker_client, instance, "web")
    name = service.name
    try:
        client = await server(paused=True, admin_token=TOKEN)
        store = client.app[STORE]
        first = record(store, service)
        service.update(env=["V=2"])
        record(store, service)
        assert env_of(service) == ["V=2"]

        nothing = await client.post("/api/services/no-such-service/rollback", json={},
                                    headers={"Authorization": f"Bearer {TOKEN}"})
        assert nothing.status == 409 and "nothing to roll back" in (await nothing.json())["error"]
        unauthenticated = await client.post(f"/api/services/{name}/rollback", json={})
        assert unauthenticated.status == 401

        answer = await client.post(f"/api/services/{name}/rollback", json={},
                                   headers={"Authorization": f"Bearer {TOKEN}"})
        assert answer.status == 202, await answer.text()
        assert (await answer.json())["to"] == first  # the last good deploy before the current one

        async def rolled_back():
            rows = (await (await client.get(f"/api/deploys?service={name}")).json())["deploys"]
            done = [r for r in rows if r["kind"] == "rollback" and r["status"] != "deploying"]
            return done[0] if done else None

        row = await wait_for(rolled_back, timeout=120, interval=0.5)
        assert (row["status"], row["rollback_of"], row["trigger"]) == ("succeeded", first, "api:admin")
        assert env_of(service) == ["V=1"]
    finally:
        service.remove()


async def test_a_rollback_of_a_private_repositorys_service_is_shown_only_to_its_readers(
        server, docker_client, instance, tmp_path):
    # A rollback from the API named no build, so its row had no repository, and a row of no
    # repository was shown to everyone: the private service, its image and who rolled it back.
    from tests.server.people import ENV, USERS, bearer

    service = swarm_service(docker_client, instance, "billing")
    name = service.name
    try:
        client = await server([{"name": "acme/closed", "provider": "github", "path": str(tmp_path),
                                "visibility": "private"}], paused=True, users=USERS, env=ENV)
        store = client.app[STORE]
        built = {"repo": "acme/closed", "trigger": "build"}
        first = record(store, service, **built, build_uid="uid1", build_number=1, commit_sha="1" * 40)
        service.update(env=["V=2"])
        record(store, service, **built, build_uid="uid2", build_number=2, commit_sha="2" * 40)

        answer = await client.post(f"/api/services/{name}/rollback", json={}, headers=bearer("deployer"))
        assert answer.status == 202, await answer.text()

        async def rolled_back():
            rows = (await (await client.get(f"/api/deploys?service={name}", headers=bearer("viewer"))).json())
            done = [r for r in rows["deploys"] if r["kind"] == "rollback" and r["status"] != "deploying"]
            return done[0] if done else None

        row = await wait_for(rolled_back, timeout=120, interval=0.5)
        # It belongs to the build whose version it put back, as a promotion does.
        assert (row["status"], row["rollback_of"], row["trigger"]) == ("succeeded", first, "api:deployer-user")
        assert (row["repo"], row["build_number"], row["commit_sha"]) == ("acme/closed", 1, "1" * 40)
        assert env_of(service) == ["V=1"]
        assert (await (await client.get("/api/deploys")).json())["deploys"] == []
        page = await (await client.get("/deploys")).text()
        assert name not in page and BUSYBOX not in page
    finally:
        service.remove()


async def test_rolling_back_in_an_environment_with_approvers_is_for_them_as_promoting_there_is(
        server, docker_client, instance, tmp_path):
    from tests.server.people import ENV, USERS, bearer

    service = swarm_service(docker_client, instance, "pay")
    name = service.name
    try:
        client = await server(paused=True, users=USERS, env=ENV)
        settings = client.app[CONFIG].settings
        settings.targets_path.parent.mkdir(parents=True, exist_ok=True)
        settings.targets_path.write_text("environments:\n  production: {target: default, approvers: [admin]}\n")
        store = client.app[STORE]
        record(store, service, environment="production")
        service.update(env=["V=2"])
        record(store, service, environment="production")

        refused = await client.post(f"/api/services/{name}/rollback", json={}, headers=bearer("deployer"))
        assert refused.status == 403
        assert "rolling back" in (await refused.json())["error"] and "is for admin" in (await refused.json())["error"]
        assert env_of(service) == ["V=2"]
        allowed = await client.post(f"/api/services/{name}/rollback", json={}, headers=bearer("admin"))
        assert allowed.status == 202, await allowed.text()

        async def rolled_back():
            return env_of(service) == ["V=1"] or None

        await wait_for(rolled_back, timeout=120, interval=0.5)
    finally:
        service.remove()
