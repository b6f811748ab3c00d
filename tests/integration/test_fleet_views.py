"""The fleet view (issue 13 point 2): several simulated hosts (each its own installation,
STATE_DIR and HOST_NAME) record their runs in one real PostgreSQL history, and the readers
show one host (`--host NAME`) or the fleet (`--host all`).

Every run is the real runner's (`agency-cron run NAME` as a process); the hosts' own
figures are read from their local SQLite databases (the spool every run records in first),
so the fleet's figures are checked against something the shared history did not make.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time

import pytest

HOSTS = ("web-0", "web-1", "web-2")
MANIFEST = """\
tasks:
  - name: nightly
    schedule: "0 3 * * *"
    command: echo nightly on ${HOST_NAME}
  - name: flaky
    schedule: "* * * * *"
    expect_within: 1m
    command: test ! -e ${AGENCY_ROOT}/broken
  - name: report
    scope: fleet
    schedule: "* * * * *"
    expect_within: 1m
    command: echo report
"""


@pytest.fixture
def fleet(make_env, tmp_path, pg_url, clean_environ):
    """Three installed hosts sharing `pg_url`: {host name: Env}. web-2's `flaky` fails."""
    hosts = {}
    for name in HOSTS:
        env = make_env(tmp_path / name, manifest=MANIFEST)
        env.add_config(HISTORY_URL=pg_url, HOST_NAME=name, HISTORY_TIMEOUT="3")
        result = env.process("install")
        assert result.returncode == 0, result.stderr
        hosts[name] = env
    (hosts["web-2"].agency_root / "broken").touch()
    return hosts


def run(site, *args, code=0, **options):
    result = site.process(*args, **options)
    assert result.returncode == code, (args, result.stdout, result.stderr)
    return result


def read_json(site, *args, code=0):
    return json.loads(run(site, *args, "--json", code=code).stdout)


def local_counts(env) -> dict[str, dict[str, int]]:
    """A host's own rows, per task and status, from its local SQLite history."""
    conn = sqlite3.connect(env.state_dir / "history.db")
    try:
        rows = conn.execute("SELECT task, status, COUNT(*) FROM runs GROUP BY task, status")
        found: dict[str, dict[str, int]] = {}
        for task, status, count in rows:
            found.setdefault(task, {})[status] = count
        return found
    finally:
        conn.close()


def backdate_install(env, *names: str) -> None:
    """Make the tasks look installed an hour ago (a task that never succeeded is judged
    from its install time)."""
    hour_ago = time.time() - 3600
    for name in names:
        for suffix in ("json", "marshal"):
            path = env.state_dir / "tasks" / f"{name}.{suffix}"
            if path.exists():
                os.utime(path, (hour_ago, hour_ago))


def run_everywhere(fleet) -> None:
    """nightly twice and flaky once on every host, report (fleet scope) on every host."""
    for name, env in fleet.items():
        run(env, "run", "nightly")
        run(env, "run", "nightly")
        run(env, "run", "flaky", code=1 if name == "web-2" else 0)
        run(env, "run", "report")


def test_the_fleet_summary_is_the_union_of_the_hosts_runs(fleet, postgres):
    run_everywhere(fleet)
    own = {name: local_counts(env) for name, env in fleet.items()}
    reader = fleet["web-1"]
    summary = read_json(reader, "log-summary")  # the fleet is log-summary's default
    assert summary["host"] == "all"
    rows = {row["name"]: row for row in summary["tasks"]}
    for task in ("nightly", "flaky", "report"):
        counts = [own[host].get(task, {}) for host in HOSTS]
        runs = sum(n for c in counts for s, n in c.items() if s not in ("skipped",))
        failures = sum(c.get("failed", 0) for c in counts)
        skipped = sum(c.get("skipped", 0) for c in counts)
        assert (rows[task]["runs"], rows[task]["failures"], rows[task]["skipped"]) == (
            runs,
            failures,
            skipped,
        ), task
    assert rows["nightly"]["runs"] == 6 and rows["nightly"]["hosts"] == list(HOSTS)
    assert rows["flaky"]["failures"] == 1
    # The fleet task ran once per fire time: the other hosts recorded `skipped`.
    ran_report = [host for host in HOSTS if own[host].get("report", {}).get("success")]
    assert rows["report"]["hosts"] == ran_report and 1 <= len(ran_report) <= 2
    assert rows["report"]["runs"] + rows["report"]["skipped"] == 3

    # One host's own view: its rows, and every host's rows of the fleet task.
    mine = read_json(reader, "log-summary", "--host", "web-0")
    assert mine["host"] == "web-0"
    row = {r["name"]: r for r in mine["tasks"]}
    assert row["nightly"]["runs"] == own["web-0"]["nightly"]["success"] == 2
    assert row["nightly"]["hosts"] == ["web-0"]
    assert row["report"]["runs"] == rows["report"]["runs"]

    # The table: a hosts column, readable at 80 columns.
    table = run(reader, "log-summary", env={"COLUMNS": "80"}).stdout
    assert "hosts" in table and "3 hosts" in table
    assert max(len(line) for line in table.splitlines()) <= 80, table


def test_status_shows_this_host_by_default_and_any_host_by_name(fleet):
    run_everywhere(fleet)
    reader = fleet["web-1"]
    default = {row["name"]: row for row in read_json(reader, "status")}
    assert {row["host"] for row in default.values()} == {"web-1"}
    assert default["nightly"]["runs"] == 2 and default["nightly"]["hosts"] == ["web-1"]
    other = read_json(reader, "status", "flaky", "--host", "web-2")
    assert other["host"] == "web-2" and other["hosts"] == ["web-2"]
    assert (other["runs"], other["failures"], other["state"]) == (1, 1, "failing")
    everyone = {row["name"]: row for row in read_json(reader, "status", "--host", "all")}
    assert everyone["nightly"]["runs"] == 6 and everyone["nightly"]["hosts"] == list(HOSTS)
    assert everyone["flaky"]["successes"] == 2 and everyone["flaky"]["failures"] == 1
    table = run(reader, "status", "--host", "all", env={"COLUMNS": "80"}).stdout
    assert "hosts" in table.splitlines()[0] and "3 hosts" in table, table
    assert max(len(line) for line in table.splitlines()) <= 80, table
    # A host-scoped task of one host's: one host reported, no host column.
    assert " hosts " not in run(reader, "status", "nightly", env={"COLUMNS": "80"}).stdout


def test_history_of_the_fleet_names_each_rows_host(fleet):
    run_everywhere(fleet)
    reader = fleet["web-0"]
    rows = read_json(reader, "history", "nightly", "--host", "all")
    assert sorted(row["host"] for row in rows) == sorted(HOSTS * 2)
    assert [row["host"] for row in read_json(reader, "history", "nightly")] == ["web-0"] * 2
    table = run(reader, "history", "nightly", "--host", "all", env={"COLUMNS": "80"}).stdout
    header = next(line for line in table.splitlines() if "run id" in line)
    assert "host" in header, table
    for host in HOSTS:
        assert host in table
    assert max(len(line) for line in table.splitlines()) <= 80, table
    own = run(reader, "history", "nightly", env={"COLUMNS": "80"}).stdout
    assert "host" not in next(line for line in own.splitlines() if "run id" in line)


def test_overdue_in_the_fleet_view(fleet):
    """flaky is overdue where one host (web-2) stopped succeeding; report, a fleet task,
    is on time on every host as long as one host succeeded, whichever it was."""
    run_everywhere(fleet)
    reader = fleet["web-1"]
    backdate_install(reader, "flaky", "report")
    health = read_json(reader, "health", code=1)
    assert health["host"] == "all" and health["healthy"] is False
    assert [(item["name"], item["hosts"]) for item in health["overdue"]] == [("flaky", ["web-2"])]
    assert "on web-2: never succeeded" in health["overdue"][0]["reason"]
    summary = {r["name"]: r for r in read_json(reader, "log-summary")["tasks"]}
    assert (summary["flaky"]["overdue"], summary["report"]["overdue"]) == (True, False)
    for host in ("web-0", "web-1"):  # report skipped on some of them: still on time
        mine = read_json(reader, "health", "--host", host)
        assert (mine["host"], mine["healthy"], mine["overdue"]) == (host, True, [])
    web2 = read_json(reader, "health", "--host", "web-2", code=1)
    assert [item["name"] for item in web2["overdue"]] == ["flaky"]
    assert web2["overdue"][0]["hosts"] == []  # one host's view names no host


def test_without_the_shared_history_another_host_shows_nothing(make_env, tmp_path):
    env = make_env(tmp_path / "alone", manifest=MANIFEST.replace("    scope: fleet\n", ""))
    run(env, "install")
    run(env, "run", "nightly")
    name = os.uname().nodename
    assert [row["host"] for row in read_json(env, "history", "nightly")] == [name]
    assert read_json(env, "history", "nightly", "--host", "all")[0]["host"] == name
    assert read_json(env, "history", "nightly", "--host", "other") == []
    other = read_json(env, "status", "nightly", "--host", "other")
    assert (other["host"], other["runs"], other["hosts"]) == ("other", 0, [])
    summary = read_json(env, "log-summary", "--host", "other")
    assert summary["host"] == "other"
    assert sum(row["runs"] for row in summary["tasks"]) == 0
    fleet = read_json(env, "log-summary")
    assert {r["name"]: r["runs"] for r in fleet["tasks"]}["nightly"] == 1


def test_with_postgresql_stopped(fleet, postgres):
    """status (this host) falls back to the local history with one warning; the fleet's
    readers exit 1 with one line; the password shows nowhere."""
    run_everywhere(fleet)
    reader = fleet["web-1"]
    outputs = []
    postgres.stop()
    try:
        for args in (("status", "--json"), ("status",), ("history", "nightly", "--json")):
            result = run(reader, *args, env={"AGENCY_CRON_NO_QUICK": ""})
            outputs.append(result.stdout + result.stderr)
            warnings = result.stderr.splitlines()
            assert len(warnings) == 1 and warnings[0].startswith("agency-cron: warning:"), args
            assert "local history" in warnings[0]
        rows = {row["name"]: row for row in json.loads(run(reader, "status", "--json").stdout)}
        assert rows["nightly"]["runs"] == 2 and rows["nightly"]["host"] == "web-1"
        for args in (
            ("log-summary",),
            ("log-summary", "--json"),
            ("health",),
            ("status", "--host", "all"),
            ("history", "nightly", "--host", "web-0"),
            ("metrics",),
            ("dashboard",),
        ):
            result = run(reader, *args, code=1)
            outputs.append(result.stdout + result.stderr)
            lines = result.stderr.splitlines()
            assert len(lines) == 1 and lines[0].startswith("agency-cron: error:"), (args, lines)
            assert "Traceback" not in result.stderr and result.stdout == "", args
            assert "--host web-1" in lines[0]  # what still works
    finally:
        postgres.start()
    for text in outputs:
        assert postgres.password not in text
    # Back again: the fleet's figures, nothing lost.
    nightly = {r["name"]: r for r in read_json(reader, "log-summary")["tasks"]}["nightly"]
    assert nightly["runs"] == 6


def test_serve_reports_take_a_host(make_server, make_env, tmp_path, pg_url, postgres):
    """serve's report endpoints: `?host=NAME|all`, the fleet by default; 503 with one
    line when the shared history is away (this host still answers)."""
    shared = {"HISTORY_URL": pg_url, "HISTORY_TIMEOUT": "3"}
    server = make_server(environ={**shared, "HOST_NAME": "api-host"})
    run(server.env, "run", "hourly", env={**shared, "HOST_NAME": "api-host"})
    other = make_env(
        tmp_path / "web-x",
        manifest="tasks:\n  - {name: hourly, schedule: '@hourly', command: 'true'}\n",
    )
    other.add_config(HISTORY_URL=pg_url, HOST_NAME="web-x")
    run(other, "install")
    run(other, "run", "hourly")
    with server.client() as client:
        summary = client.get("/api/summary").json()
        hourly = {row["name"]: row for row in summary["tasks"]}["hourly"]
        assert (summary["host"], hourly["runs"], hourly["hosts"]) == (
            "all",
            2,
            ["api-host", "web-x"],
        )
        one = client.get("/api/summary", params={"host": "web-x"}).json()
        assert {row["name"]: row for row in one["tasks"]}["hourly"]["runs"] == 1
        page = client.get("/api/tasks/hourly/executions", params={"host": "web-x"}).json()
        assert [item["host"] for item in page["items"]] == ["web-x"] and page["total"] == 1
        everyone = client.get("/api/tasks/hourly/executions").json()
        assert sorted(item["host"] for item in everyone["items"]) == ["api-host", "web-x"]
        run_id = page["items"][0]["run_id"]
        assert client.get(f"/api/runs/{run_id}").json()["attempts"][0]["host"] == "web-x"
        assert client.get("/api/health").json()["host"] == "all"
        assert 'host="web-x"' in client.get("/metrics", params={"host": "web-x"}).text
        assert client.get("/api/dashboard").json()["hosts"] == ["api-host", "web-x"]
        postgres.stop()
        try:
            away = client.get("/api/summary")
            assert away.status_code == 503, away.text
            assert postgres.password not in away.text and "--host api-host" in away.text
            mine = client.get("/api/summary", params={"host": "api-host"})
            assert mine.status_code == 200, mine.text
        finally:
            postgres.start()
    assert postgres.password not in server.output()
