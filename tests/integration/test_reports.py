"""status, log-summary and health over a history written by real runs."""

from __future__ import annotations

import json
import os
import sqlite3
import time

MANIFEST = """\
tasks:
  - name: good
    schedule: "*/5 * * * *"
    command: echo all fine
  - name: bad
    schedule: "0 2 * * *"
    command: echo "disk /srv is full" >&2; exit 3
  - name: quiet
    schedule: "@hourly"
    command: "true"
"""


def test_log_summary_on_real_runs(env, cli):
    env.write_manifest(MANIFEST)
    assert cli(*env.args("install"))[0] == 0
    assert cli(*env.args("run", "good"))[0] == 0
    assert cli(*env.args("run", "good"))[0] == 0
    assert cli(*env.args("run", "bad"))[0] == 3
    code, out, _ = cli(*env.args("log-summary", "--json", "--since", "1h"))
    assert code == 0
    rows = {row["name"]: row for row in json.loads(out)["tasks"]}
    assert rows["good"]["runs"] == 2 and rows["good"]["failures"] == 0
    assert rows["good"]["last_status"] == "success"
    assert rows["bad"]["runs"] == 1 and rows["bad"]["failures"] == 1
    assert rows["bad"]["last_exit_code"] == 3
    assert rows["bad"]["last_error"] == ["disk /srv is full"]
    assert rows["quiet"]["last_run"] is None and rows["quiet"]["runs"] == 0
    assert all(row["next_run"] for row in rows.values())


def test_log_summary_window_and_task_filter(env, cli):
    env.write_manifest(MANIFEST)
    cli(*env.args("install"))
    cli(*env.args("run", "good"))
    db = sqlite3.connect(env.state_dir / "history.db")
    db.execute("UPDATE runs SET started_at = '2020-01-01T00:00:00.000+00:00'")
    db.commit()
    cli(*env.args("run", "good"))
    code, out, _ = cli(*env.args("log-summary", "--json", "--since", "1d", "--task", "good"))
    summary = json.loads(out)
    assert [row["name"] for row in summary["tasks"]] == ["good"]
    assert summary["tasks"][0]["runs"] == 1  # the 2020 run is outside the window
    assert cli(*env.args("log-summary", "--since", "soon"))[0] == 2
    assert cli(*env.args("log-summary", "--task", "nope"))[0] == 2


def test_log_summary_html_escapes_output(env, cli):
    env.write_manifest(MANIFEST.replace('echo "disk /srv is full"', "echo '<script>x</script>'"))
    cli(*env.args("install"))
    cli(*env.args("run", "bad"))
    page = env.root / "summary.html"
    assert cli(*env.args("log-summary", "--html", str(page)))[0] == 0
    html = page.read_text()
    assert "&lt;script&gt;x&lt;/script&gt;" in html and "<script>x" not in html


def test_health_reports_overdue_tasks(env, cli):
    env.write_manifest(MANIFEST)
    cli(*env.args("install"))
    code, out, _ = cli(*env.args("health"))
    assert code == 0 and "none overdue" in out
    # Installed two days ago and never run: every task missed its schedule.
    old = time.time() - 2 * 86400
    for spec in (env.state_dir / "tasks").glob("*.json"):
        os.utime(spec, (old, old))
    cli(*env.args("run", "good"))  # good succeeds now: not overdue
    code, out, _ = cli(*env.args("health", "--json"))
    assert code == 1
    overdue = {item["name"] for item in json.loads(out)["overdue"]}
    assert overdue == {"bad", "quiet"}


def test_status_counts(env, cli):
    env.write_manifest(MANIFEST)
    cli(*env.args("install"))
    cli(*env.args("run", "bad"))
    cli(*env.args("run", "bad"))
    code, out, _ = cli(*env.args("status", "bad", "--json"))
    row = json.loads(out)
    assert code == 0
    assert (row["runs"], row["successes"], row["failures"]) == (2, 0, 2)
    assert row["state"] == "failing" and row["last_error"] == "disk /srv is full"
    assert cli(*env.args("status", "nope"))[0] == 2
