"""The readers' SQL answers the same on SQLite and on PostgreSQL (issue 13 point 2).

One local history.db is filled through history.py (every status, pings, check results),
sent to a real PostgreSQL server by remote.push (the spool's own path), and every query
the readers run is asked of both: the raw rows first, then the readers' results (status,
log-summary, history, health, the dashboard's checks, the metrics' figures). The SQLite
side keeps the plans the indexes were made for.
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta

import pytest

from agency_cron import dashboard, history, metrics, readers, remote, reports, results
from agency_cron.config import load_settings
from agency_cron.manifest import load_manifest

MANIFEST = """\
tasks:
  - name: alpha
    schedule: "*/5 * * * *"
    command: "true"
    ping_url: http://127.0.0.1:9/ping/{name}
  - name: beta
    schedule: "@hourly"
    command: "false"
  - name: gamma
    schedule: "@daily"
    command: "true"
"""
STATUSES = ("success", "failed", "timeout", "skipped", "retry-scheduled", "killed", "success")


def stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "+00:00"


def fill(conn: sqlite3.Connection, now: datetime) -> None:
    """Rows of alpha and beta over two days (gamma never ran), and check results."""
    for task in ("alpha", "beta"):
        for i in range(40):
            status = (
                STATUSES[i % len(STATUSES)] if task == "beta" else ("success", "failed")[i % 4 == 3]
            )
            started = now - timedelta(hours=i * 1.3, minutes=len(task))
            history.record(
                conn,
                {
                    "task": task,
                    "run_id": f"{task}-{i // 2}",  # two attempts per run id
                    "attempt": 1 + i % 2,
                    "attempts": 2,
                    "started_at": stamp(started),
                    "finished_at": stamp(started + timedelta(seconds=3)),
                    "duration_s": 3.25,
                    "exit_code": 0 if status == "success" else 1,
                    "status": status,
                    "host": "web-0",
                    "output_tail": f"line one\nerror {i}: it broke\n",
                    "ping": "ok" if task == "alpha" and i % 5 == 0 else None,
                },
            )
    checks = [
        {
            "kind": "health",
            "component": component,
            "check_name": "http",
            "ok": int(i % 2 == 0),
            "detail": f"try {i}",
            "duration_s": 0.5,
            "checked_at": stamp(now - timedelta(minutes=i)),
            "run_id": f"c{i}",
            "host": "web-0",
        }
        for i in range(6)
        for component in ("db", "web")
    ]
    history.record_checks(conn, checks)


@pytest.fixture
def both(env, pg_url):
    """(settings, manifest, local sqlite3 connection, PostgreSQL Reader) holding the same rows."""
    env.write_manifest(MANIFEST)
    env.add_config(HOST_NAME="web-0")
    settings = load_settings(env.config)
    manifest = load_manifest(env.manifest, settings, strict=False)
    local = history.connect(str(env.state_dir / "history.db"))
    fill(local, datetime.now(UTC))
    shared = remote.connect(pg_url)
    try:
        assert remote.push(shared, local, "web-0") > 0
    finally:
        shared.close()
    reader = remote.reader(pg_url, 10, None)
    yield settings, manifest, local, reader
    reader.close()
    local.close()


def normal(rows) -> list[tuple]:
    return [tuple(round(v, 6) if isinstance(v, float) else v for v in row) for row in rows]


def window() -> str:
    return (datetime.now(UTC) - timedelta(hours=24)).strftime("%Y-%m-%dT%H:%M:%S.000+00:00")


QUERIES = {
    "status": (reports.STATUS_SQL, lambda t: (t,)),
    "summary": (reports.SUMMARY_SQL, lambda t: (t, window())),
    "last": (reports.LAST_SQL, lambda t: (t,)),
    "last success": (reports.LAST_SUCCESS_SQL, lambda t: (t,)),
    "last error": (reports.LAST_ERROR_SQL, lambda t: (t,)),
    "last ping": (reports.LAST_PING_SQL, lambda t: (t,)),
    "last outcome": (metrics.LAST_OUTCOME_SQL, lambda t: (t,)),
    "latest checks": (dashboard.LATEST_CHECKS_SQL, lambda t: ("health",)),
}


@pytest.mark.parametrize("name", list(QUERIES))
def test_each_query_answers_the_same_on_both(both, name):
    _, _, local, reader = both
    sql, params = QUERIES[name]
    for task in ("alpha", "beta", "gamma"):
        mine = normal(local.execute(sql, params(task)).fetchall())
        theirs = normal(reader.execute(sql, params(task)).fetchall())
        assert mine == theirs, (name, task)
        if name == "status" and task != "gamma":
            assert mine[0][0] > 0  # something was counted
    counts = sorted(local.execute(metrics.COUNTS_SQL).fetchall())
    assert counts == sorted(tuple(r) for r in reader.execute(metrics.COUNTS_SQL).fetchall())


def test_the_readers_results_are_the_same_on_both(both):
    settings, manifest, local, reader = both
    on_sqlite = readers.Histories([local], None, hosts=["web-0"])
    on_pg = readers.Histories([reader], None, shared=True)
    for view in (on_sqlite, on_pg):
        view.close = lambda: None  # type: ignore[method-assign]  # the fixture closes them

    def plain(value):
        data = results.plain(value)
        if isinstance(data, dict):
            data.pop("generated_at", None)
        return data

    assert plain(reports.task_status(settings, manifest, None, on_sqlite)) == plain(
        reports.task_status(settings, manifest, None, on_pg)
    )
    assert plain(reports.log_summary(settings, manifest, 86400, None, on_sqlite)) == plain(
        reports.log_summary(settings, manifest, 86400, None, on_pg)
    )
    for task in ("alpha", "beta"):
        assert plain(reports.task_history(settings, task, 15, 3, on_sqlite)) == plain(
            reports.task_history(settings, task, 15, 3, on_pg)
        )
        # A count after rows were read by name: plain rows again on both.
        assert reports.history_count(settings, task, on_sqlite) == 40
        assert reports.history_count(settings, task, on_pg) == 40
    assert plain(reports.run_attempts(settings, "beta-3", on_sqlite)) == plain(
        reports.run_attempts(settings, "beta-3", on_pg)
    )
    assert plain(reports.overdue_tasks(settings, manifest, on_sqlite)) == plain(
        reports.overdue_tasks(settings, manifest, on_pg)
    )
    for kind in ("health", "backup"):
        assert dashboard.latest_checks([local], kind) == dashboard.latest_checks([reader], kind)
    assert len(dashboard.latest_checks([reader], "health")) == 2
    mine = metrics.read_snapshot(settings, manifest, on_sqlite)
    theirs = metrics.read_snapshot(settings, manifest, on_pg)
    local.execute("COMMIT")  # read_snapshot's read transactions
    reader.execute("COMMIT")
    assert mine.tasks == theirs.tasks
    assert (mine.host, theirs.host) == ("web-0", "all")


def test_the_sqlite_plans_stay_index_only(both):
    _, _, local, _ = both
    plans = {
        reports.STATUS_SQL: ("alpha",),
        reports.SUMMARY_SQL: ("alpha", window()),
    }
    found = [
        " ".join(row[3] for row in local.execute("EXPLAIN QUERY PLAN " + sql, params))
        for sql, params in plans.items()
    ]
    assert "COVERING INDEX runs_task_run" in found[0], found[0]
    assert "COVERING INDEX runs_task_started_status" in found[1], found[1]
