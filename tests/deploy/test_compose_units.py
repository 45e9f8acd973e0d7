"""Compose conversion without a swarm: names, aliases, values, and every key's verdict with its line."""

from __future__ import annotations

import re

import pytest

from runner.deploy.compose import ComposeError, parse_compose
from runner.deploy.compose_values import duration_ns, nano_cpus, size_bytes

FILE = """\
services:
  web:
    image: web:1
    build: .
    depends_on: [db]
    command: httpd -f -p 8080
    environment: [A=1, B]
    ports: ["18080-18081:8080-8081/udp", {published: 9000, target: 90, mode: host}]
    networks:
      front: {aliases: [www]}
      shared:
    secrets: [pw, {source: pw, target: other, mode: 0400}]
    deploy:
      replicas: 3
      resources: {limits: {cpus: "0.25", memory: 64M}}
  db:
    image: db:1
    restart: on-failure:3
networks:
  front: {}
  shared: {external: true, name: company-net}
secrets:
  pw: {external: true}
"""


def test_names_aliases_and_values_follow_stack_deploy():
    stack = parse_compose(FILE, "shop", "deploy/stack.yml", trusted=True)
    web = stack.services["shop_web"]
    c = web["TaskTemplate"]["ContainerSpec"]
    assert c["Args"] == ["httpd", "-f", "-p", "8080"] and c["Env"] == ["A=1", "B"]
    # The Compose name is an alias on every stack network: `web:8080` resolves inside the stack.
    assert web["TaskTemplate"]["Networks"] == [{"Target": "company-net", "Aliases": ["web"]},
                                               {"Target": "shop_front", "Aliases": ["www", "web"]}]
    assert stack.services["shop_db"]["TaskTemplate"]["Networks"] == [{"Target": "shop_default", "Aliases": ["db"]}]
    assert [(p["PublishedPort"], p["TargetPort"], p["Protocol"], p["PublishMode"]) for p in web["EndpointSpec"]["Ports"]] \
        == [(9000, 90, "tcp", "host"), (18080, 8080, "udp", "ingress"), (18081, 8081, "udp", "ingress")]
    assert [r["File"] for r in c["Secrets"]] == [{"Name": "pw", "UID": "0", "GID": "0", "Mode": 0o444},
                                                 {"Name": "other", "UID": "0", "GID": "0", "Mode": 0o400}]
    assert web["TaskTemplate"]["Resources"] == {"Limits": {"NanoCPUs": 250_000_000, "MemoryBytes": 64 * 1024**2}}
    assert web["Mode"] == {"Replicated": {"Replicas": 3}} and "UpdateConfig" not in web
    assert web["Labels"] == {"com.docker.stack.namespace": "shop", "com.docker.stack.image": "web:1"}
    assert stack.services["shop_db"]["TaskTemplate"]["RestartPolicy"] == {"Condition": "on-failure", "MaxAttempts": 3}
    assert set(stack.networks) == {"shop_front", "shop_default"} and stack.external_networks == ["company-net"]
    assert [(o.name, o.data) for o in stack.objects] == [("pw", None)]


def test_ignored_keys_warn_with_their_line():
    warnings = parse_compose(FILE, "shop", "deploy/stack.yml", trusted=True).warnings
    assert any(w.startswith("deploy/stack.yml:4:5: warning: `services.web.build` is ignored") for w in warnings)
    assert any(w.startswith("deploy/stack.yml:5:5: warning: `services.web.depends_on` is ignored") for w in warnings)
    assert any(w.startswith("deploy/stack.yml:18:5: warning: `services.db.restart`") for w in warnings)


def test_unknown_and_refused_keys_are_errors_with_their_line():
    text = ("services:\n  web:\n    image: x\n    imgae: y\n    mem_limit: 64m\n"
            "    deploy: {replicas: 1, placment: {}}\n    healthcheck: {test: 'true', interval: soon}\nfoo: 1\n")
    with pytest.raises(ComposeError) as err:
        parse_compose(text, "s", "c.yml")
    lines = str(err.value).splitlines()
    assert lines[0] == "c.yml:8:1: error: `foo` is not a key docker stack deploy knows; remove it or fix its spelling"
    assert any(line.startswith("c.yml:4:5: error: `services.web.imgae` is not a key") and "did you mean `image`" in line
               for line in lines)
    assert any(line.startswith("c.yml:5:5: error: `services.web.mem_limit` cannot be deployed") for line in lines)
    assert any(line.startswith("c.yml:6:27: error: `services.web.deploy.placment`") for line in lines)
    with pytest.raises(ComposeError, match=r"c.yml:4:18: error: `services.web.healthcheck`: 'soon' is not a duration"):
        parse_compose("services:\n  web:\n    image: x\n    healthcheck: {test: 'true', interval: soon}\n", "s",
                      "c.yml")


def test_values_need_what_they_name():
    with pytest.raises(ComposeError, match="needs an `image`"):
        parse_compose("services: {web: {command: x}}", "s")
    with pytest.raises(ComposeError, match="network 'back' is not defined"):
        parse_compose("services: {web: {image: x, networks: [back]}}", "s")
    with pytest.raises(ComposeError, match="only a trusted repository"):
        parse_compose("services: {web: {image: x, volumes: ['/etc:/host']}}", "s")
    assert parse_compose("services: {web: {image: x, volumes: ['/etc:/host:ro']}}", "s", trusted=True) \
        .services["s_web"]["TaskTemplate"]["ContainerSpec"]["Mounts"] == [
            {"Type": "bind", "Target": "/host", "ReadOnly": True, "Source": "/etc"}]
    with pytest.raises(ComposeError, match=r"\$\{PORT\} is required: set PORT"):
        parse_compose("services: {web: {image: 'x:${PORT:?set PORT}'}}", "s")
    assert parse_compose("services: {web: {image: 'x:${TAG:-1}$$'}}", "s", env={}) \
        .services["s_web"]["TaskTemplate"]["ContainerSpec"]["Image"] == "x:1$"


def test_units():
    assert duration_ns("1h2m3s") == 3723 * 10**9 and duration_ns("1.5s") == 1_500_000_000
    assert size_bytes("1g") == 1024**3 and size_bytes("512k") == 512 * 1024 and nano_cpus("0.001") == 1_000_000


@pytest.mark.parametrize("top, says", [
    ("secrets: {pw: {external: true, name: othershop_db_password}}", "`secrets.pw`: an external secret"),
    ("configs: {c: {external: true}}", "`configs.c`: an external config"),
    ("volumes: {data: {external: true, name: othershop_data}}", "`volumes.data`: an external volume"),
    ("volumes: {data: {name: othershop_data}}", "`volumes.data`: `name:` would use the volume of that name"),
    ("volumes: {data: {driver_opts: {type: none, o: bind, device: /etc}}}", "`volumes.data`: a volume's `driver`"),
    ("volumes: {data: {driver: some-plugin}}", "`volumes.data`: a volume's `driver`"),
    ("networks: {back: {external: true, name: othershop_back}}", "`networks.back`: an external network"),
    ("networks: {back: {name: othershop_back}}", "`networks.back`: `name:` would use the network"),
])
def test_an_untrusted_stack_uses_only_its_own_objects(top, says):
    # Deploys share the swarm: these would mount another stack's secret or data, join its network,
    # or bind the node's files through a volume driver.
    text = f"services: {{web: {{image: x}}}}\n{top}\n"
    with pytest.raises(ComposeError, match=re.escape(says)) as refused:
        parse_compose(text, "s", "c.yml")
    assert "mark the repository trusted" in str(refused.value) and ":2:" in str(refused.value)
    parse_compose(text, "s", "c.yml", trusted=True)  # a trusted repository may, as with stack deploy
    parse_compose("services: {web: {image: x}}\nvolumes: {data: {driver: local, labels: {a: b}}}\n"
                  "networks: {back: {driver: overlay}}\n", "s", "c.yml")  # its own objects: fine
