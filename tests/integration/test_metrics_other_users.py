"""Metrics of a task that runs as another user: its runs are in that user's database
(STATE_DIR/history.d/USER/history.db), and `agency-cron metrics` counts them as the
reports do, and nothing that user wrote about other tasks.

Real parts: a throwaway system user, a cron.d-format file target, the wrapper run as that
user through `runuser` in cron's bare environment, SQLite files.
"""

from __future__ import annotations

import os
import pwd
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
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
def user():
    if os.geteuid() != 0:
        pytest.fail("this test needs root (useradd, runuser)")
    name = f"agcron-m-{uuid.uuid4().hex[:6]}"
    subprocess.run(
        ["useradd", "--system", "--no-create-home", "--shell", "/bin/sh", name],
        check=True,
        capture_output=True,
    )
    try:
        yield name
    finally:
        uid = pwd.getpwnam(name).pw_uid
        deadline = time.monotonic() + 30
        while _processes_of(uid) and time.monotonic() < deadline:
            time.sleep(0.2)  # userdel refuses while the user has processes
        subprocess.run(["userdel", name], capture_output=True, check=False)


def _processes_of(uid: int) -> list[str]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.stat(f"/proc/{entry}").st_uid == uid:
                    found.append(entry)
            except OSError:
                continue
    return found


def _python_for(user: str) -> str:
    """An interpreter `user` can run with this install's packages (the venv's, or the
    system Python of the same version when the venv links into a 0700 home)."""
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    site = next(p for p in sys.path if p.endswith("site-packages"))
    for candidate in (str(Path(sys.prefix) / "bin" / "python3"), f"/usr/bin/python{version}"):
        probe = subprocess.run(
            ["runuser", "-u", user, "--", *BARE_ENV, candidate, "-S", "-c",
             f"import sys; sys.path[:0] = [{site!r}]; import agency_cron.runner, sqlite3"],
            capture_output=True,
            check=False,
            cwd="/",
        )  # fmt: skip
        if probe.returncode == 0:
            return candidate
    pytest.fail(f"{user} can run no interpreter with {site} (install python{version})")


@pytest.fixture
def site(user, monkeypatch):
    """A site under /tmp that the user can enter (tmp_path's parents are 0700)."""
    root = Path(tempfile.mkdtemp(prefix="agency-cron-metrics-users-", dir="/tmp"))
    root.chmod(0o755)
    (root / "logrotate.d").mkdir()
    for key in ("AGENCY_CRON_CONFIG", "AGENCY_CRON_MANIFEST", "CRONTAB", "AGENCY_ROOT"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AGENCY_CRON_PYTHON", _python_for(user))
    monkeypatch.setenv("XDG_CACHE_HOME", str(root / "cache"))
    (root / "config.env").write_text(
        textwrap.dedent(
            f"""\
            AGENCY_ROOT={root}/agency
            LOG_DIR={root}/log
            STATE_DIR={root}/state
            LOGROTATE_DIR={root}/logrotate.d
            CRONTAB=system:{root}/cron.d/agency_stack
            """
        )
    )
    (root / "tasks.yaml").write_text(MANIFEST.format(user=user))
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


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
