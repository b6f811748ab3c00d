"""The static dashboard on a real installation: real runs through the wrappers, a real
history with check results, real logs; then dashboard.json and index.html as written."""

from __future__ import annotations

import json
import os
import re
import subprocess
from datetime import datetime
from pathlib import Path

import pytest

from agency_cron import dashboard, history, layout
from agency_cron.config import load_settings
from agency_cron.manifest import load_manifest
from agency_cron.schedule import local_zone

EVIL = "<script>alert(1)</script>"
LOG_URL = "https://status.example.com/ok"
MANIFEST = f"""\
tasks:
  - name: health-check
    description: Verifies all services are running properly
    schedule: "0 2 * * *"
    log: health.log
    script: |
      echo "checking web: ok"
      echo "WARNING: disk /srv at 85%"
      echo '{EVIL}'
      echo "status page {LOG_URL}"
  - name: backup-verify
    description: Confirms data is properly backed up
    schedule: "0 3 * * 0"
    log: backup.log
    script: |
      echo "verifying db backup"
      echo "backup of db failed: archive is 3 days old" >&2
      exit 3
  - name: dashboard-update
    schedule: "@hourly"
    log: dashboard.log
    command: echo dashboard refreshed
  - name: integrations-refresh
    schedule: "0 1 * * *"
    log: integration.log
    command: echo integrations refreshed
  - name: cleanup
    schedule: ["*/15 * * * *", "@reboot"]
    command: echo cleaned
  - name: paused
    schedule: "@daily"
    command: echo never
    enabled: false
"""
CHECKS = [
    # An older failure of web/http: the dashboard shows only the newest result per check.
    ("health", "web", "http", 0, "HTTP 502", "2024-05-01T01:00:00.000+00:00"),
    ("health", "web", "http", 1, "HTTP 200 in 0.05s", "2024-05-01T02:00:00.000+00:00"),
    ("health", "db", "connect", 0, "connection refused", "2024-05-01T02:00:01.000+00:00"),
    ("backup", "db", "age", 1, "newest archive 3h old", "2024-05-01T03:00:00.000+00:00"),
    ("integration", "mail", "smtp", 1, "250 OK", "2024-05-01T01:00:00.000+00:00"),
]


def run_wrapper(env, name: str) -> int:
    """Run the task's wrapper as cron would (AGENCY_CRON_SCHEDULED=cron stands in for the
    daemon among its ancestors: the cron log is written)."""
    environ = {k: v for k, v in os.environ.items() if k != "AGENCY_CRON_NO_CRON_LOG"}
    environ["AGENCY_CRON_SCHEDULED"] = "cron"
    wrapper = layout.wrapper_path(load(env)[0], name)
    done = subprocess.run([str(wrapper)], capture_output=True, env=environ, timeout=120)
    return done.returncode


def load(env):
    settings = load_settings(env.config, environ={})
    return settings, load_manifest(env.manifest, settings)


def record_checks(settings) -> None:
    conn = history.connect(str(layout.history_path(settings)))
    keys = ("kind", "component", "check_name", "ok", "detail", "checked_at")
    history.record_checks(
        conn, [{**dict(zip(keys, row, strict=True)), "duration_s": 0.25} for row in CHECKS]
    )
    conn.close()


@pytest.fixture
def site(env, cli):
    """An installed manifest, every enabled task run once through its wrapper, checks recorded."""
    env.write_manifest(MANIFEST)
    code, _, err = cli(*env.args("install"))
    assert code == 0, err
    codes = {
        name: run_wrapper(env, name)
        for name in ("health-check", "backup-verify", "dashboard-update", "integrations-refresh")
    }
    codes["cleanup"] = run_wrapper(env, "cleanup")
    assert codes == {name: 3 if name == "backup-verify" else 0 for name in codes}
    settings, manifest = load(env)
    record_checks(settings)
    return settings, manifest


@pytest.fixture
def written(site, tmp_path):
    """write() into a fresh folder: (data from dashboard.json, index.html text, paths)."""
    settings, manifest = site
    json_path, html_path = dashboard.write(settings, manifest, tmp_path / "out")
    data = json.loads(json_path.read_text())
    return data, html_path.read_text(), (json_path, html_path)


def by_name(rows: list[dict]) -> dict[str, dict]:
    return {row["name"]: row for row in rows}


def test_write_returns_both_files(written, tmp_path):
    _, _, (json_path, html_path) = written
    assert (json_path, html_path) == (tmp_path / "out/dashboard.json", tmp_path / "out/index.html")
    assert oct(json_path.stat().st_mode & 0o777) == oct(0o644)
    assert not list((tmp_path / "out").glob(".*.tmp"))


def test_json_tasks(written):
    data, _, _ = written
    assert data["version"] == 1 and data["host"] and data["generated_at"]
    assert [t["name"] for t in data["tasks"]] == [
        "health-check",
        "backup-verify",
        "dashboard-update",
        "integrations-refresh",
        "cleanup",
        "paused",
    ]
    tasks = by_name(data["tasks"])
    health = tasks["health-check"]
    assert health["state"] == "ok" and health["last_status"] == "success"
    assert (health["runs"], health["failures"], health["last_error"]) == (1, 0, None)
    assert health["schedule"] == ["0 2 * * *"] and health["schedule_text"] == "At 02:00"
    assert health["description"] == "Verifies all services are running properly"
    assert health["last_run"] and health["next_run"]
    backup = tasks["backup-verify"]
    assert (backup["state"], backup["last_status"], backup["failures"]) == ("failing", "failed", 1)
    assert backup["last_error"] == "backup of db failed: archive is 3 days old"
    assert "Every 15 minutes" in tasks["cleanup"]["schedule_text"]
    assert "At system startup" in tasks["cleanup"]["schedule_text"]
    paused = tasks["paused"]
    assert (paused["state"], paused["next_run"], paused["runs"]) == ("disabled", None, 0)


def test_json_checks_keep_the_newest_result_per_check(written):
    data, _, _ = written
    health = {(r["component"], r["check_name"]): r for r in data["health"]}
    assert set(health) == {("web", "http"), ("db", "connect")}
    assert health["web", "http"]["ok"] is True
    assert health["web", "http"]["detail"] == "HTTP 200 in 0.05s"
    assert health["db", "connect"]["ok"] is False
    assert [r["component"] for r in data["backup"]] == ["db"]
    assert [r["component"] for r in data["integrations"]] == ["mail"]
    sources = {(a["source"], a["name"]) for a in data["alerts"]}
    assert sources == {("task", "backup-verify"), ("health", "db/connect")}


def test_json_logs_types_levels_tasks(written):
    logs = written[0]["logs"]
    assert {e["type"] for e in logs} == {
        "health",
        "backup",
        "dashboard",
        "integration",
        "cron",
        "other",
    }
    by_text = {(e["type"], e["text"]): e for e in logs}
    warning = by_text["health", "WARNING: disk /srv at 85%"]
    assert (warning["level"], warning["task"], warning["source"]) == (
        "warning",
        "health-check",
        "health.log",
    )
    failed = by_text["backup", "backup of db failed: archive is 3 days old"]
    assert (failed["level"], failed["task"]) == ("error", "backup-verify")
    ends = [e for e in logs if e["type"] == "backup" and "status=failed" in e["text"]]
    assert ends and all(e["level"] == "error" for e in ends)
    assert by_text["other", "cleaned"]["task"] == "cleanup"
    cron = [e for e in logs if e["type"] == "cron"]
    assert {e["source"] for e in cron} >= {"cron/backup-verify.sh.log", "cron/cleanup.sh.log"}
    assert all(e["task"] for e in cron)
    # Every line got a time (the runner stamps its own lines; output takes its run's time),
    # and the list is newest first.
    times = [e["time"] for e in logs]
    assert all(times) and times == sorted(times, reverse=True)
    assert not any(re.match(r"\d{4}-\d{2}-\d{2}T", e["text"]) for e in logs)


def test_html_shows_tasks_schedules_and_tabs(written):
    data, html, _ = written
    for task in data["tasks"]:
        assert f'data-task="{task["name"]}"' in html
    assert "At 02:00" in html and "<code>0 2 * * *</code>" in html
    assert 'class="badge state-failing"' in html and 'class="badge state-disabled"' in html
    assert "Health &amp; Backups" in html and "Alerts &amp; Logs" in html
    for kind in ("health", "backup", "integration", "dashboard", "cron", "other"):
        assert f'name="type" value="{kind}"' in html
    assert html.count('<tr class="level-row-') == len(data["logs"])
    assert 'data-type="backup" data-level="error"' in html
    assert "connection refused" in html


def test_html_is_self_contained(written):
    _, html, _ = written
    assert (
        "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:"
        in html
    )
    assert '<link rel="icon" href="data:,">' in html
    # Every src=/href=/action= is a data: URL: nothing for the browser to fetch.
    targets = re.findall(r"""\b(?:src|href|action|srcset)\s*=\s*["']?([^"'\s>]*)""", html)
    assert targets == ["data:,"]
    assert "url(" not in html and "@import" not in html
    # The only URLs in the page are the one a task printed (a log row and the JSON data).
    assert set(re.findall(r"https?://[^\s\"'<\\]*", html)) == {LOG_URL}


def test_html_escapes_log_text(written):
    _, html, _ = written
    assert EVIL not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert html.count("<script") == 2  # the JSON data block and the page's own code
    block = re.search(r'<script type="application/json" id="data">(.*?)</script>', html, re.S)
    assert block and "</" not in block.group(1)
    assert EVIL in json.dumps(json.loads(block.group(1)))  # still there, as data


def test_embedded_data_matches_the_json_file(written):
    data, html, _ = written
    block = re.search(r'<script type="application/json" id="data">(.*?)</script>', html, re.S)
    assert json.loads(block.group(1)) == data


def test_collect_now_fixes_the_clock_and_bounds_lines(site):
    settings, manifest = site
    now = datetime(2030, 1, 1, 0, 0, tzinfo=local_zone())
    data = dashboard.collect(settings, manifest, now=now, log_lines=2)
    assert data["generated_at"] == now.isoformat()
    health = by_name(data["tasks"])["health-check"]
    assert health["next_run"] == datetime(2030, 1, 1, 2, 0, tzinfo=local_zone()).isoformat()
    per_source: dict[str, int] = {}
    for entry in data["logs"]:
        per_source[entry["source"]] = per_source.get(entry["source"], 0) + 1
    assert per_source and max(per_source.values()) == 2


def test_fresh_installation_without_history_or_logs(env, tmp_path):
    env.write_manifest(MANIFEST)
    settings, manifest = load(env)
    json_path, html_path = dashboard.write(settings, manifest, tmp_path / "out")
    data = json.loads(json_path.read_text())
    assert {t["state"] for t in data["tasks"]} == {"never-run", "disabled"}
    assert data["health"] == data["backup"] == data["integrations"] == data["logs"] == []
    assert "No health check results recorded yet." in html_path.read_text()


def test_tail_lines_reads_only_the_end(tmp_path):
    path = tmp_path / "big.log"
    with path.open("w") as handle:
        for number in range(200_000):
            handle.write(f"line {number} {'x' * (number % 37)}\n")
    assert path.stat().st_size > dashboard.TAIL_MAX_BYTES
    expected = path.read_text().splitlines()[-1500:]
    assert dashboard.tail_lines(path, 1500) == expected
    assert dashboard.tail_lines(path, 1) == expected[-1:]
    assert dashboard.tail_lines(path, 0) == []


def test_tail_lines_is_bounded_by_bytes(tmp_path):
    path = tmp_path / "huge-line.log"
    path.write_bytes(b"start\n" + b"y" * (3 * dashboard.TAIL_MAX_BYTES) + b"\nlast\n")
    assert dashboard.tail_lines(path, 10) == ["last"]
    short = tmp_path / "short.log"
    short.write_bytes(b"one\ntwo\nthree")  # no final newline: the last line still counts
    assert dashboard.tail_lines(short, 2) == ["two", "three"]
    assert dashboard.tail_lines(short, 10) == ["one", "two", "three"]


@pytest.mark.parametrize(
    ("text", "level"),
    [
        ("end task=a run=1 attempt=1/1 duration=0.1s exit=1 status=failed", "error"),
        ("end task=a run=1 attempt=1/1 duration=0.1s exit=124 status=timeout", "error"),
        ("FATAL: out of memory", "error"),
        ("Connection Timeout after 30s", "error"),
        ("warning: could not record the run", "warning"),
        ("WARN disk almost full", "warning"),
        ("end task=a run=1 attempt=1/1 duration=0.1s exit=0 status=success", "info"),
        ("errors=0 failures=0", "info"),
        ("forewarned is forearmed", "info"),
    ],
)
def test_level_of(text, level):
    assert dashboard.level_of(text) == level


def test_parse_lines_times_and_tasks():
    lines = [
        "leftover from before",
        "2024-05-01T02:00:00.123+00:00 agency-cron: start task=health-check run=ab attempt=1/1",
        "\x1b[31mred output\x1b[0m",
        "2024-05-01T04:00:01+02:00 agency-cron: end task=health-check run=ab status=success",
    ]
    entries = dashboard.parse_lines(lines, "cron", [], "cron/x.log")
    assert [e["time"] for e in entries] == [
        None,
        "2024-05-01T02:00:00.123+00:00",
        "2024-05-01T02:00:00.123+00:00",
        "2024-05-01T02:00:01.000+00:00",
    ]
    assert entries[2]["text"] == "red output"
    assert [e["task"] for e in entries] == [None, "health-check", None, "health-check"]


def test_log_sources_types(env):
    env.write_manifest(MANIFEST)
    settings, manifest = load(env)
    cron = settings.log_dir / "cron"
    cron.mkdir(parents=True)
    (cron / "health-check.sh.log").write_text("x\n")
    (cron / "health_check_cron.sh.log").write_text("seed-era output\n")
    found = {
        str(Path(p).relative_to(settings.log_dir)): (kind, owners)
        for p, kind, owners in dashboard.log_sources(settings, manifest)
    }
    assert found["health.log"] == ("health", ["health-check"])
    assert found["integration.log"] == ("integration", ["integrations-refresh"])
    assert found["cleanup.log"] == ("other", ["cleanup"])
    assert found["cron/health-check.sh.log"] == ("cron", ["health-check"])
    assert found["cron/health_check_cron.sh.log"] == ("cron", [])
