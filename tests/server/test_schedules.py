"""Cron schedules in a real server on 127.0.0.1 over a real store and a real git repository, builds
run by the local backend; time is a test clock moved by the test, never slept through."""

from __future__ import annotations

import datetime
import re
import subprocess
import sys

import pytest
import yaml
from aiohttp.test_utils import TestClient, TestServer

from runner.clock import TestClock
from runner.server.app import make_app
from runner.server.config import ServerConfigError, load_config
from runner.server.schedules import Schedule, latest_slot, next_slot
from tests.server.conftest import wait_for

TOKEN = "sched-admin-token"
PIPELINE = """\
name: nightly
image: conveyor-test/busybox:1   # ignored by the local backend
on: [push, manual, cron]
params:
  target: {default: staging}
stages:
  - name: always
    steps: ["echo event=$CI_PIPELINE_EVENT target={{ params.target }}"]
  - name: nightly-only
    when: {event: cron}
    steps: ["echo nightly work"]
  - name: push-only
    when: {event: push}
    steps: ["echo push work"]
"""


def utc(*args) -> float:
    return datetime.datetime(*args, tzinfo=datetime.timezone.utc).timestamp()


@pytest.fixture
async def start(tmp_path, instance):
    """``await start(clock, schedules)`` -> a running server with the repository ``acme/web``;
    ``await stop(client)`` ends it like a shutdown. Every server shares one data directory."""
    clients: list[TestClient] = []

    async def factory(clock: TestClock, schedules, repo_path, sleepers: int = 2) -> TestClient:
        data = {"data_dir": str(tmp_path / "data"), "instance": instance, "backend": "local",
                "admin_token": TOKEN,
                "repos": [{"name": "acme/web", "path": str(repo_path), "trusted": True, "schedules": schedules}]}
        path = tmp_path / "conveyor.yml"
        path.write_text(yaml.safe_dump(data))
        config = load_config(path, environ={"HOME": str(tmp_path)})
        client = TestClient(TestServer(make_app(config, clock=clock), host="127.0.0.1"))
        await client.start_server()
        clients.append(client)
        await clock.wait_sleeping(sleepers)  # the scheduler and the daily retention run
        return client

    yield factory
    for client in clients:
        await client.close()


async def builds(client) -> list[dict]:
    return (await (await client.get("/api/builds")).json())["builds"]


async def finished(client, count: int) -> list[dict]:
    async def done():
        found = await builds(client)
        return found if len(found) == count and all(b["status"] not in ("queued", "running") for b in found) \
            else None

    return await wait_for(done, timeout=60)


NIGHTLY = {"name": "nightly", "cron": "0 3 * * *", "branch": "main", "params": {"target": "nightly-env"}}


async def test_a_schedule_fires_once_per_slot_across_a_restart(start, git_repo):
    repo = git_repo({".conveyor.yml": PIPELINE})
    clock = TestClock(utc(2024, 7, 1, 2, 30))
    client = await start(clock, [NIGHTLY], repo)
    assert await builds(client) == []  # a new schedule owes nothing for slots before it existed

    await clock.set(utc(2024, 7, 1, 3, 0))
    [build] = await finished(client, 1)
    assert (build["event"], build["trigger"], build["branch"], build["status"]) == \
        ("cron", "schedule:nightly", "main", "success")
    assert build["params"] == {"target": "nightly-env"}
    detail = await (await client.get(f"/api/builds/{build['id']}")).json()
    assert {s["name"]: s["status"] for s in detail["stages"]} == \
        {"always": "success", "nightly-only": "success", "push-only": "skipped"}
    log = await (await client.get(f"/api/builds/{build['id']}/log")).text()
    assert "event=cron target=nightly-env" in log and "nightly work" in log

    await clock.set(utc(2024, 7, 1, 3, 40))
    assert len(await builds(client)) == 1
    await client.close()

    # A restart within the same day: the 03:00 slot was fired and is not fired again.
    clock = TestClock(utc(2024, 7, 1, 3, 45))
    client = await start(clock, [NIGHTLY], repo)
    assert len(await builds(client)) == 1
    await clock.set(utc(2024, 7, 2, 2, 59))
    assert len(await builds(client)) == 1
    await clock.set(utc(2024, 7, 2, 3, 0))
    second, first = await finished(client, 2)
    assert second["trigger"] == "schedule:nightly" and second["id"] > first["id"]
    listing = (await (await client.get("/api/schedules")).json())["schedules"]
    assert listing[0]["last_slot"] == utc(2024, 7, 2, 3) and listing[0]["last_build_id"] == second["id"]


async def test_slots_missed_while_down_fire_once_at_start_up(start, git_repo):
    repo = git_repo({".conveyor.yml": PIPELINE})
    clock = TestClock(utc(2024, 7, 1, 2, 0))
    client = await start(clock, [NIGHTLY], repo)
    await client.close()
    # Down from 1 July 02:00 to 4 July 10:00: four 03:00 slots passed.
    clock = TestClock(utc(2024, 7, 4, 10, 0))
    client = await start(clock, [NIGHTLY], repo)
    [build] = await finished(client, 1)
    assert build["trigger"] == "schedule:nightly"
    listing = (await (await client.get("/api/schedules")).json())["schedules"]
    assert listing[0]["last_slot"] == utc(2024, 7, 4, 3, 0)  # the newest missed slot, once
    await clock.set(utc(2024, 7, 4, 23, 59))
    assert len(await builds(client)) == 1
    await client.close()
    # And a second start after that one fires nothing more.
    clock = TestClock(utc(2024, 7, 4, 11, 0))
    client = await start(clock, [NIGHTLY], repo)
    assert len(await builds(client)) == 1


async def test_a_clock_set_far_ahead_and_back_does_not_silence_the_schedule(start, git_repo):
    repo = git_repo({".conveyor.yml": PIPELINE})
    clock = TestClock(utc(2024, 7, 1, 12, 0))
    client = await start(clock, [NIGHTLY], repo)
    # The host's clock jumps years ahead (a bad RTC, a wrong NTP answer): the slot it sees fires.
    await clock.set(utc(2030, 1, 1, 3, 30))
    [wrong] = await finished(client, 1)
    assert wrong["trigger"] == "schedule:nightly"
    # Put right, the clock is far behind the stored slot: that slot never happened, and the
    # schedule fires at its next slot, not in 2030.
    await clock.set(utc(2024, 7, 1, 12, 5))
    assert len(await builds(client)) == 1
    await clock.set(utc(2024, 7, 2, 3, 0))
    assert [b["trigger"] for b in await finished(client, 2)] == ["schedule:nightly", "schedule:nightly"]
    listing = (await (await client.get("/api/schedules")).json())["schedules"]
    assert listing[0]["last_slot"] == utc(2024, 7, 2, 3)


async def test_a_clock_stepped_back_a_little_after_a_firing_does_not_fire_the_slot_again(start, git_repo):
    repo = git_repo({".conveyor.yml": PIPELINE})
    clock = TestClock(utc(2024, 7, 1, 12, 0))
    client = await start(clock, [NIGHTLY], repo)
    await clock.set(utc(2024, 7, 2, 3, 0, 1))
    await finished(client, 1)
    # NTP steps the clock back across the slot (under the tolerance): 03:00 is not fired twice.
    await clock.set(utc(2024, 7, 2, 2, 10))
    await clock.set(utc(2024, 7, 2, 3, 0, 30))
    assert len(await builds(client)) == 1
    await clock.set(utc(2024, 7, 3, 3, 0))
    assert len(await finished(client, 2)) == 2

async def test_time_zones_decide_the_slot_and_the_api_lists_the_next_firing(start, git_repo):
    repo = git_repo({".conveyor.yml": PIPELINE})
    schedules = [{"name": "paris", "cron": "0 3 * * *", "timezone": "Europe/Paris"},
                 {"name": "utc", "cron": "0 3 * * *"}]
    clock = TestClock(utc(2024, 7, 1, 0, 30))
    client = await start(clock, schedules, repo)
    answer = await client.get("/api/schedules")
    listing = {s["name"]: s for s in (await answer.json())["schedules"]}
    assert listing["paris"]["next"] == utc(2024, 7, 1, 1, 0)  # 03:00 in Paris in summer is 01:00 UTC
    assert listing["paris"]["next_at"] == "2024-07-01T03:00:00+02:00"
    assert listing["utc"]["next"] == utc(2024, 7, 1, 3, 0) and listing["utc"]["next_at"] == "2024-07-01T03:00:00+00:00"
    assert (listing["paris"]["repo"], listing["paris"]["cron"], listing["paris"]["timezone"]) == \
        ("acme/web", "0 3 * * *", "Europe/Paris")
    assert listing["paris"]["last_fired"] is None

    await clock.set(utc(2024, 7, 1, 1, 0))
    [build] = await finished(client, 1)
    assert build["trigger"] == "schedule:paris"
    await clock.set(utc(2024, 7, 1, 3, 0))
    triggers = [b["trigger"] for b in await finished(client, 2)]
    assert triggers == ["schedule:utc", "schedule:paris"]
    listing = {s["name"]: s for s in (await (await client.get("/api/schedules")).json())["schedules"]}
    assert listing["paris"]["next"] == utc(2024, 7, 2, 1, 0)


def test_slots_follow_daylight_saving_in_the_schedules_zone():
    paris = Schedule(repo="r", name="n", cron="0 3 * * *", timezone="Europe/Paris")
    assert next_slot(paris, utc(2024, 12, 1)) == utc(2024, 12, 1, 2, 0)  # winter: UTC+1
    assert next_slot(paris, utc(2024, 7, 1)) == utc(2024, 7, 1, 1, 0)  # summer: UTC+2
    assert latest_slot(paris, utc(2024, 7, 1, 1, 0)) == utc(2024, 7, 1, 1, 0)  # a slot is due at its instant
    assert latest_slot(paris, utc(2024, 7, 1, 0, 59, 59)) == utc(2024, 6, 30, 1, 0)
    # 02:30 does not exist in Paris on 31 March 2024 (02:00 -> 03:00): it fires once, at 03:00 local.
    gap = Schedule(repo="r", name="n", cron="30 2 * * *", timezone="Europe/Paris")
    assert next_slot(gap, utc(2024, 3, 30, 12)) == utc(2024, 3, 31, 1, 0)
    assert next_slot(gap, utc(2024, 3, 31, 1, 0)) == utc(2024, 4, 1, 0, 30)
    # 02:30 happens twice on 27 October 2024 (03:00 -> 02:00): one slot, the first.
    assert next_slot(gap, utc(2024, 10, 26, 12)) == utc(2024, 10, 27, 0, 30)
    assert next_slot(gap, utc(2024, 10, 27, 0, 30)) == utc(2024, 10, 28, 1, 30)
    assert latest_slot(gap, utc(2024, 10, 27, 1, 45)) == utc(2024, 10, 27, 0, 30)


async def test_run_now_needs_the_token_and_leaves_the_slot_alone(start, git_repo):
    repo = git_repo({".conveyor.yml": PIPELINE})
    clock = TestClock(utc(2024, 7, 1, 12, 0))
    client = await start(clock, [NIGHTLY], repo)
    url = "/api/schedules/acme/web/nightly/run"
    assert (await client.post(url)).status == 401
    wrong = await client.post(url, headers={"Authorization": "Bearer nope"})
    assert wrong.status == 401
    missing = await client.post("/api/schedules/acme/web/weekly/run", headers={"Authorization": f"Bearer {TOKEN}"})
    assert missing.status == 404 and "no schedule 'weekly'" in (await missing.json())["error"]
    answer = await client.post(url, headers={"Authorization": f"Bearer {TOKEN}"})
    assert answer.status == 201, await answer.text()
    build_id = (await answer.json())["id"]
    [build] = await finished(client, 1)
    assert (build["id"], build["event"], build["trigger"], build["status"]) == \
        (build_id, "cron", "schedule:nightly by api:admin", "success")
    # The stored slot is the schedule's own: the next 03:00 still fires.
    await clock.set(utc(2024, 7, 2, 3, 0))
    assert [b["trigger"] for b in await finished(client, 2)] == ["schedule:nightly", "schedule:nightly by api:admin"]


async def test_the_page_lists_schedules_and_runs_one_with_the_sessions_csrf_token(start, git_repo):
    repo = git_repo({".conveyor.yml": PIPELINE})
    clock = TestClock(utc(2024, 7, 1, 12, 0))
    client = await start(clock, [NIGHTLY], repo)
    home = await (await client.get("/")).text()
    assert 'href="/schedules"' in home
    page = await (await client.get("/schedules")).text()
    assert "nightly" in page and "0 3 * * *" in page and "2024-07-02T03:00:00+00:00" in page
    assert "Run now" not in page  # not logged in: no form
    login = await client.post("/login", data={"token": TOKEN}, allow_redirects=False)
    assert login.status == 303
    page = await (await client.get("/schedules")).text()
    csrf = re.search(r'name="csrf" value="([0-9a-f]+)"', page).group(1)
    assert 'action="/api/schedules/acme/web/nightly/run"' in page
    forged = await client.post("/api/schedules/acme/web/nightly/run", data={"csrf": "0" * 64}, allow_redirects=False)
    assert forged.status == 403 and await builds(client) == []
    posted = await client.post("/api/schedules/acme/web/nightly/run", data={"csrf": csrf}, allow_redirects=False)
    assert posted.status == 303
    [build] = await finished(client, 1)
    assert posted.headers["Location"] == f"/builds/{build['id']}" and build["event"] == "cron"
    page = await (await client.get("/schedules")).text()
    assert "never" in page  # run now is not a firing of the schedule


BAD = [
    ({"name": "n", "cron": "61 3 * * *"}, "repo 'acme/web' schedule 'n' field cron: '61 3 * * *' is not a cron"),
    ({"name": "n", "cron": "0 3 * * * 5"}, "schedule 'n' field cron"),
    ({"name": "n", "cron": 3}, "schedule 'n' field cron: 3 is not"),
    ({"name": "n", "cron": "0 0 30 2 *"}, "schedule 'n' field cron: '0 0 30 2 *' never fires"),
    ({"name": "n", "cron": "@daily", "timezone": "Mars/Olympus"},
     "schedule 'n' field timezone: 'Mars/Olympus' is not a known time zone"),
    ({"name": "n", "cron": "@daily", "branch": "a b"}, "schedule 'n' field branch: 'a b' is not a branch name"),
    ({"name": "n", "cron": "@daily", "params": {"x": {"y": 1}}}, "schedule 'n' field params"),
    ({"name": "n", "cron": "@daily", "every": "day"}, "schedule 'n': unknown field(s) ['every']"),
    ({"cron": "@daily"}, "repo 'acme/web' schedules[0] field name"),
    ("nightly", "repo 'acme/web' schedules[0]: each schedule is a mapping"),
]


@pytest.mark.parametrize("entry, message", BAD)
def test_bad_schedule_entries_name_the_repo_the_schedule_and_the_field(tmp_path, entry, message):
    path = tmp_path / "conveyor.yml"
    path.write_text(yaml.safe_dump({"repos": [{"name": "acme/web", "path": str(tmp_path), "schedules": [entry]}]}))
    with pytest.raises(ServerConfigError) as caught:
        load_config(path, environ={})
    assert message in str(caught.value)


def test_a_duplicate_name_and_a_bad_file_stop_conveyor_serve(tmp_path):
    path = tmp_path / "conveyor.yml"
    twice = [{"name": "n", "cron": "@daily"}, {"name": "n", "cron": "@hourly"}]
    path.write_text(yaml.safe_dump({"data_dir": str(tmp_path / "d"),
                                    "repos": [{"name": "acme/web", "path": str(tmp_path), "schedules": twice}]}))
    done = subprocess.run([sys.executable, "-m", "runner", "serve", "--config", str(path)], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 1
    assert "repo 'acme/web' schedule 'n': the name is used twice" in done.stderr
