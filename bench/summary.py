"""log-summary benchmark: `agency-cron log-summary --json` against a bare sqlite3 query.

    /tmp/ci-check/.venv/bin/python bench/summary.py [--sizes 10000,100000,1000000]
        [--repeat 5] [--since 24h] [--keep] [--no-profile] [--pg-rows 1000000] [--pg-only]

Run by hand, never in the tests, with the interpreter of a non-editable install: the
`agency-cron` console script beside it is the one measured (an editable install adds
import overhead that production does not have; the header says which one was used).
Everything is measured in one run:

1. For each size, a throwaway installation (common.make_site: config.env whose STATE_DIR
   holds history.db; a manifest of 100 tasks task-000..task-099, `*/5 * * * *`, command
   "true") and its history, created by agency_cron.history.connect (the real schema and
   indexes) and filled in one transaction by executemany: rows evenly spread over the last
   30 days, task after task, started_at/finished_at written as the runner writes them
   (runner.now_iso), about 91% success and some failed, timeout, retry-scheduled and
   skipped, a few short lines of output_tail. Built in a child process, so that this one
   stays small (see 2), while a second one makes the rows (1M rows: about 20-30 s).
2. Interleaved rounds (the order rotates every round), median of --repeat, after one
   warm-up round:
   a. `agency-cron --config C --manifest M log-summary --json --since 24h`, stdout to
      /dev/null, wall time;
   b. the `sqlite3` CLI answering the same question as one aggregate over the same table:
      per task, runs, failures and skipped in the window and the last run (BARE_SQL);
   c. reports.log_summary() in a fresh interpreter, excluding interpreter start-up: the
      library imports, loading config.env and the manifest, the first call (the one the
      CLI pays, lazy imports included), json.dumps and a second call, each timed; and in
      another fresh interpreter, agency_cron.cli's imports and its main() in-process, so
      that the CLI's wall time splits into start-up, imports, loading, the call, typer's
      dispatch and exit (and the same once more with gc.freeze() after the imports, a
      what-if);
   d. `python -c pass` with the same interpreter: the floor of any Python command.
   Peak RSS of a and b is ru_maxrss from wait4, taken in separate interleaved runs through
   GNU time: a child we spawn ourselves inherits our own high-water mark through exec (the
   kernel carries the pre-exec figure into the child's), so /usr/bin/time, a 2 MB process,
   forks the command and reports its own wait4 figure (%M). Without /usr/bin/time our
   wait4 figure is shown, an upper bound that includes this benchmark's RSS.
   Targets: cli / bare <= 3 at every size; the CLI's peak RSS flat across sizes.
3. Once per size, the CLI's JSON is checked against the bare query run with the CLI's own
   window start (`since`): 100 tasks, and equal runs, failures and skipped for each.
3b. `agency-cron metrics` (the Prometheus exposition, stdout to /dev/null) against the
   sqlite3 CLI answering the same question (METRICS_BARE_SQL: runs per task and status,
   each task's last success and last run that ended), metrics.exposition() in a fresh
   interpreter (first call, with the lazy prometheus_client import, and a second one),
   and the CLI's peak RSS; interleaved with the rest. Once per size the CLI's
   agency_cron_runs_total is checked against the bare counts.
4. Profile of the largest size (--no-profile skips it): `python -X importtime` of the CLI
   command and the wall of a ladder of `python -c IMPORTS`; cProfile of the first
   in-process call, the same call split into its parts without the profiler, EXPLAIN
   QUERY PLAN of each query. Then what-ifs, experiments that change nothing in the
   library: other entry points (gc.freeze() after the imports, no typer/rich) timed as
   whole processes against the bare query; log_summary() with expected_interval memoised
   or overdue_reason short-cut (monkeypatched in the child); and the queries on a copy of
   the history with a covering index (task, started_at, status).
5. The fleet's shared history on PostgreSQL (issue 13; --pg-rows 0 skips it, --pg-only runs
   it alone), on a throwaway server (bench/pgserver.py, stopped at the end): 50 hosts x 100
   tasks x 1,000,000 rows over 30 days, shaped like 1's (build_pg: remote.migrate's schema,
   the rows made by the server from generate_series, the indexes rebuilt from their own
   definitions, VACUUM ANALYZE). Timed, interleaved, median of --repeat: `agency-cron
   log-summary --json --host all` when log-summary has --host, else a stand-in (what the CLI
   does once it has: reports.log_summary() on readers.open_histories(settings, "all") in a
   fresh interpreter); `psql -c "SELECT task, status, count(*) FROM runs WHERE started_at >=
   ... GROUP BY task, status"` (the bare aggregate); `psql -c "SELECT 1"` and `python -c
   pass` (each client's floor). Checked first: log-summary's runs, failures and skipped per
   task equal the bare aggregate's. Also: the stand-in's parts; EXPLAIN ANALYZE of
   log-summary's four queries for one task through the fleet's Reader, one host's, and one
   host's with two `scope: fleet` tasks, and of the fleet view's own queries where they
   exist (remote.hosts_by_task, remote.last_success_by_host; SEQ SCAN flagged); and, in
   this process on a warm connection, the 400 queries of 100 tasks against the same
   answers in one statement, and last_success_by_host's EXISTS against the same test as a
   scalar subquery (probe_what_if). When
   reports.SUMMARY_SQL does not run on PostgreSQL (SUM of a boolean), the stand-in and the
   plans use its counts written as SUM(CASE WHEN ... THEN 1 ELSE 0 END), and say so.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from common import Site, agency_cron_cmd, checked, clean_env, make_site, median

TASKS = tuple(f"task-{i:03d}" for i in range(100))
DAYS = 30
RATIO_TARGET = 3.0
GNU_TIME = "/usr/bin/time"
WINDOW_FORMAT = "%Y-%m-%dT%H:%M:%S.000+00:00"  # reports.log_summary's window start

# The same question as log-summary's window figures, answered by one aggregate.
BARE_SQL = (
    "SELECT task,"
    " SUM(status NOT IN ('retry-scheduled', 'skipped')),"
    " SUM(status IN ('failed', 'timeout', 'killed')),"
    " SUM(status = 'skipped'),"
    " MAX(started_at)"
    " FROM runs WHERE started_at >= '{since}' GROUP BY task"
)

# `agency-cron metrics`'s question answered by the sqlite3 CLI, the way its library asks it:
# runs per task and status in one grouped count (an index-only scan), then per task its last
# success and its last run that ended (indexed lookups).
TASK_VALUES = ", ".join(f"('{name}')" for name in TASKS)
METRICS_BARE_SQL = (
    "SELECT task, status, COUNT(*) FROM runs GROUP BY task, status;"
    f" WITH t(name) AS (VALUES {TASK_VALUES})"
    " SELECT name,"
    " (SELECT MAX(started_at) FROM runs WHERE task = name AND status = 'success'),"
    " (SELECT started_at || '|' || status || '|' || duration_s || '|' || exit_code FROM runs"
    "  WHERE task = name AND status NOT IN ('skipped', 'retry-scheduled', 'running')"
    "  ORDER BY started_at DESC, id DESC LIMIT 1)"
    " FROM t;"
)

# 3b: metrics.exposition() in a fresh interpreter; argv: config, manifest.
METRICS_IN_PROCESS = r"""
import json, sys, time
from agency_cron import metrics
from agency_cron.config import load_settings
from agency_cron.manifest import load_manifest
settings = load_settings(sys.argv[1])
manifest = load_manifest(sys.argv[2], settings, strict=False)
t0 = time.perf_counter()
metrics.exposition(settings, manifest)
t1 = time.perf_counter()
metrics.exposition(settings, manifest)
t2 = time.perf_counter()
read = metrics.read_snapshot(settings, manifest).read_seconds
print(json.dumps({"m_call": t1 - t0, "m_warm": t2 - t1, "m_read": read}))
"""

# (c): timed in a fresh interpreter; argv: config, manifest, since seconds.
IN_PROCESS = r"""
import json, sys, time
t0 = time.perf_counter()
from agency_cron import reports, results
from agency_cron.config import load_settings
from agency_cron.manifest import load_manifest
t1 = time.perf_counter()
settings = load_settings(sys.argv[1])
manifest = load_manifest(sys.argv[2], settings)
t2 = time.perf_counter()
summary = reports.log_summary(settings, manifest, int(sys.argv[3]))
t3 = time.perf_counter()
text = results.to_json(summary)
t4 = time.perf_counter()
reports.log_summary(settings, manifest, int(sys.argv[3]))
t5 = time.perf_counter()
print(json.dumps({
    "lib_imports": t1 - t0, "lib_load": t2 - t1, "lib_call": t3 - t2, "json": t4 - t3,
    "warm": t5 - t4,
}))
"""

# (c), the CLI's side: its module-level imports, then its main() in-process; argv: the
# CLI's arguments.
MAIN = r"""
import time
started = time.time()
import io, json, sys
from contextlib import redirect_stdout
t0 = time.perf_counter()
from agency_cron import cli, reports
FREEZE
t1 = time.perf_counter()
spent = {"load": 0.0, "call": 0.0, "print": 0.0}

def timed(name, fn):
    def wrapper(*args, **kwargs):
        start = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            spent[name] += time.perf_counter() - start
    return wrapper

cli._load = timed("load", cli._load)
reports.log_summary = timed("call", reports.log_summary)
cli._print_json = timed("print", cli._print_json)
with redirect_stdout(io.StringIO()):
    code = cli.main(sys.argv[1:])
t2 = time.perf_counter()
if code:
    sys.exit(code)
print(json.dumps({
    "started": started, "cli_imports": t1 - t0, "main": t2 - t1, **spent, "ended": time.time()
}), flush=True)
"""

# 4, what-if: log-summary --json without typer and rich; argv: config, manifest, since
# seconds. Output goes where the CLI's goes (/dev/null).
LEAN = """
import json, sys
from agency_cron import reports, results
from agency_cron.config import load_settings
from agency_cron.manifest import load_manifest
FREEZE
settings = load_settings(sys.argv[1])
summary = reports.log_summary(settings, load_manifest(sys.argv[2], settings), int(sys.argv[3]))
sys.stdout.write(results.to_json(summary))
"""

# 4: argv: config, manifest, since seconds, bare SQL.
PROFILE = r"""
import cProfile, pstats, sqlite3, sys, time
from datetime import UTC, datetime, timedelta
from agency_cron import reports, results
from agency_cron.config import load_settings
from agency_cron.manifest import load_manifest

settings = load_settings(sys.argv[1])
manifest = load_manifest(sys.argv[2], settings)
since = int(sys.argv[3])
profiler = cProfile.Profile()
profiler.enable()
reports.log_summary(settings, manifest, since)
profiler.disable()
print("cProfile of the first reports.log_summary() call, top 15 by own time:")
stats = pstats.Stats(profiler, stream=sys.stdout).strip_dirs()
stats.sort_stats("tottime").print_stats(15)

def best(fn, times=5):
    values = []
    for _ in range(times):
        start = time.perf_counter()
        fn()
        values.append(time.perf_counter() - start)
    return min(values) * 1000  # the fastest: the least disturbed by other load

now = datetime.now(UTC)
window = (now - timedelta(seconds=since)).strftime("%Y-%m-%dT%H:%M:%S.000+00:00")
conn = reports._open_histories(settings)[0]  # the bench's one database: history.db
tasks = manifest.tasks
recent = (now - timedelta(minutes=1)).isoformat()
queries = {
    "SUMMARY_SQL": (reports.SUMMARY_SQL, lambda t: (t.name, window)),
    "LAST_SQL": (reports.LAST_SQL, lambda t: (t.name,)),
    "LAST_SUCCESS_SQL": (reports.LAST_SUCCESS_SQL, lambda t: (t.name,)),
    "LAST_ERROR_SQL": (reports.LAST_ERROR_SQL, lambda t: (t.name,)),
}
parts = {
    "log_summary() warm, whole": lambda: reports.log_summary(settings, manifest, since),
    "  _summary_row x100 (the 4 queries)": lambda: [
        reports._summary_row([conn], t, window) for t in tasks
    ],
    **{
        f"    {name} x100": (lambda q=q, p=p: [conn.execute(q, p(t)).fetchall() for t in tasks])
        for name, (q, p) in queries.items()
    },
    "  next_run x100 (cronsim)": lambda: [reports.next_run(t) for t in tasks],
    "  overdue_reason x100 (cronsim x32, lock file)": lambda: [
        reports.overdue_reason(settings, t, recent, now) for t in tasks
    ],
    "bare aggregate (python sqlite3)": lambda: conn.execute(
        sys.argv[4].format(since=window)
    ).fetchall(),
}
print("split of a warm call, without the profiler (fastest of 5, ms):")
for name, fn in parts.items():
    print(f"  {name:<48} {best(fn):>8.2f}")
print("EXPLAIN QUERY PLAN:")
plans = {name: (q, p(tasks[0])) for name, (q, p) in queries.items()}
plans["bare aggregate"] = (sys.argv[4].format(since=window), ())
for name, (q, params) in plans.items():
    rows = conn.execute("EXPLAIN QUERY PLAN " + q, params).fetchall()
    print(f"  {name}: " + "; ".join(r[-1] for r in rows))

# What-ifs: experiments in this process only; the library is not changed.
import functools, shutil, types
from agency_cron import history
from agency_cron.schedule import next_runs

def call():
    return reports.log_summary(settings, manifest, since)

expected = [t.overdue for t in call().tasks]
original_interval, original_overdue = reports.expected_interval, reports.overdue_reason
memo = functools.lru_cache(maxsize=None)(
    lambda schedule, within: original_interval(
        types.SimpleNamespace(schedule=schedule, expect_within=within)
    )
)

def memo_interval(task):
    return memo(task.schedule, task.expect_within)

def quick_overdue(settings_, task, last_success, now_):
    # interval >= the first gap and grace_for() never decreases, so a success more recent
    # than first gap + its grace cannot be overdue: no need for 32 fire times.
    if last_success and not task.expect_within:
        first = next_runs(task.schedule, 2)
        if len(first) == 2:
            gap = int((first[1] - first[0]).total_seconds())
            bound = now_ - timedelta(seconds=gap + reports.grace_for(gap))
            if datetime.fromisoformat(last_success) >= bound:
                return None
    return original_overdue(settings_, task, last_success, now_)

def fresh_memo():
    memo.cache_clear()  # one CLI process makes one call: no hits from earlier calls
    return call()

print("what-if, warm log_summary() here, fastest of 5 (experiments; the library is unchanged), ms:")
print(f"  {'as it is':<66} {best(call):>8.2f}")
variants = {
    "expected_interval memoised per (schedule, expect_within)": (memo_interval, original_overdue),
    "overdue_reason: no 32 fire times when the last success is recent": (
        original_interval, quick_overdue),
    "both": (memo_interval, quick_overdue),
}
for name, (interval, overdue) in variants.items():
    reports.expected_interval, reports.overdue_reason = interval, overdue
    same = [t.overdue for t in fresh_memo().tasks] == expected
    print(f"  {name:<66} {best(fresh_memo):>8.2f}{'' if same else '  (DIFFERENT overdue!)'}")
reports.expected_interval, reports.overdue_reason = original_interval, original_overdue

conn.close()
copy = sys.argv[5]
shutil.copyfile(str(settings.state_dir / "history.db"), copy)
conn = history.connect(copy)
start = time.perf_counter()
conn.execute("CREATE INDEX runs_task_started_status ON runs (task, started_at, status)")
made = time.perf_counter() - start
print(f"  covering index runs (task, started_at, status) on a copy ({made:.1f}s to create):")
rows_ms = best(lambda: [reports._summary_row([conn], t, window) for t in tasks])
print(f"  {'  _summary_row x100 (the 4 queries)':<66} {rows_ms:>8.2f}")
for name, (q, p) in queries.items():
    ms = best(lambda q=q, p=p: [conn.execute(q, p(t)).fetchall() for t in tasks])
    print(f"  {'    ' + name + ' x100':<66} {ms:>8.2f}")
bare = sys.argv[4].format(since=window)
print(f"  {'  bare aggregate':<66} {best(lambda: conn.execute(bare).fetchall()):>8.2f}")
for name, (q, params) in {**plans, "bare aggregate": (bare, ())}.items():
    rows = conn.execute("EXPLAIN QUERY PLAN " + q, params).fetchall()
    print(f"    {name}: " + "; ".join(r[-1] for r in rows))
conn.close()
"""


# ---------------------------------------------------------------- building the history


def parse_since(text: str) -> int:
    match = re.fullmatch(r"(\d+)([smhd])", text.strip())
    if not match:
        sys.exit(f"bench: --since: expected e.g. 90m, 24h, 7d, got {text!r}")
    return int(match[1]) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[match[2]]


def rows_for(count: int, end: float, seed: int = 1):
    """`count` history rows for TASKS, the last one just before `end`, oldest first."""
    import random
    import socket

    from agency_cron.runner import now_iso

    rng = random.Random(seed)
    random_, expovariate, bits = rng.random, rng.expovariate, rng.getrandbits
    host = socket.gethostname()
    step = DAYS * 86400 / count
    start = end - DAYS * 86400
    for i in range(count):
        task = TASKS[i % len(TASKS)]
        began = start + (i + random_()) * step
        r = random_()
        n = 1 + bits(12)
        head = f"{task}: start\nfetched {n} records"
        attempts, alert, note = 1, None, None
        if r < 0.91:
            status, code, duration = "success", 0, expovariate(0.5)
            tail = f"{head}\nwrote {n} records\ndone"
        elif r < 0.94:
            status, code, duration = "failed", 1, expovariate(0.2)
            tail = f"{head}\nerror: connection refused (db:5432)\ngiving up after 3 tries"
            alert = "failure: sent"
        elif r < 0.95:
            status, code, duration = "timeout", 124, 1800.0 + random_()
            tail = f"{head}\nwaiting for lock on /var/lib/agency_stack/backup"
            alert = "failure: sent"
        elif r < 0.98:
            status, code, duration = "retry-scheduled", 1, expovariate(0.2)
            tail = f"{head}\nerror: 503 Service Unavailable"
            attempts = 3
        else:
            status, code, duration, tail = "skipped", 0, 0.0, ""
            note = f"previous run still running (pid {1000 + bits(16)})"
        yield (
            task,
            f"{bits(48):012x}",
            1,
            attempts,
            now_iso(began),
            now_iso(began + duration),
            round(duration, 6),
            code,
            status,
            host,
            1000 + bits(22),
            tail,
            alert,
            note,
            None,  # runner: set only while a run is open
            None,  # ping: no task here pings
        )


def _produce(chunks, count: int, end: float) -> None:
    chunk = []
    for row in rows_for(count, end):
        chunk.append(row)
        if len(chunk) == 20_000:
            chunks.put(chunk)
            chunk = []
    chunks.put(chunk)
    chunks.put(None)


def build(db: str, count: int) -> None:
    """history.db at `db` with `count` rows: the real schema, one transaction.

    A second process makes the rows while this one inserts them (each half takes about
    as long as the other).
    """
    import multiprocessing
    import queue

    from agency_cron import history

    chunks = multiprocessing.Queue(maxsize=8)
    producer = multiprocessing.Process(
        target=_produce, args=(chunks, count, time.time()), daemon=True
    )
    producer.start()

    def rows():
        while True:
            try:
                chunk = chunks.get(timeout=120)
            except queue.Empty:
                sys.exit(f"bench: the row producer stopped (exit code {producer.exitcode})")
            if chunk is None:
                return
            yield from chunk

    conn = history.connect(db)
    # A throwaway file: no journal while loading (not 350 MB of WAL copied back at the
    # end), the indexes kept in memory (1 GB at most); back to WAL, as the runner left it.
    for pragma in ("journal_mode = OFF", "synchronous = OFF", "cache_size = -1000000"):
        conn.execute(f"PRAGMA {pragma}")
    placeholders = ", ".join("?" for _ in history.COLUMNS)
    conn.execute("BEGIN IMMEDIATE")
    conn.executemany(
        f"INSERT INTO runs ({', '.join(history.COLUMNS)}) VALUES ({placeholders})", rows()
    )
    conn.execute("COMMIT")
    if conn.execute("PRAGMA journal_mode = WAL").fetchone()[0] != "wal":
        sys.exit("bench: could not put history.db back in WAL mode")
    conn.close()
    producer.join()


# The fleet's shared history (issue 13): HOSTS x TASKS, rows spread over DAYS like rows_for()
# (row i: task i % 100, host (i // 100) % 50; 91% success, failed, timeout, retry-scheduled,
# skipped), made by the server itself from generate_series. Each host is one origin (its
# local database's id) and local_id/rev its ids there, as remote.push writes them.
HOSTS = tuple(f"host-{i:02d}" for i in range(50))
PG_ISO = (
    """to_char(to_timestamp({epoch}) AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"+00:00"')"""
)
PG_FILL = f"""
SELECT setseed(0.5);
INSERT INTO runs (task, run_id, attempt, attempts, started_at, finished_at, duration_s,
                  exit_code, status, host, pid, output_tail, alert, note, origin, local_id, rev)
SELECT task, substr(md5(i::text), 1, 12), 1, CASE WHEN status = 'retry-scheduled' THEN 3 ELSE 1 END,
       {PG_ISO.format(epoch="began")}, {PG_ISO.format(epoch="began + duration")}, duration,
       CASE status WHEN 'success' THEN 0 WHEN 'skipped' THEN 0 WHEN 'timeout' THEN 124 ELSE 1 END,
       status, host, 1000 + (i % 4000000), CASE status
         WHEN 'success' THEN head || E'\nwrote ' || n || E' records\ndone'
         WHEN 'failed' THEN head || E'\nerror: connection refused (db:5432)\ngiving up after 3 tries'
         WHEN 'timeout' THEN head || E'\nwaiting for lock on /var/lib/agency_stack/backup'
         WHEN 'retry-scheduled' THEN head || E'\nerror: 503 Service Unavailable'
         ELSE '' END,
       CASE WHEN status IN ('failed', 'timeout') THEN 'failure: sent' END,
       CASE WHEN status = 'skipped' THEN 'previous run still running (pid ' || n || ')' END,
       md5(host), i, i
FROM (
  SELECT i, task, host, n, began, task || E': start\nfetched ' || n || ' records' AS head,
         CASE WHEN r < 0.91 THEN 'success' WHEN r < 0.94 THEN 'failed' WHEN r < 0.95 THEN 'timeout'
              WHEN r < 0.98 THEN 'retry-scheduled' ELSE 'skipped' END AS status,
         CASE WHEN r < 0.91 THEN -ln(1 - d) / 0.5 WHEN r < 0.94 THEN -ln(1 - d) / 0.2
              WHEN r < 0.95 THEN 1800 + d WHEN r < 0.98 THEN -ln(1 - d) / 0.2 ELSE 0 END AS duration
  FROM (
    SELECT i, 'task-' || lpad((i % 100)::text, 3, '0') AS task,
           'host-' || lpad((i / 100 % 50)::text, 2, '0') AS host,
           {{start}} + (i + random()) * {{step}} AS began, random() AS r, random() AS d,
           1 + floor(random() * 4096)::int AS n
    FROM generate_series(0, {{count}} - 1) AS i
  ) AS drawn
) AS shaped;
"""


def build_pg(url: str, count: int, end: float) -> dict[str, float]:
    """The shared history at `url`: remote.migrate's schema (history.py's migrations through
    remote._pg_ddl), then `count` rows. The indexes are dropped while the rows go in and
    made again from their own definitions (one sorted build each instead of a million
    insertions), then VACUUM ANALYZE: the statistics and visibility map a history that
    autovacuum looks after has. Seconds taken by each step."""
    from agency_cron import remote

    conn = remote.connect(url, 600)  # statement_timeout 600 s: index builds take a while
    steps, start = {}, time.perf_counter()
    indexes = conn.execute(
        "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'runs'"
        " AND indexname <> 'runs_pkey'"
    ).fetchall()
    for name, _ in indexes:
        conn.execute(f'DROP INDEX "{name}"')
    step = DAYS * 86400 / count
    with conn.transaction():
        conn.execute("SET LOCAL synchronous_commit = off")
        for statement in PG_FILL.format(start=end - DAYS * 86400, step=step, count=count).split(
            ";\n"
        ):
            if statement.strip():
                conn.execute(statement)
    steps["rows"] = time.perf_counter() - start
    conn.execute("SET maintenance_work_mem = '256MB'")
    for _, definition in indexes:
        conn.execute(definition)
    steps["indexes"] = time.perf_counter() - start - steps["rows"]
    conn.execute("VACUUM ANALYZE runs")
    steps["vacuum analyze"] = time.perf_counter() - start - steps["rows"] - steps["indexes"]
    conn.close()
    return steps


def make_installation(folder: Path, count: int) -> tuple[Site, float]:
    site = make_site(folder, f"rows-{count}")
    lines = ["tasks:"]
    for name in TASKS:
        lines += [f"  - name: {name}", '    schedule: "*/5 * * * *"', '    command: "true"']
    site.manifest.write_text("\n".join(lines) + "\n")
    site.state_dir.mkdir(parents=True)
    start = time.perf_counter()
    result = subprocess.run(
        [sys.executable, __file__, "--build", str(site.state_dir / "history.db"), str(count)],
        capture_output=True,
        check=False,
    )
    checked(result, f"building {count} rows")
    return site, time.perf_counter() - start


# ---------------------------------------------------------------- measuring


def spawn(argv: list[str], env: dict[str, str], out: Path | None, err: Path):
    """Run argv (stdout to `out` or /dev/null); (wall s, exit code, wait4 peak MB, CPU s)."""
    actions = [
        (os.POSIX_SPAWN_OPEN, 0, "/dev/null", os.O_RDONLY, 0),
        (
            os.POSIX_SPAWN_OPEN,
            1,
            str(out or "/dev/null"),
            os.O_WRONLY | os.O_CREAT | os.O_TRUNC,
            0o600,
        ),
        (os.POSIX_SPAWN_OPEN, 2, str(err), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600),
    ]
    start = time.perf_counter()
    pid = os.posix_spawn(argv[0], argv, env, file_actions=actions)
    _, status, usage = os.wait4(pid, 0)
    wall = time.perf_counter() - start
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        sys.exit(f"bench: {argv} exited {code}:\n{err.read_text(errors='replace')[-2000:]}")
    return wall, code, usage.ru_maxrss / 1024, usage.ru_utime + usage.ru_stime


def peak_mb(argv: list[str], env: dict[str, str], folder: Path) -> float:
    """Peak RSS of argv alone, MB (see the module docstring)."""
    err = folder / "stderr"
    if not os.path.exists(GNU_TIME):
        return spawn(argv, env, None, err)[2]
    figure = folder / "time.out"
    spawn([GNU_TIME, "-f", "%M", "-o", str(figure), *argv], env, None, err)
    return int(figure.read_text().split()[-1]) / 1024


class Commands:
    """The measured commands of one installation."""

    def __init__(self, site: Site, since: str, folder: Path):
        self.site, self.since, self.folder = site, since, folder
        self.since_s = parse_since(since)
        self.python = sys.executable
        self.env = clean_env()
        self.db = str(site.state_dir / "history.db")
        self.sqlite3 = shutil.which("sqlite3") or sys.exit("bench: sqlite3 not found")
        window = datetime.now(UTC) - timedelta(seconds=self.since_s)
        self.window = window.strftime(WINDOW_FORMAT)

    def cli(self) -> list[str]:
        return self.site.cli("log-summary", "--json", "--since", self.since)

    def bare(self, window: str | None = None) -> list[str]:
        sql = BARE_SQL.format(since=window or self.window)
        return [self.sqlite3, "-batch", "-init", "/dev/null", self.db, sql]

    def in_process(self) -> list[str]:
        config, manifest = str(self.site.config), str(self.site.manifest)
        return [self.python, "-c", IN_PROCESS, config, manifest, str(self.since_s)]

    def main(self, freeze: bool = False) -> list[str]:
        code = MAIN.replace("FREEZE", "import gc; gc.freeze()" if freeze else "")
        return [self.python, "-c", code, *self.cli()[len(agency_cron_cmd()) :]]

    def floor(self) -> list[str]:
        return [self.python, "-c", "pass"]

    def metrics(self) -> list[str]:
        return self.site.cli("metrics")

    def metrics_bare(self) -> list[str]:
        return [self.sqlite3, "-batch", "-init", "/dev/null", self.db, METRICS_BARE_SQL]

    def metrics_in_process(self) -> list[str]:
        return [
            self.python,
            "-c",
            METRICS_IN_PROCESS,
            str(self.site.config),
            str(self.site.manifest),
        ]

    def run(self, kind: str) -> tuple[float, float | dict]:
        """(wall s, CPU s, peak MB or the in-process figures) of one run of `kind`."""
        out, err = self.folder / "stdout", self.folder / "stderr"
        if kind == "cli rss":
            return 0.0, peak_mb(self.cli(), self.env, self.folder)
        if kind == "bare rss":
            return 0.0, peak_mb(self.bare(), self.env, self.folder)
        if kind == "metrics rss":
            return 0.0, peak_mb(self.metrics(), self.env, self.folder)
        if kind == "metrics in-process":
            wall = spawn(self.metrics_in_process(), self.env, out, err)[0]
            return wall, json.loads(out.read_text())
        if kind == "in-process":
            wall = spawn(self.in_process(), self.env, out, err)[0]
            return wall, json.loads(out.read_text())
        if kind in ("main", "main frozen"):  # start-up and exit from the wall clock
            before = time.time()
            wall = spawn(self.main(kind == "main frozen"), self.env, out, err)[0]
            after = time.time()
            figures = json.loads(out.read_text())
            figures["startup"] = figures.pop("started") - before
            figures["exit"] = after - figures.pop("ended")
            figures["process"] = wall
            return wall, figures
        argv = {
            "cli": self.cli,
            "bare": self.bare,
            "floor": self.floor,
            "metrics": self.metrics,
            "metrics bare": self.metrics_bare,
        }[kind]()
        wall, _, _, cpu = spawn(argv, self.env, None, err)
        return wall, cpu


KINDS = (
    "cli",
    "bare",
    "in-process",
    "main",
    "main frozen",
    "floor",
    "cli rss",
    "bare rss",
    "metrics",
    "metrics bare",
    "metrics in-process",
    "metrics rss",
)


def measure(commands: Commands, repeat: int) -> dict[str, list]:
    results: dict[str, list] = {kind: [] for kind in KINDS}
    for kind in KINDS:  # warm-up: page cache, .pyc files
        commands.run(kind)
    for i in range(repeat):
        shift = i % len(KINDS)
        for kind in KINDS[shift:] + KINDS[:shift]:
            results[kind].append(commands.run(kind))
    return results


def verify(commands: Commands) -> str:
    """The CLI's JSON against the bare query over the CLI's own window."""
    result = checked(
        subprocess.run(commands.cli(), env=commands.env, capture_output=True, check=False),
        "log-summary --json",
    )
    summary = json.loads(result.stdout)
    got = {t["name"]: (t["runs"], t["failures"], t["skipped"]) for t in summary["tasks"]}
    bare = checked(
        subprocess.run(
            commands.bare(summary["since"]), env=commands.env, capture_output=True, check=False
        ),
        "sqlite3",
    )
    expected = {}
    for line in bare.stdout.decode().splitlines():
        task, runs, failures, skipped, _ = line.split("|")
        expected[task] = (int(runs), int(failures), int(skipped))
    if len(got) != len(TASKS) or any(got[name] != expected.get(name, (0, 0, 0)) for name in got):
        diff = [(n, got[n], expected.get(n)) for n in got if got[n] != expected.get(n)][:5]
        sys.exit(f"bench: log-summary disagrees with the bare query: {diff}")
    runs = sum(v[0] for v in got.values())
    return f"{len(got)} tasks, {runs} runs in the window, equal to the bare query's"


def verify_metrics(commands: Commands) -> str:
    """`agency-cron metrics`'s runs_total against the bare grouped count."""
    from prometheus_client.parser import text_string_to_metric_families

    result = checked(
        subprocess.run(commands.metrics(), env=commands.env, capture_output=True, check=False),
        "metrics",
    )
    got = {}
    for family in text_string_to_metric_families(result.stdout.decode()):
        for sample in family.samples:
            if sample.name == "agency_cron_runs_total" and sample.value:
                got[(sample.labels["task"], sample.labels["status"])] = int(sample.value)
    sql = METRICS_BARE_SQL.split(";")[0]
    bare = checked(
        subprocess.run(
            [commands.sqlite3, "-batch", "-init", "/dev/null", commands.db, sql],
            env=commands.env,
            capture_output=True,
            check=False,
        ),
        "sqlite3",
    )
    expected = {}
    for line in bare.stdout.decode().splitlines():
        task, status, count = line.split("|")
        if status != "running":
            expected[(task, status)] = int(count)
    if got != expected:
        diff = sorted(set(got.items()) ^ set(expected.items()))[:5]
        sys.exit(f"bench: metrics disagrees with the bare query: {diff}")
    return f"{len({t for t, _ in got})} tasks, {sum(got.values())} rows counted, equal to the bare query's"


# ---------------------------------------------------------------- profile


def import_profile(commands: Commands) -> None:
    argv = [commands.python, "-X", "importtime", *commands.cli()]
    result = subprocess.run(argv, env=commands.env, capture_output=True, text=True, check=False)
    checked(result, "-X importtime")
    rows = []
    for line in result.stderr.splitlines():
        match = re.match(r"import time:\s+(\d+) \|\s+(\d+) \| (\s*)(\S+)", line)
        if match:
            rows.append((int(match[1]), int(match[2]), len(match[3]), match[4]))
    top = [r for r in rows if r[2] == 0]  # first-level: site's, then the command's
    total = sum(r[1] for r in top)
    print(f"\n`python -X importtime` of the CLI command: {total / 1000:.0f} ms of imports")
    print("  heaviest first-level imports (cumulative ms):")
    for _, cumulative, _, name in sorted(top, key=lambda r: -r[1])[:8]:
        print(f"    {cumulative / 1000:>7.1f}  {name}")
    ladder = {
        "python -c pass": "pass",
        "stdlib + cronsim (sqlite3, json, zoneinfo)": "import sqlite3, json, zoneinfo, cronsim",
        "+ yaml, dotenv (no pydantic)": "import sqlite3, json, zoneinfo, cronsim, yaml, dotenv",
        "reports, config, manifest (pydantic, crontab)": (
            "import agency_cron.reports, agency_cron.config, agency_cron.manifest"
        ),
        "agency_cron.cli (typer, rich)": "import agency_cron.cli",
    }
    print("  import ladder, wall of `python -c IMPORTS` (median of 5, ms):")
    err = commands.folder / "stderr"
    for name, code in ladder.items():
        walls = [spawn([commands.python, "-c", code], commands.env, None, err)[0] for _ in range(6)]
        print(f"    {median(walls[1:]) * 1000:>7.1f}  {name}")
    by_root: dict[str, int] = {}
    for own, _, _, name in rows:
        root = name.split(".")[0]
        by_root[root] = by_root.get(root, 0) + own
    print("  own import time by top-level package (ms):")
    for root, own in sorted(by_root.items(), key=lambda item: -item[1])[:14]:
        print(f"    {own / 1000:>7.1f}  {root}")


def entry_what_if(commands: Commands, repeat: int) -> None:
    """Whole-process wall of other ways to start the same work (interleaved, median)."""
    lean = [str(commands.site.config), str(commands.site.manifest), str(commands.since_s)]
    python = commands.python
    variants = {
        "agency-cron log-summary --json (as it is)": commands.cli(),
        "lean entry: no typer/rich (config, manifest, reports, json)": [
            python,
            "-c",
            LEAN.replace("FREEZE", ""),
            *lean,
        ],
        "  + gc.freeze() after the imports": [
            python,
            "-c",
            LEAN.replace("FREEZE", "import gc; gc.freeze()"),
            *lean,
        ],
        "python -c pass": commands.floor(),
    }
    err = commands.folder / "stderr"
    names = list(variants)
    variants["bare sqlite3 aggregate"] = commands.bare()
    names = list(variants)
    runs: dict[str, list[tuple[float, float]]] = {name: [] for name in names}
    for i in range(repeat + 1):
        shift = i % len(names)
        for name in names[shift:] + names[:shift]:
            wall, _, _, cpu = spawn(variants[name], commands.env, None, err)
            if i:  # the first round warms up
                runs[name].append((wall, cpu))
    bare = median([w for w, _ in runs["bare sqlite3 aggregate"]])
    print(
        f"\nwhat-if, whole processes (interleaved, {repeat} runs each), ms: wall median, wall"
        " min, CPU (user+sys) median"
    )
    for name in names:
        walls, cpus = [w for w, _ in runs[name]], [c for _, c in runs[name]]
        value = median(walls)
        print(
            f"  {name:<62} {value * 1000:>7.1f} {min(walls) * 1000:>7.1f}"
            f" {median(cpus) * 1000:>7.1f}  {value / bare:>5.1f}x bare"
        )


def call_profile(commands: Commands) -> None:
    argv = [
        commands.python,
        "-c",
        PROFILE,
        str(commands.site.config),
        str(commands.site.manifest),
        str(commands.since_s),
        BARE_SQL,
        str(commands.folder / "what-if.db"),
    ]
    result = subprocess.run(argv, env=commands.env, capture_output=True, text=True, check=False)
    for leftover in commands.folder.glob("what-if.db*"):
        leftover.unlink()
    checked(result, "cProfile")
    print()
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    print("\n".join(line for line in lines if not line.startswith(("   Ordered", "   List"))))


# ---------------------------------------------------------------- the fleet on PostgreSQL

# What a bare client asks: the window's runs counted per task and status.
PG_BARE_SQL = (
    "SELECT task, status, count(*) FROM runs WHERE started_at >= '{since}' GROUP BY task, status"
)


def portable_counts(sql: str) -> str:
    """SUMMARY_SQL counts with SUM(boolean), which PostgreSQL does not have: the same counts
    written for both engines, used only when the library's own fails there (pg_problem)."""
    return re.sub(r"SUM\((status [^)]*\)?)\)", r"SUM(CASE WHEN \1 THEN 1 ELSE 0 END)", sql)


# log-summary --json over the whole fleet in a fresh interpreter, the way the CLI reads the
# shared history with `--host all` (readers.open_histories: remote.sync of this host's
# spool, then remote.reader), with timers around each part; argv: config, manifest, since
# seconds, the SUMMARY_SQL to use ("" for the library's), "split" for the figures (and a
# second call) on stderr. JSON to stdout.
FLEET_IN_PROCESS = r"""
import json, sys, time
t0 = time.perf_counter()
from agency_cron import readers, remote, reports, results
from agency_cron.config import load_settings
from agency_cron.manifest import load_manifest
t1 = time.perf_counter()
settings = load_settings(sys.argv[1])
manifest = load_manifest(sys.argv[2], settings)
t2 = time.perf_counter()
if sys.argv[4]:
    reports.SUMMARY_SQL = sys.argv[4]
if sys.argv[5] == "split":
    import psycopg  # timed apart: remote.sync's first connect imports it otherwise
t_psycopg = time.perf_counter() - t2
spent = {"sync": 0.0, "connect": 0.0}

def timed(name, fn):
    def wrapper(*args, **kwargs):
        start = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            spent[name] += time.perf_counter() - start
    return wrapper

remote.sync, remote.reader = timed("sync", remote.sync), timed("connect", remote.reader)
# The fleet view's per-host queries (hosts that ran each task, last success per host),
# where this agency-cron has them.
for module, name in ((remote, "hosts_by_task"), (remote, "last_success_by_host"),
                     (reports, "lateness")):
    if hasattr(module, name):
        spent[name] = 0.0
        setattr(module, name, timed(name, getattr(module, name)))
takes_view = "view" in reports.log_summary.__code__.co_varnames

def call():
    found = readers.open_histories(settings, "all", readers.ALL, readers.fleet_task_names(manifest))
    if takes_view:  # the CLI opens its view and hands it over
        return reports.log_summary(settings, manifest, int(sys.argv[3]), None, found)
    reports._open_histories = lambda settings: found.conns  # before the fleet view
    return reports.log_summary(settings, manifest, int(sys.argv[3]))

summary = call()
t4 = time.perf_counter()
opened = dict(spent)  # the second call below opens again
sys.stdout.write(results.to_json(summary))
t5 = time.perf_counter()
if sys.argv[5] == "split":
    t6 = time.perf_counter()
    call()
    t7 = time.perf_counter()
    print(json.dumps({
        "imports": t1 - t0, "load": t2 - t1, "psycopg": t_psycopg,
        "call": t4 - t2 - t_psycopg - opened["sync"] - opened["connect"], "json": t5 - t4,
        "warm": t7 - t6, **opened,
    }), file=sys.stderr)
"""


def pg_problem(url: str, window: str) -> str | None:
    """Why reports.SUMMARY_SQL does not run on PostgreSQL (None when it does)."""
    from agency_cron import remote, reports

    reader = remote.reader(url, 30, None)
    try:
        reader.execute(reports.SUMMARY_SQL, (TASKS[0], window)).fetchone()
    except remote.RemoteError as exc:
        return str(exc).split(" LINE ")[0]
    finally:
        reader.close()
    return None


def pg_plans(
    url: str, window: str, summary_sql: str, host: str | None, fleet_tasks: tuple = ()
) -> list[str]:
    """EXPLAIN ANALYZE of log-summary's four queries for one task, through the Reader the
    fleet view (host None) or one host's view uses (with `fleet_tasks`: the rows of those
    `scope: fleet` tasks too), and of the bare aggregate: the scans each plan makes, the
    rows its filters threw away, its execution time, and SEQ SCAN when one reads the whole
    table."""
    from agency_cron import remote, reports

    reader = remote.reader(url, 30, host, fleet_tasks)
    queries = {
        "SUMMARY_SQL": (summary_sql, (TASKS[42], window)),
        "LAST_SQL": (reports.LAST_SQL, (TASKS[42],)),
        "LAST_SUCCESS_SQL": (reports.LAST_SUCCESS_SQL, (TASKS[42],)),
        "LAST_ERROR_SQL": (reports.LAST_ERROR_SQL, (TASKS[42],)),
    }
    if host is None:
        queries.update(fleet_queries(reader, window))
        queries["bare aggregate"] = (PG_BARE_SQL.format(since=window), ())
    found = []
    for name, (sql, params) in queries.items():
        rows = [r[0] for r in reader.execute("EXPLAIN (ANALYZE) " + sql, params).fetchall()]
        scans = [
            re.sub(r"\s+\(cost=.*", "", line.strip(" ->"))
            for line in rows
            if " Scan " in line or line.lstrip(" ->").startswith("Seq Scan")
        ]
        took = next((line for line in rows if line.startswith("Execution Time")), "")
        removed = sum(int(n) for n in re.findall(r"Rows Removed by Filter: (\d+)", "\n".join(rows)))
        thrown = f", {removed} rows filtered out" if removed else ""
        seq = "  SEQ SCAN" if any("Seq Scan" in scan for scan in scans) else ""
        found.append(f"{name}: {'; '.join(scans)} ({took.lower()}{thrown}){seq}")
    reader.close()
    return found


def one_statement(summary_sql: str) -> str:
    """log-summary's four queries for every task in one statement (PostgreSQL's LATERAL):
    the same SQL text per task, `task = ?` bound to each name of the array instead."""
    from agency_cron import remote, reports

    def per_task(sql: str) -> str:
        return remote.portable(sql).replace("task = %s", "task = t.name").strip()

    return (
        "SELECT t.name, w.runs, w.failures, w.skipped, l.started_at, l.status,"
        f" ({per_task(reports.LAST_SUCCESS_SQL)}), e.started_at, e.output_tail"
        f" FROM unnest(%s::text[]) AS t(name) CROSS JOIN LATERAL ({per_task(summary_sql)}) w"
        f" LEFT JOIN LATERAL ({per_task(reports.LAST_SQL)}) l ON true"
        f" LEFT JOIN LATERAL ({per_task(reports.LAST_ERROR_SQL)}) e ON true ORDER BY t.name"
    )


def queries_what_if(url: str, window: str, summary_sql: str) -> list[str]:
    """A warm fleet Reader in this process (fastest of 5, ms): the library's four queries a
    task for 100 tasks (reports._summary_row, 400 round trips), against the same answers in
    one statement (one_statement) and the bare aggregate, checked equal."""
    import types

    from agency_cron import remote, reports

    reader = remote.reader(url, 30, None)
    tasks = [types.SimpleNamespace(name=name) for name in TASKS]
    original, reports.SUMMARY_SQL = reports.SUMMARY_SQL, summary_sql

    def library() -> list[tuple]:
        rows = [reports._summary_row([reader], task, window) for task in tasks]
        keys = ("name", "runs", "failures", "skipped", "last_run", "last_status")
        return [(*(r[k] for k in keys), r["last_success"]) for r in rows]

    single = one_statement(summary_sql)

    def together() -> list[tuple]:
        rows = reader.conn.execute(single, (list(TASKS), window)).fetchall()
        return [tuple(row[:7]) for row in rows]

    def bare() -> list[tuple]:
        return reader.conn.execute(PG_BARE_SQL.format(since=window)).fetchall()

    try:
        if library() != together():
            sys.exit("bench: the one-statement what-if answers differently")
        found = [f"{name}: {best_ms(fn):.1f} ms" for name, fn in (
            ("reports._summary_row x100 (400 queries)", library),
            ("the same in one statement (LATERAL per task)", together),
            ("the bare aggregate, same connection", bare),
        )]  # fmt: skip
        found += probe_what_if(reader, window)
    finally:
        reports.SUMMARY_SQL = original
        reader.close()
    return found


# remote.last_success_by_host's "this host has rows of this task" as an EXISTS, which the
# planner turns into a semi join over every row (a hash of all (host, task) pairs); the
# same test as a scalar subquery stays one index probe a pair.
EXISTS_PROBE = re.compile(r"EXISTS \(\s*(SELECT) 1 (FROM runs r WHERE [^)]*)\)")


def probe_what_if(reader, window: str) -> list[str]:
    """remote.last_success_by_host as it is against its EXISTS written as a scalar
    subquery (EXISTS_PROBE), checked equal; nothing where it is not in this agency-cron."""
    sql, params = fleet_queries(reader, window).get("remote.last_success_by_host", ("", ()))
    rewritten = EXISTS_PROBE.sub(r"(\1 true \2 LIMIT 1)", sql)
    if not sql or rewritten == sql:
        return []
    answers = [reader.execute(q, params).fetchall() for q in (sql, rewritten)]
    if answers[0] != answers[1]:
        sys.exit("bench: the rewritten last_success_by_host answers differently")
    as_is, probe = (
        best_ms(lambda q=q: reader.execute(q, params).fetchall(), 3) for q in (sql, rewritten)
    )
    return [
        f"remote.last_success_by_host, as it is (EXISTS): {as_is:.1f} ms",
        f"  the same with (SELECT true ... LIMIT 1) for its EXISTS: {probe:.1f} ms",
    ]


def best_ms(fn, times: int = 5) -> float:
    values = []
    for _ in range(times):
        start = time.perf_counter()
        fn()
        values.append(time.perf_counter() - start)
    return min(values) * 1000  # the fastest: the least disturbed by other load


def fleet_queries(reader, window: str) -> dict[str, tuple[str, tuple]]:
    """The fleet view's own queries over every task at once (remote.hosts_by_task,
    remote.last_success_by_host), where this agency-cron has them: run once through a
    reader that keeps what they ask, for EXPLAIN."""
    from agency_cron import remote

    asked: dict[str, tuple[str, tuple]] = {}

    class Recorder:
        def __init__(self, name: str) -> None:
            self.name = name

        def __getattr__(self, attribute: str):
            return getattr(reader, attribute)

        def execute(self, sql: str, params=()):
            asked[self.name] = (sql, tuple(params))
            return reader.execute(sql, params)

    calls = {"hosts_by_task": (list(TASKS), window), "last_success_by_host": (list(TASKS),)}
    for name, args in calls.items():
        if hasattr(remote, name):
            getattr(remote, name)(Recorder(f"remote.{name}"), *args)
    return asked


class FleetCommands:
    """The measured commands of the fleet installation (HISTORY_URL on the server)."""

    def __init__(self, site: Site, server, dbname: str, since: str, folder: Path, sql: str):
        self.site, self.server, self.dbname, self.folder = site, server, dbname, folder
        self.since, self.since_s = since, parse_since(since)
        self.summary_sql = sql  # "" for the library's own
        self.env = clean_env()
        window = datetime.now(UTC) - timedelta(seconds=self.since_s)
        self.window = window.strftime(WINDOW_FORMAT)
        help_text = subprocess.run(
            site.cli("log-summary", "--help"), env=self.env, capture_output=True, text=True
        ).stdout
        self.has_host = "--host" in help_text  # issue 13 point 2 on log-summary yet?

    def cli(self) -> list[str]:
        return self.site.cli("log-summary", "--json", "--since", self.since, "--host", "all")

    def in_process(self, split: bool = True) -> list[str]:
        config, manifest = str(self.site.config), str(self.site.manifest)
        since, sql = str(self.since_s), self.summary_sql
        mode = "split" if split else "once"
        return [sys.executable, "-c", FLEET_IN_PROCESS, config, manifest, since, sql, mode]

    def command(self) -> list[str]:
        """What is timed as log-summary: the CLI when it has --host, else the stand-in."""
        return self.cli() if self.has_host else self.in_process(split=False)

    def bare(self, window: str | None = None) -> list[str]:
        sql = PG_BARE_SQL.format(since=window or self.window)
        return self.server.psql_cmd(self.dbname, "-c", sql)

    def run(self, kind: str) -> tuple[float, float | dict]:
        err = self.folder / "stderr"
        argv = {
            "log-summary": self.command,
            "in-process": self.in_process,
            "psql aggregate": self.bare,
            "psql SELECT 1": lambda: self.server.psql_cmd(self.dbname, "-c", "SELECT 1"),
            "python -c pass": lambda: [sys.executable, "-c", "pass"],
        }[kind]()
        wall, _, _, cpu = spawn(argv, self.env, None, err)
        if kind == "in-process":
            return wall, json.loads(err.read_text().splitlines()[-1])
        return wall, cpu


FLEET_KINDS = ("log-summary", "in-process", "psql aggregate", "psql SELECT 1", "python -c pass")


def fleet_verify(commands: FleetCommands) -> str:
    """log-summary's counts against the bare aggregate over its own window."""
    out = commands.folder / "fleet.json"
    spawn(commands.command(), commands.env, out, commands.folder / "stderr")
    summary = json.loads(out.read_text())
    got = {t["name"]: (t["runs"], t["failures"], t["skipped"]) for t in summary["tasks"]}
    bare = subprocess.run(commands.bare(summary["since"]), capture_output=True, text=True)
    checked(bare, "psql aggregate")
    expected: dict[str, list[int]] = {}
    for line in bare.stdout.splitlines():
        task, status, count = line.split("|")
        counts = expected.setdefault(task, [0, 0, 0])
        counts[0] += int(count) if status not in ("retry-scheduled", "skipped") else 0
        counts[1] += int(count) if status in ("failed", "timeout", "killed", "lost") else 0
        counts[2] += int(count) if status == "skipped" else 0
    if len(got) != len(TASKS) or any(got[n] != tuple(expected.get(n, ())) for n in got):
        diff = [(n, got[n], expected.get(n)) for n in got if got[n] != tuple(expected[n])][:5]
        sys.exit(f"bench: the fleet log-summary disagrees with the bare aggregate: {diff}")
    runs = sum(v[0] for v in got.values())
    return f"{len(got)} tasks, {runs} runs in the window, equal to the bare aggregate's"


def fleet(folder: Path, rows: int, repeat: int, since: str) -> None:
    """log-summary over HOSTS x TASKS x `rows` in PostgreSQL against a bare psql aggregate."""
    from pgserver import bindir, postgres_server

    if bindir() is None:
        print("\nPostgreSQL server binaries not found (apt-get install postgresql): skipped")
        return
    with postgres_server() as server:
        url = server.create_database("fleet")
        steps = build_pg(url, rows, time.time())
        built = ", ".join(f"{name} {seconds:.1f}s" for name, seconds in steps.items())
        size = server.psql("SELECT pg_size_pretty(pg_total_relation_size('runs'))", "fleet")
        print(
            f"\nfleet history on PostgreSQL: {len(HOSTS)} hosts x {len(TASKS)} tasks x {rows}"
            f" rows, built in {sum(steps.values()):.1f}s ({built}); runs with its indexes {size}"
        )
        site = make_site(folder, "fleet")
        with site.config.open("a") as config:
            config.write(f"HISTORY_URL={url}\nHOST_NAME=bench-reader\n")
        lines = ["tasks:"]
        for name in TASKS:
            lines += [f"  - name: {name}", '    schedule: "*/5 * * * *"', '    command: "true"']
        site.manifest.write_text("\n".join(lines) + "\n")
        from agency_cron import reports

        window = (datetime.now(UTC) - timedelta(seconds=parse_since(since))).strftime(WINDOW_FORMAT)
        problem = pg_problem(url, window)
        sql = portable_counts(reports.SUMMARY_SQL) if problem else ""
        if problem:
            print(
                f"  reports.SUMMARY_SQL fails on PostgreSQL ({problem}): measured with its"
                " counts written as SUM(CASE WHEN ... THEN 1 ELSE 0 END), which both engines run"
            )
        commands = FleetCommands(site, server, "fleet", since, folder, sql)
        if not commands.has_host:
            print(
                "  this agency-cron's log-summary has no --host yet (issue 13 point 2): what is"
                " timed as log-summary is the stand-in, log_summary() on readers.open_histories"
                "(settings, 'all') in a fresh interpreter (no typer dispatch)"
            )
        print(f"  check: {fleet_verify(commands)}")
        views = {
            "the fleet (--host all)": (None, ()),
            f"one host (--host {HOSTS[7]})": (HOSTS[7], ()),
            f"{HOSTS[7]} with {TASKS[0]} and {TASKS[1]} as scope: fleet tasks": (
                HOSTS[7],
                TASKS[:2],
            ),
        }
        for label, (view, shared) in views.items():
            print(f"  EXPLAIN ANALYZE of the queries for {TASKS[42]}, {label}:")
            for line in pg_plans(url, window, sql or reports.SUMMARY_SQL, view, shared):
                print(f"    {line}")
        print("  what-if, in this process on a warm connection (fastest of 5; equal answers):")
        for line in queries_what_if(url, window, sql or reports.SUMMARY_SQL):
            print(f"    {line}")
        results = fleet_measure(commands, repeat)
    report_fleet(results, repeat, commands.has_host)


def fleet_measure(commands: FleetCommands, repeat: int) -> dict[str, list]:
    results: dict[str, list] = {kind: [] for kind in FLEET_KINDS}
    for kind in FLEET_KINDS:  # warm-up: page cache, .pyc files, the server's buffers
        commands.run(kind)
    for i in range(repeat):
        shift = i % len(FLEET_KINDS)
        for kind in FLEET_KINDS[shift:] + FLEET_KINDS[:shift]:
            results[kind].append(commands.run(kind))
    return results


def report_fleet(results: dict[str, list], repeat: int, has_host: bool) -> None:
    wall = {kind: median([w for w, _ in values]) for kind, values in results.items()}
    what = "agency-cron log-summary --json --host all" if has_host else "log-summary stand-in"
    print(f"\n  whole processes, median of {repeat} interleaved, wall s (client CPU s):")
    for kind in ("log-summary", "psql aggregate", "psql SELECT 1", "python -c pass"):
        cpu = median([c for _, c in results[kind]])
        label = what if kind == "log-summary" else kind
        print(f"    {label:<44} {wall[kind]:>7.3f} ({cpu:.3f})")
    ratio = wall["log-summary"] / wall["psql aggregate"]
    verdict = "PASS" if ratio <= RATIO_TARGET else "FAIL"
    print(
        f"  log-summary / bare psql aggregate: {ratio:.1f}x (target <= {RATIO_TARGET:g}: {verdict})"
    )
    parts = [figures for _, figures in results["in-process"]]
    split = {key: median([f[key] for f in parts]) for key in parts[0]}
    ms = {k: v * 1000 for k, v in split.items()}
    parts = {
        "hosts_by_task": "remote.hosts_by_task",
        "last_success_by_host": "remote.last_success_by_host",
        "lateness": "reports.lateness (overdue per host)",
    }
    extra = "".join(f", {label} {ms[name]:.0f}" for name, label in parts.items() if name in ms)
    extra = f" (of which{extra[1:]})" if extra else ""
    print(
        "  the stand-in's parts, ms (medians): imports {imports:.0f}, config + manifest {load:.0f},"
        " import psycopg {psycopg:.0f}, remote.sync {sync:.0f} and remote.reader {connect:.0f}"
        " (one connection each), the queries and the rest of log_summary() {call:.0f}{extra},"
        " JSON {json:.0f}; the whole call again (a fresh view) {warm:.0f}".format(extra=extra, **ms)
    )


# ---------------------------------------------------------------- report


def installed() -> str:
    """Where agency_cron is imported from, and whether it is an editable install."""
    from importlib import metadata, util

    spec = util.find_spec("agency_cron")
    where = Path(spec.origin).parent if spec and spec.origin else "?"
    try:
        dist = metadata.distribution("agency-cron")
        direct = json.loads(dist.read_text("direct_url.json") or "{}")
        editable = bool(direct.get("dir_info", {}).get("editable"))
        version = dist.version
    except metadata.PackageNotFoundError:
        editable, version = True, "?"
    note = " EDITABLE: imports slower than production" if editable else " (non-editable)"
    return f"agency-cron {version} from {where}{note}"


def report(sizes: list[int], figures: dict[int, dict], since: str) -> None:
    print(f"\nlog-summary --json --since {since}: median of each, seconds (MB for peaks)")
    head = (
        f"{'rows':>9} {'cli s':>8} {'sqlite3 s':>10} {'cli/bare':>9} {'in-proc s':>10}"
        f" {'in-proc/bare':>13} {'cli MB':>7} {'sqlite3 MB':>11} {'py floor s':>11}"
    )
    print(head)
    print("-" * len(head))
    for size in sizes:
        f = figures[size]
        print(
            f"{size:>9} {f['cli']:>8.3f} {f['bare']:>10.4f} {f['cli'] / f['bare']:>8.1f}x"
            f" {f['lib_call']:>10.4f} {f['lib_call'] / f['bare']:>12.1f}x"
            f" {f['cli_mb']:>7.1f}"
            f" {f['bare_mb']:>11.1f} {f['floor']:>11.3f}"
        )
    print("CPU time (user+sys, median; wall ≈ CPU: the commands are CPU-bound, no I/O wait):")
    for size in sizes:
        f = figures[size]
        print(
            f"  {size:>9} rows: cli {f['cli_cpu']:.3f} s, sqlite3 {f['bare_cpu']:.4f} s,"
            f" ratio {f['cli_cpu'] / max(f['bare_cpu'], 1e-4):.1f}x"
        )
    print(f"\ntarget cli/bare <= {RATIO_TARGET:g}x (wall):")
    for size in sizes:
        ratio = figures[size]["cli"] / figures[size]["bare"]
        print(f"  {size:>9} rows: {ratio:6.1f}x  {'PASS' if ratio <= RATIO_TARGET else 'FAIL'}")
    peaks = [figures[size]["cli_mb"] for size in sizes]
    growth = max(peaks) - min(peaks)
    flat = growth <= max(5.0, 0.1 * min(peaks))
    print(
        f"cli peak RSS {min(peaks):.1f}..{max(peaks):.1f} MB across sizes (+{growth:.1f} MB):"
        f" {'flat, PASS' if flat else 'grows, FAIL'}"
    )
    print(
        "\nwhere the CLI's time goes: the same command run by `python -c` with timers around"
        " cli._load,\nreports.log_summary and cli._print_json (ms, medians; start-up and exit"
        " from the wall clock):"
    )
    print(
        f"{'rows':>9} {'start-up':>9} {'imports':>8} {'load':>6} {'call':>7} {'print':>6}"
        f" {'dispatch':>9} {'exit':>6} {'= process':>10} {'| cli':>7} {'lib-only call':>14}"
        f" {'warm call':>10} {'lib imports':>12}"
    )
    for size in sizes:
        f = figures[size]
        dispatch = f["main"] - f["load"] - f["call"] - f["print"]
        print(
            f"{size:>9} {f['startup'] * 1000:>9.1f} {f['cli_imports'] * 1000:>8.1f}"
            f" {f['load'] * 1000:>6.1f} {f['call'] * 1000:>7.1f} {f['print'] * 1000:>6.1f}"
            f" {dispatch * 1000:>9.1f} {f['exit'] * 1000:>6.1f} {f['process'] * 1000:>10.1f}"
            f" {f['cli'] * 1000:>7.1f} {f['lib_call'] * 1000:>14.1f} {f['warm'] * 1000:>10.1f}"
            f" {f['lib_imports'] * 1000:>12.1f}"
        )
    print(
        "  start-up: spawn to the script's first line (interpreter, site); imports:"
        " agency_cron.cli's (typer, rich,\n  pydantic, ...); load: config.env and manifest;"
        " call: log_summary(); print: json.dumps and write;\n  dispatch: the rest of"
        " cli.main() (typer building the click commands, parsing); exit: last line to"
        " wait4\n  (interpreter teardown). Each column is a median on its own, so the"
        " columns add up to `= process`\n  only roughly. lib-only call, warm call, lib imports:"
        " log_summary() in a process that imports only\n  reports, config and manifest (the"
        " table's in-proc s), a second call there, and those imports."
    )
    report_metrics(sizes, figures)
    print("the same with gc.freeze() right after the imports (what-if; nothing else changed), ms:")
    for size in sizes:
        f = figures[size]
        print(
            f"{size:>9}  exit {f['exit'] * 1000:6.1f} -> {f['frozen_exit'] * 1000:6.1f},"
            f"  process {f['process'] * 1000:6.1f} -> {f['frozen_process'] * 1000:6.1f}"
        )


def report_metrics(sizes: list[int], figures: dict[int, dict]) -> None:
    print("\nagency-cron metrics (100 tasks): median of each, seconds (MB for the peak)")
    head = (
        f"{'rows':>9} {'cli s':>8} {'sqlite3 s':>10} {'cli/bare':>9} {'first call s':>13}"
        f" {'call/bare':>10} {'warm call s':>12} {'history read s':>15} {'cli MB':>7}"
    )
    print(head)
    print("-" * len(head))
    for size in sizes:
        f = figures[size]
        print(
            f"{size:>9} {f['metrics']:>8.3f} {f['metrics_bare']:>10.4f}"
            f" {f['metrics'] / f['metrics_bare']:>8.1f}x {f['m_call']:>13.4f}"
            f" {f['m_call'] / f['metrics_bare']:>9.1f}x {f['m_warm']:>12.4f}"
            f" {f['m_read']:>15.4f} {f['metrics_mb']:>7.1f}"
        )
    for size in sizes:
        f = figures[size]
        print(
            f"  {size:>9} rows: CPU (user+sys, median) cli {f['metrics_cpu']:.3f} s, sqlite3"
            f" {f['metrics_bare_cpu']:.4f} s, ratio {f['metrics_cpu'] / max(f['metrics_bare_cpu'], 1e-4):.1f}x"
        )
    print(
        "  first call: metrics.exposition() once, prometheus_client's import included; warm"
        " call: a second one;\n  history read: its own figure"
        " (agency_cron_metrics_scrape_duration_seconds) in that process."
    )


def summarise(results: dict[str, list]) -> dict:
    inproc = [figures for _, figures in results["in-process"] + results["main"]]
    keys = {key for figures in inproc for key in figures}
    frozen = [figures for _, figures in results["main frozen"]]
    in_metrics = [figures for _, figures in results["metrics in-process"]]
    return {
        "metrics": median([w for w, _ in results["metrics"]]),
        "metrics_bare": median([w for w, _ in results["metrics bare"]]),
        "metrics_cpu": median([c for _, c in results["metrics"]]),
        "metrics_bare_cpu": median([c for _, c in results["metrics bare"]]),
        "metrics_mb": median([p for _, p in results["metrics rss"]]),
        **{k: median([f[k] for f in in_metrics]) for k in ("m_call", "m_warm", "m_read")},
        "frozen_exit": median([f["exit"] for f in frozen]),
        "frozen_process": median([f["process"] for f in frozen]),
        "cli": median([w for w, _ in results["cli"]]),
        "bare": median([w for w, _ in results["bare"]]),
        "floor": median([w for w, _ in results["floor"]]),
        "cli_cpu": median([c for _, c in results["cli"]]),
        "bare_cpu": median([c for _, c in results["bare"]]),
        "cli_mb": median([p for _, p in results["cli rss"]]),
        "bare_mb": median([p for _, p in results["bare rss"]]),
        **{k: median([f[k] for f in inproc if k in f]) for k in keys},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--since", default="24h")
    parser.add_argument("--keep", action="store_true", help="keep the databases")
    parser.add_argument("--no-profile", action="store_true")
    parser.add_argument("--build", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument(
        "--pg-rows",
        type=int,
        default=1_000_000,
        help="rows of the fleet history on PostgreSQL (0: skip it)",
    )
    parser.add_argument("--pg-only", action="store_true", help="only the fleet on PostgreSQL")
    args = parser.parse_args()
    if args.build:
        build(args.build[0], int(args.build[1]))
        return
    sizes = [int(s.replace("_", "")) for s in args.sizes.split(",") if s.strip()]
    print(installed())
    print(f"command: {' '.join(agency_cron_cmd())}; interpreter: {sys.executable}")
    peaks = "GNU time (%M)" if os.path.exists(GNU_TIME) else "our wait4 (upper bound)"
    print(f"sqlite3: {shutil.which('sqlite3')}; peak RSS via {peaks}")
    folder = Path(tempfile.mkdtemp(prefix="acbench-summary-"))
    figures = {}
    try:
        if args.pg_only:
            fleet(folder, args.pg_rows, args.repeat, args.since)
            return
        for size in sizes:
            site, seconds = make_installation(folder, size)
            db = site.state_dir / "history.db"
            print(
                f"\n{size} rows: built in {seconds:.1f}s,"
                f" {db.stat().st_size / 1e6:.0f} MB history.db ({site.root})"
            )
            commands = Commands(site, args.since, folder)
            print(f"  check: {verify(commands)}")
            print(f"  check: {verify_metrics(commands)}")
            figures[size] = summarise(measure(commands, args.repeat))
        report(sizes, figures, args.since)
        if not args.no_profile:
            commands = Commands(site, args.since, folder)
            print(f"\nprofile at {sizes[-1]} rows")
            import_profile(commands)
            entry_what_if(commands, args.repeat)
            call_profile(commands)
        if args.pg_rows:
            fleet(folder, args.pg_rows, args.repeat, args.since)
    finally:
        if args.keep:
            print(f"\nkept: {folder}")
        else:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
