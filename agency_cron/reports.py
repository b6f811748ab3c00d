"""Read-only views over the manifest and the history: list, next, status, history, kill.

Functions return the typed results of results.py (results.to_json is their --json form);
the CLI turns them into tables, the API into its response models.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from agency_cron import history, layout, readers, statuses
from agency_cron.config import Settings
from agency_cron.errors import CheckFailed
from agency_cron.overrides import effective_enabled, override_of, read_overrides
from agency_cron.results import (
    Ended,
    Overdue,
    RunAttempt,
    RunRow,
    Summary,
    SummaryRow,
    TaskListRow,
    TaskStatus,
)
from agency_cron.schedule import next_runs, zone_of
from agency_cron.secrets import secret_values

if TYPE_CHECKING:  # pydantic: not imported by read commands that need no validation
    from agency_cron.manifest import Manifest, Task


def iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def next_run(task: Task, settings: Settings | None = None) -> str | None:
    """The next fire time, shown in the task's own zone; None for a completed one-time
    task (with `settings`: its time may still be ahead after a run by hand)."""
    runs = upcoming(task, 1, settings)
    return runs[0] if runs else None


def task_list(settings: Settings, manifest: Manifest) -> list[TaskListRow]:
    """CONTRACT.md `list`: name, schedule, enabled, next_run, description, tags, and
    `override` ("disabled"/"enabled" where a local choice differs from the manifest)."""
    overrides = read_overrides(settings)
    rows = []
    for task in manifest.tasks:
        enabled = effective_enabled(task, overrides)
        rows.append(
            TaskListRow(
                name=task.name,
                schedule=list(task.schedule),
                enabled=enabled,
                next_run=next_run(task, settings) if enabled else None,
                description=task.description,
                tags=list(task.tags),
                override=override_of(task, overrides),
            )
        )
    return rows


def upcoming(task: Task, count: int, settings: Settings | None = None) -> list[str]:
    if settings is not None and layout.is_completed(settings, task):
        return []
    moments = next_runs(task.schedule, count, zone=zone_of(task.timezone))
    return [moment.isoformat() for moment in moments]


def open_view(
    settings: Settings,
    manifest: Manifest | None,
    choice: str | None = None,
    default: str = readers.THIS,
) -> readers.Histories:
    """The histories a reader of `--host choice` (None: `default`) queries: root's
    history.db and each user's, or the shared history (readers.open_histories). Every
    query below runs on each connection and the answers are combined (_sum, _max,
    _newest). Raises readers.HistoryUnavailable (exit 1) when the shared one is needed
    and away; `note` says when this host's local history stands in for it."""
    fleet = readers.fleet_task_names(manifest) if manifest is not None else ()
    return readers.open_histories(settings, choice, default, fleet)


@contextlib.contextmanager
def _reading(
    settings: Settings,
    manifest: Manifest | None,
    view: readers.Histories | None,
    default: str = readers.THIS,
) -> Iterator[readers.Histories]:
    """`view` as given (its caller closes it), or the default view, closed afterwards."""
    if view is not None:
        yield view
        return
    opened = open_view(settings, manifest, None, default)
    try:
        yield opened
    finally:
        opened.close()


def scope_of(view: readers.Histories) -> str:
    """The `host` of a result: the host it shows, or "all" for the whole fleet."""
    return view.host or readers.ALL


def _local_conns(settings: Settings) -> list[sqlite3.Connection]:
    """This host's own databases (root's and each user's), for what acts on this host's
    processes (kill): never the shared history."""
    try:
        return history.connect_all(
            str(settings.state_dir), settings.host_name, str(settings.history_db)
        )
    except sqlite3.Error:
        return []


FAILED_SQL = statuses.sql(statuses.FAILURES)
ERROR_SQL = statuses.sql((*statuses.FAILURES, statuses.RETRY_SCHEDULED))
NOT_FINAL_SQL = statuses.sql(statuses.NOT_FINAL)  # skipped, retry-scheduled
SUCCESS, SKIPPED, RETRY, LOST = map(
    statuses.quoted, (statuses.SUCCESS, statuses.SKIPPED, statuses.RETRY_SCHEDULED, statuses.LOST)
)


def _close(conns: list[sqlite3.Connection]) -> None:
    for conn in conns:
        conn.close()


def _sum(rows: list[tuple], index: int) -> int:
    return sum(row[index] or 0 for row in rows)


def _max(rows: list[tuple], index: int):
    return max((row[index] for row in rows if row[index] is not None), default=None)


def _newest(conns: list[sqlite3.Connection], sql: str, params: tuple) -> tuple | None:
    """The newest answer of an `ORDER BY started_at DESC LIMIT 1` query whose first
    column is started_at, over every database."""
    rows = [row for conn in conns if (row := conn.execute(sql, params).fetchone())]
    return max(rows, key=lambda row: row[0]) if rows else None


# Portable SQL (SQLite and PostgreSQL): a count of rows matching a condition is
# COUNT(CASE WHEN ... THEN 1 END), not SQLite's SUM(condition); the same covering index
# answers it, and it counts 0 rather than NULL over no rows.
STATUS_SQL = f"""
SELECT
  COUNT(DISTINCT CASE WHEN status != {RETRY} THEN run_id END) AS runs,
  COUNT(CASE WHEN status = {SUCCESS} THEN 1 END) AS successes,
  COUNT(CASE WHEN status IN {FAILED_SQL} THEN 1 END) AS failures,
  MAX(started_at) AS last_run,
  MAX(CASE WHEN status = {SUCCESS} THEN started_at END) AS last_success,
  MAX(CASE WHEN status IN {FAILED_SQL} THEN started_at END) AS last_failure
FROM runs WHERE task = ? AND status != {SKIPPED}
"""


def task_status(
    settings: Settings,
    manifest: Manifest,
    names: list[str] | None,
    view: readers.Histories | None = None,
) -> list[TaskStatus]:
    """CONTRACT.md `status` per task, figures from history (the 004 seed's counters), in
    `view` (default: this host's). `host` is the view's scope, `hosts` those that ran it."""
    overrides = read_overrides(settings)
    result = []
    with _reading(settings, manifest, view) as shown:
        tasks = [task for task in manifest.tasks if not names or task.name in names]
        figures = {task.name: _figures(shown.conns, task.name) for task in tasks}
        ran = _hosts_of(settings, shown, {k: f["runs"] > 0 for k, f in figures.items()})
        for task in tasks:
            enabled = effective_enabled(task, overrides)
            state = _state(settings, task.name, enabled, figures[task.name])
            result.append(
                TaskStatus(
                    name=task.name,
                    state=state,
                    **figures[task.name],
                    next_run=next_run(task, settings) if enabled else None,
                    override=override_of(task, overrides),
                    **_ping_figures(settings, shown.conns, task),
                    host=scope_of(shown),
                    hosts=ran.get(task.name, []),
                )
            )
    return result


def _hosts_of(
    settings: Settings, view: readers.Histories, ran: dict[str, bool], since: str = ""
) -> dict[str, list[str]]:
    """The hosts that ran each task of `ran` (rows not NOT_FINAL, since `since`),
    asked of the shared history; a local history holds this host's runs alone, so there
    it is this host for the tasks `ran` says ran."""
    if view.shared:
        from agency_cron import remote

        return remote.hosts_by_task(view.conns[0], list(ran), since)
    return {name: [settings.host_name] for name, did in ran.items() if did}


def _figures(conns: list[sqlite3.Connection], name: str) -> dict:
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
    conns = history.holding(conns, name)
    if not conns:
        return empty
    totals = [conn.execute(STATUS_SQL, (name,)).fetchone() for conn in conns]
    keys = list(empty)[:6]
    figures = {k: _sum(totals, i) if i < 3 else _max(totals, i) for i, k in enumerate(keys)}
    last = _newest(
        conns,
        "SELECT started_at, status FROM runs WHERE task = ?"
        f" AND status NOT IN {NOT_FINAL_SQL} ORDER BY started_at DESC, id DESC LIMIT 1",
        (name,),
    )
    error = _newest(
        conns,
        "SELECT started_at, output_tail, note, exit_code FROM runs WHERE task = ?"
        f" AND status IN {ERROR_SQL}"
        " ORDER BY started_at DESC, id DESC LIMIT 1",
        (name,),
    )
    figures["last_status"] = last[1] if last else None
    figures["last_error"] = _error_text(error[1:]) if error else None
    return figures


# The newest ping outcome among the task's newest rows: a task that has just started to
# ping must not make every status read walk its whole history looking for one.
LAST_PING_SQL = """
SELECT started_at, ping FROM (
  SELECT started_at, id, ping FROM runs WHERE task = ? ORDER BY started_at DESC, id DESC LIMIT 100
) AS newest WHERE ping IS NOT NULL ORDER BY started_at DESC, id DESC LIMIT 1
"""


def _ping_figures(settings: Settings, conns: list[sqlite3.Connection], task: Task) -> dict:
    """`ping`: whether the task's runs ping (ping_url, else PING_URL); `last_ping`: the
    outcome of the newest final ping ("ok", "failed (HTTP 404)"), None before the first."""
    from agency_cron import ping

    template = task.ping_url if task.ping_url is not None else settings.ping_url
    if ping.resolve(template, task.name) is None:
        return {"ping": False, "last_ping": None}
    newest = _newest(history.holding(conns, task.name), LAST_PING_SQL, (task.name,))
    return {"ping": True, "last_ping": newest[1] if newest else None}


def _error_text(row) -> str:
    tail, note, code = row
    lines = [line for line in (tail or "").splitlines() if line.strip()]
    return note or (lines[-1] if lines else f"exit code {code}")


def _state(settings: Settings, name: str, enabled: bool, figures: dict) -> str:
    if running_pid(settings, name) or figures["last_status"] == statuses.RUNNING:
        return "running"  # a state (CONTRACT.md's status), named as the status is
    if layout.completed_path(settings, name).exists():
        return "completed"
    if not enabled:
        return "disabled"
    if figures["last_status"] in statuses.FAILURES:
        return "failing"
    return "ok" if figures["last_status"] == statuses.SUCCESS else "never-run"


HISTORY_KEYS = (
    "run_id",
    "started_at",
    "finished_at",
    "duration_s",
    "exit_code",
    "status",
    "attempt",
)


def task_history(
    settings: Settings,
    name: str,
    limit: int,
    offset: int = 0,
    view: readers.Histories | None = None,
) -> list[RunRow]:
    """CONTRACT.md `history`: the task's attempts in `view` (default: this host's), newest
    first, each with the host that ran it."""
    with _reading(settings, None, view) as shown:
        found = history.rows_of_all(shown.conns, name, limit, offset)
    return [history_row(row) for row in found]


def history_row(row: dict) -> RunRow:
    return RunRow(**_run_fields(row))


def _run_fields(row: dict) -> dict:
    """A history.db row's RunRow fields (CONTRACT.md's HISTORY_KEYS first)."""
    return {
        **{k: row[k] for k in HISTORY_KEYS},
        "attempts": row["attempts"],
        "note": row["note"],
        "alert": row["alert"],
        "ping": row.get("ping"),
        "host": row.get("host"),
    }


def history_count(settings: Settings, name: str, view: readers.Histories | None = None) -> int:
    with _reading(settings, None, view) as shown:
        return sum(history.count(conn, name) for conn in shown.conns)


def run_attempts(
    settings: Settings, run_id: str, view: readers.Histories | None = None
) -> list[RunAttempt]:
    """Every attempt of one run (with the task and its output tail), first attempt first."""
    with _reading(settings, None, view) as shown:
        rows = history.run_rows_of_all(shown.conns, run_id)
    return [
        RunAttempt(**_run_fields(r), task=r["task"], output_tail=r["output_tail"]) for r in rows
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


KILL_WAIT_S = 20.0  # the runner's grace (10 s) before SIGKILL, and time to spare


def kill_task(settings: Settings, name: str, run_id: str | None = None) -> list[Ended]:
    """End the task's runs in progress (every one: `overlap: allow` may have several) or
    only `run_id`, each with its whole process tree; returns once the trees are gone or the
    wait ran out.

    A live runner gets SIGTERM and ends its tree itself (SIGKILL after its grace), records
    `killed` and exits. The processes a dead runner left (a `lost` run; they hold the task's
    lock, or carry its run id) are ended here the same way. CheckFailed when none runs.
    """
    from agency_cron import runner

    runners = _live_runners(settings, name)
    orphans = _orphans(settings, name, {pid for _, pid in runners})
    if run_id is not None:
        runners = [(r, p) for r, p in runners if r == run_id]
        orphans = {r: pids for r, pids in orphans.items() if r == run_id}
    if not runners and not orphans:
        which = f"run {run_id} of {name}" if run_id else name
        raise CheckFailed(f"{which}: not running")
    identities = {pid: history.process_identity(pid) for _, pid in runners}
    for _, pid in runners:
        _signal(pid, signal.SIGTERM)
    ended = {r: runner.end_processes(pids, runner.KILL_GRACE_S) for r, pids in orphans.items()}
    results = [Ended(r, pid, _wait_gone(pid, identities[pid])) for r, pid in runners]
    results += [Ended(r, None, ended[r]) for r in orphans]
    return results


def _live_runners(settings: Settings, name: str) -> list[tuple[str, int]]:
    """(run_id, runner pid) of the task's runs in progress: from history, and the lock's
    holder (found even when history could not be written)."""
    found: dict[int, str] = {}
    conns = _local_conns(settings)
    try:
        for conn in history.holding(conns, name):
            for row in history.running_rows(conn, name):
                if row["host"] == settings.host_name:  # the name its runs record
                    found[row["pid"]] = row["run_id"]
    except sqlite3.Error:
        pass
    finally:
        _close(conns)
    holder = running_pid(settings, name)
    if holder is not None and holder not in found:
        found[holder] = "?"
    return [(run, pid) for pid, run in found.items()]


def _orphans(settings: Settings, name: str, runners: set[int]) -> dict[str, set[int]]:
    """Processes left by dead runners, by run id: those carrying the run id of one of the
    task's recent lost runs, and those holding the task's lock while no live runner does."""
    from agency_cron import runner

    lost_runs = _recent_lost_runs(settings, name)
    found: dict[str, set[int]] = {}
    for run in lost_runs:
        marked = runner.marked_processes(f"AGENCY_CRON_RUN_ID={run}") - runners
        if marked:
            found[run] = marked
    lock = settings.state_dir / "locks" / f"{name}.lock"
    holding = set(runner.processes_holding(str(lock))) if lock.exists() else set()
    if holding and not holding & runners:
        rest = holding - set().union(*found.values()) - {os.getpid()}
        if rest:
            key = lost_runs[0] if lost_runs else "?"
            found[key] = found.get(key, set()) | rest
    return found


def _recent_lost_runs(settings: Settings, name: str) -> list[str]:
    conns = _local_conns(settings)
    rows: list[tuple] = []
    try:
        for conn in history.holding(conns, name):
            rows += conn.execute(
                f"SELECT started_at, run_id FROM runs WHERE task = ? AND status = {LOST}"
                " ORDER BY started_at DESC LIMIT 5",
                (name,),
            ).fetchall()
    except sqlite3.Error:
        pass
    finally:
        _close(conns)
    return list(dict.fromkeys(run for _, run in sorted(rows, reverse=True)))[:5]


def _signal(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, signum)


def _wait_gone(pid: int, identity: str | None, timeout: float = KILL_WAIT_S) -> bool:
    """Wait until the process `pid` (the one with `identity`) has ended."""
    import time

    end = time.monotonic() + timeout
    while time.monotonic() < end:
        now = history.process_identity(pid)
        if now is None or (identity is not None and now != identity):
            return True
        time.sleep(0.05)
    return False


# --- log-summary and overdue detection -------------------------------------------------

SUMMARY_SQL = f"""
SELECT
  COUNT(CASE WHEN status NOT IN {NOT_FINAL_SQL} THEN 1 END) AS runs,
  COUNT(CASE WHEN status IN {FAILED_SQL} THEN 1 END) AS failures,
  COUNT(CASE WHEN status = {SKIPPED} THEN 1 END) AS skipped
FROM runs WHERE task = ? AND started_at >= ?
"""
LAST_SQL = f"""
SELECT started_at, status, duration_s, exit_code FROM runs
WHERE task = ? AND status NOT IN {NOT_FINAL_SQL}
ORDER BY started_at DESC LIMIT 1
"""
LAST_SUCCESS_SQL = f"SELECT MAX(started_at) FROM runs WHERE task = ? AND status = {SUCCESS}"
LAST_ERROR_SQL = f"""
SELECT started_at, output_tail, note, exit_code FROM runs
WHERE task = ? AND status IN {ERROR_SQL}
ORDER BY started_at DESC LIMIT 1
"""
ERROR_LINES = 5


def parse_since(text: str) -> int:
    """'24h', '7d', '90m' -> seconds (the same durations as the manifest)."""
    from agency_cron.errors import UsageError
    from agency_cron.fields import parse_duration

    try:
        return parse_duration(text)
    except ValueError as exc:
        raise UsageError(f"--since: {exc}") from None


def log_summary(
    settings: Settings,
    manifest: Manifest,
    since_s: int,
    names: list[str] | None = None,
    view: readers.Histories | None = None,
) -> Summary:
    """Per task: last run, status, duration, runs and failures in the window, last error
    lines, next run, overdue, in `view` (default: the fleet), added up over its hosts, and
    the hosts that ran it in the window. One indexed query per task: the history is never
    scanned whole. Overdue reads the view's last success: for a `scope: fleet` task, any
    host's (every view holds every host's rows of those tasks).
    """
    from datetime import UTC, timedelta

    now = datetime.now(UTC)
    window_start = (now - timedelta(seconds=since_s)).strftime("%Y-%m-%dT%H:%M:%S.000+00:00")
    overrides = read_overrides(settings)
    rows = []
    with _reading(settings, manifest, view, readers.ALL) as shown:
        wanted = [task for task in manifest.tasks if not names or task.name in names]
        by_host = successes_by_host(shown, wanted)
        for task in wanted:
            enabled = effective_enabled(task, overrides)
            row = _summary_row(shown.conns, task, window_start)
            row["next_run"] = next_run(task, settings) if enabled else None
            row["enabled"] = enabled
            late = lateness(settings, task, row["last_success"], now, by_host.get(task.name))
            row["overdue"] = bool(enabled and late.reason)
            rows.append(row)
        ran = _hosts_of(settings, shown, {r["name"]: r["runs"] > 0 for r in rows}, window_start)
        scope = scope_of(shown)
    tasks = [SummaryRow(**row, hosts=ran.get(row["name"], [])) for row in rows]
    return Summary(generated_at=now.isoformat(), since=window_start, tasks=tasks, host=scope)


def _summary_row(conns: list[sqlite3.Connection], task: Task, window_start: str) -> dict:
    row: dict[str, Any] = {
        "name": task.name,
        "last_run": None,
        "last_status": None,
        "last_duration_s": None,
        "last_exit_code": None,
        "runs": 0,
        "failures": 0,
        "skipped": 0,
        "last_error": [],
        "last_success": None,
    }
    conns = history.holding(conns, task.name)
    if not conns:
        return row
    windows = [conn.execute(SUMMARY_SQL, (task.name, window_start)).fetchone() for conn in conns]
    row.update(runs=_sum(windows, 0), failures=_sum(windows, 1), skipped=_sum(windows, 2))
    last = _newest(conns, LAST_SQL, (task.name,))
    if last:
        row.update(
            last_run=last[0], last_status=last[1], last_duration_s=last[2], last_exit_code=last[3]
        )
    row["last_success"] = _last_success(conns, task.name)
    error = _newest(conns, LAST_ERROR_SQL, (task.name,))
    if error:
        _, tail, note, code = error
        lines = [line for line in (tail or "").splitlines() if line.strip()]
        row["last_error"] = lines[-ERROR_LINES:] or [note or f"exit code {code}"]
    return row


def _last_success(conns: list[sqlite3.Connection], name: str) -> str | None:
    return _max([conn.execute(LAST_SUCCESS_SQL, (name,)).fetchone() for conn in conns], 0)


def expected_interval(task: Task) -> int | None:
    """Seconds within which a success is expected: expect_within, else the longest gap
    between the next fire times (a month of them at most), None for @reboot-only tasks.
    """
    if task.expect_within:
        return task.expect_within
    return _longest_gap(task.schedule, task.timezone, _this_hour())


def _this_hour() -> str:
    return datetime.now().strftime("%Y-%m-%dT%H")


@lru_cache(maxsize=1024)
def _longest_gap(schedules: tuple[str, ...], timezone: str | None, hour: str) -> int | None:
    """Memoised per schedule (and hour): a hundred tasks usually share a few schedules."""
    upcoming = next_runs(schedules, 32, zone=zone_of(timezone))
    if len(upcoming) < 2:
        return None
    return int(max((b - a).total_seconds() for a, b in zip(upcoming, upcoming[1:], strict=False)))


def grace_for(interval: int) -> int:
    """Half the interval, between a minute and an hour: late enough for a slow start,
    early enough that a daily task that did not run is noticed the same morning."""
    return max(60, min(interval // 2, 3600))


def overdue_reason(
    settings: Settings, task: Task, last_success: str | None, now: datetime
) -> str | None:
    """Why the task is overdue, or None. A running task is never overdue; a task never
    run is judged from the time it was installed (its spec file)."""
    if expected_interval(task) is None or running_pid(settings, task.name):
        return None
    return _late_since(settings, task, last_success, now)


def _late_since(
    settings: Settings, task: Task, last_success: str | None, now: datetime
) -> str | None:
    """overdue_reason() once the task is known not to be running here."""
    from datetime import timedelta

    interval = expected_interval(task)
    if interval is None:
        return None
    deadline = now - timedelta(seconds=interval + grace_for(interval))
    reference = _parse_iso(last_success) if last_success else _installed_at(settings, task.name)
    if reference is None or reference >= deadline:
        return None
    if last_success:
        return f"last success {last_success}, expected one every {_human(interval)}"
    return f"never succeeded since it was installed ({reference.isoformat()})"


def _parse_iso(text: str) -> datetime:
    return datetime.fromisoformat(text)


def _installed_at(settings: Settings, name: str) -> datetime | None:
    from datetime import UTC

    try:
        mtime = layout.spec_path(settings, name).stat().st_mtime
    except FileNotFoundError:
        return None
    return datetime.fromtimestamp(mtime, UTC)


def _human(seconds: int) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def overdue_tasks(
    settings: Settings, manifest: Manifest, view: readers.Histories | None = None
) -> list[Overdue]:
    """`health`: every enabled task with no success within its expected interval, in
    `view` (default: the fleet). `hosts`: where a host-scoped task is late."""
    from datetime import UTC

    now = datetime.now(UTC)
    overrides = read_overrides(settings)
    found = []
    with _reading(settings, manifest, view, readers.ALL) as shown:
        enabled = [task for task in manifest.tasks if effective_enabled(task, overrides)]
        by_host = successes_by_host(shown, enabled)
        for task in enabled:
            last = _last_success(history.holding(shown.conns, task.name), task.name)
            late = lateness(settings, task, last, now, by_host.get(task.name))
            if late.reason:
                found.append(Overdue(task.name, late.last_success, late.reason, late.hosts))
    return found


def successes_by_host(
    view: readers.Histories, tasks: Iterable[Task]
) -> dict[str, dict[str, str | None]]:
    """In the fleet view of the shared history, each host-scoped task's last success per
    host that reported it: such a task is overdue where one host stopped succeeding (a
    `scope: fleet` task, where none succeeded). {} in any other view: one host's."""
    if not view.shared or view.host is not None:
        return {}
    from agency_cron import remote

    names = [task.name for task in tasks if getattr(task, "scope", "host") != "fleet"]
    return remote.last_success_by_host(view.conns[0], names)


@dataclass(frozen=True)
class Late:
    reason: str | None  # None: on time
    last_success: str | None
    hosts: list[str]  # the late hosts, in a fleet view of a host-scoped task


def lateness(
    settings: Settings,
    task: Task,
    last_success: str | None,
    now: datetime,
    by_host: dict[str, str | None] | None = None,
) -> Late:
    """overdue_reason() of the newest success, or with `by_host` (successes_by_host) of
    each host's: the reasons of the late ones, each named."""
    if not by_host:
        return Late(overdue_reason(settings, task, last_success, now), last_success, [])
    if expected_interval(task) is None or running_pid(settings, task.name):
        return Late(None, last_success, [])  # once per task: the lock file is this host's
    reasons = {host: _late_since(settings, task, at, now) for host, at in by_host.items()}
    hosts = [host for host, why in reasons.items() if why]
    if not hosts:
        return Late(None, last_success, [])
    oldest = min((by_host[h] for h in hosts), key=lambda at: at or "")
    return Late("; ".join(f"on {h}: {reasons[h]}" for h in hosts), oldest, hosts)


def alert_overdue(settings: Settings, overdue: list[Overdue]) -> str:
    """One alert naming every overdue task, through the same Apprise path as the runner."""
    import socket

    from agency_cron import alerts

    names = ", ".join(item.name for item in overdue)
    event = {
        "host": socket.gethostname(),
        "task": f"health ({names})",
        "status": "overdue",
        "exit_code": 1,
        "duration_s": 0,
        "attempt": 1,
        "attempts": 1,
        "run_id": "-",
        "output_tail": "\n".join(f"{i.name}: {i.reason}" for i in overdue),
    }
    secrets = secret_values(settings.values)
    return alerts.send(list(settings.alert_urls), "failure", event, secrets, settings.alert_timeout)
