"""The files an event changed, for `when.changes`, from real git history: a pull request compares
its head with the merge base (what the target branch did since does not count), through the
checkout the server makes from its mirror; a push compares before..after, and a new branch or a
force-push falls back to the last successful build, else every file."""

from __future__ import annotations

import subprocess
from pathlib import Path

from runner.context import Context
from runner.dsl import load_pipeline
from runner.scm.changes import event_changes
from runner.scm.mirror import Mirror

GIT = ["git", "-c", "user.name=T", "-c", "user.email=t@example.invalid"]
PIPELINE = """\
image: conveyor-test/busybox:1
stages:
  - name: test
    jobs:
      - name: docs
        when: {changes: ["docs/**"]}
        steps: [echo docs]
      - name: code
        when: {changes: ["src/**"]}
        steps: [echo code]
"""


def git(repo: Path, *args: str) -> str:
    return subprocess.run([*GIT, "-C", str(repo), *args], check=True, capture_output=True, text=True).stdout.strip()


def commit(repo: Path, files: dict[str, str], message: str) -> str:
    for name, text in files.items():
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).write_text(text)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message)
    return git(repo, "rev-parse", "HEAD")


def history(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """main: base, then a src change after the branch; feature (from base): a docs change."""
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    shas = {"base": commit(repo, {".conveyor.yml": PIPELINE, "src/a.py": "1"}, "base")}
    git(repo, "checkout", "-q", "-b", "feature")
    shas["feature"] = commit(repo, {"docs/guide.md": "hi"}, "docs")
    git(repo, "checkout", "-q", "main")
    shas["main"] = commit(repo, {"src/a.py": "2"}, "main moves on")
    return repo, shas


def test_a_pull_request_counts_only_its_own_changes_through_the_servers_checkout(tmp_path):
    repo, shas = history(tmp_path)
    mirror = Mirror(tmp_path / "data", "acme/web", str(repo))
    mirror.fetch_sync(shas["feature"], "refs/heads/feature")
    checkout = mirror.checkout_sync(shas["feature"], tmp_path / "work")
    changes = event_changes(checkout, event="pull_request", sha=shas["feature"], target_branch="main")
    assert changes.files == ("docs/guide.md",)  # not main's src/a.py
    assert "merge base" in changes.basis and shas["base"][:8] in changes.basis

    ctx = Context.build(sha=shas["feature"], branch="feature", event="pull_request", repo_name="acme/web",
                        changes=changes)
    plan = load_pipeline(checkout, ctx).plan
    jobs = {j.name: j for j in plan.stages[0].jobs}
    assert jobs["docs"].skip_reason is None and "docs/guide.md" in (jobs["docs"].decision or "")
    assert jobs["code"].skip_reason and "src/**" in jobs["code"].skip_reason


def test_a_push_compares_before_and_after_and_falls_back_to_the_last_good_build(tmp_path):
    repo, shas = history(tmp_path)
    pushed = event_changes(repo, event="push", sha=shas["main"], before=shas["base"])
    assert pushed.files == ("src/a.py",)
    new_branch = event_changes(repo, event="push", sha=shas["feature"], before="0" * 40, last_good=shas["base"])
    assert new_branch.files == ("docs/guide.md",) and "last successful build" in new_branch.basis
    forced = event_changes(repo, event="push", sha=shas["main"], before="f" * 40, last_good=shas["base"])
    assert forced.files == ("src/a.py",)  # `before` is gone (a force-push): the last good build
    unknown = event_changes(repo, event="push", sha=shas["feature"], before="0" * 40)
    assert unknown.files is None  # nothing to compare with: every file counts
    assert event_changes(repo, event="cron", sha=shas["main"]).files is None
