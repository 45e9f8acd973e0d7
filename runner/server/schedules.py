"""Cron schedules of a repository (``schedules:`` in the server configuration) and their slots.

A schedule names a cron expression, read in its own time zone, and the branch and parameters of the
builds it starts. Slots are the instants the expression names; ``latest_slot`` and ``next_slot``
turn "now" into them with croniter, which walks the calendar in the zone (daylight saving included:
a slot that falls in the hour skipped in spring fires at the first minute after it, and one in the
hour repeated in autumn fires at its first occurrence only). See docs/server.md.
"""

from __future__ import annotations

import datetime
import re
import time
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter

from runner.errors import ConveyorError

__all__ = ["Schedule", "parse_schedules", "latest_slot", "next_slot"]

_KEYS = {"name", "cron", "branch", "params", "timezone"}
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_BRANCH = re.compile(r"[\w./-]{1,200}")
_ALIASES = {"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"}


class ScheduleConfigError(ConveyorError):
    """A ``schedules:`` entry is wrong; the message names the repository, the schedule and the field."""


@dataclass(frozen=True)
class Schedule:
    repo: str
    name: str
    cron: str
    branch: str = "main"
    params: dict[str, str] = field(default_factory=dict)
    timezone: str = "UTC"

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def trigger(self) -> str:
        return f"schedule:{self.name}"


def latest_slot(schedule: Schedule, now: float) -> float:
    """The newest slot at or before ``now`` (unix seconds)."""
    here = datetime.datetime.fromtimestamp(now, schedule.zone)
    minute = here.replace(second=0, microsecond=0)
    if croniter.match(schedule.cron, minute):
        return _first_occurrence(minute.timestamp(), schedule)
    return _first_occurrence(croniter(schedule.cron, here).get_prev(float), schedule)


def next_slot(schedule: Schedule, now: float) -> float:
    """The first slot strictly after ``now``."""
    at = now
    while True:
        at = croniter(schedule.cron, datetime.datetime.fromtimestamp(at, schedule.zone)).get_next(float)
        if _first_occurrence(at, schedule) == at:
            return at


def _first_occurrence(slot: float, schedule: Schedule) -> float:
    """A local time that happens twice (the hour repeated when clocks go back) is one slot: its first
    occurrence. croniter yields both; firing twice for one "02:30" is not what anyone scheduled."""
    local = datetime.datetime.fromtimestamp(slot, schedule.zone)
    return local.replace(fold=0).timestamp() if local.fold else slot


def parse_schedules(repo: str, data: Any) -> tuple[Schedule, ...]:
    """The repository's ``schedules:`` list, every entry checked; the first problem is raised."""
    if data is None:
        return ()
    if not isinstance(data, list):
        raise ScheduleConfigError(f"repo {repo!r}: schedules must be a list of "
                                  "{name, cron, branch, params, timezone} entries")
    found: dict[str, Schedule] = {}
    for index, item in enumerate(data):
        schedule = _one(repo, index, item)
        if schedule.name in found:
            raise ScheduleConfigError(f"repo {repo!r} schedule {schedule.name!r}: the name is used twice; "
                                      "schedule names must be unique within a repository")
        found[schedule.name] = schedule
    return tuple(found.values())


def _one(repo: str, index: int, item: Any) -> Schedule:
    if not isinstance(item, dict):
        raise ScheduleConfigError(f"repo {repo!r} schedules[{index}]: each schedule is a mapping with "
                                  "name, cron and optionally branch, params, timezone")
    name = item.get("name")
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ScheduleConfigError(f"repo {repo!r} schedules[{index}] field name: give each schedule a `name:` "
                                  "of letters, digits, '.', '_' or '-' (for example nightly)")
    where = f"repo {repo!r} schedule {name!r}"
    unknown = set(item) - _KEYS
    if unknown:
        raise ScheduleConfigError(f"{where}: unknown field(s) {sorted(unknown)}; known: {sorted(_KEYS)}")
    cron = item.get("cron")
    if not isinstance(cron, str) or not _valid_cron(cron.strip()):
        raise ScheduleConfigError(f"{where} field cron: {cron!r} is not a cron expression; write five fields "
                                  "(minute hour day-of-month month day-of-week), e.g. \"0 3 * * *\", or @daily")
    branch = item.get("branch", "main")
    if not isinstance(branch, str) or not _BRANCH.fullmatch(branch):
        raise ScheduleConfigError(f"{where} field branch: {branch!r} is not a branch name")
    params = item.get("params") or {}
    if not isinstance(params, dict) or not all(
            isinstance(v, (str, int, float, bool)) and not isinstance(v, dict) for v in params.values()):
        raise ScheduleConfigError(f"{where} field params: give a mapping of NAME: value (strings or numbers)")
    zone = item.get("timezone", "UTC")
    try:
        ZoneInfo(str(zone))
    except (ZoneInfoNotFoundError, ValueError):
        raise ScheduleConfigError(f"{where} field timezone: {zone!r} is not a known time zone; use an IANA "
                                  "name such as UTC or Europe/Paris") from None
    schedule = Schedule(repo=repo, name=name, cron=cron.strip(), branch=branch,
                        params={str(k): _text(v) for k, v in params.items()}, timezone=str(zone))
    try:  # "0 0 30 2 *" is valid cron that never comes: refuse it now, not in the scheduler's loop
        now = time.time()
        next_slot(schedule, now), latest_slot(schedule, now)
    except Exception:  # noqa: BLE001 - croniter's errors for a date that does not exist
        raise ScheduleConfigError(f"{where} field cron: {cron!r} never fires (no such date); "
                                  "check the day of the month against the month") from None
    return schedule


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _valid_cron(cron: str) -> bool:
    # Five fields only: croniter would also take a sixth (seconds), and a schedule firing every
    # second is never what a CI server wants.
    if cron in _ALIASES:
        return True
    return len(cron.split()) == 5 and croniter.is_valid(cron)
