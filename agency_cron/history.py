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
    import sqlite3  # type: ignore[no-redef]

from agency_cron import statuses
from agency_cron.statuses import LOST, quoted

SCHEMA_VERSION = 7
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
    "ping",
)
# The rows of runs still in progress (see migration 4); the text must stay identical to the
# partial index's, for SQLite to use that index.
_RUNNING, _RETRY, _LOST = (quoted(s) for s in (statuses.RUNNING, statuses.RETRY_SCHEDULED, LOST))
OPEN = f"(status = {_RUNNING} OR (status = {_RETRY} AND runner IS NOT NULL))"
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
    # `status` counts a task's distinct run ids over its whole history: run_id second makes
    # that an index-only scan met in run_id order (100,000 rows, 100 tasks: 211 -> 59 ms;
    # (task, status, started_at, run_id) gave 134 ms).
    5: ("CREATE INDEX IF NOT EXISTS runs_task_run ON runs (task, run_id, status, started_at)",),
    # Heartbeat pings (ping.py): the outcome of a run's final ping ("ok", "failed (HTTP
    # 404)", ...), on the row of the run's last attempt, as `alert` holds the alert's.
    6: ("ALTER TABLE runs ADD COLUMN ping TEXT",),
    # The fleet's shared history (remote.py, HISTORY_URL=postgresql://...) has this same
    # schema. Every local row carries `rev`, a number that grows with each change of any row
    # of its database (the triggers of SQLITE_ONLY), so a database's rows not yet sent are
    # those past the mark the shared history keeps for it (sync_marks: per origin, the
    # random id in `meta`). There a row is keyed by (origin, local_id), its id here: sending
    # it again replaces it, never duplicates it. check_results gets the host the runs have.
    # fleet_claims: which host took a `scope: fleet` task's fire time (once per minute).
    7: (
        "ALTER TABLE runs ADD COLUMN origin TEXT",
        "ALTER TABLE runs ADD COLUMN local_id INTEGER",
        "ALTER TABLE runs ADD COLUMN rev INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE check_results ADD COLUMN host TEXT",
        "ALTER TABLE check_results ADD COLUMN origin TEXT",
        "ALTER TABLE check_results ADD COLUMN local_id INTEGER",
        "ALTER TABLE check_results ADD COLUMN rev INTEGER NOT NULL DEFAULT 0",
        "CREATE INDEX IF NOT EXISTS runs_rev ON runs (rev)",
        "CREATE INDEX IF NOT EXISTS check_results_rev ON check_results (rev)",
        "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
        """CREATE TABLE IF NOT EXISTS sync_marks (
            origin TEXT NOT NULL,
            tbl TEXT NOT NULL,
            host TEXT,
            rev INTEGER NOT NULL,
            synced_at TEXT,
            PRIMARY KEY (origin, tbl)
        )""",
        """CREATE TABLE IF NOT EXISTS fleet_claims (
            task TEXT NOT NULL,
            fire_time TEXT NOT NULL,
            host TEXT NOT NULL,
            run_id TEXT NOT NULL,
            claimed_at TEXT NOT NULL,
            PRIMARY KEY (task, fire_time)
        )""",
    ),
}
# What only the shared history needs: the key a sent row is replaced by, and a host's view
# (its rows of a task in a time window, index-only). A local database holds one host and no
# sent rows: these would only slow every run's insert.
SHARED_ONLY = {
    7: (
        "CREATE UNIQUE INDEX IF NOT EXISTS runs_origin ON runs (origin, local_id)",
        "CREATE UNIQUE INDEX IF NOT EXISTS check_results_origin"
        " ON check_results (origin, local_id)",
        "CREATE INDEX IF NOT EXISTS runs_host_task ON runs (host, task, started_at, status)",
    ),
}
# What only a local database needs: its identity, the rows it already holds counted as not
# yet sent, and the triggers that keep `rev` (the shared history's rows take the rev sent).
SQLITE_ONLY = {
    7: (
        "INSERT OR IGNORE INTO meta (key, value) VALUES ('origin', lower(hex(randomblob(16))))",
        "UPDATE runs SET rev = id",
        "UPDATE check_results SET rev = id",
        *(
            statement
            for table in ("runs", "check_results")
            for statement in (
                f"""CREATE TRIGGER IF NOT EXISTS {table}_rev_insert AFTER INSERT ON {table}
                BEGIN UPDATE {table} SET rev = (SELECT IFNULL(MAX(rev), 0) + 1 FROM {table})
                WHERE id = NEW.id; END""",
                f"""CREATE TRIGGER IF NOT EXISTS {table}_rev_update AFTER UPDATE ON {table}
                WHEN NEW.rev = OLD.rev
                BEGIN UPDATE {table} SET rev = (SELECT MAX(rev) + 1 FROM {table})
                WHERE id = NEW.id; END""",
            )
        ),
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
            for statement in (*MIGRATIONS[target], *SQLITE_ONLY.get(target, ())):
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
    assert cursor.lastrowid is not None  # set by every INSERT into a rowid table
    return cursor.lastrowid


def record_checks(conn: sqlite3.Connection, rows: list[dict]) -> None:
    """Insert check results (kind, component, check_name, ok, detail, duration_s, checked_at,
    run_id, host)."""
    columns = (
        "kind",
        "component",
        "check_name",
        "ok",
        "detail",
        "duration_s",
        "checked_at",
        "run_id",
        "host",
    )
    with conn:
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(
            f"INSERT INTO check_results ({', '.join(columns)}) VALUES ({', '.join('?' for _ in columns)})",
            [[row.get(c) for c in columns] for row in rows],
        )


def set_alert(conn: sqlite3.Connection, row_id: int, outcome: str) -> None:
    conn.execute("UPDATE runs SET alert = ? WHERE id = ?", (outcome, row_id))


def set_ping(conn: sqlite3.Connection, row_id: int, outcome: str) -> None:
    """The outcome of the run's final heartbeat ping, on its last attempt's row."""
    conn.execute("UPDATE runs SET ping = ? WHERE id = ?", (outcome, row_id))


def last_final_status(conn: sqlite3.Connection, task: str) -> str | None:
    """The status of the task's last finished run, skipped runs and retries left out."""
    found = conn.execute(
        f"SELECT status FROM runs WHERE task = ? AND status NOT IN {statuses.sql(statuses.NOT_FINAL)}"
        " ORDER BY started_at DESC, id DESC LIMIT 1",
        (task,),
    ).fetchone()
    return found[0] if found else None


def rows(conn: sqlite3.Connection, task: str, limit: int, offset: int = 0) -> list[dict]:
    """The task's attempts, newest first, `offset` of them skipped (pagination)."""
    return _dicts(
        conn,
        "SELECT * FROM runs WHERE task = ? ORDER BY started_at DESC, id DESC LIMIT ? OFFSET ?",
        (task, limit, offset),
    )


def _dicts(conn: sqlite3.Connection, sql: str, params: tuple) -> list[dict]:
    """The rows of `sql` as dicts; the connection's rows are tuples again afterwards (a
    later `row[0]` must work on the shared history too, whose named rows are dicts)."""
    conn.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in conn.execute(sql, params)]
    finally:
        conn.row_factory = None


def count(conn: sqlite3.Connection, task: str) -> int:
    """How many attempts of the task are recorded (an index-only count)."""
    return conn.execute("SELECT COUNT(*) FROM runs WHERE task = ?", (task,)).fetchone()[0]


def run_rows(conn: sqlite3.Connection, run_id: str) -> list[dict]:
    """Every attempt of one run, first attempt first."""
    return _dicts(conn, "SELECT * FROM runs WHERE run_id = ? ORDER BY attempt, id", (run_id,))


# --- one database per user ---------------------------------------------------------------
#
# A task may run as another user (`user:` on cron.d and systemd, a `user:NAME` crontab).
# That user cannot write the installer's history.db, and must not: it could then rewrite
# or delete every other task's runs. So each process records in the database of its own
# effective user, STATE_DIR/history.d/USER/history.db (a folder install creates and hands
# to USER: SQLite's -wal and -shm files need a folder their writer can create files in),
# and the readers open all of them (users' read-only), run each query on each and
# combine the answers (connect_all, reports.py).
#
# Rows of a user's database count only for the tasks installed to run as that user (their
# spec, in root's STATE_DIR/tasks, is handed to the user by install and only root can do
# that): a user who writes rows for another task into its own file changes nothing.

USERS_DIR = "history.d"
DB_NAME = "history.db"
MERGED_TABLES = ("runs", "check_results")  # what a user database's views filter
_TASK_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-")


def user_db_path(state_dir: str, user: str) -> str:
    return os.path.join(state_dir, USERS_DIR, user, DB_NAME)


def writer_path(state_dir: str, root: str | None = None) -> str:
    """The database this process records in: the installer's (`root`: STATE_DIR/history.db
    unless HISTORY_URL=sqlite:///PATH names another) when it runs as the owner of STATE_DIR,
    else its own user's under history.d."""
    uid = os.geteuid()
    try:
        owner = os.stat(state_dir).st_uid
    except OSError:
        owner = uid  # no STATE_DIR yet: connect() creates it, ours
    if uid == owner:
        return root or os.path.join(state_dir, DB_NAME)
    import pwd  # a built-in module: no measurable cost, and only for runs as another user

    try:
        name = pwd.getpwuid(uid).pw_name
    except KeyError:
        name = str(uid)
    return user_db_path(state_dir, name)


def user_databases(state_dir: str) -> list[tuple[str, int]]:
    """(path, owner uid) of each user's database that may be read: a regular file (no
    symlink, FIFO or device a user could plant) owned by the owner of its folder."""
    import stat

    found = []
    try:
        entries = sorted(os.scandir(os.path.join(state_dir, USERS_DIR)), key=lambda e: e.name)
    except (FileNotFoundError, NotADirectoryError):
        return []
    for entry in entries:
        if not entry.is_dir(follow_symlinks=False):
            continue
        path = os.path.join(entry.path, DB_NAME)
        try:
            info = os.lstat(path)
        except FileNotFoundError:
            continue
        if stat.S_ISREG(info.st_mode) and info.st_uid == entry.stat(follow_symlinks=False).st_uid:
            found.append((path, info.st_uid))
    return found


def task_owners(state_dir: str) -> dict[int, list[str]]:
    """Task names by the uid that owns their installed spec (the user they run as, when
    install handed the spec over; the installer otherwise)."""
    owners: dict[int, list[str]] = {}
    try:
        entries = list(os.scandir(os.path.join(state_dir, "tasks")))
    except (FileNotFoundError, NotADirectoryError):
        return owners
    for entry in entries:
        name = entry.name.removesuffix(".json")
        if entry.name.endswith(".json") and name and set(name) <= _TASK_NAME_CHARS:
            try:
                uid = entry.stat(follow_symlinks=False).st_uid
            except FileNotFoundError:
                continue
            owners.setdefault(uid, []).append(name)
    return owners


def connect_all(
    state_dir: str, host: str | None = None, root: str | None = None
) -> list[sqlite3.Connection]:
    """The readers' connections: STATE_DIR/history.db (opened as connect() opens it) and
    each user's database, read-only, behind temporary views `runs` and `check_results` that
    keep only the rows of the tasks that user runs. Run the same query on each and combine
    the answers (reports.py): each database answers with its own indexes, which a view over
    a UNION ALL of them would not (MAX and ORDER BY ... LIMIT 1 then scan every row).

    A user's database that cannot be read is left out (doctor reports it). Empty when
    there is no database at all.
    """
    found = []
    try:
        found.append(connect(root or os.path.join(state_dir, DB_NAME), create=False))
    except (FileNotFoundError, sqlite3.Error):
        found = []  # none yet, or unreadable: the users' databases still count
    owners = task_owners(state_dir)
    for path, uid in user_databases(state_dir):
        tasks = None if uid == 0 else owners.get(uid)  # root's own speak for every task
        if uid != 0 and not tasks:
            continue  # no task runs as this user now: nothing in its file counts
        try:
            found.append(_open_user_database(path, tasks))
        except sqlite3.Error:
            continue
    for conn in found:
        show_lost(conn, host)  # every reader sees runs whose runner died as `lost`
    return found


def _open_user_database(path: str, tasks: list[str] | None) -> sqlite3.Connection:
    """Read-only, with the views; a database of an older schema reads as the current one
    (missing columns are NULL, a missing table is empty)."""
    from urllib.parse import quote

    conn = sqlite3.connect(
        f"file:{quote(path)}?mode=ro",
        uri=True,
        timeout=BUSY_TIMEOUT_MS / 1000,
        isolation_level=None,
        factory=UserConnection,
    )
    conn.tasks = None if tasks is None else frozenset(tasks)
    try:
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        for table in MERGED_TABLES:
            conn.execute(f"CREATE TEMP VIEW {table} AS {_user_view(conn, table, tasks)}")
    except BaseException:
        conn.close()
        raise
    return conn


class UserConnection(sqlite3.Connection):
    """A user's database, read-only; `tasks`: the tasks its rows count for (None: all)."""

    tasks: frozenset[str] | None = None


def holding(conns: list[sqlite3.Connection], task: str) -> list[sqlite3.Connection]:
    """The databases that may hold rows of `task` (the others would answer nothing)."""
    found = []
    for conn in conns:
        tasks = getattr(conn, "tasks", None)  # None on root's own: it holds every task's
        if tasks is None or task in tasks:
            found.append(conn)
    return found


def _user_view(conn: sqlite3.Connection, table: str, tasks: list[str] | None) -> str:
    have = {row[1] for row in conn.execute(f"PRAGMA main.table_info({table})")}
    columns = current_columns(table)
    picked = ", ".join(c if c in have else f"NULL AS {c}" for c in columns)
    if not have:
        return f"SELECT {picked} WHERE 0"
    select = f"SELECT {picked} FROM main.{table}"
    if tasks is None:
        return select
    names = ", ".join(f"'{name}'" for name in tasks)  # names checked in task_owners()
    if table == "runs":
        return f"{select} WHERE task IN ({names})"
    if "task" not in {row[1] for row in conn.execute("PRAGMA main.table_info(runs)")}:
        return f"{select} WHERE 0"
    return f"{select} WHERE run_id IN (SELECT run_id FROM main.runs WHERE task IN ({names}))"


_CURRENT: dict[str, list[str]] = {}


def current_columns(table: str) -> list[str]:
    """The columns of `table` in this version's schema (from an in-memory database)."""
    if not _CURRENT:
        conn = sqlite3.connect(":memory:", isolation_level=None)
        for target in range(1, SCHEMA_VERSION + 1):
            for statement in MIGRATIONS[target]:
                conn.execute(statement)
        for name in MERGED_TABLES:
            _CURRENT[name] = [row[1] for row in conn.execute(f"PRAGMA table_info({name})")]
        conn.close()
    return _CURRENT[table]


def rows_of_all(
    conns: list[sqlite3.Connection], task: str, limit: int, offset: int = 0
) -> list[dict]:
    """rows() over several databases: each gives its newest limit + offset, then one order."""
    found = [row for conn in conns for row in rows(conn, task, limit + offset)]
    found.sort(key=lambda row: (row["started_at"], row["id"]), reverse=True)
    return found[offset : offset + limit]


def run_rows_of_all(conns: list[sqlite3.Connection], run_id: str) -> list[dict]:
    """run_rows() over several databases (a run is recorded in one: its runner's)."""
    found = [row for conn in conns for row in run_rows(conn, run_id)]
    return sorted(found, key=lambda row: (row["attempt"], row["id"]))


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


def find_lost(
    conn: sqlite3.Connection, task: str | None = None, host: str | None = None
) -> list[dict]:
    """Open rows (running, or waiting to retry) whose runner is gone, as they are; `host`:
    the name this host records its runs under (HOST_NAME; default its node name)."""
    where, args = (OPEN, ()) if task is None else (f"task = ? AND {OPEN}", (task,))
    cursor = conn.execute(f"SELECT id, {', '.join(COLUMNS)} FROM runs WHERE {where}", args)
    names = ["id", *COLUMNS]
    host = host or os.uname().nodename
    found = (dict(zip(names, r, strict=True)) for r in cursor)
    return [row for row in found if _runner_gone(row, host)]


def sweep_lost(
    conn: sqlite3.Connection, task: str | None = None, host: str | None = None
) -> list[dict]:
    """Mark open rows whose runner died as `lost` (with a note); returns those rows.

    Every reader calls it, and so does the next run of the task (which then alerts). A
    reader that cannot write the database (read-only file, another user's) shows them as
    lost all the same, through a temporary view that shadows `runs` on its connection only.
    """
    lost = find_lost(conn, task, host)
    if not lost:
        return []
    for row in lost:
        row.update(status=LOST, note=lost_note(row))
    try:
        conn.executemany(
            f"UPDATE runs SET status = {_LOST}, note = ? WHERE id = ? AND {OPEN}",
            [(row["note"], row["id"]) for row in lost],
        )
    except sqlite3.OperationalError:  # read-only: show, do not store
        _shadow_lost(conn, [row["id"] for row in lost])
    return lost


def show_lost(conn: sqlite3.Connection, host: str | None = None) -> None:
    """sweep_lost() for a reader: an old schema without the runner column, or a busy
    database, leaves the rows as they are rather than failing the read."""
    try:  # noqa: SIM105 - contextlib is an import the runner, which loads this module, skips
        sweep_lost(conn, host=host)
    except sqlite3.Error:
        pass


def _shadow_lost(conn: sqlite3.Connection, ids: list[int]) -> None:
    """TEMP VIEW runs: the rows `runs` names now (main.runs, or the view a user's database
    is read through) with those rows' status read as `lost`. Temp names come first in
    SQLite's lookup, so every query of this connection sees it."""
    listed = ", ".join(str(int(i)) for i in ids)
    columns = ", ".join(
        f"CASE WHEN id IN ({listed}) THEN {_LOST} ELSE status END AS status" if c == "status" else c
        for c in current_columns("runs")  # every column: `rev` too, for remote.push
    )
    found = conn.execute(
        "SELECT sql FROM temp.sqlite_master WHERE type = 'view' AND name = 'runs'"
    ).fetchone()
    source = "main.runs"
    if found:  # CREATE VIEW runs AS SELECT ...: keep its rows, change their status
        source = f"({found[0].split(' AS ', 1)[1]})"
    conn.execute("DROP VIEW IF EXISTS temp.runs")
    conn.execute(f"CREATE TEMP VIEW runs AS SELECT {columns} FROM {source}")


def unnotified_lost(conn: sqlite3.Connection, task: str) -> list[dict]:
    """The task's lost runs that nobody was told about yet (no alert outcome recorded)."""
    return _dicts(
        conn,
        f"SELECT * FROM runs WHERE task = ? AND status = {_LOST} AND alert IS NULL ORDER BY id",
        (task,),
    )


def lost_to_tell(conn: sqlite3.Connection, task: str, host: str | None = None) -> list[dict]:
    """What the next run of `task` does first: mark its runs whose runner died as lost, and
    return every lost run of it that nobody was told about yet."""
    sweep_lost(conn, task, host)
    return unnotified_lost(conn, task)


def running_rows(conn: sqlite3.Connection, task: str) -> list[dict]:
    """The task's open rows, one per run in progress (call sweep_lost first)."""
    return _dicts(conn, f"SELECT * FROM runs WHERE task = ? AND {OPEN} ORDER BY id", (task,))


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
