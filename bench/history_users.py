"""Readers over one history per user: log-summary and status with the runs in one database
against the same runs split over users' databases (history.connect_all).

    sudo .venv/bin/python bench/history_users.py [--rows 100000] [--users 3,12] [--repeat 5]

Run by hand as root (the users' databases are chowned to uids 62000.. that need no real
user), never in the tests. 100 tasks task-000..task-099; `--rows` runs spread evenly over
them and over the last 30 days; with U users, the tasks are dealt round-robin between root
and the U users (a user's database holds only its tasks' runs; its spec is chowned to it,
as install does). Prints, per layout, the CPU time (the machine may be busy) of reports.log_summary() and
reports.task_status() in-process (warm, after one call; the fastest of --repeat), and the query plans of the
per-task queries through the merged view.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from agency_cron import history, reports
from agency_cron.config import load_settings
from agency_cron.manifest import load_manifest

TASKS = [f"task-{i:03d}" for i in range(100)]
UID_BASE = 62000


def make_site(root: Path, rows: int, users: int) -> tuple[Path, Path]:
    (root / "logrotate.d").mkdir(parents=True)
    config = root / "config.env"
    config.write_text(
        f"AGENCY_ROOT={root}/agency\nLOG_DIR={root}/log\nSTATE_DIR={root}/state\n"
        f"LOGROTATE_DIR={root}/logrotate.d\nCRONTAB=file:{root}/crontab\n"
    )
    manifest = root / "tasks.yaml"
    manifest.write_text(
        "tasks:\n"
        + "".join(
            f'  - name: {t}\n    schedule: "*/5 * * * *"\n    command: "true"\n' for t in TASKS
        )
    )
    from agency_cron.apply import install

    settings = load_settings(config)
    install(settings, load_manifest(manifest, settings), manifest)
    state = root / "state"
    owner = {t: (i % (users + 1)) for i, t in enumerate(TASKS)}  # 0: root, k: user k
    databases = {0: history.connect(str(state / "history.db"))}
    for k in range(1, users + 1):
        path = state / "history.d" / f"user{k}" / "history.db"
        path.parent.mkdir(parents=True)
        databases[k] = history.connect(str(path))
    fill(databases, owner, rows)
    for k, conn in databases.items():
        conn.close()
        if k:
            uid = UID_BASE + k
            folder = state / "history.d" / f"user{k}"
            for item in (folder, *folder.iterdir()):
                os.chown(item, uid, uid)
    for task, k in owner.items():
        if k:
            os.chown(state / "tasks" / f"{task}.json", UID_BASE + k, UID_BASE + k)
    return config, manifest


def fill(databases: dict, owner: dict[str, int], rows: int) -> None:
    now = datetime.now(UTC)
    span = timedelta(days=30).total_seconds()
    per_task = rows // len(TASKS)
    batches: dict[int, list] = {k: [] for k in databases}
    for task in TASKS:
        for n in range(per_task):
            started = now - timedelta(seconds=span * (per_task - n) / per_task)
            stamp = started.strftime("%Y-%m-%dT%H:%M:%S.000+00:00")
            status = "failed" if n % 11 == 0 else "success"
            batches[owner[task]].append(
                (
                    task,
                    f"{task}-{n}",
                    1,
                    1,
                    stamp,
                    stamp,
                    0.1,
                    0 if status == "success" else 1,
                    status,
                    "bench",
                    1,
                    "line",
                    None,
                    None,
                )
            )
    columns = ", ".join(history.COLUMNS)
    marks = ", ".join("?" for _ in history.COLUMNS)
    for k, conn in databases.items():
        conn.execute("BEGIN")
        conn.executemany(f"INSERT INTO runs ({columns}) VALUES ({marks})", batches[k])
        conn.execute("COMMIT")


def timed(fn, repeat: int) -> float:
    fn()
    values = []
    for _ in range(repeat):
        start = time.process_time()  # CPU time: the machine may be shared
        fn()
        values.append(time.process_time() - start)
    return min(values) * 1000  # the fastest: the least disturbed by other load


def plans(settings) -> None:
    """The plan of each per-task query in each database (the same in all of them: each
    user's filter view is flattened into the query)."""
    view = reports.open_view(settings, None)
    for conn in view.conns[:2]:
        for name in ("SUMMARY_SQL", "LAST_SQL", "LAST_SUCCESS_SQL", "LAST_ERROR_SQL"):
            query = getattr(reports, name)
            params = ("task-001", "2000") if name == "SUMMARY_SQL" else ("task-001",)
            steps = conn.execute("EXPLAIN QUERY PLAN " + query, params).fetchall()
            print(f"  {name}: " + "; ".join(step[-1] for step in steps))
    view.close()


def measure(folder: Path, users: int, args, show_plans: bool) -> None:
    config, manifest_path = make_site(folder, args.rows, users)
    settings = load_settings(config)
    manifest = load_manifest(manifest_path, settings)
    summary = timed(lambda: reports.log_summary(settings, manifest, 86400), args.repeat)
    status = timed(lambda: reports.task_status(settings, manifest, None), args.repeat)
    runs = sum(r.runs for r in reports.task_status(settings, manifest, None))
    expected = args.rows // len(TASKS) * len(TASKS)
    assert runs == expected, (users, runs, expected)  # every run merged, and once
    print(f"| {users} | {summary:.1f} | {status:.1f} |")
    if show_plans:
        print(f"query plans with {users} users' databases:")
        plans(settings)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--users", default="3,12")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("run as root (chown to other uids)", file=sys.stderr)
        return 2
    layouts = [0, *(int(u) for u in args.users.split(","))]
    print(f"{len(TASKS)} tasks, {args.rows:,} runs, CPU ms, fastest of {args.repeat}")
    print("| users' databases | log_summary() | task_status() |")
    print("| --- | --- | --- |")
    for users in layouts:
        with tempfile.TemporaryDirectory(prefix="agency-bench-users-") as folder:
            measure(Path(folder), users, args, users == layouts[-1])
    return 0


if __name__ == "__main__":
    sys.exit(main())
