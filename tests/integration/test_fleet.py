"""Issue 13 on a real PostgreSQL server (the `postgres` fixture, initdb'd by the tests): hosts
sharing one history, `scope: fleet` tasks run once per fire time, nothing lost while the
database is away. Each simulated host has its own AGENCY_ROOT, STATE_DIR and HOST_NAME; the
runs are the real wrappers in cron's bare environment.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
from pathlib import Path

import psycopg
import pytest

BARE = {"PATH": "/usr/bin:/bin"}  # what cron gives a job
HOSTS = 5
FIRES = 20
FLEET_MANIFEST = """\
tasks:
  - name: report
    schedule: "0 * * * *"
    command: "sleep 0.2; echo report ran"
    scope: fleet
"""
HOST_MANIFEST = """\
tasks:
  - name: tick
    schedule: "* * * * *"
    command: "echo tick"
"""


def _hosts(make_env, root: Path, url: str, manifest: str, count: int, extra: str = "") -> list:
    envs = []
    for number in range(count):
        name = f"web-{number + 1}"
        env = make_env(
            root / name,
            config=f"HISTORY_URL={url}\nHOST_NAME={name}\nHISTORY_TIMEOUT=3\n{extra}",
            manifest=manifest,
        )
        done = env.process("install")
        assert done.returncode == 0, done.stdout + done.stderr
        envs.append(env)
    return envs


def _fire(env, task: str, moment: str | None = None) -> subprocess.Popen:
    """The task's wrapper as cron runs it, at `moment` (libfaketime) when given."""
    command = [str(env.wrapper(task))]
    if moment:
        command = ["faketime", moment, *command]
    return subprocess.Popen(
        command, env=BARE, cwd="/", stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _wait(procs: list[subprocess.Popen]) -> list[tuple[int, str, str]]:
    found = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        found.append((proc.returncode, out, err))
    return found


def _shared(url: str, query: str, params: tuple = ()) -> list[tuple]:
    with psycopg.connect(url) as conn:
        return conn.execute(query, params).fetchall()  # type: ignore[arg-type]


def _local_runs(env, task: str) -> list[tuple]:
    conn = sqlite3.connect(env.state_dir / "history.db")
    try:
        return conn.execute(
            "SELECT run_id, attempt, status FROM runs WHERE task = ? ORDER BY id", (task,)
        ).fetchall()
    finally:
        conn.close()


@pytest.mark.slow
def test_five_hosts_fire_a_fleet_task_twenty_times_and_it_runs_once_per_fire_time(
    make_env, tmp_path, pg_url
):
    envs = _hosts(make_env, tmp_path, pg_url, FLEET_MANIFEST, HOSTS)
    for fire in range(FIRES):
        moment = f"2026-12-02 10:{fire:02d}:00"
        results = _wait([_fire(env, "report", moment) for env in envs])
        assert all(code == 0 for code, _, _ in results), results
    rows = _shared(
        pg_url,
        "SELECT substr(started_at, 1, 16), host, status, note FROM runs WHERE task = 'report'",
    )
    assert len(rows) == HOSTS * FIRES  # every host recorded every fire, in the one history
    by_fire: dict[str, list[tuple]] = {}
    for minute, host, status, note in rows:
        by_fire.setdefault(minute, []).append((host, status, note))
    assert len(by_fire) == FIRES
    for minute, runs in by_fire.items():
        ran = [host for host, status, _ in runs if status == "success"]
        assert len(ran) == 1, (minute, runs)
        skipped = [(host, note) for host, status, note in runs if status == "skipped"]
        assert len(skipped) == HOSTS - 1, (minute, runs)
        for host, note in skipped:
            assert host != ran[0]
            assert ran[0] in note, note  # the others name the host that ran it
    claims = _shared(pg_url, "SELECT fire_time, host FROM fleet_claims WHERE task = 'report'")
    assert len(claims) == FIRES
    # Each host's own history holds its share: the union is the shared history.
    assert sum(len(_local_runs(env, "report")) for env in envs) == HOSTS * FIRES


def test_a_fleet_task_skips_while_another_host_still_runs_it(make_env, tmp_path, pg_url):
    """overlap keeps its meaning across the fleet: a long run holds the turn."""
    manifest = FLEET_MANIFEST.replace("sleep 0.2", "sleep 5")
    first, second = _hosts(make_env, tmp_path, pg_url, manifest, 2)
    long_run = _fire(first, "report", "2026-12-02 11:00:00")
    log = first.log_dir / "report.log"
    for _ in range(600):  # until its run has started (and so holds the lock)
        if log.exists() and "start" in log.read_text():
            break
        subprocess.run(["sleep", "0.05"], check=True)
    code, _, _ = _wait([_fire(second, "report", "2026-12-02 11:01:00")])[0]
    assert code == 0
    assert _wait([long_run])[0][0] == 0
    rows = _shared(pg_url, "SELECT host, status, note FROM runs WHERE task = 'report'")
    skipped = [row for row in rows if row[1] == "skipped"]
    assert [row[0] for row in skipped] == ["web-2"]
    assert "web-1" in skipped[0][2] and "overlap" in skipped[0][2]


def test_nothing_is_lost_while_the_database_is_away_and_the_spool_drains(
    make_env, tmp_path, postgres, pg_url
):
    (env,) = _hosts(make_env, tmp_path, pg_url, HOST_MANIFEST, 1)
    assert all(code == 0 for code, _, _ in _wait([_fire(env, "tick") for _ in range(3)]))
    postgres.stop()
    try:
        for _ in range(4):  # the task still runs, its record waits in the local history
            code, out, _ = _wait([_fire(env, "tick")])[0]
            assert code == 0
            assert "tick" in out
        log = (env.log_dir / "tick.log").read_text()
        assert "not sent to the shared history" in log
    finally:
        postgres.start()
    assert _wait([_fire(env, "tick")])[0][0] == 0  # the next run sends what waited
    local = _local_runs(env, "tick")
    shared = _shared(
        pg_url, "SELECT run_id, attempt, status FROM runs WHERE task = 'tick' ORDER BY local_id"
    )
    assert len(local) == 8
    assert shared == local
    # Away again: `history sync` sends the backlog by hand.
    postgres.stop()
    try:
        assert all(code == 0 for code, _, _ in _wait([_fire(env, "tick") for _ in range(2)]))
        away = env.process("history", "sync", "--json")
        assert away.returncode == 1, away.stdout + away.stderr
        assert json.loads(away.stdout)["pending"] == 2
        assert "Traceback" not in away.stderr
    finally:
        postgres.start()
    synced = env.process("history", "sync", "--json")
    assert synced.returncode == 0, synced.stderr
    figures = json.loads(synced.stdout)
    assert (figures["sent"], figures["pending"]) == (2, 0)
    assert len(_shared(pg_url, "SELECT 1 FROM runs WHERE task = 'tick'")) == 10
    again = json.loads(env.process("history", "sync", "--json").stdout)
    assert (again["sent"], again["pending"]) == (0, 0)  # sent once, never twice


@pytest.mark.parametrize("choice", ["skip", "run"])
def test_a_fleet_task_with_the_database_away_follows_when_unreachable_and_alerts(
    make_env, tmp_path, postgres, pg_url, http_recorder, choice
):
    manifest = FLEET_MANIFEST + f"    when_unreachable: {choice}\n"
    alert = f"ALERT_URLS=json://127.0.0.1:{http_recorder.port}/alert\n"
    (env,) = _hosts(make_env, tmp_path, pg_url, manifest, 1, alert)
    postgres.stop()
    try:
        code, out, _ = _wait([_fire(env, "report")])[0]
    finally:
        postgres.start()
    assert code == 0
    statuses = [status for _, _, status in _local_runs(env, "report")]
    assert statuses == (["skipped"] if choice == "skip" else ["success"])
    assert ("report ran" in out) is (choice == "run")
    log = (env.log_dir / "report.log").read_text()
    assert f"when_unreachable: {choice}" in log
    (request,) = http_recorder.wait_for(1)
    assert f"when_unreachable: {choice}" in request.body.decode()
    secret = postgres.password
    assert secret not in log and secret not in request.body.decode() and secret not in out


def test_a_database_that_stops_answering_does_not_hold_the_run(
    make_env, tmp_path, postgres, pg_url
):
    """A server that accepts and then never answers (SIGSTOP): the run ends, the record
    waits locally, and is sent once the server answers again."""
    (env,) = _hosts(make_env, tmp_path, pg_url, HOST_MANIFEST, 1)
    assert _wait([_fire(env, "tick")])[0][0] == 0
    os.kill(postgres.process.pid, signal.SIGSTOP)
    try:
        code, _, _ = _wait([_fire(env, "tick")])[0]
    finally:
        os.kill(postgres.process.pid, signal.SIGCONT)
    assert code == 0
    assert [s for _, _, s in _local_runs(env, "tick")] == ["success", "success"]
    assert env.process("history", "sync").returncode == 0
    assert len(_shared(pg_url, "SELECT 1 FROM runs WHERE task = 'tick'")) == 2


def test_the_password_reaches_no_log_listing_or_output(make_env, tmp_path, postgres, pg_url):
    (env,) = _hosts(make_env, tmp_path, pg_url, FLEET_MANIFEST, 1)
    code, out, err = _wait([_fire(env, "report")])[0]
    assert code == 0
    shown = [out, err]
    for args in (("list",), ("status", "--json"), ("history", "report"), ("history", "sync")):
        done = env.process(*args)
        shown += [done.stdout, done.stderr]
    shown += [p.read_text(errors="replace") for p in env.log_dir.rglob("*") if p.is_file()]
    shown += [env.wrapper("report").read_text()]
    assert postgres.password
    assert not [text for text in shown if postgres.password in text]


def test_doctor_says_whether_the_shared_history_answers_and_what_waits(
    make_env, tmp_path, postgres, pg_url
):
    (env,) = _hosts(make_env, tmp_path, pg_url, HOST_MANIFEST, 1)
    assert _wait([_fire(env, "tick")])[0][0] == 0

    def finding() -> tuple[int, dict, str]:
        done = env.process("doctor", "--json")
        found = json.loads(done.stdout)
        (shared,) = [f for f in found["findings"] if f["check"] == "shared-history"]
        return done.returncode, shared, done.stdout + done.stderr

    _, shared, text = finding()
    assert shared["ok"] and "0 waiting" in shared["detail"]
    postgres.stop()
    try:
        assert _wait([_fire(env, "tick")])[0][0] == 0
        code, shared, text = finding()
    finally:
        postgres.start()
    assert code == 1 and not shared["ok"]
    assert "1 record(s) wait" in shared["detail"] and "history sync" in shared["fix"]
    assert postgres.password not in text


def test_overlap_wait_waits_for_another_hosts_run_then_runs(make_env, tmp_path, pg_url):
    manifest = FLEET_MANIFEST.replace("sleep 0.2", "sleep 3") + "    overlap: wait\n"
    first, second = _hosts(make_env, tmp_path, pg_url, manifest, 2)
    long_run = _fire(first, "report", "2026-12-02 12:00:00")
    log = first.log_dir / "report.log"
    for _ in range(600):
        if log.exists() and "start" in log.read_text():
            break
        subprocess.run(["sleep", "0.05"], check=True)
    waiter = _fire(second, "report", "2026-12-02 12:01:00")
    assert [code for code, _, _ in _wait([long_run, waiter])] == [0, 0]
    rows = _shared(pg_url, "SELECT host, status FROM runs WHERE task = 'report' ORDER BY host")
    assert rows == [("web-1", "success"), ("web-2", "success")]
