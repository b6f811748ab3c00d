import pytest

from agency_cron.schedule import ScheduleError, explain, next_runs, normalise, normalise_list


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("0 2 * * *", "0 2 * * *"),
        ("  0   2 * *  * ", "0 2 * * *"),
        ("@daily", "@daily"),
        ("@HOURLY", "@hourly"),
        ("@reboot", "@reboot"),
        ("@every 15m", "*/15 * * * *"),
        ("@every 1m", "* * * * *"),
        ("@every 60s", "* * * * *"),
        ("@every 2h", "0 */2 * * *"),
        ("@every 1h", "0 * * * *"),
        ("@every 60m", "0 * * * *"),
        ("@every 1d", "0 0 * * *"),
        ("@every 24h", "0 0 * * *"),
        ("*/5 9-17 * jan-mar mon-fri", "*/5 9-17 * jan-mar mon-fri"),
        ("0 0 * * 7", "0 0 * * 7"),
    ],
)
def test_accepted_forms(given, expected):
    assert normalise(given) == expected


@pytest.mark.parametrize(
    ("given", "reason"),
    [
        ("@every 7m", "7 does not divide 60"),
        ("@every 15s", "once a minute"),
        ("@every 5h", "5 does not divide 24"),
        ("@every 2d", "every 2 days"),
        ("@every 90m", "not a whole number of hours"),
        ("@every 0m", "greater than zero"),
        ("@every soon", "expected '@every N'"),
        ("@bogus", "unknown schedule"),
        ("0 0 31 2 *", "can never fire"),
        ("0 0 30 2 *", "can never fire"),
        ("*/0 * * * *", "step of 0"),
        ("0 0 * * * *", "has 6 fields"),
        ("0 0 * *", "has 4 fields"),
        ("60 * * * *", "60"),
        ("0 0 L * *", "'L' is not a name"),
        ("0 0 * * 1#2", "Debian cron allows only"),
        ("0 0 ? * *", "Debian cron allows only"),
        ("0 0 * * foo", "'foo' is not a name"),
        ("0 0 * jan-foo *", "'foo' is not a name"),
        ("0 0 * * *\n* * * * * evil", "newline"),
        ("", "empty"),
    ],
)
def test_refused_with_reason(given, reason):
    with pytest.raises(ScheduleError, match=None) as caught:
        normalise(given)
    assert reason in str(caught.value)


def test_lists_are_normalised_and_deduplicated():
    assert normalise_list(["0 1 * * *", "@every 1d", "0  1 * * *"]) == ("0 1 * * *", "0 0 * * *")


def test_next_runs_merge_several_schedules():
    from datetime import datetime

    from agency_cron.schedule import local_zone

    start = datetime(2026, 1, 1, 0, 30, tzinfo=local_zone())
    times = next_runs(("0 1 * * *", "0 2 * * *"), 3, start)
    assert [t.hour for t in times] == [1, 2, 1]


def test_reboot_has_no_next_run():
    assert next_runs(("@reboot",), 3) == []


def test_explain_in_plain_english():
    assert explain("0 2 * * *") == "At 02:00"
    assert "every 15 minutes" in explain("@every 15m").lower()
