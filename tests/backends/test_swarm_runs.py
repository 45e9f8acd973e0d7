"""`backend: swarm` end to end on this machine's single-node swarm: a build through
`conveyor run --backend swarm`, Ctrl-C leaving nothing behind, and runs_on no node can take.
(The contract suite runs against it in test_contract.py; several nodes in tests/multinode.)"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from runner.cli import cli
from runner.store import builds as q
from runner.store.db import Store

pytestmark = pytest.mark.swarm
ROOT = Path(__file__).resolve().parent.parent.parent

PIPELINE = """\
image: conveyor-test/busybox:1
stages:
  - name: make
    jobs:
      - name: write
        steps:
          - echo "made by $(hostname)" > made.txt; echo wrote; echo "on node $CONVEYOR_NODE"
          - printf 'no newline'
  - name: use
    jobs:
      - name: read
        steps: [cat made.txt, "echo '@@conveyor:0:end 0 0'; exit 4"]
      - name: pinned
        runs_on: [conveyor-test-no-such-label]
        steps: [echo never]
"""
SLOW = """\
image: conveyor-test/busybox:1
stages:
  - name: wait
    jobs:
      - name: a
        steps: ['echo started; sleep 120']
"""


def leftovers(client, instance: str) -> list[str]:
    """Everything of this instance on the engine: services, secrets, containers, volumes, networks."""
    label = {"label": f"io.conveyor.instance={instance}"}
    found = [s.name for s in client.services.list(filters=label)]
    found += [s.name for s in client.secrets.list(filters=label)]
    found += [c.name for c in client.containers.list(all=True, filters=label)]
    found += [v.name for v in client.volumes.list(filters=label)]
    return found + [n.name for n in client.networks.list(filters=label)]


def _last(data: Path):
    with Store(data) as store:
        build = q.find_build(store.read(), "last")
        return build, q.get_detail(store.read(), build.id)


def test_a_build_through_conveyor_run_backend_swarm(docker_client, git_repo, tmp_path, instance):
    repo = git_repo(files={".conveyor.yml": PIPELINE})
    data = tmp_path / "data"
    result = CliRunner().invoke(cli, ["run", str(repo), "--backend", "swarm", "--data-dir", str(data)],
                                env={"CONVEYOR_INSTANCE": instance}, catch_exceptions=False)
    assert result.exit_code == 1, result.output
    out = result.stdout
    # Output of the second job is what the first wrote in the shared workspace; a marker-looking
    # line a step prints is output, not the end of the step: the real exit status (4) wins.
    assert "[write] wrote" in out and "[write] no newline" in out
    assert f"[write] on node {docker_client.info()['Name']}" in out  # CONVEYOR_NODE: the node's hostname
    assert "[read] made by write" in out and "[read] @@conveyor:0:end 0 0" in out
    build, detail = _last(data)
    assert build.status == "failure"
    jobs = {j.name: j for j in detail.jobs}
    assert jobs["write"].status == "success"
    assert jobs["read"].status == "failure" and [s.exit_code for s in jobs["read"].steps] == [0, 4]
    assert jobs["pinned"].status == "failure"
    assert "no node of the swarm has the labels runs_on asks for (conveyor-test-no-such-label)" in jobs["pinned"].reason
    assert leftovers(docker_client, instance) == []


def test_ctrl_c_removes_every_service_secret_and_volume(docker_client, git_repo, tmp_path, instance):
    repo = git_repo(files={".conveyor.yml": SLOW})
    env = dict(os.environ, CONVEYOR_INSTANCE=instance)
    proc = subprocess.Popen([sys.executable, "-m", "runner", "run", str(repo), "--backend", "swarm",
                             "--data-dir", str(tmp_path / "data")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    deadline = time.monotonic() + 60
    for line in proc.stdout:  # wait until the step really runs in its task
        if "[a] started" in line:
            break
        assert time.monotonic() < deadline, "the step never started"
    found = leftovers(docker_client, instance)
    assert any(name.endswith("-r1") for name in found) and any(name.endswith("-driver") for name in found), found
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=30) == 130, proc.stderr.read()
    assert leftovers(docker_client, instance) == []
    build, detail = _last(tmp_path / "data")
    assert build.status == "cancelled" and {j.status for j in detail.jobs} == {"cancelled"}


def test_kill_9_mid_step_then_conveyor_builds_sweeps_the_services_and_secrets(docker_client, git_repo, tmp_path,
                                                                               instance):
    """A SIGKILLed `conveyor run --backend swarm` cleans nothing up; the recovery of the next command
    (on a swarm manager) removes the build's service, its driver secret, task container and volume."""
    repo = git_repo(files={".conveyor.yml": SLOW})
    data = tmp_path / "data"
    env = dict(os.environ, CONVEYOR_INSTANCE=instance)
    proc = subprocess.Popen([sys.executable, "-m", "runner", "run", str(repo), "--backend", "swarm",
                             "--data-dir", str(data)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    try:
        deadline = time.monotonic() + 60
        for line in proc.stdout:
            if "[a] started" in line:
                break
            assert time.monotonic() < deadline, "the step never started"
    finally:
        proc.kill()
        proc.wait(timeout=10)
    left = leftovers(docker_client, instance)
    assert any(n.endswith("-r1") for n in left) and any(n.endswith("-driver") for n in left), left
    result = CliRunner().invoke(cli, ["builds", "--data-dir", str(data)], env={"CONVEYOR_INSTANCE": instance})
    assert result.exit_code == 0 and "interrupted" in result.stdout, result.output
    assert leftovers(docker_client, instance) == []
    build, detail = _last(data)
    assert build.status == "interrupted" and f"pid {proc.pid}" in build.reason
    assert {j.status for j in detail.jobs} == {"interrupted"}
