"""End to end: the real cron daemon runs a cron.d task as a throwaway system user, and that
run is in `history` and `status` read by root.

Nothing is handed over by the test: install (as root) gives the user its spec, logs, lock
and its own history database under STATE_DIR/history.d; STATE_DIR and history.db stay
root's. The cron.d file is a real one in /etc/cron.d (root-owned, 0644, no dot in its name),
removed afterwards with the user and the site. Run under `flock /tmp/agency-crond.lock`.
"""

from __future__ import annotations

import json
import pwd
import re
import stat
import time
import uuid

import pytest

WAIT_S = 150  # cron reads a changed cron.d file at the next minute, then runs the job


@pytest.mark.slow
def test_cron_runs_a_cron_d_task_as_another_user_and_history_shows_it(
    site, cron_daemon, throwaway_user, cron_d_file, cli_env, make_env, agency_cron, python_for, read
):
    name = f"e2e-user-{uuid.uuid4().hex[:8]}"
    marker = f"e2e-{uuid.uuid4().hex}"
    log_dir, state_dir = site / "log", site / "state"
    cli_env["AGENCY_CRON_PYTHON"] = python_for(throwaway_user)
    make_env(
        site,
        crontab=f"system:{cron_d_file}",
        manifest=f"""\
            tasks:
              - name: {name}
                description: run by the real cron daemon as another user
                schedule: "* * * * *"
                command: echo {marker} user=$(id -un)
                timeout: 1m
                user: {throwaway_user}
            """,
    )
    installed = agency_cron(site, cli_env, "install")
    try:
        assert installed.returncode == 0, installed.stdout + installed.stderr
        wrapper = site / "agency" / "scripts" / "cronjobs" / f"{name}.sh"
        assert f"* * * * * {throwaway_user} {wrapper} # agency-cron:{name}" in read(cron_d_file)
        info = cron_d_file.stat()
        assert info.st_uid == 0 and stat.S_IMODE(info.st_mode) == 0o644
        assert state_dir.stat().st_uid == 0  # nothing handed over by hand

        cron_daemon.ensure_running()
        task_log = log_dir / f"{name}.log"
        success = re.compile(rf"agency-cron: end task={re.escape(name)} .* exit=0 status=success$")
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline:
            text = read(task_log)
            if marker in text and any(success.search(line) for line in text.splitlines()):
                break
            time.sleep(1)
        else:
            pytest.fail(
                f"cron did not run {name} within {WAIT_S}s\n"
                f"daemon: {cron_daemon.describe()}\ncron.d:\n{read(cron_d_file)}\n"
                f"task log:\n{read(task_log)}\n"
                f"cron log:\n{read(log_dir / 'cron' / f'{name}.sh.log')}"
            )
        assert f"{marker} user={throwaway_user}" in read(task_log)
        assert "could not record" not in read(task_log)

        shown = agency_cron(site, cli_env, "history", name, "--json")
        assert shown.returncode == 0, shown.stderr
        rows = json.loads(shown.stdout)
        assert any(r["status"] == "success" and r["exit_code"] == 0 for r in rows), rows
        status = json.loads(agency_cron(site, cli_env, "status", name, "--json").stdout)
        assert status["state"] in ("ok", "running") and status["successes"] >= 1, status
        # recorded as the user, in its own database; root's stays root's
        database = state_dir / "history.d" / throwaway_user / "history.db"
        assert database.stat().st_uid == pwd.getpwnam(throwaway_user).pw_uid
        assert (state_dir / "history.db").stat().st_uid == 0
        print(f"cron.d {cron_d_file} as {throwaway_user}; {cron_daemon.describe()}")
    finally:
        removed = agency_cron(site, cli_env, "uninstall", "--purge")
        assert removed.returncode == 0, removed.stdout + removed.stderr
        assert f"agency-cron:{name}" not in read(cron_d_file)
