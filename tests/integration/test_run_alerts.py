"""Alerts sent by real runs (the wrapper and the CLI) to a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import json
import socket
import sqlite3

import yaml


def configure(env, urls: str, on_failure: bool = True) -> None:
    env.add_config(f"ALERT_URLS={urls}\nALERT_ON_FAILURE={'true' if on_failure else 'false'}\n")


def manifest(env, command: str, **fields) -> None:
    task = {"name": "job", "schedule": "@daily", "command": command, "retry_delay": "1s", **fields}
    env.manifest.write_text(yaml.safe_dump({"tasks": [task]}))


def alert_column(env) -> list:
    with sqlite3.connect(env.state_dir / "history.db") as db:
        return [row[0] for row in db.execute("SELECT alert FROM runs ORDER BY id")]


def test_failure_alert_names_the_run_and_then_a_recovery(env, cli, http_recorder):
    port, received = http_recorder.port, http_recorder.json_bodies
    configure(env, f"json://127.0.0.1:{port}/hook")
    flag = env.root / "fail"
    flag.write_text("x")
    manifest(env, f'echo "disk full"; test ! -e {flag}')
    cli(*env.args("install"))
    assert cli(*env.args("run", "job"))[0] == 1
    assert len(received()) == 1
    body = received()[0]["message"]
    for part in ("task: job", "status: failed", "exit code: 1", "attempt 1 of 1", "disk full"):
        assert part in body
    assert socket.gethostname() in body
    assert received()[0]["title"].startswith("[agency-cron] FAILED job")
    flag.unlink()
    assert cli(*env.args("run", "job"))[0] == 0
    assert len(received()) == 2 and "RECOVERED" in received()[1]["title"]
    assert cli(*env.args("run", "job"))[0] == 0
    assert len(received()) == 2  # a plain success says nothing
    assert alert_column(env)[0].startswith("failure: sent to 1 target")


def test_retries_alert_once_after_the_last_attempt(env, cli, http_recorder):
    port, received = http_recorder.port, http_recorder.json_bodies
    configure(env, f"json://127.0.0.1:{port}/hook")
    manifest(env, "exit 3", retries=1)
    cli(*env.args("install"))
    assert cli(*env.args("run", "job"))[0] == 3
    assert len(received()) == 1 and "attempt 2 of 2" in received()[0]["message"]


def test_retries_that_end_in_success_send_nothing(env, cli, http_recorder):
    port, received = http_recorder.port, http_recorder.json_bodies
    configure(env, f"json://127.0.0.1:{port}/hook")
    counter = env.root / "count"
    manifest(
        env,
        f"n=$(cat {counter} 2>/dev/null || echo 0); n=$((n+1)); echo $n > {counter}; [ $n -ge 3 ]",
        retries=2,
    )
    cli(*env.args("install"))
    assert cli(*env.args("run", "job"))[0] == 0
    assert received() == []


def test_alerts_stay_off_unless_enabled_or_forced(env, cli, http_recorder):
    port, received = http_recorder.port, http_recorder.json_bodies
    configure(env, f"json://127.0.0.1:{port}/hook", on_failure=False)
    manifest(env, "exit 4")
    cli(*env.args("install"))
    assert cli(*env.args("run", "job"))[0] == 4
    assert received() == []
    assert cli(*env.args("run", "job", "--alert"))[0] == 4
    assert len(received()) == 1


def test_a_target_that_refuses_never_changes_the_exit_code(env, cli):
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    configure(env, f"json://127.0.0.1:{port}/hook")
    manifest(env, "exit 5")
    cli(*env.args("install"))
    assert cli(*env.args("run", "job"))[0] == 5
    assert alert_column(env)[0].startswith("failure: failed")
    assert "alert (failure): failed" in (env.log_dir / "job.log").read_text()


def test_alert_credentials_never_reach_the_log_or_history(env, cli, http_recorder):
    port, received = http_recorder.port, http_recorder.json_bodies
    configure(env, f"json://user:hunter2pass@127.0.0.1:{port}/hook")
    manifest(env, "echo json://user:hunter2pass@127.0.0.1/hook; exit 1")
    cli(*env.args("install"))
    assert cli(*env.args("run", "job"))[0] == 1
    assert len(received()) == 1 and "hunter2pass" not in json.dumps(received())
    assert "hunter2pass" not in (env.log_dir / "job.log").read_text()
    with sqlite3.connect(env.state_dir / "history.db") as db:
        assert "hunter2pass" not in repr(db.execute("SELECT * FROM runs").fetchall())
