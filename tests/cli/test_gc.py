"""`conveyor gc` as a user runs it (a subprocess of `python -m runner`) on a real store."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import yaml

from runner.store.db import Store
from tests.retention_helpers import add_build, add_deploy, rows_of, surviving

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def gc(*args: str, cwd=None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONVEYOR_")}
    return subprocess.run([sys.executable, "-m", "runner", "gc", *args], capture_output=True, text=True,
                          cwd=cwd or ROOT, env=env, timeout=120)


def make_history(data_dir):
    now = time.time()
    with Store(data_dir) as store:
        old = [add_build(store, "web", "main", "failure", 200 - n, now)[0] for n in range(3)]
        recent = [add_build(store, "web", "main", "failure", 1, now)[0] for _ in range(20)]
        _, live_uid = add_build(store, "web", "feature", "failure", 300, now)
        for _ in range(20):
            add_build(store, "web", "feature", "failure", 200, now)
        add_deploy(store, "web-svc", live_uid)
        return old, recent, set(surviving(store)), rows_of(store, surviving(store))


def test_dry_run_prints_what_would_go_and_removes_nothing(tmp_path):
    data = tmp_path / "data"
    old, _recent, everything, rows = make_history(data)
    done = gc("--dry-run", "--data-dir", str(data))
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert [line.split()[2] for line in lines[:-1]] == ["web#1", "web#2", "web#3"]
    assert all(line.startswith("would remove ") for line in lines[:-1])
    assert lines[-1].startswith("would remove 3 build(s): would free ") and "KiB" in lines[-1]
    with Store(data) as store:
        assert surviving(store) == everything and rows_of(store, everything) == rows
        assert len(list((data / "artifacts").iterdir())) == len(everything)


def test_gc_removes_the_old_builds_and_says_how_much_it_freed(tmp_path):
    data = tmp_path / "data"
    old, _recent, everything, _ = make_history(data)
    done = gc("--data-dir", str(data))
    assert done.returncode == 0, done.stderr
    assert "removed web#1 (main, failure, ended " in done.stdout
    assert "removed 3 build(s): freed " in done.stdout and "of artifact and report files" in done.stdout
    with Store(data) as store:
        # The feature branch's 21 builds are all old, and its oldest is live: nothing goes there.
        assert surviving(store) == everything - set(old)
        assert rows_of(store, old)["log_chunks"] == 0
    again = gc("--data-dir", str(data))
    assert again.returncode == 0 and again.stdout.startswith("nothing to remove in ")


def test_gc_reads_the_servers_retention_and_flags_win(tmp_path):
    data = tmp_path / "data"
    old, recent, everything, _ = make_history(data)
    config = tmp_path / "conveyor.yml"
    config.write_text(yaml.safe_dump({"data_dir": str(data), "retention": {"days": 90},
                                      "repos": [{"name": "web", "path": str(tmp_path), "retention": {"keep_last": 30}}]}))
    done = gc("--dry-run", "--config", str(config))
    assert done.returncode == 0 and done.stdout.startswith("nothing to remove"), done.stdout
    done = gc("--dry-run", "--config", str(config), "--keep-last", "22")
    assert "would remove 1 build(s)" in done.stdout and "web#1 " in done.stdout
    bad = gc("--config", str(config), "--days", "0")
    assert bad.returncode == 2 and "--days" in bad.stderr
    config.write_text(yaml.safe_dump({"data_dir": str(data), "retention": {"days": "soon"}}))
    bad = gc("--config", str(config))
    assert bad.returncode == 1 and "retention days: 'soon' is not a number of days" in bad.stderr
