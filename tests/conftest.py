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


# --- an HTTP server that records what it receives ------------------------------------------


@dataclass
class RecordedRequest:
    """One request as the server read it: the query parsed, the body as bytes."""

    method: str
    path: str  # without the query string
    query: dict[str, list[str]]
    headers: list[tuple[str, str]]  # as sent, in order
    body: bytes

    def header(self, name: str) -> str | None:
        """The first header of that name, case-insensitively (None when absent)."""
        return next((v for k, v in self.headers if k.lower() == name.lower()), None)


class HttpRecorder:
    """A real HTTP server on 127.0.0.1 (port 0) that records every request and answers as
    told: answer(status) (200 by default), hang() (read and record the request, then never
    answer), disconnect() (record it, then close the connection without a response).
    A mode can be set for one path only: answer(503, path="/fail")."""

    def __init__(self) -> None:
        import http.server
        import threading

        self.requests: list[RecordedRequest] = []
        self._modes: dict[str | None, tuple] = {None: ("answer", 200, b"", {})}
        self._arrived = threading.Condition()
        self._released = threading.Event()  # set at teardown: hanging handlers return
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _recording_handler(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,))
        self._thread.daemon = True
        self._thread.start()
        self.port = self._server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"

    def answer(self, status=200, body: bytes = b"", headers=None, path=None) -> None:
        self._modes[path] = ("answer", status, body, dict(headers or {}))

    def hang(self, path=None) -> None:
        self._modes[path] = ("hang",)

    def disconnect(self, path=None) -> None:
        self._modes[path] = ("close",)

    def wait_for(self, count: int, timeout: float = 30) -> list[RecordedRequest]:
        """Block until `count` requests have arrived (a bound against a stuck test, not a
        timing assertion); fails the test if they do not."""
        with self._arrived:
            if not self._arrived.wait_for(lambda: len(self.requests) >= count, timeout):
                raise AssertionError(f"{len(self.requests)} of {count} requests arrived")
            return list(self.requests)

    def _record(self, request: RecordedRequest) -> tuple:
        with self._arrived:
            self.requests.append(request)
            self._arrived.notify_all()
        return self._modes.get(request.path, self._modes[None])

    def stop(self) -> None:
        self._released.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()


def _recording_handler(recorder: HttpRecorder):
    import http.server
    from urllib.parse import parse_qs, urlsplit

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _handle(self) -> None:
            url = urlsplit(self.path)
            request = RecordedRequest(
                self.command,
                url.path,
                parse_qs(url.query, keep_blank_values=True),
                list(self.headers.items()),
                self._body(),
            )
            mode = recorder._record(request)
            if mode[0] == "hang":
                recorder._released.wait()
                self.close_connection = True
            elif mode[0] == "close":
                self.close_connection = True  # handle() returns: the socket closes unanswered
            else:
                self._send(*mode[1:])

        def _body(self) -> bytes:
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                chunks = []
                while size := int(self.rfile.readline().split(b";")[0], 16):
                    chunks.append(self.rfile.read(size))
                    self.rfile.readline()
                self.rfile.readline()
                return b"".join(chunks)
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))

        def _send(self, status: int, body: bytes, headers: dict) -> None:
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _handle

        def log_message(self, *args) -> None:
            """Quiet: tests assert on what was recorded, not on stderr."""

    return Handler


@pytest.fixture
def http_recorder():
    """A running HttpRecorder (its .url, .requests, answer/hang/disconnect), stopped after
    the test; hanging requests are released first."""
    recorder = HttpRecorder()
    yield recorder
    recorder.stop()
