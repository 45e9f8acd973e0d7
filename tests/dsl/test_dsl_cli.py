"""conveyor lint / render / plan, and the git context of a working tree."""

from __future__ import annotations

import json
import subprocess
import sys

from click.testing import CliRunner

from runner.cli import cli
from runner.scm.worktree import context_from_worktree

GOOD = "image: conveyor-test/busybox:1\nstages:\n  - name: t\n    when: {branch: main}\n    steps: [\"echo {{ git.branch }}\"]\n"
WARN = "image: busybox\nstages:\n  - name: t\n    steps: [echo]\n"
BAD = "image: conveyor-test/busybox:1\nstages:\n  - name: t\n    stpes: [echo]\n"


def run(*args):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_lint_exit_codes_and_compiler_style_output(git_repo):
    good = git_repo({".conveyor.yml": GOOD})
    result = run("lint", str(good))
    assert result.exit_code == 0 and "1 file(s): 0 error(s), 0 warning(s)" in result.output
    warn = git_repo({".conveyor.yml": WARN})
    result = run("lint", str(warn))
    assert result.exit_code == 0
    assert ".conveyor.yml:1:8: warning: image 'busybox' has no tag" in result.output
    bad = git_repo({".conveyor.yml": BAD})
    result = run("lint", str(bad / ".conveyor.yml"))
    assert result.exit_code == 1
    assert ".conveyor.yml:4:5: error: unknown key 'stpes' in stage 't' (did you mean 'steps'?)" in result.output


def test_lint_a_dir_checks_every_pipeline_in_dot_conveyor(git_repo):
    repo = git_repo({".conveyor/a.yml": GOOD, ".conveyor/b.yml": BAD})
    result = run("lint", str(repo))
    assert result.exit_code == 1
    assert ".conveyor/b.yml:4:5: error: unknown key 'stpes'" in result.output
    assert "2 file(s): 1 error(s), 0 warning(s)" in result.output


def test_render_prints_numbered_lines(git_repo):
    repo = git_repo({".conveyor.yml": GOOD}, branch="trunk")
    result = run("render", str(repo / ".conveyor.yml"))
    assert result.exit_code == 0
    assert result.output.splitlines()[4] == '5 |     steps: ["echo trunk"]'


def test_plan_uses_head_and_flags_override(git_repo):
    repo = git_repo({".conveyor.yml": GOOD}, branch="main")
    sha = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    plan = json.loads(run("plan", str(repo / ".conveyor.yml")).stdout)
    assert plan["env"]["CI_COMMIT_SHA"] == sha and plan["env"]["CI_COMMIT_MESSAGE"] == "initial commit"
    assert plan["stages"][0]["skip_reason"] is None
    assert plan["stages"][0]["jobs"][0]["steps"][0]["run"] == "echo main"
    result = run("plan", str(repo / ".conveyor.yml"), "--branch", "dev", "--build-number", "5")
    plan = json.loads(result.stdout)
    assert plan["stages"][0]["skip_reason"] == "branch 'dev' does not match when.branch (main)"
    assert plan["env"]["CI_BUILD_NUMBER"] == "5"
    result = run("plan", str(repo), "--param", "novalue")
    assert result.exit_code == 2 and "is not key=value" in result.output
    result = run("plan", str(repo), "--branch", "a\nb")
    assert result.exit_code == 2 and "control character" in result.output


def test_plan_of_a_wrong_file_exits_1_with_diagnostics(git_repo):
    repo = git_repo({".conveyor.yml": BAD})
    result = run("plan", str(repo))
    assert result.exit_code == 1 and "error: unknown key 'stpes'" in result.output


def test_python_dash_m_runner_works(git_repo):
    repo = git_repo({".conveyor.yml": BAD})
    proc = subprocess.run([sys.executable, "-m", "runner", "lint", str(repo)], capture_output=True, text=True)
    assert proc.returncode == 1 and ".conveyor.yml:4:5: error: unknown key 'stpes'" in proc.stderr


def test_worktree_context(git_repo, tmp_path):
    repo = git_repo({"x": "1"}, branch="feature/y")
    subprocess.run(["git", "-C", str(repo), "remote", "add", "origin", "https://user:tok3n@git.example/shop.git"],
                   check=True)
    ctx = context_from_worktree(repo, build_number=3)
    assert (ctx.git.branch, ctx.event, ctx.repo_name, ctx.build_number) == ("feature/y", "push", repo.name, 3)
    assert len(ctx.git.sha) == 40 and ctx.git.short_sha == ctx.git.sha[:8]
    assert ctx.repo_url == "https://git.example/shop.git"  # credentials never reach CI_REPO_URL
    tagged = context_from_worktree(repo, tag="v1")
    assert (tagged.event, tagged.git.branch, tagged.git.ref) == ("tag", None, "refs/tags/v1")
    plain = tmp_path / "not-git"
    plain.mkdir()
    ctx = context_from_worktree(plain)
    assert (ctx.git.sha, ctx.repo_name) == (None, "not-git")


def test_lint_json_for_editors(git_repo):
    repo = git_repo({".conveyor.yml": BAD})
    result = CliRunner().invoke(cli, ["lint", "--json", str(repo)])
    assert result.exit_code == 1
    (d,) = json.loads(result.stdout)
    assert (d["file"], d["line"], d["col"], d["severity"], d["code"]) == (".conveyor.yml", 4, 5, "error", "unknown-key")


def test_relative_paths_work_from_any_directory(git_repo, monkeypatch):
    repo = git_repo({".conveyor.yml": GOOD, "sub/.conveyor.yml": BAD})
    monkeypatch.chdir(repo.parent)
    assert run("lint", repo.name).exit_code == 0
    assert run("lint", f"{repo.name}/.conveyor.yml").exit_code == 0
    monkeypatch.chdir(repo)
    assert run("lint").exit_code == 0
    result = run("lint", "sub")
    assert result.exit_code == 1 and ".conveyor.yml:4:5: error: unknown key 'stpes'" in result.output
    assert json.loads(run("plan").stdout)["name"] == repo.name


def test_lint_imports_neither_docker_nor_git_nor_the_server(git_repo):
    """`conveyor lint` costs what linting costs: the engine, git and HTTP libraries stay unloaded."""
    repo = git_repo({".conveyor.yml": "image: conveyor-test/busybox:1\nstages:\n  - name: t\n"
                                      "    steps: [\"echo {{ git.branch }}\"]\n"})
    code = ("import sys\nfrom runner.cli import cli\n"
            "try:\n    cli(['lint', sys.argv[1]])\nexcept SystemExit as exc:\n    code = exc.code\n"
            "print(code, ' '.join(sorted(sys.modules)))\n")
    proc = subprocess.run([sys.executable, "-c", code, str(repo)], capture_output=True, text=True, check=True)
    exit_code, modules = proc.stdout.split(" ", 1)
    loaded = set(modules.split())
    assert exit_code in ("0", "None") and "runner.dsl.compile" in loaded  # it did lint
    heavy = {m for m in loaded if m.split(".")[0] in ("docker", "git", "aiohttp", "requests", "pluggy")}
    assert not heavy and not any(m.startswith(("runner.store", "runner.backends", "runner.server")) for m in loaded)


def test_every_command_is_in_the_lazy_table():
    import importlib

    import click

    from runner.cli import command_modules

    table = command_modules()
    for module in set(table.values()):
        group = click.Group()
        importlib.import_module(module).register(group)
        assert {n: module for n in group.commands} == {n: m for n, m in table.items() if m == module}


def test_worktree_context_before_the_first_commit_and_when_detached(git_repo, tmp_path):
    unborn = tmp_path / "unborn"
    subprocess.run(["git", "init", "-q", "-b", "trunk", str(unborn)], check=True)
    ctx = context_from_worktree(unborn)
    assert (ctx.git.branch, ctx.git.sha, ctx.repo_name) == ("trunk", None, "unborn")
    repo = git_repo({"x": "1"})
    subprocess.run(["git", "-C", str(repo), "checkout", "-q", "--detach"], check=True)
    ctx = context_from_worktree(repo)
    assert ctx.git.branch is None and len(ctx.git.sha) == 40 and ctx.repo_name == repo.name
