"""One-time and interval schedules on systemd, checked by systemd itself.

`once` becomes a dated `OnCalendar=` (systemd-analyze calendar must agree with the once
time); an `@every` that cron cannot keep becomes `OnActiveSec=` + `OnUnitActiveSec=`;
`systemd-analyze verify` checks every unit. A completed one-time task loses its timer and
its next run everywhere. systemd-analyze comes with Debian's `systemd` package and needs
no running systemd; without it these tests fail, never skip.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from datetime import UTC, datetime, timedelta

import pytest

from agency_cron import schedule
from agency_cron.backends.systemd import once_to_oncalendar

VERIFY_COMPLAINTS = ("Unknown key", "Failed to parse", "lacks value", "not executable", "bad unit")
# "Next elapse: Sun 2027-01-10 20:16:00 UTC" or "(in UTC): Sun ...": each elapse in UTC.
IN_UTC = re.compile(r": \w{3} (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) UTC$", re.M)
WHEN = (datetime.now() + timedelta(days=40)).replace(hour=12, minute=30)  # never in a DST gap
ONCE = f"once {WHEN:%Y-%m-%dT%H:%M}"


def analyze() -> str:
    found = shutil.which("systemd-analyze")
    if not found:
        pytest.fail("systemd-analyze not found: install Debian's `systemd` package")
    return found


def verify(paths) -> subprocess.CompletedProcess:
    return subprocess.run(
        [analyze(), "verify", "--man=no", *map(str, paths)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def assert_verified(paths) -> None:
    result = verify(paths)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    for complaint in VERIFY_COMPLAINTS:
        assert complaint not in output, output


def units_dir(env):
    return env.root / "units"


def systemd_site(env, manifest: str) -> None:
    """The env fixture's installation, with a systemd:DIR target instead of the crontab."""
    text = env.config.read_text().replace(f"CRONTAB=file:{env.crontab}", "")
    env.config.write_text(text + f"CRONTAB=systemd:{units_dir(env)}\n")
    units_dir(env).mkdir()
    env.write_manifest(manifest)


MANIFEST = f"""\
tasks:
  - name: migrate
    schedule: "{ONCE}"
    timezone: Europe/Paris
    command: echo migrating
  - name: local-once
    schedule: "{ONCE}"
    command: echo here
  - name: fast
    schedule: "@every 15s"
    command: echo fast
  - name: slow
    schedule: ["@every 90m", "0 3 * * *"]
    command: echo slow
  - name: quarter
    schedule: "@every 15m"
    command: echo quarter
"""


def timer(env, name: str) -> str:
    return (units_dir(env) / f"agency-cron-{name}.timer").read_text()


def timer_lines(env, name: str) -> list[str]:
    text = timer(env, name)
    return [line for line in text.splitlines() if line.startswith(("On", "Accuracy", "Pers"))]


def test_units_for_once_and_every_pass_systemd_verify(env, cli):
    systemd_site(env, MANIFEST)
    code, _, err = cli(*env.args("install"))
    assert code == 0, err
    paths = sorted(units_dir(env).iterdir())
    assert len(paths) == 10
    assert_verified(paths)
    spec = f"{WHEN:%Y-%m-%d %H:%M}:00"
    assert timer_lines(env, "migrate") == [
        f"OnCalendar={spec} Europe/Paris",
        "Persistent=true",
        "AccuracySec=1s",
    ]
    host = schedule.local_zone().key
    assert timer_lines(env, "local-once")[0] == f"OnCalendar={spec} {host}"
    assert timer_lines(env, "fast") == [
        "OnActiveSec=15s",
        "OnUnitActiveSec=15s",
        "AccuracySec=1s",
    ]
    assert timer_lines(env, "slow") == [
        "OnCalendar=*-*-* 03:00:00",
        "OnActiveSec=90min",
        "OnUnitActiveSec=90min",
        "Persistent=true",
        "AccuracySec=1s",
    ]
    # cron can keep 15 minutes: the same wall-clock times as the crontab line would fire.
    assert timer_lines(env, "quarter")[0] == "OnCalendar=*-*-* *:00,15,30,45:00"


def test_verify_catches_a_bad_time_span(env, cli):
    """The verify check above means something for the new keys too."""
    systemd_site(env, MANIFEST)
    assert cli(*env.args("install"))[0] == 0
    unit = units_dir(env) / "agency-cron-fast.timer"
    unit.write_text(timer(env, "fast").replace("OnUnitActiveSec=15s", "OnUnitActiveSec=15 parsecs"))
    result = verify([unit])
    assert "Failed to parse" in result.stdout + result.stderr


@pytest.mark.parametrize("host_zone", ["UTC", "America/New_York"])
@pytest.mark.parametrize("task_zone", ["Europe/Paris", "Asia/Kathmandu", None])
def test_systemd_calendar_agrees_with_the_once_time(host_zone, task_zone):
    """The dated spec names its zone, so whatever zone systemd runs in, it elapses once,
    at the instant the runner and `next` compute."""
    spec = once_to_oncalendar(schedule.normalise(ONCE), task_zone)
    base = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    result = subprocess.run(
        [analyze(), "calendar", "--iterations=2", f"--base-time={base}", spec],
        capture_output=True,
        text=True,
        env={**os.environ, "TZ": host_zone},
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    elapses = sorted(set(IN_UTC.findall(result.stdout)))
    expected = schedule.once_time(ONCE, schedule.zone_of(task_zone))
    assert elapses == [expected.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")], result.stdout
    assert "Iter. #2" not in result.stdout  # it elapses once, never again


def test_install_to_systemd_target_is_idempotent(env, cli):
    systemd_site(env, MANIFEST)
    assert cli(*env.args("install"))[0] == 0
    before = env.snapshot()
    code, out, err = cli(*env.args("install"))
    assert code == 0, err
    assert "no changes" in out
    assert env.snapshot() == before


def listed(env, cli, command: str) -> dict:
    code, out, err = cli(*env.args(command, "--json"))
    assert code == 0, err
    rows = json.loads(out)
    rows = rows["tasks"] if isinstance(rows, dict) else rows
    return {row["name"]: row for row in rows}


def test_completed_once_task_loses_its_timer_and_its_next_run(env, cli):
    systemd_site(env, MANIFEST)
    assert cli(*env.args("install"))[0] == 0
    assert listed(env, cli, "list")["migrate"]["next_run"] is not None
    code, _, err = cli(*env.args("run", "migrate"))  # by hand, before its time
    assert code == 0, err
    assert (env.state_dir / "completed" / "migrate").exists()

    code, out, err = cli(*env.args("install"))
    assert code == 0, err
    assert not (units_dir(env) / "agency-cron-migrate.timer").exists()
    assert (units_dir(env) / "agency-cron-migrate.service").exists()  # runnable by hand
    assert (units_dir(env) / "agency-cron-local-once.timer").exists()  # not run: kept
    assert_verified(sorted(units_dir(env).iterdir()))

    assert listed(env, cli, "list")["migrate"]["next_run"] is None
    status = listed(env, cli, "status")["migrate"]
    assert status["state"] == "completed" and status["next_run"] is None
    assert listed(env, cli, "log-summary")["migrate"]["next_run"] is None
    assert listed(env, cli, "list")["local-once"]["next_run"] is not None
    code, out, _ = cli(*env.args("next", "migrate", "--json"))
    assert code == 0 and json.loads(out)["next_runs"] == []
    code, _, err = cli(*env.args("dashboard", "--out", str(env.root / "dash")))
    assert code == 0, err
    board = json.loads((env.root / "dash" / "dashboard.json").read_text())
    rows = {row["name"]: row for row in board["tasks"]}
    assert rows["migrate"]["next_run"] is None and rows["local-once"]["next_run"]

    before = env.snapshot()
    code, out, _ = cli(*env.args("install"))
    assert code == 0 and "no changes" in out and env.snapshot() == before


def test_intervals_are_systemd_only_and_the_cron_message_says_so(env, cli, tmp_path):
    env.write_manifest('tasks:\n  - {name: fast, schedule: "@every 15s", command: "true"}\n')
    code, _, err = cli(*env.args("install"))  # the env fixture's target is a crontab file
    assert code == 2
    assert err.strip() == (
        f"agency-cron: error: {env.manifest}: tasks[0] (fast): schedule: '@every 15s': cron"
        " runs at most once a minute; use a systemd timer for sub-minute intervals"
        " (CRONTAB=systemd:DIR, or agency-cron export systemd)"
    )
    assert not env.crontab.exists()
    # ...and the advice holds: the export takes it whatever the configured target.
    code, _, err = cli(*env.args("export", "systemd", str(tmp_path)))
    assert code == 0, err
    assert "OnUnitActiveSec=15s" in (tmp_path / "agency-cron-fast.timer").read_text()


def test_intervals_below_systemds_start_limit_are_refused(env, cli):
    systemd_site(env, 'tasks:\n  - {name: hasty, schedule: "@every 2s", command: "true"}\n')
    code, _, err = cli(*env.args("validate"))
    assert code == 2
    assert "use an interval of at least 5s" in err
    assert list(units_dir(env).iterdir()) == []


def test_next_runs_of_an_interval_are_spaced_by_it(env, cli):
    systemd_site(env, MANIFEST)
    code, out, err = cli(*env.args("next", "fast", "-n", "3", "--json"))
    assert code == 0, err
    times = [datetime.fromisoformat(t) for t in json.loads(out)["next_runs"]]
    assert [b - a for a, b in zip(times, times[1:], strict=False)] == [timedelta(seconds=15)] * 2
