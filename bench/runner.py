"""Runner benchmark: the wrapper's whole run of `true`, output throughput and peak memory.

    python bench/runner.py [--runs 200] [--sizes 10M,100M,1G] [--repeat 3]
        [--no-throughput] [--no-profile] [--against GIT_REV] [--pings | --no-pings]
        [--no-postgres]

Run by hand, never in the tests. Everything is measured in one run:

1. Start-up: N interleaved runs (the order rotates every round) of `/bin/true`,
   `chronic true` (moreutils), the rendered wrapper AGENCY_ROOT/scripts/cronjobs/NAME.sh of
   a task `command: "true"`, and, to show where the wrapper's time goes, `python -S -c pass`,
   `python -c pass` and `python -c 'import agency_cron.runner, agency_cron.history'` (the
   interpreter the wrapper execs). Each is started like cron starts a job: stdout and stderr
   not a terminal, a cron-like environment (PATH=/usr/bin:/bin, HOME, LOGNAME, SHELL).
   Target: wrapper / chronic <= 1.0 (median).
   With PostgreSQL's server binaries (Debian's `postgresql`; --no-postgres skips it), also
   the same task `true` installed in a second installation whose config.env has
   HISTORY_URL=postgresql://... on a throwaway local server (bench/pgserver.py: initdb'd in
   a temporary folder, 127.0.0.1, stopped at the end), so every run records in its local
   SQLite and then sends its rows there (remote.push), and `python: import runner,
   history, remote, psycopg`: the ratio to chronic for both histories, the send's cost
   (the difference of the two wrappers' medians), and a check that every run's row arrived.
2. Throughput: a task `head -c BYTES /dev/zero` against `head -c BYTES /dev/zero | cat > FILE`
   in the same run, in MB/s, twice: with AGENCY_CRON_NO_CRON_LOG=1 (the output goes only to
   the task log; the runner's copy to stdout goes to /dev/null) and as cron runs it (the
   wrapper also appends the output to LOG_DIR/cron/NAME.sh.log: twice the bytes written).
   Peak RSS of the wrapper's process tree (the wrapper execs python, so its pid is the
   runner's; taken by GNU time, see spawn_measured) must stay flat, under 50 MB, whatever
   the output size.
3. Profile of the run of `true`: `python -X importtime -m agency_cron.runner SPEC`, in-runner
   attempt durations from history.db, and `strace -c -f` of the wrapper when strace exists.
4. What each addition of the fault-tolerance work costs on every run, in-process: the
   `running` row (insert + update against one insert), the lost-run look-up, the rotation
   check, fork+exec with default signals against posix_spawn; with PostgreSQL, the send's
   parts: remote.connect (connection, scram login, schema check), remote.push of one new
   row, close.
5. With --against REV: the runner of that git revision and this one, whole runs of `true`
   started as the wrapper starts them, interleaved with `chronic true`.
6. Heartbeat pings (`--pings` for this part alone; `--no-pings` skips it): the wrapper's
   run of `true` for a task whose ping_url is a local HTTP server (127.0.0.1, started by
   the benchmark, answering 200 OK as hc-ping.com does), against the same task without
   one, against `chronic true` followed by `curl -fsS --retry 3 URL` (what operators
   append to crontab lines by hand) and against `curl URL/start; chronic true; curl URL`
   (the two pings the runner sends), interleaved. The server counts the pings it gets.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from common import Site, checked, clean_env, make_site, median, percentile, scratch
from pgserver import Server, bindir, postgres_server

RSS_LIMIT_MB = 50.0
TRUE_TASK = "bench-true"
PG_HOST = "bench-pg-host"  # HOST_NAME of the installation that sends to PostgreSQL
PG_WRAPPER = "wrapper (true), PostgreSQL"
PSQL_REF = "chronic true; psql -c INSERT"
PSQL_INSERT = "INSERT INTO bench_ref VALUES (now())"


def cron_env(**extra: str) -> dict[str, str]:
    """Roughly what Debian's cron gives a job (plus the wrapper's own exports)."""
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": os.environ.get("HOME", "/root"),
        "LOGNAME": os.environ.get("LOGNAME", "root"),
        "SHELL": "/bin/sh",
    }
    env.update(extra)
    return env


def spawn_wait(argv: list[str], env: dict[str, str], cwd: str | None = None):
    """Start argv with stdin/stdout/stderr on /dev/null; (wall s, exit code, rusage)."""
    actions = [
        (os.POSIX_SPAWN_OPEN, 0, "/dev/null", os.O_RDONLY, 0),
        (os.POSIX_SPAWN_OPEN, 1, "/dev/null", os.O_WRONLY, 0),
        (os.POSIX_SPAWN_DUP2, 1, 2),
    ]
    old = os.getcwd()
    if cwd:
        os.chdir(cwd)
    try:
        start = time.perf_counter()
        pid = os.posix_spawn(argv[0], argv, env, file_actions=actions)
        _, status, usage = os.wait4(pid, 0)
        wall = time.perf_counter() - start
    finally:
        os.chdir(old)
    return wall, os.waitstatus_to_exitcode(status), usage


GNU_TIME = "/usr/bin/time"


def spawn_measured(argv: list[str], env: dict[str, str], folder: Path):
    """spawn_wait() plus the peak RSS (MB) of argv's process tree.

    The rusage of a child we spawn counts our own RSS (its address space starts as a copy
    of ours, and exec keeps that high-water mark), so the peak is taken by GNU time, a
    small process that forks the command itself. Without it, wait4's figure is an upper
    bound that includes this benchmark's own RSS.
    """
    if not os.path.exists(GNU_TIME):
        wall, code, usage = spawn_wait(argv, env)
        return wall, code, usage, usage.ru_maxrss / 1024
    out = folder / "time.out"
    wall, code, usage = spawn_wait([GNU_TIME, "-f", "%M", "-o", str(out), *argv], env)
    lines = out.read_text().split()
    return wall, code, usage, int(lines[-1]) / 1024


def parse_size(text: str) -> int:
    units = {"K": 10**3, "M": 10**6, "G": 10**9}
    text = text.strip().upper()
    return int(text[:-1]) * units[text[-1]] if text[-1] in units else int(text)


def human(size: int) -> str:
    for unit, factor in (("G", 10**9), ("M", 10**6), ("K", 10**3)):
        if size >= factor and size % factor == 0:
            return f"{size // factor}{unit}"
    return str(size)


def out_task(size: int) -> str:
    return f"bench-out-{human(size)}"


def install(site: Site, sizes: list[int], ping_url: str) -> None:
    lines = [
        "tasks:",
        f"  - name: {TRUE_TASK}",
        '    schedule: "0 0 * * *"',
        '    command: "true"',  # quoted: a bare `true` is a YAML boolean
        f"  - name: {PING_TASK}",  # pings the benchmark's own server (see pings())
        '    schedule: "0 0 * * *"',
        '    command: "true"',
        f"    ping_url: {ping_url}",
    ]
    for size in sizes:
        lines += [
            f"  - name: {out_task(size)}",
            '    schedule: "0 0 * * *"',
            f'    command: "head -c {size} /dev/zero"',
        ]
    site.manifest.write_text("\n".join(lines) + "\n")
    result = subprocess.run(site.cli("install"), env=clean_env(), capture_output=True, check=False)
    checked(result, "agency-cron install")


@dataclass
class Postgres:
    """The shared history's server, its database and the installation that sends there."""

    server: Server
    dbname: str
    site: Site

    @property
    def url(self) -> str:
        return self.server.url(self.dbname)


def install_pg(site: Site, url: str) -> None:
    """The task `true` alone, in an installation whose history is shared on PostgreSQL."""
    with site.config.open("a") as config:
        config.write(f"HISTORY_URL={url}\nHOST_NAME={PG_HOST}\n")
    site.manifest.write_text(
        f'tasks:\n  - name: {TRUE_TASK}\n    schedule: "0 0 * * *"\n    command: "true"\n'
    )
    result = subprocess.run(site.cli("install"), env=clean_env(), capture_output=True, check=False)
    checked(result, "agency-cron install (PostgreSQL)")


# ---------------------------------------------------------------- 1. start-up


def wrapper_uses_site(site: Site) -> bool:
    """False when the wrapper execs python with -S (no site import, paths spelled out)."""
    exec_lines = [
        line
        for line in site.wrapper(TRUE_TASK).read_text().splitlines()
        if line.startswith("exec ")
    ]
    return not (exec_lines and " -S " in exec_lines[-1])


def import_paths() -> list[str]:
    """Where agency_cron and the venv's packages are: sys.path for the `-S` references."""
    import sysconfig

    import agency_cron

    roots = [str(Path(agency_cron.__file__).resolve().parent.parent)]
    roots += [
        p for p in {sysconfig.get_paths()[k] for k in ("purelib", "platlib")} if p not in roots
    ]
    return roots


RUN_IMPORTS = "import agency_cron.runner, agency_cron.history"
SEND_IMPORTS = f"{RUN_IMPORTS}, agency_cron.remote, psycopg, threading"


def startup_commands(site: Site, pg: Postgres | None) -> dict[str, list[str] | None]:
    python = sys.executable
    chronic = shutil.which("chronic")
    no_site = f"import sys; sys.path[:0] = {import_paths()!r}; "
    commands = {
        "true": ["/bin/true"],
        "chronic true": [chronic, "true"] if chronic else None,
        "python -S -c pass": [python, "-S", "-c", "pass"],
        "python -c pass": [python, "-c", "pass"],
        "python -S: import runner, history": [python, "-S", "-P", "-c", no_site + RUN_IMPORTS],
        "python: import runner, history": [python, "-c", RUN_IMPORTS],
        "wrapper (true)": [str(site.wrapper(TRUE_TASK))],
    }
    if pg is not None:
        commands["python -S: + remote, psycopg"] = [
            python,
            "-S",
            "-P",
            "-c",
            no_site + SEND_IMPORTS,
        ]
        commands[PG_WRAPPER] = [str(pg.site.wrapper(TRUE_TASK))]
        if chronic:  # the crontab idiom: run, then write a row with psql (one login, one insert)
            insert = " ".join(pg.server.psql_cmd(pg.dbname, "-c", f"'{PSQL_INSERT}'"))
            commands[PSQL_REF] = ["/bin/sh", "-c", f"{chronic} true; {insert}"]
    return commands


def startup(site: Site, runs: int, pg: Postgres | None = None) -> dict[str, list[float]]:
    commands = startup_commands(site, pg)
    if commands["chronic true"] is None:
        print("chronic not found (apt-get install moreutils): skipped")
        del commands["chronic true"]
    env = cron_env()
    names = list(commands)
    times: dict[str, list[float]] = {name: [] for name in names}
    for _ in range(3):  # warm the page cache
        for name in names:
            spawn_wait(commands[name], env)
    for i in range(runs):
        shift = i % len(names)
        for name in names[shift:] + names[:shift]:
            wall, code, _ = spawn_wait(commands[name], env)
            if code != 0:
                sys.exit(f"bench: {name} exited {code}")
            times[name].append(wall)
    return times


def report_startup(times: dict[str, list[float]], runs: int, uses_site: bool) -> None:
    print(f"start-up: {runs} interleaved runs each, wall ms (stdout not a tty, cron-like env)")
    print(f"  {'command':<36} {'median':>8} {'p90':>8} {'min':>8}")
    for name, values in times.items():
        print(
            f"  {name:<36} {median(values) * 1000:>8.2f} {percentile(values, 90) * 1000:>8.2f}"
            f" {min(values) * 1000:>8.2f}"
        )
    wrapper = times["wrapper (true)"]
    w = median(wrapper)
    print(f"  wrapper / true:   median {w / median(times['true']):.1f}x")
    if "chronic true" in times:
        c = median(times["chronic true"])
        p = percentile(wrapper, 90) / percentile(times["chronic true"], 90)
        verdict = "PASS" if w / c <= 1.0 else "FAIL"
        print(f"  wrapper / chronic: median {w / c:.2f}x, p90 {p:.2f}x (target <= 1.0: {verdict})")
    bare = median(times["python -S -c pass"])
    site_cost = median(times["python -c pass"]) - bare
    imports = median(times["python -S: import runner, history"]) - bare
    paid_site = site_cost if uses_site else 0.0
    rest = w - bare - paid_site - imports
    print(
        f"  the wrapper execs python {'with' if uses_site else 'without'} site (-S)."
        " Where its median goes (differences of medians): interpreter without site"
        f" {bare * 1000:.1f} ms, site {paid_site * 1000:.1f} ms (site would cost"
        f" {site_cost * 1000:.1f} ms), runner + history imports {imports * 1000:.1f} ms, the"
        f" rest (sh, spec, lock, spawn, wait, SQLite, exit) {rest * 1000:.1f} ms"
    )
    if PG_WRAPPER in times:
        report_pg_startup(times)


def report_pg_startup(times: dict[str, list[float]]) -> None:
    """The run that also sends its row to PostgreSQL, against chronic and the SQLite run."""
    pg, local = times[PG_WRAPPER], times["wrapper (true)"]
    if "chronic true" in times:
        chronic = median(times["chronic true"])
        print(
            f"  history on SQLite: wrapper / chronic {median(local) / chronic:.2f}x;"
            f" shared on PostgreSQL: wrapper / chronic {median(pg) / chronic:.2f}x"
            f" (p90 {percentile(pg, 90) / percentile(times['chronic true'], 90):.2f}x)"
        )
    added = median(pg) - median(local)
    imports = median(times["python -S: + remote, psycopg"]) - median(
        times["python -S: import runner, history"]
    )
    print(
        f"  the send to PostgreSQL adds {added * 1000:.1f} ms a run (median; p90"
        f" {(percentile(pg, 90) - percentile(local, 90)) * 1000:.1f} ms, PostgreSQL / SQLite"
        f" {median(pg) / median(local):.2f}x), of which importing remote, psycopg and threading"
        f" {imports * 1000:.1f} ms; the rest is the connection, the login and the queries"
        " (section 4)"
    )
    if PSQL_REF in times:
        print(
            f"  PostgreSQL wrapper / ({PSQL_REF}): {median(pg) / median(times[PSQL_REF]):.2f}x"
            " (the same record written by hand after the run: one psql login and one INSERT)"
        )


def check_sent(pg: Server, site: Site, dbname: str) -> None:
    """Every run of the PostgreSQL installation is in the shared history, none in the spool."""
    sent = int(pg.psql(f"SELECT count(*) FROM runs WHERE host = '{PG_HOST}'", dbname))
    with sqlite3.connect(site.state_dir / "history.db") as conn:
        local = conn.execute("SELECT count(*) FROM runs").fetchone()[0]
    log = (site.log_dir / f"{TRUE_TASK}.log").read_text(errors="replace")
    unsent = log.count("not sent to the shared history")
    print(
        f"  PostgreSQL holds {sent} runs of {PG_HOST}, its local history {local};"
        f" {unsent} runs logged `not sent`"
    )
    if sent != local or unsent:
        sys.exit("bench: runs did not all reach PostgreSQL (see the task log)")


# ---------------------------------------------------------------- 2. throughput


def throughput(site: Site, folder: Path, sizes: list[int], repeat: int) -> None:
    print(
        "\nthroughput: task `head -c BYTES /dev/zero` vs `head -c BYTES /dev/zero | cat > FILE`"
        f" (median of {repeat}, interleaved; MB = 10^6 bytes)"
    )
    print("  'task log only' = AGENCY_CRON_NO_CRON_LOG=1, runner stdout on /dev/null;")
    print("  'as cron' = the wrapper also appends everything to LOG_DIR/cron/NAME.sh.log")
    print("  CPU s = user + system seconds of the whole process tree (os.wait4), head included;")
    print(f"  peak RSS = max RSS of the process tree, taken by {GNU_TIME} -f %M")
    header = (
        f"  {'size':>5} {'cat MB/s':>9} {'task-log-only MB/s':>19} {'ratio':>6}"
        f" {'as-cron MB/s':>13} {'ratio':>6} {'runner peak RSS MB':>19} {'cat RSS MB':>11}"
        f" {'CPU s cat/task-log-only':>24}"
    )
    print(header)
    peaks = []
    for size in sizes:
        name = out_task(size)
        ref_file = folder / "reference.out"
        task_log = site.log_dir / f"{name}.log"
        cron_log = site.log_dir / "cron" / f"{name}.sh.log"
        ref, quiet, cron, rss, ref_rss, ref_cpu, quiet_cpu = [], [], [], [], [], [], []
        for _ in range(repeat):
            wall, code, usage, peak = spawn_measured(
                ["/bin/sh", "-c", f"head -c {size} /dev/zero | cat > {ref_file}"],
                cron_env(),
                folder,
            )
            _check_size(code, ref_file, size, "reference")
            ref.append(wall)
            ref_rss.append(peak)
            ref_cpu.append(usage.ru_utime + usage.ru_stime)
            ref_file.unlink()
            for mode, bucket in (("quiet", quiet), ("cron", cron)):
                env = cron_env(AGENCY_CRON_NO_CRON_LOG="1") if mode == "quiet" else cron_env()
                wall, code, usage, peak = spawn_measured([str(site.wrapper(name))], env, folder)
                _check_size(code, task_log, size, f"wrapper ({mode})", allow_more=True)
                bucket.append(wall)
                rss.append(peak)
                if mode == "quiet":
                    quiet_cpu.append(usage.ru_utime + usage.ru_stime)
                task_log.unlink(missing_ok=True)
                cron_log.unlink(missing_ok=True)
        mb = size / 1e6
        r, q, c = mb / median(ref), mb / median(quiet), mb / median(cron)
        peaks.append(max(rss))
        print(
            f"  {human(size):>5} {r:>9.0f} {q:>19.0f} {q / r:>5.2f}x {c:>13.0f} {c / r:>5.2f}x"
            f" {max(rss):>19.1f} {max(ref_rss):>11.1f}"
            f" {median(ref_cpu):>12.2f} / {median(quiet_cpu):.2f}"
        )
    spread = max(peaks) - min(peaks)
    verdict = "PASS" if max(peaks) < RSS_LIMIT_MB else "FAIL"
    print(
        f"  runner peak RSS {min(peaks):.1f}..{max(peaks):.1f} MB across sizes (spread"
        f" {spread:.1f} MB; target flat and < {RSS_LIMIT_MB:.0f} MB: {verdict})"
    )


def _check_size(code: int, path: Path, size: int, what: str, allow_more: bool = False) -> None:
    got = path.stat().st_size if path.exists() else -1
    if code != 0 or got < size or (got != size and not allow_more):
        sys.exit(f"bench: {what} exit {code}, wrote {got} bytes to {path}, expected {size}")


# ---------------------------------------------------------------- 3. profile


IMPORT_LINE = re.compile(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)")


def import_profile(site: Site, pg_site: Site | None = None, rounds: int = 7) -> None:
    """Import costs of the run of `true`: the runner module started with site, as
    `python -X importtime -m agency_cron.runner SPEC`, and the wrapper itself (whatever it
    execs) with PYTHONPROFILEIMPORTTIME=1; and that wrapper sending to PostgreSQL."""
    spec = str(site.spec(TRUE_TASK))
    variants: tuple[tuple[str, list[str], dict[str, str]], ...] = (
        (
            "python -X importtime -m agency_cron.runner SPEC",
            [sys.executable, "-X", "importtime", "-m", "agency_cron.runner", spec],
            cron_env(),
        ),
        (
            "the wrapper, PYTHONPROFILEIMPORTTIME=1",
            [str(site.wrapper(TRUE_TASK))],
            cron_env(PYTHONPROFILEIMPORTTIME="1", AGENCY_CRON_NO_CRON_LOG="1"),
        ),
    )
    if pg_site is not None:
        variants += (
            (
                "the wrapper sending to PostgreSQL, PYTHONPROFILEIMPORTTIME=1",
                [str(pg_site.wrapper(TRUE_TASK))],
                cron_env(PYTHONPROFILEIMPORTTIME="1", AGENCY_CRON_NO_CRON_LOG="1"),
            ),
        )
    for label, argv, env in variants:
        rows = _import_rows(argv, env, rounds)
        top = sorted((r for r in rows if r[3] <= 1), key=lambda r: r[2], reverse=True)
        total = sum(r[2] for r in rows if r[3] == 0)
        print(
            f"\nimport profile: {label} (median of {rounds}); all top-level imports"
            f" {total / 1000:.1f} ms"
        )
        print(f"  {'module (depth <= 1)':<44} {'cumulative ms':>13} {'self ms':>8}")
        for name, own, cumulative, depth in top[:14]:
            print(f"  {'  ' * depth + name:<44} {cumulative / 1000:>13.2f} {own / 1000:>8.2f}")


def _import_rows(argv: list[str], env: dict[str, str], rounds: int):
    """(module, median self us, median cumulative us, depth) from importtime's stderr."""
    samples: dict[str, list[tuple[int, int, int]]] = {}
    for _ in range(rounds):
        result = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
        for match in IMPORT_LINE.finditer(result.stderr):
            own, total, indent, name = match.groups()
            samples.setdefault(name, []).append((int(own), int(total), len(indent) // 2))
    return [
        (name, median([s[0] for s in v]), median([s[1] for s in v]), v[0][2])
        for name, v in samples.items()
    ]


def attempt_durations(site: Site) -> None:
    """What the runner itself measured for the `true` task (spawn to reap)."""
    db = site.state_dir / "history.db"
    with sqlite3.connect(db) as conn:
        rows = [
            r[0] for r in conn.execute("SELECT duration_s FROM runs WHERE task = ?", (TRUE_TASK,))
        ]
    if not rows:
        return
    slow = sum(1 for d in rows if d >= 0.010)
    print(
        f"\nin-runner attempt duration of `true` (history.db, {len(rows)} runs): median"
        f" {median(rows) * 1000:.2f} ms, p90 {percentile(rows, 90) * 1000:.2f} ms, max"
        f" {max(rows) * 1000:.2f} ms; {slow} runs >= 10 ms"
    )


def strace_profile(site: Site, folder: Path) -> None:
    strace = shutil.which("strace")
    if not strace:
        print("\nstrace: not installed (apt-get install strace): skipped")
        return
    out = folder / "strace.txt"
    result = subprocess.run(
        [strace, "-f", "-c", "-o", str(out), str(site.wrapper(TRUE_TASK))],
        env=cron_env(),
        capture_output=True,
        check=False,
    )
    if result.returncode != 0 or not out.exists():
        print(f"\nstrace: failed (exit {result.returncode}): skipped")
        return
    lines = out.read_text().splitlines()
    body = [line for line in lines[2:] if line.strip() and not line.startswith("-")]
    total = body[-1] if body and "total" in body[-1] else ""
    rows = sorted(
        (line for line in body if "total" not in line),
        key=lambda line: int(line.split()[3]) if line.split()[3].isdigit() else 0,
        reverse=True,
    )
    print("\nstrace -c -f of one wrapper run of `true` (by calls; the whole process tree)")
    print("  " + lines[0] if lines else "")
    for line in rows[:12]:
        print("  " + line)
    print("  " + total)
    trace = folder / "strace-files.txt"
    subprocess.run(
        [strace, "-f", "-e", "trace=openat,execve", "-o", str(trace), str(site.wrapper(TRUE_TASK))],
        env=cron_env(),
        capture_output=True,
        check=False,
    )
    text = trace.read_text() if trace.exists() else ""
    execs = re.findall(r'execve\("([^"]+)"', text)
    opened = re.findall(r'openat\([^,]+, "([^"]+)"', text)
    py = [p for p in opened if p.endswith((".py", ".pyc", ".so", ".pth"))]
    print(
        f"  execve chain: {' -> '.join(execs)}; openat calls {len(opened)}, of which"
        f" {len(py)} .py/.pyc/.so/.pth"
    )


# ---------------------------------------------------------------- 4. what each addition costs


def addition_costs(folder: Path, rounds: int = 300) -> None:
    """In-process costs of what the fault-tolerance work added to every run (medians, µs):
    the `running` row (an insert at the start, an update at the end, against the one insert
    there was), the look-up of lost runs, the rotation check, and fork+exec with default
    signals against posix_spawn."""
    from agency_cron import history, runner

    db = folder / "costs.db"
    conn = history.connect(str(db))
    row = {"task": "t", "run_id": "r", "attempt": 1, "attempts": 1, "status": "running"}
    row |= {"started_at": "2026-01-01T00:00:00.000+00:00", "host": os.uname().nodename}
    row |= {"pid": os.getpid(), "runner": history.process_identity(os.getpid())}
    done = {**row, "status": "success", "finished_at": row["started_at"], "exit_code": 0}

    def one_insert():
        history.record(conn, done)

    def insert_then_update():
        history.finish_run(conn, history.start_run(conn, row), done)

    def lost_lookup():
        history.sweep_lost(conn, "t")
        history.unnotified_lost(conn, "t")

    log = runner.LogFile(str(folder / "costs.log"))

    def rotation_check():
        log._follow(time.monotonic())

    def spawn():
        os.waitpid(os.posix_spawn("/bin/true", ["/bin/true"], os.environ), 0)

    def fork_exec():
        pid = os.fork()
        if pid == 0:
            runner._exec_task(["/bin/true"], dict(os.environ), 1, None)
        os.waitpid(pid, 0)

    cases = {
        "history: one insert at the end (before)": one_insert,
        "history: `running` insert + update at the end (now)": insert_then_update,
        "history: lost-run look-up for the task (now)": lost_lookup,
        "log: one rotation check (stat vs fstat; at most every 0.1 s)": rotation_check,
        "spawn: posix_spawn of /bin/true (before)": spawn,
        "spawn: fork + default signals + exec of /bin/true (now)": fork_exec,
    }
    times: dict[str, list[float]] = {name: [] for name in cases}
    for i in range(rounds):
        names = list(cases)
        shift = i % len(names)
        for name in names[shift:] + names[:shift]:
            start = time.perf_counter()
            cases[name]()
            times[name].append(time.perf_counter() - start)
    log.close()
    conn.close()
    print(f"\nwhat each addition costs, in-process ({rounds} interleaved rounds, median µs)")
    for name, values in times.items():
        print(f"  {name:<62} {median(values) * 1e6:>9.1f}")


def send_costs(url: str, folder: Path, rounds: int = 100) -> None:
    """The parts of the runner's send (Run._send_history), in-process, medians over
    `rounds`: each round records one finished run locally, then, in bounded()'s thread as
    the runner does, connects, opens the local database, pushes and closes both."""
    from agency_cron import history, remote

    path = str(folder / "send-costs.db")
    writer = history.connect(path)
    row = {"task": "t", "attempt": 1, "attempts": 1, "status": "success", "exit_code": 0}
    row |= {"started_at": "2026-01-01T00:00:00.000+00:00", "host": PG_HOST}
    names = ("remote.connect (login, schema check)", "history.connect (local)", "remote.push")
    names += ("close both", "whole send, bounded() thread included")
    parts: dict[str, list[float]] = {name: [] for name in names}
    for i in range(rounds + 3):
        history.record(writer, {**row, "run_id": f"r{i}", "finished_at": row["started_at"]})
        marks = [time.perf_counter()]

        def send(marks: list[float] = marks) -> int:
            conn = remote.connect(url)
            marks.append(time.perf_counter())
            local = history.connect(path)
            marks.append(time.perf_counter())
            sent = remote.push(conn, local, PG_HOST)
            marks.append(time.perf_counter())
            local.close()
            conn.close()
            marks.append(time.perf_counter())
            return sent

        if remote.bounded(send, 60, "bench send") != 1:
            sys.exit("bench: a send did not push exactly the new row")
        end = time.perf_counter()
        if i >= 3:  # the first rounds warm psycopg's caches and the server's
            steps = [b - a for a, b in zip(marks, marks[1:], strict=False)]
            for name, value in zip(names, [*steps, end - marks[0]], strict=True):
                parts[name].append(value)
    writer.close()
    print(f"\nthe send to PostgreSQL, in-process ({rounds} rounds, median ms; one new row each)")
    for name, values in parts.items():
        print(f"  {name:<62} {median(values) * 1000:>9.2f}")


# ---------------------------------------------------------------- 6. heartbeat pings

PING_TASK = "bench-ping"
PING_SERVER = """
import http.server
count = 0
class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def answer(self):
        global count
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path != "/count":
            count += 1
        body = str(count).encode() if self.path == "/count" else b"OK"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    do_GET = do_POST = do_HEAD = answer
    def log_message(self, *args):
        pass
server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
print(server.server_address[1], flush=True)
server.serve_forever()
"""


def ping_server() -> tuple[subprocess.Popen, str]:
    """A local HTTP server in its own process (not sharing our GIL); its base URL."""
    process = subprocess.Popen(
        [sys.executable, "-c", PING_SERVER], stdout=subprocess.PIPE, text=True
    )
    port = process.stdout.readline().strip() if process.stdout else ""
    return process, f"http://127.0.0.1:{port}"


def pings_received(base: str) -> int:
    import urllib.request

    with urllib.request.urlopen(f"{base}/count", timeout=10) as answer:
        return int(answer.read())


def ping_commands(site: Site, url: str, curl: str, chronic: str) -> dict[str, list[str]]:
    quiet = f"{curl} -fsS --retry 3 -o /dev/null"
    return {
        "wrapper (true), no ping": [str(site.wrapper(TRUE_TASK))],
        "wrapper (true), ping start + end": [str(site.wrapper(PING_TASK))],
        "chronic true; curl URL": ["/bin/sh", "-c", f"{chronic} true; {quiet} {url}"],
        "curl URL/start; chronic true; curl URL": [
            "/bin/sh",
            "-c",
            f"{quiet} {url}/start; {chronic} true; {quiet} {url}",
        ],
    }


def pings(site: Site, runs: int, base: str) -> None:
    curl, chronic = shutil.which("curl"), shutil.which("chronic")
    if not curl or not chronic:
        print("\nheartbeat pings: curl or chronic not found (apt-get install curl moreutils)")
        return
    before = pings_received(base)
    times = _interleaved(ping_commands(site, f"{base}/ping/{PING_TASK}", curl, chronic), runs)
    received = pings_received(base) - before
    expected = (runs + 3) * 5  # per round: the runner's 2, then curl's 1 and 2
    print(f"\nheartbeat pings: {runs} interleaved runs each, wall ms (a server on 127.0.0.1)")
    for name, values in times.items():
        print(
            f"  {name:<40} median {median(values) * 1000:8.2f}"
            f"  p90 {percentile(values, 90) * 1000:8.2f}"
        )
    pinged = median(times["wrapper (true), ping start + end"])
    ratios = {
        "no ping": median(times["wrapper (true), no ping"]),
        "chronic + curl": median(times["chronic true; curl URL"]),
        "curl + chronic + curl": median(times["curl URL/start; chronic true; curl URL"]),
    }
    print("  " + "; ".join(f"ping / ({name}): {pinged / ref:.2f}" for name, ref in ratios.items()))
    print(f"  pings received: {received} of {expected} sent")


def _interleaved(commands: dict[str, list[str]], runs: int) -> dict[str, list[float]]:
    """`runs` rounds of every command, the order rotating each round, after 3 warm-up rounds."""
    env, names = cron_env(), list(commands)
    times: dict[str, list[float]] = {name: [] for name in names}
    for i in range(runs + 3):
        shift = i % len(names)
        for name in names[shift:] + names[:shift]:
            wall, code, _ = spawn_wait(commands[name], env)
            if code != 0:
                sys.exit(f"bench: {name} exited {code}")
            if i >= 3:
                times[name].append(wall)
    return times


# ---------------------------------------------------------------- 5. against an older runner


def against(site: Site, folder: Path, rev: str, runs: int) -> None:
    """The runner of `rev` (git archive of agency_cron/) and this one, each started as the
    wrapper starts it (`python -S -P -c BOOTSTRAP SPEC`, own LOG_DIR and STATE_DIR), and
    `chronic true`, interleaved: what the changes since `rev` cost a whole run of `true`."""
    import marshal

    repo = Path(__file__).resolve().parent.parent
    spec = marshal.loads(site.spec(TRUE_TASK).with_suffix(".marshal").read_bytes())
    roots = {"this runner": Path(import_paths()[0]), f"runner at {rev}": folder / "old"}
    (folder / "old").mkdir()
    archive = subprocess.run(
        ["git", "-C", str(repo), "archive", rev, "agency_cron"], capture_output=True, check=True
    )
    subprocess.run(["tar", "-x", "-C", str(folder / "old")], input=archive.stdout, check=True)
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(folder / "old")], check=True)
    commands: dict[str, list[str]] = {
        "chronic true": [shutil.which("chronic") or "chronic", "true"]
    }
    for name, root in roots.items():
        state = folder / name.replace(" ", "-")
        own = dict(spec, log=str(state / "log" / "t.log"), state_dir=str(state / "state"))
        state.mkdir()
        (state / "spec.marshal").write_bytes(marshal.dumps(own))
        boot = f"import sys; sys.path[:0] = [{str(root)!r}]; from agency_cron.runner import main; sys.exit(main())"
        commands[name] = [sys.executable, "-S", "-P", "-c", boot, str(state / "spec.json")]
    env, names = cron_env(), list(commands)
    times: dict[str, list[float]] = {name: [] for name in names}
    for i in range(runs + 3):
        shift = i % len(names)
        for name in names[shift:] + names[:shift]:
            wall, code, _ = spawn_wait(commands[name], env)
            if code != 0:
                sys.exit(f"bench: {name} exited {code}")
            if i >= 3:  # the first rounds warm the page cache
                times[name].append(wall)
    print(f"\nthis runner against the one at {rev} ({runs} interleaved runs, wall ms)")
    for name, values in times.items():
        print(
            f"  {name:<36} median {median(values) * 1000:8.2f}  p10 {percentile(values, 10) * 1000:8.2f}"
        )
    new, old = median(times["this runner"]), median(times[f"runner at {rev}"])
    print(
        f"  this / {rev}: {new / old:.3f}; this / chronic: {new / median(times['chronic true']):.3f}"
    )


# ---------------------------------------------------------------- main


def run_sections(
    args, site: Site, folder: Path, sizes: list[int], base: str, pg: Postgres | None
) -> None:
    if args.pings:
        pings(site, args.runs, base)
        return
    report_startup(startup(site, args.runs, pg), args.runs, wrapper_uses_site(site))
    if pg is not None:
        check_sent(pg.server, pg.site, pg.dbname)
    if not args.no_pings:
        pings(site, args.runs, base)
    if not args.no_profile:
        attempt_durations(site)
    if not args.no_throughput:
        throughput(site, folder, sizes, args.repeat)
    if args.against:
        against(site, folder, args.against, args.runs)
    if not args.no_profile:
        addition_costs(folder)
        if pg is not None:
            send_costs(pg.url, folder)
        import_profile(site, pg.site if pg else None)
        strace_profile(site, folder)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=200, help="start-up runs per command")
    parser.add_argument("--sizes", default="10M,100M,1G", help="task output sizes")
    parser.add_argument("--repeat", type=int, default=3, help="throughput runs per size")
    parser.add_argument("--no-throughput", action="store_true")
    parser.add_argument("--no-profile", action="store_true")
    parser.add_argument("--no-pings", action="store_true", help="skip the heartbeat pings")
    parser.add_argument("--pings", action="store_true", help="only the heartbeat pings")
    parser.add_argument("--against", metavar="REV", help="also compare with the runner at REV")
    parser.add_argument(
        "--no-postgres", action="store_true", help="skip the run sending to PostgreSQL"
    )
    args = parser.parse_args()
    sizes = [parse_size(s) for s in args.sizes.split(",") if s.strip()]

    load = os.getloadavg()
    print(
        f"runner benchmark: {os.cpu_count()} cpus, python {sys.version.split()[0]}"
        f" ({sys.executable}), load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}\n"
    )
    server, base = ping_server()  # the heartbeat pings' target, for the whole run
    try:
        with scratch("agency-cron-bench-runner-") as folder, contextlib.ExitStack() as stack:
            site = make_site(folder, "site")
            install(site, [] if args.pings else sizes, f"{base}/ping/{PING_TASK}")
            pg = None
            if args.pings or args.no_postgres:
                pass
            elif bindir() is None:
                print("PostgreSQL server binaries not found (apt-get install postgresql): skipped")
            else:
                pg_server = stack.enter_context(postgres_server())
                pg_server.create_database("bench")
                pg_server.psql("CREATE TABLE bench_ref (at timestamptz)", "bench")
                pg = Postgres(pg_server, "bench", make_site(folder, "site-pg"))
                install_pg(pg.site, pg.url)
            run_sections(args, site, folder, sizes, base, pg)
    finally:
        server.terminate()
        server.wait()
    load = os.getloadavg()
    print(f"\nload average at the end {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
