"""The pool of build networks (runner/engine/netpool.py), on the real engine: a build leases an idle
network and the next build reuses it; builds running at once never share one; a build killed without
its teardown keeps its network out of use until the sweep; the pool keeps at most ``network_pool``
idle; a build waiting for an approval holds none; ``network_pool: 0`` makes and removes a network per
build; `conveyor gc --networks` drains it.
Each test looks after the teardown, where the user would."""

from __future__ import annotations

import asyncio
import uuid

import docker
import pytest

from runner.backends.base import BuildRef
from runner.backends.docker import DockerBackend
from runner.engine import netpool
from runner.plan import Job
from runner.settings import Settings
from tests.conftest import BUSYBOX

pytestmark = pytest.mark.docker


def new_build(tmp_path, instance) -> BuildRef:
    src = tmp_path / uuid.uuid4().hex[:6]
    src.mkdir()
    (src / "README").write_text("hi\n")
    return BuildRef(id="n" + uuid.uuid4().hex[:10], source=src, instance=instance)


def network_of(docker_client, handle) -> str:
    return docker_client.containers.get(handle.data.id).attrs["HostConfig"]["NetworkMode"]


def leftovers(docker_client, build_id):
    label = {"label": f"io.conveyor.build={build_id}"}
    return (docker_client.containers.list(all=True, filters=label), docker_client.networks.list(filters=label),
            docker_client.volumes.list(filters=label))


def idle(docker_client, name) -> bool:
    """The network is there, with nothing on it and nobody leasing it."""
    try:
        net = docker_client.networks.get(name)
    except docker.errors.NotFound:
        return False
    return not net.attrs["Containers"] and not docker_client.containers.list(all=True, filters={"name": f"{name}-lease"})


# Other runners of this engine share the pool: with a small network_pool a teardown here could trim
# the very network a test then looks at. Only the trim test sets a small one.
ROOMY = 64


@pytest.fixture
def backend(docker_client, instance):
    backend = DockerBackend(Settings(instance=instance, network_pool=ROOMY), grace=1.0)
    yield backend
    asyncio.run(backend.sweep(keep=[]))
    backend.close()


async def test_the_next_build_reuses_the_network_the_last_one_left_idle(backend, docker_client, tmp_path, instance):
    first, second = new_build(tmp_path, instance), new_build(tmp_path, instance)
    await backend.setup(first)
    handle = await backend.start_job(first, Job("a", BUSYBOX, ()))
    network = network_of(docker_client, handle)
    assert docker_client.networks.get(network).attrs["Labels"]["io.conveyor.pool"] == "bridge"
    assert not idle(docker_client, network)  # leased while the build runs
    await backend.stop_job(handle)
    await backend.teardown(first)
    # After the teardown: nothing of the build is left, the network is there, empty and free.
    assert leftovers(docker_client, first.id) == ([], [], [])
    assert idle(docker_client, network)

    pooled = {n.name for n in docker_client.networks.list(filters={"label": "io.conveyor.pool"})}
    await backend.setup(second)
    try:
        handle = await backend.start_job(second, Job("b", BUSYBOX, ()))
        reused = network_of(docker_client, handle)  # an idle one (this one, or another left by earlier builds)
        assert reused in pooled
        assert list(docker_client.networks.get(reused).attrs["Containers"]) == [handle.data.id]
    finally:
        await backend.teardown(second)
    assert idle(docker_client, reused)


async def test_builds_running_at_once_never_share_a_network(docker_client, tmp_path, instance):
    # Separate backends, as separate `conveyor run` processes would be: the engine is the only lock.
    backends = [DockerBackend(Settings(instance=instance)) for _ in range(4)]
    builds = [new_build(tmp_path, instance) for _ in backends]
    try:
        await asyncio.gather(*(b.setup(build) for b, build in zip(backends, builds)))
        handles = await asyncio.gather(*(b.start_job(build, Job("j", BUSYBOX, ()))
                                         for b, build in zip(backends, builds)))
        networks = [network_of(docker_client, h) for h in handles]
        assert len(set(networks)) == 4
        for net, handle in zip(networks, handles):  # each network holds its own build's container only
            assert list(docker_client.networks.get(net).attrs["Containers"]) == [handle.data.id]
    finally:
        await asyncio.gather(*(b.teardown(build) for b, build in zip(backends, builds)))
        for b in backends:
            b.close()
    for build in builds:
        assert leftovers(docker_client, build.id) == ([], [], [])


async def test_a_killed_builds_network_stays_out_of_use_until_the_sweep(docker_client, tmp_path, instance):
    killed = DockerBackend(Settings(instance=instance, resource_ttl=1.0, network_pool=ROOMY))
    crashed = new_build(tmp_path, instance)
    await killed.setup(crashed)
    handle = await killed.start_job(crashed, Job("a", BUSYBOX, ()))
    taken = network_of(docker_client, handle)
    killed.close()  # gone without a teardown, as after `kill -9`: its container and lease stay

    later = DockerBackend(Settings(instance=instance, resource_ttl=1.0, network_pool=ROOMY))
    try:
        builds = [new_build(tmp_path, instance) for _ in range(3)]
        for build in builds:  # however often networks are leased meanwhile, never the crashed build's
            await later.setup(build)
            h = await later.start_job(build, Job("b", BUSYBOX, ()))
            assert network_of(docker_client, h) != taken
            await later.teardown(build)
        assert not idle(docker_client, taken)

        await asyncio.sleep(1.2)  # the crashed build's resources expire; the next run's sweep takes them
        assert await later.sweep() >= 2  # its container and its lease
        assert leftovers(docker_client, crashed.id) == ([], [], [])
        assert idle(docker_client, taken)  # back in the pool, clean
    finally:
        later.close()


async def test_the_pool_keeps_at_most_network_pool_idle_networks(docker_client, tmp_path, instance):
    backends = [DockerBackend(Settings(instance=instance, network_pool=1)) for _ in range(3)]
    builds = [new_build(tmp_path, instance) for _ in backends]
    try:
        await asyncio.gather(*(b.setup(build) for b, build in zip(backends, builds)))
        handles = await asyncio.gather(*(b.start_job(build, Job("j", BUSYBOX, ()))
                                         for b, build in zip(backends, builds)))
        used = {network_of(docker_client, h) for h in handles}
        assert len(used) == 3
    finally:
        for b, build in zip(backends, builds):
            await b.teardown(build)
            b.close()
    left = [n for n in used if docker_client.networks.list(names=[n])]
    assert len(left) <= 1 and all(idle(docker_client, n) for n in left)


async def test_a_build_ending_while_others_hold_the_pool_leaves_its_network_for_the_next(
        docker_client, tmp_path, instance):
    # network_pool counts idle networks: with as many builds running, the one that ends still leaves
    # its network, or the pool would save nothing exactly when the engine is busy.
    backends = [DockerBackend(Settings(instance=instance, network_pool=1)) for _ in range(3)]
    builds = [new_build(tmp_path, instance) for _ in backends]
    await backends[0].engine.call(netpool.drain, backends[0].engine, {"io.conveyor.instance": instance})
    try:
        await asyncio.gather(*(b.setup(build) for b, build in zip(backends, builds)))
        handles = await asyncio.gather(*(b.start_job(build, Job("j", BUSYBOX, ()))
                                         for b, build in zip(backends, builds)))
        ending = network_of(docker_client, handles[2])
        await backends[2].stop_job(handles[2])
        await backends[2].teardown(builds[2])
        assert idle(docker_client, ending)  # two are leased, this one is the one idle: it stays
    finally:
        for b, build in zip(backends, builds):
            await b.teardown(build)
            b.close()


async def test_a_lease_pruned_behind_a_builds_back_is_taken_again_never_shared(
        backend, docker_client, tmp_path, instance, monkeypatch):
    # `docker container prune` removes a lease (created, never started) between two jobs of a build,
    # and another build leases that network. The first build's next job must not join it, and the
    # first build must not end the other's lease.
    from runner.backends import build_network
    from runner.engine.labels import labels_for

    monkeypatch.setattr(build_network, "TRUSTED_FOR", 0.0)  # ask the engine before every start
    build = new_build(tmp_path, instance)
    await backend.setup(build)
    other = labels_for("x" + uuid.uuid4().hex[:10], instance, 3600)
    try:
        first = await backend.start_job(build, Job("a", BUSYBOX, ()))
        network = network_of(docker_client, first)
        await backend.stop_job(first)
        docker_client.containers.get(f"{network}-lease").remove(force=True)  # the prune
        assert await backend.engine.call(netpool.lease, backend.engine, other, [network]) == network
        second = await backend.start_job(build, Job("b", BUSYBOX, ()))
        assert network_of(docker_client, second) != network
        assert not docker_client.networks.get(network).attrs["Containers"]
        await backend.stop_job(second)
    finally:
        await backend.teardown(build)
    lease = docker_client.containers.get(f"{network}-lease")  # the other build's, still
    assert lease.labels["io.conveyor.build"] == other["io.conveyor.build"]
    await backend.engine.call(netpool._give_back, backend.engine, network, other)
    assert idle(docker_client, network)


async def test_network_pool_0_makes_a_network_for_the_build_and_removes_it(docker_client, tmp_path, instance):
    backend = DockerBackend(Settings(instance=instance, network_pool=0))
    build = new_build(tmp_path, instance)
    try:
        await backend.setup(build)
        handle = await backend.start_job(build, Job("a", BUSYBOX, ()))
        assert network_of(docker_client, handle) == f"conveyor-{build.id}"
        await backend.teardown(build)
    finally:
        backend.close()
    assert leftovers(docker_client, build.id) == ([], [], [])
    assert not docker_client.networks.list(names=[f"conveyor-{build.id}"])


async def test_drain_removes_idle_networks_and_leaves_a_leased_one(backend, docker_client, tmp_path, instance):
    running, done = new_build(tmp_path, instance), new_build(tmp_path, instance)
    await backend.setup(running)
    await backend.setup(done)
    h_running = await backend.start_job(running, Job("a", BUSYBOX, ()))
    h_done = await backend.start_job(done, Job("b", BUSYBOX, ()))
    leased, freed = network_of(docker_client, h_running), network_of(docker_client, h_done)
    await backend.teardown(done)
    try:
        assert idle(docker_client, freed)
        removed = await backend.engine.call(netpool.drain, backend.engine, {"io.conveyor.instance": instance})
        assert removed >= 1
        assert not docker_client.networks.list(names=[freed])
        assert docker_client.networks.get(leased)  # the running build keeps its network
        assert list(docker_client.networks.get(leased).attrs["Containers"]) == [h_running.data.id]
    finally:
        await backend.teardown(running)
    assert leftovers(docker_client, running.id) == ([], [], [])


async def test_a_job_with_services_leases_its_own_network_and_gives_it_back(backend, docker_client, tmp_path,
                                                                        instance):
    from runner.plan import Ready, Service

    build = new_build(tmp_path, instance)
    db = Service("db", BUSYBOX, command="mkdir -p /w && echo up > /w/index.html && exec httpd -f -p 8080 -h /w",
                 ready=Ready(tcp=8080))
    await backend.setup(build)
    try:
        plain = await backend.start_job(build, Job("plain", BUSYBOX, ()))
        with_db = await backend.start_job(build, Job("with-db", BUSYBOX, (), services=(db,)))
        build_net, job_net = network_of(docker_client, plain), network_of(docker_client, with_db)
        assert job_net != build_net  # the job's own network, where `db` means its own service
        assert docker_client.networks.get(job_net).attrs["Labels"]["io.conveyor.pool"] == "bridge"
        assert len(docker_client.networks.get(job_net).attrs["Containers"]) == 2  # the job and db, nobody else
        await backend.stop_job(with_db)
        assert idle(docker_client, job_net) or not docker_client.networks.list(names=[job_net])  # given back
        assert not idle(docker_client, build_net)  # the build still holds its own
        await backend.stop_job(plain)
    finally:
        await backend.teardown(build)
    assert leftovers(docker_client, build.id) == ([], [], [])


async def test_a_build_waiting_for_approval_gives_its_network_back_and_leases_one_to_go_on(
        backend, docker_client, tmp_path, instance):
    build = new_build(tmp_path, instance)
    await backend.setup(build)
    try:
        before = await backend.start_job(build, Job("test", BUSYBOX, ()))
        first = network_of(docker_client, before)
        await backend.stop_job(before)
        await backend.idle(build)  # what the executor does when an approval stage starts waiting
        assert docker_client.containers.list(all=True, filters={"label": f"io.conveyor.build={build.id}"}) == []
        assert idle(docker_client, first) or not docker_client.networks.list(names=[first])
        after = await backend.start_job(build, Job("ship", BUSYBOX, ()))  # approved: the build goes on
        network = network_of(docker_client, after)
        assert docker_client.networks.get(network).attrs["Labels"]["io.conveyor.pool"] == "bridge"
        assert list(docker_client.networks.get(network).attrs["Containers"]) == [after.data.id]
        await backend.stop_job(after)
    finally:
        await backend.teardown(build)
    assert leftovers(docker_client, build.id) == ([], [], [])
    assert idle(docker_client, network) or not docker_client.networks.list(names=[network])


async def test_networks_pruned_behind_its_back_are_not_missed(backend, docker_client, tmp_path, instance):
    first, second = new_build(tmp_path, instance), new_build(tmp_path, instance)
    await backend.setup(first)
    await backend.teardown(first)
    docker_client.networks.prune(filters={"label": "io.conveyor.pool"})  # what `docker network prune` does
    assert not docker_client.networks.list(filters={"label": "io.conveyor.pool"}) or all(
        docker_client.networks.get(n.id).attrs["Containers"] for n in
        docker_client.networks.list(filters={"label": "io.conveyor.pool"}))  # only networks in use survive
    assert not await backend.engine.call(netpool._empty, backend.engine, "conveyor-pool-000000000000")
    await backend.setup(second)
    try:
        handle = await backend.start_job(second, Job("a", BUSYBOX, ()))
        assert list(docker_client.networks.get(network_of(docker_client, handle)).attrs["Containers"]) == [
            handle.data.id]
    finally:
        await backend.teardown(second)


def test_conveyor_gc_networks_removes_the_idle_ones(backend, docker_client, tmp_path, instance):
    from click.testing import CliRunner

    from runner.cli import cli

    build = new_build(tmp_path, instance)

    async def one_build() -> str:
        await backend.setup(build)
        handle = await backend.start_job(build, Job("a", BUSYBOX, ()))
        network = network_of(docker_client, handle)
        await backend.teardown(build)
        return network

    network = asyncio.run(one_build())
    assert idle(docker_client, network)
    result = CliRunner().invoke(cli, ["gc", "--networks", "--data-dir", str(tmp_path / "data")])
    assert result.exit_code == 0, result.output
    assert "idle build network(s)" in result.output
    assert not docker_client.networks.list(names=[network])


def test_network_pool_is_set_per_runner_and_refuses_what_is_not_a_count(tmp_path):
    from runner.server.config import ServerConfigError, load_config

    assert Settings().network_pool == 4
    assert Settings.from_env({"CONVEYOR_NETWORK_POOL": "0"}).network_pool == 0
    with pytest.raises(ValueError, match="CONVEYOR_NETWORK_POOL must be a whole number of at least 0"):
        Settings.from_env({"CONVEYOR_NETWORK_POOL": "-1"})
    config = tmp_path / "conveyor.yml"
    config.write_text("network_pool: 8\n")
    assert load_config(config, environ={"HOME": str(tmp_path)}).settings.network_pool == 8
    config.write_text("network_pool: many\n")
    with pytest.raises(ServerConfigError, match="network_pool must be a whole number of at least 0, not 'many'"):
        load_config(config, environ={"HOME": str(tmp_path)})


async def test_a_job_created_for_a_network_another_runner_leases_first_starts_on_the_one_leased(
        backend, docker_client, tmp_path, instance):
    # The first job's container is created for the idle network the lease tries first, while the
    # lease is taken. Here another runner leases that network in between: the container must not
    # start there; it is made again on the network this build did lease.
    from runner.backends.build_network import BuildNetwork
    from runner.engine.labels import labels_for

    build = new_build(tmp_path, instance)
    labels = labels_for(build.id, instance, 3600)
    network = BuildNetwork(backend.engine, build.id, labels, ROOMY)
    likely = await network.likely()
    if likely == await network.name():  # no network was idle: one build's worth makes one
        await network.idle()
        likely = await network.likely()
    other = labels_for("x" + uuid.uuid4().hex[:10], instance, 3600)
    assert await backend.engine.call(netpool._take, backend.engine, likely, other)  # the other runner wins it
    name = f"conveyor-{build.id}-j-1"
    create = dict(image=BUSYBOX, name=name, labels={**labels, "io.conveyor.job-resource": name},
                  command=["sleep", "30"])
    cid = await backend._create_and_start(create, dict(network_mode=likely), network)
    try:
        leased = docker_client.containers.get(cid)
        assert leased.status == "running" and leased.attrs["HostConfig"]["NetworkMode"] == network.current
        assert network.current != likely
        assert not docker_client.networks.get(likely).attrs["Containers"]  # nothing of ours joined it
    finally:
        docker_client.containers.get(cid).remove(force=True)
        await backend.engine.call(netpool._give_back, backend.engine, likely, other)
        await backend.sweep_build(build.id)
