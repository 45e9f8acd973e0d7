"""The backend contract (runner/backends/base.py), checked against every backend.

The fake backend runs nothing, so each command below comes with its scripted twin: the real
backends run the shell text, the fake one plays the script. The assertions are the same.
"""

from __future__ import annotations

import asyncio
import io
import tarfile
import time
import uuid

import pytest

from runner.backends.base import BuildRef, StepExit
from runner.backends.docker import DockerBackend
from runner.backends.fake import FakeBackend, FakeStep
from runner.backends.local import LocalBackend
from runner.backends.swarm import SwarmBackend
from runner.deploy.workspace import read_text
from runner.backends.files import FilesTooLargeError, TooManyFilesError, WorkspacePathError
from runner.errors import BackendError
from runner.plan import Job, Step
from runner.settings import Settings
from tests.conftest import BUSYBOX, PYTHON

ORDER = "printf 'one\\ntwo\\n'; echo three >&2; printf 'four'; exit 3"
ENV = 'echo "$GREETING $WHO"; cat marker.txt'
WRITE = "echo shared-by-jobs > shared.txt"
READ = "cat shared.txt"
LONG = "echo $$ > long.pid; echo started; sleep 31; echo never"
CHECK = "if kill -0 $(cat long.pid) 2>/dev/null; then echo alive; else echo gone; fi"
SLEEP = "sleep 1"
PRODUCE = ("mkdir -p dist/sub && printf 'bin\\000ary' > dist/a.bin && echo nested > dist/sub/b.txt"
           " && echo other > other.txt && chmod 755 dist/a.bin")
CONSUME = "cat dist/a.bin dist/sub/b.txt; test -x dist/a.bin && echo executable; test -e other.txt || echo no-other"


def _fake_script(backend: FakeBackend) -> dict[str, FakeStep]:
    def write(run):
        run.workspace["shared.txt"] = "shared-by-jobs\n"
        return []

    def produce(run):
        run.workspace.update({"dist/a.bin": "bin\0ary", "dist/sub/b.txt": "nested\n", "other.txt": "other\n"})
        return []

    return {
        PRODUCE: FakeStep(output=produce),
        CONSUME: FakeStep(output=lambda run: [(run.workspace["dist/a.bin"] + run.workspace["dist/sub/b.txt"]).encode(),
                                              b"executable\n", b"no-other\n" if "other.txt" not in run.workspace else b""]),
        ORDER: FakeStep(output=[b"one\ntw", b"o\nthree\n", b"four"], exit=3),
        ENV: FakeStep(output=lambda run: [f"{run.env['GREETING']} {run.env['WHO']}\n".encode(),
                                          run.workspace["marker.txt"].encode()]),
        WRITE: FakeStep(output=write),
        READ: FakeStep(output=lambda run: [run.workspace["shared.txt"].encode()]),
        LONG: FakeStep(output=[b"started\n", b"never\n"], chunk_delay=30),
        CHECK: FakeStep(output=lambda run: [b"gone\n" if "long" in backend.stopped_steps else b"alive\n"]),
        SLEEP: FakeStep(delay=1),
    }


# swarm: one-shot services on the engine's swarm (a single node here; tests/multinode for more).
# Tests that create services hold /tmp/conveyor-swarm.lock (docs/backends.md, "Testing").
@pytest.fixture(params=["fake", "local", "docker", pytest.param("swarm", marks=pytest.mark.swarm)])
def backend(request, instance):
    if request.param == "fake":
        fake = FakeBackend()
        fake.script = _fake_script(fake)
        yield fake
    else:
        yield from _real(request, instance)


def _real(request, instance):
    if request.param == "local":
        yield LocalBackend(grace=1.0)
        return
    request.getfixturevalue("docker_client")
    if request.param == "docker":
        backend = DockerBackend(Settings(instance=instance), grace=1.0)
    else:  # jobs reserve what they may use: small ones, so three fit on this machine's one node at once
        backend = SwarmBackend(Settings(instance=instance, job_cpus=0.5, job_memory=256 * 1024**2), grace=1.0)
    yield backend
    assert asyncio.run(backend.sweep(keep=[])) == 0, "teardown left something of the build behind"
    backend.close()


@pytest.fixture(params=["local", "docker", pytest.param("swarm", marks=pytest.mark.swarm)])
def real_backend(request, instance):
    """The backends with a real file system (the fake one keeps text in a dict: no symlinks)."""
    yield from _real(request, instance)


@pytest.fixture
def build(tmp_path, instance):
    source = tmp_path / "checkout"
    source.mkdir()
    (source / "marker.txt").write_text("from the checkout\n")
    return BuildRef(id="c" + uuid.uuid4().hex[:10], source=source, instance=instance)


def job(name="job", *runs):
    return Job(name, BUSYBOX, tuple(Step(f"s{i}", run) for i, run in enumerate(runs)))


async def run_step(backend, handle, run, env=None, name="step"):
    out, exits = b"", []
    async for item in backend.exec_step(handle, Step(name, run), env or {}):
        if isinstance(item, StepExit):
            exits.append(item)
        else:
            assert not exits, "output after the StepExit"
            out += item
    assert len(exits) == 1, "exactly one StepExit ends a step"
    return out, exits[0]


async def test_the_workspace_holds_the_checkout_from_setup_on(backend, build, request):
    """A stage action reads the workspace through ``workspace(build)``, once ``workspace_ready`` has
    returned, before any job has started (a pipeline whose first stage is a build stage), and sees
    what steps wrote after they ran."""
    with pytest.raises(BackendError, match="before setup"):
        backend.workspace(build)
    await backend.setup(build)
    try:
        await backend.workspace_ready(build)  # the fill may go on after setup, beside the first jobs' starts
        where = backend.workspace(build)
        assert (where.volume is None) != (where.path is None), where
        client = request.getfixturevalue("docker_client") if where.volume else None

        def read(name: str) -> str:
            return read_text(client, where.path, where.volume, name)

        assert await asyncio.to_thread(read, "marker.txt") == "from the checkout\n"
        handle = await backend.start_job(build, job())
        assert (await run_step(backend, handle, WRITE))[1].code == 0
        await backend.stop_job(handle)
        if backend.name != "fake":  # the fake's steps write only into its simulated workspace
            assert await asyncio.to_thread(read, "shared.txt") == "shared-by-jobs\n"
    finally:
        await backend.teardown(build)


async def test_output_in_order_then_exit_code(backend, build):
    await backend.available()
    await backend.setup(build)
    try:
        handle = await backend.start_job(build, job())
        out, exit = await run_step(backend, handle, ORDER)
        assert out.decode().split("\n") == ["one", "two", "three", "four"]
        assert exit.code == 3 and not exit.oom_killed
        out, exit = await run_step(backend, handle, "true" if backend.name != "fake" else "unscripted")
        assert (out, exit.code) == (b"", 0)
        await backend.stop_job(handle)
    finally:
        await backend.teardown(build)


async def test_env_and_workspace_as_working_directory(backend, build):
    await backend.setup(build)
    try:
        handle = await backend.start_job(build, job())
        out, exit = await run_step(backend, handle, ENV, {"GREETING": "hello", "WHO": "conveyor"})
        assert out.decode() == "hello conveyor\nfrom the checkout\n" and exit.code == 0
        if backend.name in ("docker", "swarm"):
            out, _ = await run_step(backend, handle, "pwd")
            assert out.decode().strip() == "/workspace"
        await backend.stop_job(handle)
    finally:
        await backend.teardown(build)


async def test_what_one_step_does_to_its_env_or_output_reaches_no_further(real_backend, build):
    """Any env name reaches the step, also one a shell would refuse to export (bash, sh on Fedora or
    UBI images, holds UID read-only); a step that leaves its output non-blocking (Node does) costs
    the next step none of its output."""
    backend = real_backend
    await backend.setup(build)
    try:
        handle = await backend.start_job(build, Job("job", PYTHON, ()))
        out, exit = await run_step(backend, handle, "tr '\\0' '\\n' < /proc/$$/environ | grep -E '^(UID|-Sx)=' | sort",
                                   {"UID": "4242", "-Sx": "v"})
        assert (out, exit.code) == (b"-Sx=v\nUID=4242\n", 0)
        assert (await run_step(backend, handle, "python3 -c 'import os; os.set_blocking(1, False)'"))[1].code == 0
        out, exit = await run_step(backend, handle, "head -c 2000000 /dev/zero | tr '\\0' x | fold -w 99")
        assert (out, exit.code) == ((b"x" * 99 + b"\n") * 20202 + b"xx", 0)
        await backend.stop_job(handle)
    finally:
        await backend.teardown(build)


async def test_jobs_share_the_workspace(backend, build):
    await backend.setup(build)
    try:
        first = await backend.start_job(build, job("first"))
        assert (await run_step(backend, first, WRITE))[1].code == 0
        await backend.stop_job(first)
        second = await backend.start_job(build, job("second"))
        out, exit = await run_step(backend, second, READ)
        assert (out, exit.code) == (b"shared-by-jobs\n", 0)
        await backend.stop_job(second)
    finally:
        await backend.teardown(build)


async def test_stop_and_teardown_are_idempotent_and_safe_after_failed_start(backend, build):
    with pytest.raises(BackendError):
        await backend.start_job(build, job())  # no setup yet: refused with a reason
    await backend.teardown(build)  # nothing was made: still fine
    await backend.setup(build)
    handle = await backend.start_job(build, job())
    await backend.stop_job(handle)
    await backend.stop_job(handle)
    await backend.teardown(build)
    await backend.teardown(build)


async def test_closing_a_step_early_stops_its_processes(backend, build, request):
    await backend.setup(build)
    try:
        handle = await backend.start_job(build, job())
        steps = backend.exec_step(handle, Step("long", LONG), {})
        first = await steps.__anext__()
        assert first.startswith(b"started")
        began = time.monotonic()
        await steps.aclose()
        assert time.monotonic() - began < 4.0, "aclose must return promptly"
        if backend.name == "swarm":  # each run of steps is a container of its own: none may be left
            client = request.getfixturevalue("docker_client")
            assert client.containers.list(all=True, filters={"label": f"io.conveyor.build={build.id}"}) == []
        else:
            out, _ = await run_step(backend, handle, CHECK)
            assert out == b"gone\n"
        await backend.stop_job(handle)
    finally:
        await backend.teardown(build)


async def test_jobs_run_concurrently(backend, build):
    await backend.setup(build)
    try:
        handles = await asyncio.gather(*(backend.start_job(build, job(f"j{i}")) for i in range(3)))
        began = time.monotonic()
        results = await asyncio.gather(*(run_step(backend, h, SLEEP) for h in handles))
        elapsed = time.monotonic() - began
        assert [exit.code for _, exit in results] == [0, 0, 0]
        # A swarm job's first step also starts its service (~0.5 s): still under the 3 s of a queue.
        bound = 3.0 if backend.name == "swarm" else 2.0
        assert elapsed < bound, f"three 1 s steps in parallel took {elapsed:.2f}s"
        await asyncio.gather(*(backend.stop_job(h) for h in handles))
    finally:
        await backend.teardown(build)


async def test_files_go_out_of_one_build_and_into_another(backend, build, tmp_path, instance):
    """``export_files`` keeps what the globs select (a directory: all under it), byte for byte, with
    the executable bit; ``import_files`` puts it into another build's workspace before its steps."""
    archive = tmp_path / "out.tar"
    await backend.setup(build)
    try:
        handle = await backend.start_job(build, job())
        assert (await run_step(backend, handle, PRODUCE))[1].code == 0
        assert await backend.export_files(handle, ["dist/", "missing/*.txt"], archive) == 2
        await backend.stop_job(handle)
    finally:
        await backend.teardown(build)
    with tarfile.open(archive) as tar:
        assert sorted(m.name for m in tar.getmembers()) == ["dist/a.bin", "dist/sub/b.txt"]
        assert tar.extractfile("dist/a.bin").read() == b"bin\0ary"
    source = tmp_path / "second"
    source.mkdir()
    second = BuildRef(id="c" + uuid.uuid4().hex[:10], source=source, instance=instance)
    await backend.setup(second)
    try:
        handle = await backend.start_job(second, job())
        await backend.import_files(handle, archive)
        out, exit = await run_step(backend, handle, CONSUME)
        assert (out, exit.code) == (b"bin\0arynested\nexecutable\nno-other\n", 0)
        await backend.stop_job(handle)
    finally:
        await backend.teardown(second)


async def test_an_export_stops_at_its_byte_limit(backend, build, tmp_path):
    """Past ``limit`` bytes of file data ``export_files`` raises, naming the file, before copying it;
    past ``max_files`` files too."""
    await backend.setup(build)
    try:
        handle = await backend.start_job(build, job())
        assert (await run_step(backend, handle, PRODUCE))[1].code == 0
        assert await backend.export_files(handle, ["dist/"], tmp_path / "fits.tar", limit=14) == 2
        with pytest.raises(FilesTooLargeError, match="pass 13 bytes at dist/sub/b.txt"):
            await backend.export_files(handle, ["dist/"], tmp_path / "past.tar", limit=13)
        assert await backend.export_files(handle, ["dist/"], tmp_path / "count.tar", max_files=2) == 2
        with pytest.raises(TooManyFilesError, match="more than 1 files are selected"):
            await backend.export_files(handle, ["dist/"], tmp_path / "many.tar", max_files=1)
        await backend.stop_job(handle)
    finally:
        await backend.teardown(build)


@pytest.mark.parametrize("link, globs", [("/etc", ["dist/"]), ("../../../etc", ["dist/"]),
                                         ("/etc", ["dist/etc/*"])], ids=["absolute", "climbing", "as-prefix"])
async def test_a_symlink_out_of_the_workspace_is_refused(real_backend, build, tmp_path, link, globs):
    backend = real_backend
    await backend.setup(build)
    try:
        handle = await backend.start_job(build, job())
        run = f"mkdir -p dist && echo ok > dist/ok.txt && ln -s {link} dist/etc"
        assert (await run_step(backend, handle, run))[1].code == 0
        with pytest.raises(WorkspacePathError, match="dist/etc"):
            await backend.export_files(handle, globs, tmp_path / "out.tar")
        # A symlink that stays inside is kept as a symlink; one named by a glob's fixed part is followed.
        assert (await run_step(backend, handle, "rm dist/etc; ln -s ok.txt dist/same; ln -s dist alias"))[1].code == 0
        assert await backend.export_files(handle, ["dist/", "alias/ok.txt"], tmp_path / "in.tar") == 3
        with tarfile.open(tmp_path / "in.tar") as tar:
            assert tar.getmember("dist/same").linkname == "ok.txt"
            assert tar.extractfile("alias/ok.txt").read() == b"ok\n"
        with pytest.raises(TooManyFilesError, match="more than 1 files"):  # ok.txt and the symlink same
            await backend.export_files(handle, ["dist/"], tmp_path / "many.tar", max_files=1)
        await backend.stop_job(handle)
    finally:
        await backend.teardown(build)


async def test_an_archive_that_leaves_the_workspace_is_not_unpacked(backend, build, tmp_path):
    bad = tmp_path / "bad.tar"
    with tarfile.open(bad, "w") as tar:
        for name in ("fine.txt", "../escaped.txt"):
            info = tarfile.TarInfo(name)
            info.size = 3
            tar.addfile(info, io.BytesIO(b"bad"))
    await backend.setup(build)
    try:
        handle = await backend.start_job(build, job())
        with pytest.raises(WorkspacePathError, match="escaped"):
            await backend.import_files(handle, bad)
        await backend.stop_job(handle)
    finally:
        await backend.teardown(build)
    assert not (tmp_path / "escaped.txt").exists() and not (build.source.parent / "escaped.txt").exists()
