"""Shared fixtures: a throwaway agency-cron installation under tmp_path, and CLI drivers.

Everything is real: the crontab binary, logrotate, SQLite. `file:` targets keep most tests
away from the machine's crontabs; tests of `user:NAME` use a throwaway system user.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import textwrap
import time
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


# --- agency-cron serve, started for real --------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class Serving:
    """A running `agency-cron serve`: its base URL, process and output file."""

    url: str
    process: subprocess.Popen
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")


@contextlib.contextmanager
def _serving(options: list[str], log: Path, *extra: str, environ=None, cwd=None, wait=True):
    """`python -m agency_cron OPTIONS serve --port P EXTRA` on a free loopback port, until
    the block ends; with `wait`, only once /openapi.json answers."""
    import httpx

    port = free_port()
    with open(log, "wb") as handle:
        process = subprocess.Popen(
            [sys.executable, "-m", "agency_cron", *options, "serve", "--port", str(port), *extra],
            stdout=handle,
            stderr=subprocess.STDOUT,
            env={**os.environ, "NO_COLOR": "1"} if environ is None else environ,
            cwd=cwd,
        )
    server = Serving(f"http://127.0.0.1:{port}", process, log)
    try:
        deadline = time.monotonic() + 30
        while wait:
            if process.poll() is not None:
                raise AssertionError(f"serve exited with {process.returncode}:\n{server.output()}")
            try:
                if httpx.get(f"{server.url}/openapi.json", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"serve did not answer within 30s:\n{server.output()}")
            time.sleep(0.1)
        yield server
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@pytest.fixture(scope="session")
def serving():
    """with serving(["--config", C, "--manifest", M], LOG, *args, environ=ENV) as server:
    a real `agency-cron serve` on 127.0.0.1, stopped when the block ends. `environ` is the
    server's whole environment (default: this process's, without colour)."""
    return _serving
