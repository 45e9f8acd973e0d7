"""`conveyor run` of a pipeline file with services, end to end on the real engine: a stage's
service reached by name from each matrix combination (with ``${axis}`` in its command), a job's
own service that is never ready, and nothing left behind."""

from __future__ import annotations

from click.testing import CliRunner

from runner.cli import cli
from runner.store import builds as q
from runner.store.db import Store
from tests.conftest import BUSYBOX

PIPELINE = f"""
name: services
image: {BUSYBOX}
stages:
  - name: test
    services:
      web:
        image: {BUSYBOX}
        command: mkdir -p /w && echo "served ${{v}}" > /w/index.html && exec httpd -f -p 8080 -h /w
        ready: {{tcp: 8080, within: 30s}}
    jobs:
      - name: fetch
        matrix:
          v: ["a", "b"]
        # One file per combination: the jobs share the build's workspace and run at once.
        steps: ["wget -q -O- http://web:8080/ | tee got-$v.txt", "grep -q \\"served $v\\" got-$v.txt"]
  - name: more
    jobs:
      - name: stuck
        services:
          db:
            image: {BUSYBOX}
            command: echo "db booting"; exec sleep 300
            ready: {{tcp: 5432, within: 2s}}
        steps: ["echo never"]
"""


def test_conveyor_run_with_services(docker_client, git_repo, tmp_path, instance):
    repo = git_repo(files={".conveyor.yml": PIPELINE})
    data = tmp_path / "data"
    result = CliRunner().invoke(cli, ["run", str(repo), "--data-dir", str(data)],
                                env={"CONVEYOR_INSTANCE": instance}, catch_exceptions=False)
    assert result.exit_code == 1, result.output
    out = result.stdout
    assert "[fetch [v=a]] served a" in out and "[fetch [v=b]] served b" in out  # each its own service
    assert "[stuck] db booting" in out and "never" not in out
    with Store(data) as store:
        build = q.find_build(store.read(), "last")
        jobs = {j.name: j for j in q.get_detail(store.read(), build.id).jobs}
    assert jobs["fetch [v=a]"].status == jobs["fetch [v=b]"].status == "success"
    assert jobs["stuck"].status == "failure"
    assert "service 'db' was not ready within 2s" in jobs["stuck"].reason
    label = {"label": f"io.conveyor.instance={instance}"}
    assert docker_client.containers.list(all=True, filters=label) == []
    assert docker_client.networks.list(filters=label) == []


NO_WITHIN = f"""
name: no-within
image: {BUSYBOX}
stages:
  - name: test
    jobs:
      - name: unit
        services:
          db:
            image: {BUSYBOX}
            command: exec sleep 300
            ready: {{tcp: 5432}}
        steps: ["echo never"]
"""


def test_ready_without_within_is_refused_by_lint_and_run(docker_client, git_repo, tmp_path, instance):
    """docs/pipeline.md: a `ready` without `within` is an error (how long a job may wait is stated,
    not guessed); `conveyor run` refuses it as lint does, before anything starts."""
    repo = git_repo(files={".conveyor.yml": NO_WITHIN})
    said = "error: 'ready' in service 'db' in job 'unit' has no 'within': say how long the job waits"
    linted = CliRunner().invoke(cli, ["lint", str(repo / ".conveyor.yml")], catch_exceptions=False)
    assert linted.exit_code == 1 and f".conveyor.yml:12:20: {said}" in linted.output, linted.output
    data = tmp_path / "data"
    ran = CliRunner().invoke(cli, ["run", str(repo), "--data-dir", str(data)],
                             env={"CONVEYOR_INSTANCE": instance}, catch_exceptions=False)
    assert ran.exit_code != 0 and said in ran.output and "never" not in ran.output, ran.output
    with Store(data) as store:
        build = q.find_build(store.read(), "last")
    assert build.status == "config_error" and said in build.reason
    assert docker_client.containers.list(all=True, filters={"label": f"io.conveyor.instance={instance}"}) == []
