"""Metrics of a task that runs as another user: its runs are in that user's database
(STATE_DIR/history.d/USER/history.db), and `agency-cron metrics` counts them as the
reports do, and nothing that user wrote about other tasks.

Real parts: a throwaway system user, a cron.d-format file target, the wrapper run as that
user through `runuser` in cron's bare environment, SQLite files.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
from datetime import datetime
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

BARE_ENV = ["env", "-i", "PATH=/usr/bin:/bin"]  # what cron gives a job
MANIFEST = """\
tasks:
  - name: as-user
    schedule: "0 3 * * *"
    command: echo ran as $(id -un)
    user: {user}
  - name: as-root
    schedule: "0 4 * * *"
    command: echo ran as $(id -un)
"""


@pytest.fixture
def user(make_user):
    return make_user("agcron-m-")


@pytest.fixture
def site(user, monkeypatch, shared_root, make_env, clean_environ, python_for):
    """A site under /tmp that the user can enter (tmp_path's parents are 0700)."""
    monkeypatch.setenv("AGENCY_CRON_PYTHON", python_for(user))
    make_env(
        shared_root,
        crontab=f"system:{shared_root}/cron.d/agency_stack",
        manifest=MANIFEST.format(user=user),
    )
    return shared_root


def run_wrapper(site: Path, name: str, user: str | None) -> None:
    prefix = ["runuser", "-u", user, "--"] if user else []
    wrapper = site / "agency" / "scripts" / "cronjobs" / f"{name}.sh"
    result = subprocess.run(
        [*prefix, *BARE_ENV, str(wrapper)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd="/",
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def started_at(db: Path, task: str) -> float:
    with sqlite3.connect(db) as conn:
        (value,) = conn.execute(
            "SELECT MAX(started_at) FROM runs WHERE task = ?", (task,)
        ).fetchone()
    return datetime.fromisoformat(value).timestamp()


def test_runs_in_a_users_database_are_counted_and_nothing_forged(site, user, cli):
    args = ("--config", str(site / "config.env"), "--manifest", str(site / "tasks.yaml"))
    code, out, err = cli(*args, "install")
    assert code == 0, out + err
    run_wrapper(site, "as-user", user)
    run_wrapper(site, "as-root", None)
    user_db = site / "state" / "history.d" / user / "history.db"
    root_db = site / "state" / "history.db"
    # the user writes a row about root's task into its own database: it must not count
    with sqlite3.connect(user_db) as conn:
        conn.execute(
            "INSERT INTO runs (task, run_id, attempt, attempts, started_at, status)"
            " VALUES ('as-root', 'forged', 1, 1, '2030-01-01T00:00:00.000+00:00', 'success')"
        )

    code, text, err = cli(*args, "metrics")
    assert code == 0, err
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, frozenset(sample.labels.items()))] = sample.value
    host = os.uname().nodename
    mine = frozenset({("task", "as-user"), ("host", host), ("user", user)})
    roots = frozenset({("task", "as-root"), ("host", host)})
    success = "agency_cron_last_success_timestamp_seconds"
    assert found[(success, mine)] == started_at(user_db, "as-user")
    assert found[(success, roots)] == started_at(root_db, "as-root")  # not the forged 2030
    runs = "agency_cron_runs_total"
    assert found[(runs, mine | {("status", "success")})] == 1
    assert found[(runs, roots | {("status", "success")})] == 1
    assert found[("agency_cron_history_rows", frozenset({("host", host)}))] == 2
    assert found[("agency_cron_last_run_success", mine)] == 1
