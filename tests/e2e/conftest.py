"""Fixtures for the end-to-end tests: the real Debian cron daemon, a throwaway site, a user.

These tests change the machine (a system user, a crontab, possibly a file in /etc/cron.d,
a cron daemon) and clean every bit of it up again; they need root and /usr/sbin/cron.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest

CRON = "/usr/sbin/cron"
CRON_PIDFILE = Path("/run/crond.pid")


def _needs_root_and_cron() -> None:
    if os.geteuid() != 0:
        pytest.fail("the cron daemon end-to-end test needs root (useradd, crontab -u, cron)")
    if not os.access(CRON, os.X_OK) or not shutil.which("crontab"):
        pytest.fail(
            f"{CRON} or crontab is not installed (make test installs it: apt-get install cron)"
        )


def cron_pids() -> list[int]:
    """Live processes named `cron` (what /proc/PID/comm says), zombies left out."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            comm = Path(f"/proc/{entry}/comm").read_text().strip()
            state = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if comm == "cron" and state not in ("Z", "X"):
            found.append(int(entry))
    return sorted(found)


def pidfile_pid() -> int | None:
    """The pid written in /run/crond.pid (cron leaves the file behind when it stops)."""
    try:
        return int(CRON_PIDFILE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


@dataclass
class CronDaemon:
    """The cron daemon the test relies on: one already running, or one started here."""

    log: Path
    process: subprocess.Popen | None = None
    reused: int | None = None
    notes: list[str] = field(default_factory=list)

    def ensure_running(self) -> None:
        if self.process is not None or self.reused is not None:
            return
        # A daemon in this pid namespace has comm "cron" (whether or not its pid file
        # survives); one out of sight is caught below by the pid file's lock.
        running = cron_pids()
        if running:
            self.reused = running[0]
            self.notes.append(f"reused the running cron daemon (pid {self.reused})")
            return
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [CRON, "-f"], stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT
            )
        # A second daemon (one in another pid namespace, say) exits at once because it
        # cannot lock /run/crond.pid: that one is running, so it is reused.
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline and self.process.poll() is None:
            time.sleep(0.1)
        if self.process.poll() is not None:
            output = self.log.read_text(errors="replace")
            self.process = None
            if "lock" in output.lower():  # "can't lock /var/run/crond.pid, otherpid may be N"
                self.reused = pidfile_pid() or -1
                self.notes.append(f"cron -f could not lock the pid file: reused {self.reused}")
                return
            pytest.fail(f"{CRON} -f exited at once:\n{output}")
        self.notes.append(f"started {CRON} -f (pid {self.process.pid})")

    def describe(self) -> str:
        output = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "; ".join(self.notes) + (f"\ncron output:\n{output}" if output else "")

    def stop(self) -> None:
        if self.process is None:
            return  # never stop a daemon this test did not start
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        # cron leaves its pid file behind; take it away when it names the daemon started here.
        if pidfile_pid() == self.process.pid:
            with contextlib.suppress(OSError):
                CRON_PIDFILE.unlink()
        self.process = None


@pytest.fixture
def cron_daemon(site: Path):
    """A CronDaemon; call ensure_running() once the crontab is in place (a daemon started
    after the install reads it at start-up instead of at the next minute's check)."""
    _needs_root_and_cron()
    daemon = CronDaemon(log=site / "cron-daemon.out")
    try:
        yield daemon
    finally:
        daemon.stop()


@pytest.fixture
def site(shared_root: Path) -> Path:
    """A site folder under /tmp that other users can enter (tmp_path's parents are 0700);
    tests lay the installation out in it with make_env (tests/conftest.py)."""
    _needs_root_and_cron()
    return shared_root


@pytest.fixture
def throwaway_user(make_user) -> str:
    """A system user with a home, removed with its crontab (and home) afterwards."""
    _needs_root_and_cron()
    return make_user("acrone2e", home=True, digits=8)


@pytest.fixture
def can_run_python_as():
    """can_run_python_as(user) -> (ok, output): can `user` run this interpreter and import
    the runner, with cron's PATH and nothing else in the environment?"""
    return _can_run_python_as


def _can_run_python_as(user: str) -> tuple[bool, str]:
    result = subprocess.run(
        [
            "runuser",
            "-u",
            user,
            "--",
            "env",
            "-i",
            "PATH=/usr/bin:/bin",
            sys.executable,
            "-c",
            "import agency_cron.runner",
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    return result.returncode == 0, (result.stdout + result.stderr).strip()


@pytest.fixture
def cron_d_file():
    """A path in /etc/cron.d for this test (no dot in the name: cron would skip it)."""
    _needs_root_and_cron()
    path = Path(f"/etc/cron.d/agency_cron_e2e_{uuid.uuid4().hex[:8]}")
    try:
        yield path
    finally:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


@pytest.fixture
def agency_cron():
    """agency_cron(site, environ, *args): `python -m agency_cron` on the site's config.env and
    tasks.yaml as a real process, in that environment (cli_env)."""
    return _agency_cron


def _agency_cron(site: Path, environ: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "agency_cron", "--config", str(site / "config.env"),
         "--manifest", str(site / "tasks.yaml"), *args],
        capture_output=True,
        text=True,
        env=environ,
        timeout=120,
        check=False,
    )  # fmt: skip


@pytest.fixture
def read():
    """read(path) -> the file's text, or a note that it does not exist (for failure messages
    about a log cron may not have written yet)."""
    return _read


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except FileNotFoundError:
        return f"<{path} does not exist>"


@pytest.fixture
def cli_env(config_keys) -> dict[str, str]:
    """The environment for CLI processes: no config keys inherited (config_keys), no colour."""
    env = {k: v for k, v in os.environ.items() if k not in config_keys}
    env["NO_COLOR"] = "1"
    return env


# --- a headless browser: Debian's chromium driven by Playwright (never a downloaded one) ----

CHROMIUM = os.environ.get("AGENCY_CRON_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def browser():
    """One headless system chromium per module (a launch costs about a second). A missing
    playwright or chromium fails the test: make test installs both."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail(
            "BROWSER TEST NOT RUN: the playwright package is missing (pip install playwright)"
        )
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"BROWSER TEST NOT RUN: {CHROMIUM} is missing (apt-get install chromium)")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield launched
        finally:
            launched.close()
