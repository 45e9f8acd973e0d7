"""`POST /api/services/{name}/rollback` re-applies a recorded deploy on the real single-node swarm."""

from __future__ import annotations

import json
import time

import pytest

from runner.server.keys import STORE
from tests.conftest import BUSYBOX
from tests.server.conftest import wait_for

TOKEN = "rollback-admin"
pytestmark = [pytest.mark.docker, pytest.mark.swarm]


def env_of(service) -> list[str]:
    service.reload()
    return service.attrs["Spec"]["TaskTemplate"]["ContainerSpec"].get("Env", [])


async def test_rollback_from_the_api_reapplies_the_chosen_deploy(server, docker_client, instance):
    if docker_client.info().get("Swarm", {}).get("LocalNodeState") != "active":
        pytest.skip("no swarm here: run `docker swarm init --advertise-addr 127.0.0.1` (.ci/run does)")
    client = await server(paused=True, admin_token=TOKEN)
    name = f"conveyor-{instance}-web"
    service = docker_client.services.create(
        BUSYBOX, command=["sleep", "3600"], name=name, env=["V=1"],
        labels={"io.conveyor.instance": instance}, container_labels={"io.conveyor.instance": instance})
    try:
        store = client.app[STORE]

        def record(spec: dict) -> int:
            def insert(conn):
                return conn.execute(
                    "INSERT INTO deploys (service, target, image, spec_after, status, trigger, started, finished) "
                    "VALUES (?, 'default', ?, ?, 'succeeded', 'cli', ?, ?)",
                    (name, BUSYBOX, json.dumps(spec), time.time(), time.time())).lastrowid
            return store.write(insert)

        service.reload()
        first = record(service.attrs["Spec"])
        service.update(env=["V=2"])
        service.reload()
        record(service.attrs["Spec"])
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
