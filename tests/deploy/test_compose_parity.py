"""Parity: every file of tests/deploy/compose/ deployed by `docker stack deploy` and by Conveyor
gives the same service specs, field by field (docs/deploy.md, "Compose files")."""

from __future__ import annotations

import pytest
from compose_parity import CORPUS, differences, normalise, remove_stack, stack_deploy, stack_specs
from deploy_helpers import free_port

from runner.deploy.compose_source import stack_from_dir
from runner.deploy.stack import deploy_stack

pytestmark = [pytest.mark.docker, pytest.mark.swarm]


@pytest.mark.parametrize("name", sorted(p.name for p in CORPUS.glob("*.yml")))
async def test_specs_equal_docker_stack_deploy(name, swarm, store, prov, instance):
    env = {"WEB_PORT": str(free_port())}
    theirs, ours = f"{instance}sd", f"{instance}cv"
    try:
        stack_deploy(theirs, CORPUS / name, env)
        expected = stack_specs(swarm.client, theirs)
        assert expected, "docker stack deploy made no service"
        remove_stack(swarm.client, theirs)  # host-mode ports: one stack at a time

        # Trusted: the corpus uses what stack deploy allows everyone (external objects, named volumes
        # with driver_opts); what an untrusted repository may not use is refused before conversion.
        compose = stack_from_dir(CORPUS, name, ours, env, trusted=True)
        log: list[str] = []
        outcomes = await deploy_stack(swarm, store, compose, 90, None, log.append, prov)
        assert all(o.ok for o in outcomes), "\n".join(log)
        got = stack_specs(swarm.client, ours)
        assert set(got) == set(expected)
        diffs = [f"{svc}: {d}" for svc in sorted(expected)
                 for d in differences(normalise(expected[svc], theirs), normalise(got[svc], ours))]
        assert diffs == [], "\n".join(diffs)
    finally:
        remove_stack(swarm.client, theirs)
        remove_stack(swarm.client, ours)
