"""Run history in SQLite (STATE_DIR/history.db). Standard library only: the runner uses it.

WAL lets readers (status, log-summary) work while runs write; each run writes one short
transaction per attempt, and a busy timeout makes twenty runs finishing together queue
for milliseconds instead of failing with "database is locked".
"""

from __future__ import annotations

import os

try:  # the C module: the `sqlite3` package adds datetime adapters that nothing here uses,
    import _sqlite3 as sqlite3  # and importing them costs the runner 2-3 ms on every run
except ImportError:  # another Python implementation
    import sqlite3

SCHEMA_VERSION = 4
BUSY_TIMEOUT_MS = 30_000
COLUMNS = (
    "task",
    "run_id",
    "attempt",
    "attempts",
    "started_at",
    "finished_at",
    "duration_s",
    "exit_code",
    "status",
    "host",
    "pid",
    "output_tail",
    "alert",
    "note",
    "runner",
)
# The rows of runs still in progress (see migration 4); the text must stay identical to the
# partial index's, for SQLite to use that index.
OPEN = "(status = 'running' OR (status = 'retry-scheduled' AND runner IS NOT NULL))"
# Each entry moves the schema from version N-1 to N; never edit a released one, add one.
MIGRATIONS = {
    1: (
        """CREATE TABLE IF NOT EXISTS runs (
            id INTEGER PRIMARY KEY,
            task TEXT NOT NULL,
            run_id TEXT NOT NULL,
            attempt INTEGER NOT NULL,
            attempts INTEGER NOT NULL,
            started_at TEXT NOT NULL,
            finished_at TEXT,
            duration_s REAL,
            exit_code INTEGER,
            status TEXT NOT NULL,
            host TEXT,
            pid INTEGER,
            output_tail TEXT,
            alert TEXT,
            note TEXT
        )""",
        "CREATE INDEX IF NOT EXISTS runs_task_started ON runs (task, started_at)",
        "CREATE INDEX IF NOT EXISTS runs_started ON runs (started_at)",
        "CREATE INDEX IF NOT EXISTS runs_task_status ON runs (task, status, started_at)",
    ),
    # Results of the built-in checks (health, backup, integration), one row per check, so
    # that reports and the dashboard read them without parsing logs.
    2: (
        """CREATE TABLE IF NOT EXISTS check_results (
            id INTEGER PRIMARY KEY,
            kind TEXT NOT NULL,
            component TEXT NOT NULL,
            check_name TEXT NOT NULL,
            ok INTEGER NOT NULL,
            detail TEXT,
            duration_s REAL,
            checked_at TEXT NOT NULL,
            run_id TEXT
        )""",
        "CREATE INDEX IF NOT EXISTS check_results_kind_at ON check_results (kind, checked_at)",
    ),
    # log-summary counts a task's runs by status in a time window: with status in the
    # index that is an index-only scan (measured on 1M rows: 36 -> 29 ms for 100 tasks).
    3: (
        "CREATE INDEX IF NOT EXISTS runs_task_started_status ON runs (task, started_at, status)",
        "DROP INDEX IF EXISTS runs_task_started",
    ),
    # A run is in history from its start (a `running` row, completed at its end); `runner`
    # names the runner process beyond its pid ("BOOT_ID:START_TIME"), so that a reader can
    # tell a live run from one whose runner died (`lost`) even after the pid was reused.
    # Open rows are those of live runs: `running`, and a `retry-scheduled` attempt whose run
    # is waiting for its next one (its runner column is cleared when that one starts). The
    # partial index keeps their look-up tiny whatever the size of the history.
    4: (
        "ALTER TABLE runs ADD COLUMN runner TEXT",
        f"CREATE INDEX IF NOT EXISTS runs_open ON runs (task) WHERE {OPEN}",
    ),
}


def connect(path: str, create: bool = True) -> sqlite3.Connection:
    """Open the history, creating or migrating it when needed (safe from many processes)."""
    if create:
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    elif not os.path.exists(path):
        raise FileNotFoundError(path)
    conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    if conn.execute("PRAGMA user_version").fetchone()[0] != SCHEMA_VERSION:
        _migrate(conn)
    # NORMAL is durable across a crash of the process (WAL); it only risks the last
    # transactions on power loss, and saves an fsync on every run.
    conn.execute("PRAGMA synchronous = NORMAL")
    return conn


def _migrate(conn: sqlite3.Connection) -> None:
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("BEGIN IMMEDIATE")
    try:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise RuntimeError(
                f"history.db has schema {version}, newer than this agency-cron ({SCHEMA_VERSION})"
            )
        for target in range(version + 1, SCHEMA_VERSION + 1):
            for statement in MIGRATIONS[target]:
                conn.execute(statement)
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def record(conn: sqlite3.Connection, row: dict) -> int:
    """Insert one attempt; returns its id."""
    values = [row.get(column) for column in COLUMNS]
    placeholders = ", ".join("?" for _ in COLUMNS)
    cursor = conn.execute(
        f"INSERT INTO runs ({', '.join(COLUMNS)}) VALUES ({placeholders})", values
    )
    return cursor.lastrowid


def record_checks(conn: sqlite3.Connection, rows: list[dict]) -> None:
    """Insert check results (kind, component, check_name, ok, detail, duration_s, checked_at, run_id)."""
    columns = (
        "kind",
        "component",
        "check_name",
        "ok",
        "detail",
        "duration_s",
        "checked_at",
        "run_id",
    )
    with conn:
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(
            f"INSERT INTO check_results ({', '.join(columns)}) VALUES ({', '.join('?' for _ in columns)})",
            [[row.get(c) for c in columns] for row in rows],
        )


def set_alert(conn: sqlite3.Connection, row_id: int, outcome: str) -> None:
    conn.execute("UPDATE runs SET alert = ? WHERE id = ?", (outcome, row_id))


def last_final_status(conn: sqlite3.Connection, task: str) -> str | None:
    """The status of the task's last finished run, skipped runs and retries left out."""
    found = conn.execute(
        "SELECT status FROM runs WHERE task = ? AND status NOT IN ('skipped', 'retry-scheduled')"
        " ORDER BY started_at DESC, id DESC LIMIT 1",
        (task,),
    ).fetchone()
    return found[0] if found else None


def rows(conn: sqlite3.Connection, task: str, limit: int, offset: int = 0) -> list[dict]:
    """The task's attempts, newest first, `offset` of them skipped (pagination)."""
    conn.row_factory = sqlite3.Row
    cursor = conn.execute(
        "SELECT * FROM runs WHERE task = ? ORDER BY started_at DESC, id DESC LIMIT ? OFFSET ?",
        (task, limit, offset),
    )
    return [dict(r) for r in cursor]


def count(conn: sqlite3.Connection, task: str) -> int:
    """How many attempts of the task are recorded (an index-only count)."""
    return conn.execute("SELECT COUNT(*) FROM runs WHERE task = ?", (task,)).fetchone()[0]


def run_rows(conn: sqlite3.Connection, run_id: str) -> list[dict]:
    """Every attempt of one run, first attempt first."""
    conn.row_factory = sqlite3.Row
    cursor = conn.execute("SELECT * FROM runs WHERE run_id = ? ORDER BY attempt, id", (run_id,))
    return [dict(r) for r in cursor]


# --- runs in progress, and runs whose runner died (`lost`) --------------------------------

_BOOT_ID: list[str] = []


def _boot_id() -> str:
    if not _BOOT_ID:
        try:
            with open("/proc/sys/kernel/random/boot_id") as handle:
                _BOOT_ID.append(handle.read().strip())
        except OSError:
            _BOOT_ID.append("")
    return _BOOT_ID[0]


def process_identity(pid: int) -> str | None:
    """ "BOOT_ID:START_TIME" of a live process (start time in clock ticks since boot, field 22
    of /proc/PID/stat), None when it is gone. With its pid it names one process: a pid
    reused later, or after a reboot, has another start time or boot id."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            fields = handle.read().rsplit(b")", 1)[1].split()
    except OSError:
        return None
    if fields[0] in (b"Z", b"X"):
        return None
    return f"{_boot_id()}:{fields[19].decode()}"


def start_run(conn: sqlite3.Connection, row: dict) -> int:
    """Insert an attempt as it starts (status `running`); returns its id for finish_run."""
    return record(conn, row)


FINISH_COLUMNS = ("finished_at", "duration_s", "exit_code", "status", "output_tail", "note")


def finish_run(conn: sqlite3.Connection, row_id: int, row: dict) -> None:
    """Complete the attempt start_run inserted: its end, exit code, status, tail and note."""
    assignments = ", ".join(f"{column} = ?" for column in FINISH_COLUMNS)
    values = [row.get(column) for column in FINISH_COLUMNS]
    conn.execute(f"UPDATE runs SET {assignments} WHERE id = ?", (*values, row_id))


def _runner_gone(row: dict, host: str) -> bool:
    """True when the row's runner is certainly dead: same host, and its pid is gone or now
    names another process. A row written on another host is never judged here."""
    if row["host"] != host or not row["pid"]:
        return False
    identity = process_identity(row["pid"])
    if identity is None:
        return True
    return bool(row["runner"]) and identity != row["runner"]


def lost_note(row: dict) -> str:
    return f"its runner (pid {row['pid']}) ended without recording the end of the run"


def find_lost(conn: sqlite3.Connection, task: str | None = None) -> list[dict]:
    """Open rows (running, or waiting to retry) whose runner is gone, as they are."""
    where, args = (OPEN, ()) if task is None else (f"task = ? AND {OPEN}", (task,))
    cursor = conn.execute(f"SELECT id, {', '.join(COLUMNS)} FROM runs WHERE {where}", args)
    names = ["id", *COLUMNS]
    host = os.uname().nodename
    found = (dict(zip(names, r, strict=True)) for r in cursor)
    return [row for row in found if _runner_gone(row, host)]


def sweep_lost(conn: sqlite3.Connection, task: str | None = None) -> list[dict]:
    """Mark open rows whose runner died as `lost` (with a note); returns those rows.

    Every reader calls it, and so does the next run of the task (which then alerts). A
    reader that cannot write the database (read-only file, another user's) shows them as
    lost all the same, through a temporary view that shadows `runs` on its connection only.
    """
    lost = find_lost(conn, task)
    if not lost:
        return []
    for row in lost:
        row.update(status="lost", note=lost_note(row))
    try:
        conn.executemany(
            f"UPDATE runs SET status = 'lost', note = ? WHERE id = ? AND {OPEN}",
            [(row["note"], row["id"]) for row in lost],
        )
    except sqlite3.OperationalError:  # read-only: show, do not store
        _shadow_lost(conn, [row["id"] for row in lost])
    return lost


def _shadow_lost(conn: sqlite3.Connection, ids: list[int]) -> None:
    """TEMP VIEW runs: main.runs with those rows' status read as `lost` (temp names come
    first in SQLite's lookup, so every query of this connection sees it)."""
    listed = ", ".join(str(int(i)) for i in ids)
    columns = ", ".join(
        f"CASE WHEN id IN ({listed}) THEN 'lost' ELSE status END AS status" if c == "status" else c
        for c in ("id", *COLUMNS)
    )
    conn.execute("DROP VIEW IF EXISTS temp.runs")
    conn.execute(f"CREATE TEMP VIEW runs AS SELECT {columns} FROM main.runs")


def unnotified_lost(conn: sqlite3.Connection, task: str) -> list[dict]:
    """The task's lost runs that nobody was told about yet (no alert outcome recorded)."""
    conn.row_factory = sqlite3.Row
    try:
        cursor = conn.execute(
            "SELECT * FROM runs WHERE task = ? AND status = 'lost' AND alert IS NULL ORDER BY id",
            (task,),
        )
        return [dict(r) for r in cursor]
    finally:
        conn.row_factory = None


def lost_to_tell(conn: sqlite3.Connection, task: str) -> list[dict]:
    """What the next run of `task` does first: mark its runs whose runner died as lost, and
    return every lost run of it that nobody was told about yet."""
    sweep_lost(conn, task)
    return unnotified_lost(conn, task)


def running_rows(conn: sqlite3.Connection, task: str) -> list[dict]:
    """The task's open rows, one per run in progress (call sweep_lost first)."""
    conn.row_factory = sqlite3.Row
    try:
        cursor = conn.execute(f"SELECT * FROM runs WHERE task = ? AND {OPEN} ORDER BY id", (task,))
        return [dict(r) for r in cursor]
    finally:
        conn.row_factory = None


def close_wait(conn: sqlite3.Connection, row_id: int, end: dict | None = None) -> None:
    """A `retry-scheduled` row's wait is over: its next attempt starts now (its own row takes
    over), or, with `end` (status, exit_code, note), the run ended during the wait."""
    if end is None:
        conn.execute("UPDATE runs SET runner = NULL WHERE id = ?", (row_id,))
        return
    conn.execute(
        "UPDATE runs SET runner = NULL, status = ?, exit_code = ?, note = ? WHERE id = ?",
        (end["status"], end["exit_code"], end["note"], row_id),
    )
