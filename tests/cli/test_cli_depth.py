"""Pipeline depth end to end: `conveyor run` on real git repositories and the real engine."""

from __future__ import annotations

import json
import subprocess

from click.testing import CliRunner

from runner.cli import cli
from runner.store import builds as q
from runner.store.db import Store

DEPTH = """
image: conveyor-test/busybox:1
stages:
  - name: first
    jobs:
      - name: a
        steps: ["echo a > a.txt"]
  - name: middle
    jobs:
      - name: b
        needs: [a]
        steps: ["test -f a.txt", "echo b > b.txt"]
      - name: c
        needs: [a]
        steps: ["test -f a.txt", "echo c > c.txt"]
      - name: unit
        needs: []
        matrix:
          py: ["1", "2"]
          db: [x, y]
          exclude: [{py: "1", db: y}]
          include: [{py: "3", db: x}]
        steps: ["echo $py-$db > combo-$py-$db.txt"]
      - name: flaky
        needs: []
        allow_failure: {exit_codes: [3]}
        steps: ["exit 3"]
  - name: last
    jobs:
      - name: d
        needs: [b, c]
        steps: ["test -f b.txt && test -f c.txt"]
      - name: report
        needs: [unit]
        steps: ["ls combo-*.txt | sort"]
"""


def _git(repo, *args):
    subprocess.run(["git", "-C", str(repo), "-c", "user.name=T", "-c", "user.email=t@example.invalid", *args],
                   check=True, capture_output=True)


def _invoke(data, instance, *args):
    return CliRunner().invoke(cli, [*args, "--data-dir", str(data)], env={"CONVEYOR_INSTANCE": instance},
                              catch_exceptions=False)


def _last(data):
    with Store(data) as store:
        build = q.find_build(store.read(), "last")
        return q.get_build(store.read(), build.id), q.get_detail(store.read(), build.id)


def test_diamond_matrix_and_allowed_failure(docker_client, git_repo, tmp_path, instance):
    repo = git_repo(files={".conveyor.yml": DEPTH})
    data = tmp_path / "data"
    result = _invoke(data, instance, "run", str(repo))
    assert result.exit_code == 0, result.output
    assert "success with warnings" in result.stderr
    assert "warning: job 'flaky' failed (allowed): step 'exit 3': exit code 3" in result.stderr
    build, detail = _last(data)
    jobs = {j.name: j for j in detail.jobs}
    assert build.status == "success" and build.warnings == ["job 'flaky' failed (allowed): step 'exit 3': exit code 3"]
    assert (jobs["flaky"].status, jobs["flaky"].allowed) == ("failure", True)
    combos = sorted(n for n in jobs if n.startswith("unit ["))
    assert combos == ["unit [py=1, db=x]", "unit [py=2, db=x]", "unit [py=2, db=y]", "unit [py=3, db=x]"]
    assert all(jobs[n].status == "success" for n in [*combos, "a", "b", "c", "d", "report"])
    assert jobs["b"].started >= jobs["a"].finished and jobs["c"].started >= jobs["a"].finished
    assert jobs["d"].started >= max(jobs["b"].finished, jobs["c"].finished)
    log = _invoke(data, instance, "logs", build.label, "--job", "report")
    assert log.exit_code == 0, log.output
    log = log.stdout
    assert log.split() == ["combo-1-x.txt", "combo-2-x.txt", "combo-2-y.txt", "combo-3-x.txt"]
    shown = _invoke(data, instance, "show", build.label).stdout
    assert "job flaky: failure (allowed)" in shown and "    needs: b, c" in shown
    assert "success with warnings" in shown
    listed = _invoke(data, instance, "builds").stdout.splitlines()
    assert listed[0].split()[2] == "STATUS" and " success (1 warning) " in listed[1]


CHANGES = """
image: conveyor-test/busybox:1
stages:
  - name: test
    jobs:
      - name: backend
        when: {changes: ["src/**"]}
        steps: ["echo backend ran"]
      - name: always
        steps: ["echo always ran"]
"""


def test_when_changes_follows_what_the_push_touched(docker_client, git_repo, tmp_path, instance):
    repo = git_repo(files={".conveyor.yml": CHANGES, "src/app.py": "v1\n", "docs/guide.md": "v1\n"})
    data = tmp_path / "data"
    (repo / "docs/guide.md").write_text("v2\n")
    _git(repo, "commit", "-qam", "docs only")
    result = _invoke(data, instance, "run", str(repo), "--commit", "--changes-from", "HEAD~1")
    assert result.exit_code == 0, result.output
    build, detail = _last(data)
    jobs = {j.name: j for j in detail.jobs}
    assert jobs["backend"].status == "skipped"
    assert jobs["backend"].reason == ("no changed file matches when.changes (src/**); HEAD against HEAD~1 "
                                      "changed 1 file(s)")
    assert jobs["always"].status == "success" and build.before == "HEAD~1"

    (repo / "src/app.py").write_text("v2\n")
    _git(repo, "commit", "-qam", "touch the code")
    result = _invoke(data, instance, "run", str(repo), "--commit", "--changes-from", "HEAD~1")
    assert result.exit_code == 0, result.output
    build, detail = _last(data)
    assert {j.name: j.status for j in detail.jobs}["backend"] == "success"
    plan = json.loads(build.plan)
    backend = next(j for s in plan["stages"] for j in s["jobs"] if j["name"] == "backend")
    assert backend["decision"] == "when.changes matched src/app.py (HEAD against HEAD~1)"

    # Without --changes-from, the working tree against HEAD: clean, then an uncommitted edit.
    _invoke(data, instance, "run", str(repo))
    assert {j.name: j.status for j in _last(data)[1].jobs}["backend"] == "skipped"
    (repo / "src/new.py").write_text("untracked\n")
    _invoke(data, instance, "run", str(repo))
    assert {j.name: j.status for j in _last(data)[1].jobs}["backend"] == "success"
