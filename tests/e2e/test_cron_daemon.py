"""End to end: the real Debian cron daemon runs an installed task through its wrapper.

Cron gives a job almost nothing: PATH=/usr/bin:/bin, SHELL=/bin/sh, HOME and LOGNAME from
passwd, no terminal. The wrapper must find the venv's python and the task spec and write
both logs and the history from there; that is what this test proves, with `* * * * *`.

Where the task runs:

* `CRONTAB=user:NAME` with a throwaway system user, when that user can run the venv's
  python. The install runs as root (as an operator would) and LOG_DIR and STATE_DIR are
  then handed to the user: the task spec is 0600 and the logs must be writable by the job.
* otherwise `CRONTAB=system:/etc/cron.d/agency_cron_e2e_<random>`, the task running as
  root. This is the case on machines where the venv's python is a symlink into a 0700
  home (pyenv under /root): cron could not start the runner as any other user.

Either way root's own crontab is never touched.
"""

from __future__ import annotations

import json
import re
import shutil
import stat
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

WAIT_S = 150  # cron reads a changed crontab at the next minute, then runs the job


def chown_tree(path: Path, user: str) -> None:
    shutil.chown(path, user, user)
    for child in path.rglob("*"):
        shutil.chown(child, user, user)


@pytest.mark.slow
def test_cron_daemon_runs_the_installed_task(
    site,
    cron_daemon,
    throwaway_user,
    cron_d_file,
    cli_env,
    can_run_python_as,
    make_env,
    agency_cron,
    read,
):
    name = f"e2e-{uuid.uuid4().hex[:8]}"
    marker = f"e2e-{uuid.uuid4().hex}"
    log_dir, state_dir = site / "log", site / "state"
    user_ok, why = can_run_python_as(throwaway_user)
    if user_ok:
        target, runs_as = f"user:{throwaway_user}", throwaway_user
    else:
        target, runs_as = f"system:{cron_d_file}", "root"
    cron_d = target.startswith("system:")

    make_env(
        site,
        crontab=target,
        manifest=f"""\
            tasks:
              - name: {name}
                description: end-to-end run by the real cron daemon
                schedule: "* * * * *"
                command: echo {marker} user=$(id -un) path=$PATH
                timeout: 1m
            """,
    )

    def crontab_text() -> str:
        if cron_d:
            return read(cron_d_file)
        listed = subprocess.run(
            ["crontab", "-u", throwaway_user, "-l"], capture_output=True, text=True
        )
        return listed.stdout + listed.stderr

    installed = agency_cron(site, cli_env, "install", "--crontab", target)
    try:
        assert installed.returncode == 0, installed.stdout + installed.stderr
        wrapper = site / "agency" / "scripts" / "cronjobs" / f"{name}.sh"
        user_field = f"{runs_as} " if cron_d else ""
        entry = f"* * * * * {user_field}{wrapper} # agency-cron:{name}"
        assert entry in crontab_text().splitlines()
        if cron_d:
            info = cron_d_file.stat()
            assert info.st_uid == 0 and stat.S_IMODE(info.st_mode) == 0o644
        else:
            # Installed by root for another user: the job (run as that user) reads its
            # 0600 spec and appends to the logs and the history, so they must be its own.
            chown_tree(log_dir, throwaway_user)
            chown_tree(state_dir, throwaway_user)

        cron_daemon.ensure_running()

        task_log = log_dir / f"{name}.log"
        cron_log = log_dir / "cron" / f"{name}.sh.log"
        success = re.compile(rf"agency-cron: end task={re.escape(name)} .* exit=0 status=success$")
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline:
            text = task_log.read_text(errors="replace") if task_log.exists() else ""
            ended = any(success.search(line) for line in text.splitlines())
            if marker in text and ended and cron_log.exists():
                break
            time.sleep(1)
        else:
            pytest.fail(
                f"cron did not run {name} within {WAIT_S}s (target {target}; "
                f"user target usable: {user_ok} {why})\n"
                f"daemon: {cron_daemon.describe()}\n"
                f"crontab:\n{crontab_text()}\n"
                f"task log:\n{read(task_log)}\ncron log:\n{read(cron_log)}"
            )

        # The run happened under cron: as the expected user, through the wrapper's PATH
        # (the venv first), with the runner's echo in the raw cron log.
        venv_bin = Path(sys.executable).parent
        assert f"{marker} user={runs_as} path={venv_bin}:" in read(task_log)
        assert marker in read(cron_log)

        shown = agency_cron(site, cli_env, "history", name, "--json")
        assert shown.returncode == 0, shown.stderr
        rows = json.loads(shown.stdout)
        assert any(r["status"] == "success" and r["exit_code"] == 0 for r in rows), rows

        removed = agency_cron(site, cli_env, "uninstall", "--purge", "--crontab", target)
        assert removed.returncode == 0, removed.stdout + removed.stderr
        assert f"agency-cron:{name}" not in crontab_text()
        assert not wrapper.exists()
        print(f"target {target} (user target usable: {user_ok}); {cron_daemon.describe()}")
    finally:
        # After a failure: take the line out all the same (the fixtures then remove the
        # cron.d file, the user with its crontab, and the site).
        agency_cron(site, cli_env, "uninstall", "--crontab", target)
