"""`conveyor run`, `builds`, `show`, `logs` against real git repositories and the real engine."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from runner.cli import cli
from runner.store import builds as q
from runner.store.db import Store


def _leftovers(client, instance: str) -> list[str]:
    label = {"label": f"io.conveyor.instance={instance}"}
    found = [c.name for c in client.containers.list(all=True, filters=label)]
    found += [v.name for v in client.volumes.list(filters=label)]
    found += [n.name for n in client.networks.list(filters=label)]
    return found


@pytest.fixture
def conveyor(tmp_path, instance):
    """Invoke the CLI in-process with this test's instance and data dir; returns the Result."""
    runner = CliRunner()
    data = tmp_path / "data"

    def invoke(*args: str, env: dict | None = None):
        return runner.invoke(cli, [*args, "--data-dir", str(data)],
                             env={"CONVEYOR_INSTANCE": instance, **(env or {})}, catch_exceptions=False)

    invoke.data = data
    return invoke


def _build(data, ref="last"):
    with Store(data) as store:
        build = q.find_build(store.read(), ref)
        return build, q.get_detail(store.read(), build.id)


def test_hello_runs_live_and_is_kept_in_history(docker_client, git_repo, conveyor, instance, monkeypatch):
    repo = git_repo(sample="hello")
    result = conveyor("run", str(repo))
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "[greet] > step 1:" in out and "[read] hello, world" in out
    assert "[read] + step 2: grep -q world greeting.txt  success" in out
    assert "build " in result.stderr and " success in " in result.stderr
    assert _leftovers(docker_client, instance) == []

    build, detail = _build(conveyor.data)
    assert (build.status, build.number, build.branch, build.trigger) == ("success", 1, "main", "cli")
    assert len(build.sha) == 40 and build.rendered and json.loads(build.plan)["name"] == "hello"
    stages = {s.name: s.status for s in detail.stages}
    assert stages["greet"] == stages["check"] == stages["post:always"] == "success"
    assert stages["release"] == "skipped"  # `when: {tag: v*}` on a branch build
    assert all(j.status == "success" and j.steps for j in detail.jobs if j.stage in ("greet", "check"))

    monkeypatch.chdir(repo)  # inside the repository, a plain number means this repo's build
    table = conveyor("builds").stdout
    assert f"{repo.name}#1" in table and "success" in table and build.short_sha in table
    shown = conveyor("show", "1").stdout
    assert "stage check: success" in shown and "job count: success" in shown
    assert "step 2 grep -q world greeting.txt: success" in shown
    assert conveyor("logs", "1", "--job", "read").stdout == "hello, world\n"
    assert "[count] 13 greeting.txt" in conveyor("logs", f"{repo.name}#1").stdout
    missing = conveyor("logs", "1", "--job", "nope")
    assert missing.exit_code == 1 and "no job 'nope'" in missing.stderr and "read" in missing.stderr


def test_python_app_passes_and_its_failing_variant_fails(docker_client, git_repo, conveyor, instance):
    good = conveyor("run", str(git_repo(sample="python-app")))
    assert good.exit_code == 0, good.output
    assert "test_mean (tests.test_calc.CalcTest" in good.stdout and "OK" in good.stdout

    bad = conveyor("run", str(git_repo(sample="python-app-failing")))
    assert bad.exit_code == 1, bad.output
    assert "[unit] x step 2: python3 -m unittest discover -v -s tests -t .  failure" in bad.stdout
    build, detail = _build(conveyor.data)
    assert build.status == "failure" and build.number == 1 and build.repo.startswith("repo")
    unit = next(j for j in detail.jobs if j.name == "unit")
    assert unit.status == "failure" and unit.steps[-1].exit_code == 1
    assert [s.status for s in detail.stages if s.name == "post:failure"] == ["success"]
    logs = conveyor("logs", f"id:{build.id}").stdout
    assert "FAIL: test_mean" in logs and "the tests failed for" in logs
    assert _leftovers(docker_client, instance) == []


def test_working_tree_by_default_exactly_head_with_commit(git_repo, conveyor):
    repo = git_repo(files={
        ".conveyor.yml": "image: conveyor-test/busybox:1\n"
                         "stages:\n  - name: s\n    steps: ['cat note.txt', 'echo branch=$CI_COMMIT_BRANCH']\n",
        "note.txt": "committed\n",
    })
    (repo / "note.txt").write_text("edited, not committed\n")
    tree = conveyor("run", str(repo), "--backend", "local")
    assert tree.exit_code == 0, tree.output
    assert "[s] edited, not committed" in tree.stdout and "[s] branch=main" in tree.stdout
    head = conveyor("run", str(repo), "--backend", "local", "--commit", "--branch", "release")
    assert head.exit_code == 0, head.output
    assert "[s] committed" in head.stdout and "[s] branch=release" in head.stdout
    build, _ = _build(conveyor.data)
    assert (build.number, build.branch) == (2, "release")


def test_params_events_and_secrets(git_repo, conveyor):
    repo = git_repo(files={".conveyor.yml": (
        "image: conveyor-test/busybox:1\nparams:\n  target: {default: staging}\n"
        "stages:\n  - name: s\n    steps:\n"
        "      - echo 'target={{ params.target }} event={{ event.kind }}'\n"
        "      - echo \"token is $API_TOKEN\"\n"
    )})
    missing = conveyor("run", str(repo), "--backend", "local", "--secret", "API_TOKEN")
    assert missing.exit_code == 2 and "export API_TOKEN=" in missing.stderr
    bad_param = conveyor("run", str(repo), "--backend", "local", "--param", "target")
    assert bad_param.exit_code == 2 and "key=value" in bad_param.stderr

    result = conveyor("run", str(repo), "--backend", "local", "--param", "target=production", "--event", "manual",
                      "--secret", "API_TOKEN", env={"API_TOKEN": "s3cr3t-value"})
    assert result.exit_code == 0, result.output
    assert "target=production event=manual" in result.stdout
    assert "s3cr3t-value" not in result.output and "token is ********" in result.stdout
    stored = conveyor("logs", f"{repo.name}#1").stdout
    assert "token is ********" in stored and "s3cr3t-value" not in stored
    build, _ = _build(conveyor.data)
    assert build.params == {"target": "production"} and build.event == "manual"
    assert "s3cr3t-value" not in (build.rendered or "") + (build.plan or "")


def test_config_error_exits_2_with_compiler_style_diagnostics(docker_client, git_repo, conveyor, instance):
    repo = git_repo(files={".conveyor.yml": "stages:\n  - name: s\n    stpes: ['true']\n"})
    result = conveyor("run", str(repo))
    assert result.exit_code == 2
    assert ".conveyor.yml:3:5: error:" in result.stderr and "stpes" in result.stderr
    build, detail = _build(conveyor.data)
    assert build.status == "config_error" and build.reason.startswith(".conveyor.yml:")
    assert any(d["line"] == 3 and "stpes" in d["message"] for d in build.diagnostics)
    assert detail.stages == () and _leftovers(docker_client, instance) == []
    assert "error:" in conveyor("show", f"id:{build.id}").stdout


def test_refuses_a_data_dir_inside_the_repository(git_repo, tmp_path, instance):
    repo = git_repo(files={".conveyor.yml": "stages:\n  - name: s\n    steps: ['true']\n"})
    result = CliRunner().invoke(cli, ["run", str(repo), "--data-dir", str(repo / ".conveyor" / "data")],
                                env={"CONVEYOR_INSTANCE": instance})
    assert result.exit_code == 2 and ".conveyor/ folder" in result.stderr and "--data-dir" in result.stderr
    assert not (repo / ".conveyor" / "data").exists()


def test_history_commands_say_what_to_do(conveyor, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert "no builds yet" in conveyor("builds").stdout
    empty = conveyor("show")
    assert empty.exit_code == 1 and "no builds" in empty.stderr
    wrong = conveyor("logs", "yesterday")
    assert wrong.exit_code == 1 and "repo#number" in wrong.stderr
    assert "repo#number (web#42), id:ID, or" in conveyor("show", "--help").stdout
    typo = conveyor("builds", "--status", "runing")  # not an empty list that says "no builds yet"
    assert typo.exit_code == 2 and "'runing' is not one of" in typo.stderr
    assert "no running builds" in conveyor("builds", "--status", "running").stdout


def test_retry_timeout_post_and_when_status_end_to_end(docker_client, git_repo, conveyor, instance):
    repo = git_repo(files={".conveyor.yml": (
        "image: conveyor-test/busybox:1\n"
        "stages:\n"
        "  - name: flaky\n"
        "    steps:\n"
        "      - name: second time lucky\n"
        "        run: if [ -e tried ]; then echo fine; else touch tried; exit 3; fi\n"
        "        retry: 1\n"
        "  - name: slow\n"
        "    steps:\n"
        "      - name: too slow\n"
        "        run: sleep 30\n"
        "        timeout: 1s\n"
        "  - name: never\n"
        "    steps: ['echo should not run']\n"
        "  - name: cleanup\n"
        "    when: {status: failure}\n"
        "    steps: ['echo cleaning up']\n"
        "post:\n"
        "  failure: ['echo post failure ran']\n"
        "  success: ['echo post success ran']\n"
    )})
    result = conveyor("run", str(repo))
    assert result.exit_code == 1, result.output
    build, detail = _build(conveyor.data)
    stages = {s.name: s.status for s in detail.stages}
    assert stages["flaky"] == "success" and stages["never"] == "skipped"
    assert stages["slow"] == "timed_out" and stages["cleanup"] == "success"
    assert stages["post:failure"] == "success" and stages["post:success"] == "skipped"
    flaky = detail.jobs_of("flaky")[0]
    assert [(s.attempt, s.status, s.exit_code) for s in flaky.steps] == [(1, "failure", 3), (2, "success", 0)]
    slow = detail.jobs_of("slow")[0].steps[0]
    assert slow.status == "timed_out" and slow.duration < 10
    logs = conveyor("logs", f"id:{build.id}").stdout
    assert "cleaning up" in logs and "post failure ran" in logs
    assert "should not run" not in logs and "post success ran" not in logs
    assert "[attempt 2]" in conveyor("show", f"id:{build.id}").stdout
    assert _leftovers(docker_client, instance) == []


def test_split_secret_and_log_cap_reach_the_store_masked_and_marked(docker_client, git_repo, conveyor, instance):
    repo = git_repo(files={".conveyor.yml": (
        "image: conveyor-test/busybox:1\n"
        "stages:\n  - name: s\n    steps:\n"
        "      - printf 'key=hunter'; sleep 0.3; printf '2-very-secret\\n'\n"
        "      - yes 0123456789abcdefghijklmnopqrstuvwxyz | head -n 150000\n"
        "      - echo after the cap\n"
    )})
    result = conveyor("run", str(repo), "-q", "--secret", "TOKEN", env={"TOKEN": "hunter2-very-secret"})
    assert result.exit_code == 0, result.output
    build, detail = _build(conveyor.data)
    steps = detail.jobs[0].steps
    assert [s.status for s in steps] == ["success"] * 3  # the cap never changes a status
    with Store(conveyor.data) as store:
        first = "".join(c.text for c in q.build_logs(store.read(), build.id) if c.step == 0)
        capped = [c for c in q.build_logs(store.read(), build.id) if c.step == 1]
        last = [c.text for c in q.build_logs(store.read(), build.id) if c.step == 2]
    assert first == "key=********"
    text = "\n".join(c.text for c in capped)
    assert len(text) <= 4 * 1024 * 1024 + 1024 and "output capped at 4.0 MiB" in text.splitlines()[-1]
    assert last == ["after the cap"]


def test_several_pipelines_need_file_and_a_plain_directory_works(tmp_path, conveyor):
    plain = tmp_path / "plain"
    (plain / ".conveyor").mkdir(parents=True)
    for name in ("a", "b"):
        (plain / ".conveyor" / f"{name}.yml").write_text(
            f"image: conveyor-test/busybox:1\nstages:\n  - name: s\n    steps: ['echo pipeline {name}']\n")
    several = conveyor("run", str(plain), "--backend", "local")
    assert several.exit_code == 2 and "2 pipelines" in several.stderr and "--file" in several.stderr
    chosen = conveyor("run", str(plain), "--backend", "local", "--file", ".conveyor/b.yml")
    assert chosen.exit_code == 0 and "[s] pipeline b" in chosen.stdout  # no git: still runs
    build, _ = _build(conveyor.data)
    assert build.pipeline == ".conveyor/b.yml" and build.sha is None and build.repo == "plain"
    no_commit = conveyor("run", str(plain), "--backend", "local", "--commit", "--file", ".conveyor/a.yml")
    assert no_commit.exit_code == 2 and "drop --commit" in no_commit.stderr


def test_on_filters_decide_like_the_server(git_repo, conveyor):
    """`on:` is honoured by `conveyor run` too: a local run equals a server run."""
    repo = git_repo(files={".conveyor.yml": (
        "image: conveyor-test/busybox:1\non:\n  push: {branches: [main]}\n"
        "stages:\n  - name: s\n    steps: ['echo ran']\n"
    )})
    feature = conveyor("run", str(repo), "--backend", "local", "--branch", "feature/x")
    assert feature.exit_code == 0, feature.output
    assert "[s] ran" not in feature.stdout
    assert "not run: push of 'feature/x' does not match on.push (main)" in feature.stderr
    build, detail = _build(conveyor.data)
    assert build.status == "skipped" and "does not match on.push" in build.reason
    main = conveyor("run", str(repo), "--backend", "local")
    assert main.exit_code == 0 and "[s] ran" in main.stdout
    manual = conveyor("run", str(repo), "--backend", "local", "--event", "manual")
    assert manual.exit_code == 0 and "'on:' does not list manual events" in manual.stderr


def test_a_plain_run_loads_no_docker_py_no_deploy_config_and_no_metadata_scan(git_repo, instance, tmp_path,
                                                                                docker_client):
    """What a `conveyor run` of plain steps costs is its build: docker-py and requests (the services and
    registry side), the deploy configuration (there is none) and the scan of installed distributions
    for plugins (none declares one) stay unloaded, and the build still ran and cleaned up after itself."""
    import os
    import subprocess
    import sys

    repo = git_repo({".conveyor.yml": "image: conveyor-test/busybox:1\nstages:\n  - name: t\n"
                                      "    steps: [\"echo ran-$((6 * 7))\"]\n"})
    code = ("import sys\nfrom runner.cli import cli\n"
            "try:\n    cli(['run', sys.argv[1], '--data-dir', sys.argv[2]])\nexcept SystemExit as exc:\n"
            "    code = exc.code\nprint('MODULES', code, ' '.join(sorted(sys.modules)))\n")
    env = {**os.environ, "CONVEYOR_INSTANCE": instance}
    proc = subprocess.run([sys.executable, "-c", code, str(repo), str(tmp_path / "data")], capture_output=True,
                          text=True, env=env, timeout=300)
    assert "ran-42" in proc.stdout, proc.stderr
    exit_code, modules = proc.stdout.rsplit("MODULES ", 1)[1].split(" ", 1)
    loaded = set(modules.split())
    assert exit_code in ("0", "None"), proc.stderr
    assert not {m for m in loaded if m.split(".")[0] in ("docker", "requests", "urllib3")}
    assert "runner.deploy.config" not in loaded and "importlib.metadata" not in loaded
    assert _leftovers(docker_client, instance) == []
