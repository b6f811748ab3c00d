"""The run path as cron drives it: real wrappers, real processes, a real history.db, real signals.

Each test installs a manifest into a throwaway tree (the `env` fixture) and runs the rendered
wrapper `AGENCY_ROOT/scripts/cronjobs/NAME.sh` as a subprocess whose stdout is not a terminal,
exactly as cron does, or `agency-cron run NAME` in a real process. Nothing is mocked. No test
asserts that anything is fast; every wait has a generous bound so a hang fails instead.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import sqlite3
import stat
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path

import pytest

from agency_cron import history

WAIT_S = 60  # the bound on every wait for a process or a file; a hang fails, it does not hang
STAMP = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00"
START = re.compile(
    rf"^{STAMP} agency-cron: start task=(?P<task>[\w-]+) run=(?P<run>[0-9a-f]+)"
    r" attempt=(?P<attempt>\d+)/(?P<attempts>\d+) pid=(?P<pid>\d+)$"
)
END = re.compile(
    rf"^{STAMP} agency-cron: end task=(?P<task>[\w-]+) run=(?P<run>[0-9a-f]+)"
    r" attempt=(?P<attempt>\d+)/(?P<attempts>\d+) duration=(?P<duration>\d+\.\d+)s"
    r" exit=(?P<exit>-?\d+) status=(?P<status>[\w-]+)$"
)


# --------------------------------------------------------------------------- helpers


def task(name: str, command: str, **fields) -> dict:
    return {"name": name, "schedule": "*/5 * * * *", "command": command, **fields}


def install(env, cli, *tasks: dict) -> None:
    """Write the manifest (JSON is YAML, and keeps shell quoting out of YAML) and install it."""
    env.install(cli, json.dumps({"tasks": list(tasks)}, indent=2))


def task_log(env, name: str) -> Path:
    return env.log_dir / f"{name}.log"


def cron_log(env, name: str) -> Path:
    return env.log_dir / "cron" / f"{name}.sh.log"


def lock_file(env, name: str) -> Path:
    return env.state_dir / "locks" / f"{name}.lock"


def start(env, name: str, *args: str) -> subprocess.Popen:
    """Start the wrapper as cron would: no terminal, and AGENCY_CRON_SCHEDULED=cron standing
    in for the cron daemon among its ancestors (the e2e test has the real daemon)."""
    environ = {k: v for k, v in os.environ.items() if k != "AGENCY_CRON_NO_CRON_LOG"}
    return subprocess.Popen(
        [str(env.wrapper(name)), *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**environ, "AGENCY_CRON_SCHEDULED": "cron"},
    )


def finish(process: subprocess.Popen, timeout: float = WAIT_S) -> tuple[int, str]:
    """Wait for a started wrapper; returns its exit code and everything it printed."""
    out, err = process.communicate(timeout=timeout)
    return process.returncode, (out + err).decode("utf-8", "replace")


def run_wrapper(env, name: str, *args: str, timeout: float = WAIT_S) -> tuple[int, str]:
    return finish(start(env, name, *args), timeout)


def wait_for(predicate: Callable[[], object], what: str, timeout: float = WAIT_S):
    """Poll until `predicate()` is truthy; fail (not hang) after `timeout` seconds."""
    end = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > end:
            raise AssertionError(f"gave up after {timeout}s waiting for {what}")
        time.sleep(0.02)


def lock_holder(env, name: str) -> int | None:
    try:
        text = lock_file(env, name).read_text().split()
    except FileNotFoundError:
        return None
    return int(text[0]) if text and text[0].isdigit() else None


def db_rows(env, task_name: str | None = None) -> list[dict]:
    """Rows of STATE_DIR/history.db, oldest first, read with sqlite3 directly."""
    path = env.state_dir / "history.db"
    if not path.exists():
        return []
    conn = sqlite3.connect(path, timeout=30)
    conn.row_factory = sqlite3.Row
    try:
        if task_name is None:
            cursor = conn.execute("SELECT * FROM runs ORDER BY id")
        else:
            cursor = conn.execute("SELECT * FROM runs WHERE task = ? ORDER BY id", (task_name,))
        return [dict(row) for row in cursor]
    finally:
        conn.close()


def history_json(env, cli, name: str) -> list[dict]:
    code, out, err = cli(*env.args("history", name, "--json"))
    assert code == 0, err
    return json.loads(out)


def cmdlines() -> dict[int, str]:
    """Every live process's command line (zombies have none and are not listed)."""
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            raw = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue
        if raw:
            found[int(entry)] = raw.replace(b"\0", b" ").decode("utf-8", "replace")
    return found


def marked(marker: str) -> dict[int, str]:
    """Live processes whose command line carries `marker`."""
    return {pid: line for pid, line in cmdlines().items() if marker in line}


def sleepers(marker: str) -> list[int]:
    """Live `sleep MARKER` processes."""
    return [pid for pid, line in marked(marker).items() if line.split() == ["sleep", marker]]


def flock_waiters(path: Path) -> list[str]:
    """Lines of /proc/locks for processes blocked waiting on an flock of `path`."""
    inode = os.stat(path).st_ino
    found = []
    for line in Path("/proc/locks").read_text().splitlines():
        fields = line.split()
        if "->" in fields and any(
            re.fullmatch(rf"[0-9a-f]+:[0-9a-f]+:{inode}", field) for field in fields
        ):
            found.append(line)
    return found


def kill_all(pids) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


@pytest.fixture
def marker() -> Iterator[str]:
    """A sleep duration unique to this test (sleep takes fractions), so its processes can be
    found in /proc; whatever still carries it is killed when the test ends."""
    value = f"301.{uuid.uuid4().int % 10**9:09d}"
    yield value
    kill_all(marked(value))


@pytest.fixture
def started() -> Iterator[list[subprocess.Popen]]:
    """Wrappers a test starts in the background; any left running are ended at the end."""
    processes: list[subprocess.Popen] = []
    yield processes
    for process in processes:
        if process.poll() is None:
            process.terminate()  # the runner passes it on to its task's process group
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
        process.communicate(timeout=WAIT_S)


@pytest.fixture(autouse=True)
def no_leftovers(tmp_path: Path) -> Iterator[None]:
    """Whatever a failed test left behind (every command names a path under tmp_path or runs
    through a spec there) is killed, so one failure cannot leave loops running."""
    yield
    kill_all(marked(str(tmp_path)))


def wait_gone(marker: str, timeout: float = 10) -> dict[int, str]:
    """Give signalled processes a bounded moment to die; returns those still alive."""
    end = time.monotonic() + timeout
    while (alive := marked(marker)) and time.monotonic() < end:
        time.sleep(0.05)
    return alive


# --------------------------------------------------------------------------- 1. logs


def test_task_log_has_start_output_end_and_cron_log_has_raw_output(env, cli):
    install(env, cli, task("logs", "echo out-line; echo err-line >&2"))
    code, printed = run_wrapper(env, "logs")
    assert code == 0
    assert printed == "", "stdout is not a terminal: the wrapper sends everything to the cron log"

    lines = task_log(env, "logs").read_text().splitlines()
    assert len(lines) == 4, lines
    begin, end = START.match(lines[0]), END.match(lines[3])
    assert begin and end, lines
    assert begin["task"] == "logs" and begin["attempt"] == "1" and begin["attempts"] == "1"
    assert lines[1:3] == ["out-line", "err-line"]
    assert end["run"] == begin["run"]
    assert end["exit"] == "0" and end["status"] == "success"
    assert float(end["duration"]) >= 0
    (row,) = db_rows(env, "logs")
    assert row["run_id"] == begin["run"]

    raw = cron_log(env, "logs").read_text().splitlines()
    assert "out-line" in raw and "err-line" in raw
    assert any(START.match(line) for line in raw)

    # A second run appends: the first run's lines are still there.
    assert run_wrapper(env, "logs")[0] == 0
    lines = task_log(env, "logs").read_text().splitlines()
    runs = [m["run"] for m in map(START.match, lines) if m]
    assert len(runs) == 2 and runs[0] == begin["run"] and runs[1] != begin["run"]
    assert lines.count("out-line") == 2 and lines.count("err-line") == 2
    assert cron_log(env, "logs").read_text().splitlines().count("out-line") == 2


def test_after_logrotate_renames_the_log_the_next_run_writes_a_new_file(env, cli):
    install(env, cli, task("rotated", "echo rotated-output"))
    assert run_wrapper(env, "rotated")[0] == 0
    log = task_log(env, "rotated")
    rotated = log.with_name("rotated.log.1")
    log.rename(rotated)  # what logrotate's `create` does first
    before = rotated.read_bytes()

    assert run_wrapper(env, "rotated")[0] == 0
    assert rotated.read_bytes() == before, "the renamed log must not be written again"
    lines = log.read_text().splitlines()
    assert START.match(lines[0]) and lines[1] == "rotated-output" and END.match(lines[2])
    assert len(lines) == 3
    first_run = START.match(before.decode().splitlines()[0])["run"]
    assert START.match(lines[0])["run"] != first_run


# --------------------------------------------------------------------------- 2. exit codes


def test_runner_exits_with_the_task_exit_code(env, cli, cli_process):
    install(env, cli, task("three", "echo about-to-fail; exit 3"))
    assert run_wrapper(env, "three")[0] == 3
    result = cli_process(*env.args("run", "three"))
    assert result.returncode == 3, result.stderr
    assert "about-to-fail" in result.stdout
    assert [r["exit_code"] for r in db_rows(env, "three")] == [3, 3]
    assert [r["status"] for r in db_rows(env, "three")] == ["failed", "failed"]


def test_run_of_a_task_past_its_timeout_exits_124_and_records_timeout(
    env, cli, cli_process, marker
):
    install(env, cli, task("slow", f"sleep {marker}", timeout="1s"))
    result = cli_process(*env.args("run", "slow"), timeout=WAIT_S)
    assert result.returncode == 124, result.stdout + result.stderr
    (row,) = db_rows(env, "slow")
    assert row["status"] == "timeout" and row["exit_code"] == 124
    log = task_log(env, "slow").read_text()
    assert "timeout after 1s" in log
    assert END.match(log.splitlines()[-1])["status"] == "timeout"
    assert history_json(env, cli, "slow")[0]["status"] == "timeout"
    assert wait_gone(marker) == {}


# --------------------------------------------------------------------------- 3. history


def test_history_rows_in_the_cli_and_in_sqlite(env, cli):
    install(env, cli, task("good", "echo fine"), task("bad", "echo broken; exit 5"))
    good = start(env, "good")
    assert finish(good)[0] == 0
    bad = start(env, "bad")
    assert finish(bad)[0] == 5

    (shown_good,) = history_json(env, cli, "good")
    (shown_bad,) = history_json(env, cli, "bad")
    for shown, status, code in ((shown_good, "success", 0), (shown_bad, "failed", 5)):
        assert shown["status"] == status and shown["exit_code"] == code
        assert shown["attempt"] == 1
        assert re.fullmatch(r"[0-9a-f]{12}", shown["run_id"])
        assert isinstance(shown["duration_s"], float) and shown["duration_s"] >= 0
        assert datetime.fromisoformat(shown["started_at"]) <= datetime.fromisoformat(
            shown["finished_at"]
        )

    rows = {row["task"]: row for row in db_rows(env)}
    assert set(rows) == {"good", "bad"}
    for name, process, shown in (("good", good, shown_good), ("bad", bad, shown_bad)):
        row = rows[name]
        for key in ("run_id", "status", "attempt", "exit_code", "duration_s", "started_at"):
            assert row[key] == shown[key], key
        assert row["attempts"] == 1
        assert row["pid"] == process.pid, "the wrapper execs the runner: same pid"
    assert rows["bad"]["output_tail"].splitlines()[-1] == "broken"

    conn = sqlite3.connect(env.state_dir / "history.db")
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        # 1 when this test was written; the library's current schema version since.
        assert conn.execute("PRAGMA user_version").fetchone()[0] == history.SCHEMA_VERSION >= 1
    finally:
        conn.close()


# --------------------------------------------------------------------------- 4. timeout and tree


@pytest.mark.parametrize(
    "detach",
    [
        pytest.param("", id="grandchildren-in-the-group"),
        pytest.param("setsid ", id="one-grandchild-in-its-own-session"),
    ],
)
def test_timeout_ends_every_process_of_the_tree(env, cli, marker, tmp_path, detach):
    launched = tmp_path / "launched"
    command = (
        f"sh -c 'sleep {marker} & sleep {marker} & ({detach}sleep {marker} &) ;"
        f" touch {launched}; sleep {marker}'"
    )
    install(env, cli, task("tree", command, timeout="2s"))
    code, _ = run_wrapper(env, "tree")
    assert code == 124
    assert launched.exists(), "the command got as far as starting every sleep"
    assert db_rows(env, "tree")[0]["status"] == "timeout"
    survivors = marked(marker)
    assert survivors == {}, f"still alive after the run returned: {survivors}"


# --------------------------------------------------------------------------- 5-7. overlap


def blocking(release: Path, word: str = "done") -> str:
    """A command that runs until `release` exists (no sleep-length guesswork)."""
    return f"while [ ! -e {release} ]; do sleep 0.05; done; echo {word}"


def test_overlap_skip_records_the_holder_and_lets_the_first_run_finish(env, cli, tmp_path, started):
    release = tmp_path / "release"
    install(env, cli, task("solo", blocking(release), timeout="2m"))
    first = start(env, "solo")
    started.append(first)
    wait_for(lambda: lock_holder(env, "solo") == first.pid, "the first run to hold the lock")

    code, _ = run_wrapper(env, "solo")
    assert code == 0
    assert first.poll() is None, "the skipped run returned while the first still runs"
    skipped = [r for r in db_rows(env, "solo") if r["status"] == "skipped"]
    assert len(skipped) == 1
    assert f"pid {first.pid}" in skipped[0]["note"]
    assert skipped[0]["exit_code"] == 0

    release.touch()
    assert finish(first)[0] == 0
    # by id: the first run's row is written when it starts (`running`), before the skip
    assert [r["status"] for r in db_rows(env, "solo")] == ["success", "skipped"]
    # newest first by start: the skipped run started after the first one
    assert [r["status"] for r in history_json(env, cli, "solo")] == ["skipped", "success"]
    log = task_log(env, "solo").read_text()
    assert "skipped task=solo" in log and log.splitlines().count("done") == 1


def test_a_run_killed_with_sigkill_leaves_no_stale_lock(env, cli, tmp_path, marker, started):
    flag = tmp_path / "first-started"
    command = f"if [ -e {flag} ]; then echo second-run; else touch {flag}; sleep {marker}; fi"
    install(env, cli, task("stale", command, timeout="5m"))
    first = start(env, "stale")
    started.append(first)
    wait_for(lambda: lock_holder(env, "stale") == first.pid, "the first run to hold the lock")
    wait_for(lambda: sleepers(marker), "the first run's sleep")
    first.send_signal(signal.SIGKILL)  # the wrapper exec'd python: this pid is the runner
    assert finish(first)[0] == -signal.SIGKILL

    # The orphaned sleep inherited the lock: the next run is skipped while it lives
    # (tests/integration/test_runner_faults.py), and runs once it is gone: no stale lock.
    kill_all(sleepers(marker))
    wait_for(lambda: not sleepers(marker), "the orphan to end")
    code, _ = run_wrapper(env, "stale")
    assert code == 0
    assert [r["status"] for r in db_rows(env, "stale")] == ["lost", "success"]
    assert "second-run" in task_log(env, "stale").read_text().splitlines()


def test_overlap_wait_runs_the_second_after_the_first(env, cli, tmp_path, started):
    release = tmp_path / "release"
    install(env, cli, task("queue", blocking(release, "ran"), overlap="wait", timeout="2m"))
    first = start(env, "queue")
    started.append(first)
    wait_for(lambda: lock_holder(env, "queue") == first.pid, "the first run to hold the lock")
    second = start(env, "queue")
    started.append(second)
    wait_for(lambda: flock_waiters(lock_file(env, "queue")), "the second run to block on the lock")
    assert second.poll() is None
    starts = [m for m in map(START.match, task_log(env, "queue").read_text().splitlines()) if m]
    assert len(starts) == 1, "the second run must not start its command while the first runs"

    release.touch()
    assert finish(first)[0] == 0
    assert finish(second)[0] == 0
    rows = db_rows(env, "queue")
    assert [r["status"] for r in rows] == ["success", "success"]
    assert rows[0]["run_id"] != rows[1]["run_id"]
    by_pid = {r["pid"]: r for r in rows}
    assert by_pid[second.pid]["started_at"] >= by_pid[first.pid]["finished_at"]


def test_overlap_allow_runs_both_at_once(env, cli, tmp_path, started):
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    # Each run registers itself and waits for the other: only concurrent runs can both succeed.
    command = (
        f"mktemp -p {barrier} >/dev/null; while [ $(ls {barrier} | wc -l) -lt 2 ]; do sleep 0.05; done;"
        " echo both-running"
    )
    install(env, cli, task("twin", command, overlap="allow", timeout="30s"))
    runs = [start(env, "twin"), start(env, "twin")]
    started.extend(runs)
    assert [finish(run)[0] for run in runs] == [0, 0]
    rows = db_rows(env, "twin")
    assert [r["status"] for r in rows] == ["success", "success"]
    assert len({r["run_id"] for r in rows}) == 2
    assert task_log(env, "twin").read_text().splitlines().count("both-running") == 2


# --------------------------------------------------------------------------- 8. concurrency


def test_twenty_tasks_at_once_all_recorded_without_database_is_locked(env, cli, started):
    names = [f"task-{n:02d}" for n in range(20)]
    install(env, cli, *(task(name, f"echo {n}") for n, name in enumerate(names)))
    # No history.db yet: every runner races to create and migrate it.
    runs = [start(env, name) for name in names]
    started.extend(runs)
    results = [finish(run) for run in runs]
    assert [code for code, _ in results] == [0] * 20

    rows = db_rows(env)
    assert len(rows) == 20
    assert sorted(r["task"] for r in rows) == names
    assert all(r["status"] == "success" for r in rows)
    printed = "".join(text for _, text in results)
    logs = "".join(p.read_text() for p in env.log_dir.rglob("*") if p.is_file())
    for text in (printed, logs):
        assert "database is locked" not in text
        assert "could not record" not in text
    for n, name in enumerate(names):
        assert str(n) in task_log(env, name).read_text().splitlines()


# --------------------------------------------------------------------------- 9. retries

COUNTER = (
    'n=$(cat c 2>/dev/null || echo 0); n=$((n+1)); echo $n > c; echo "attempt $n"; [ $n -ge 3 ]'
)


def test_retries_until_success_share_one_run_id(env, cli, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    install(
        env,
        cli,
        task("flaky", COUNTER, retries=2, retry_delay="1s", working_dir=str(work)),
    )
    code, _ = run_wrapper(env, "flaky")
    assert code == 0
    rows = db_rows(env, "flaky")
    assert [r["status"] for r in rows] == ["retry-scheduled", "retry-scheduled", "success"]
    assert [r["attempt"] for r in rows] == [1, 2, 3]
    assert [r["attempts"] for r in rows] == [3, 3, 3]
    assert [r["exit_code"] for r in rows] == [1, 1, 0]
    assert len({r["run_id"] for r in rows}) == 1
    assert (work / "c").read_text().strip() == "3"
    shown = history_json(env, cli, "flaky")
    assert [r["attempt"] for r in shown] == [3, 2, 1]
    log = task_log(env, "flaky").read_text()
    assert log.count("retry in ") == 2
    assert [m["attempt"] for m in map(START.match, log.splitlines()) if m] == ["1", "2", "3"]


def test_retries_exhausted_ends_failed_with_the_task_code(env, cli, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    install(
        env,
        cli,
        task("hopeless", COUNTER, retries=1, retry_delay="1s", working_dir=str(work)),
    )
    code, _ = run_wrapper(env, "hopeless")
    assert code == 1
    rows = db_rows(env, "hopeless")
    assert [r["status"] for r in rows] == ["retry-scheduled", "failed"]
    assert [r["attempt"] for r in rows] == [1, 2]
    assert [r["exit_code"] for r in rows] == [1, 1]
    assert len({r["run_id"] for r in rows}) == 1


# --------------------------------------------------------------------------- 10-11. signals, kill


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_to_the_runner_ends_the_whole_tree(env, cli, marker, started, signum):
    # task sh -> inner sh -> a background and a foreground sleep: grandchildren of the runner.
    install(env, cli, task("sig", f"sh -c 'sleep {marker} & sleep {marker}'; echo after"))
    run = start(env, "sig")
    started.append(run)
    wait_for(lambda: len(sleepers(marker)) == 2, "both sleeps to run")
    wait_for(lambda: lock_holder(env, "sig") == run.pid, "the run to hold its lock")

    run.send_signal(signum)
    code, _ = finish(run)
    assert code == 128 + signum
    (row,) = db_rows(env, "sig")
    assert row["status"] == "killed"
    survivors = wait_gone(marker)
    assert survivors == {}, f"still alive after the runner exited: {survivors}"


def test_kill_command_ends_a_running_task(env, cli, cli_process, marker, started):
    install(env, cli, task("victim", f"sleep {marker} & sleep {marker}"))
    run = start(env, "victim")
    started.append(run)
    wait_for(lambda: len(sleepers(marker)) == 2, "the sleeps to run")
    wait_for(lambda: lock_holder(env, "victim") == run.pid, "the run to hold its lock")

    result = cli_process(*env.args("kill", "victim"))
    assert result.returncode == 0, result.stderr
    code, _ = finish(run)
    assert code == 128 + signal.SIGTERM
    assert [r["status"] for r in db_rows(env, "victim")] == ["killed"]
    assert wait_gone(marker) == {}


def test_kill_command_when_nothing_runs_exits_1(env, cli, cli_process):
    install(env, cli, task("idle", "echo idle"))
    result = cli_process(*env.args("kill", "idle"))
    assert result.returncode == 1, result.stderr
    assert "not running" in result.stderr
    assert run_wrapper(env, "idle")[0] == 0  # a finished run leaves its pid in the lock file
    result = cli_process(*env.args("kill", "idle"))
    assert result.returncode == 1, result.stderr


# --------------------------------------------------------------------------- 12. status


def test_status_json_after_a_success_and_a_failure(env, cli, tmp_path):
    flag = tmp_path / "break"
    command = f"if [ -e {flag} ]; then echo boom-line-xyz >&2; exit 4; fi; echo fine"
    install(env, cli, task("watched", command))
    assert run_wrapper(env, "watched")[0] == 0
    flag.touch()
    assert run_wrapper(env, "watched")[0] == 4

    code, out, err = cli(*env.args("status", "watched", "--json"))
    assert code == 0, err
    status = json.loads(out)
    assert status["name"] == "watched"
    assert (status["runs"], status["successes"], status["failures"]) == (2, 1, 1)
    assert status["state"] == "failing"
    assert "boom-line-xyz" in status["last_error"]
    for key in ("last_run", "last_success", "last_failure"):
        assert isinstance(status[key], str), key
        datetime.fromisoformat(status[key])
    assert status["last_failure"] > status["last_success"]
    assert status["last_run"] == status["last_failure"]
    assert isinstance(status["next_run"], str)
    assert datetime.fromisoformat(status["next_run"]).tzinfo is not None


# --------------------------------------------------------------------------- 13. secrets

SECRET = "s3cr3t-value-123"
URL_PASSWORD = "hunter2pass"


def test_secrets_stay_out_of_logs_history_and_output(env, cli, cli_process):
    env.add_config(f"ALERT_URLS=json://user:{URL_PASSWORD}@127.0.0.1:9/x\n")
    command = 'echo "token=$API_TOKEN"; echo "stderr-token=$API_TOKEN" >&2'
    install(env, cli, task("secretive", command, env={"API_TOKEN": SECRET}))
    assert run_wrapper(env, "secretive")[0] == 0
    result = cli_process(*env.args("run", "secretive"))
    assert result.returncode == 0, result.stderr

    # The value reached the command (and was masked): the lines are there, redacted.
    log = task_log(env, "secretive").read_text()
    assert log.splitlines().count("token=***") == 2
    assert log.splitlines().count("stderr-token=***") == 2

    for needle in (SECRET, URL_PASSWORD):
        for path in env.log_dir.rglob("*"):
            if path.is_file():
                assert needle.encode() not in path.read_bytes(), path
        assert needle not in result.stdout + result.stderr
        assert needle not in env.wrapper("secretive").read_text()
        for args in (("list", "--json"), ("status", "--json"), ("history", "secretive", "--json")):
            code, out, err = cli(*env.args(*args))
            assert code == 0, err
            assert needle not in out + err, args

    conn = sqlite3.connect(env.state_dir / "history.db")
    try:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        checked = 0
        for table in tables:
            columns = [c[1] for c in conn.execute(f"PRAGMA table_info({table})")]
            for values in conn.execute(f"SELECT * FROM {table}"):
                for column, value in zip(columns, values, strict=True):
                    if isinstance(value, str | bytes):
                        text = value if isinstance(value, str) else value.decode("latin-1")
                        assert SECRET not in text and URL_PASSWORD not in text, (table, column)
                        checked += 1
        assert checked > 0
    finally:
        conn.close()
    for path in env.state_dir.glob("history.db*"):
        assert SECRET.encode() not in path.read_bytes(), path

    assert stat.S_IMODE(env.wrapper("secretive").stat().st_mode) == 0o755
    spec = env.state_dir / "tasks" / "secretive.json"
    assert stat.S_IMODE(spec.stat().st_mode) == 0o600  # holds the value the runner must set


def test_a_secret_written_in_two_pieces_is_masked(env, cli):
    # The pause makes the runner read the first piece on its own, as it does from a program
    # that writes without buffering; if both pieces arrive together the test cannot fail.
    half = 5  # "token=" and 5 characters: shorter than the secret, as a short read is
    command = (
        f"printf 'token=%s' \"$(echo $API_TOKEN | cut -c1-{half})\"; sleep 1;"
        f" printf '%s\\n' \"$(echo $API_TOKEN | cut -c{half + 1}-)\""
    )
    install(env, cli, task("pieces", command, env={"API_TOKEN": SECRET}))
    assert run_wrapper(env, "pieces")[0] == 0
    log = task_log(env, "pieces").read_text()
    assert "token=***" in log.splitlines(), log
    for path in (task_log(env, "pieces"), cron_log(env, "pieces")):
        assert SECRET not in path.read_text(), path
    (row,) = db_rows(env, "pieces")
    assert SECRET not in row["output_tail"]


# --------------------------------------------------------------------------- 14-15. edges


def test_missing_working_dir_exits_2_and_records_a_failure(env, cli, tmp_path):
    missing = tmp_path / "no-such-dir"
    install(env, cli, task("lost", "echo should-not-run", working_dir=str(missing)))
    code, _ = run_wrapper(env, "lost")
    assert code == 2
    (row,) = db_rows(env, "lost")
    assert row["status"] == "failed" and row["exit_code"] == 2
    assert str(missing) in row["note"]
    log = task_log(env, "lost").read_text()
    assert str(missing) in log and "should-not-run" not in log


def test_a_task_that_writes_50_mb_has_every_byte_in_its_log(env, cli):
    size = 50_000_000
    command = f"head -c {size} /dev/zero | tr '\\0' 'a'; echo"
    install(env, cli, task("chatty", command, timeout="10m"))
    code, _ = run_wrapper(env, "chatty", timeout=600)
    assert code == 0
    data = task_log(env, "chatty").read_bytes()
    first, rest = data.split(b"\n", 1)
    body, last, empty = rest.rsplit(b"\n", 2)
    assert START.match(first.decode())
    assert body == b"a" * size
    assert END.match(last.decode()) and END.match(last.decode())["status"] == "success"
    assert empty == b""
    assert b"a" * size + b"\n" in cron_log(env, "chatty").read_bytes()


def test_the_end_line_is_a_line_of_its_own_after_output_without_a_newline(env, cli):
    install(env, cli, task("partial", "printf no-newline-at-the-end"))
    assert run_wrapper(env, "partial")[0] == 0
    lines = task_log(env, "partial").read_text().splitlines()
    assert START.match(lines[0])
    assert "no-newline-at-the-end" in lines[1]
    assert END.match(lines[-1]), lines
    assert "".join(lines[1:-1]) == "no-newline-at-the-end"
