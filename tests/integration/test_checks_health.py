"""Health checks against real things: an HTTP server, TCP sockets, processes, the disk, commands,
and `python -m agency_cron.checks health` as a real process writing history.db.
"""

from __future__ import annotations

import base64
import os
import shutil
import socket
import sqlite3
import subprocess
import textwrap
import time
import uuid
from pathlib import Path

import pytest

from agency_cron.checks import health
from agency_cron.checks.models import Component


@pytest.fixture
def server(http_recorder):
    """/ok, /fail, /slow, /redirect, /ftp, /auth, /other-host, /seen: a tiny service (the
    recorder of tests/conftest.py); anything else is 404."""
    port = http_recorder.port
    good = "Basic " + base64.b64encode(b"monitor:s3cret").decode()
    http_recorder.answer(404, b"not found")
    http_recorder.answer(200, b"service healthy", path="/ok")
    http_recorder.answer(500, b"boom", path="/fail")
    http_recorder.answer(200, b"late", path="/slow", delay=3)
    http_recorder.answer(302, headers={"Location": "/ok"}, path="/redirect")
    http_recorder.answer(302, headers={"Location": "ftp://127.0.0.1/file"}, path="/ftp")
    http_recorder.answer(
        302, headers={"Location": f"http://localhost:{port}/seen"}, path="/other-host"
    )
    http_recorder.answer(200, b"seen", path="/seen")
    http_recorder.respond(
        lambda request: (
            (200, b"in", {}) if request.header("Authorization") == good else (401, b"", {})
        ),
        path="/auth",
    )
    return http_recorder.url


def closed_port() -> int:
    """A port nothing listens on: bound once, then released."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def check(**fields):
    """One validated check of any type."""
    (component_check,) = Component.model_validate({"name": "c", "checks": [fields]}).checks
    return component_check


def run(**fields) -> tuple[bool, str]:
    built = check(**fields)
    return health.CHECKERS[built.type](built)


# --- http -----------------------------------------------------------------------------------


def test_http_ok_with_body_substring(server):
    ok, detail = run(type="http", url=f"{server}/ok", contains="healthy")
    assert ok, detail
    assert detail.startswith("200 in ")


def test_http_body_without_the_substring_fails(server):
    ok, detail = run(type="http", url=f"{server}/ok", contains="database ok")
    assert not ok
    assert detail == "200, but the body does not contain 'database ok'"


def test_http_500_fails_unless_expected(server):
    assert run(type="http", url=f"{server}/fail") == (False, "expected 200, got 500")
    assert run(type="http", url=f"{server}/fail", status=500)[0]


def test_http_slow_endpoint_times_out(server):
    started = time.monotonic()
    ok, detail = run(type="http", url=f"{server}/slow", timeout="1s")
    assert (ok, detail) == (False, "timed out after 1s")
    assert time.monotonic() - started < 2.5


def test_http_redirects_are_followed_only_to_http(server):
    assert run(type="http", url=f"{server}/redirect", contains="healthy")[0]
    assert run(type="http", url=f"{server}/redirect", status=302, follow_redirects=False)[0]
    ok, detail = run(type="http", url=f"{server}/ftp")
    assert not ok
    assert detail == "refused a redirect (302) to a ftp: URL"


def test_http_credentials_in_the_url_become_basic_auth(server):
    port = server.rsplit(":", 1)[1]
    assert run(type="http", url=f"http://monitor:s3cret@127.0.0.1:{port}/auth")[0]
    assert run(type="http", url=f"http://monitor:wrong@127.0.0.1:{port}/auth") == (
        False,
        "expected 200, got 401",
    )


def test_http_headers_stay_behind_when_a_redirect_changes_host(server, http_recorder):
    ok, detail = run(
        type="http", url=f"{server}/other-host", headers={"Authorization": "Bearer tok-1"}
    )
    assert ok, detail
    seen = [(r.path, r.header("Authorization")) for r in http_recorder.requests]
    assert seen[0] == ("/other-host", "Bearer tok-1")
    assert seen[1] == ("/seen", None)


def test_http_connection_refused():
    assert run(type="http", url=f"http://127.0.0.1:{closed_port()}/") == (
        False,
        "connection refused",
    )


# --- tcp ------------------------------------------------------------------------------------


def test_tcp_listener_and_closed_port():
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        ok, detail = run(type="tcp", host="127.0.0.1", port=port)
    assert ok and detail.startswith(f"127.0.0.1:{port} connected in")
    port = closed_port()
    assert run(type="tcp", host="127.0.0.1", port=port) == (
        False,
        f"127.0.0.1:{port}: connection refused",
    )


# --- process --------------------------------------------------------------------------------


@pytest.fixture
def sleeper(tmp_path):
    """A real `sleep` with a unique argv, started under a unique program name too."""
    name = "ac-" + uuid.uuid4().hex[:10]  # <= 15 characters: the kernel's comm keeps it whole
    program = tmp_path / name
    shutil.copy(shutil.which("sleep"), program)
    seconds = f"300.{uuid.uuid4().int % 10**6:06d}"
    process = subprocess.Popen([str(program), seconds])
    # Popen returns when the exec closes its error pipe, which the kernel does before it
    # renames the process: until then /proc still shows the parent's name.
    comm = Path(f"/proc/{process.pid}/comm")
    deadline = time.monotonic() + 10
    while comm.read_text().strip() != name and time.monotonic() < deadline:
        time.sleep(0.01)
    yield process, name, seconds
    if process.poll() is None:
        process.kill()
        process.wait()


def test_process_by_name_cmdline_and_pidfile(sleeper, tmp_path):
    process, name, seconds = sleeper
    pidfile = tmp_path / "sleeper.pid"
    pidfile.write_text(f"{process.pid}\n")
    assert run(type="process", name=name) == (True, f"1 running (pid {process.pid})")
    assert run(type="process", name=name, cmdline=seconds)[0]
    assert not run(type="process", name=name, cmdline="not-in-the-argv")[0]
    assert run(type="process", pidfile=str(pidfile)) == (
        True,
        f"pid {process.pid} from {pidfile} is running",
    )
    process.kill()
    process.wait()
    assert run(type="process", name=name) == (False, f"no running process named {name!r}")
    assert run(type="process", pidfile=str(pidfile)) == (
        False,
        f"pid {process.pid} from {pidfile} is not running",
    )


def test_a_zombie_is_not_running(sleeper, tmp_path):
    process, name, _ = sleeper
    process.kill()  # not reaped: it stays in /proc as a zombie until wait()
    deadline = time.monotonic() + 5
    while health._state(Path(f"/proc/{process.pid}")) != "Z" and time.monotonic() < deadline:
        time.sleep(0.01)
    pidfile = tmp_path / "z.pid"
    pidfile.write_text(str(process.pid))
    assert not run(type="process", name=name)[0]
    assert not run(type="process", pidfile=str(pidfile))[0]
    process.wait()


def test_pidfile_missing_or_garbage(tmp_path):
    missing = tmp_path / "none.pid"
    assert run(type="process", pidfile=str(missing)) == (False, f"{missing} not found")
    garbage = tmp_path / "g.pid"
    garbage.write_text("hello")
    assert run(type="process", pidfile=str(garbage)) == (
        False,
        f"{garbage} does not hold a pid (got 'hello')",
    )


# --- disk -----------------------------------------------------------------------------------


def test_disk_usage_against_the_real_filesystem(tmp_path):
    stat = os.statvfs(tmp_path)
    used = (stat.f_blocks - stat.f_bfree) * stat.f_frsize
    percent = 100 * used / (used + stat.f_bavail * stat.f_frsize)
    ok, detail = run(type="disk", path=str(tmp_path), max_used_percent=100)
    assert ok and detail.startswith(f"{percent:.1f}% used of ")
    # The lowest threshold there is: it fails on any disk more than 1% full, passes otherwise.
    ok, detail = run(type="disk", path=str(tmp_path), max_used_percent=1)
    assert ok == (percent <= 1) and detail.endswith("(max 1%)")


def test_disk_missing_path(tmp_path):
    ok, detail = run(type="disk", path=str(tmp_path / "gone"), max_used_percent=90)
    assert (ok, detail) == (False, f"{tmp_path / 'gone'}: No such file or directory")


# --- command --------------------------------------------------------------------------------


def test_command_exit_codes_output_and_timeout():
    assert run(type="command", command="test -d /")[0]
    assert run(type="command", command="echo checking; echo 'disk is sad' >&2; exit 3") == (
        False,
        "exit 3: checking | disk is sad",
    )
    started = time.monotonic()
    # The shell's child must die too: its group is killed at the timeout.
    assert run(type="command", command="sleep 30; true", timeout="1s") == (
        False,
        "timed out after 1s",
    )
    assert time.monotonic() - started < 4


# --- systemd and docker: real when the host has them, else their absence is a failure -------


def test_systemd_where_systemd_is_not_init(monkeypatch, tmp_path):
    monkeypatch.setattr(health, "SYSTEMD_RUNTIME", tmp_path / "no-systemd")
    ok, detail = run(type="systemd", unit="cron.service")
    assert not ok and detail.startswith("systemd is not running here")


def fake_tool(tmp_path: Path, name: str, script: str) -> Path:
    """A stand-in `systemctl`/`docker` on PATH: these hosts rarely run the real daemons."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    tool = bin_dir / name
    tool.write_text("#!/bin/sh\n" + textwrap.dedent(script))
    tool.chmod(0o755)
    return bin_dir


def test_systemd_states_from_systemctl(monkeypatch, tmp_path):
    bin_dir = fake_tool(
        tmp_path,
        "systemctl",
        """\
        [ "$1 $2" = "is-active --" ] || exit 64
        case "$3" in web.service) echo active ;; *) echo inactive; exit 3 ;; esac
        """,
    )
    monkeypatch.setattr(health, "SYSTEMD_RUNTIME", tmp_path)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    assert run(type="systemd", unit="web.service") == (True, "web.service is active")
    assert run(type="systemd", unit="db.service") == (
        False,
        "db.service is inactive (systemctl exit 3)",
    )


def test_docker_states(monkeypatch, tmp_path):
    bin_dir = fake_tool(
        tmp_path,
        "docker",
        """\
        case "$6" in
          web) echo "running healthy" ;;
          worker) echo "running " ;;
          sick) echo "running unhealthy" ;;
          old) echo "exited " ;;
          *) echo "Error: No such container: $6" >&2; exit 1 ;;
        esac
        """,
    )
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    assert run(type="docker", container="web") == (True, "container web is running, healthy")
    assert run(type="docker", container="worker") == (True, "container worker is running")
    assert run(type="docker", container="sick") == (
        False,
        "container sick is running but unhealthy",
    )
    assert run(type="docker", container="old") == (False, "container old is exited")
    assert run(type="docker", container="gone") == (False, "Error: No such container: gone")


def test_docker_without_a_cli(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    assert run(type="docker", container="web") == (False, "docker CLI not found")


def test_real_docker_on_this_host_never_passes_for_a_missing_container():
    ok, detail = run(type="docker", container=f"ac-missing-{uuid.uuid4().hex[:8]}")
    assert not ok and detail


# --- run_health -----------------------------------------------------------------------------


def test_run_health_keeps_order_runs_checks_together_and_contains_crashes(monkeypatch, server):
    web = Component.model_validate(
        {
            "name": "web",
            "checks": [
                {"type": "command", "command": "sleep 1"},
                {"type": "command", "command": "sleep 1", "label": "second"},
                {"type": "http", "url": f"{server}/ok"},
            ],
        }
    )
    db = Component.model_validate(
        {"name": "db", "checks": [{"type": "tcp", "host": "127.0.0.1", "port": closed_port()}]}
    )
    started = time.monotonic()
    results = health.run_health([web, db])
    assert time.monotonic() - started < 1.9  # the two sleeps overlapped
    assert [(r.component, r.check_name, r.ok) for r in results] == [
        ("web", "command", True),
        ("web", "second", True),
        ("web", "http", True),
        ("db", "tcp", False),
    ]
    assert all(r.kind == "health" and r.duration_s >= 0 for r in results)
    assert results[0].duration_s >= 0.9

    def broken(_check):
        raise RuntimeError("bug")

    monkeypatch.setitem(health.CHECKERS, "tcp", broken)
    (result,) = health.run_health([db])
    assert (result.ok, result.detail) == (False, "check could not run: RuntimeError: bug")


# --- the CLI as cron runs it ----------------------------------------------------------------


def run_checks(env, *args: str, extra: dict | None = None) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("HEALTH_", "BACKUP_"))}
    environ.pop("AGENCY_CRON_RUN_ID", None)
    return env.checks(*args, environ={**environ, **(extra or {})})


def check_rows(env) -> list[tuple]:
    with sqlite3.connect(env.state_dir / "history.db") as conn:
        return conn.execute(
            "SELECT kind, component, check_name, ok, run_id FROM check_results ORDER BY id"
        ).fetchall()


def test_cli_health_prints_records_and_exits_1_naming_the_failing_component(env, server):
    port = closed_port()
    env.write_manifest(
        f"""\
        tasks: []
        components:
          - name: web
            checks:
              - {{type: http, url: "{server}/ok", contains: healthy}}
              - {{type: disk, path: {env.root}, max_used_percent: 100}}
          - name: db
            checks:
              - {{type: tcp, host: 127.0.0.1, port: {port}}}
        """
    )
    done = run_checks(env, "health", extra={"AGENCY_CRON_RUN_ID": "run-42"})
    assert done.returncode == 1, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("OK   web/http  200 in ")
    assert lines[1].startswith("OK   web/disk  ")
    assert lines[2] == f"FAIL db/tcp    127.0.0.1:{port}: connection refused"
    assert lines[-1] == "health: 3 checks, 1 failed: db"
    assert check_rows(env) == [
        ("health", "web", "http", 1, "run-42"),
        ("health", "web", "disk", 1, "run-42"),
        ("health", "db", "tcp", 0, "run-42"),
    ]

    done = run_checks(env, "health", extra={"HEALTH_CHECK_COMPONENTS": "web"})
    assert (done.returncode, done.stdout.splitlines()[-1]) == (0, "health: 2 checks, all ok")
    assert check_rows(env)[-1] == ("health", "web", "disk", 1, None)

    done = run_checks(env, "health", "--components", "db,cache")
    assert done.returncode == 2
    assert done.stderr.strip() == (
        "agency-cron: error: --components: unknown component cache (declared: web, db)"
    )


def test_cli_bad_manifest_exits_2_with_every_problem(env):
    env.write_manifest(
        """\
        components:
          - name: web
            checks: [{type: http, url: "${SITE_URL}/health"}, {type: tcpp, host: x, port: 1}]
          - {name: db, chekcs: []}
        """
    )
    done = run_checks(env, "health")
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert done.stderr.splitlines() == [
        f"agency-cron: error: {env.manifest}: components[0] (web): checks[0].url: ${{SITE_URL}} is"
        " not set in config.env or the environment",
        f"agency-cron: error: {env.manifest}: components[1] (db): chekcs: unknown key"
        " (did you mean 'checks'?)",
    ]
    assert not (env.state_dir / "history.db").exists()


def test_cli_json_and_nothing_to_check(env):
    env.write_manifest("components: [{name: files, backup: {path: /srv}}]\n")
    done = run_checks(env, "health", "--json")
    assert done.returncode == 0
    assert '"checks": 0' in done.stdout
    done = run_checks(env, "health")
    assert done.stdout.strip() == (
        f"health: nothing to check (no component declares checks: in {env.manifest})"
    )
