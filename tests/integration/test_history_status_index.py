"""history schema 5: `status` counts distinct run ids from an index alone, and an older
history.db (schema 4) is migrated to it on first open, its rows kept."""

from __future__ import annotations

import sqlite3

from agency_cron import history, reports


def schema_4(path) -> None:
    conn = sqlite3.connect(path, isolation_level=None)
    for version in range(1, 5):
        for statement in history.MIGRATIONS[version]:
            conn.execute(statement)
    conn.execute("PRAGMA user_version = 4")
    conn.execute(
        "INSERT INTO runs (task, run_id, attempt, attempts, started_at, status)"
        " VALUES ('alpha', 'r1', 1, 1, '2030-01-01T00:00:00.000+00:00', 'success')"
    )
    conn.close()


def test_an_old_history_is_migrated_and_status_reads_an_index_only(tmp_path):
    path = tmp_path / "history.db"
    schema_4(path)
    conn = history.connect(str(path))
    assert conn.execute("PRAGMA user_version").fetchone()[0] == history.SCHEMA_VERSION
    plan = " ".join(
        row[3] for row in conn.execute("EXPLAIN QUERY PLAN " + reports.STATUS_SQL, ("alpha",))
    )
    assert "COVERING INDEX runs_task_run" in plan, plan
    assert conn.execute(reports.STATUS_SQL, ("alpha",)).fetchone()[:3] == (1, 1, 0)
