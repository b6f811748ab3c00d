"""The admin API started for real: `python -m agency_cron serve` on 127.0.0.1, over HTTP.

`api` is a running server on a throwaway installation (the `env` fixture's, with a
`file:` crontab holding a foreign line), with an admin and a read-only token.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

ADMIN_TOKEN = "admin-0123456789abcdef-secret"
READ_TOKEN = "read-0123456789abcdef-secret"
FOREIGN = "# someone else's\n0 4 * * * /usr/local/bin/report > /dev/null 2>&1\n"
MANIFEST = """\
tasks:
  - name: nightly
    description: The operator's own task
    schedule: "0 3 * * *"
    command: echo nightly
    tags: [ops]
  - name: hourly
    schedule: "@hourly"
    command: echo hourly
    tags: [ops, reports]
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class Server:
    env: object  # the `env` fixture (tests/conftest.py)
    url: str
    process: subprocess.Popen
    log: Path
    extra_env: dict = field(default_factory=dict)

    def client(self, token: str | None = ADMIN_TOKEN) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30)

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def start_server(env, port: int, *extra: str, environ: dict | None = None):
    log = env.root / f"serve-{port}.log"
    handle = open(log, "wb")  # noqa: SIM115 - kept open for the server's lifetime
    process = subprocess.Popen(
        [sys.executable, "-m", "agency_cron", *env.args("serve", "--port", str(port), *extra)],
        stdout=handle,
        stderr=subprocess.STDOUT,
        env={**os.environ, "NO_COLOR": "1", **(environ or {})},
    )
    handle.close()
    return process, log


def wait_until_up(url: str, process: subprocess.Popen, log: Path, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"serve exited with {process.returncode}:\n{log.read_text()}")
        try:
            if httpx.get(f"{url}/openapi.json", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"serve did not answer within {seconds}s:\n{log.read_text()}")


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture
def api_config(env):
    """The env fixture's installation with tokens, the operator's manifest and a foreign
    crontab line, installed once; returns env."""
    with open(env.config, "a") as config:
        config.write(f"ADMIN_TOKEN={ADMIN_TOKEN}\nADMIN_READ_TOKEN={READ_TOKEN}\n")
    env.write_manifest(MANIFEST)
    env.crontab.write_text(FOREIGN)
    result = subprocess.run(
        [sys.executable, "-m", "agency_cron", *env.args("install")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return env


@pytest.fixture
def api(api_config):
    """A running server; stopped (and its log shown on failure) after the test."""
    port = free_port()
    process, log = start_server(api_config, port)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(url, process, log)
        yield Server(api_config, url, process, log)
    finally:
        stop(process)


@pytest.fixture
def make_server(api_config):
    """Start servers with other options or environment: make_server(*args, environ=...)."""
    started = []

    def make(*extra: str, environ: dict | None = None, wait: bool = True):
        port = free_port()
        process, log = start_server(api_config, port, *extra, environ=environ)
        started.append(process)
        url = f"http://127.0.0.1:{port}"
        if wait:
            wait_until_up(url, process, log)
        return Server(api_config, url, process, log)

    yield make
    for process in started:
        stop(process)


@pytest.fixture
def write_config():
    def write(env, text: str) -> None:
        with open(env.config, "a") as config:
            config.write(textwrap.dedent(text))

    return write
