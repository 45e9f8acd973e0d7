"""Builds whose process died become `interrupted`; live ones are left alone; sweeps are attempted."""

from __future__ import annotations

import os
import subprocess
import time

from runner.build import BuildRequest, create_build
from runner.settings import Settings
from runner.store import builds as q
from runner.store.db import Store
from runner.store.recovery import process_alive, recover_interrupted, this_host


def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def _running(store, pid, host, trigger="cli"):
    build_id = create_build(store, BuildRequest(repo="r", event="push", trigger=trigger), "i")
    store.write(lambda c: q.mark_running(c, build_id, pid=pid, host=host, started=time.time()))
    return build_id


def test_dead_or_foreign_builds_are_interrupted_and_swept(tmp_path):
    swept: list[str] = []
    with Store(tmp_path / "d") as store:
        dead = _running(store, _dead_pid(), this_host())
        foreign = _running(store, os.getpid(), "another-host")
        alive = _running(store, os.getpid(), this_host())
        queued_cli = create_build(store, BuildRequest(repo="r", event="push"), "i")
        store.write(lambda c: c.execute("UPDATE builds SET pid = ? WHERE id = ?", (_dead_pid(), queued_cli)))
        queued_server = create_build(store, BuildRequest(repo="r", event="push", trigger="webhook"), "i")
        store.write(lambda c: c.execute("UPDATE builds SET pid = ? WHERE id = ?", (_dead_pid(), queued_server)))
        # A step that was running when the process died.
        def rows(c):
            c.execute("INSERT INTO stages (build_id, position, name, kind, status) VALUES (?, 0, 's', 'jobs', 'running')",
                      (dead,))
            job = c.execute("INSERT INTO jobs (build_id, stage, name, status) VALUES (?, 's', 'j', 'running')",
                            (dead,)).lastrowid
            c.execute("INSERT INTO steps (job_id, position, name, status) VALUES (?, 0, 'sleep', 'running')", (job,))
        store.write(rows)

        marked = recover_interrupted(store, Settings(data_dir=tmp_path / "d"), sweeper=swept.append)
        assert {b.id for b in marked} == {dead, foreign, queued_cli}
        conn = store.read()
        statuses = {i: q.get_build(conn, i).status for i in (dead, foreign, alive, queued_cli, queued_server)}
        assert statuses == {dead: "interrupted", foreign: "interrupted", alive: "running",
                            queued_cli: "interrupted", queued_server: "queued"}
        assert "killed or crashed" in q.get_build(conn, dead).reason
        assert sorted(swept) == sorted(q.get_build(conn, i).uid for i in (dead, foreign, queued_cli))
        detail = q.get_detail(conn, dead)
        assert detail.jobs[0].steps[0].status == "interrupted" and detail.stages[0].status == "interrupted"
        # Idempotent: nothing left to do the second time.
        assert recover_interrupted(store, sweeper=swept.append) == []


def test_an_engine_that_is_down_does_not_stop_recovery(tmp_path):
    def broken(uid: str) -> None:
        raise ConnectionError("engine down")

    with Store(tmp_path / "d") as store:
        dead = _running(store, _dead_pid(), this_host())
        recover_interrupted(store, sweeper=broken)
        assert q.get_build(store.read(), dead).status == "interrupted"


def test_process_alive_knows_reused_and_zombie_pids():
    assert process_alive(os.getpid(), this_host())
    assert not process_alive(_dead_pid(), this_host())
    assert not process_alive(None, this_host())
    # A live process born after the build was created is not the build's process.
    proc = subprocess.Popen(["sleep", "5"])
    try:
        assert process_alive(proc.pid, this_host(), since=time.time())
        assert not process_alive(proc.pid, this_host(), since=time.time() - 3600)
    finally:
        proc.kill()
    os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT)  # dead, but left unreaped
    assert not process_alive(proc.pid, this_host())  # not yet reaped: a zombie
    proc.wait()


def test_a_server_that_started_after_the_build_was_queued_still_owns_it(tmp_path):
    # A webhook queued the build; the server restarted and runs it now. Its process is younger than
    # the build's row, yet it is no pid reuse: it claimed the build (started) after it began.
    server = subprocess.Popen(["sleep", "30"])
    try:
        time.sleep(0.05)
        with Store(tmp_path / "d") as store:
            build_id = create_build(store, BuildRequest(repo="r", event="push", trigger="webhook"), "i")
            store.write(lambda c: c.execute("UPDATE builds SET created = created - 3600 WHERE id = ?", (build_id,)))
            store.write(lambda c: q.mark_running(c, build_id, pid=server.pid, host=this_host(), started=time.time()))
            assert recover_interrupted(store, sweeper=lambda uid: None) == []
            assert q.get_build(store.read(), build_id).status == "running"
    finally:
        server.kill()
        server.wait()
