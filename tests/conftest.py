"""Shared fixtures: a throwaway agency-cron installation under tmp_path, and CLI drivers.

Everything is real: the crontab binary, logrotate, SQLite. `file:` targets keep most tests
away from the machine's crontabs; tests of `user:NAME` use a throwaway system user.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

from agency_cron.cli import main as cli_main

REPO = Path(__file__).resolve().parent.parent


@dataclass
class Env:
    root: Path
    config: Path
    manifest: Path
    crontab: Path

    @property
    def agency_root(self) -> Path:
        return self.root / "agency"

    @property
    def log_dir(self) -> Path:
        return self.root / "log"

    @property
    def state_dir(self) -> Path:
        return self.root / "state"

    @property
    def logrotate_dir(self) -> Path:
        return self.root / "logrotate.d"

    def write_manifest(self, text: str) -> Path:
        self.manifest.write_text(textwrap.dedent(text))
        return self.manifest

    def args(self, *rest: str) -> list[str]:
        return ["--config", str(self.config), "--manifest", str(self.manifest), *rest]

    def snapshot(self) -> dict[str, tuple[bytes, int, int]]:
        """Every file under root with its bytes, mode and mtime (ns)."""
        found = {}
        for path in sorted(self.root.rglob("*")):
            if path.is_file() and "history.db" not in path.name and path.suffix != ".lock":
                stat = path.stat()
                found[str(path)] = (path.read_bytes(), stat.st_mode, stat.st_mtime_ns)
        return found


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Env:
    root = tmp_path / "site"
    root.mkdir()
    config = root / "config.env"
    crontab = root / "crontab"
    config.write_text(
        textwrap.dedent(
            f"""\
            # test installation
            AGENCY_ROOT={root}/agency
            LOG_DIR={root}/log
            STATE_DIR={root}/state
            LOGROTATE_DIR={root}/logrotate.d
            CRONTAB=file:{crontab}
            """
        )
    )
    (root / "logrotate.d").mkdir()
    for key in ("AGENCY_CRON_CONFIG", "AGENCY_CRON_MANIFEST", "CRONTAB", "AGENCY_ROOT"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # install fingerprints
    return Env(root=root, config=config, manifest=root / "tasks.yaml", crontab=crontab)


@pytest.fixture
def cli(capsys):
    """Run the CLI in-process: returns (exit code, stdout, stderr)."""

    def run(*args: str) -> tuple[int, str, str]:
        code = cli_main(list(args))
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return run


def run_cli(
    *args: str, env: dict | None = None, timeout: float = 120
) -> subprocess.CompletedProcess:
    """Run `python -m agency_cron` as a real process (for exit codes and stderr as users see them)."""
    return subprocess.run(
        [sys.executable, "-m", "agency_cron", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "NO_COLOR": "1", **(env or {})},
        check=False,
    )


@pytest.fixture
def cli_process():
    """run_cli as a fixture (tests import nothing from conftest under importlib mode)."""
    return run_cli
