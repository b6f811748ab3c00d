"""HISTORY_URL's forms (issue 13): the SQLite default, `sqlite:///PATH` elsewhere, and bad
values refused in one line with the password masked; `scope: fleet` needs a shared history."""

from __future__ import annotations

import json
import os
import sqlite3

import pytest

MANIFEST = """\
tasks:
  - name: tick
    schedule: "* * * * *"
    command: "echo tick"
"""


def test_a_sqlite_url_elsewhere_holds_the_runs(env, cli):
    target = env.root / "elsewhere" / "runs.db"
    env.add_config(HISTORY_URL=f"sqlite://{target}")
    env.install(cli, MANIFEST)
    done = env.process("run", "tick")
    assert done.returncode == 0, done.stderr
    conn = sqlite3.connect(target)
    try:
        assert conn.execute("SELECT task, status FROM runs").fetchall() == [("tick", "success")]
    finally:
        conn.close()
    assert not (env.state_dir / "history.db").exists()
    status = json.loads(env.process("status", "tick", "--json").stdout)
    assert (status["runs"], status["last_status"]) == (1, "success")


@pytest.mark.parametrize("name", [None, "web-7"])
def test_the_default_keeps_state_dir_history_db_and_records_the_host(env, cli, name):
    if name:
        env.add_config(HOST_NAME=name)
    env.install(cli, MANIFEST)
    assert env.process("run", "tick").returncode == 0
    conn = sqlite3.connect(env.state_dir / "history.db")
    try:
        hosts = [row[0] for row in conn.execute("SELECT host FROM runs")]
    finally:
        conn.close()
    assert hosts == [name or os.uname().nodename]  # on every run: HOST_NAME, else uname


@pytest.mark.parametrize(
    "value",
    [
        "mysql://app:hunter2pw@db/app",
        "postgresql://app:hunter2pw@db",
        "sqlite://relative/path.db",
        "postgresql://app:hunter2pw@db/app with space",
    ],
)
def test_a_bad_history_url_is_one_line_exit_2_and_masked(env, value):
    env.add_config(HISTORY_URL=value)
    env.write_manifest(MANIFEST)
    done = env.process("validate")
    assert done.returncode == 2
    assert "HISTORY_URL" in done.stderr
    assert "hunter2pw" not in done.stderr + done.stdout
    assert "Traceback" not in done.stderr


def test_a_bad_host_name_or_timeout_is_refused(env):
    env.add_config(HOST_NAME="web 1", HISTORY_TIMEOUT="soon")
    env.write_manifest(MANIFEST)
    done = env.process("validate")
    assert done.returncode == 2
    assert "HOST_NAME" in done.stderr and "HISTORY_TIMEOUT" in done.stderr


def test_a_fleet_task_without_a_shared_history_is_refused_and_nothing_changes(env):
    env.crontab.write_text("# my own job\n17 * * * * /usr/local/bin/mine\n")
    before = env.crontab.read_bytes()
    env.write_manifest(MANIFEST + "    scope: fleet\n")
    done = env.process("install")
    assert done.returncode == 2
    assert "tick" in done.stderr and "scope" in done.stderr and "HISTORY_URL" in done.stderr
    assert str(env.manifest) in done.stderr
    assert env.crontab.read_bytes() == before
    assert not env.wrapper("tick").exists()


def test_scope_and_when_unreachable_take_only_their_words(env):
    env.write_manifest(MANIFEST + "    scope: everywhere\n    when_unreachable: maybe\n")
    done = env.process("validate")
    assert done.returncode == 2
    assert "scope" in done.stderr and "when_unreachable" in done.stderr
