"""Prometheus metrics: per task figures from the history, in the text exposition format.

`exposition()` gives the bytes that `agency-cron metrics` prints, that `serve` answers at
/metrics and that `write_textfile()` puts where node_exporter's textfile collector reads
them. prometheus_client is imported only inside the functions that build the exposition,
so status and the dashboard can ask `export_state()` without paying for it.

Decisions worth knowing:
- No sample carries a timestamp: node_exporter refuses textfiles that have them.
- Timestamps of things that never happened are 0 (`time() - ... > X` then fires for a task
  that never succeeded); duration, exit code and last_run_success are left out instead,
  since any number there would be a lie.
- `agency_cron_runs_total{status}` counts history rows (attempts) per status, whatever the
  status is; a run in progress (`running`) is not an outcome and would make the counter go
  down when the run ends, so it is shown by `agency_cron_running` instead.
- Each database (root's history.db and each user's, history.connect_all) is read in one
  read transaction (a consistent snapshot while runs write): one grouped count over the
  whole table, then two indexed lookups per task in the databases that may hold it.
- `--host NAME|all` (default all): on the shared history (HISTORY_URL=postgresql://...)
  the fleet's figures are added up per task and labelled host="all" (scrape one host for
  them, or `--host NAME` on each); a local history is this host's alone, labelled with
  its HOST_NAME.
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from agency_cron import history, layout, reports, statuses
from agency_cron.config import Settings
from agency_cron.errors import AgencyCronError, ConfigError
from agency_cron.manifest import Manifest, Task
from agency_cron.overrides import effective_enabled, read_overrides
from agency_cron.readers import ALL, Histories, HistoryUnavailable

# The text format 0.0.4: what node_exporter and every Prometheus version read.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
TEXTFILE_MODE = 0o644  # node_exporter runs as its own user and must read the file
# How old the textfile may be before status and the dashboard call it stale: the export
# runs every minute, so this is a few missed runs.
STALE_AFTER_S = 300
# Statuses that are no run's outcome: skipped runs did not run, a retry-scheduled attempt
# is followed by another, a running one has not ended. Anything else ends a run.
NOT_OUTCOMES = (*statuses.NOT_FINAL, statuses.RUNNING)
TRANSIENT = (statuses.RUNNING,)
# Counted from 0 for every task, so that increase() sees a task's first failure: every
# status but the transient one, outcomes first.
BASELINE = (
    *(s for s in statuses.ALL if s not in NOT_OUTCOMES),
    *(s for s in statuses.NOT_FINAL),
)

COUNTS_SQL = "SELECT task, status, COUNT(*) FROM runs GROUP BY task, status"
LAST_OUTCOME_SQL = f"""
SELECT started_at, status, duration_s, exit_code FROM runs
WHERE task = ? AND status NOT IN {statuses.sql(NOT_OUTCOMES)}
ORDER BY started_at DESC, id DESC LIMIT 1
"""


@dataclass(frozen=True)
class TaskFigures:
    """One task's figures; times are Unix seconds, None when it never happened."""

    name: str
    user: str | None
    enabled: bool
    running: bool
    overdue: bool
    next_run: float | None
    last_run: float | None
    last_success: float | None
    last_status: str | None
    last_duration: float | None
    last_exit_code: int | None
    runs: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Snapshot:
    """Everything one exposition shows."""

    host: str
    tasks: list[TaskFigures]
    history_rows: int
    history_bytes: int
    read_seconds: float
    generated_at: float


def read_snapshot(
    settings: Settings, manifest: Manifest, view: Histories | None = None
) -> Snapshot:
    """Read the histories of `view` (default: the fleet, reports.open_view; root's and each
    user's on SQLite) and work out every task's figures (reports' overdue and next-run
    logic); no history yet is an empty one. The `host` label is the view's: its host,
    "all" for the fleet on the shared history, this host on a local one."""
    started = time.perf_counter()
    now = datetime.now(UTC)
    overrides = read_overrides(settings)
    opened = view or reports.open_view(settings, manifest, None, ALL)
    try:
        _whole(settings, opened)
        for conn in opened.conns:
            conn.execute(_begin(conn))  # one snapshot of each database for every query below
        counts = _counts(opened.conns)
        by_host = reports.successes_by_host(opened, manifest.tasks)
        tasks = [
            _task_figures(
                settings, opened, task, effective_enabled(task, overrides), counts, now, by_host
            )
            for task in manifest.tasks
        ]
    except sqlite3.Error as exc:
        raise _unreadable(settings, opened, exc) from None
    finally:
        if view is None:
            opened.close()
    return Snapshot(
        host=opened.host or (ALL if opened.shared else settings.host_name),
        tasks=tasks,
        history_rows=sum(sum(per_task.values()) for per_task in counts.values()),
        history_bytes=_history_bytes(settings),
        read_seconds=time.perf_counter() - started,
        generated_at=now.timestamp(),
    )


def _begin(conn) -> str:
    """A read transaction: SQLite's (a snapshot from the first read on), or on the shared
    history one whose every statement sees the same snapshot."""
    if isinstance(conn, sqlite3.Connection):
        return "BEGIN"
    return "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"


def _whole(settings: Settings, view: Histories) -> None:
    """A local view must hold root's history.db when it exists: connect_all leaves an
    unreadable one out, and zeros in its place would tell Prometheus that nothing ever
    succeeded. So that is an error; a history.db that was being created is read again."""
    root = layout.history_path(settings)
    if view.shared or view.host not in (None, settings.host_name) or not root.exists():
        return  # another host's view of a local history is empty on purpose
    if not all(isinstance(c, history.UserConnection) for c in view.conns):
        return
    try:
        history.connect(str(root), create=False).close()
    except (sqlite3.Error, RuntimeError) as exc:  # RuntimeError: a newer schema
        raise _unreadable(settings, None, exc) from None
    view.close()
    view.conns = history.connect_all(
        str(settings.state_dir), settings.host_name, str(settings.history_db)
    )


def _unreadable(settings: Settings, view: Histories | None, exc: Exception) -> AgencyCronError:
    if view is not None and view.shared:
        return HistoryUnavailable(f"the shared history (HISTORY_URL): {exc}")
    return AgencyCronError(
        f"{layout.history_path(settings)}: STATE_DIR: cannot read the history: {exc}"
    )


def _counts(conns: list) -> dict[str, dict[str, int]]:
    """Rows by task and status, added up over the databases (a user's counts only for the
    tasks that run as that user: connect_all's views)."""
    found: dict[str, dict[str, int]] = {}
    for conn in conns:
        for task, status, count in conn.execute(COUNTS_SQL):
            per_task = found.setdefault(task, {})
            per_task[status] = per_task.get(status, 0) + count
    return found


def _task_figures(
    settings, view: Histories, task: Task, enabled: bool, counts, now, by_host
) -> TaskFigures:
    mine = history.holding(view.conns, task.name)
    ends = [row for c in mine if (row := c.execute(LAST_OUTCOME_SQL, (task.name,)).fetchone())]
    last = max(ends, key=lambda row: row[0]) if ends else None  # started_at sorts as time
    successes = [c.execute(reports.LAST_SUCCESS_SQL, (task.name,)).fetchone()[0] for c in mine]
    success = max((s for s in successes if s), default=None)
    next_run = reports.next_run(task, settings) if enabled else None
    late = reports.lateness(settings, task, success, now, by_host.get(task.name))
    overdue = enabled and late.reason is not None
    return TaskFigures(
        name=task.name,
        user=task.user,
        enabled=enabled,
        running=reports.running_pid(settings, task.name) is not None,
        overdue=bool(overdue),
        next_run=_epoch(next_run),
        last_run=_epoch(last[0]) if last else None,
        last_success=_epoch(success),
        last_status=last[1] if last else None,
        last_duration=last[2] if last else None,
        last_exit_code=last[3] if last else None,
        runs=counts.get(task.name, {}),
    )


def _epoch(iso: str | None) -> float | None:
    return datetime.fromisoformat(iso).timestamp() if iso else None


def _history_bytes(settings: Settings) -> int:
    """The databases and their write-ahead logs: what the history takes on disk."""
    paths = [layout.history_path(settings)]
    paths += [Path(path) for path, _ in history.user_databases(str(settings.state_dir))]
    total = 0
    for path in paths:
        for name in (path, path.with_name(path.name + "-wal")):
            with contextlib.suppress(OSError):
                total += name.stat().st_size
    return total


# --- the exposition -----------------------------------------------------------------------


class SnapshotCollector:
    """A prometheus_client collector that reads a fresh Snapshot on every collect()."""

    def __init__(self, settings: Settings, manifest: Manifest, view: Histories | None = None):
        self.settings, self.manifest, self.view = settings, manifest, view

    def collect(self):
        return families(read_snapshot(self.settings, self.manifest, self.view))


def exposition(settings: Settings, manifest: Manifest, view: Histories | None = None) -> bytes:
    """The metrics of `view` (default: the fleet) in the text exposition format 0.0.4
    (CONTENT_TYPE), without timestamps."""
    from prometheus_client import CollectorRegistry, generate_latest

    registry = CollectorRegistry(auto_describe=False)
    registry.register(SnapshotCollector(settings, manifest, view))
    return generate_latest(registry)


TASK_GAUGES = (
    ("enabled", "1 if the task is enabled (manifest and enable/disable)"),
    ("running", "1 while a run of the task is in progress"),
    ("overdue", "1 if the task has not succeeded within its expected interval (as `health`)"),
    ("next_run_timestamp_seconds", "Next fire time (absent when disabled or @reboot only)"),
    ("last_run_timestamp_seconds", "Start of the last run that ended (0: never)"),
    ("last_success_timestamp_seconds", "Start of the last successful run (0: never)"),
    ("last_run_success", "1 if the last run that ended succeeded, 0 if not (absent: never ran)"),
    ("last_duration_seconds", "Duration of the last run that ended"),
    ("last_exit_code", "Exit code of the last run that ended (124: timeout)"),
)


def families(snapshot: Snapshot) -> list:
    """The metric families of `snapshot` (prometheus_client Metric objects). Samples are
    added one by one because their label sets differ: `user` only where a task sets one."""
    from prometheus_client.core import Metric

    gauges = {key: Metric(f"agency_cron_{key}", text, "gauge") for key, text in TASK_GAUGES}
    runs = Metric("agency_cron_runs", "Runs (attempts) in the history, by status", "counter")
    for task in snapshot.tasks:
        labels = _labels(task, snapshot.host)
        for key, value in _task_values(task).items():
            if value is not None:
                gauges[key].add_sample(gauges[key].name, labels, float(value))
        for status, count in _run_counts(task).items():
            runs.add_sample("agency_cron_runs_total", {**labels, "status": status}, count)
    return [*gauges.values(), runs, *_history_families(snapshot, Metric)]


def _labels(task: TaskFigures, host: str) -> dict[str, str]:
    labels = {"task": task.name, "host": host}
    if task.user:
        labels["user"] = task.user
    return labels


def _task_values(task: TaskFigures) -> dict[str, float | None]:
    ended = task.last_status is not None
    return {
        "enabled": task.enabled,
        "running": task.running,
        "overdue": task.overdue,
        "next_run_timestamp_seconds": task.next_run,
        "last_run_timestamp_seconds": task.last_run or 0,
        "last_success_timestamp_seconds": task.last_success or 0,
        "last_run_success": (task.last_status == statuses.SUCCESS) if ended else None,
        "last_duration_seconds": task.last_duration,
        "last_exit_code": task.last_exit_code,
    }


def _run_counts(task: TaskFigures) -> dict[str, int]:
    counted = dict.fromkeys(BASELINE, 0)
    counted.update({s: n for s, n in task.runs.items() if s not in TRANSIENT})
    return dict(sorted(counted.items()))


def _history_families(snapshot: Snapshot, metric) -> list:
    figures = (
        ("history_rows", "Rows (attempts) in history.db", snapshot.history_rows),
        ("history_bytes", "Size of history.db and its write-ahead log", snapshot.history_bytes),
        (
            "metrics_scrape_duration_seconds",
            "Seconds taken to read the history and work out these metrics",
            snapshot.read_seconds,
        ),
        (
            "metrics_generated_timestamp_seconds",
            "When these metrics were produced (a stale textfile shows here)",
            snapshot.generated_at,
        ),
    )
    result = []
    for key, text, value in figures:
        family = metric(f"agency_cron_{key}", text, "gauge")
        family.add_sample(family.name, {"host": snapshot.host}, float(value))
        result.append(family)
    return result


# --- the textfile ---------------------------------------------------------------------------


def write_textfile(path: Path, content: bytes, setting: str = "--textfile") -> None:
    """Replace `path` with `content` atomically (a temporary file beside it, fsync, rename),
    mode 0644. The temporary name does not end in .prom, so node_exporter never reads half
    a file. Raises ConfigError naming the path and `setting` on any OS error; the previous
    file stays as it was and no temporary file is left behind."""
    from agency_cron.fs import write_atomic

    path = Path(path)
    if not path.parent.is_dir():
        raise ConfigError(f"{path}: {setting}: folder {path.parent} does not exist")
    try:
        write_atomic(path, content, TEXTFILE_MODE)
    except OSError as exc:
        raise ConfigError(f"{path}: {setting}: cannot write: {exc.strerror or exc}") from None


def export_state(settings: Settings, now: float | None = None) -> dict:
    """Whether metrics are exported to METRICS_TEXTFILE, for status and the dashboard:
    {"textfile", "state": off|missing|stale|ok, "updated_at", "age_s"}."""
    path = settings.metrics_textfile
    state = {"textfile": str(path) if path else None, "updated_at": None, "age_s": None}
    if path is None:
        return {**state, "state": "off"}
    try:
        mtime = path.stat().st_mtime
    except OSError:
        return {**state, "state": "missing"}
    age = max(0.0, (time.time() if now is None else now) - mtime)
    updated = datetime.fromtimestamp(mtime, UTC).isoformat(timespec="seconds")
    return {
        **state,
        "updated_at": updated,
        "age_s": round(age, 1),
        "state": "stale" if age > STALE_AFTER_S else "ok",
    }
