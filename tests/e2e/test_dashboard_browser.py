"""The dashboard in a real browser: Debian's chromium, headless, driven by Playwright.

Opens the generated index.html from file://, switches to "Alerts & Logs", filters the log
rows by type and by level, takes a screenshot, and checks that the page never makes a
request that leaves it (only file: and data:), that its CSP blocks any attempt to, and that
it reads without JS too.

Needs `apt-get install chromium` and `pip install playwright` (never `playwright install`:
the system chromium is used). Skipped without them on a workstation; under CI a missing
browser fails the test instead, so that a forgotten install step cannot pass unnoticed.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from agency_cron import dashboard, history, layout
from agency_cron.config import load_settings
from agency_cron.manifest import load_manifest

pytestmark = pytest.mark.slow

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
MANIFEST = """\
tasks:
  - name: health-check
    description: Verifies all services are running properly
    schedule: "0 2 * * *"
    log: health.log
    command: echo health
  - name: backup-verify
    description: Confirms data is properly backed up
    schedule: "0 3 * * 0"
    log: backup.log
    command: echo backup
  - name: dashboard-update
    description: Updates dashboard data to reflect current state
    schedule: "@hourly"
    log: dashboard.log
    command: echo dashboard
  - name: integrations-refresh
    description: Maintains component integrations
    schedule: "0 1 * * *"
    log: integration.log
    command: echo integrations
"""
STAMP = "2024-05-01T0{hour}:00:0{second}.000+00:00"
LOGS = {
    "health.log": [
        "{t0} agency-cron: start task=health-check run=aa attempt=1/1",
        "web: HTTP 200",
        "WARNING: disk /srv at 85%",
        "{t1} agency-cron: end task=health-check run=aa exit=0 status=success",
    ],
    "backup.log": [
        "{t0} agency-cron: start task=backup-verify run=bb attempt=1/1",
        "backup of db failed: archive is 3 days old",
        "{t1} agency-cron: end task=backup-verify run=bb exit=3 status=failed",
    ],
    "dashboard.log": ["{t0} agency-cron: end task=dashboard-update run=cc status=success"],
    "integration.log": ["{t0} agency-cron: end task=integrations-refresh run=dd status=success"],
    "other-tool.log": [],
    "cron/backup-verify.sh.log": [
        "{t0} agency-cron: start task=backup-verify run=bb attempt=1/1",
        "backup of db failed: archive is 3 days old",
    ],
}
CHECKS = [
    ("health", "web", "http", 1, "HTTP 200", STAMP.format(hour=2, second=1)),
    ("health", "db", "connect", 0, "connection refused", STAMP.format(hour=2, second=1)),
    ("backup", "db", "age", 1, "newest archive 3h old", STAMP.format(hour=3, second=0)),
]


def write_site(env) -> Path:
    """A site with logs of every type, two recorded runs and check results; its index.html."""
    env.write_manifest(MANIFEST)
    settings = load_settings(env.config, environ={})
    for name, lines in LOGS.items():
        path = settings.log_dir / name
        path.parent.mkdir(parents=True, exist_ok=True)
        text = "\n".join(lines).format(
            t0=STAMP.format(hour=2, second=0), t1=STAMP.format(hour=2, second=5)
        )
        path.write_text(text + "\n" if text else "")
    conn = history.connect(str(layout.history_path(settings)))
    for task, status, code in (("health-check", "success", 0), ("backup-verify", "failed", 3)):
        history.record(
            conn,
            {
                "task": task,
                "run_id": task[:2],
                "attempt": 1,
                "attempts": 1,
                "started_at": STAMP.format(hour=2, second=0),
                "finished_at": STAMP.format(hour=2, second=5),
                "duration_s": 5.0,
                "exit_code": code,
                "status": status,
                "output_tail": "backup of db failed: archive is 3 days old" if code else "",
            },
        )
    keys = ("kind", "component", "check_name", "ok", "detail", "checked_at")
    history.record_checks(conn, [dict(zip(keys, row, strict=True)) for row in CHECKS])
    conn.close()
    manifest = load_manifest(env.manifest, settings)
    return dashboard.write(settings, manifest, env.root / "dashboard")[1]


@pytest.fixture
def listener(http_recorder) -> tuple[str, list]:
    """An HTTP server on 127.0.0.1 that records every request (the recorder of
    tests/conftest.py, answering 204): proof that none got out."""
    http_recorder.answer(204)
    return http_recorder.url, http_recorder.requests


def visible_rows(page, selector: str = "#log-table tbody tr") -> list[tuple[str, str]]:
    """(type, level) of each log row the browser shows."""
    shown = page.eval_on_selector_all(
        selector,
        "rows => rows.filter(r => r.offsetParent !== null)"
        ".map(r => [r.dataset.type, r.dataset.level])",
    )
    return [tuple(row) for row in shown]


def test_tabs_filters_screenshot_and_no_request_leaves(env, browser, listener, tmp_path):
    index = write_site(env)
    page = browser.new_page()
    requests: list[str] = []
    problems: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda error: problems.append(str(error)))
    failed: dict[str, str | None] = {}
    page.on("requestfailed", lambda request: failed.update({request.url: request.failure}))
    page.goto(index.as_uri())

    assert page.is_visible("#task-table") and page.is_hidden("#panel-logs")
    assert "At 02:00" in page.inner_text("#task-table")
    page.get_by_role("tab", name="Alerts & Logs").click()
    assert page.is_visible("#panel-logs") and page.is_hidden("#panel-tasks")
    assert page.get_attribute("#tab-logs", "aria-selected") == "true"

    every = visible_rows(page)
    assert {kind for kind, _ in every} == {"health", "backup", "dashboard", "integration", "cron"}
    assert page.inner_text("#log-count") == str(len(every))

    page.locator('#type-filter input[value="health"]').uncheck()
    shown = visible_rows(page)
    assert shown and "health" not in {kind for kind, _ in shown}
    assert len(shown) == sum(1 for kind, _ in every if kind != "health")
    assert page.eval_on_selector_all(
        '#log-table tr[data-type="health"]', "rows => rows.every(r => r.offsetParent === null)"
    )
    assert page.inner_text("#log-count") == str(len(shown))

    page.locator('#level-filter input[value="warning"]').uncheck()
    page.locator('#level-filter input[value="info"]').uncheck()
    errors = visible_rows(page)
    assert errors and {level for _, level in errors} == {"error"}
    assert {kind for kind, _ in errors} == {"backup", "cron"}
    assert page.inner_text("#log-count") == str(len(errors))

    page.locator('#type-filter input[value="health"]').check()
    assert ("health", "error") not in visible_rows(page)  # health has no errors: none shown
    page.locator('#level-filter input[value="warning"]').check()
    assert ("health", "warning") in visible_rows(page)

    shot = tmp_path / "dashboard.png"
    page.screenshot(path=str(shot), full_page=True)
    data = shot.read_bytes()
    assert data.startswith(PNG_SIGNATURE) and len(data) > 5000
    if os.environ.get("DASHBOARD_SCREENSHOT"):
        shutil.copyfile(shot, os.environ["DASHBOARD_SCREENSHOT"])

    assert requests == [index.as_uri()]
    assert all(url.split(":", 1)[0] in ("file", "data") for url in requests)
    assert problems == []

    # Even script run in the page cannot reach out: the CSP refuses fetch and images.
    url, hits = listener
    outcome = page.evaluate(
        """async (url) => {
            new Image().src = url + "/pixel.png";
            try { await fetch(url + "/fetch"); return "fetched"; } catch (e) { return "blocked"; }
        }""",
        url,
    )
    page.wait_for_timeout(300)
    assert outcome == "blocked" and hits == []
    # Chromium reports the image as a request that failed on the CSP, before any network.
    attempted = [r for r in requests if not r.startswith(("file:", "data:"))]
    assert all(failed.get(r) == "csp" for r in attempted), (attempted, failed)


def test_tab_from_hash_and_reading_without_js(env, browser):
    index = write_site(env)
    page = browser.new_page()
    page.goto(index.as_uri() + "#logs")
    assert page.is_visible("#panel-logs") and page.is_hidden("#panel-tasks")

    context = browser.new_context(java_script_enabled=False)
    try:
        plain = context.new_page()
        plain.goto(index.as_uri())
        for panel in ("#panel-tasks", "#panel-checks", "#panel-logs"):
            assert plain.is_visible(panel)
        assert plain.is_hidden("#log-filters")  # filters need JS: not shown without it
        assert "connection refused" in plain.inner_text("#panel-checks")
        assert len(visible_rows(plain)) == int(plain.inner_text("#log-count"))
    finally:
        context.close()
