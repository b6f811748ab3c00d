"""Runs of tasks that run as another user reach the history, and no user can touch another's.

Real parts only: throwaway system users (useradd, removed afterwards), the wrapper run as
that user through `runuser` with cron's bare environment, SQLite files, the real `crontab`
binary for `user:NAME`, a real `agency-cron serve` for the API. The site lives in a folder
under /tmp that other users can enter (tmp_path's parents are 0700).
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import sqlite3
import stat
import subprocess
import textwrap
import time
from pathlib import Path

import httpx
import pytest

from agency_cron import history

READ_TOKEN = "read-0123456789abcdef-other-users"
ADMIN_TOKEN = "admin-0123456789abcdef-other-users"
BARE_ENV = ["env", "-i", "PATH=/usr/bin:/bin"]  # what cron gives a job


# --- fixtures ------------------------------------------------------------------------------


@pytest.fixture
def users(make_user):
    """Two throwaway system users: agcron-u1..., agcron-u2..."""
    return [make_user("agcron-u1-"), make_user("agcron-u2-")]


class Site:
    """A throwaway installation under /tmp, driven through the real CLI."""

    def __init__(self, root: Path, cli, make_env):
        self.root, self._cli, self._make_env = root, cli, make_env
        self.state_dir, self.log_dir = root / "state", root / "log"
        self.config, self.manifest = root / "config.env", root / "tasks.yaml"

    def configure(self, target: str) -> None:
        self._make_env(
            self.root,
            crontab=target,
            config=f"ADMIN_TOKEN={ADMIN_TOKEN}\nADMIN_READ_TOKEN={READ_TOKEN}\n",
        )
        self.config.chmod(0o600)

    def cli(self, *args: str) -> tuple[int, str, str]:
        return self._cli("--config", str(self.config), "--manifest", str(self.manifest), *args)

    def json(self, *args: str):
        code, out, err = self.cli(*args, "--json")
        assert code in (0, 1), err
        return json.loads(out)

    def install(self, manifest: str) -> None:
        self.manifest.write_text(textwrap.dedent(manifest))
        code, out, err = self.cli("install")
        assert code == 0, out + err

    def wrapper(self, name: str) -> Path:
        return self.root / "agency" / "scripts" / "cronjobs" / f"{name}.sh"

    def run_as(self, user: str | None, name: str, *extra_env: str) -> subprocess.CompletedProcess:
        """The task's wrapper as `user` (root when None), in cron's bare environment."""
        prefix = ["runuser", "-u", user, "--"] if user else []
        return subprocess.run(
            [*prefix, *BARE_ENV, *extra_env, str(self.wrapper(name))],
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
            cwd="/",
        )

    def user_db(self, user: str) -> Path:
        return self.state_dir / "history.d" / user / "history.db"


@pytest.fixture
def site(cli, users, monkeypatch, shared_root, make_env, clean_environ, python_for):
    monkeypatch.setenv("AGENCY_CRON_PYTHON", python_for(users[0]))
    return Site(shared_root, cli, make_env)


def _by_name(rows: list[dict]) -> dict[str, dict]:
    return {row["name"]: row for row in rows}


def _age_spec(site: Site, name: str, days: int = 3) -> None:
    """Installed long ago: a task that never succeeded since is overdue for `health`."""
    spec = site.state_dir / "tasks" / f"{name}.json"
    moment = time.time() - days * 86400
    os.utime(spec, (moment, moment))


def _rows(path: Path) -> list[tuple[str, str]]:
    with sqlite3.connect(path) as conn:
        return conn.execute("SELECT task, status FROM runs ORDER BY id").fetchall()


# --- cron.d: `user:` per task -----------------------------------------------------------


CRON_D_MANIFEST = """\
tasks:
  - name: as-user
    schedule: "0 3 * * *"
    command: echo ran as $(id -un)
    user: {user}
  - name: as-root
    schedule: "0 4 * * *"
    command: echo ran as $(id -un)
  - name: as-user-never
    schedule: "0 5 * * *"
    command: "true"
    user: {user}
"""


def test_cron_d_user_task_reaches_every_report(site, users):
    user = users[0]
    site.configure(f"system:{site.root}/cron.d/agency_stack")
    site.install(CRON_D_MANIFEST.format(user=user))
    for name in ("as-user", "as-user-never", "as-root"):
        _age_spec(site, name)

    # install created the user's history: a folder of its own in root's history.d
    entry = pwd.getpwnam(user)
    folder = site.user_db(user).parent
    assert (folder.stat().st_uid, stat.S_IMODE(folder.stat().st_mode)) == (entry.pw_uid, 0o750)
    base = folder.parent.stat()
    assert (base.st_uid, stat.S_IMODE(base.st_mode)) == (0, 0o755)
    assert site.user_db(user).stat().st_uid == entry.pw_uid

    ran = site.run_as(user, "as-user")
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert f"ran as {user}" in ran.stdout and "warning" not in ran.stdout
    assert site.run_as(None, "as-root").returncode == 0

    # each run is in the database of the user it ran as, and only there
    assert _rows(site.user_db(user)) == [("as-user", "success")]
    assert _rows(site.state_dir / "history.db") == [("as-root", "success")]

    status = _by_name(site.json("status"))
    for name in ("as-user", "as-root"):
        assert (status[name]["state"], status[name]["runs"]) == ("ok", 1), status[name]
    assert status["as-user-never"]["state"] == "never-run"

    rows = site.json("history", "as-user")
    assert [(r["status"], r["exit_code"]) for r in rows] == [("success", 0)]

    summary = _by_name(site.json("log-summary")["tasks"])
    assert summary["as-user"]["runs"] == 1 and summary["as-user"]["last_status"] == "success"
    assert summary["as-root"]["runs"] == 1

    health = site.json("health")
    assert [item["name"] for item in health["overdue"]] == ["as-user-never"]

    code, out, err = site.cli("dashboard", "--out", str(site.root / "dashboard"))
    assert code == 0, out + err
    board = json.loads((site.root / "dashboard" / "dashboard.json").read_text())
    assert _by_name(board["tasks"])["as-user"]["last_status"] == "success"


def test_the_user_runs_again_after_root_read_its_database(site, users):
    """Root's readers open the user's database read-only; any -wal/-shm file they cause
    belongs to the user, so the next run as the user still records."""
    user = users[0]
    site.configure(f"system:{site.root}/cron.d/agency_stack")
    site.install(CRON_D_MANIFEST.format(user=user))
    assert site.run_as(user, "as-user").returncode == 0
    assert _by_name(site.json("status"))["as-user"]["runs"] == 1
    uid = pwd.getpwnam(user).pw_uid
    for path in site.user_db(user).parent.iterdir():
        assert path.stat().st_uid == uid, path
    second = site.run_as(user, "as-user")
    assert "warning" not in second.stdout, second.stdout
    assert _by_name(site.json("status"))["as-user"]["runs"] == 2


# --- a user's crontab ----------------------------------------------------------------------


def test_user_crontab_task_is_recorded(site, users):
    user = users[0]
    site.configure(f"user:{user}")
    site.install(
        """\
        tasks:
          - name: in-crontab
            schedule: "0 3 * * *"
            command: echo from the crontab of $(id -un)
        """
    )
    listed = subprocess.run(["crontab", "-u", user, "-l"], capture_output=True, text=True)
    assert "agency-cron:in-crontab" in listed.stdout
    ran = site.run_as(user, "in-crontab")
    assert ran.returncode == 0 and "warning" not in ran.stdout, ran.stdout + ran.stderr
    status = _by_name(site.json("status"))["in-crontab"]
    assert (status["state"], status["runs"], status["successes"]) == ("ok", 1, 1)
    assert site.json("history", "in-crontab")[0]["status"] == "success"
    assert _by_name(site.json("log-summary")["tasks"])["in-crontab"]["runs"] == 1
    code, out, err = site.cli("uninstall")
    assert code == 0, out + err


# --- systemd `User=` ---------------------------------------------------------------------------


def test_systemd_user_task_is_handed_over_and_recorded(site, users):
    user = users[0]
    units = site.root / "units"
    site.configure(f"systemd:{units}")
    site.install(
        f"""\
        tasks:
          - name: timer-task
            schedule: "0 3 * * *"
            command: echo from a timer as $(id -un)
            user: {user}
        """
    )
    assert f"User={user}" in (units / "agency-cron-timer-task.service").read_text()
    uid = pwd.getpwnam(user).pw_uid
    assert (site.state_dir / "tasks" / "timer-task.json").stat().st_uid == uid
    assert (site.log_dir / "timer-task.log").stat().st_uid == uid
    # what the unit does: the wrapper as User=, AGENCY_CRON_SCHEDULED=systemd
    ran = site.run_as(user, "timer-task", "AGENCY_CRON_SCHEDULED=systemd")
    assert ran.returncode == 0 and "warning" not in ran.stdout, ran.stdout + ran.stderr
    assert _by_name(site.json("status"))["timer-task"]["runs"] == 1


# --- one user cannot touch another's records ---------------------------------------------------


def _as_user_sql(user: str, path: Path, statement: str) -> subprocess.CompletedProcess:
    program = (
        "import sqlite3, sys; conn = sqlite3.connect(sys.argv[1]);"
        " conn.execute(sys.argv[2]); conn.commit()"
    )
    return subprocess.run(
        ["runuser", "-u", user, "--", "/usr/bin/python3", "-c", program, str(path), statement],
        capture_output=True,
        text=True,
        check=False,
        cwd="/",
    )


def test_a_user_cannot_rewrite_or_delete_other_records(site, users):
    u1, u2 = users
    site.configure(f"system:{site.root}/cron.d/agency_stack")
    site.install(
        f"""\
        tasks:
          - name: one
            schedule: "0 3 * * *"
            command: "true"
            user: {u1}
          - name: two
            schedule: "0 3 * * *"
            command: "true"
            user: {u2}
          - name: root-task
            schedule: "0 3 * * *"
            command: exit 3
        """
    )
    for user, name in ((u1, "one"), (u2, "two"), (None, "root-task")):
        site.run_as(user, name)
    root_db = site.state_dir / "history.db"
    before = {p: p.read_bytes() for p in (root_db, site.user_db(u2))}

    for path in (root_db, site.user_db(u2)):
        for statement in ("DELETE FROM runs", "UPDATE runs SET status = 'success'"):
            tried = _as_user_sql(u1, path, statement)
            assert tried.returncode != 0, (path, statement)
            assert "readonly" in tried.stderr or "unable to open" in tried.stderr, tried.stderr
        removed = subprocess.run(["runuser", "-u", u1, "--", "rm", "-f", str(path)], check=False)
        assert removed.returncode != 0 and path.exists()
    assert {p: p.read_bytes() for p in before} == before

    # u1 can write its own file, but rows it forges for other tasks count for nothing
    forged = (
        "INSERT INTO runs (task, run_id, attempt, attempts, started_at, status)"
        " VALUES ('{0}', 'f0f0', 1, 1, '2999-01-01T00:00:00.000+00:00', 'success')"
    )
    for task in ("root-task", "two"):
        assert _as_user_sql(u1, site.user_db(u1), forged.format(task)).returncode == 0
    status = _by_name(site.json("status"))
    assert (status["root-task"]["state"], status["root-task"]["runs"]) == ("failing", 1)
    assert (status["two"]["runs"], status["one"]["runs"]) == (1, 1)
    assert [r["exit_code"] for r in site.json("history", "root-task")] == [3]
    assert "f0f0" not in [r["run_id"] for r in site.json("history", "two")]
    # ...and doctor names them, with the command that removes them
    found = [f for f in _user_findings(site) if not f["ok"]]
    assert len(found) == 1 and "2 run(s) of tasks that do not run as" in found[0]["detail"]
    assert "(root-task, two)" in found[0]["detail"]
    subprocess.run(found[0]["fix"], shell=True, check=True)
    assert _rows(site.user_db(u1)) == [("one", "success")]
    assert [f["ok"] for f in _user_findings(site)] == [True, True]


# --- doctor --------------------------------------------------------------------------------


def _user_findings(site: Site) -> list[dict]:
    report = site.json("doctor")
    return [f for f in report["findings"] if f["check"] == "task-users"]


def test_doctor_reports_a_user_that_cannot_record_or_log(site, users):
    user = users[0]
    site.configure(f"system:{site.root}/cron.d/agency_stack")
    site.install(CRON_D_MANIFEST.format(user=user))
    assert [f["ok"] for f in _user_findings(site)] == [True]

    folder = site.user_db(user).parent
    shutil.rmtree(folder)  # as before this feature: no database the user can write
    ran = site.run_as(user, "as-user")  # the task runs; the runner says what it lost
    assert ran.returncode == 0, ran.stdout + ran.stderr
    # one line on stderr (the runner's, since the STATE_DIR work of issue 10 point 1)
    assert f"warning: as-user: could not record the run in {site.user_db(user)}" in ran.stderr
    os.chown(site.log_dir / "as-user.log", 0, 0)
    found = [f for f in _user_findings(site) if not f["ok"]]
    details = " | ".join(f["detail"] for f in found)
    assert f"{user} cannot create its history database in {folder.parent}" in details
    assert f"{user} cannot write the log {site.log_dir / 'as-user.log'}" in details
    assert all("agency-cron install" in f["fix"] for f in found)
    assert site.cli("doctor")[0] == 1

    site.cli("install")  # puts both right
    assert [f["ok"] for f in _user_findings(site)] == [True]


# --- the API ---------------------------------------------------------------------------------


def test_api_shows_runs_of_other_users(site, users, serving):
    user = users[0]
    site.configure(f"system:{site.root}/cron.d/agency_stack")
    site.install(CRON_D_MANIFEST.format(user=user))
    assert site.run_as(user, "as-user").returncode == 0
    options = ["--config", str(site.config), "--manifest", str(site.manifest)]
    with serving(options, site.root / "serve.out") as server:
        client = httpx.Client(
            base_url=server.url, headers={"Authorization": f"Bearer {READ_TOKEN}"}, timeout=30
        )
        page = client.get("/api/tasks/as-user/executions").json()
        assert page["total"] == 1 and page["items"][0]["status"] == "success"
        run = client.get(f"/api/runs/{page['items'][0]['run_id']}").json()
        assert run["task"] == "as-user" and f"ran as {user}" in "\n".join(run["log_excerpt"])
        board = client.get("/api/dashboard").json()
        assert _by_name(board["tasks"])["as-user"]["runs"] == 1


# --- many users, and a database of an older schema --------------------------------------------


def _fake_user_database(site: Site, number: int, old_schema: bool = False) -> sqlite3.Connection:
    """history.d/fakeN/history.db, later chowned to uid 61000+N (no real user needed)."""
    path = site.state_dir / "history.d" / f"fake{number}" / "history.db"
    path.parent.mkdir(parents=True)
    if not old_schema:
        return history.connect(str(path))
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute(history.MIGRATIONS[1][0])  # the first schema: runs only
    return conn


def _insert_run(conn: sqlite3.Connection, task: str, run_id: str, second: int) -> None:
    conn.execute(
        "INSERT INTO runs (task, run_id, attempt, attempts, started_at, status)"
        f" VALUES (?, ?, 1, 1, '2024-01-01T00:00:{second:02d}.000+00:00', 'success')",
        (task, run_id),
    )


def _insert_check(conn: sqlite3.Connection, component: str, run_id: str) -> None:
    conn.execute(
        "INSERT INTO check_results (kind, component, check_name, ok, checked_at, run_id)"
        " VALUES ('health', ?, 'http', 1, '2024-01-01T00:00:00.000+00:00', ?)",
        (component, run_id),
    )


def test_many_user_databases_and_an_old_schema(site, users):
    """Fourteen users' databases (more than SQLite would attach to one connection), of uids
    without a real user; one has the first schema (no check_results table). Each counts
    for the task whose spec its uid owns, check results too; forged rows count for nothing."""
    count = 14
    site.configure(f"file:{site.root}/crontab")
    tasks = "".join(
        f'  - name: t{i}\n    schedule: "0 3 * * *"\n    command: "true"\n' for i in range(count)
    )
    site.install("tasks:\n" + tasks)
    for i in range(count):
        uid = 61000 + i
        os.chown(site.state_dir / "tasks" / f"t{i}.json", uid, uid)
        conn = _fake_user_database(site, i, old_schema=i == 3)
        _insert_run(conn, f"t{i}", f"r{i}", i)
        if i == 0:
            _insert_check(conn, "web", "r0")
        if i == 1:  # forged: another task's run, a check of a run that is not its own
            _insert_run(conn, "t2", "forged", 59)
            _insert_check(conn, "db", "forged")
        conn.close()
        folder = site.state_dir / "history.d" / f"fake{i}"
        for item in (folder, *folder.iterdir()):
            os.chown(item, uid, uid)
    status = _by_name(site.json("status"))
    assert {name: row["runs"] for name, row in status.items()} == {f"t{i}": 1 for i in range(count)}
    assert [r["run_id"] for r in site.json("history", "t2")] == ["r2"]
    assert [r["run_id"] for r in site.json("history", "t3")] == ["r3"]
    code, out, err = site.cli("dashboard", "--out", str(site.root / "dashboard"))
    assert code == 0, out + err
    board = json.loads((site.root / "dashboard" / "dashboard.json").read_text())
    assert [c["component"] for c in board["health"]] == ["web"]
