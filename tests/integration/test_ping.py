"""Heartbeat pings end to end: installed tasks run through their wrappers (as cron starts
them) against a real HTTP server on 127.0.0.1 that records every request.

healthchecks.io's protocol: GET URL/start?rid=RID once the run holds its lock, then one
POST: URL on success, URL/CODE for a failure with an exit code, URL/fail for a timeout, a
kill or a lost run; RID a canonical UUID shared by the run's pings. Bounds below (a run's
duration under PING_TIMEOUT plus a margin) come from the spec, not from a speed target.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import sqlite3
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from agency_cron import ping

WAIT_S = 60
MARGIN_S = 4.0  # the interpreter's start, install's specs, a loaded machine
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
CHECK = "5bf66975-d4c7-4bf5-bcc8-b8d8a82ea278"


# --------------------------------------------------------------------------- helpers


def set_config(env, **values: str) -> None:
    lines = [x for x in env.config.read_text().splitlines() if x.split("=")[0] not in values]
    env.config.write_text("\n".join([*lines, *(f"{k}={v}" for k, v in values.items())]) + "\n")


def install(env, cli, *tasks: dict, **config: str) -> None:
    set_config(env, **config)
    env.install(cli, json.dumps({"tasks": list(tasks)}, indent=2))


def task(name: str, command: str, **fields) -> dict:
    return {"name": name, "schedule": "*/5 * * * *", "command": command, **fields}


def start(env, name: str, **environ: str) -> subprocess.Popen:
    return subprocess.Popen(
        [str(env.wrapper(name))],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "AGENCY_CRON_SCHEDULED": "cron", **environ},
    )


def finish(process: subprocess.Popen) -> int:
    process.communicate(timeout=WAIT_S * 2)
    return process.returncode


def run(env, name: str) -> tuple[int, float]:
    """Run the task's wrapper as cron would; (exit code, seconds it took)."""
    began = time.monotonic()
    code = finish(start(env, name))
    return code, time.monotonic() - began


def rows(env, name: str) -> list[dict]:
    if not (env.state_dir / "history.db").exists():
        return []
    with contextlib.closing(sqlite3.connect(env.state_dir / "history.db", timeout=30)) as conn:
        conn.row_factory = sqlite3.Row
        found = conn.execute("SELECT * FROM runs WHERE task = ? ORDER BY id", (name,))
        return [dict(row) for row in found]


def log(env, name: str) -> str:
    return (env.log_dir / f"{name}.log").read_text()


def calls(recorder) -> list[tuple[str, str]]:
    return [(r.method, r.path) for r in recorder.requests]


def rids(recorder) -> list[str]:
    return [r.query["rid"][0] for r in recorder.requests]


def wait_for(predicate, what: str):
    end = time.monotonic() + WAIT_S
    while not (value := predicate()):
        if time.monotonic() > end:
            raise AssertionError(f"gave up after {WAIT_S}s waiting for {what}")
        time.sleep(0.02)
    return value


@pytest.fixture
def marker():
    """A sleep length unique to the test: its processes are found in /proc by it, and
    whatever still runs with it at the end is ended (never another test's processes)."""
    value = f"30.{uuid.uuid4().int % 10**9:09d}"
    yield value
    for pid in _pids_of(f"sleep {value}"):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


@pytest.fixture
def pinged(env, cli, http_recorder):
    """install(task, ...) with PING_URL on the recorder; returns the recorder's base URL."""

    def setup(*tasks: dict, timeout: str = "10", url: str | None = None, **config: str) -> str:
        base = url or f"{http_recorder.url}/ping/{{name}}"
        install(env, cli, *tasks, PING_URL=base, PING_TIMEOUT=timeout, **config)
        return base

    return setup


# --------------------------------------------------------------------------- how runs end


def test_a_success_pings_start_then_success_with_one_rid(env, pinged, http_recorder):
    pinged(task("ok", "echo hello"))
    assert run(env, "ok")[0] == 0
    assert calls(http_recorder) == [("GET", "/ping/ok/start"), ("POST", "/ping/ok")]
    start_rid, end_rid = rids(http_recorder)
    assert start_rid == end_rid and UUID.match(start_rid)
    [row] = rows(env, "ok")
    assert start_rid == ping.rid_of(row["run_id"])
    body = http_recorder.requests[1].body.decode()
    assert body.startswith(f"agency-cron: task ok success on {os.uname().nodename} (exit code 0,")
    assert body.endswith("hello\n")
    assert row["ping"] == "ok"
    assert f"agency-cron: ping: ok (success, rid {start_rid})" in log(env, "ok")


def test_a_failure_pings_its_exit_code_and_keeps_it(env, pinged, http_recorder):
    pinged(task("three", "echo broken; exit 3"))
    assert run(env, "three")[0] == 3
    assert calls(http_recorder) == [("GET", "/ping/three/start"), ("POST", "/ping/three/3")]
    assert http_recorder.requests[1].body.endswith(b"broken\n")
    assert rows(env, "three")[0]["ping"] == "ok"


def test_a_timeout_pings_fail(env, pinged, http_recorder):
    pinged(task("slow", "sleep 30", timeout="1s"))
    assert run(env, "slow")[0] == 124
    assert calls(http_recorder) == [("GET", "/ping/slow/start"), ("POST", "/ping/slow/fail")]
    assert b"task slow timeout on" in http_recorder.requests[1].body


def test_a_kill_pings_fail(env, pinged, http_recorder, cli_process, marker):
    pinged(task("stopped", f"echo up; sleep {marker}"))
    process = start(env, "stopped")
    wait_for(lambda: http_recorder.requests, "the start ping")
    wait_for(lambda: _pids_of(f"sleep {marker}"), "the task's sleep")
    killed = cli_process(*env.args("kill", "stopped"))
    assert killed.returncode == 0, killed.stderr
    assert finish(process) == 143
    assert calls(http_recorder) == [("GET", "/ping/stopped/start"), ("POST", "/ping/stopped/fail")]
    assert b"task stopped killed on" in http_recorder.requests[1].body
    assert rows(env, "stopped")[-1]["ping"] == "ok"


def test_a_skipped_run_pings_nothing(env, pinged, http_recorder, tmp_path):
    flag = tmp_path / "go"
    pinged(task("busy", f"while [ ! -e {flag} ]; do sleep 0.05; done"))
    first = start(env, "busy")
    wait_for(lambda: [r for r in rows(env, "busy") if r["status"] == "running"], "the first run")
    assert run(env, "busy")[0] == 0
    flag.touch()
    assert finish(first) == 0
    assert [r["status"] for r in rows(env, "busy")] == ["success", "skipped"]
    assert calls(http_recorder) == [("GET", "/ping/busy/start"), ("POST", "/ping/busy")]
    assert len(set(rids(http_recorder))) == 1


def test_retries_of_one_run_send_one_start_and_one_final_ping(env, pinged, http_recorder, tmp_path):
    counter = tmp_path / "tries"
    command = f"n=$(cat {counter} 2>/dev/null || echo 0); echo $((n+1)) > {counter}; [ $n -ge 2 ]"
    pinged(task("flaky", command, retries=2, retry_delay="1s"))
    assert run(env, "flaky")[0] == 0
    assert [r["status"] for r in rows(env, "flaky")] == ["retry-scheduled"] * 2 + ["success"]
    assert calls(http_recorder) == [("GET", "/ping/flaky/start"), ("POST", "/ping/flaky")]
    assert len(set(rids(http_recorder))) == 1
    assert [r["ping"] for r in rows(env, "flaky")] == [None, None, "ok"]


def test_every_run_has_its_own_rid(env, pinged, http_recorder):
    pinged(task("twice", "true"))
    assert run(env, "twice")[0] == run(env, "twice")[0] == 0
    first, second = rids(http_recorder)[0::2], rids(http_recorder)[1::2]
    assert first[0] == second[0] and first[1] == second[1]
    assert len(set(rids(http_recorder))) == 2


def test_a_run_that_cannot_start_pings_its_code(env, pinged, http_recorder, tmp_path):
    pinged(task("nowhere", "true", working_dir=str(tmp_path / "missing")))
    assert run(env, "nowhere")[0] == 2
    assert calls(http_recorder) == [("GET", "/ping/nowhere/start"), ("POST", "/ping/nowhere/2")]
    assert b"cannot enter working_dir" in http_recorder.requests[1].body


def test_a_run_started_by_hand_pings_too(env, pinged, http_recorder, cli_process):
    pinged(task("byhand", "echo now"))
    done = cli_process(*env.args("run", "byhand"))
    assert done.returncode == 0, done.stderr
    assert calls(http_recorder) == [("GET", "/ping/byhand/start"), ("POST", "/ping/byhand")]


# --------------------------------------------------------------------------- who pings where


def test_ping_url_none_opts_out_and_a_task_url_wins(env, pinged, http_recorder):
    own = f"{http_recorder.url}/own/{CHECK}"
    pinged(task("quiet", "true", ping_url="none"), task("mine", "true", ping_url=own))
    assert run(env, "quiet")[0] == 0
    assert http_recorder.requests == []
    assert "ping:" not in log(env, "quiet") and rows(env, "quiet")[0]["ping"] is None
    assert run(env, "mine")[0] == 0
    assert calls(http_recorder) == [("GET", f"/own/{CHECK}/start"), ("POST", f"/own/{CHECK}")]


def test_a_ping_url_from_the_environment_kubernetes_style(env, pinged, http_recorder):
    """export kubernetes hands the URL over from a Secret as AGENCY_CRON_PING_URL."""
    url = f"{http_recorder.url}/ping/{CHECK}"
    command = 'echo "seen:${AGENCY_CRON_PING_URL:-unset}"; echo "copy:$COPY"'
    pinged(task("pod", command, env={"COPY": CHECK}, ping_url="none"))
    process = start(env, "pod", AGENCY_CRON_PING_URL=url)
    assert finish(process) == 0
    assert calls(http_recorder) == [("GET", f"/ping/{CHECK}/start"), ("POST", f"/ping/{CHECK}")]
    body = http_recorder.requests[1].body.decode()
    assert "seen:unset" in body and "copy:***" in body and CHECK not in log(env, "pod")


def test_no_secret_reaches_a_ping(env, pinged, http_recorder):
    own = f"{http_recorder.url}/ping/{CHECK}"
    command = 'echo "token $API_TOKEN"; echo "alert $ALERT_COPY"; echo "ping $PING_COPY"; exit 1'
    environ = {"API_TOKEN": "tok-9f8e7d6c5b4a", "ALERT_COPY": "alertpass99", "PING_COPY": own}
    pinged(
        task("leaky", command, env=environ, ping_url=own),
        ALERT_URLS="json://ops:alertpass99@127.0.0.1:9/hook",
    )
    assert run(env, "leaky")[0] == 1
    assert calls(http_recorder)[1] == ("POST", f"/ping/{CHECK}/1")
    recorded = b"".join(r.body for r in http_recorder.requests).decode()
    for secret in ("tok-9f8e7d6c5b4a", "alertpass99", CHECK):
        assert secret not in recorded
        assert secret not in log(env, "leaky")
    assert "token ***" in recorded and "ping ***" in recorded


def test_the_final_ping_body_is_capped(env, pinged, http_recorder):
    pinged(task("chatty", "seq 1 100000"))
    assert run(env, "chatty")[0] == 0
    body = http_recorder.requests[1].body
    assert len(body) <= ping.BODY_LIMIT and body.endswith(b"\n100000\n")


# --------------------------------------------------------------------------- bounded, never fatal


def test_a_server_that_never_answers_costs_at_most_ping_timeout(env, pinged, http_recorder):
    pinged(task("hung", "true"), task("hungfail", "exit 5"), timeout="2")
    http_recorder.hang()
    code, seconds = run(env, "hung")
    assert code == 0 and seconds < 2 + MARGIN_S
    code, seconds = run(env, "hungfail")
    assert code == 5 and seconds < 2 + MARGIN_S
    outcome = rows(env, "hung")[0]["ping"]
    assert outcome.startswith("failed (")
    assert f"agency-cron: ping: {outcome} (success, rid " in log(env, "hung")


def test_an_unresolvable_host_costs_at_most_ping_timeout(env, pinged):
    pinged(task("nohost", "exit 4"), timeout="2", url="http://nonexistent.invalid/{name}")
    code, seconds = run(env, "nohost")
    assert code == 4 and seconds < 2 + MARGIN_S
    assert rows(env, "nohost")[0]["ping"].startswith("failed (")


def test_an_answer_of_404_is_recorded_and_not_retried(env, pinged, http_recorder):
    pinged(task("unknown", "true"))
    http_recorder.answer(404, b"not found")
    assert run(env, "unknown")[0] == 0
    assert len(http_recorder.requests) == 2
    assert rows(env, "unknown")[0]["ping"] == "failed (HTTP 404); start failed (HTTP 404)"


# --------------------------------------------------------------------------- lost runs


def test_a_lost_run_is_pinged_fail_by_the_next_run_with_its_own_rid(env, pinged, http_recorder):
    pinged(task("gone", "echo hi"))
    dead = subprocess.Popen(["true"])
    dead.wait()
    assert run(env, "gone")[0] == 0  # creates the history
    http_recorder.requests.clear()
    with contextlib.closing(sqlite3.connect(env.state_dir / "history.db")) as conn:
        conn.execute(
            "INSERT INTO runs (task, run_id, attempt, attempts, started_at, status, host, pid,"
            " runner) VALUES ('gone', 'deadbeef0000', 1, 1, '2020-01-01T00:00:00.000+00:00',"
            " 'running', ?, ?, 'x:1')",
            (os.uname().nodename, dead.pid),
        )
        conn.commit()
    assert run(env, "gone")[0] == 0
    assert calls(http_recorder) == [
        ("POST", "/ping/gone/fail"),
        ("GET", "/ping/gone/start"),
        ("POST", "/ping/gone"),
    ]
    lost_rid = ping.rid_of("deadbeef0000")
    assert rids(http_recorder)[0] == lost_rid != rids(http_recorder)[1]
    assert b"task gone lost on" in http_recorder.requests[0].body
    lost = next(r for r in rows(env, "gone") if r["run_id"] == "deadbeef0000")
    assert (lost["status"], lost["ping"]) == ("lost", "ok")
    assert f"ping: ok (fail, lost run deadbeef0000, rid {lost_rid})" in log(env, "gone")
    http_recorder.requests.clear()
    assert run(env, "gone")[0] == 0  # told once
    assert [m for m, _ in calls(http_recorder)] == ["GET", "POST"]


def _lost_rows(env, *run_ids: str) -> None:
    """`running` rows of runners that are gone, as a SIGKILL leaves them."""
    dead = subprocess.Popen(["true"])
    dead.wait()
    with contextlib.closing(sqlite3.connect(env.state_dir / "history.db")) as conn:
        for run_id in run_ids:
            conn.execute(
                "INSERT INTO runs (task, run_id, attempt, attempts, started_at, status, host,"
                " pid, runner) VALUES ('jam', ?, 1, 1, '2020-01-01T00:00:00.000+00:00',"
                " 'running', ?, ?, 'x:1')",
                (run_id, os.uname().nodename, dead.pid),
            )
        conn.commit()


def test_pings_for_lost_runs_share_the_runs_budget(env, pinged, http_recorder):
    pinged(task("jam", "exit 6"), timeout="2")
    assert run(env, "jam")[0] == 6  # creates the history
    _lost_rows(env, "dead00000001", "dead00000002")
    http_recorder.hang()
    code, seconds = run(env, "jam")
    assert code == 6 and seconds < 2 + MARGIN_S
    outcomes = [r["ping"] for r in rows(env, "jam")]
    assert outcomes[1].startswith("failed (")  # the first lost run took the whole budget
    assert outcomes[2:] == ["not sent: PING_TIMEOUT (2s) spent on earlier pings"] * 2


def test_the_ping_helper_does_not_outlive_a_runner_killed_with_sigkill(
    env, pinged, http_recorder, marker
):
    pinged(task("victim", f"sleep {marker}"))
    process = start(env, "victim")
    wait_for(lambda: http_recorder.requests, "the start ping")
    # until the task has exec'd, its forked child still carries the runner's command line
    wait_for(lambda: _pids_of(f"sleep {marker}"), "the task's sleep")
    spec = str(env.state_dir / "tasks" / "victim")
    helpers = [p for p in _pids_of(spec) if p != process.pid]
    assert len(helpers) == 1  # the runner's one helper, forked with the runner's command line
    process.send_signal(signal.SIGKILL)
    assert finish(process) == -signal.SIGKILL
    wait_for(lambda: not _pids_of(spec), "the helper to end")
    assert calls(http_recorder) == [("GET", "/ping/victim/start")]


def _pids_of(needle: str) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            command = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ")
            state = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if needle.encode() in command and state != "Z" and int(entry) != os.getpid():
            found.append(int(entry))
    return found


# --------------------------------------------------------------------------- reports


def test_status_and_dashboard_show_the_last_ping(env, pinged, http_recorder, cli_process):
    pinged(task("shown", "true"), task("silent", "true", ping_url="none"))
    assert run(env, "shown")[0] == run(env, "silent")[0] == 0
    status = json.loads(cli_process(*env.args("status", "--json")).stdout)
    by_name = {row["name"]: row for row in status}
    assert by_name["shown"]["last_ping"] == "ok"
    assert by_name["silent"]["last_ping"] is None
    table = cli_process(*env.args("status"), "--wide").stdout
    assert re.search(r"shown .* ok", table)
    out = env.root / "dashboard"
    made = cli_process(*env.args("dashboard", "--out", str(out)))
    assert made.returncode == 0, made.stderr
    data = json.loads((out / "dashboard.json").read_text())
    assert {t["name"]: t["last_ping"] for t in data["tasks"]} == {"shown": "ok", "silent": None}
    assert 'data-ping="ok">ping: ok</div>' in (out / "index.html").read_text()
