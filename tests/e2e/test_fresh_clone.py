"""A newcomer's day on a fresh clone (issue 9): the README's `make setup-cronjobs`, twice,
into a scratch world; then every manual path of the seed from / in cron's bare
environment; then the clone moved away and deleted, and the jobs still run.

Real parts only: git, make, a runtime venv that pip builds in AGENCY_ROOT/venv, a `file:`
crontab, SQLite, `agency-cron serve` on 127.0.0.1. The tests share one installation and
run in file order (the last one moves the clone).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import socket
import sqlite3
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

# cron's environment: nothing but a PATH without the sbin folders.
BARE = {"PATH": "/usr/bin:/bin", "HOME": "/root", "LANG": "C.UTF-8"}
SEED_SCRIPTS = (
    "health_check_cron.sh",
    "backup_verify_cron.sh",
    "dashboard_update_cron.sh",
    "integrations_refresh_cron.sh",
)
TASKS = ("health-check", "backup-verify", "dashboard-update", "integrations-refresh")
MAKE_RUNS = ("health-check", "verify-backup", "dashboard-update", "log-summary", "list")
# What the process environment would override in config.env (CONTRACT.md).
CONFIG_KEYS = re.compile(r"^(AGENCY_|LOG_DIR$|STATE_DIR$|LOGROTATE_DIR$|CRONTAB$|ALERT_)")
SETUP_TIMEOUT = 600  # a cold runtime venv fetches its dependencies through pip
RUN_TIMEOUT = 120


@dataclass
class World:
    top: Path
    clone: Path
    root: Path
    state: Path
    token: str

    @property
    def agency_cron(self) -> str:
        return str(self.root / "venv" / "bin" / "agency-cron")

    def script(self, name: str) -> str:
        return str(self.root / "scripts" / "cronjobs" / name)


def bare(*command: str, timeout: float = RUN_TIMEOUT, **extra: str) -> subprocess.CompletedProcess:
    """`command` from / with cron's environment (and nothing of ours)."""
    return subprocess.run(
        list(command),
        cwd="/",
        env={**BARE, **extra},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def ok(result: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert result.returncode == 0, (
        f"{result.args} exited {result.returncode}\n{result.stdout}\n{result.stderr}"
    )
    return result


def make(world: World, target: str, timeout: float = RUN_TIMEOUT) -> subprocess.CompletedProcess:
    """`make TARGET` in the clone as an operator's shell would run it (no AGENCY_* set)."""
    env = {k: v for k, v in os.environ.items() if not CONFIG_KEYS.match(k)}
    env["XDG_CACHE_HOME"] = str(world.top / "cache")  # install's fingerprints stay here
    return subprocess.run(
        ["make", "--no-print-directory", target],
        cwd=world.clone,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def snapshot(folder: Path) -> dict[str, tuple]:
    """Every entry under `folder`: its bytes (or link target), mode and mtime."""
    found = {}
    for path in sorted(folder.rglob("*")):
        info = path.lstat()
        if path.is_symlink():
            content: bytes | str = os.readlink(path)
        elif path.is_file():
            content = path.read_bytes()
        else:
            content = "folder"
        found[str(path)] = (content, info.st_mode, info.st_mtime_ns)
    return found


def runs(world: World) -> list[tuple[str, str, str]]:
    with sqlite3.connect(world.state / "history.db") as db:
        return db.execute("SELECT task, run_id, status FROM runs ORDER BY id").fetchall()


def wait_for_run(world: World, run_id: str, timeout: float = RUN_TIMEOUT) -> str:
    """The final status of run `run_id` (a detached run finishes on its own)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        statuses = [status for _, rid, status in runs(world) if rid == run_id]
        if statuses and statuses[-1] != "running":
            return statuses[-1]
        time.sleep(0.2)
    raise AssertionError(f"run {run_id} did not finish within {timeout}s: {runs(world)}")


@contextlib.contextmanager
def serve(world: World):
    """The installed `agency-cron serve`, started from / in the bare environment (it finds
    its config through its venv), on a free loopback port; yields its base URL."""
    import httpx

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    log = world.top / "serve.log"
    with open(log, "wb") as output:
        process = subprocess.Popen(
            [world.agency_cron, "serve", "--port", str(port)],
            cwd="/",
            env={**BARE, "NO_COLOR": "1"},
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, f"serve exited: {log.read_text()}"
            try:
                if httpx.get(f"{url}/openapi.json", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, f"serve did not answer: {log.read_text()}"
            time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)


def repository_head() -> tuple[Path, str]:
    here = Path(__file__).resolve().parent
    git = shutil.which("git")
    assert git, "git is needed to clone the repository (.ci/run installs it)"
    top = subprocess.run(
        [git, "rev-parse", "--show-toplevel"], cwd=here, capture_output=True, text=True
    )
    assert top.returncode == 0, f"the tests must run from a git checkout: {top.stderr}"
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True)
    return Path(top.stdout.strip()), head.stdout.strip()


@pytest.fixture(scope="module")
def world(tmp_path_factory, make_env) -> World:
    """A clone of HEAD whose config.env points every path into a temporary world."""
    top = tmp_path_factory.mktemp("fresh-clone")
    repository, head = repository_head()
    clone = top / "clone"
    ok(subprocess.run(["git", "clone", "--quiet", str(repository), str(clone)], timeout=120))
    ok(subprocess.run(["git", "-C", str(clone), "checkout", "--quiet", "--detach", head]))
    site = top / "world"
    token = secrets.token_urlsafe(24)
    make_env(site, config=f"ADMIN_TOKEN={token}\n", config_file=clone / "config.env")
    return World(top, clone, site / "agency", site / "state", token)


def test_setup_twice_second_changes_nothing(world: World):
    first = ok(make(world, "setup-cronjobs", SETUP_TIMEOUT))
    assert "added" in first.stdout
    assert f"placed {world.root}/config.env" in first.stdout
    before = snapshot(world.top / "world")
    second = ok(make(world, "setup-cronjobs", SETUP_TIMEOUT))
    assert second.stdout.splitlines()[-1] == "no changes", second.stdout
    assert "installing" not in second.stdout and "placed" not in second.stdout
    assert snapshot(world.top / "world") == before
    # The config holds ADMIN_TOKEN: its installed copy is private.
    assert (world.root / "config.env").stat().st_mode & 0o777 == 0o600
    assert (world.root / "tasks.yaml").read_bytes() == (world.clone / "tasks.yaml").read_bytes()


def test_seed_scripts_and_wrappers_from_root_in_bare_env(world: World):
    for script in SEED_SCRIPTS:
        ok(bare(world.script(script)))
        ok(bare(world.script(script), "--alert"))  # no alert target configured
    for task in (*TASKS, "overdue-check"):
        ok(bare(world.script(f"{task}.sh")))
    assert {status for *_, status in runs(world)} == {"success"}


def test_make_targets_in_bare_env(world: World):
    for target in MAKE_RUNS:
        ok(bare("make", "--no-print-directory", "-C", str(world.clone), target))
    assert {status for *_, status in runs(world)} == {"success"}


def test_installed_command_from_root_in_bare_env(world: World):
    # overdue-check runs `agency-cron health`: found on the PATH run gives, as the wrapper does.
    for task in (*TASKS, "overdue-check"):
        ok(bare(world.agency_cron, "run", task))
    started = ok(bare(world.agency_cron, "run", "--detach", "health-check")).stdout
    run_id = re.search(r"\(run ([0-9a-f]{12}),", started).group(1)
    assert wait_for_run(world, run_id) == "success"
    listed = json.loads(ok(bare(world.agency_cron, "list", "--json")).stdout)
    assert [row["name"] for row in listed] == [*TASKS, "overdue-check"]
    summary = json.loads(ok(bare(world.agency_cron, "log-summary", "--json")).stdout)
    assert {row["last_status"] for row in summary["tasks"]} == {"success"}
    assert {status for *_, status in runs(world)} == {"success"}


def test_run_now_through_the_api(world: World):
    import httpx

    with serve(world) as url:
        headers = {"Authorization": f"Bearer {world.token}"}
        for task in ("health-check", "dashboard-update"):
            answer = httpx.post(f"{url}/api/tasks/{task}/actions/run", headers=headers)
            assert answer.status_code == 202, answer.text
            assert wait_for_run(world, answer.json()["run_id"]) == "success"
    assert {status for *_, status in runs(world)} == {"success"}


def test_doctor_finds_nothing_but_the_cron_daemon(world: World):
    result = bare(world.agency_cron, "doctor", "--json")
    report = json.loads(result.stdout)
    failing = [f for f in report["findings"] if not f["ok"]]
    assert {f["check"] for f in failing} <= {"cron-daemon"}, failing
    assert result.returncode == (1 if failing else 0)


def test_checks_recorded_only_successes(world: World):
    with sqlite3.connect(world.state / "history.db") as db:
        outcomes = db.execute("SELECT kind, ok, count(*) FROM check_results GROUP BY 1, 2")
        assert {(kind, ok) for kind, ok, _ in outcomes} == {("health", 1)}


def test_jobs_survive_the_clone_moved_then_deleted(world: World):
    moved = world.top / "moved"
    world.clone.rename(moved)
    count = len(runs(world))
    ok(bare(world.script("health-check.sh")))
    ok(bare(world.script("health_check_cron.sh"), "--alert"))
    shutil.rmtree(moved)
    ok(bare(world.script("dashboard-update.sh")))
    ok(bare(world.agency_cron, "run", "overdue-check"))
    latest = runs(world)[count:]
    assert [(task, status) for task, _, status in latest] == [
        ("health-check", "success"),
        ("dashboard-update", "success"),
        ("overdue-check", "success"),
    ]
