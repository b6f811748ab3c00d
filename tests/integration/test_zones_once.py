"""Zoned, one-time and detached runs through the real wrapper, runner and SQLite."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import time
from datetime import datetime, timedelta

from agency_cron import schedule
from agency_cron.backends.crontab import managed_name


def lines(env) -> list[str]:
    return [line for line in env.crontab.read_text().splitlines() if managed_name(line)]


def rows(env, task: str) -> list[tuple]:
    path = env.state_dir / "history.db"
    if not path.exists():
        return []
    try:
        with sqlite3.connect(path) as db:
            return db.execute("SELECT status FROM runs WHERE task = ?", (task,)).fetchall()
    except sqlite3.OperationalError:  # the runner is still creating the schema
        return []


def run_wrapper(env, name: str, scheduled: str) -> subprocess.CompletedProcess:
    wrapper = env.agency_root / "scripts/cronjobs" / f"{name}.sh"
    return subprocess.run(
        [str(wrapper)],
        env={**os.environ, "AGENCY_CRON_SCHEDULED": scheduled},
        capture_output=True,
        timeout=60,
        check=False,
    )


def test_zoned_task_installs_host_time_lines(env, cli):
    env.write_manifest(
        """
        tasks:
          - name: mumbai
            schedule: "0 9 * * *"
            timezone: Asia/Kolkata
            command: echo namaste
        """
    )
    assert cli(*env.args("install"))[0] == 0
    expected = schedule.host_expression("0 9 * * *", "Asia/Kolkata")
    assert lines(env) == [
        f"{expected} {env.agency_root}/scripts/cronjobs/mumbai.sh # agency-cron:mumbai"
    ]
    listed = json.loads(cli(*env.args("list", "--json"))[1])[0]
    assert listed["next_run"].endswith("+05:30") and "T09:00:00" in listed["next_run"]


def test_runner_started_by_cron_runs_only_when_due_in_the_zone(env, cli):
    now = datetime.now(schedule.zone_of("Pacific/Chatham"))
    not_now = (now + timedelta(hours=6)).strftime("%M %H * * *")
    env.write_manifest(
        f"""
        tasks:
          - name: every-minute
            schedule: "* * * * *"
            timezone: Pacific/Chatham
            command: echo due
          - name: later
            schedule: "{not_now}"
            timezone: Pacific/Chatham
            command: echo not due
        """
    )
    assert cli(*env.args("install"))[0] == 0
    assert run_wrapper(env, "every-minute", "cron").returncode == 0
    assert rows(env, "every-minute") == [("success",)]
    assert run_wrapper(env, "later", "cron").returncode == 0
    assert rows(env, "later") == []  # not this minute in Chatham: nothing ran
    assert run_wrapper(env, "later", "no").returncode == 0  # by hand: runs now
    assert rows(env, "later") == [("success",)]


def test_one_time_task_runs_once_then_leaves_the_crontab(env, cli):
    moment = datetime.now() + timedelta(days=3)
    env.write_manifest(
        f"""
        tasks:
          - name: migrate
            schedule: "once {moment:%Y-%m-%dT%H:%M}"
            command: echo migrating
        """
    )
    assert cli(*env.args("install"))[0] == 0
    assert lines(env)[0].startswith(f"{moment.minute} {moment.hour} {moment.day} {moment.month} *")
    assert run_wrapper(env, "migrate", "cron").returncode == 0
    assert rows(env, "migrate") == []  # cron fired, but not at its minute
    assert cli(*env.args("run", "migrate"))[0] == 0
    status = json.loads(cli(*env.args("status", "migrate", "--json"))[1])
    assert status["state"] == "completed"
    code, out, _ = cli(*env.args("install"))
    assert code == 0 and lines(env) == []


def test_one_time_task_in_the_past_is_refused(env, cli):
    env.write_manifest(
        """
        tasks:
          - name: too-late
            schedule: "once 2020-01-01T00:00"
            command: echo never
        """
    )
    code, _, err = cli(*env.args("install"))
    assert code == 2 and "too-late" in err and "in the past" in err
    assert not env.crontab.exists()


def test_detached_run_returns_at_once_and_records(env, cli):
    env.write_manifest(
        """
        tasks:
          - name: bg
            schedule: "@daily"
            command: sleep 1; echo done in background
        """
    )
    cli(*env.args("install"))
    code, out, _ = cli(*env.args("run", "--detach", "bg"))
    assert code == 0 and "background" in out
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and rows(env, "bg") != [("success",)]:
        time.sleep(0.2)
    assert rows(env, "bg") == [("success",)]
    assert "done in background" in (env.log_dir / "bg.log").read_text()


def test_cron_d_lines_carry_the_task_user(env, cli):
    target = env.root / "cron.d" / "agency"
    env.write_manifest(
        """
        tasks:
          - name: as-nobody
            schedule: "@hourly"
            user: nobody
            command: id -un
          - name: as-root
            schedule: "@hourly"
            command: id -un
        """
    )
    assert cli(*env.args("install", "--crontab", f"system:{target}"))[0] == 0
    found = {managed_name(line): line.split()[1] for line in target.read_text().splitlines()}
    assert found == {"as-nobody": "nobody", "as-root": "root"}


def test_logs_spec_and_lock_follow_the_task_user(env, cli):
    import pwd

    target = env.root / "cron.d" / "agency"
    env.write_manifest(
        """
        tasks:
          - name: as-nobody
            schedule: "@hourly"
            user: nobody
            command: id -un
        """
    )
    assert cli(*env.args("install", "--crontab", f"system:{target}"))[0] == 0
    nobody = pwd.getpwnam("nobody").pw_uid
    for path in (
        env.log_dir / "as-nobody.log",
        env.log_dir / "cron" / "as-nobody.sh.log",
        env.state_dir / "tasks" / "as-nobody.json",
        env.state_dir / "locks" / "as-nobody.lock",
    ):
        assert path.stat().st_uid == nobody, path
    assert "no changes" in cli(*env.args("install", "--crontab", f"system:{target}"))[1]
