"""The live dashboard of `agency-cron serve` in a real browser: Debian's chromium, headless.

A real `python -m agency_cron serve` on 127.0.0.1 over a throwaway installation (a `file:`
crontab, the `env` fixture's folders), driven by Playwright through the system chromium
(never `playwright install`). With the admin token: the tasks table appears, "Run now"
starts a real run whose figures and log lines arrive with the page's own refresh (no
reload), Pause and Resume comment the task's crontab line out and back, and the log level
filter hides rows and survives the automatic refresh. With the read-only token: the same
table, but "Run now" is refused in #live-status and starts nothing. No request of the page
ever leaves the server's origin, and no token is ever put in a URL.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

pytestmark = pytest.mark.slow

ADMIN_TOKEN = "admin-0123456789abcdef-secret"
READ_TOKEN = "read-0123456789abcdef-secret"
# The README's picture is refreshed only when asked for (AGENCY_CRON_DOCS_SCREENSHOT=1):
# a test run must not change the checkout.
DOCS_SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "serve-dashboard.png"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
MARKER = "serve-e2e-marker-alpha"
MANIFEST = f"""\
tasks:
  - name: alpha
    description: Echoes a marker line
    schedule: "0 3 * * *"
    command: echo {MARKER}
  - name: beta
    description: Echoes another marker line
    schedule: "@hourly"
    command: echo serve-e2e-marker-beta
  - name: gamma
    description: Reports a problem in its output
    schedule: "30 4 * * *"
    command: echo 'ERROR something'
"""
# Several refresh periods (5 s each): a deadline for things to appear, not a timing target.
DEADLINE_S = 60
# Records, in the page, every text #live-status shows and every swap of #content: the
# refusal can be overwritten by the next refresh before the test gets to look.
WATCH = """() => {
    window.__statuses = [];
    window.__swaps = 0;
    const status = document.getElementById("live-status");
    new MutationObserver(() => window.__statuses.push([status.textContent, status.className]))
        .observe(status, {childList: true, characterData: true, subtree: true, attributes: true});
    new MutationObserver(() => { window.__swaps += 1; })
        .observe(document.getElementById("content"), {childList: true});
    window.__marker = "set before any click";
}"""


@dataclass
class Served:
    root: Path
    crontab: Path
    url: str
    process: subprocess.Popen
    log: Path
    requests: list[tuple[str, str, str]] = field(default_factory=list)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def client(self, token: str = ADMIN_TOKEN) -> httpx.Client:
        return httpx.Client(
            base_url=self.url, headers={"Authorization": f"Bearer {token}"}, timeout=30
        )

    def crontab_line(self, task: str) -> str:
        found = [
            line
            for line in self.crontab.read_text().splitlines()
            if line.endswith(f"# agency-cron:{task}")
        ]
        assert len(found) == 1, self.crontab.read_text()
        return found[0]


def until(check: Callable[[], object], what: str, seconds: float = DEADLINE_S):
    """Poll `check` until it returns something true; fail with `what` at the deadline."""
    deadline = time.monotonic() + seconds
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {seconds}s: {what}")
        time.sleep(0.1)


@pytest.fixture
def served(env, cli_env, serving) -> Iterator[Served]:
    """`agency-cron serve` on a free loopback port over the env fixture's installation,
    with an admin and a read-only token, the manifest above installed first."""
    env.add_config(f"ADMIN_TOKEN={ADMIN_TOKEN}\nADMIN_READ_TOKEN={READ_TOKEN}\n")
    env.write_manifest(MANIFEST)
    environ = {**cli_env, "XDG_CACHE_HOME": str(env.root.parent / "cache")}
    installed = env.process("install", environ=environ)
    assert installed.returncode == 0, installed.stdout + installed.stderr
    assert env.crontab.read_text().count("# agency-cron:") == 3
    with serving(env.args(), env.root / "serve.log", environ=environ) as server:
        yield Served(env.root, env.crontab, server.url, server.process, server.log)


def open_dashboard(browser, server: Served, token: str, problems: list[str]):
    """A new page at /, its requests recorded in server.requests, signed in with `token`;
    returns once the tasks table is there."""
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    page.set_default_timeout(DEADLINE_S * 1000)
    page.on(
        "request",
        lambda r: server.requests.append((r.method, r.url, r.resource_type)),
    )
    page.on("pageerror", lambda error: problems.append(f"pageerror: {error}"))
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.goto(server.url + "/")
    assert page.inner_text("#live-status") == "enter the API token to see the tasks"
    assert page.locator("#task-table").count() == 0  # no data before the token
    page.evaluate(WATCH)
    page.fill("#token", token)
    page.click('#token-form button[type="submit"]')
    page.wait_for_selector("#task-table")
    assert page.input_value("#token") == ""  # the field is cleared; the token is in session
    assert page.evaluate("sessionStorage.getItem('agency-cron-token')") == token
    names = page.eval_on_selector_all(
        "#task-table tbody tr", "rows => rows.map(r => r.dataset.task)"
    )
    assert names == ["alpha", "beta", "gamma"]
    return page


def row_cells(page, task: str) -> list[str]:
    return page.eval_on_selector_all(
        f'#task-table tr[data-task="{task}"] td', "cells => cells.map(c => c.innerText.trim())"
    )


def runs_of(page, task: str) -> tuple[str, str]:
    """(Runs, Last run) cells of the task's row as shown."""
    cells = row_cells(page, task)
    return cells[5], cells[3]


def visible_logs(page) -> list[dict]:
    return page.eval_on_selector_all(
        "#log-table tbody tr",
        """rows => rows.filter(r => r.offsetParent !== null).map(r => ({
            level: r.dataset.level, type: r.dataset.type,
            task: r.cells[3].innerText.trim(), text: r.cells[4].innerText.trim()}))""",
    )


def statuses(page) -> list[str]:
    return [text for text, _ in page.evaluate("window.__statuses")]


def wait_status(page, text: str) -> str:
    """The first status shown since the watch started that contains `text`."""
    page.wait_for_function("text => window.__statuses.some(([s]) => s.includes(text))", arg=text)
    return next(s for s in statuses(page) if text in s)


def wait_swap(page) -> None:
    """Until #content is swapped again (the next refresh)."""
    before = page.evaluate("window.__swaps")
    page.wait_for_function("n => window.__swaps > n", arg=before)


def show_tab(page, name: str) -> None:
    page.get_by_role("tab", name=name).click()


def assert_same_origin(server: Served) -> None:
    assert server.requests, "no request recorded"
    strays = [r for r in server.requests if not r[1].startswith(server.url + "/")]
    assert strays == [], strays
    leaks = [r for r in server.requests if ADMIN_TOKEN in r[1] or READ_TOKEN in r[1]]
    assert leaks == [], leaks
    # One document (/), then only fetches: nothing reloaded or navigated away.
    documents = [r for r in server.requests if r[2] == "document"]
    assert documents == [("GET", server.url + "/", "document")], documents
    assert {r[2] for r in server.requests} == {"document", "fetch"}, server.requests


def test_admin_runs_pauses_resumes_and_filters_live(browser, served: Served, tmp_path):
    problems: list[str] = []
    page = open_dashboard(browser, served, ADMIN_TOKEN, problems)
    assert runs_of(page, "alpha") == ("0", "never")
    assert page.locator('button[data-action="pause"][data-task="alpha"]').is_visible()

    # Run now: the run goes through the runner; the page shows it with its own refresh.
    page.click('button[data-action="run"][data-task="alpha"]')
    started = wait_status(page, "alpha: run (run ")
    run_id = started.split("(run ", 1)[1].split(")", 1)[0]
    assert started == f"alpha: run (run {run_id}) done"
    page.wait_for_function(
        """() => {
            const row = document.querySelector('#task-table tr[data-task="alpha"]');
            return row && row.cells[5].innerText.trim() === "1"
                && !row.cells[3].innerText.includes("never");
        }"""
    )
    runs, last = runs_of(page, "alpha")
    assert runs == "1" and "success" in last, (runs, last)
    assert runs_of(page, "beta") == ("0", "never")
    with served.client() as client:
        run = client.get(f"/api/runs/{run_id}")
        assert run.status_code == 200, run.text
        assert run.json()["status"] == "success", run.json()
        assert MARKER in run.json()["log_excerpt"], run.json()

    show_tab(page, "Alerts & Logs")
    page.wait_for_function(
        """marker => [...document.querySelectorAll("#log-table tbody tr")].some(
            r => r.offsetParent !== null && r.cells[4].innerText.trim() === marker)""",
        arg=MARKER,
    )
    marked = [row for row in visible_logs(page) if row["text"] == MARKER]
    assert marked and {row["task"] for row in marked} == {"alpha"}, marked
    assert {row["level"] for row in marked} == {"info"}
    assert page.evaluate("window.__marker") == "set before any click"

    # Pause: the crontab line is commented out, the button becomes Resume.
    show_tab(page, "Tasks")
    line = served.crontab_line("alpha")
    assert not line.startswith("#"), line
    page.click('button[data-action="pause"][data-task="alpha"]')
    wait_status(page, "alpha: pause done")
    until(lambda: served.crontab_line("alpha").startswith("# "), "alpha's line commented out")
    assert served.crontab_line("alpha") == "# " + line
    resume = page.locator('button[data-action="resume"][data-task="alpha"]')
    resume.wait_for(state="visible")
    assert page.locator('button[data-action="pause"][data-task="alpha"]').count() == 0
    assert page.get_attribute('#task-table tr[data-task="alpha"]', "data-state") == "disabled"
    assert not served.crontab_line("beta").startswith("#")

    # Resume: the line is back as it was, and so is the Pause button.
    resume.click()
    wait_status(page, "alpha: resume done")
    until(lambda: served.crontab_line("alpha") == line, "alpha's line back")
    page.locator('button[data-action="pause"][data-task="alpha"]').wait_for(state="visible")
    assert page.locator('button[data-action="resume"][data-task="alpha"]').count() == 0
    assert page.evaluate("window.__marker") == "set before any click"

    # A run that logs an error line, for the level filter.
    page.click('button[data-action="run"][data-task="gamma"]')
    wait_status(page, "gamma: run (run ")
    show_tab(page, "Alerts & Logs")
    page.wait_for_function(
        """() => [...document.querySelectorAll("#log-table tbody tr")].some(
            r => r.dataset.level === "error" && r.cells[4].innerText.includes("ERROR something"))"""
    )
    every = visible_logs(page)
    assert {"error", "info"} <= {row["level"] for row in every}, every
    assert page.inner_text("#log-count") == str(len(every))

    page.locator('#level-filter input[value="info"]').uncheck()
    shown = visible_logs(page)
    assert shown and {row["level"] for row in shown} == {"error"}, shown
    assert all(MARKER not in row["text"] for row in shown)
    assert any(row["text"] == "ERROR something" for row in shown)
    assert page.inner_text("#log-count") == str(len(shown))

    # The next automatic refresh swaps the whole body in: the choice is carried over.
    wait_swap(page)
    assert not page.locator('#level-filter input[value="info"]').is_checked()
    assert page.locator('#level-filter input[value="error"]').is_checked()
    assert page.is_visible("#panel-logs") and page.is_hidden("#panel-tasks")
    after = visible_logs(page)
    assert after and {row["level"] for row in after} == {"error"}, after
    assert page.inner_text("#log-count") == str(len(after))

    page.locator('#level-filter input[value="info"]').check()
    again = visible_logs(page)
    assert any(row["text"] == MARKER for row in again)
    assert len(again) >= len(every) and page.inner_text("#log-count") == str(len(again))
    page.locator('#level-filter input[value="error"]').uncheck()
    infos = visible_logs(page)
    assert infos and {row["level"] for row in infos} == {"info"}
    page.locator('#level-filter input[value="error"]').check()

    assert page.evaluate("window.__marker") == "set before any click"
    assert not any("refused" in s for s in statuses(page)), statuses(page)
    assert problems == []
    assert_same_origin(served)
    posts = [(m, u) for m, u, _ in served.requests if m == "POST"]
    assert posts == [
        ("POST", f"{served.url}/api/tasks/{task}/actions/{verb}")
        for task, verb in (
            ("alpha", "run"),
            ("alpha", "pause"),
            ("alpha", "resume"),
            ("gamma", "run"),
        )
    ]

    show_tab(page, "Tasks")
    shot = (
        DOCS_SCREENSHOT if os.environ.get("AGENCY_CRON_DOCS_SCREENSHOT") else tmp_path / "live.png"
    )
    page.screenshot(path=str(shot), full_page=True)
    data = shot.read_bytes()
    assert data.startswith(PNG_SIGNATURE) and len(data) > 5000
    page.close()


def test_read_only_token_sees_tasks_but_cannot_run(browser, served: Served):
    problems: list[str] = []
    page = open_dashboard(browser, served, READ_TOKEN, problems)
    assert runs_of(page, "alpha") == ("0", "never")

    page.click('button[data-action="run"][data-task="alpha"]')
    refusal = wait_status(page, "alpha: run refused")
    assert refusal == "alpha: run refused: this token may only read"
    shown = [entry for entry in page.evaluate("window.__statuses") if entry[0] == refusal]
    assert shown and all(cls == "problem" for _, cls in shown), shown

    # Nothing started: after a whole refresh the row is unchanged, the history empty.
    wait_swap(page)
    assert runs_of(page, "alpha") == ("0", "never")
    assert page.locator('button[data-action="run"][data-task="alpha"]').is_enabled()
    with served.client() as client:
        runs = client.get("/api/tasks/alpha/executions")
        assert runs.status_code == 200, runs.text
        assert runs.json()["total"] == 0
    assert not (served.root / "log" / "alpha.log").exists()
    assert not any(" done" in s for s in statuses(page)), statuses(page)
    assert page.evaluate("window.__marker") == "set before any click"

    # The browser reports the 403 of the refused POST; nothing else went wrong.
    assert all("status of 403" in p for p in problems), problems
    assert_same_origin(served)
    posts = [(m, u) for m, u, _ in served.requests if m == "POST"]
    assert posts == [("POST", f"{served.url}/api/tasks/alpha/actions/run")]
    page.close()


def test_typing_in_the_log_search_survives_the_refresh(browser, served: Served):
    """The 5 s refresh swaps #content's HTML in: the search box is a new element, so the
    one being typed in must get the focus (and caret) back, or the next keys are lost."""
    problems: list[str] = []
    page = open_dashboard(browser, served, ADMIN_TOKEN, problems)
    show_tab(page, "Alerts & Logs")
    page.click("#log-search")
    page.keyboard.type("serve-e2e")
    wait_swap(page)
    assert page.input_value("#log-search") == "serve-e2e"  # the value is carried over
    focused = page.evaluate("document.activeElement && document.activeElement.id")
    page.keyboard.type("-marker")
    assert (focused, page.input_value("#log-search")) == ("log-search", "serve-e2e-marker")
    assert problems == []
    assert_same_origin(served)
    page.close()
