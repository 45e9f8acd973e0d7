"""Typed build queries on a real SQLite store: numbering, lookup syntax, listing."""

from __future__ import annotations

import threading

import pytest

from runner.build import BuildRequest, create_build
from runner.errors import BuildNotFound
from runner.store import builds as q
from runner.store.db import Store


@pytest.fixture
def store(tmp_path):
    with Store(tmp_path / "data") as s:
        yield s


def test_numbers_are_per_repo_and_unique_under_concurrent_creation(store):
    ids: list[int] = []
    lock = threading.Lock()

    def make(repo: str) -> None:
        for _ in range(10):
            build_id = create_build(store, BuildRequest(repo=repo, event="push", branch="main"), "i1")
            with lock:
                ids.append(build_id)

    threads = [threading.Thread(target=make, args=(repo,)) for repo in ("web", "web", "api")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    conn = store.read()
    web = sorted(b.number for b in q.list_builds(conn, repo="web", limit=100))
    api = sorted(b.number for b in q.list_builds(conn, repo="api", limit=100))
    assert web == list(range(1, 21))
    assert api == list(range(1, 11))
    assert len(set(ids)) == 30
    build = q.get_build(conn, ids[0])
    assert build.status == "queued" and build.instance == "i1" and build.uid.isalnum()
    assert q.next_number(conn, "web") == 21


def test_find_build_understands_every_spelling(store):
    a1 = create_build(store, BuildRequest(repo="a", event="push", params={"x": "1"}), "i")
    a2 = create_build(store, BuildRequest(repo="a", event="push"), "i")
    b1 = create_build(store, BuildRequest(repo="b", event="manual"), "i")
    conn = store.read()
    assert q.find_build(conn, "1", "a").id == a1
    assert q.find_build(conn, "a#2", None).id == a2
    assert q.find_build(conn, "last", "a").id == a2
    assert q.find_build(conn, None, None).id == b1  # newest of all outside a repository
    assert q.find_build(conn, f"id:{b1}", "a").id == b1
    assert q.find_build(conn, "2", None).id == a2  # unique across repos
    assert q.get_build(conn, a1).params == {"x": "1"}
    with pytest.raises(BuildNotFound, match=r"ambiguous.*a#1.*b#1|ambiguous.*b#1.*a#1"):
        q.find_build(conn, "1", None)
    with pytest.raises(BuildNotFound, match="a has no build #9"):
        q.find_build(conn, "9", "a")
    with pytest.raises(BuildNotFound, match="repo#number"):
        q.find_build(conn, "yesterday", "a")
    with pytest.raises(BuildNotFound, match="no builds of c"):
        q.find_build(conn, "last", "c")


def test_list_builds_newest_first_and_filtered(store):
    first = create_build(store, BuildRequest(repo="a", event="push"), "i")
    second = create_build(store, BuildRequest(repo="a", event="push"), "i")
    store.write(lambda c: q.finish_build(c, first, "failure", "exit 1"))
    conn = store.read()
    assert [b.id for b in q.list_builds(conn)] == [second, first]
    failed = q.list_builds(conn, status="failure")
    assert [b.id for b in failed] == [first]
    assert failed[0].reason == "exit 1" and failed[0].finished is not None
