"""Ctrl-C and `kill -9` of a real `conveyor run` process, with the real engine."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from click.testing import CliRunner

from runner.cli import cli
from runner.store import builds as q
from runner.store.db import Store

ROOT = Path(__file__).resolve().parent.parent.parent
SLOW = {".conveyor.yml": (
    "image: conveyor-test/busybox:1\n"
    "stages:\n  - name: wait\n    jobs:\n"
    "      - name: a\n        steps: ['echo started; sleep 120']\n"
    "      - name: b\n        steps: ['sleep 120']\n"
)}


def _leftovers(client, instance: str) -> list[str]:
    label = {"label": f"io.conveyor.instance={instance}"}
    return ([c.name for c in client.containers.list(all=True, filters=label)]
            + [v.name for v in client.volumes.list(filters=label)]
            + [n.name for n in client.networks.list(filters=label)])


def _start(repo: Path, data: Path, instance: str) -> subprocess.Popen:
    env = dict(os.environ, CONVEYOR_INSTANCE=instance, CONVEYOR_CONCURRENCY="2")
    proc = subprocess.Popen([sys.executable, "-m", "runner", "run", str(repo), "--data-dir", str(data)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    deadline = time.monotonic() + 60
    for line in proc.stdout:  # wait until the step really runs
        if "[a] started" in line:
            return proc
        assert time.monotonic() < deadline, "the step never started"
    proc.kill()
    raise AssertionError(f"conveyor run ended early: {proc.stderr.read()}")


def _last(data: Path):
    with Store(data) as store:
        build = q.find_build(store.read(), "last")
        return build, q.get_detail(store.read(), build.id)


def test_ctrl_c_cancels_and_cleans_up_within_10_seconds(docker_client, git_repo, tmp_path, instance):
    proc = _start(git_repo(files=SLOW), tmp_path / "data", instance)
    assert _leftovers(docker_client, instance)  # containers, volume and network exist now
    start = time.monotonic()
    proc.send_signal(signal.SIGINT)
    code = proc.wait(timeout=30)
    took = time.monotonic() - start
    assert code == 130, proc.stderr.read()
    assert took < 10, f"cleanup took {took:.1f}s"
    assert _leftovers(docker_client, instance) == []
    build, detail = _last(tmp_path / "data")
    assert build.status == "cancelled" and build.finished is not None
    assert {j.status for j in detail.jobs} == {"cancelled"}
    assert "cancelled" in proc.stderr.read()


def test_kill_9_leaves_an_interrupted_build_and_the_next_command_sweeps(docker_client, git_repo, tmp_path,
                                                                         instance):
    data = tmp_path / "data"
    proc = _start(git_repo(files=SLOW), data, instance)
    proc.kill()
    proc.wait(timeout=10)
    assert _leftovers(docker_client, instance), "the killed run should have left its containers"
    result = CliRunner().invoke(cli, ["builds", "--data-dir", str(data)], env={"CONVEYOR_INSTANCE": instance})
    assert result.exit_code == 0 and "interrupted" in result.stdout
    assert _leftovers(docker_client, instance) == []
    build, detail = _last(data)
    assert build.status == "interrupted" and f"pid {proc.pid}" in build.reason
    assert {j.status for j in detail.jobs} == {"interrupted"}
    assert all(s.status == "interrupted" for j in detail.jobs for s in j.steps)


def test_the_next_run_settles_a_dead_build_without_making_its_own_first_step_wait(git_repo, tmp_path):
    """Recovery of other builds happens next to the build (after its first step started) and is done
    when `conveyor run` returns."""
    from runner.build import BuildRequest, create_build
    from runner.store.recovery import this_host

    data = tmp_path / "data"
    dead_pid = subprocess.run(["sh", "-c", "echo $$"], capture_output=True, text=True).stdout.strip()
    with Store(data) as store:
        stale = create_build(store, BuildRequest(repo="other", event="push"), "itest")
        store.write(lambda c: q.mark_running(c, stale, pid=int(dead_pid), host=this_host(),
                                             started=time.time()))
    repo = git_repo({".conveyor.yml": "image: conveyor-test/busybox:1\nstages:\n  - name: s\n    steps: [\"true\"]\n"})
    env = dict(os.environ, CONVEYOR_INSTANCE="itest" + str(os.getpid()))
    proc = subprocess.run([sys.executable, "-m", "runner", "run", str(repo), "--data-dir", str(data),
                           "--backend", "local"], capture_output=True, text=True, env=env, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    with Store(data) as store:
        conn = store.read()
        old, new = q.get_build(conn, stale), q.get_build(conn, stale + 1)
        first_step = conn.execute("SELECT MIN(s.started) FROM steps s JOIN jobs j ON j.id = s.job_id "
                                  "WHERE j.build_id = ?", (new.id,)).fetchone()[0]
    assert (old.status, new.status) == ("interrupted", "success") and "killed or crashed" in old.reason
    assert old.finished >= first_step  # settled after this run's first step had started, not before it
