"""`conveyor backup` of a real `conveyor serve` while webhooks pour in and builds write their logs,
`conveyor restore` into a new data directory, and a server started on it that lists the builds."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
import time
import urllib.request

import pytest

from tests.server import payloads as p
from tests.server.test_crash import SECRET, ServerProcess, free_port, push_body

pytestmark = pytest.mark.docker

CHATTY_PIPELINE = """\
name: chatty
image: conveyor-test/busybox:1
stages:
  - name: talk
    steps:
      - i=0; while [ $i -lt 2000 ]; do echo "line $i of a busy build"; i=$((i+1)); done
"""


def conveyor(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "runner", *args], capture_output=True, text=True, timeout=120)


def snapshot_facts(path) -> dict:
    conn = sqlite3.connect(path)
    try:
        return {
            "integrity": conn.execute("PRAGMA integrity_check").fetchone()[0],
            "dangling": conn.execute("PRAGMA foreign_key_check").fetchall(),
            "builds": {r[0]: r[1] for r in conn.execute("SELECT id, status FROM builds")},
            "deliveries": conn.execute("SELECT count(*) FROM deliveries").fetchone()[0],
            # A delivery turned into a build and its build are written in one transaction.
            "orphans": conn.execute("SELECT count(*) FROM deliveries WHERE state = 'queued' AND build_id NOT IN "
                                    "(SELECT id FROM builds)").fetchone()[0],
            "log_lines": conn.execute("SELECT coalesce(sum(lines), 0) FROM log_chunks").fetchone()[0],
        }
    finally:
        conn.close()


def test_backup_while_busy_then_restore_into_a_new_data_dir_and_serve_it(tmp_path, instance, git_repo,
                                                                           docker_client):
    repo = git_repo({".conveyor.yml": CHATTY_PIPELINE})
    data = tmp_path / "data"
    config = {"port": free_port(), "data_dir": str(data), "instance": instance, "concurrency": 2,
              "repos": [{"name": "acme/web", "provider": "github", "path": str(repo), "secret": SECRET,
                         "cancel_superseded": False}]}
    server = ServerProcess(config, tmp_path, "busy").start()
    restored_server = None
    try:
        body = push_body(repo)
        stop = threading.Event()
        answers: list[int] = []

        def pour() -> None:  # webhooks keep arriving during the backup
            while not stop.is_set() and len(answers) < 200:
                answers.append(server.post("/hooks/github", body, p.github_headers(body, SECRET)))
                time.sleep(0.02)

        sender = threading.Thread(target=pour)
        sender.start()
        deadline = time.monotonic() + 90
        while not any(b["status"] == "success" for b in server.get("/api/builds?limit=500")["builds"]):
            assert time.monotonic() < deadline, "no build finished"
            time.sleep(0.1)  # then back up while the next builds write their logs
        backup_file = tmp_path / "backups" / "conveyor.db"
        backup_file.parent.mkdir()
        result = conveyor("backup", str(backup_file), "--data-dir", str(data))
        stop.set()
        sender.join()
        assert result.returncode == 0, result.stderr
        assert set(answers) == {202}
        facts = snapshot_facts(backup_file)
        assert facts["integrity"] == "ok" and facts["dangling"] == [] and facts["orphans"] == 0
        assert "success" in facts["builds"].values() and facts["log_lines"] >= 2000
        assert facts["deliveries"] >= len(facts["builds"])
        assert f"{len(facts['builds'])} builds" in result.stdout

        # Never over a store in use, force or not.
        for extra in ((), ("--force",)):
            refused = conveyor("restore", str(backup_file), "--data-dir", str(data), *extra)
            assert refused.returncode == 1 and "open in another process" in refused.stderr, refused.stderr

        target = tmp_path / "restored"
        restored = conveyor("restore", str(backup_file), "--data-dir", str(target))
        assert restored.returncode == 0, restored.stderr
        again = conveyor("restore", str(backup_file), "--data-dir", str(target))
        assert again.returncode == 1 and "not empty" in again.stderr and "--force" in again.stderr
        server.stop()  # its running builds end as cancelled; the restored copy knows nothing of that

        restored_config = {**config, "port": free_port(), "data_dir": str(target)}
        restored_server = ServerProcess(restored_config, tmp_path, "restored").start("--paused")
        listed = {b["id"]: b["status"] for b in restored_server.get("/api/builds?limit=500")["builds"]}
        assert set(listed) == set(facts["builds"])
        # Builds the backup caught running belong to a process that is gone: interrupted at start-up.
        assert "running" not in listed.values()
        assert all(listed[i] == s for i, s in facts["builds"].items() if s not in ("running", "queued"))
        done = min(i for i, s in listed.items() if s == "success")
        with urllib.request.urlopen(f"http://127.0.0.1:{restored_server.port}/api/builds/{done}/log") as answer:
            assert "line 1999 of a busy build" in answer.read().decode()
    finally:
        server.stop()
        if restored_server is not None:
            restored_server.stop()
