"""Helpers shared by the benchmarks: throwaway installations, a throwaway user, statistics.

Benchmarks run by hand (`python bench/install.py`), never in the test suite;
each prints ratios against a reference measured in the same run, so the numbers travel
between machines better than absolute times do.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

# The process environment overrides config.env (config.py), so a benchmark drops these.
OVERRIDING = (
    "AGENCY_ROOT",
    "LOG_DIR",
    "STATE_DIR",
    "LOGROTATE_DIR",
    "CRONTAB",
    "AGENCY_CRON_CONFIG",
    "AGENCY_CRON_MANIFEST",
    "AGENCY_CRON_NO_CRON_LOG",
    "ALERT_URLS",
    "ALERT_ON_FAILURE",
)


def clean_env(**extra: str) -> dict[str, str]:
    """The environment for a child: no agency-cron overrides, no colour, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if k not in OVERRIDING}
    env["NO_COLOR"] = "1"
    env.update(extra)
    return env


def agency_cron_cmd() -> list[str]:
    """The console script beside the interpreter running the benchmark (the venv's)."""
    script = Path(sys.executable).parent / "agency-cron"
    return [str(script)] if script.exists() else [sys.executable, "-m", "agency_cron"]


@dataclass
class Site:
    """One isolated installation: config.env pointing every folder under `root`."""

    root: Path
    crontab: str  # the CRONTAB= value

    @property
    def config(self) -> Path:
        return self.root / "config.env"

    @property
    def manifest(self) -> Path:
        return self.root / "tasks.yaml"

    @property
    def agency_root(self) -> Path:
        return self.root / "agency"

    @property
    def log_dir(self) -> Path:
        return self.root / "log"

    @property
    def state_dir(self) -> Path:
        return self.root / "state"

    def wrapper(self, name: str) -> Path:
        return self.agency_root / "scripts" / "cronjobs" / f"{name}.sh"

    def spec(self, name: str) -> Path:
        return self.state_dir / "tasks" / f"{name}.json"

    def cli(self, *args: str) -> list[str]:
        return [
            *agency_cron_cmd(),
            "--config",
            str(self.config),
            "--manifest",
            str(self.manifest),
            *args,
        ]


def make_site(parent: Path, name: str, crontab: str | None = None) -> Site:
    """A fresh installation folder under `parent` (CRONTAB defaults to a file inside it)."""
    root = parent / name
    if root.exists():
        shutil.rmtree(root)
    (root / "logrotate.d").mkdir(parents=True)
    site = Site(root, crontab or f"file:{root / 'crontab'}")
    site.config.write_text(
        f"# benchmark installation\n"
        f"AGENCY_ROOT={site.agency_root}\n"
        f"LOG_DIR={site.log_dir}\n"
        f"STATE_DIR={site.state_dir}\n"
        f"LOGROTATE_DIR={root / 'logrotate.d'}\n"
        f"CRONTAB={site.crontab}\n"
    )
    return site


def timed(cmd: list[str], **kwargs) -> tuple[float, subprocess.CompletedProcess]:
    """Wall seconds of one run of `cmd` (output captured), and its result."""
    kwargs.setdefault("stdout", subprocess.PIPE)
    kwargs.setdefault("stderr", subprocess.PIPE)
    start = time.perf_counter()
    result = subprocess.run(cmd, check=False, **kwargs)
    return time.perf_counter() - start, result


def checked(result: subprocess.CompletedProcess, what: str) -> subprocess.CompletedProcess:
    if result.returncode != 0:
        err = result.stderr.decode(errors="replace") if result.stderr else ""
        out = result.stdout.decode(errors="replace") if result.stdout else ""
        sys.exit(f"bench: {what} failed (exit {result.returncode}):\n{err[-2000:]}{out[-2000:]}")
    return result


def median(values: list[float]) -> float:
    return statistics.median(values)


def percentile(values: list[float], pct: float) -> float:
    """Nearest-rank percentile (pct in 0..100)."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(pct / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


@contextlib.contextmanager
def scratch(prefix: str) -> Iterator[Path]:
    """A temporary folder under /tmp, removed afterwards even on Ctrl-C."""
    folder = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@contextlib.contextmanager
def throwaway_user(prefix: str = "acbench") -> Iterator[str]:
    """A system user with no home, created for the benchmark and deleted (crontab too) after.

    Needs root. SIGTERM is turned into KeyboardInterrupt so the cleanup still runs.
    """
    if os.geteuid() != 0:
        sys.exit("bench: needs root for the throwaway user (useradd, crontab -u)")
    name = f"{prefix}{os.getpid()}"
    subprocess.run(
        ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name],
        check=True,
    )
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        yield name
    finally:
        subprocess.run(["crontab", "-u", name, "-r"], capture_output=True, check=False)
        subprocess.run(["userdel", name], capture_output=True, check=False)
        signal.signal(signal.SIGTERM, previous)


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def remove_user_crontab(user: str) -> None:
    subprocess.run(["crontab", "-u", user, "-r"], capture_output=True, check=False)
