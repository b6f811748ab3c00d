"""Cron -> systemd conversion and unit rendering, pure (no systemd needed).

tests/integration/test_systemd_export.py checks the same output against systemd itself.
"""

from __future__ import annotations

import pytest

from agency_cron.backends.systemd import (
    cron_to_oncalendar,
    exec_quote,
    render_units,
    start_timeout,
    unit_name,
)
from agency_cron.errors import ConfigError
from agency_cron.manifest import Task

ODD_DAYS = ",".join(f"{day:02d}" for day in range(1, 32, 2))


@pytest.mark.parametrize(
    ("expr", "zone", "expected"),
    [
        ("*/15 9-17 * * mon-fri", None, ["Mon..Fri *-*-* 09..17:00,15,30,45:00"]),
        ("* * * * *", None, ["*-*-* *:*:00"]),
        ("5 4 * * sun,sat,7", "UTC", ["Sat,Sun *-*-* 04:05:00 UTC"]),
        ("0 9 * * sun-tue", None, ["Mon,Tue,Sun *-*-* 09:00:00"]),
        ("0 9 * * mon-wed,fri", None, ["Mon..Wed,Fri *-*-* 09:00:00"]),
        ("0 12 * jan-mar,dec *", None, ["*-01..03,12-* 12:00:00"]),
        ("0 0 29 2 *", "Asia/Kolkata", ["*-02-29 00:00:00 Asia/Kolkata"]),
        ("@every 6h", None, ["*-*-* 00,06,12,18:00:00"]),
        # Both day fields restricted: cron ORs them, so two lines.
        ("0 0 1,15 * 1", None, ["*-*-01,15 00:00:00", "Mon *-*-* 00:00:00"]),
        (
            "0 9 1 jun-aug mon",
            "Asia/Kathmandu",
            ["*-06..08-01 09:00:00 Asia/Kathmandu", "Mon *-06..08-* 09:00:00 Asia/Kathmandu"],
        ),
        # A field starting with `*` makes it an AND (Debian cron, cronsim): one line.
        ("0 0 */2 * 1", "Europe/Paris", [f"Mon *-*-{ODD_DAYS} 00:00:00 Europe/Paris"]),
        ("0 0 1-7 * */2", None, ["Tue,Thu,Sat,Sun *-*-01..07 00:00:00"]),
        # An OR where one side covers every day fires every day.
        ("0 0 1-31 * 1", None, ["*-*-* 00:00:00"]),
        ("0 0 15 * 0-7", None, ["*-*-* 00:00:00"]),
    ],
)
def test_conversion(expr, zone, expected):
    assert cron_to_oncalendar(expr, zone) == expected


@pytest.mark.parametrize(
    ("nickname", "expected"),
    [
        ("@hourly", "*-*-* *:00:00"),
        ("@daily", "*-*-* 00:00:00"),
        ("@midnight", "*-*-* 00:00:00"),
        ("@weekly", "Sun *-*-* 00:00:00"),
        ("@monthly", "*-*-01 00:00:00"),
        ("@yearly", "*-01-01 00:00:00"),
        ("@annually", "*-01-01 00:00:00"),
    ],
)
def test_nicknames(nickname, expected):
    assert cron_to_oncalendar(nickname, None) == [expected]


def test_reboot_has_no_calendar():
    assert cron_to_oncalendar("@reboot", "UTC") == []


@pytest.mark.parametrize(
    ("expr", "zone", "message"),
    [
        ("61 * * * *", None, "schedule '61 * * * *'"),
        ("0 0 L * *", None, "'L' is not a name cron knows"),
        # A systemd timer keeps any interval (OnUnitActiveSec=), down to its start limit.
        ("@every 2s", None, "at least 5s"),
        ("0 0 * * *", "Nowhere/Atlantis", "'Nowhere/Atlantis' is not in /usr/share/zoneinfo"),
    ],
)
def test_conversion_errors(expr, zone, message):
    with pytest.raises(ConfigError) as caught:
        cron_to_oncalendar(expr, zone)
    assert message in str(caught.value)
    assert caught.value.exit_code == 2


def test_unit_name():
    assert unit_name("health-check") == "agency-cron-health-check"
    assert unit_name("a" * 235) == "agency-cron-" + "a" * 235  # 255 with ".service"


@pytest.mark.parametrize(
    "name", ["with space", "at@sign", "slash/name", "caf\u00e9", "a" * 236, ""]
)
def test_unit_name_refused(name):
    with pytest.raises(ConfigError) as caught:
        unit_name(name)
    assert caught.value.exit_code == 2
    assert len(caught.value.problems) == 1
    assert "is not a valid systemd unit name" in caught.value.problems[0]


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/opt/agency_stack/scripts/cronjobs/a.sh", "/opt/agency_stack/scripts/cronjobs/a.sh"),
        ("/opt/my dir/a.sh", '"/opt/my dir/a.sh"'),
        ("/opt/100%/a.sh", '"/opt/100%%/a.sh"'),
        ("/opt/$HOME/a.sh", '"/opt/$HOME/a.sh"'),
    ],
)
def test_exec_quote(path, expected):
    assert exec_quote(path) == expected


@pytest.mark.parametrize("path", ['/opt/a"b/a.sh', "/opt/it's/a.sh", "/opt/a\\b/a.sh", "/opt/a\tb"])
def test_exec_path_systemd_refuses(path):
    with pytest.raises(ConfigError, match="systemd refuses in an executable path"):
        exec_quote(path)


@pytest.fixture
def settings(tmp_path, monkeypatch, settings_at):
    monkeypatch.chdir(tmp_path)
    return settings_at(tmp_path)


def make_task(**fields) -> Task:
    return Task.model_validate(
        {"name": "nightly", "schedule": "0 2 * * *", "command": "true", **fields}
    )


def lines(text: str, key: str) -> list[str]:
    return [line.split("=", 1)[1] for line in text.splitlines() if line.startswith(f"{key}=")]


def test_render_units(settings):
    task = make_task(
        description="Nightly 100% backup",
        schedule=["0 2 1,15 * mon", "@reboot"],
        timezone="Europe/Paris",
        jitter="5m",
        timeout="10m",
        env={"REGION": "eu", "API_TOKEN": "s3cr3t-value"},
    )
    units = render_units(task, settings)
    assert sorted(units) == ["agency-cron-nightly.service", "agency-cron-nightly.timer"]
    service, timer = units["agency-cron-nightly.service"], units["agency-cron-nightly.timer"]
    assert lines(service, "Type") == ["oneshot"]
    assert lines(service, "ExecStart") == [f"{settings.agency_root}/scripts/cronjobs/nightly.sh"]
    assert lines(service, "User") == ["root"]
    assert lines(service, "WorkingDirectory") == [f"-{settings.agency_root}"]
    assert lines(service, "Description") == ["agency-cron nightly: Nightly 100%% backup"]
    # Secrets, and the task's env at all, stay with the wrapper and the runner.
    assert lines(service, "Environment") == ["AGENCY_CRON_SCHEDULED=systemd"]
    assert "s3cr3t" not in service + timer and "REGION" not in service
    assert lines(timer, "OnCalendar") == [
        "*-*-01,15 02:00:00 Europe/Paris",
        "Mon *-*-* 02:00:00 Europe/Paris",
    ]
    assert lines(timer, "OnBootSec") == ["1min"]
    assert lines(timer, "Persistent") == ["true"]
    assert lines(timer, "RandomizedDelaySec") == ["300"]
    assert lines(timer, "AccuracySec") == ["1s"]
    assert lines(timer, "Unit") == ["agency-cron-nightly.service"]
    assert lines(timer, "WantedBy") == ["timers.target"]


def test_render_defaults_and_reboot_only(settings):
    task = make_task(schedule="@reboot", working_dir="/srv/job", user="root")
    units = render_units(task, settings)
    service, timer = units["agency-cron-nightly.service"], units["agency-cron-nightly.timer"]
    assert lines(service, "WorkingDirectory") == ["-/srv/job"]
    assert lines(service, "Description") == ["agency-cron nightly"]
    assert lines(timer, "OnCalendar") == [] and lines(timer, "Persistent") == []
    assert lines(timer, "OnBootSec") == ["1min"]
    assert lines(timer, "RandomizedDelaySec") == []


def test_duplicate_calendars_written_once(settings):
    task = make_task(schedule=["@daily", "@midnight", "0 0 * * *"])
    timer = render_units(task, settings)["agency-cron-nightly.timer"]
    assert lines(timer, "OnCalendar") == ["*-*-* 00:00:00"]


def test_description_cannot_continue_the_line(settings):
    service = render_units(make_task(description="ends with a backslash \\"), settings)
    text = service["agency-cron-nightly.service"]
    assert lines(text, "Description") == ["agency-cron nightly: ends with a backslash"]


def test_working_dir_with_trailing_backslash_refused(settings):
    with pytest.raises(ConfigError, match="line continuation"):
        render_units(make_task(working_dir="/srv/odd\\"), settings)


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        # attempts * (timeout + kill grace) + retry delays * 1.1 + alert timeout + margin
        ({"timeout": "10m"}, 600 + 10 + 30 + 60),
        ({"timeout": "10m", "retries": 2, "retry_delay": "1m"}, 3 * 610 + 132 + 30 + 60),
        (
            {"timeout": "1m", "retries": 3, "retry_delay": "1m", "retry_backoff": "exponential"},
            4 * 70 + 462 + 30 + 60,
        ),
        # Exponential delays stop doubling at retry_max_delay (1h): 60..1920, then 94 x 3600.
        (
            {"timeout": "1m", "retries": 100, "retry_delay": "1m", "retry_backoff": "exponential"},
            101 * 70 + (3780 + 94 * 3600) * 11 // 10 + 30 + 60,
        ),
    ],
)
def test_start_timeout_covers_the_whole_run(settings, fields, expected):
    assert start_timeout(make_task(**fields), settings) == expected


def test_start_timeout_leaves_room_for_the_last_ping(tmp_path, monkeypatch, settings_at):
    # The runner waits up to PING_TIMEOUT for its last ping before it exits; a backstop
    # that left it out would let systemd kill a run the runner is about to record.
    monkeypatch.chdir(tmp_path)
    pinging = settings_at(
        tmp_path,
        PING_URL="https://hc-ping.com/0b8e1a5c-7c2f-4f39-9d8e-3f6a1b2c4d5e",
        PING_TIMEOUT="45",
    )
    task = make_task(timeout="10m")
    assert start_timeout(task, pinging) == 600 + 10 + 30 + 45 + 60
    assert start_timeout(make_task(timeout="10m", ping_url="none"), pinging) == 600 + 10 + 30 + 60
