"""The static dashboard: dashboard.json and one self-contained index.html.

`collect()` gathers what an operator looks at (tasks with their schedules in plain English,
state, last and next runs, the latest health, backup and integration check results, and
the last lines of every log); `write()` puts it on disk as JSON and as an HTML page that
needs no server and fetches nothing: CSS and JS are inline, a Content-Security-Policy
forbids every request, and the data is embedded in the page as well as rendered as rows.

The library never prints; the CLI decides what to say.
"""

from __future__ import annotations

import json
import os
import re
import socket
import sqlite3
from datetime import UTC, datetime
from functools import cache
from pathlib import Path

from agency_cron import layout, reports
from agency_cron.config import Settings
from agency_cron.fs import write_if_changed
from agency_cron.manifest import Manifest, Task
from agency_cron.metrics import export_state
from agency_cron.overrides import effective_enabled, read_overrides
from agency_cron.readers import ALL, Histories
from agency_cron.results import TaskStatus
from agency_cron.schedule import explain, local_zone, next_runs

DATA_VERSION = 1
JSON_NAME = "dashboard.json"
HTML_NAME = "index.html"
TEMPLATE = "dashboard.html.j2"
BODY_TEMPLATE = "dashboard_body.html.j2"
FILE_MODE = 0o644
# The filter buttons: the seed's four task logs, the raw cron output, and everything else.
LOG_TYPES = ("health", "backup", "integration", "dashboard", "cron", "other")
LEVELS = ("error", "warning", "info")
TYPE_BY_LOG = {
    "health.log": "health",
    "backup.log": "backup",
    "integration.log": "integration",
    "dashboard.log": "dashboard",
}
CHECK_KINDS = {"health": "health", "backup": "backup", "integrations": "integration"}
# Bounds for reading logs: a dashboard run must stay cheap whatever size a log has grown to.
TAIL_BLOCK = 64 * 1024
TAIL_MAX_BYTES = 1024 * 1024
MAX_LINE_CHARS = 2000
ERROR_WORDS = re.compile(
    r"\b(error|fail|failed|fatal|timeout|killed)\b|status=(failed|timeout|killed)", re.I
)
WARNING_WORDS = re.compile(r"\bwarn(ing)?\b", re.I)
# The runner's prefix: `2024-05-01T02:00:00.123+00:00 agency-cron: ...`; other ISO stamps too.
TIME_PREFIX = re.compile(
    r"^\[?(\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(?:[.,]\d+)?(?:Z|[+-]\d{2}:?\d{2})?)\]?\s+"
)
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
TASK_FIELD = re.compile(r"\btask=([A-Za-z0-9_-]+)")


def collect(
    settings: Settings,
    manifest: Manifest,
    now: datetime | None = None,
    log_lines: int = 500,
    view: Histories | None = None,
) -> dict:
    """The dashboard data, JSON-serialisable; `log_lines` bounds the lines read per log file.
    Tasks and check results come from `view` (default: the fleet, reports.open_view), the
    logs from this host's files; `scope` is the view's host ("all": the fleet), `hosts`
    those that ran a task (per task too), `host` the host that wrote the page."""
    moment = (now or datetime.now(local_zone())).astimezone(local_zone())
    opened = view or reports.open_view(settings, manifest, None, ALL)
    try:
        checks = {key: latest_checks(opened.conns, kind) for key, kind in CHECK_KINDS.items()}
        tasks = task_rows(settings, manifest, moment, opened)
    finally:
        if view is None:
            opened.close()
    data = {
        "version": DATA_VERSION,
        "generated_at": moment.isoformat(),
        "host": socket.gethostname(),
        "scope": reports.scope_of(opened),
        "hosts": sorted({host for task in tasks for host in task["hosts"]}),
        "tasks": tasks,
        **checks,
        "logs": collect_logs(settings, manifest, log_lines),
        "metrics": export_state(settings, moment.timestamp()),
    }
    data["alerts"] = alerts(tasks, checks)
    return data


def write(
    settings: Settings, manifest: Manifest, out_dir: Path, view: Histories | None = None
) -> tuple[Path, Path]:
    """Write out_dir/dashboard.json and out_dir/index.html atomically; return both paths."""
    data = collect(settings, manifest, view=view)
    json_path, html_path = Path(out_dir) / JSON_NAME, Path(out_dir) / HTML_NAME
    text = json.dumps(data, indent=2, ensure_ascii=False) + "\n"
    write_if_changed(json_path, text.encode(), FILE_MODE)
    write_if_changed(html_path, render_html(data).encode(), FILE_MODE)
    return json_path, html_path


def default_out_dir(settings: Settings) -> Path:
    """Where the dashboard goes when the command is given no folder (a suggestion for the CLI)."""
    return settings.state_dir / "dashboard"


# --- tasks -------------------------------------------------------------------------------


def task_rows(
    settings: Settings, manifest: Manifest, moment: datetime, view: Histories | None = None
) -> list[dict]:
    """One row per task: the manifest's words, the history's figures (in `view`, default
    the fleet), the next fire time."""
    if view is None:
        view = reports.open_view(settings, manifest, None, ALL)
        try:
            return task_rows(settings, manifest, moment, view)
        finally:
            view.close()
    figures = {row.name: row for row in reports.task_status(settings, manifest, None, view)}
    overrides = read_overrides(settings)
    return [
        _task_row(
            task,
            figures[task.name],
            effective_enabled(task, overrides),
            moment,
            layout.is_completed(settings, task),
        )
        for task in manifest.tasks
    ]


def _task_row(
    task: Task, status: TaskStatus, enabled: bool, moment: datetime, completed: bool = False
) -> dict:
    # Computed from `moment`, not from the clock, so that collect(now=...) is reproducible.
    due = enabled and not completed  # a one-time task that ran has no next run
    upcoming = next_runs(task.schedule, 1, after=moment) if due else []
    return {
        "name": task.name,
        "description": task.description,
        "schedule": list(task.schedule),
        "schedule_text": "; ".join(explain(expr) for expr in task.schedule),
        "enabled": enabled,
        "state": status.state,
        "last_run": status.last_run,
        "last_status": status.last_status,
        "next_run": upcoming[0].isoformat() if upcoming else None,
        "runs": status.runs,
        "successes": status.successes,
        "failures": status.failures,
        "last_success": status.last_success,
        "last_failure": status.last_failure,
        "last_error": status.last_error,
        "ping": status.ping,
        "last_ping": status.last_ping,
        "log": task.log_name,
        "tags": list(task.tags),
        "hosts": list(status.hosts),
    }


# --- check results -----------------------------------------------------------------------

# Portable SQL: the subquery in FROM is named (PostgreSQL requires it before 16).
LATEST_CHECKS_SQL = """
SELECT component, check_name, ok, detail, duration_s, checked_at, run_id, host FROM (
  SELECT *, ROW_NUMBER() OVER (
    PARTITION BY component, check_name, host ORDER BY checked_at DESC, id DESC) AS newest
  FROM check_results WHERE kind = ?
) AS latest WHERE newest = 1 ORDER BY component, check_name
"""
CHECK_KEYS = ("component", "check_name", "ok", "detail", "duration_s", "checked_at", "run_id")


def latest_checks(conns: list, kind: str) -> list[dict]:
    """The newest result of each component/check of one kind (health, backup, integration)
    on each host, over root's history and every user's (a check task may run as another
    user), or over the shared history's hosts."""
    newest: dict[tuple, tuple] = {}
    for conn in conns:
        try:
            rows = conn.execute(LATEST_CHECKS_SQL, (kind,)).fetchall()
        except sqlite3.Error:
            continue  # an unreadable or older history only leaves its results out
        for row in rows:
            key = (row[0], row[1], row[7] or "")
            if key not in newest or row[5] > newest[key][5]:
                newest[key] = row
    return [
        {**dict(zip(CHECK_KEYS, row[:7], strict=True)), "ok": bool(row[2]), "host": row[7]}
        for _, row in sorted(newest.items())
    ]


def alerts(tasks: list[dict], checks: dict[str, list[dict]]) -> list[dict]:
    """What needs attention now: failing tasks and failed checks, for the top of the logs tab."""
    found = [
        {"source": "task", "name": t["name"], "time": t["last_failure"], "text": t["last_error"]}
        for t in tasks
        if t["state"] == "failing"
    ]
    for key, rows in checks.items():
        found += [
            {
                "source": CHECK_KINDS[key],
                "name": f"{row['component']}/{row['check_name']}",
                "time": row["checked_at"],
                "text": row["detail"],
            }
            for row in rows
            if not row["ok"]
        ]
    return found


# --- logs --------------------------------------------------------------------------------


def log_sources(settings: Settings, manifest: Manifest) -> list[tuple[Path, str, list[str]]]:
    """(path, type, owning task names) for each task log and each raw cron log, no repeats."""
    owners: dict[Path, list[str]] = {}
    for task in manifest.tasks:
        owners.setdefault(settings.log_dir / task.log_name, []).append(task.name)
    sources = [(path, TYPE_BY_LOG.get(path.name, "other"), names) for path, names in owners.items()]
    known = {task.name for task in manifest.tasks}
    for path in sorted((settings.log_dir / "cron").glob("*.log")):
        name = path.name.removesuffix(".log").removesuffix(".sh")
        sources.append((path, "cron", [name] if name in known else []))
    return sources


def collect_logs(settings: Settings, manifest: Manifest, per_file: int) -> list[dict]:
    """The last `per_file` lines of every log, newest first (file order kept within a time)."""
    entries: list[dict] = []
    for path, kind, owners in log_sources(settings, manifest):
        source = os.path.relpath(path, settings.log_dir)
        try:
            lines = tail_lines(path, per_file)
        except FileNotFoundError:
            continue  # a task that never ran has no log yet
        except OSError as exc:
            lines = [f"agency-cron dashboard: warning: cannot read {path}: {exc.strerror}"]
        entries += parse_lines(lines, kind, owners, source)
    order = sorted(range(len(entries)), key=lambda i: (entries[i]["time"] or "", i), reverse=True)
    return [entries[i] for i in order]


def tail_lines(path: Path, count: int, max_bytes: int = TAIL_MAX_BYTES) -> list[str]:
    """The last `count` lines of a file, reading backwards at most `max_bytes` from its end.

    Logs can grow to gigabytes between rotations; the dashboard never reads one whole.
    """
    if count <= 0:
        return []
    with path.open("rb") as handle:
        end = handle.seek(0, os.SEEK_END)
        floor = max(0, end - max_bytes)
        position, data = end, b""
        # `count` newlines before the last line: the first block may start mid-line.
        while position > floor and data.count(b"\n", 0, max(0, len(data) - 1)) < count:
            step = min(TAIL_BLOCK, position - floor)
            position -= step
            handle.seek(position)
            data = handle.read(step) + data
        cut = _mid_line(handle, position)
    lines = data.splitlines()
    if cut and len(lines) > 1:
        lines = lines[1:]  # started mid-line: drop the fragment (kept if it is all there is)
    return [line.decode("utf-8", "replace") for line in lines[-count:]]


def _mid_line(handle, position: int) -> bool:
    """True when `position` is inside a line (the byte before it is not a newline)."""
    if position == 0:
        return False
    handle.seek(position - 1)
    return handle.read(1) != b"\n"


def parse_lines(lines: list[str], kind: str, owners: list[str], source: str) -> list[dict]:
    """Log lines -> entries; a line without a time stamp takes the one above it (its run)."""
    entries, current = [], None
    for raw in lines:
        text = ANSI.sub("", raw).rstrip()
        if not text.strip():
            continue
        stamp, text = split_time(text)
        current = stamp or current
        entries.append(
            {
                "time": current,
                "type": kind,
                "level": level_of(text),
                "task": task_of(text, owners),
                "source": source,
                "text": text[:MAX_LINE_CHARS],
            }
        )
    return entries


def split_time(line: str) -> tuple[str | None, str]:
    """(UTC ISO time, rest of the line) when the line starts with an ISO stamp."""
    match = TIME_PREFIX.match(line)
    if not match:
        return None, line
    try:
        moment = datetime.fromisoformat(match.group(1).replace(",", "."))
    except ValueError:
        return None, line
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=local_zone())
    # UTC with a fixed width, so that times from every file sort as strings.
    return moment.astimezone(UTC).isoformat(timespec="milliseconds"), line[match.end() :]


def level_of(text: str) -> str:
    """error, warning or info, from the words of the line."""
    if ERROR_WORDS.search(text):
        return "error"
    return "warning" if WARNING_WORDS.search(text) else "info"


def task_of(text: str, owners: list[str]) -> str | None:
    """The task a line belongs to: its `task=` field, else the only task writing the file."""
    match = TASK_FIELD.search(text)
    if match:
        return match.group(1)
    return owners[0] if len(owners) == 1 else None


# --- HTML --------------------------------------------------------------------------------


@cache
def environment():
    """Our own Jinja environment: the shared one in render.py does not escape (shell output).

    Here every value is escaped, since task output and check details are untrusted text.
    """
    from importlib.resources import files

    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(files("agency_cron.templates"))),
        undefined=jinja2.StrictUndefined,
        autoescape=True,
    )
    env.filters["when"] = display_time
    return env


def render_html(data: dict) -> str:
    """The static page for `data` (from collect())."""
    return environment().get_template(TEMPLATE).render(**_context(data), live=False)


def render_live_page() -> str:
    """The live page `agency-cron serve` shows at /: no data in it (that needs the token);
    its script fetches render_live_body() from the API and swaps it in."""
    return environment().get_template(TEMPLATE).render(data=None, live=True)


def render_live_body(data: dict) -> str:
    """The dashboard's content with the run/pause/resume buttons, for the live page."""
    return environment().get_template(BODY_TEMPLATE).render(**_context(data), live=True)


def _context(data: dict) -> dict:
    from agency_cron.terminal import escape_all

    data = escape_all(data)  # task output shown as text: control characters as \x1b
    counts = {kind: sum(1 for e in data["logs"] if e["type"] == kind) for kind in LOG_TYPES}
    levels = {level: sum(1 for e in data["logs"] if e["level"] == level) for level in LEVELS}
    return {
        "data": data,
        "log_types": LOG_TYPES,
        "levels": LEVELS,
        "type_counts": counts,
        "level_counts": levels,
    }


def display_time(value: str | None) -> str:
    """ISO time -> `2024-05-01 04:00:00 CEST` in the host's zone (cron's zone), or '-'."""
    if not value:
        return "-"
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return value
    if moment.tzinfo is None:
        return moment.strftime("%Y-%m-%d %H:%M:%S")
    return moment.astimezone(local_zone()).strftime("%Y-%m-%d %H:%M:%S %Z")
