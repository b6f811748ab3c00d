"""The fleet's shared history on PostgreSQL (HISTORY_URL=postgresql://...), with psycopg 3.

Every host keeps recording in its own SQLite databases (history.py) and sends their rows
here: the local database is the spool. A row is keyed by (origin, local_id), the random id
of the database it comes from and its id there, so sending a row again replaces it; the
mark kept per origin (sync_marks.rev) says how far that database was sent, and moves in
the same transaction as the rows. So a database that was away loses nothing and doubles
nothing: what was not sent is sent by the next run, reader or `agency-cron history sync`.

The schema is history.py's, the same migrations, written for PostgreSQL by _pg_ddl().
psycopg is imported only here, and this module only when a PostgreSQL URL is configured:
the embedded default (SQLite) pays nothing for it.

Every wait is bounded: the connection by HISTORY_TIMEOUT (connect_timeout), each statement
by the server (statement_timeout), and the whole exchange by a thread the caller stops
waiting for (bounded()), since a server that accepts connections and then stops answering
(a stopped process, a lost network) would hang a client forever, and a run must end.
"""

from __future__ import annotations

import contextlib
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import unquote, urlsplit

from agency_cron import history, statuses

if TYPE_CHECKING:
    import psycopg

DEFAULT_TIMEOUT_S = 5.0
BATCH = 2000  # rows per INSERT round: bounded memory whatever the backlog
LOCK_POLL_S = 1.0  # `overlap: wait` across the fleet: how often the lock is tried again
CLAIMS_KEPT_DAYS = 7  # fleet_claims older than this are dropped by the next claim
T = TypeVar("T")


class Unreachable(Exception):
    """The shared history did not answer (refused, timed out, failed); the text is masked."""


class RemoteError(sqlite3.OperationalError):
    """A query on the shared history failed. A sqlite3 error on purpose: the readers
    (reports.py, dashboard.py, metrics.py) treat it as they treat a broken local database."""


# --- the URL ------------------------------------------------------------------------------


def url_problem(url: str, state_dir: str) -> str | None:
    """Why HISTORY_URL is unusable, in words that never show its password; None when fine."""
    url = url.strip()
    if not url:
        return None
    parts = urlsplit(url)
    if parts.scheme == "sqlite":
        path = url[len("sqlite://") :]
        if not path.startswith("/") or path.endswith("/") or "?" in path:
            return f"expected sqlite:///ABSOLUTE/PATH of a file, got {url[:80]!r}"
        if any(c in path for c in "\n\r\0"):
            return "must not contain a newline or NUL"
        return None
    from agency_cron.config import HISTORY_SCHEMES  # not at the top: the runner skips config

    if parts.scheme not in HISTORY_SCHEMES:
        return f"expected sqlite:///PATH or postgresql://USER:PASSWORD@HOST/DB, got {masked(url)}"
    if any(c in url for c in "\n\r\0 "):
        return "must not contain spaces, newlines or NUL"
    if not parts.path.strip("/") and "dbname=" not in parts.query:
        return f"names no database ({masked(url)}): postgresql://USER:PASSWORD@HOST/DB"
    return None


def masked(url: str) -> str:
    """The URL with its password (user:PASSWORD@, ?password=) shown as ***."""
    parts = urlsplit(url)
    shown = url
    if parts.password:
        shown = shown.replace(f":{parts.password}@", ":***@", 1)
    return re.sub(r"(?i)(password=)[^&]*", r"\1***", shown)


def secrets_of(url: str) -> list[str]:
    """What the redactors must mask: the password as written and decoded, and the URL."""
    parts = urlsplit(url)
    found = [url]
    if parts.password:
        found += [parts.password, unquote(parts.password)]
    found += [unquote(m) for m in re.findall(r"(?i)password=([^&]+)", parts.query)]
    return [s for s in dict.fromkeys(found) if len(s) >= 3]


# --- connections ----------------------------------------------------------------------------


def bounded(work: Callable[[], T], seconds: float, what: str) -> T:
    """work() in a daemon thread, waited for `seconds` at most: a server that stops answering
    mid-query cannot hold the caller (the abandoned thread dies with the process)."""
    box: list[Any] = []

    def run() -> None:
        try:
            box.append((True, work()))
        except BaseException as exc:  # noqa: BLE001 - handed to the caller below
            box.append((False, exc))

    worker = threading.Thread(target=run, name="agency-cron-history", daemon=True)
    worker.start()
    worker.join(seconds)
    if not box:
        raise Unreachable(f"{what}: no answer within {seconds:g}s")
    ok, value = box[0]
    if not ok:
        raise value
    return value


def connect(url: str, timeout: float = DEFAULT_TIMEOUT_S) -> psycopg.Connection:
    """An autocommit connection with the schema migrated; Unreachable when it cannot be had
    within `timeout` seconds (or a statement takes longer: statement_timeout)."""
    try:
        import psycopg
    except ImportError as exc:  # a runtime installed without it
        raise Unreachable(
            f"psycopg is not installed ({exc}): pip install 'psycopg[binary]'"
        ) from None

    def work() -> psycopg.Connection:
        conn = psycopg.connect(
            url,
            autocommit=True,
            connect_timeout=max(1, round(timeout)),
            application_name="agency-cron",
            options=f"-c statement_timeout={int(timeout * 1000)}",
        )
        try:
            migrate(conn)
        except BaseException:
            conn.close()
            raise
        return conn

    try:
        return bounded(work, timeout * 2 + 1, f"history database {masked(url)}")
    except Unreachable:
        raise
    except Exception as exc:  # noqa: BLE001 - psycopg.Error, OSError: all mean "away"
        raise Unreachable(f"history database {masked(url)}: {_reason(exc, url)}") from None


def _reason(exc: BaseException, url: str) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    for secret in secrets_of(url):
        text = text.replace(secret, "***")
    return text


# --- the schema -----------------------------------------------------------------------------

SCHEMA_TABLE = "agency_cron_schema"
MIGRATION_LOCK = 0x616763726F6E  # "agcron": one migrating host at a time


def _pg_ddl(statement: str) -> str:
    """history.py's SQLite DDL for PostgreSQL: the same tables, columns and indexes."""
    statement = statement.replace(
        "INTEGER PRIMARY KEY", "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY"
    )
    statement = re.sub(r"\bINTEGER\b", "BIGINT", statement)
    return re.sub(r"\bREAL\b", "DOUBLE PRECISION", statement)


def migrate(conn: psycopg.Connection) -> None:
    """Bring the shared schema to history.SCHEMA_VERSION (once, whoever comes first)."""
    found = _schema_version(conn)
    if found == history.SCHEMA_VERSION:
        return
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
        conn.execute(f"CREATE TABLE IF NOT EXISTS {SCHEMA_TABLE} (version INTEGER NOT NULL)")
        row = conn.execute(f"SELECT version FROM {SCHEMA_TABLE}").fetchone()
        version = row[0] if row else 0
        if version > history.SCHEMA_VERSION:
            raise RuntimeError(
                f"the shared history has schema {version}, newer than this agency-cron"
                f" ({history.SCHEMA_VERSION})"
            )
        for target in range(version + 1, history.SCHEMA_VERSION + 1):
            for statement in (*history.MIGRATIONS[target], *history.SHARED_ONLY.get(target, ())):
                conn.execute(_pg_ddl(statement))
        conn.execute(f"DELETE FROM {SCHEMA_TABLE}")
        conn.execute(f"INSERT INTO {SCHEMA_TABLE} VALUES (%s)", (history.SCHEMA_VERSION,))


def _schema_version(conn: psycopg.Connection) -> int | None:
    exists = conn.execute("SELECT to_regclass(%s)", (SCHEMA_TABLE,)).fetchone()
    if not exists or exists[0] is None:
        return None
    row = conn.execute(f"SELECT version FROM {SCHEMA_TABLE}").fetchone()
    return row[0] if row else None


# --- sending local rows (the spool) ---------------------------------------------------------

SENT_TABLES = ("runs", "check_results")


def origin_of(local: sqlite3.Connection) -> str | None:
    """The local database's id (meta.origin), None for one of an older schema."""
    try:
        row = local.execute("SELECT value FROM main.meta WHERE key = 'origin'").fetchone()
    except sqlite3.Error:
        return None
    return row[0] if row else None


def push(conn: psycopg.Connection, local: sqlite3.Connection, host: str) -> int:
    """Send the local database's rows not sent yet; returns how many were sent."""
    origin = origin_of(local)
    if origin is None:
        return 0
    return sum(_push_table(conn, local, origin, table, host) for table in SENT_TABLES)


def _push_table(
    conn: psycopg.Connection, local: sqlite3.Connection, origin: str, table: str, host: str
) -> int:
    columns = [c for c in history.current_columns(table) if c not in ("id", "origin", "local_id")]
    listed = ", ".join(columns)
    updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in columns)
    insert = (
        f"INSERT INTO {table} (origin, local_id, {listed})"
        f" VALUES (%s, %s, {', '.join('%s' for _ in columns)})"
        f" ON CONFLICT (origin, local_id) DO UPDATE SET {updates}"
    )
    sent = 0
    while True:
        with conn.transaction():
            mark = _mark(conn, origin, table, host)
            rows = local.execute(
                f"SELECT id, {listed} FROM {table} WHERE rev > ? ORDER BY rev LIMIT ?",
                (mark, BATCH),
            ).fetchall()
            if not rows:
                return sent
            with conn.cursor() as cursor:
                cursor.executemany(insert, [(origin, *row) for row in rows])
            newest = max(row[columns.index("rev") + 1] for row in rows)
            conn.execute(
                "UPDATE sync_marks SET rev = %s, host = %s, synced_at = %s"
                " WHERE origin = %s AND tbl = %s",
                (newest, host, _now(), origin, table),
            )
        sent += len(rows)
        _remember_mark(local, origin, table, newest)
        if len(rows) < BATCH:
            return sent


def _remember_mark(local: sqlite3.Connection, origin: str, table: str, rev: int) -> None:
    """The mark, also in the local database: how much is waiting stays known while the
    shared history is away. A database this process may only read keeps its old one."""
    with contextlib.suppress(sqlite3.Error):
        local.execute(
            "INSERT OR REPLACE INTO main.sync_marks (origin, tbl, rev, synced_at)"
            " VALUES (?, ?, ?, ?)",
            (origin, table, rev, _now()),
        )


def _mark(conn: psycopg.Connection, origin: str, table: str, host: str) -> int:
    """The origin's mark for `table`, locked until the transaction ends: two senders of one
    database (a run and `history sync`) take turns, and the second sends only what is left."""
    conn.execute(
        "INSERT INTO sync_marks (origin, tbl, host, rev) VALUES (%s, %s, %s, 0)"
        " ON CONFLICT (origin, tbl) DO NOTHING",
        (origin, table, host),
    )
    row = conn.execute(
        "SELECT rev FROM sync_marks WHERE origin = %s AND tbl = %s FOR UPDATE", (origin, table)
    ).fetchone()
    return int(row[0]) if row else 0


def pending(conn: psycopg.Connection | None, local: sqlite3.Connection) -> int:
    """How many local rows are not sent yet: past the shared history's mark, or, without
    a connection, past the mark last seen there (kept locally by each send)."""
    origin = origin_of(local)
    if origin is None:
        return 0
    total = 0
    for table in SENT_TABLES:
        if conn is not None:
            row = conn.execute(
                "SELECT rev FROM sync_marks WHERE origin = %s AND tbl = %s", (origin, table)
            ).fetchone()
        else:
            row = local.execute(
                "SELECT rev FROM main.sync_marks WHERE origin = ? AND tbl = ?", (origin, table)
            ).fetchone()
        mark = int(row[0]) if row else 0
        count = local.execute(f"SELECT COUNT(*) FROM {table} WHERE rev > ?", (mark,))
        total += count.fetchone()[0]
    return total


@dataclass(frozen=True)
class SyncResult:
    """`history sync`: rows sent, rows still waiting, databases read, and why it stopped."""

    sent: int
    pending: int
    databases: int
    error: str | None = None
    unreachable: bool = False  # it did not answer at all (not a failure mid-way)


def sync(
    url: str,
    state_dir: str,
    host: str,
    timeout: float = DEFAULT_TIMEOUT_S,
    root: str | None = None,
) -> SyncResult:
    """Send every local database's rows not sent yet (root's and each user's). Everything
    happens in one bounded thread: sqlite3 connections stay in the thread that opened them."""
    found: list[SyncResult] = []

    def work() -> None:
        locals_ = history.connect_all(state_dir, host, root)
        try:
            found.append(_sync(url, locals_, host, timeout))
        finally:
            for local in locals_:
                local.close()

    try:
        bounded(work, timeout * 8 + 1, f"history database {masked(url)}")
    except Exception as exc:  # noqa: BLE001 - hung mid-way; the spool is as it was
        waiting = _offline_pending(state_dir, host, root)
        return SyncResult(0, waiting, 0, _reason(exc, url), isinstance(exc, Unreachable))
    return found[0]


def _sync(url: str, locals_: list, host: str, timeout: float) -> SyncResult:
    try:
        conn = connect(url, timeout)
    except Unreachable as exc:
        waiting = sum(pending(None, local) for local in locals_)
        return SyncResult(0, waiting, len(locals_), str(exc), unreachable=True)
    sent = 0
    try:
        for local in locals_:
            sent += push(conn, local, host)
        left = sum(pending(conn, local) for local in locals_)
    except Exception as exc:  # noqa: BLE001 - the server went away mid-way
        waiting = sum(pending(None, local) for local in locals_)
        return SyncResult(sent, waiting, len(locals_), _reason(exc, url))
    finally:
        conn.close()
    return SyncResult(sent, left, len(locals_))


def _offline_pending(state_dir: str, host: str, root: str | None) -> int:
    locals_ = history.connect_all(state_dir, host, root)
    try:
        return sum(pending(None, local) for local in locals_)
    finally:
        for local in locals_:
            local.close()


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


# --- singleton tasks (`scope: fleet`) -------------------------------------------------------


def fire_minute(moment: float | None = None) -> str:
    """The fire time a run claims: the minute (UTC) it started in. cron fires a schedule at
    most once a minute, on every host at its own clock's minute, so the hosts firing one
    schedule agree on it; a run by hand claims its own minute."""
    return time.strftime("%Y-%m-%dT%H:%MZ", time.gmtime(moment))


def lock_key(task: str) -> str:
    return f"agency-cron:{task}"


def claim(
    conn: psycopg.Connection,
    task: str,
    host: str,
    run_id: str,
    overlap: str,
    keep_waiting: Callable[[], bool] = lambda: True,
    moment: float | None = None,
) -> str | None:
    """Take the task's fleet-wide turn for this fire time; None when this host runs it, else
    why it does not (naming the host that does).

    The advisory lock (session level: it lasts while this connection does, and a runner
    killed with SIGKILL loses it with its connection) keeps `overlap` across the fleet; the
    fleet_claims row keeps it to one run per fire time even when a short run is over
    before a slower host asks."""
    key = lock_key(task)
    fire = fire_minute(moment)
    if overlap != "allow":
        while not _one(conn, "SELECT pg_try_advisory_lock(hashtextextended(%s, 0))", (key,)):
            if overlap != "wait" or not keep_waiting():
                return _busy(conn, task, fire, overlap)
            time.sleep(LOCK_POLL_S)
    won = conn.execute(
        "INSERT INTO fleet_claims (task, fire_time, host, run_id, claimed_at)"
        " VALUES (%s, %s, %s, %s, %s) ON CONFLICT (task, fire_time) DO NOTHING RETURNING host",
        (task, fire, host, run_id, _now()),
    ).fetchone()
    if won:
        _forget_old_claims(conn, task)
        return None
    release(conn, task, overlap)
    row = conn.execute(
        "SELECT host, run_id FROM fleet_claims WHERE task = %s AND fire_time = %s", (task, fire)
    ).fetchone()
    taker = f"{row[0]} (run {row[1]})" if row else "another host"
    return f"fire time {fire} is run by {taker}"


def _one(conn: psycopg.Connection, query: str, params: tuple) -> Any:
    row = conn.execute(query, params).fetchone()
    return row[0] if row else None


CLAIM_SEEN_S = 1.0  # how long a host that found the lock taken looks for the taker's claim


def _busy(conn: psycopg.Connection, task: str, fire: str, overlap: str) -> str:
    """Why a host that found the lock taken does not run: the host that claimed this fire
    time (its claim follows its lock by milliseconds: looked for a moment), else the
    newest claim, a run of an earlier fire time still going (claims are made under the
    lock only)."""
    deadline = time.monotonic() + CLAIM_SEEN_S
    while True:
        row = conn.execute(
            "SELECT host, run_id FROM fleet_claims WHERE task = %s AND fire_time = %s",
            (task, fire),
        ).fetchone()
        if row:
            return f"fire time {fire} is run by {row[0]} (run {row[1]})"
        if time.monotonic() > deadline:
            break
        time.sleep(0.05)
    row = conn.execute(
        "SELECT host, run_id, claimed_at FROM fleet_claims WHERE task = %s"
        " ORDER BY claimed_at DESC LIMIT 1",
        (task,),
    ).fetchone()
    holder = f"{row[0]}, run {row[1]} since {row[2]}" if row else "a host not yet known"
    return f"another host runs it now ({holder}; overlap: {overlap})"


def release(conn: psycopg.Connection, task: str, overlap: str) -> None:
    if overlap != "allow":
        conn.execute("SELECT pg_advisory_unlock(hashtextextended(%s, 0))", (lock_key(task),))


def _forget_old_claims(conn: psycopg.Connection, task: str) -> None:
    cutoff = time.strftime("%Y-%m-%dT%H:%MZ", time.gmtime(time.time() - CLAIMS_KEPT_DAYS * 86400))
    conn.execute("DELETE FROM fleet_claims WHERE task = %s AND fire_time < %s", (task, cutoff))


# --- reading the fleet's history ------------------------------------------------------------


@lru_cache(maxsize=256)
def portable(sql: str) -> str:
    """A query written for sqlite3 (`?` parameters) in psycopg's form (`%s`, `%%`)."""
    out, quote = [], None
    for char in sql:
        if quote:
            quote = None if char == quote else quote
            out.append("%%" if char == "%" else char)
        elif char in "'\"":
            quote = char
            out.append(char)
        elif char == "?":
            out.append("%s")
        elif char == "%":
            out.append("%%")
        else:
            out.append(char)
    return "".join(out)


class Reader:
    """The shared history behind the sqlite3 calls the readers make (execute, fetchone,
    fetchall, iteration, row_factory = sqlite3.Row for rows read by name, close), so that
    reports.py runs the same queries on it as on a local database."""

    tasks: frozenset[str] | None = None  # history.holding(): it holds every task's rows

    def __init__(self, conn: psycopg.Connection, url: str, table: str = "runs"):
        self.conn = conn
        self.url = url
        self.row_factory: Any = None
        self.table = table  # the runs table itself, behind a host's view of it

    def execute(self, sql: str, params: Iterable[Any] = ()):
        from psycopg.rows import dict_row, tuple_row

        factory = dict_row if self.row_factory is not None else tuple_row
        cursor = self.conn.cursor(row_factory=factory)
        try:
            cursor.execute(portable(sql), tuple(params))
        except Exception as exc:  # noqa: BLE001 - psycopg.Error: a sqlite3-like error
            raise RemoteError(_reason(exc, self.url)) from None
        return cursor

    def close(self) -> None:
        self.conn.close()


def reader(url: str, timeout: float, host: str | None, fleet_tasks: Iterable[str] = ()) -> Reader:
    """A Reader of the whole fleet (host None) or of one host: that host's rows, and every
    row of the `scope: fleet` tasks (whichever host ran them), through temporary views
    that shadow the tables (pg_temp comes first in PostgreSQL's name lookup)."""
    conn = connect(url, timeout)
    if host is not None:
        from psycopg import sql

        shown = sql.Literal(host)
        shared = sql.SQL(", ").join(sql.Literal(name) for name in sorted(set(fleet_tasks)))
        schema = conn.execute("SELECT current_schema()").fetchone()
        qualified = sql.Identifier(schema[0] if schema else "public")
        runs = sql.SQL("SELECT * FROM {}.runs WHERE host = {}").format(qualified, shown)
        if fleet_tasks:  # a UNION ALL, not an OR: each part keeps its index (40 -> 1.8 ms)
            runs = sql.SQL(
                "{} AND task NOT IN ({}) UNION ALL SELECT * FROM {}.runs WHERE task IN ({})"
            ).format(runs, shared, qualified, shared)
        conn.execute(sql.SQL("CREATE TEMP VIEW runs AS {}").format(runs))
        conn.execute(
            sql.SQL("CREATE TEMP VIEW check_results AS SELECT * FROM {}.check_results").format(
                qualified
            )
            + sql.SQL(" WHERE host = {}").format(shown)
        )
        table = sql.SQL("{}.runs").format(qualified).as_string(conn)
        return Reader(conn, url, table)
    return Reader(conn, url)


def hosts(conn: psycopg.Connection) -> list[str]:
    """The hosts that reported runs, sorted (a loose index scan: fast on any size)."""
    rows = conn.execute(
        """WITH RECURSIVE h(host) AS (
             (SELECT host FROM runs WHERE host IS NOT NULL ORDER BY host LIMIT 1)
             UNION ALL
             SELECT (SELECT host FROM runs WHERE host > h.host ORDER BY host LIMIT 1)
             FROM h WHERE h.host IS NOT NULL
           ) SELECT host FROM h WHERE host IS NOT NULL"""
    ).fetchall()
    return [row[0] for row in rows]


# What the readers ask of the fleet alone (reports.py): which hosts ran a task, and each
# host's last success. The hosts come from a loose index scan of the runs table itself
# (a host's view filters it, and would make each step walk the other hosts' rows); each
# (host, task) pair is then one probe of runs_host_task (host, task, started_at, status).
# The probes are scalar subqueries on purpose: written as EXISTS, PostgreSQL turns them into
# a semi-join over every row of the window (measured, 50 hosts x 100 tasks x 1M rows: 400 ms
# over the whole history, against 100 ms for the probes; 18 against 27 ms over a day).
_HOSTS_CTE = """WITH RECURSIVE h(host) AS (
  (SELECT host FROM {runs} WHERE host IS NOT NULL ORDER BY host LIMIT 1)
  UNION ALL
  SELECT (SELECT host FROM {runs} WHERE host > h.host ORDER BY host LIMIT 1)
  FROM h WHERE h.host IS NOT NULL
)"""
_NOT_FINAL = statuses.sql(statuses.NOT_FINAL)


def hosts_by_task(reader: Reader, tasks: list[str], since: str = "") -> dict[str, list[str]]:
    """The hosts that ran each of `tasks` (a row that is not NOT_FINAL, started since
    `since`), sorted; a task no host ran is left out."""
    if not tasks:
        return {}
    query = (
        _HOSTS_CTE.format(runs=reader.table)
        + f"""
SELECT t.task, h.host FROM h CROSS JOIN unnest(?::text[]) AS t(task)
WHERE h.host IS NOT NULL AND (
  SELECT 1 FROM runs r WHERE r.host = h.host AND r.task = t.task AND r.started_at >= ?
  AND r.status NOT IN {_NOT_FINAL} LIMIT 1) IS NOT NULL
ORDER BY t.task, h.host"""
    )
    found: dict[str, list[str]] = {}
    for task, host in reader.execute(query, (list(tasks), since)).fetchall():
        found.setdefault(task, []).append(host)
    return found


def last_success_by_host(reader: Reader, tasks: list[str]) -> dict[str, dict[str, str | None]]:
    """Each of `tasks`' last success per host that has any row of it (None: it never
    succeeded there): how the fleet view tells which host stopped running a task."""
    if not tasks:
        return {}
    success = statuses.quoted(statuses.SUCCESS)
    query = (
        _HOSTS_CTE.format(runs=reader.table)
        + f"""
SELECT t.task, h.host, (
  SELECT MAX(r.started_at) FROM runs r
  WHERE r.host = h.host AND r.task = t.task AND r.status = {success})
FROM h CROSS JOIN unnest(?::text[]) AS t(task)
WHERE h.host IS NOT NULL AND (
  SELECT 1 FROM runs r WHERE r.host = h.host AND r.task = t.task LIMIT 1) IS NOT NULL
ORDER BY t.task, h.host"""
    )
    found: dict[str, dict[str, str | None]] = {}
    for task, host, last in reader.execute(query, (list(tasks),)).fetchall():
        found.setdefault(task, {})[host] = last
    return found
