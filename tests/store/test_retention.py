"""Retention on a real SQLite store with builds across repositories, branches and ages: exactly what
it promises is kept (the last N per branch, the last success per branch, the builds of live deploys,
young builds, unfinished ones), what goes takes its rows and directories along, deploy rows stay."""

from __future__ import annotations

import time

import pytest

from runner.retention import Retention, collect, parse_retention, RetentionConfigError
from runner.store.db import Store
from tests.retention_helpers import add_build, add_deploy, rows_of, surviving


@pytest.fixture
def store(tmp_path):
    with Store(tmp_path / "data") as s:
        yield s


class Recording(Store):
    """A real store that also remembers what each write transaction returned."""

    def __init__(self, data_dir) -> None:
        super().__init__(data_dir)
        self.results: list = []

    def write(self, fn, durable=False):
        result = super().write(fn, durable)
        self.results.append(result)
        return result


def populate(store, now):
    """Returns (expected to go, every id)."""
    ids: dict[str, int] = {}
    uids: dict[str, str] = {}

    def add(key, repo, branch, status, age):
        ids[key], uids[key] = add_build(store, repo, branch, status, age, now)

    # web/main: 25 old builds; the only success is #3, beyond the last 20.
    for n in range(1, 26):
        add(f"main{n}", "web", "main", "success" if n == 3 else "failure", 300 - n)
    # web/old: a build still running (a crash's leftover, not yet settled) and 24 old failures.
    add("old1", "web", "old", "running", 400)
    for n in range(2, 26):
        add(f"old{n}", "web", "old", "failure", 400 - n)
    # web/feature: 3 old builds, all within the last 20 of their branch.
    for n in range(1, 4):
        add(f"feature{n}", "web", "feature", "failure", 500)
    # web/young: 25 builds of 10 days: past keep_last, but younger than 90 days.
    for n in range(1, 26):
        add(f"young{n}", "web", "young", "failure", 10)
    # web tag builds (no branch): one group; 2 builds, kept by keep_last.
    for n in range(1, 3):
        add(f"tag{n}", "web", None, "success", 300)
    # api: its own policy (the last 2 per branch, any age).
    for n in range(1, 6):
        add(f"api{n}", "api", "main", "success" if n == 1 else "failure", 1)

    # Deploys: web-svc runs main#4's image (newest succeeded; main#1's is older, superseded, and a
    # later failed deploy does not count); api-svc was rolled back to main#2's deploy.
    add_deploy(store, "web-svc", uids["main1"])
    add_deploy(store, "web-svc", uids["main4"])
    add_deploy(store, "web-svc", uids["main6"], status="failed")
    back_to = add_deploy(store, "api-svc", uids["main2"])
    add_deploy(store, "api-svc", uids["main5"])
    add_deploy(store, "api-svc", None, kind="rollback", rollback_of=back_to)

    going = {"main1", "main5", *(f"old{n}" for n in range(2, 6)), "api2", "api3"}
    return {ids[k] for k in going}, ids, uids


def policy(repo: str) -> Retention:
    return Retention(days=None, keep_last=2) if repo == "api" else Retention()


def test_retention_keeps_exactly_what_it_promises_and_takes_rows_and_files_along(tmp_path):
    now = time.time()
    with Recording(tmp_path / "data") as store:
        going, ids, uids = populate(store, now)
        deploys_before = store.read().execute("SELECT * FROM deploys ORDER BY id").fetchall()
        store.results.clear()
        report = collect(store, policy, now, batch=3, log_rows=2)

        assert {r.build.id for r in report.removed} == going
        assert surviving(store) == set(ids.values()) - going
        assert rows_of(store, going) == dict.fromkeys(("builds", "stages", "jobs", "steps", "log_chunks"), 0)
        kept = set(ids.values()) - going
        assert rows_of(store, kept) == {"builds": len(kept), "stages": len(kept), "jobs": len(kept),
                                        "steps": len(kept), "log_chunks": 3 * len(kept)}
        assert store.read().execute("SELECT COUNT(*) FROM steps WHERE job_id NOT IN (SELECT id FROM jobs)"
                                    ).fetchone()[0] == 0
        # Directories go with their build, the others stay.
        by_id = {v: uids[k] for k, v in ids.items()}
        for build_id, uid in by_id.items():
            assert (store.data_dir / "artifacts" / uid).exists() == (build_id not in going), build_id
        # Deploy history is untouched, row for row.
        assert store.read().execute("SELECT * FROM deploys ORDER BY id").fetchall() == deploys_before
        # Bounded: no transaction deleted more than 2 log chunks; 8 builds x 3 chunks took many.
        counts = [r for r in store.results if isinstance(r, int)]
        assert max(counts) <= 2 and sum(counts) == 3 * len(going)
        # The size reported covers the log text, the pipeline text and the files.
        assert all(r.stored_bytes >= 3 * 500 and r.dir_bytes == 4096 for r in report.removed)
        assert report.freed == sum(r.size for r in report.removed)
        # A second run finds nothing more: what is left is all protected.
        assert collect(store, policy, now).removed == []


def test_dry_run_removes_nothing_and_lists_the_same_builds(store):
    now = time.time()
    going, ids, uids = populate(store, now)
    before = rows_of(store, ids.values())
    report = collect(store, policy, now, dry_run=True)
    assert {r.build.id for r in report.removed} == going
    assert rows_of(store, ids.values()) == before
    assert all((store.data_dir / "artifacts" / uid).exists() for uid in uids.values())


def test_a_deploy_between_the_choice_and_the_delete_keeps_the_build(store):
    """The delete re-checks in its own transaction: a build that became live meanwhile stays."""
    now = time.time()
    going, ids, uids = populate(store, now)
    from runner.retention import choose

    chosen = choose(store.read(), policy, now)
    assert ids["main1"] in {b.id for b in chosen}
    add_deploy(store, "web-svc", uids["main1"])  # a redeploy of main#1's image: live again
    report = collect(store, policy, now)
    assert ids["main1"] not in {r.build.id for r in report.removed}
    assert ids["main1"] in surviving(store) and (store.data_dir / "artifacts" / uids["main1"]).exists()


def test_both_limits_off_keeps_everything_and_days_alone_prunes_by_age(store):
    now = time.time()
    old, _ = add_build(store, "web", "main", "failure", 100, now)
    young, _ = add_build(store, "web", "main", "failure", 1, now)
    newest_success, _ = add_build(store, "web", "main", "success", 200, now)
    assert collect(store, lambda r: Retention(days=None, keep_last=0), now).removed == []
    report = collect(store, lambda r: Retention(days=30, keep_last=0), now)
    assert [r.build.id for r in report.removed] == [old]
    assert surviving(store) == {young, newest_success}


@pytest.mark.parametrize("data, message", [
    ("nope", "retention must be a mapping"),
    ({"days": 0}, "days: 0 is not a number of days above 0"),
    ({"days": "90"}, "days: '90' is not a number"),
    ({"keep_last": -1}, "keep_last: -1 is not a whole number"),
    ({"keep_last": 2.5}, "keep_last: 2.5"),
    ({"weeks": 3}, "unknown key(s) ['weeks']"),
])
def test_bad_retention_blocks_say_what_to_write(data, message):
    with pytest.raises(RetentionConfigError) as caught:
        parse_retention("repo 'web'", data)
    assert message in str(caught.value) and "repo 'web'" in str(caught.value)


def test_repository_retention_overrides_the_servers_key_by_key():
    server = parse_retention("configuration", {"days": 30})
    assert server == Retention(days=30, keep_last=20)
    assert parse_retention("repo 'web'", {"keep_last": 5}, server) == Retention(days=30, keep_last=5)
    assert parse_retention("repo 'web'", {"days": None}, server) == Retention(days=None, keep_last=20)
