"""What only the local backend promises: no runner environment leaks in, the workspace is a copy
(symlinks kept), and stopping a step reaches every process of its group."""

from __future__ import annotations

import os
import time

from runner.backends.base import BuildRef, StepExit
from runner.backends.local import LocalBackend
from runner.plan import Job, Step


async def collect(backend, handle, run):
    out, code = b"", None
    async for item in backend.exec_step(handle, Step("s", run), {"ONLY": "this"}):
        if isinstance(item, StepExit):
            code = item.code
        else:
            out += item
    return out.decode(), code


async def test_environment_workspace_copy_and_symlinks(tmp_path, monkeypatch):
    monkeypatch.setenv("CONVEYOR_TEST_LEAK", "runner-secret")
    source = tmp_path / "src"
    source.mkdir()
    (source / "real.txt").write_text("content\n")
    (source / "link.txt").symlink_to("real.txt")
    backend, build = LocalBackend(grace=0.5), BuildRef("l1", source)
    await backend.setup(build)
    try:
        handle = await backend.start_job(build, Job("a", "ignored", ()))
        out, code = await collect(backend, handle, 'echo "${CONVEYOR_TEST_LEAK:-unset} $ONLY"; pwd; '
                                                    'echo "$CI_WORKSPACE"; readlink link.txt; echo x > real.txt')
        leak, pwd, workspace, link = out.splitlines()
        assert (leak, code) == ("unset this", 0)
        assert pwd == workspace and pwd != str(source) and link == "real.txt"
        assert (source / "real.txt").read_text() == "content\n"  # the checkout is never written
    finally:
        await backend.teardown(build)
    assert not os.path.exists(workspace)


async def test_stopping_a_step_kills_its_whole_process_group(tmp_path):
    backend, build = LocalBackend(grace=0.5), BuildRef("l2", tmp_path)
    await backend.setup(build)
    try:
        handle = await backend.start_job(build, Job("a", "ignored", ()))
        steps = backend.exec_step(handle, Step("s", "trap '' TERM; sleep 33 & echo $!; wait"), {})
        child = int((await steps.__anext__()).decode())
        began = time.monotonic()
        await steps.aclose()
        assert time.monotonic() - began < 3
        try:
            os.kill(child, 0)
            alive = open(f"/proc/{child}/stat").read().split()[2] != "Z"
        except ProcessLookupError:
            alive = False
        assert not alive
    finally:
        await backend.teardown(build)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (ProcessLookupError, FileNotFoundError):
        return False


async def test_what_a_step_left_running_lives_until_its_job_stops(tmp_path):
    # Like a job container: a server started in one step serves the next; stop_job ends it, so a
    # build leaves no process behind on the runner's host.
    backend, build = LocalBackend(grace=0.5), BuildRef("l3", tmp_path)
    daemon = None
    await backend.setup(build)
    try:
        handle = await backend.start_job(build, Job("a", "ignored", ()))
        out, code = await collect(backend, handle, "nohup sleep 300 >/dev/null 2>&1 & echo $!")
        daemon = int(out.strip())
        assert code == 0 and _alive(daemon)
        out, code = await collect(backend, handle, f"kill -0 {daemon} && echo still-there")
        assert out.strip() == "still-there"
        began = time.monotonic()
        await backend.stop_job(handle)
        assert time.monotonic() - began < 3
        for _ in range(50):
            if not _alive(daemon):
                break
            time.sleep(0.02)
        assert not _alive(daemon)
    finally:
        await backend.teardown(build)
        if daemon is not None and _alive(daemon):  # never leave it behind, even when this test fails
            os.kill(daemon, 9)
