"""Backup and restore of a data directory at the store level: what is refused and why, the files'
tar, and the lock that keeps a restore and an open store apart. (Under a busy server:
tests/cli/test_backup_cmds.py.)"""

from __future__ import annotations

import sqlite3

import pytest

from runner.build import BuildRequest, create_build
from runner.errors import StoreError
from runner.store.backup import backup, files_archive, restore
from runner.store.db import Store
from runner.store.lock import StoreLock


def store_with_builds(data_dir, repo: str, count: int) -> None:
    with Store(data_dir) as store:
        for _ in range(count):
            create_build(store, BuildRequest(repo=repo, event="push", branch="main", sha="a" * 40), "test")


def build_repos(data_dir) -> list[str]:
    with Store(data_dir) as store:
        return [r[0] for r in store.query("SELECT repo FROM builds ORDER BY id")]


def test_backup_and_restore_with_the_files_beside_the_store(tmp_path):
    data = tmp_path / "data"
    store_with_builds(data, "web", 3)
    (data / "badges").mkdir()
    (data / "badges" / "web.svg").write_text("<svg/>")
    (data / "artifacts" / "web" / "1").mkdir(parents=True)
    (data / "artifacts" / "web" / "1" / "report.txt").write_text("all good")
    (data / "targets.yml").write_text("targets: {}\n")
    (data / "mirrors").mkdir()  # fetched again after a restore: not kept
    info = backup(data, tmp_path / "b.db", with_files=True)
    assert (info.builds, info.files) == (3, files_archive(tmp_path / "b.db"))
    assert not list(tmp_path.glob(".*partial"))
    restored = restore(tmp_path / "b.db", tmp_path / "new")
    assert restored.builds == 3 and build_repos(tmp_path / "new") == ["web"] * 3
    assert (tmp_path / "new" / "artifacts" / "web" / "1" / "report.txt").read_text() == "all good"
    assert (tmp_path / "new" / "badges" / "web.svg").is_file() and (tmp_path / "new" / "targets.yml").is_file()
    assert not (tmp_path / "new" / "mirrors").exists()
    # The same FILE again without the files: the old tar is not left to be restored with the new copy.
    backup(data, tmp_path / "b.db")
    assert not files_archive(tmp_path / "b.db").exists()


def test_restore_force_replaces_a_store_and_drops_its_old_wal(tmp_path):
    store_with_builds(tmp_path / "a", "from-backup", 2)
    backup(tmp_path / "a", tmp_path / "a.db")
    store_with_builds(tmp_path / "b", "old", 5)
    (tmp_path / "b" / "conveyor.db-wal").write_bytes(b"junk from the old store")
    with pytest.raises(StoreError, match="not empty.*--force"):
        restore(tmp_path / "a.db", tmp_path / "b")
    assert build_repos(tmp_path / "b") == ["old"] * 5  # refused: nothing touched
    restore(tmp_path / "a.db", tmp_path / "b", force=True)
    assert build_repos(tmp_path / "b") == ["from-backup"] * 2


def test_restore_refuses_a_store_that_is_open(tmp_path):
    store_with_builds(tmp_path / "a", "web", 1)
    backup(tmp_path / "a", tmp_path / "a.db")
    with Store(tmp_path / "live"):
        with pytest.raises(StoreError, match="open in another process"):
            restore(tmp_path / "a.db", tmp_path / "live", force=True)


def test_a_store_cannot_open_while_a_restore_holds_the_directory(tmp_path):
    (tmp_path / "d").mkdir()
    with StoreLock(tmp_path / "d", exclusive=True):
        with pytest.raises(StoreError, match="restore .* in progress"):
            Store(tmp_path / "d")
    Store(tmp_path / "d").close()  # and once it is over, it opens


def test_what_is_not_a_backup_is_refused_before_anything_is_touched(tmp_path):
    (tmp_path / "junk.db").write_text("this is not sqlite")
    with pytest.raises(StoreError, match="not a Conveyor backup"):
        restore(tmp_path / "junk.db", tmp_path / "new")
    other = tmp_path / "other.db"
    sqlite3.connect(other).execute("CREATE TABLE t (x)").connection.commit()
    with pytest.raises(StoreError, match="not a Conveyor backup"):
        restore(other, tmp_path / "new")
    newer = tmp_path / "newer.db"
    store_with_builds(tmp_path / "n", "web", 1)
    backup(tmp_path / "n", newer)
    conn = sqlite3.connect(newer)
    conn.execute("PRAGMA user_version = 999")
    conn.close()
    with pytest.raises(StoreError, match="newer Conveyor"):
        restore(newer, tmp_path / "new")
    assert not (tmp_path / "new" / "conveyor.db").exists()


def test_backup_of_a_directory_without_a_store_says_so(tmp_path):
    with pytest.raises(StoreError, match="no store in"):
        backup(tmp_path, tmp_path / "b.db")
