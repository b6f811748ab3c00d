"""CLI read commands benchmark: each `--json` read command as a ratio to `python -c pass`.

    .venv/bin/python bench/cli.py [--rows 100000] [--tasks 100] [--repeat 15]
        [--no-imports] [--keep] [--no-quick]

Run by hand, never in the tests, with the interpreter of a non-editable install (the
`agency-cron` console script beside it is what is measured). Everything in one run:

1. A throwaway installation (common.make_site, a `file:` crontab inside it): a manifest of
   --tasks tasks task-000.., `*/5 * * * *`, command "true", and a history.db built here with
   sqlite3 directly: the schema is agency_cron.history's own MIGRATIONS, applied in order,
   with its SCHEMA_VERSION in user_version; --rows rows spread evenly over the last 30 days,
   task after task, about 91% success and some failed, timeout, retry-scheduled and
   skipped, started_at/finished_at in the runner's format. Nothing is installed in the
   crontab: the read commands read the manifest and the history only.
2. Interleaved rounds (the order rotates every round), after one warm-up round that also
   checks every command exits 0 and prints JSON: `agency-cron --config C --manifest M`
   followed by `list --json`, `status --json`, `history task-042 --json`,
   `next task-042 --json`, `log-summary --json`, and `python -c pass` with the same
   interpreter, the floor of any Python command. stdout to /dev/null, stdin /dev/null.
   The figures are the medians of --repeat rounds, of the wall time and of the CPU time
   (user + system, from wait4; steadier on a shared machine); each ratio is a median over
   the floor's median. Target (issue 11): at most 5x each, wall time.
3. The library calls behind the commands (reports.task_list, task_status, task_history,
   upcoming, log_summary), timed in a fresh interpreter: the work without start-up and
   the CLI's imports.
4. `python -X importtime` of `list --json` and `status --json`: the total, the heaviest
   first-level imports (cumulative) and the own import time by top-level package.

The read commands answer from the quick path (agency_cron/quick.py) once the warm-up round
has cached the manifest, as they do on any installation whose manifest has not changed
since the last full load; `--no-quick` measures the full path (AGENCY_CRON_NO_QUICK=1).

The load average before and after is printed: on a shared machine the figures are noisy,
the ratios less so (the floor is measured in the same rounds).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import Site, agency_cron_cmd, checked, clean_env, make_site, median

DAYS = 30
TARGET = 5.0
PROBE = "task-042"
READS = {
    "list --json": ("list", "--json"),
    "status --json": ("status", "--json"),
    f"history {PROBE} --json": ("history", PROBE, "--json"),
    f"next {PROBE} --json": ("next", PROBE, "--json"),
    "log-summary --json": ("log-summary", "--json"),
}
FLOOR = "python -c pass"
OUTCOMES = (  # (share, status, exit code, mean seconds, output tail)
    (0.91, "success", 0, 2.0, "fetched 120 records\nwrote 120 records\ndone"),
    (0.03, "failed", 1, 5.0, "error: connection refused (db:5432)\ngiving up"),
    (0.01, "timeout", 124, 1800.0, "waiting for lock on /var/lib/agency_stack/backup"),
    (0.03, "retry-scheduled", 1, 5.0, "error: 503 Service Unavailable"),
    (0.02, "skipped", 0, 0.0, ""),
)


def iso(moment: float) -> str:
    """The runner's timestamp format (runner.now_iso): UTC, milliseconds, +00:00."""
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(moment))
    return f"{stamp}.{int(moment % 1 * 1000):03d}+00:00"


def history_rows(tasks: list[str], count: int, end: float):
    rng = random.Random(11)
    step, start = DAYS * 86400 / count, end - DAYS * 86400
    shares = [share for share, *_ in OUTCOMES]
    for i in range(count):
        began = start + (i + rng.random()) * step
        _, status, code, mean, tail = rng.choices(OUTCOMES, shares)[0]
        duration = rng.expovariate(1 / mean) if mean else 0.0
        note = "previous run still running (pid 4242)" if status == "skipped" else None
        attempts = 3 if status == "retry-scheduled" else 1
        yield (tasks[i % len(tasks)], f"{rng.getrandbits(48):012x}", 1, attempts, iso(began),
               iso(began + duration), round(duration, 6), code, status, "bench-host",
               1000 + rng.getrandbits(20), tail, None, note)  # fmt: skip


def build_history(db: Path, tasks: list[str], count: int) -> None:
    """history.db with agency_cron.history's schema, filled in one transaction."""
    from agency_cron import history

    db.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("BEGIN")
    for version in sorted(history.MIGRATIONS):
        for statement in history.MIGRATIONS[version]:
            conn.execute(statement)
    conn.execute(f"PRAGMA user_version = {history.SCHEMA_VERSION}")
    columns = ("task", "run_id", "attempt", "attempts", "started_at", "finished_at",
               "duration_s", "exit_code", "status", "host", "pid", "output_tail", "alert",
               "note")  # fmt: skip
    conn.executemany(
        f"INSERT INTO runs ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})",
        history_rows(tasks, count, time.time()),
    )
    conn.execute("COMMIT")
    conn.close()


def make_installation(folder: Path, tasks: int, rows: int) -> Site:
    site = make_site(folder, "site")
    names = [f"task-{i:03d}" for i in range(tasks)]
    lines = ["tasks:"]
    for name in names:
        lines += [f"  - name: {name}", '    schedule: "*/5 * * * *"', '    command: "true"']
    site.manifest.write_text("\n".join(lines) + "\n")
    build_history(site.state_dir / "history.db", names, rows)
    return site


def spawn(argv: list[str], env: dict[str, str], out: str = "/dev/null") -> tuple[float, float]:
    """(wall, CPU) seconds of one run of argv (stdin from /dev/null, stdout to `out`)."""
    actions = [
        (os.POSIX_SPAWN_OPEN, 0, "/dev/null", os.O_RDONLY, 0),
        (os.POSIX_SPAWN_OPEN, 1, out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600),
        (os.POSIX_SPAWN_OPEN, 2, out + ".err", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600),
    ]
    start = time.perf_counter()
    pid = os.posix_spawn(argv[0], argv, env, file_actions=actions)
    _, status, usage = os.wait4(pid, 0)
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        error = Path(out + ".err").read_text(errors="replace")[-2000:]
        sys.exit(f"bench: {' '.join(argv)} exited {os.waitstatus_to_exitcode(status)}:\n{error}")
    return wall, usage.ru_utime + usage.ru_stime


def commands(site: Site) -> dict[str, list[str]]:
    found = {name: site.cli(*args) for name, args in READS.items()}
    found[FLOOR] = [sys.executable, "-c", "pass"]
    return found


def warm_up(argvs: dict[str, list[str]], env: dict[str, str], folder: Path) -> None:
    """One run of each (page cache, .pyc files), checking that it answers with JSON."""
    out = str(folder / "stdout")
    for name, argv in argvs.items():
        spawn(argv, env, out)
        if name != FLOOR:
            try:
                json.loads(Path(out).read_text())
            except ValueError:
                sys.exit(f"bench: {name} did not print JSON")


def measure(argvs: dict[str, list[str]], env: dict[str, str], repeat: int) -> dict:
    """{name: [(wall, cpu), ...]} over `repeat` rounds, the order rotating every round."""
    names = list(argvs)
    runs: dict[str, list[tuple[float, float]]] = {name: [] for name in names}
    for i in range(repeat):
        shift = i % len(names)
        for name in names[shift:] + names[:shift]:
            runs[name].append(spawn(argvs[name], env))
    return runs


# The library calls behind the commands, timed in one fresh interpreter (first call, as the
# CLI pays it, lazy imports included); argv: config, manifest, probe task.
LIBRARY = r"""
import json, sys, time
from agency_cron import reports
from agency_cron.config import load_settings
from agency_cron.manifest import load_manifest
t = time.perf_counter()
settings = load_settings(sys.argv[1])
manifest = load_manifest(sys.argv[2], settings)
spent = {"load config + manifest": time.perf_counter() - t}
calls = {
    "task_list": lambda: reports.task_list(settings, manifest),
    "task_status": lambda: reports.task_status(settings, manifest, None),
    "task_history": lambda: reports.task_history(settings, sys.argv[3], 20),
    "upcoming": lambda: reports.upcoming(manifest.get(sys.argv[3]), 5),
    "log_summary": lambda: reports.log_summary(settings, manifest, 86400, None),
}
for name, call in calls.items():
    t = time.perf_counter()
    call()
    spent[name] = time.perf_counter() - t
print(json.dumps(spent))
"""


def library_profile(site: Site, env: dict[str, str], folder: Path) -> None:
    """How long the work itself takes, without interpreter start-up and the CLI's imports."""
    out = str(folder / "library.json")
    argv = [sys.executable, "-c", LIBRARY, str(site.config), str(site.manifest), PROBE]
    spawn(argv, env, out)  # warm-up
    runs = []
    for _ in range(5):
        spawn(argv, env, out)
        runs.append(json.loads(Path(out).read_text()))
    print("\nlibrary calls in a fresh interpreter (median of 5, ms):")
    for name in runs[0]:
        print(f"    {median([run[name] for run in runs]) * 1000:>7.1f}  {name}")


def import_profile(argv: list[str], env: dict[str, str], label: str) -> None:
    """`python -X importtime` of one command: total, heaviest first-level imports, packages."""
    # The console script is a Python file: run it under its own interpreter (its #! line:
    # the read commands' cache is keyed by the interpreter, so another path would miss it).
    traced = argv[1:] if argv[0] == sys.executable else argv
    interpreter = sys.executable
    if argv[0] != sys.executable:
        with open(argv[0], "rb") as handle:
            first = handle.readline()
        if first.startswith(b"#!") and b" " not in first.strip():
            interpreter = first[2:].strip().decode()
    result = checked(
        subprocess.run(
            [interpreter, "-X", "importtime", *traced],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        ),
        f"-X importtime {label}",
    )
    rows = []
    for line in result.stderr.splitlines():
        match = re.match(r"import time:\s+(\d+) \|\s+(\d+) \| (\s*)(\S+)", line)
        if match:
            rows.append((int(match[1]), int(match[2]), len(match[3]), match[4]))
    top = [row for row in rows if row[2] == 0]
    total = sum(row[1] for row in top)
    print(f"\n`python -X importtime` of `{label}`: {total / 1000:.0f} ms of imports")
    print("  heaviest first-level imports (cumulative ms):")
    for _, cumulative, _, name in sorted(top, key=lambda row: -row[1])[:10]:
        print(f"    {cumulative / 1000:>7.1f}  {name}")
    by_root: dict[str, int] = {}
    for own, _, _, name in rows:
        by_root[name.split(".")[0]] = by_root.get(name.split(".")[0], 0) + own
    print("  own import time by top-level package (ms):")
    for root, own in sorted(by_root.items(), key=lambda item: -item[1])[:12]:
        print(f"    {own / 1000:>7.1f}  {root}")


def report(runs: dict[str, list[tuple[float, float]]], tasks: int, rows: int, repeat: int) -> None:
    """Wall and CPU (user + system, from wait4) medians; CPU is the steadier figure on a
    shared machine, where waiting for a core inflates the wall time."""
    wall = {name: median([w for w, _ in values]) for name, values in runs.items()}
    cpu = {name: median([c for _, c in values]) for name, values in runs.items()}
    print(f"\n{tasks} tasks, {rows:,} history rows, median of {repeat} interleaved rounds")
    print(f"| command | wall ms | x {FLOOR} | CPU ms | CPU x {FLOOR} | target <= {TARGET:g}x |")
    print("| --- | ---: | ---: | ---: | ---: | --- |")
    for name in runs:
        ratio = wall[name] / wall[FLOOR]
        verdict = "" if name == FLOOR else ("met" if ratio <= TARGET else "not met")
        print(
            f"| `{name}` | {wall[name] * 1000:.0f} | {ratio:.1f}"
            f" | {cpu[name] * 1000:.0f} | {cpu[name] / cpu[FLOOR]:.1f} | {verdict} |"
        )


def installed() -> str:
    from importlib import metadata

    try:
        dist = metadata.distribution("agency-cron")
    except metadata.PackageNotFoundError:
        return "agency-cron: not installed"
    direct = json.loads(dist.read_text("direct_url.json") or "{}")
    editable = direct.get("dir_info", {}).get("editable")
    return f"agency-cron {dist.version}{' EDITABLE' if editable else ' (non-editable)'}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--tasks", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--no-imports", action="store_true", help="skip -X importtime")
    parser.add_argument("--keep", action="store_true", help="keep the site and say where")
    parser.add_argument("--no-quick", action="store_true", help="the full path only")
    options = parser.parse_args()
    if options.tasks <= 42:
        sys.exit(f"bench: --tasks must be over 42 ({PROBE} is the probe)")
    print(f"{installed()}, {sys.executable}, {' '.join(agency_cron_cmd())}")
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    env = clean_env()
    if options.no_quick:
        env["AGENCY_CRON_NO_QUICK"] = "1"
    folder = Path(tempfile.mkdtemp(prefix="agency-cron-bench-cli-"))
    try:
        started = time.perf_counter()
        site = make_installation(folder, options.tasks, options.rows)
        print(f"site built in {time.perf_counter() - started:.1f}s: {site.root}")
        argvs = commands(site)
        warm_up(argvs, env, folder)
        runs = measure(argvs, env, options.repeat)
        print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        report(runs, options.tasks, options.rows, options.repeat)
        library_profile(site, env, folder)
        if not options.no_imports:
            for label in ("list --json", "status --json"):
                import_profile(argvs[label], env, label)
    finally:
        if options.keep:
            print(f"kept: {folder}")
        else:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
