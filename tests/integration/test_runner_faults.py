"""The run path under faults, on real parts: full and read-only file systems (tmpfs mounted
for the test; we are root), real signals and process trees, SIGKILL of the runner, real
`logrotate -f` during a long run with a second writer, and the signal state a task gets.

Every wrapper is started as cron starts it (no terminal, AGENCY_CRON_SCHEDULED=cron standing
in for the daemon among its ancestors). No test asserts that anything is fast; every wait
has a generous bound so that a hang fails instead.
"""

from __future__ import annotations

import contextlib
import ctypes
import gzip
import json
import os
import re
import signal
import sqlite3
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

WAIT_S = 60


# --------------------------------------------------------------------------- helpers


def task(name: str, command: str, **fields) -> dict:
    return {"name": name, "schedule": "*/5 * * * *", "command": command, **fields}


def install(env, cli, *tasks: dict) -> None:
    env.install(cli, json.dumps({"tasks": list(tasks)}, indent=2))


def set_config(env, **values: str) -> None:
    """Replace (or add) KEY=value lines of the test's config.env."""
    lines = [
        line for line in env.config.read_text().splitlines() if line.split("=")[0] not in values
    ]
    env.config.write_text("\n".join([*lines, *(f"{k}={v}" for k, v in values.items())]) + "\n")


def start(env, name: str, **popen) -> subprocess.Popen:
    environ = {k: v for k, v in os.environ.items() if k != "AGENCY_CRON_NO_CRON_LOG"}
    return subprocess.Popen(
        [str(env.wrapper(name))],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**environ, "AGENCY_CRON_SCHEDULED": "cron"},
        **popen,
    )


def finish(process: subprocess.Popen, timeout: float = WAIT_S) -> tuple[int, str, str]:
    out, err = process.communicate(timeout=timeout)
    return process.returncode, out.decode(errors="replace"), err.decode(errors="replace")


def run_wrapper(env, name: str) -> tuple[int, str, str]:
    return finish(start(env, name))


def wait_for(predicate: Callable[[], object], what: str, timeout: float = WAIT_S):
    end = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > end:
            raise AssertionError(f"gave up after {timeout}s waiting for {what}")
        time.sleep(0.02)


def db_rows(env, name: str) -> list[dict]:
    path = env.state_dir / "history.db"
    if not path.exists():
        return []
    with contextlib.closing(sqlite3.connect(path, timeout=30)) as conn:
        conn.row_factory = sqlite3.Row
        query = "SELECT * FROM runs WHERE task = ? ORDER BY id"
        return [dict(r) for r in conn.execute(query, (name,))]


def alive(marker: str) -> list[int]:
    """Live processes whose command line carries `marker`."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            raw = Path(f"/proc/{entry}/cmdline").read_bytes()
            state = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if marker.encode() in raw and state != "Z":
            found.append(int(entry))
    return found


@pytest.fixture
def marker() -> Iterator[str]:
    """A sleep length unique to the test: its processes are found in /proc by it."""
    value = f"40.{uuid.uuid4().int % 10**9:09d}"
    yield value
    for pid in alive(value):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


@pytest.fixture
def started() -> Iterator[list[subprocess.Popen]]:
    processes: list[subprocess.Popen] = []
    yield processes
    for process in processes:
        if process.poll() is None:
            process.kill()
        with contextlib.suppress(Exception):
            process.communicate(timeout=WAIT_S)


@contextlib.contextmanager
def mounted_tmpfs(path: Path, size: str) -> Iterator[Path]:
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], check=True)
    try:
        yield path
    finally:
        if subprocess.run(["umount", str(path)], check=False).returncode != 0:
            subprocess.run(["umount", "-l", str(path)], check=False)


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Callable[[str, str], Path]]:
    """tmpfs(NAME, SIZE): a tmpfs mounted at tmp_path/NAME, unmounted after the test."""
    stack = contextlib.ExitStack()

    def mount(name: str, size: str = "4m") -> Path:
        return stack.enter_context(mounted_tmpfs(tmp_path / name, size))

    with stack:
        yield mount


def fill(folder: Path) -> None:
    """Write a file until the file system says ENOSPC."""
    with open(folder / "filler", "wb") as handle:
        block = b"\0" * 65536
        with contextlib.suppress(OSError):
            while True:
                handle.write(block)
                handle.flush()
    with contextlib.suppress(OSError), open(folder / "filler-tail", "wb") as handle:
        while True:  # the last blocks, one small write at a time
            handle.write(b"\0" * 512)
            handle.flush()


def remount_read_only(folder: Path) -> None:
    subprocess.run(["mount", "-o", "remount,ro", str(folder)], check=True)


# --------------------------------------------------------------------------- 1. output errors


def test_a_full_log_dir_drops_output_but_keeps_the_run_its_code_and_its_alert(
    env, cli, tmpfs, http_recorder
):
    port, received = http_recorder.port, http_recorder.json_bodies
    logs = tmpfs("logs", "2m")
    set_config(
        env, LOG_DIR=str(logs), ALERT_URLS=f"json://127.0.0.1:{port}/hook", ALERT_ON_FAILURE="true"
    )
    # 3 MB of output on a full 2 MB file system, then the task's own exit code.
    install(env, cli, task("chatty", "head -c 3000000 /dev/zero | tr '\\0' x; exit 3"))
    fill(logs)

    code, out, err = run_wrapper(env, "chatty")
    assert code == 3, out + err
    (row,) = db_rows(env, "chatty")
    assert (row["status"], row["exit_code"]) == ("failed", 3)
    assert re.fullmatch(r"log write failed: No space left on device; 3\.\d MB dropped", row["note"])
    assert len(received()) == 1
    assert (
        "the log is incomplete: log write failed: No space left on device"
        in (received()[0]["message"])
    )


def test_a_log_dir_removed_during_the_run_is_created_again_and_gets_the_rest(env, cli, tmp_path):
    go = tmp_path / "go"
    command = f"i=0; while [ ! -e {go} ]; do i=$((i+1)); echo line $i; sleep 0.01; done; echo after"
    install(env, cli, task("moved", command))
    run = start(env, "moved")
    log = env.log_dir / "moved.log"
    wait_for(lambda: log.exists() and "line 1" in log.read_text(), "the first line")
    subprocess.run(["rm", "-rf", str(env.log_dir)], check=True)
    wait_for(lambda: log.exists() and "line " in log.read_text(), "a new log with new lines")
    go.touch()
    code, out, err = finish(run)
    assert code == 0, out + err
    assert "after" in log.read_text().splitlines()
    # Lines that went into the deleted file before the runner noticed are counted, not hidden.
    note = db_rows(env, "moved")[0]["note"]
    assert note is None or re.fullmatch(
        r"log write failed: the log file was deleted during the run; \d+ bytes dropped", note
    ), note


def test_a_read_only_log_dir_still_runs_records_and_exits_with_the_task_code(env, cli, tmpfs):
    logs = tmpfs("logs", "4m")
    set_config(env, LOG_DIR=str(logs))
    install(env, cli, task("ro", "echo 12345; exit 4"))
    remount_read_only(logs)
    code, out, err = run_wrapper(env, "ro")
    assert code == 4
    (row,) = db_rows(env, "ro")
    assert (row["status"], row["exit_code"]) == ("failed", 4)
    assert row["note"].startswith("log write failed: Read-only file system;")
    # The cron log could not be opened either: cron gets the output (it mails it).
    assert "12345" in out


def test_a_full_state_dir_still_runs_the_task_into_its_log(env, cli, tmpfs):
    state = tmpfs("state", "2m")
    set_config(env, STATE_DIR=str(state))
    install(env, cli, task("stateless", "echo ran-anyway; exit 5"))
    fill(state)
    code, out, err = run_wrapper(env, "stateless")
    assert code == 5
    assert "ran-anyway" in (env.log_dir / "stateless.log").read_text().splitlines()
    # One line on stderr (the cron log, where the wrapper sent it) and in cron's mail.
    cron_log = (env.log_dir / "cron" / "stateless.sh.log").read_text()
    for where in (cron_log, out):
        warnings = [line for line in where.splitlines() if "could not record" in line]
        assert len(warnings) == 1, where
        assert warnings[0].startswith("agency-cron: warning: stateless: could not record the run")


def test_a_read_only_state_dir_runs_the_task_unlocked_and_says_so(env, cli, tmpfs):
    state = tmpfs("state", "4m")
    set_config(env, STATE_DIR=str(state))
    install(env, cli, task("readonly", "echo ran-anyway; exit 6"))
    remount_read_only(state)
    code, out, err = run_wrapper(env, "readonly")
    assert code == 6
    assert "ran-anyway" in (env.log_dir / "readonly.log").read_text().splitlines()
    cron_log = (env.log_dir / "cron" / "readonly.sh.log").read_text()
    for where in (cron_log, out):
        locked = [line for line in where.splitlines() if "could not lock" in line]
        assert len(locked) == 1 and "Read-only file system" in locked[0], where
        assert len([line for line in where.splitlines() if "could not record" in line]) == 1


# --------------------------------------------------------------------------- 2. stopping

STUBBORN = "trap '' TERM; echo ready; sleep {marker}; echo survived"


def test_sigterm_to_the_runner_ends_a_task_that_ignores_it(env, cli, marker, started):
    install(env, cli, task("stubborn", STUBBORN.format(marker=marker)))
    run = start(env, "stubborn")
    started.append(run)
    wait_for(lambda: alive(f"sleep {marker}"), "the task's sleep")
    run.send_signal(signal.SIGTERM)
    code, out, err = finish(run)
    assert code == 128 + signal.SIGTERM
    assert alive(marker) == [], "the tree outlived its runner"
    (row,) = db_rows(env, "stubborn")
    assert (row["status"], row["exit_code"]) == ("killed", 143)
    log = (env.log_dir / "stubborn.log").read_text()
    assert "survived" not in log and "SIGKILL to what is left of the process tree" in log


def test_kill_command_waits_until_the_tree_is_gone(env, cli, marker, started):
    install(env, cli, task("stubborn", STUBBORN.format(marker=marker)))
    run = start(env, "stubborn")
    started.append(run)
    wait_for(lambda: alive(f"sleep {marker}"), "the task's sleep")
    result = env.process("kill", "stubborn")
    assert result.returncode == 0, result.stderr
    assert "stopped" in result.stdout
    assert alive(marker) == [], "kill returned while the tree still ran"
    code, _, _ = finish(run)
    assert code == 143
    (row,) = db_rows(env, "stubborn")
    assert (row["status"], row["exit_code"]) == ("killed", 143)


def test_kill_ends_overlap_allow_runs_one_by_run_id_then_all(env, cli, marker, started):
    install(env, cli, task("many", f"sleep {marker}", overlap="allow"))
    runs = [start(env, "many"), start(env, "many"), start(env, "many")]
    started.extend(runs)
    wait_for(lambda: len(alive(f"sleep {marker}")) == 3, "three runs")
    wait_for(
        lambda: [r["status"] for r in db_rows(env, "many")] == ["running"] * 3, "three running rows"
    )
    first = db_rows(env, "many")[0]
    result = env.process("kill", "many", "--run", first["run_id"])
    assert result.returncode == 0, result.stderr
    by_pid = {r.pid: r for r in runs}
    assert finish(by_pid[first["pid"]])[0] == 143
    assert len(alive(f"sleep {marker}")) == 2
    result = env.process("kill", "many")
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("stopped") == 2
    assert [finish(r)[0] for r in runs if r.pid != first["pid"]] == [143, 143]
    assert alive(marker) == []
    assert [r["status"] for r in db_rows(env, "many")] == ["killed"] * 3


# --------------------------------------------------------------------------- 3. a dead runner


def test_after_sigkill_of_the_runner_its_tree_keeps_the_lock_and_the_run_shows_lost(
    env, cli, marker, started, http_recorder
):
    port, received = http_recorder.port, http_recorder.json_bodies
    set_config(env, ALERT_URLS=f"json://127.0.0.1:{port}/hook", ALERT_ON_FAILURE="true")
    install(env, cli, task("orphaned", f"sleep {marker}; echo done"))
    run = start(env, "orphaned")
    started.append(run)
    wait_for(lambda: alive(f"sleep {marker}"), "the task's sleep")
    wait_for(lambda: db_rows(env, "orphaned"), "the running row")
    assert db_rows(env, "orphaned")[0]["status"] == "running"
    run.send_signal(signal.SIGKILL)
    assert finish(run)[0] == -signal.SIGKILL

    # Any reader shows the run as lost, counted as a failure.
    shown = json.loads(env.process("history", "orphaned", "--json").stdout)
    assert [r["status"] for r in shown] == ["lost"]
    status = json.loads(env.process("status", "orphaned", "--json").stdout)
    assert (status["state"], status["failures"]) == ("failing", 1)
    summary = json.loads(env.process("log-summary", "--json").stdout)["tasks"][0]
    assert (summary["last_status"], summary["failures"]) == ("lost", 1)
    shown = env.process("metrics")
    assert shown.returncode == 0, shown.stderr
    metrics = shown.stdout
    assert re.search(r'agency_cron_runs_total\{[^}]*status="lost"[^}]*\} 1(\.0)?$', metrics, re.M)

    # The next run is skipped while the orphaned tree lives, and alerts about the lost run.
    code, out, err = run_wrapper(env, "orphaned")
    assert code == 0, out + err
    rows = db_rows(env, "orphaned")
    assert [r["status"] for r in rows] == ["lost", "skipped"]
    assert "still hold the lock" in rows[1]["note"]
    assert len(received()) == 1 and "status: lost" in received()[0]["message"]
    assert alive(f"sleep {marker}")

    # kill ends what the dead runner left; the run after that runs.
    result = env.process("kill", "orphaned")
    assert result.returncode == 0, result.stderr
    assert alive(marker) == []
    assert run_wrapper(env, "orphaned")[0] == 0
    assert [r["status"] for r in db_rows(env, "orphaned")] == ["lost", "skipped", "success"]
    assert len(received()) == 2 and "RECOVERED" in received()[1]["title"]


def test_the_next_run_ends_what_a_dead_runner_left_once_it_is_past_the_timeout(
    env, cli, tmp_path, marker, started
):
    flag = tmp_path / "first-started"
    command = f"if [ -e {flag} ]; then echo second-run; else touch {flag}; sleep {marker}; fi"
    install(env, cli, task("overdue", command, timeout="2s"))
    run = start(env, "overdue")
    started.append(run)
    wait_for(lambda: alive(f"sleep {marker}"), "the first run's sleep")
    run.send_signal(signal.SIGKILL)
    assert finish(run)[0] == -signal.SIGKILL
    first = db_rows(env, "overdue")[0]
    began = datetime.fromisoformat(first["started_at"])
    # Not a timing assertion: the next run is only started once the 2 s have passed.
    wait_for(lambda: datetime.now(UTC) - began > timedelta(seconds=3), "the timeout to pass")
    assert alive(f"sleep {marker}"), "the orphan runs on with no runner"

    code, out, err = run_wrapper(env, "overdue")
    assert code == 0, out + err
    assert alive(marker) == []
    assert [r["status"] for r in db_rows(env, "overdue")] == ["lost", "success"]
    log = (env.log_dir / "overdue.log").read_text()
    assert "are past the task's timeout of 2s: ending them" in log
    assert "second-run" in log.splitlines()


def test_a_runner_killed_after_its_task_ended_leaves_a_lost_row_and_no_lock(env, cli, tmp_path):
    """The tree is gone too: the next run simply runs, and finds the lost one."""
    install(env, cli, task("gone", "echo hi"))
    # A runner that died mid-run, as history has it: a `running` row of a pid now dead.
    dead = subprocess.Popen(["true"])
    dead.wait()
    assert run_wrapper(env, "gone")[0] == 0
    with contextlib.closing(sqlite3.connect(env.state_dir / "history.db")) as conn:
        conn.execute(
            "INSERT INTO runs (task, run_id, attempt, attempts, started_at, status, host, pid,"
            " runner) VALUES ('gone', 'deadbeef0000', 1, 1, '2020-01-01T00:00:00.000+00:00',"
            " 'running', ?, ?, 'x:1')",
            (os.uname().nodename, dead.pid),
        )
        conn.commit()
    code, out, err = run_wrapper(env, "gone")
    assert code == 0
    statuses = {r["run_id"]: r["status"] for r in db_rows(env, "gone")}
    assert statuses["deadbeef0000"] == "lost"
    assert "lost task=gone run=deadbeef0000" in (env.log_dir / "gone.log").read_text()


def test_a_runner_killed_while_waiting_to_retry_leaves_a_lost_run(env, cli, started):
    install(env, cli, task("retrying", "exit 7", retries=1, retry_delay="10m"))
    run = start(env, "retrying")
    started.append(run)
    log = env.log_dir / "retrying.log"
    wait_for(lambda: log.exists() and "retry in " in log.read_text(), "the retry wait")
    assert [r["status"] for r in db_rows(env, "retrying")] == ["retry-scheduled"]
    run.send_signal(signal.SIGKILL)
    assert finish(run)[0] == -signal.SIGKILL
    shown = json.loads(env.process("history", "retrying", "--json").stdout)
    assert [(r["status"], r["exit_code"]) for r in shown] == [("lost", 7)]


# --------------------------------------------------------------------------- 4. rotation


def all_lines(folder: Path, stem: str) -> list[str]:
    lines = []
    for path in sorted(folder.glob(f"{stem}*")):
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rt", errors="replace") as handle:
            lines += handle.read().splitlines()
    return lines


def test_two_rotations_during_a_run_with_a_second_writer_lose_no_line(env, cli, tmp_path):
    stop = tmp_path / "stop"
    long_run = (
        f'i=0; while [ ! -e {stop} ]; do i=$((i+1)); echo "A $i"; sleep 0.001; done;'
        ' echo "A last $i"'
    )
    install(
        env,
        cli,
        task("long", long_run, log="shared.log", timeout="10m"),
        task(
            "short",
            'for j in $(seq 1 200); do echo "B $AGENCY_CRON_RUN_ID $j"; done',
            log="shared.log",
        ),
    )
    config = env.logrotate_dir / "agency_stack_cron"
    directives = [
        line.strip() for line in config.read_text().splitlines() if not line.strip().startswith("#")
    ]
    assert "delaycompress" in directives and "copytruncate" not in directives
    state = tmp_path / "logrotate.state"
    log = env.log_dir / "shared.log"
    run = start(env, "long")

    def a_line_in_the_current_log() -> bool:
        return log.exists() and any(line.startswith("A ") for line in log.read_text().splitlines())

    short_runs = []
    for _ in range(2):
        wait_for(a_line_in_the_current_log, "the long run to write into the current log")
        assert run_wrapper(env, "short")[0] == 0
        short_runs.append(db_rows(env, "short")[-1]["run_id"])
        rotated = subprocess.run(
            ["logrotate", "-v", "-f", "-s", str(state), str(config)], capture_output=True, text=True
        )
        assert rotated.returncode == 0, rotated.stderr
        assert "error" not in rotated.stderr.lower(), rotated.stderr
    wait_for(a_line_in_the_current_log, "the long run to follow the second rotation")
    assert run_wrapper(env, "short")[0] == 0
    short_runs.append(db_rows(env, "short")[-1]["run_id"])
    stop.touch()
    assert finish(run)[0] == 0

    assert list(env.log_dir.glob("shared.log.*.gz")), "the second rotation compressed a file"
    lines = all_lines(env.log_dir, "shared.log")
    last = int(next(line for line in lines if line.startswith("A last ")).split()[-1])
    numbers = {int(line.split()[1]) for line in lines if re.fullmatch(r"A \d+", line)}
    assert numbers == set(range(1, last + 1)), f"{last - len(numbers)} lines of the long run lost"
    for run_id in short_runs:
        assert {int(line.split()[2]) for line in lines if line.startswith(f"B {run_id} ")} == set(
            range(1, 201)
        )


# --------------------------------------------------------------------------- 5. signal state


def ignore_glibc_internal_signals() -> None:
    """SIG_IGN for signals 32 and 33 through the raw rt_sigaction (glibc refuses them)."""
    number = {"x86_64": 13, "aarch64": 134}[os.uname().machine]
    ignore = (ctypes.c_ulong * 4)(1)  # handler SIG_IGN, no flags, no restorer, empty mask
    syscall = ctypes.CDLL(None, use_errno=True).syscall
    for signum in (32, 33):
        assert (
            syscall(ctypes.c_long(number), ctypes.c_int(signum), ctypes.byref(ignore), None, 8) == 0
        )


def test_a_task_starts_with_default_signals_and_an_empty_mask(env, cli):
    install(
        env,
        cli,
        task("signals", "grep -E '^Sig(Ign|Blk)' /proc/self/status; yes | head -n1"),
    )

    def hostile_parent() -> None:  # what a careless parent leaves: blocked and ignored signals
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR2, signal.SIGALRM})
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGPIPE, signal.SIG_IGN)
        ignore_glibc_internal_signals()  # what a posix_spawn parent (GNU make) leaves

    code, out, err = finish(start(env, "signals", preexec_fn=hostile_parent))
    assert code == 0, out + err
    lines = (env.log_dir / "signals.log").read_text().splitlines()
    assert "SigBlk:\t0000000000000000" in lines
    assert "SigIgn:\t0000000000000000" in lines, [x for x in lines if x.startswith("Sig")]
    assert "y" in lines
    assert not any("Broken pipe" in line for line in lines)


# --------------------------------------------------------------------------- 10. once


def test_a_completed_once_task_is_refused_before_the_next_install(env, cli):
    moment = (datetime.now() + timedelta(days=3)).replace(second=0, microsecond=0)
    once = {
        "name": "migrate",
        "schedule": f"once {moment:%Y-%m-%dT%H:%M}",
        "command": "echo migrating",
    }
    install(env, cli, once)
    assert cli(*env.args("run", "migrate"))[0] == 0  # by hand, days early
    # No install since: the crontab line is still there. At its minute (libfaketime moves
    # the clock there) cron starts the wrapper, and the runner refuses the second run.
    at_its_minute = f"{moment + timedelta(seconds=20):%Y-%m-%d %H:%M:%S}"
    faked = subprocess.run(
        ["faketime", at_its_minute, str(env.wrapper("migrate"))],
        capture_output=True,
        env={**os.environ, "AGENCY_CRON_SCHEDULED": "cron"},
        timeout=WAIT_S,
        check=False,
    )
    assert faked.returncode == 0, faked.stderr
    assert cli(*env.args("run", "migrate"))[0] == 0  # by hand again: refused too
    rows = db_rows(env, "migrate")
    assert [r["status"] for r in rows] == ["success", "skipped", "skipped"]
    assert {r["note"] for r in rows[1:]} == {"once task already completed"}
    assert rows[1]["started_at"].startswith(f"{moment.astimezone(UTC):%Y-%m-%dT%H:%M}")
    log = (env.log_dir / "migrate.log").read_text()
    assert log.splitlines().count("migrating") == 1
