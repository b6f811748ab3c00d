"""Read-only views over the manifest and the history: list, next, status, history, kill.

Functions return plain dicts (the --json form); the CLI turns them into tables.
"""

from __future__ import annotations

import os
import signal
import sqlite3
from datetime import datetime

from agency_cron import history, layout
from agency_cron.config import Settings
from agency_cron.errors import CheckFailed
from agency_cron.manifest import Manifest, Task
from agency_cron.plan import effective_enabled, read_overrides
from agency_cron.schedule import next_runs


def iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def next_run(task: Task) -> str | None:
    runs = next_runs(task.schedule, 1)
    return iso(runs[0]) if runs else None


def task_list(settings: Settings, manifest: Manifest) -> list[dict]:
    """CONTRACT.md `list`: name, schedule, enabled, next_run, description, tags."""
    overrides = read_overrides(settings)
    rows = []
    for task in manifest.tasks:
        enabled = effective_enabled(task, overrides)
        rows.append(
            {
                "name": task.name,
                "schedule": list(task.schedule),
                "enabled": enabled,
                "next_run": next_run(task) if enabled else None,
                "description": task.description,
                "tags": list(task.tags),
            }
        )
    return rows


def upcoming(task: Task, count: int) -> list[str]:
    return [iso(moment) for moment in next_runs(task.schedule, count)]


def _open_history(settings: Settings) -> sqlite3.Connection | None:
    try:
        return history.connect(str(layout.history_path(settings)), create=False)
    except (FileNotFoundError, sqlite3.Error):
        return None


STATUS_SQL = """
SELECT
  COUNT(DISTINCT CASE WHEN status != 'retry-scheduled' THEN run_id END) AS runs,
  SUM(status = 'success') AS successes,
  SUM(status IN ('failed', 'timeout', 'killed')) AS failures,
  MAX(started_at) AS last_run,
  MAX(CASE WHEN status = 'success' THEN started_at END) AS last_success,
  MAX(CASE WHEN status IN ('failed', 'timeout', 'killed') THEN started_at END) AS last_failure
FROM runs WHERE task = ? AND status != 'skipped'
"""


def task_status(settings: Settings, manifest: Manifest, names: list[str] | None) -> list[dict]:
    """CONTRACT.md `status` per task, figures from history (the 004 seed's counters)."""
    overrides = read_overrides(settings)
    conn = _open_history(settings)
    result = []
    for task in manifest.tasks:
        if names and task.name not in names:
            continue
        enabled = effective_enabled(task, overrides)
        figures = _figures(conn, task.name)
        state = _state(settings, task.name, enabled, figures)
        result.append(
            {
                "name": task.name,
                "state": state,
                **figures,
                "next_run": next_run(task) if enabled else None,
            }
        )
    return result


def _figures(conn: sqlite3.Connection | None, name: str) -> dict:
    empty = {
        "runs": 0,
        "successes": 0,
        "failures": 0,
        "last_run": None,
        "last_success": None,
        "last_failure": None,
        "last_error": None,
        "last_status": None,
    }
    if conn is None:
        return empty
    row = conn.execute(STATUS_SQL, (name,)).fetchone()
    figures = dict(zip(list(empty)[:6], row, strict=True))
    figures = {
        k: (v or 0) if k in ("runs", "successes", "failures") else v for k, v in figures.items()
    }
    last = conn.execute(
        "SELECT status FROM runs WHERE task = ? AND status NOT IN ('skipped', 'retry-scheduled')"
        " ORDER BY started_at DESC, id DESC LIMIT 1",
        (name,),
    ).fetchone()
    error = conn.execute(
        "SELECT output_tail, note, exit_code FROM runs WHERE task = ?"
        " AND status IN ('failed', 'timeout', 'killed', 'retry-scheduled')"
        " ORDER BY started_at DESC, id DESC LIMIT 1",
        (name,),
    ).fetchone()
    figures["last_status"] = last[0] if last else None
    figures["last_error"] = _error_text(error) if error else None
    return figures


def _error_text(row) -> str:
    tail, note, code = row
    lines = [line for line in (tail or "").splitlines() if line.strip()]
    return note or (lines[-1] if lines else f"exit code {code}")


def _state(settings: Settings, name: str, enabled: bool, figures: dict) -> str:
    if running_pid(settings, name):
        return "running"
    if not enabled:
        return "disabled"
    if figures["last_status"] in ("failed", "timeout", "killed"):
        return "failing"
    return "ok" if figures["last_status"] == "success" else "never-run"


def task_history(settings: Settings, name: str, limit: int) -> list[dict]:
    conn = _open_history(settings)
    if conn is None:
        return []
    keys = ("run_id", "started_at", "finished_at", "duration_s", "exit_code", "status", "attempt")
    return [
        {
            **{k: row[k] for k in keys},
            "attempts": row["attempts"],
            "note": row["note"],
            "alert": row["alert"],
        }
        for row in history.rows(conn, name, limit)
    ]


def running_pid(settings: Settings, name: str) -> int | None:
    """The live runner holding the task's lock, or None.

    Read-only on purpose: taking even a shared flock here could make a starting run with
    `overlap: skip` believe another run holds the lock. The pid in the lock file counts only
    if that process still has the lock file open.
    """
    path = settings.state_dir / "locks" / f"{name}.lock"
    try:
        content = path.read_text().split()
    except (FileNotFoundError, PermissionError):
        return None
    if not content or not content[0].isdigit():
        return None
    pid = int(content[0])
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return None
    for fd in fds:
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}") == os.path.realpath(path):
                return pid
        except OSError:
            continue
    return None


def kill_task(settings: Settings, name: str) -> int:
    """SIGTERM the task's runner: it ends the task's whole tree and records `killed`."""
    pid = running_pid(settings, name)
    if pid is None:
        raise CheckFailed(f"{name}: not running")
    os.kill(pid, signal.SIGTERM)
    return pid
