"""Numbers from outside on every route that takes an id: beyond 64 bits they were OverflowError 500s.
Now a path that names no build is a 404, a bad query or body value a 400, each saying what an id is."""

from __future__ import annotations

import pytest

from runner.server.ids import parse_id
from runner.store.db import MAX_INTEGER

TOKEN = "admin-token-ids"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
HUGE = "99999999999999999999"
NOT_IDS = [HUGE, str(MAX_INTEGER + 1), "0", "-1", "1e3", "١٢", "%201", "1.0", "9" * 5000]


def test_parse_id_takes_ascii_digits_and_json_integers_sqlite_can_hold():
    assert (parse_id("1"), parse_id(str(MAX_INTEGER)), parse_id(42)) == (1, MAX_INTEGER, 42)
    for value in [HUGE, "0", "-1", " 1", "١٢", "1.0", "", True, 1.0, 2**64, None, [1], {"a": 1}]:
        assert parse_id(value) is None, value


@pytest.mark.parametrize("path", [f"/api/builds/{bad}" for bad in NOT_IDS]
                         + [f"/api/builds/{HUGE}/log", f"/builds/{HUGE}", f"/builds/{HUGE}/events"])
async def test_reading_a_build_that_no_id_names_is_404(server, path):
    client = await server([], admin_token=TOKEN)
    answer = await client.get(path)
    assert answer.status == 404, (path, answer.status, await answer.text())
    if path.startswith("/api/"):
        assert "build ids are a whole number from 1 to" in (await answer.json())["error"]


@pytest.mark.parametrize("action", ["cancel", "rerun"])
async def test_cancel_and_rerun_of_a_huge_id_are_404(server, action):
    client = await server([], admin_token=TOKEN)
    answer = await client.post(f"/api/builds/{HUGE}/{action}", headers=AUTH)
    assert answer.status == 404 and "GET /api/builds lists them" in (await answer.json())["error"]


@pytest.mark.parametrize("path", ["/api/builds", "/"])
async def test_paging_before_a_huge_id_is_400(server, path):
    client = await server([], admin_token=TOKEN)
    for bad in (HUGE, "-1", "abc"):
        answer = await client.get(path, params={"before": bad})
        assert answer.status == 400, (bad, await answer.text())
        assert "before must be a build id (a whole number from 1 to" in await answer.text()
    assert (await client.get(path, params={"before": str(MAX_INTEGER)})).status == 200


@pytest.mark.parametrize("body,says", [
    ({"to": int(HUGE)}, "`to` must be a deploy id"),
    ({"to": HUGE}, "`to` must be a deploy id"),
    ({"to": True}, "`to` must be a deploy id"),
    ({"to": [1]}, "`to` must be a deploy id"),
    ({"target": {"a": 1}}, "`target` must be the name of a deploy target"),
    ({"target": ["prod"]}, "`target` must be the name of a deploy target"),
])
async def test_rollback_with_a_bad_deploy_id_or_target_is_400(server, body, says):
    client = await server([], admin_token=TOKEN)
    answer = await client.post("/api/services/web/rollback", json=body, headers=AUTH)
    assert answer.status == 400, await answer.text()
    assert says in (await answer.json())["error"]


@pytest.mark.parametrize("sha", [int("1" * 40), ["a" * 40], "A" * 40, "a" * 39])
async def test_a_manual_build_with_a_sha_that_is_not_40_hex_characters_is_400(server, git_repo, sha):
    repo = git_repo({".conveyor.yml": "stages: [{name: s, steps: [echo]}]\n"})
    client = await server([{"name": "acme/web", "provider": "github", "path": str(repo)}], admin_token=TOKEN,
                          start_queue=False)
    answer = await client.post("/api/builds", json={"repo": "acme/web", "sha": sha}, headers=AUTH)
    assert answer.status == 400 and "40-hex" in (await answer.json())["error"]
