"""Tables at 80 columns (COLUMNS=80, real subprocesses): task names whole, times short with
the zone said once, lines that fit; `--wide` for every column and full times.

The tasks really ran (`agency-cron run`), so status, log-summary and history have rows.
"""

from __future__ import annotations

import json
import re

import pytest

LONG_A = "a-task-name-of-sixty-four-characters-which-is-the-longest-allowd"
LONG_B = "b-task-name-of-sixty-four-characters-which-is-the-longest-allowd"
SHORT = "health-check"
NAMES = (LONG_A, LONG_B, SHORT)
SHORT_TIME = re.compile(r"\b\d\d-\d\d \d\d:\d\d\b")
ISO_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d")
NARROW = {"COLUMNS": "80"}


def manifest(names) -> str:
    tasks = "".join(
        f"  - name: {name}\n"
        '    schedule: "0 2 * * *"\n'
        f"    command: echo {name[:1]}; exit {index}\n"
        "    description: a task with a description long enough to need wrapping at eighty\n"
        "    tags: [reports, nightly]\n"
        for index, name in enumerate(names)
    )
    return f"tasks:\n{tasks}"


@pytest.fixture
def ran(env, cli_process):
    """An installation whose tasks each ran twice."""
    assert len(LONG_A) == len(LONG_B) == 64
    env.write_manifest(manifest(NAMES))
    assert cli_process(*env.args("install")).returncode == 0
    for name in NAMES:
        for _ in range(2):
            cli_process(*env.args("run", name))
    return env


def narrow(env, cli_process, *args: str) -> str:
    result = cli_process(*env.args(*args), env=NARROW)
    assert result.returncode in (0, 1), result.stderr
    assert "Traceback" not in result.stderr
    return result.stdout


def assert_fits(output: str, names=NAMES) -> None:
    for line in output.splitlines():
        assert len(line) <= 80, f"{len(line)} columns: {line!r}"
    lines = output.splitlines()
    for name in names:
        assert any(name in line for line in lines), f"{name} cut:\n{output}"
    assert "…" not in output


@pytest.mark.parametrize(
    "args",
    [("list",), ("status",), ("log-summary",), ("history", LONG_A)],
    ids=["list", "status", "log-summary", "history"],
)
def test_tables_fit_80_columns_with_whole_names_and_short_times(ran, cli_process, args):
    output = narrow(ran, cli_process, *args)
    names = (LONG_A,) if args[0] == "history" else NAMES
    assert_fits(output, names)
    assert SHORT_TIME.search(output), output
    assert not ISO_TIME.search(output), output
    assert output.count("times in ") == 1  # the zone, said once
    if args[0] in ("list", "status"):
        # A name that fits keeps its row on one line; only the long ones get their own.
        (row,) = [line for line in output.splitlines() if line.startswith(f"{SHORT} ")]
        assert SHORT_TIME.search(row), output


def test_history_rows_show_every_run(ran, cli_process):
    output = narrow(ran, cli_process, "history", LONG_B)
    runs = json.loads(ran_json(ran, cli_process, "history", LONG_B))
    assert len(runs) == 2
    for run in runs:
        assert run["run_id"] in output
    assert output.count("failed") == 2  # exit 1


def test_short_names_stay_one_row_per_task(env, cli_process):
    env.write_manifest(manifest([SHORT, "backup-verify"]))
    assert cli_process(*env.args("install")).returncode == 0
    cli_process(*env.args("run", SHORT))
    output = narrow(env, cli_process, "status")
    assert_fits(output, [SHORT, "backup-verify"])
    (row,) = [line for line in output.splitlines() if line.startswith(SHORT)]
    assert "ok" in row and SHORT_TIME.search(row)


def test_plan_and_doctor_keep_names_and_paths_whole(ran, cli_process):
    script = ran.agency_root / "scripts" / "cronjobs" / "integrations_refresh_cron.sh"
    script.unlink()  # a file row in the plan, with a path longer than 80 columns
    plan = narrow(ran, cli_process, "install", "--dry-run")
    lines = plan.splitlines()
    for key in (*NAMES, str(script)):
        assert any(key in line for line in lines), f"{key} cut:\n{plan}"
    doctor = narrow(ran, cli_process, "doctor")
    assert_fits(doctor, names=[])
    assert "log-dirs" in doctor and "overrides" in doctor


def ran_json(env, cli_process, *args: str) -> str:
    result = cli_process(*env.args(*args, "--json"))
    assert result.returncode in (0, 1), result.stderr
    return result.stdout


def test_wide_shows_every_column_and_full_times(ran, cli_process):
    status = narrow(ran, cli_process, "status", "--wide")
    rows = json.loads(ran_json(ran, cli_process, "status"))
    for header in ("successes", "last success", "last failure"):
        assert header in status
    for row in rows:
        line = next(line for line in status.splitlines() if line.startswith(row["name"]))
        assert row["last_run"] in line and row["next_run"] in line
    summary = narrow(ran, cli_process, "log-summary", "--wide")
    assert "skipped" in summary and "exit" in summary
    assert ISO_TIME.search(summary)
    history = narrow(ran, cli_process, "history", LONG_A, "--wide")
    runs = json.loads(ran_json(ran, cli_process, "history", LONG_A))
    assert "finished" in history and "alert" in history
    for run in runs:
        assert run["started_at"] in history and run["finished_at"] in history
    listing = narrow(ran, cli_process, "list", "--wide")
    for row in json.loads(ran_json(ran, cli_process, "list")):
        line = next(line for line in listing.splitlines() if line.startswith(row["name"]))
        assert row["next_run"] in line and row["description"] in line
    assert "times in" not in status + summary + history + listing
