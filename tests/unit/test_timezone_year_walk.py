"""A whole year, DST included: installed host-time lines + the runner's decision fire
exactly when cronsim says the schedule fires in the task's zone.

The host's cron is simulated with cronsim too (it follows Debian cron's rules, DST
included), for a host in UTC and a host in a DST zone.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from cronsim import CronSim

from agency_cron import schedule

CASES = [
    ("30 2 * * *", "Europe/Paris"),  # inside the spring-forward gap once a year
    ("30 1 * * *", "America/New_York"),  # inside the repeated hour in November
    ("0 9 * * 1-5", "America/New_York"),
    ("0 9 * * 1-5", "Asia/Kolkata"),  # +5:30
    ("45 23 * * *", "Asia/Kathmandu"),  # +5:45
    ("0 0 * * *", "Pacific/Chatham"),  # +12:45 / +13:45
    ("0 2 * * *", "Australia/Lord_Howe"),  # a 30-minute DST shift
    ("15 3 1 * *", "Australia/Sydney"),
    ("0 12 * * 0", "Europe/London"),
    ("*/30 1-3 * * *", "Europe/Berlin"),
    ("0 * * * *", "Asia/Kolkata"),
    ("@daily", "America/Los_Angeles"),
    ("0 6 15 3,11 *", "America/Chicago"),
]
HOSTS = ["UTC", "Europe/Berlin"]
YEAR_START = datetime(2026, 1, 1, tzinfo=UTC)
YEAR_END = datetime(2027, 1, 1, tzinfo=UTC)


def fires(expr: str, zone: str) -> set[datetime]:
    found = set()
    start = (YEAR_START - timedelta(minutes=1)).astimezone(ZoneInfo(zone))
    for moment in CronSim(schedule.NICKNAMES.get(expr, expr), start):
        instant = moment.astimezone(UTC)
        if instant >= YEAR_END:
            return found
        if instant >= YEAR_START:
            found.add(instant)
    return found


@pytest.fixture(params=HOSTS)
def host_zone(request, monkeypatch):
    monkeypatch.setenv("TZ", request.param)
    schedule.local_zone.cache_clear()
    yield request.param
    schedule.local_zone.cache_clear()


@pytest.mark.parametrize(("expr", "zone"), CASES)
def test_installed_lines_plus_runner_decision_match_cronsim(expr, zone, host_zone):
    host_line = schedule.host_expression(expr, zone, YEAR_START.astimezone(ZoneInfo(host_zone)))
    candidates = fires(host_line, host_zone)
    ran = {minute for minute in candidates if schedule.zone_due(expr, zone, minute)}
    expected = fires(expr, zone)
    assert ran == expected, (
        f"host line {host_line!r}: missing {sorted(expected - ran)[:3]}, extra {sorted(ran - expected)[:3]}"
    )
