"""Private repositories through a real server on 127.0.0.1, with real builds (the scripted fake
backend) in a real store: an anonymous reader gets what a missing thing gets (404 with the same words,
an "unknown" badge, an empty trend), never the build; a viewer, by token or signed in on the page,
reads everything; the list of builds leaves private ones out for the anonymous reader only."""

from __future__ import annotations

from runner.backends.fake import FakeBackend, FakeStep
from tests.server.conftest import wait_for
from tests.server.people import ENV, PASSWORD, USERS, bearer

PIPELINE = "name: x\nimage: conveyor-test/busybox:1\nstages:\n  - name: a\n    steps: [\"echo secret-sauce\"]\n"


async def two_repos(server, git_repo, **top):
    public, private = git_repo({".conveyor.yml": PIPELINE}), git_repo({".conveyor.yml": PIPELINE})
    client = await server([
        {"name": "acme/open", "provider": "github", "path": str(public)},
        {"name": "acme/closed", "provider": "github", "path": str(private), "visibility": "private",
         "schedules": [{"name": "nightly", "cron": "0 3 * * *"}]},
    ], backend=FakeBackend(script={"echo secret-sauce": FakeStep(output=[b"secret-sauce\n"])}), users=USERS, env=ENV, **top)
    ids = {}
    for repo in ("acme/open", "acme/closed"):
        created = await client.post("/api/builds", json={"repo": repo}, headers=bearer("developer"))
        ids[repo] = (await created.json())["id"]

    async def done():
        rows = (await (await client.get("/api/builds", headers=bearer("viewer"))).json())["builds"]
        return len(rows) == 2 and all(b["status"] == "success" for b in rows)

    await wait_for(done)
    return client, ids["acme/open"], ids["acme/closed"]


def reads(build_id: int) -> list[str]:
    return [f"/api/builds/{build_id}", f"/api/builds/{build_id}/log", f"/api/builds/{build_id}/tests",
            f"/builds/{build_id}", f"/builds/{build_id}/events"]


async def test_an_anonymous_reader_cannot_tell_a_private_build_from_a_missing_one(server, git_repo):
    client, open_id, closed_id = await two_repos(server, git_repo)
    missing = closed_id + 1000
    for url, gone in zip(reads(closed_id), reads(missing)):
        answer, nothing = await client.get(url), await client.get(gone)
        assert answer.status == nothing.status == 404, url
        text = await answer.text()
        assert text == (await nothing.text()).replace(str(missing), str(closed_id)), url
        assert "secret-sauce" not in text and "acme/closed" not in text
    listed = (await (await client.get("/api/builds")).json())["builds"]
    assert [b["repo"] for b in listed] == ["acme/open"]
    assert "acme/closed" not in await (await client.get("/")).text()
    assert await (await client.get("/api/builds?repo=acme/closed")).json() == {"builds": []}
    badge = await (await client.get("/badge/acme/closed.svg")).text()
    assert badge == await (await client.get("/badge/acme/never.svg")).text() and "success" not in badge
    trend = await (await client.get("/api/tests/trend?repo=acme/closed&branch=main")).json()
    assert trend["builds"] == []
    schedules = (await (await client.get("/api/schedules")).json())["schedules"]
    assert schedules == []
    # The public repository reads as before.
    for url in reads(open_id):
        assert (await client.get(url)).status == 200, url
    assert "success" in await (await client.get("/badge/acme/open.svg")).text()
    assert "secret-sauce" in await (await client.get(f"/api/builds/{open_id}/log")).text()


async def test_a_viewer_reads_private_builds_by_token_and_by_session(server, git_repo):
    client, open_id, closed_id = await two_repos(server, git_repo)
    for url in reads(closed_id):
        answer = await client.get(url, headers=bearer("viewer"))
        assert answer.status == 200, (url, await answer.text())
    log = await (await client.get(f"/api/builds/{closed_id}/log", headers=bearer("viewer"))).text()
    assert "secret-sauce" in log
    badge = await (await client.get("/badge/acme/closed.svg", headers=bearer("viewer"))).text()
    assert "success" in badge
    listed = (await (await client.get("/api/builds", headers=bearer("viewer"))).json())["builds"]
    assert sorted(b["repo"] for b in listed) == ["acme/closed", "acme/open"]
    assert (await client.get("/api/builds", headers={"Authorization": "Bearer nope"})).status == 401

    # Signed in on the page: the session cookie reads what the token reads, until logout.
    signed = await client.post("/login", data={"name": "viewer-user", "password": PASSWORD}, allow_redirects=False)
    assert signed.status == 303
    page = await client.get(f"/builds/{closed_id}")
    assert page.status == 200 and "secret-sauce" in await page.text()
    assert "acme/closed" in await (await client.get("/")).text()
    csrf = (await page.text()).split('name="csrf" value="')[1].split('"')[0]
    out = await client.post("/logout", data={"csrf": csrf}, allow_redirects=False)
    assert out.status == 303
    assert (await client.get(f"/builds/{closed_id}")).status == 404


async def test_a_private_server_hides_unconfigured_repositories_too(server, git_repo):
    client, open_id, closed_id = await two_repos(server, git_repo, visibility="private")
    # acme/open says nothing, so it takes the server's private.
    assert (await client.get(f"/api/builds/{open_id}")).status == 404
    assert (await (await client.get("/api/builds")).json())["builds"] == []
    assert (await client.get(f"/api/builds/{open_id}", headers=bearer("viewer"))).status == 200


async def test_a_session_survives_a_restart_and_ends_when_the_password_changes(server, git_repo, tmp_path):
    first = await server([], users=USERS, env=ENV)
    signed = await first.post("/login", data={"name": "admin-user", "password": PASSWORD}, allow_redirects=False)
    cookie = signed.cookies["conveyor_session"].value
    key = tmp_path / "data" / "session.key"
    assert key.stat().st_mode & 0o777 == 0o600
    await first.close()
    again = await server([], users=USERS, env=ENV)
    jar = {"Cookie": f"conveyor_session={cookie}"}
    assert (await again.get("/api/audit", headers=jar)).status == 200
    await again.close()
    from runner.server.passwords import hash_password

    changed = [dict(u, password_hash=hash_password("another password")) if u["name"] == "admin-user" else u
               for u in USERS]
    later = await server([], users=changed, env=ENV)
    assert (await later.get("/api/audit", headers=jar)).status == 401


async def test_every_read_route_that_names_a_build_hides_a_private_one_from_anonymous_readers(server, git_repo):
    """Taken from the router, so a new route that forgets the read check fails here."""
    import re

    client, open_id, closed_id = await two_repos(server, git_repo)
    routes = sorted({r.resource.canonical for r in client.server.app.router.routes()
                     if r.method == "GET" and "{id}" in r.resource.canonical})
    assert len(routes) >= 8, routes  # builds, log, tests, artifacts, page, events, log parts, ...
    for route in routes:
        url = re.sub(r"\{\w+\}", "x", route.replace("{id}", str(closed_id)))
        answer = await client.get(url)
        assert answer.status == 404, (route, answer.status)
        assert "secret-sauce" not in await answer.text()
        assert (await client.get(url, headers=bearer("viewer"))).status != 404 or "{path}" in route \
            or "log-part" in route, route  # a viewer reads it (an artifact or log part named "x" is missing)
