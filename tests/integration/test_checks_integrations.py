"""Integration refreshes against a real HTTP API on 127.0.0.1 and real commands, and
`python -m agency_cron.checks integrations` as a real process: secrets stay out of the output
and history, results and durations land in history.db, --alert reaches a real Apprise target.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from agency_cron.checks import integrations, web
from agency_cron.checks.models import validate_section

TOKEN = "tok-5f2c9e1d7a"
PASSWORD = "pw-83hd72kq"


@pytest.fixture
def api(http_recorder):
    """/refresh wants `Bearer TOKEN` and answers 204; /fail is 500; /alert takes Apprise posts
    (the recorder of tests/conftest.py); anything else is 404."""
    http_recorder.answer(404)
    http_recorder.answer(500, path="/fail")
    http_recorder.answer(200, path="/alert")
    http_recorder.answer(200, path="/ok")
    http_recorder.respond(
        lambda request: (
            (204 if request.header("Authorization") == f"Bearer {TOKEN}" else 401),
            b"",
            {},
        ),
        path="/refresh",
    )
    return http_recorder.url


def requests_seen(recorder) -> list[dict]:
    """What the API received: method, path, Authorization, Content-Type and body of each."""
    return [
        {
            "method": r.method,
            "path": r.path,
            "auth": r.header("Authorization"),
            "type": r.header("Content-Type"),
            "body": r.body.decode(),
        }
        for r in recorder.requests
    ]


def load(text: str, variables: dict | None = None) -> tuple:
    problems: list[str] = []
    found = validate_section(
        Path("tasks.yaml"), "integrations", yaml.safe_load(text), variables or {}, problems
    )
    assert problems == []
    return found


def test_http_refresh_sends_method_headers_and_body(api, http_recorder):
    (crm,) = load(
        f"""
        - name: crm
          http:
            method: POST
            url: {api}/refresh
            headers: {{Authorization: "Bearer ${{CRM_TOKEN}}", Content-Type: application/json}}
            body: '{{"full": true}}'
            status: 204
        """,
        {"CRM_TOKEN": TOKEN},
    )
    result = integrations.refresh(crm)
    assert (result.kind, result.component, result.check_name, result.ok) == (
        "integration",
        "crm",
        "http",
        True,
    )
    assert result.detail.startswith("204 in ")
    assert requests_seen(http_recorder) == [
        {
            "method": "POST",
            "path": "/refresh",
            "auth": f"Bearer {TOKEN}",
            "type": "application/json",
            "body": '{"full": true}',
        }
    ]


def test_http_refresh_with_the_wrong_answer_fails(api, http_recorder):
    (crm,) = load(f"[{{name: crm, http: {{method: PUT, url: '{api}/refresh', status: 204}}}}]")
    result = integrations.refresh(crm)
    assert (result.ok, result.detail) == (False, "expected 204, got 401")
    assert requests_seen(http_recorder)[0]["method"] == "PUT"


def test_command_refreshes_and_their_order(tmp_path):
    marker = tmp_path / "order"
    found = load(
        f"""
        - {{name: first, command: "sleep 0.5; echo first >> {marker}"}}
        - {{name: second, command: "echo second >> {marker}"}}
        - {{name: broken, command: "echo 'api said no' >&2; exit 7"}}
        - {{name: stuck, command: "sleep 30", timeout: 1s}}
        """
    )
    started = time.monotonic()
    results = integrations.run_integrations(list(found))
    assert [(r.component, r.check_name, r.ok) for r in results] == [
        ("first", "command", True),
        ("second", "command", True),
        ("broken", "command", False),
        ("stuck", "command", False),
    ]
    assert marker.read_text() == "first\nsecond\n"  # one after another, in manifest order
    assert results[0].duration_s >= 0.5
    assert results[2].detail == "exit 7: api said no"
    assert results[3].detail == "timed out after 1s"
    assert time.monotonic() - started < 5


def test_a_crashing_refresh_is_a_failed_result(monkeypatch, api):
    def broken(*args, **kwargs):
        raise RuntimeError("bug")

    monkeypatch.setattr(web, "fetch", broken)
    (crm,) = load(f"[{{name: crm, http: {{url: '{api}/ok'}}}}]")
    result = integrations.refresh(crm)
    assert (result.ok, result.detail) == (False, "could not run: RuntimeError: bug")


# --- the CLI as cron runs it ----------------------------------------------------------------


@pytest.fixture
def site(env, api):
    """A config.env holding secrets, and a manifest of three integrations (one passes)."""
    env.add_config(CRM_TOKEN=TOKEN, DB_PASSWORD=PASSWORD)
    port = api.rsplit(":", 1)[1]
    env.write_manifest(
        f"""\
        tasks: []
        integrations:
          - name: crm
            description: Pull the CRM's contacts
            http:
              method: POST
              url: {api}/refresh
              headers: {{Authorization: "Bearer ${{CRM_TOKEN}}"}}
              status: 204
          - name: broken
            http: {{url: "http://sync:${{DB_PASSWORD}}@127.0.0.1:{port}/fail"}}
          - name: script
            command: "echo connecting with ${{DB_PASSWORD}} and ${{CRM_TOKEN}}; exit 1"
        """
    )
    return env


def run_checks(env, *args: str, extra: dict | None = None) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if k not in ("AGENCY_CRON_RUN_ID", "ALERT_URLS")}
    return env.checks("integrations", *args, environ={**environ, **(extra or {})})


def test_cli_records_results_and_never_shows_secrets(site, http_recorder):
    done = run_checks(site, extra={"AGENCY_CRON_RUN_ID": "run-7"})
    assert done.returncode == 1, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("OK   crm/http        204 in ")
    assert lines[1] == "FAIL broken/http     expected 200, got 500"
    assert lines[2] == "FAIL script/command  exit 1: connecting with *** and ***"
    assert lines[-1] == "integrations: 3 checks, 2 failed: broken, script"
    assert requests_seen(http_recorder)[1]["auth"].startswith(
        "Basic "
    )  # the URL's credentials were used...
    with sqlite3.connect(site.state_dir / "history.db") as conn:
        rows = conn.execute(
            "SELECT kind, component, check_name, ok, detail, duration_s, run_id FROM check_results"
        ).fetchall()
    assert [row[:4] for row in rows] == [
        ("integration", "crm", "http", 1),
        ("integration", "broken", "http", 0),
        ("integration", "script", "command", 0),
    ]
    assert all(row[5] is not None and row[5] >= 0 and row[6] == "run-7" for row in rows)
    stored = json.dumps(rows) + done.stdout + done.stderr
    for secret in (TOKEN, PASSWORD):  # ...and shown nowhere
        assert secret not in stored


def test_cli_selection_and_json(site):
    done = run_checks(site, "--components", "crm", "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert (report["version"], report["kind"], report["ok"], report["checks"]) == (
        1,
        "integration",
        True,
        1,
    )
    assert report["results"][0]["component"] == "crm"
    done = run_checks(site, "--components", "crm,erp")
    assert done.returncode == 2
    assert "unknown integration erp (declared: crm, broken, script)" in done.stderr


def test_cli_alert_outside_the_runner_reaches_apprise(site, api, http_recorder):
    target = "json://" + api.removeprefix("http://") + "/alert"
    done = run_checks(site, "--components", "broken", "--alert", extra={"ALERT_URLS": target})
    assert done.returncode == 1
    assert done.stderr.strip() == "alert: sent to 1 target(s)"
    (alert,) = [r for r in requests_seen(http_recorder) if r["path"] == "/alert"]
    message = json.loads(alert["body"])
    assert "FAILED" in message["title"]
    assert "integrations: 1 check, 1 failed: broken" in message["message"]
    assert PASSWORD not in alert["body"]


def test_cli_alert_is_left_to_the_runner_inside_a_run(site, api, http_recorder):
    target = "json://" + api.removeprefix("http://") + "/alert"
    done = run_checks(
        site,
        "--components",
        "broken",
        "--alert",
        extra={"ALERT_URLS": target, "AGENCY_CRON_RUN_ID": "run-8"},
    )
    assert (done.returncode, done.stderr) == (1, "")
    assert not [r for r in requests_seen(http_recorder) if r["path"] == "/alert"]
