"""The admin API started for real: `python -m agency_cron serve` on 127.0.0.1, over HTTP.

`api` is a running server on a throwaway installation (the `env` fixture's, with a
`file:` crontab holding a foreign line), with an admin and a read-only token.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import subprocess
from dataclasses import dataclass
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


@dataclass
class Server:
    env: object  # the `env` fixture (tests/conftest.py)
    url: str
    process: subprocess.Popen
    log: Path

    def client(self, token: str | None = ADMIN_TOKEN) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30)

    def output(self) -> str:
        return self.log.read_text(errors="replace")


@pytest.fixture
def api_config(env):
    """The env fixture's installation with tokens, the operator's manifest and a foreign
    crontab line, installed once; returns env."""
    env.add_config(ADMIN_TOKEN=ADMIN_TOKEN, ADMIN_READ_TOKEN=READ_TOKEN)
    env.write_manifest(MANIFEST)
    env.crontab.write_text(FOREIGN)
    result = env.process("install")
    assert result.returncode == 0, result.stderr
    return env


@pytest.fixture
def api(make_server):
    """A running server; stopped after the test."""
    return make_server()


@pytest.fixture
def make_server(api_config, serving):
    """Start servers with other options or environment: make_server(*args, environ=...)."""
    numbers = itertools.count()
    with contextlib.ExitStack() as stack:

        def make(*extra: str, environ: dict | None = None, wait: bool = True) -> Server:
            log = api_config.root / f"serve-{next(numbers)}.log"
            full = {**os.environ, "NO_COLOR": "1", **(environ or {})}
            started = stack.enter_context(
                serving(api_config.args(), log, *extra, environ=full, wait=wait)
            )
            return Server(api_config, started.url, started.process, started.log)

        yield make


@pytest.fixture
def write_config():
    """write_config(env, text): env.add_config(text), for tests that got it as a fixture."""

    def write(env, text: str) -> None:
        env.add_config(text)

    return write
