"""Expected intervals and grace, from real schedules (cronsim) and nothing else."""

import pytest

from agency_cron.manifest import Task
from agency_cron.reports import expected_interval, grace_for


def task(schedule, **extra) -> Task:
    return Task(name="t", schedule=schedule, command="true", **extra)


@pytest.mark.parametrize(
    ("schedule", "seconds"),
    [
        ("*/15 * * * *", 900),
        ("@hourly", 3600),
        ("0 2 * * *", 86400),
        ("0 3 * * 0", 7 * 86400),
        (["0 1 * * *", "0 13 * * *"], 12 * 3600),
        ("0 9 * * 1-5", 3 * 86400),  # Friday to Monday is the longest gap
    ],
)
def test_expected_interval_is_the_longest_gap(schedule, seconds):
    assert expected_interval(task(schedule)) == seconds


def test_expect_within_overrides_the_schedule():
    assert expected_interval(task("0 2 * * *", expect_within="36h")) == 36 * 3600


def test_reboot_only_tasks_have_no_interval():
    assert expected_interval(task("@reboot")) is None


@pytest.mark.parametrize(
    ("interval", "grace"), [(60, 60), (900, 450), (3600, 1800), (86400, 3600), (7 * 86400, 3600)]
)
def test_grace_is_half_the_interval_within_a_minute_and_an_hour(interval, grace):
    assert grace_for(interval) == grace
