"""Approval stages in `conveyor run` (real processes, a real terminal from a pty, the real engine):
--approve, no terminal and no flag, the terminal's question, and `conveyor approve` from another
process answering a build that waits."""

from __future__ import annotations

import os
import pty
import subprocess
import sys
import time

import pytest

from runner.store import builds as q
from runner.store.db import Store

pytestmark = pytest.mark.docker

PIPELINE = """\
name: gated
image: conveyor-test/busybox:1
stages:
  - name: test
    steps: ["echo tested"]
  - name: approve
    approval:
      message: "Ship {{ git.short_sha }}?"
      timeout: 5m
  - name: ship
    steps: ["echo shipped"]
  - name: undo
    when: {status: failure}
    steps: ["echo rolled back"]
"""


@pytest.fixture
def cli(tmp_path, instance):
    data = tmp_path / "data"
    env = {**os.environ, "CONVEYOR_INSTANCE": instance, "CONVEYOR_DATA_DIR": str(data), "PYTHONUNBUFFERED": "1"}

    def run(*args, **kw):
        return subprocess.run([sys.executable, "-m", "runner", *args], env=env, capture_output=True, text=True,
                              timeout=120, stdin=kw.pop("stdin", subprocess.DEVNULL), **kw)

    run.env, run.data = env, data
    return run


def stored(data, ref="last"):
    with Store(data) as store:
        build = q.find_build(store.read(), ref)
        return q.get_detail(store.read(), build.id)


def test_approve_flag_lets_the_build_through(cli, git_repo, docker_client):
    repo = git_repo({".conveyor.yml": PIPELINE})
    result = cli("run", str(repo), "--approve", "approve")
    assert result.returncode == 0, result.stderr
    assert "[ship] shipped" in result.stdout and "approved by" in result.stdout
    detail = stored(cli.data)
    (approval,) = detail.approvals
    assert approval.decision == "approved" and approval.decided_by.endswith("(--approve)")
    assert {s.name: s.status for s in detail.stages} == {
        "test": "success", "approve": "success", "ship": "success", "undo": "skipped"}
    shown = cli("show", "id:%d" % detail.build.id).stdout
    assert "approval: Ship " in shown and "approved by " in shown


def test_without_a_terminal_or_the_flag_the_stage_fails_with_the_hint(cli, git_repo, docker_client):
    repo = git_repo({".conveyor.yml": PIPELINE})
    result = cli("run", str(repo))
    assert result.returncode == 1
    assert "pass --approve approve to `conveyor run`" in result.stderr  # the build's reason
    assert "[undo] rolled back" in result.stdout and "[ship] > step" not in result.stdout  # ship is skipped
    detail = stored(cli.data)
    assert detail.build.status == "failure" and detail.approvals[0].decision == "not_asked"


def _in_a_terminal(cli, repo, tmp_path):
    """`conveyor run` with a pty as stdin; output to a file. Returns (process, master fd, out path)."""
    master, slave = pty.openpty()
    out = tmp_path / "run.out"
    with open(out, "wb") as sink:
        proc = subprocess.Popen([sys.executable, "-m", "runner", "run", str(repo)], env=cli.env, stdin=slave,
                                stdout=sink, stderr=subprocess.STDOUT)
    os.close(slave)
    return proc, master, out


def _wait_for(path, text, proc, timeout=60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if text in path.read_text(errors="replace"):
            return
        assert proc.poll() is None, path.read_text()
        time.sleep(0.05)
    raise AssertionError(f"{text!r} never appeared:\n{path.read_text()}")


def test_a_terminal_is_asked_and_yes_approves(cli, git_repo, tmp_path, docker_client):
    repo = git_repo({".conveyor.yml": PIPELINE})
    proc, master, out = _in_a_terminal(cli, repo, tmp_path)
    try:
        _wait_for(out, "approve? [y/N]", proc)
        assert stored(cli.data).build.status == "waiting"
        os.write(master, b"y\n")
        assert proc.wait(timeout=60) == 0, out.read_text()
    finally:
        proc.kill()
        os.close(master)
    assert "[ship] shipped" in out.read_text()
    assert stored(cli.data).approvals[0].decided_by.endswith("(terminal)")


def test_conveyor_approve_from_another_process_answers_a_waiting_run(cli, git_repo, tmp_path, docker_client):
    repo = git_repo({".conveyor.yml": PIPELINE})
    proc, master, out = _in_a_terminal(cli, repo, tmp_path)
    try:
        _wait_for(out, "approve? [y/N]", proc)
        build_id = stored(cli.data).build.id
        answer = cli("approve", f"id:{build_id}", "--reject", "--comment", "not on a Friday")
        assert answer.returncode == 0, answer.stderr
        assert "stage approve rejected by" in answer.stdout
        assert proc.wait(timeout=60) == 1, out.read_text()
    finally:
        proc.kill()
        os.close(master)
    text = out.read_text()
    assert "rejected by" in text and ": not on a Friday" in text and "[undo] rolled back" in text
    detail = stored(cli.data)
    stages = {s.name: (s.status, s.reason) for s in detail.stages}
    assert stages["approve"][0] == "failure" and stages["approve"][1].endswith(": not on a Friday")
    assert stages["ship"][0] == "skipped" and stages["undo"][0] == "success"
    # The build no longer waits: a second answer is refused with the reason, and nothing changes.
    again = cli("approve", f"id:{build_id}")
    assert again.returncode == 1 and "is failure, not waiting for an approval" in again.stderr
    assert stored(cli.data).approvals[0].decision == "rejected"
    missing = cli("approve", "id:999")
    assert missing.returncode == 1 and "there is no build with id 999" in missing.stderr
