"""A Compose stack on a real swarm: services find each other by their Compose names, and a changed
secret becomes a new version while the old one is removed after the deploy succeeds."""

from __future__ import annotations

import time

import pytest
from compose_parity import remove_stack

from runner.deploy.compose import parse_compose
from runner.deploy.stack import deploy_stack

pytestmark = [pytest.mark.docker, pytest.mark.swarm]

STACK = """
services:
  web:
    image: conveyor-test/busybox:1
    command: ["sh", "-c", "mkdir /w && cp /run/secrets/token /w/index.html && trap 'exit 0' TERM; httpd -f -p 8080 -h /w & wait"]
    secrets: [token]
    deploy: {endpoint_mode: dnsrr}  # no IPVS on these hosts, so no VIP
  client:
    image: conveyor-test/busybox:1
    command: ["sh", "-c", "trap 'exit 0' TERM; sleep 1000 & wait"]
secrets:
  token: {file: token.txt}
"""


def _exec(client, service: str, cmd: list[str]) -> str:
    """Run ``cmd`` in the service's running task until it answers (the server may still be starting)."""
    out = ""
    for _ in range(20):
        for container in client.containers.list(filters={"label": f"com.docker.swarm.service.name={service}"}):
            result = container.exec_run(cmd)
            out = result.output.decode()
            if result.exit_code == 0:
                return out
        time.sleep(0.5)
    return out


async def test_names_resolve_and_changed_secret_is_versioned(swarm, store, prov, instance):
    stack = f"{instance}bh"
    try:
        first = parse_compose(STACK, stack, read=lambda rel: "v1\n")
        assert all(o.ok for o in await deploy_stack(swarm, store, first, 60, None, print, prov))
        # `web:8080` (the Compose name), as with docker stack deploy, not only `<stack>_web`.
        assert _exec(swarm.client, f"{stack}_client", ["wget", "-q", "-O-", "http://web:8080/"]) == "v1\n"
        assert [s.name for s in swarm.client.secrets.list(filters={"name": f"{stack}_token"})] == [f"{stack}_token"]

        log: list[str] = []
        second = parse_compose(STACK, stack, read=lambda rel: "v2\n")
        assert all(o.ok for o in await deploy_stack(swarm, store, second, 60, None, log.append, prov))
        names = sorted(s.name for s in swarm.client.secrets.list(filters={"name": f"{stack}_token"}))
        assert len(names) == 2 and names[1].startswith(f"{stack}_token-")  # the first stays for a rollback
        assert _exec(swarm.client, f"{stack}_client", ["wget", "-q", "-O-", "http://web:8080/"]) == "v2\n"

        third = parse_compose(STACK, stack, read=lambda rel: "v3\n")
        assert all(o.ok for o in await deploy_stack(swarm, store, third, 60, None, log.append, prov))
        left = sorted(s.name for s in swarm.client.secrets.list(filters={"name": f"{stack}_token"}))
        assert f"{stack}_token" not in left and len(left) == 2, left  # v1 removed: neither v3 nor v2 uses it
        assert f"removed secret {stack}_token: no longer used" in log
    finally:
        remove_stack(swarm.client, stack)
