"""Shared fixtures: the one throwaway installation, CLI drivers, and the one HTTP (and SMTP)
test server. Tests cannot import this file (importlib mode): every helper is a fixture.

- `env`: an installation under tmp_path with a `file:` crontab (Env: paths, write_manifest,
  add_config, args, process, snapshot); `make_env` lays the same out in any folder (module
  scoped, one per Hypothesis example, `shared_root` under /tmp for other users) with another
  CRONTAB target or more config; `clean_environ`, `config_keys` keep the environment out.
- `make_user`, `python_for`: throwaway system users and an interpreter they can run.
- `cli` (in-process), `cli_process` (a real process), `serving` (a real `serve`).
- `http_recorder`, `make_http_recorder`, `tls_certificate`: a recording HTTP(S) server that
  answers, responds by request, delays, hangs or hangs up; `smtp_inbox`: an SMTP server.
- `postgres`: a real PostgreSQL server for the session (initdb'd in a folder under /tmp as an
  unprivileged user, 127.0.0.1 on a free port, password logins; stop() and start() it during
  runs); `pg_url`: a fresh database on it per test.

Everything is real: the crontab binary, logrotate, SQLite. `file:` targets keep most tests
away from the machine's crontabs; tests of `user:NAME` use a throwaway system user.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from agency_cron.cli import main as cli_main

REPO = Path(__file__).resolve().parent.parent


@dataclass
class Env:
    """A throwaway installation: config.env, tasks.yaml and a `file:` crontab in `root`, with
    AGENCY_ROOT, LOG_DIR, STATE_DIR and LOGROTATE_DIR below it (see make_env)."""

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

    def wrapper(self, name: str) -> Path:
        """The task's wrapper script, as cron runs it."""
        return self.agency_root / "scripts" / "cronjobs" / f"{name}.sh"

    def write_manifest(self, text: str) -> Path:
        self.manifest.write_text(textwrap.dedent(text))
        return self.manifest

    def add_config(self, text: str = "", **values: str) -> None:
        """Append lines to config.env: `text` as written (dedented), then KEY=value each."""
        lines = textwrap.dedent(text) + "".join(f"{key}={value}\n" for key, value in values.items())
        with self.config.open("a") as handle:
            handle.write(lines)

    def install(self, cli, manifest: str | None = None, *options: str) -> str:
        """Write `manifest` (when given) and install it with the in-process `cli` fixture;
        fails the test unless install exits 0; returns its output."""
        if manifest is not None:
            self.write_manifest(manifest)
        code, out, err = cli(*self.args("install", *options))
        assert code == 0, out + err
        return out

    def args(self, *rest: str) -> list[str]:
        return ["--config", str(self.config), "--manifest", str(self.manifest), *rest]

    def process(self, *rest: str, **options):
        """`python -m agency_cron --config C --manifest M REST` as a real process: run_cli's
        options (env=MORE, environ=WHOLE, timeout=, cwd=)."""
        return run_cli(*self.args(*rest), **options)

    def checks(self, *rest: str, environ: dict, timeout: float = 60):
        """`python -m agency_cron.checks REST --config C --manifest M` (the built-in checks as
        their tasks run them) as a real process in `environ`."""
        return subprocess.run(
            [sys.executable, "-m", "agency_cron.checks", *rest, *self.args()],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=environ,
            check=False,
        )

    def snapshot(self) -> dict[str, tuple[bytes, int, int]]:
        """Every file under root with its bytes, mode and mtime (ns)."""
        found = {}
        for path in sorted(self.root.rglob("*")):
            if path.is_file() and "history.db" not in path.name and path.suffix != ".lock":
                stat = path.stat()
                found[str(path)] = (path.read_bytes(), stat.st_mode, stat.st_mtime_ns)
        return found


def make_env(
    root: Path,
    *,
    crontab: str | None = None,
    config: str = "",
    manifest: str | None = None,
    config_file: Path | None = None,
) -> Env:
    """Lay out a throwaway installation in `root` (made if missing): config.env naming
    AGENCY_ROOT, LOG_DIR, STATE_DIR and LOGROTATE_DIR below root and CRONTAB (`crontab`, by
    default file:ROOT/crontab), then the lines of `config`; LOGROTATE_DIR made; tasks.yaml
    written when `manifest` is given (dedented). `config_file` puts config.env elsewhere (a
    checkout's). The process environment is left alone: that is the `env` fixture's part."""
    root.mkdir(parents=True, exist_ok=True)
    target = root / "crontab"
    config_path = config_file or root / "config.env"
    config_path.write_text(
        textwrap.dedent(
            f"""\
            # test installation
            AGENCY_ROOT={root}/agency
            LOG_DIR={root}/log
            STATE_DIR={root}/state
            LOGROTATE_DIR={root}/logrotate.d
            CRONTAB={crontab or f"file:{target}"}
            """
        )
        + textwrap.dedent(config)
    )
    (root / "logrotate.d").mkdir(exist_ok=True)
    made = Env(root=root, config=config_path, manifest=root / "tasks.yaml", crontab=target)
    if manifest is not None:
        made.write_manifest(manifest)
    return made


def settings_at(root: Path, **values: str):
    """The Settings of make_env's layout under `root` (file:ROOT/crontab) plus `values`, from
    the values alone: no file written or read, for unit tests of pure functions."""
    from agency_cron.config import load_settings

    layout = {
        "AGENCY_ROOT": str(root / "agency"),
        "LOG_DIR": str(root / "log"),
        "STATE_DIR": str(root / "state"),
        "LOGROTATE_DIR": str(root / "logrotate.d"),
        "CRONTAB": f"file:{root / 'crontab'}",
    }
    return load_settings(environ={**layout, **values})


@pytest.fixture(scope="session", name="settings_at")
def settings_at_fixture():
    """settings_at(root, KEY=value...) -> Settings of a throwaway installation, no files."""
    return settings_at


@pytest.fixture(scope="session", name="make_env")
def make_env_fixture():
    """make_env(root, crontab=TARGET, config=LINES, manifest=TEXT) -> Env: the `env`
    fixture's installation in any folder (a module's, one per Hypothesis example, one under
    /tmp that other users can enter), with another target or more config; the process
    environment untouched (see clean_environ)."""
    return make_env


# Keys of config.env that the process environment would override (CONTRACT.md): a test that
# means its own config.env to count runs without them.
CONFIG_KEYS = (
    "AGENCY_CRON_CONFIG",
    "AGENCY_CRON_MANIFEST",
    "AGENCY_CRON_PYTHON",
    "AGENCY_ROOT",
    "LOG_DIR",
    "STATE_DIR",
    "LOGROTATE_DIR",
    "CRONTAB",
    "ALERT_URLS",
    "ALERT_ON_FAILURE",
    "ALERT_TIMEOUT",
    "LOG_RETENTION_DAYS",
)


@pytest.fixture(scope="session")
def config_keys() -> tuple[str, ...]:
    """CONFIG_KEYS: the environment variables that would override a test's config.env."""
    return CONFIG_KEYS


@pytest.fixture
def clean_environ(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No config or manifest named by the environment, no CRONTAB or AGENCY_ROOT inherited,
    install fingerprints in a cache of this test's own."""
    for key in ("AGENCY_CRON_CONFIG", "AGENCY_CRON_MANIFEST", "CRONTAB", "AGENCY_ROOT"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, clean_environ) -> Env:
    """A throwaway installation under tmp_path with a `file:` crontab; the test runs in
    tmp_path with a clean environment."""
    monkeypatch.chdir(tmp_path)
    return make_env(tmp_path / "site")


@pytest.fixture
def shared_root():
    """A folder under /tmp that other users can enter (tmp_path's parents are 0700), for an
    installation whose tasks run as another user; removed afterwards."""
    root = Path(tempfile.mkdtemp(prefix="agency-cron-shared-", dir="/tmp"))
    root.chmod(0o755)
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


# --- throwaway system users, for tasks that run as another user ---------------------------

BARE_ENV = ["env", "-i", "PATH=/usr/bin:/bin"]  # what cron gives a job


def _processes_of(uid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError):
                if os.stat(f"/proc/{entry}").st_uid == uid:
                    found.append(int(entry))
    return found


def _remove_user(name: str, home: bool) -> None:
    import pwd

    subprocess.run(["crontab", "-u", name, "-r"], capture_output=True, check=False)
    # A job of this user may still be finishing: userdel refuses while the user has
    # processes, so wait for them (a bound against a stuck test, not a timing assertion).
    uid = pwd.getpwnam(name).pw_uid
    deadline = time.monotonic() + 30
    while _processes_of(uid) and time.monotonic() < deadline:
        time.sleep(0.2)
    subprocess.run(["userdel", *(["--remove"] if home else []), name], capture_output=True)


@pytest.fixture
def make_user():
    """make_user(prefix, home=False) -> the name of a new system user (PREFIX + 6-8 hex
    digits, shell /bin/sh); each is removed after the test with its crontab (and home).
    Needs root."""
    import uuid

    if os.geteuid() != 0:
        pytest.fail("these tests need root (useradd, runuser, crontab -u)")
    made: list[tuple[str, bool]] = []

    def make(prefix: str, home: bool = False, digits: int = 6) -> str:
        name = f"{prefix}{uuid.uuid4().hex[:digits]}"
        subprocess.run(
            ["useradd", "--system", "--create-home" if home else "--no-create-home",
             "--shell", "/bin/sh", name],
            check=True,
            capture_output=True,
        )  # fmt: skip
        made.append((name, home))
        return name

    try:
        yield make
    finally:
        for name, home in made:
            _remove_user(name, home)


def python_for(user: str) -> str:
    """An interpreter `user` can run with this install's packages, in cron's bare
    environment: the venv's own, or when that one is a symlink into a 0700 home (pyenv under
    /root) the system Python of the same version (the wrapper's bootstrap puts the venv's
    site-packages on its path). Fails the test when there is none."""
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    candidates = [str(Path(sys.prefix) / "bin" / "python3"), f"/usr/bin/python{version}"]
    site = next(p for p in sys.path if p.endswith("site-packages"))
    program = f"import sys; sys.path[:0] = [{site!r}]; import agency_cron.runner, sqlite3"
    for candidate in candidates:
        probe = subprocess.run(
            ["runuser", "-u", user, "--", *BARE_ENV, candidate, "-S", "-c", program],
            capture_output=True,
            check=False,
            cwd="/",
        )
        if probe.returncode == 0:
            return candidate
    pytest.fail(f"{user} can run none of {candidates} with {site} (install python{version})")


@pytest.fixture(scope="session", name="python_for")
def python_for_fixture():
    """python_for(user) -> an interpreter that user can run agency_cron.runner with."""
    return python_for


@pytest.fixture
def cli(capsys):
    """Run the CLI in-process: returns (exit code, stdout, stderr)."""

    def run(*args: str) -> tuple[int, str, str]:
        code = cli_main(list(args))
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return run


def run_cli(
    *args: str,
    env: dict | None = None,
    timeout: float = 120,
    environ: dict | None = None,
    cwd: Path | None = None,
) -> subprocess.CompletedProcess:
    """Run `python -m agency_cron` as a real process (for exit codes and stderr as users see
    them): in this process's environment without colour plus `env`, or in `environ` alone."""
    return subprocess.run(
        [sys.executable, "-m", "agency_cron", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "NO_COLOR": "1", **(env or {})} if environ is None else environ,
        cwd=cwd,
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
    line: str = ""  # the request line as sent: "POST /hook?x=1 HTTP/1.1"

    def header(self, name: str) -> str | None:
        """The first header of that name, case-insensitively (None when absent)."""
        return next((v for k, v in self.headers if k.lower() == name.lower()), None)

    def json(self):
        """The body parsed as JSON."""
        return json.loads(self.body)


class HttpRecorder:
    """A real HTTP server on 127.0.0.1 (port 0) that records every request and answers as
    told: answer(status) (200 by default; after `delay` seconds if given), respond(function)
    (the function gets the RecordedRequest and returns (status, body, headers)), hang() (read
    and record the request, then never answer), disconnect() (record it, then close the
    connection without a response). A mode can be set for one path only:
    answer(503, path="/fail"). With `tls` (an ssl.SSLContext for a server) it speaks HTTPS."""

    def __init__(self, tls=None) -> None:
        import http.server
        import threading

        self.requests: list[RecordedRequest] = []
        self._modes: dict[str | None, tuple] = {None: ("answer", 200, b"", {}, 0)}
        self._arrived = threading.Condition()
        self._released = threading.Event()  # set at teardown: hanging handlers return
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _recording_handler(self))
        self._server.daemon_threads = True
        if tls is not None:
            self._server.socket = tls.wrap_socket(self._server.socket, server_side=True)
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,))
        self._thread.daemon = True
        self._thread.start()
        self.port = self._server.server_address[1]
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{self.port}"

    def answer(self, status=200, body: bytes = b"", headers=None, path=None, delay=0.0) -> None:
        self._modes[path] = ("answer", status, body, dict(headers or {}), delay)

    def respond(self, function, path=None) -> None:
        """Answer with function(request) -> (status, body, headers)."""
        self._modes[path] = ("call", function)

    def hang(self, path=None) -> None:
        self._modes[path] = ("hang",)

    def disconnect(self, path=None) -> None:
        self._modes[path] = ("close",)

    def json_bodies(self) -> list:
        """The body of every request so far, parsed as JSON (Apprise's json:// posts)."""
        return [request.json() for request in self.requests]

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
        mode = self._modes.get(request.path, self._modes[None])
        return ("answer", *mode[1](request), 0) if mode[0] == "call" else mode

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
                self.requestline,
            )
            mode = recorder._record(request)
            if mode[0] == "hang":
                recorder._released.wait()
                self.close_connection = True
            elif mode[0] == "close":
                self.close_connection = True  # handle() returns: the socket closes unanswered
            elif recorder._released.wait(mode[4]):
                self.close_connection = True  # torn down while delaying the answer
            else:
                self._send(*mode[1:4])

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
    """A running HttpRecorder (its .url, .requests, answer/respond/hang/disconnect), stopped
    after the test; hanging requests are released first."""
    recorder = HttpRecorder()
    yield recorder
    recorder.stop()


@pytest.fixture
def make_http_recorder():
    """make_http_recorder(tls=SSL_CONTEXT) -> another HttpRecorder (an HTTPS one, a second
    target), each stopped after the test."""
    made: list[HttpRecorder] = []

    def make(tls=None) -> HttpRecorder:
        made.append(HttpRecorder(tls=tls))
        return made[-1]

    yield make
    for recorder in made:
        recorder.stop()


@pytest.fixture
def tls_certificate(tmp_path: Path):
    """A self-signed certificate for 127.0.0.1 (openssl): (its PEM file, a server-side
    ssl.SSLContext holding it), for make_http_recorder(tls=...)."""
    import ssl

    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )  # fmt: skip
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    return cert, context


# --- an SMTP server that keeps what it receives --------------------------------------------


class SmtpInbox:
    """An aiosmtpd handler on 127.0.0.1 (port 0, bound before the server starts: no
    free-port race) keeping each message's bytes and the credentials it was sent with. Plain
    SMTP; AUTH is offered without TLS (Apprise's mode=insecure) and every login succeeds."""

    def __init__(self) -> None:
        import socket as sockets

        from aiosmtpd.controller import Controller

        self.messages: list[bytes] = []
        self.logins: list[tuple[bytes, bytes]] = []
        listener = sockets.create_server(("127.0.0.1", 0))

        class Bound(Controller):
            def _create_server(self):
                return self.loop.create_server(self._factory_invoker, sock=listener)

        self.port = listener.getsockname()[1]
        self._controller = Bound(
            self,
            hostname="127.0.0.1",
            port=self.port,
            authenticator=self._authenticate,
            auth_require_tls=False,
            ready_timeout=10,
        )
        self._controller.start()

    async def handle_DATA(self, server, session, envelope) -> str:
        self.messages.append(envelope.content)
        return "250 OK"

    def _authenticate(self, server, session, envelope, mechanism, auth_data):
        from aiosmtpd.smtp import AuthResult, LoginPassword

        if isinstance(auth_data, LoginPassword):
            self.logins.append((auth_data.login, auth_data.password))
        return AuthResult(success=True)

    def emails(self) -> list:
        """The messages so far, parsed (email.message.EmailMessage)."""
        import email
        from email import policy

        return [email.message_from_bytes(m, policy=policy.default) for m in list(self.messages)]

    def bodies(self) -> list[str]:
        return [message.get_content() for message in self.emails()]

    def stop(self) -> None:
        self._controller.stop()


@pytest.fixture
def smtp_inbox():
    """A running SmtpInbox (its .port, .messages, .logins, emails(), bodies()), stopped
    after the test."""
    inbox = SmtpInbox()
    try:
        yield inbox
    finally:
        inbox.stop()


# --- a real PostgreSQL server, initdb'd for the session --------------------------------------

PG_SUPERUSER = "agency_cron"
PG_DATABASE = "agency_cron"  # the one `.url` names; pg_url makes a fresh one per test


def _postgres_bindir() -> Path | None:
    """The folder holding initdb, postgres and psql: Debian's newest
    /usr/lib/postgresql/VERSION/bin (off the PATH), else wherever the PATH has initdb."""
    versions = []
    for folder in Path("/usr/lib/postgresql").glob("*/bin"):
        if folder.parent.name.isdigit() and (folder / "initdb").is_file():
            versions.append((int(folder.parent.name), folder))
    if versions:
        return max(versions)[1]
    found = shutil.which("initdb")
    return Path(found).parent if found else None


class PostgresServer:
    """A throwaway PostgreSQL cluster in its own folder: initdb'd and run as an unprivileged
    user (initdb refuses root), listening on 127.0.0.1:`port` with scram-sha-256 password
    authentication for every connection (TCP and the socket in `socket_dir`), so a URL
    without its password, or with a wrong one, is refused. The postmaster is a child of this
    process, started and stopped by its pid; the port and data stay across stop()/start()."""

    def __init__(self, bindir: Path, folder: Path, user: str | None) -> None:
        import secrets

        self.bindir = bindir
        self.folder = folder  # owned by the server's user, 0700; holds data/, the socket, the log
        self.data_dir = folder / "data"
        self.socket_dir = folder
        self.log = folder / "server.log"
        self.os_user = user  # who the server runs as; None: this process's user (not root)
        self.host = "127.0.0.1"
        self.port = free_port()
        self.user = PG_SUPERUSER
        self.password = secrets.token_hex(16)  # URL-safe as it is, distinctive in any output
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        """postgresql://USER:PASSWORD@127.0.0.1:PORT/agency_cron (the session's database)."""
        return self.dsn_for(PG_DATABASE)

    def dsn_for(self, dbname: str) -> str:
        """The URL of database `dbname` on this server, with the password."""
        return f"postgresql://{self.user}:{self.password}@{self.host}:{self.port}/{dbname}"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def _as_server_user(self) -> dict:
        """Popen options that run a program as the server's user with no group of root's."""
        import pwd

        if self.os_user is None:
            return {}
        entry = pwd.getpwnam(self.os_user)
        return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}

    def _environ(self) -> dict:
        # No PG* variable of the caller's (PGHOST, PGPASSWORD...) and a locale every host has.
        return {"PATH": "/usr/bin:/bin", "LC_ALL": "C", "HOME": str(self.folder)}

    def init(self) -> None:
        """initdb the data folder (password from a file that is gone afterwards), then the
        settings every start uses: loopback only, our port and socket folder, no fsync (a
        throwaway cluster; a clean stop still writes everything)."""
        password_file = self.folder / "password"
        password_file.write_text(self.password + "\n")
        if self.os_user is not None:
            shutil.chown(password_file, self.os_user)
        result = subprocess.run(
            [str(self.bindir / "initdb"), "-D", str(self.data_dir), "-U", self.user,
             f"--pwfile={password_file}", "--auth=scram-sha-256", "--encoding=UTF8",
             "--locale=C", "--no-sync", "--no-instructions"],
            capture_output=True,
            text=True,
            cwd=self.folder,
            env=self._environ(),
            timeout=300,
            check=False,
            **self._as_server_user(),
        )  # fmt: skip
        password_file.unlink()
        if result.returncode != 0:
            raise AssertionError(f"initdb failed ({result.returncode}):\n{result.stderr}")
        with (self.data_dir / "postgresql.conf").open("a") as conf:
            conf.write(
                "\n# tests/conftest.py\n"
                f"listen_addresses = '{self.host}'\n"
                f"unix_socket_directories = '{self.socket_dir}'\n"
                "fsync = off\nfull_page_writes = off\nsynchronous_commit = off\n"
            )

    def first_start(self, attempts: int = 3) -> None:
        """Start on a free port, written to postgresql.conf so every later start uses it;
        another port when something took this one before the server bound it."""
        for attempt in range(attempts):
            with (self.data_dir / "postgresql.conf").open("a") as conf:
                conf.write(f"port = {self.port}\n")  # the last setting of a name counts
            try:
                return self.start()
            except AssertionError:
                if attempt + 1 == attempts or "Address already in use" not in self.log_text():
                    raise
            self.port = free_port()

    def start(self, timeout: float = 60) -> None:
        """Start the server (nothing when it runs) and return once it accepts connections.
        The postmaster gets SIGINT (a fast shutdown) if this process dies without stopping
        it: setpriv's parent-death signal, set only from the main thread (it fires when the
        starting thread ends)."""
        import threading

        if self.running:
            return
        command = [str(self.bindir / "postgres"), "-D", str(self.data_dir)]
        setpriv = shutil.which("setpriv")
        if setpriv and threading.current_thread() is threading.main_thread():
            command = [setpriv, "--pdeathsig", "INT", "--", *command]
        with self.log.open("ab") as handle:
            self.process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=handle,
                stderr=subprocess.STDOUT,
                cwd=self.folder,
                env=self._environ(),
                **self._as_server_user(),
            )
        self._wait_ready(timeout)

    def _wait_ready(self, timeout: float) -> None:
        """Until postmaster.pid names our process and says "ready" (what pg_ctl waits for:
        the sockets are listening and recovery is over); a bound, not a timing assertion."""
        assert self.process is not None
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise AssertionError(
                    f"postgres exited with {self.process.returncode}:\n{self.log_text()}"
                )
            with contextlib.suppress(OSError):
                lines = (self.data_dir / "postmaster.pid").read_text().splitlines()
                mine = len(lines) >= 8 and lines[0] == str(self.process.pid)
                if mine and lines[7].strip() == "ready":
                    return
            if time.monotonic() > deadline:
                self.stop()
                raise AssertionError(f"postgres not ready within {timeout}s:\n{self.log_text()}")
            time.sleep(0.05)

    def stop(self, timeout: float = 60) -> None:
        """Stop the server by its pid (nothing when it is stopped): SIGINT, a fast shutdown
        (sessions are ended, a checkpoint written), then wait for the postmaster to exit; it
        refuses connections from then on. Escalates to SIGQUIT, then SIGKILL, if it hangs."""
        import signal

        process = self.process
        if process is None:
            return
        for sig in (signal.SIGINT, signal.SIGQUIT, signal.SIGKILL):
            if process.poll() is not None:
                break
            process.send_signal(sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=timeout)
        process.wait()
        self.process = None

    def psql(self, sql: str, db: str = PG_DATABASE) -> str:
        """Run `sql` with the real psql (-X -At, ON_ERROR_STOP, statements read from stdin so
        each runs in its own transaction) on database `db` (a name, or a URL of this server);
        returns its output without the final newline; fails the test when psql fails."""
        url = db if "://" in db else self.dsn_for(db)
        result = subprocess.run(
            [str(self._psql_binary()), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
             "-d", url, "-f", "-"],
            input=sql,
            capture_output=True,
            text=True,
            env={**self._environ(), "PGCONNECT_TIMEOUT": "10"},
            timeout=120,
            check=False,
        )  # fmt: skip
        if result.returncode != 0:
            raise AssertionError(f"psql failed ({result.returncode}) on {sql!r}:\n{result.stderr}")
        return result.stdout.removesuffix("\n")

    def _psql_binary(self) -> Path:
        found = self.bindir / "psql"
        return found if found.is_file() else Path(shutil.which("psql") or "psql")

    def create_database(self, name: str) -> str:
        """CREATE DATABASE `name` (letters, digits and _); returns its URL (dsn_for)."""
        import re

        if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", name):
            raise ValueError(f"not a plain database name: {name!r}")
        self.psql(f'CREATE DATABASE "{name}"', "postgres")
        return self.dsn_for(name)

    def drop_database(self, name: str) -> None:
        """DROP DATABASE `name`, ending its sessions first (WITH (FORCE), PostgreSQL 13+)."""
        self.psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)', "postgres")

    def log_text(self) -> str:
        """The server's own log (every start appends), for failure messages."""
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def _postgres_os_user(made: list[str]) -> str | None:
    """Who runs the server: this process's user unless that is root; as root, the `postgres`
    system user Debian's package creates, else a throwaway system user (appended to `made`)."""
    import pwd
    import uuid

    if os.geteuid() != 0:
        return None
    with contextlib.suppress(KeyError):
        return pwd.getpwnam("postgres").pw_name
    name = f"agpg{uuid.uuid4().hex[:8]}"
    subprocess.run(
        ["useradd", "--system", "--no-create-home", "--user-group",
         "--shell", "/usr/sbin/nologin", name],
        check=True,
        capture_output=True,
    )  # fmt: skip
    made.append(name)
    return name


@pytest.fixture(scope="session")
def postgres():
    """A real PostgreSQL server for the session (PostgresServer): .url (the agency_cron
    database, postgresql://agency_cron:PASSWORD@127.0.0.1:PORT/agency_cron), .host, .port,
    .user, .password, .dsn_for(dbname), .create_database(name) -> url, .drop_database(name),
    .psql(sql, db=...) -> str, .stop(), .start(), .running, .log_text(). Its data lives in a
    folder under /tmp owned by the server's user, removed at the end with the server stopped
    (also when tests fail). Fails when no PostgreSQL server binaries are installed."""
    import pwd

    bindir = _postgres_bindir()
    if bindir is None or not (bindir / "postgres").is_file():
        # make test installs them (test-deps), as .ci/run does: their absence is a failure.
        pytest.fail("no PostgreSQL server binaries (initdb, postgres): apt-get install postgresql")
    made_users: list[str] = []
    # Not under tmp_path: /tmp/pytest-of-root is 0700, the server's user could not enter it.
    folder = Path(tempfile.mkdtemp(prefix="agency-cron-pg-"))
    server = None
    try:
        user = _postgres_os_user(made_users)
        if user is not None:
            entry = pwd.getpwnam(user)
            os.chown(folder, entry.pw_uid, entry.pw_gid)
        server = PostgresServer(bindir, folder, user)
        server.init()
        server.first_start()
        server.psql(f'CREATE DATABASE "{PG_DATABASE}"', "postgres")
        yield server
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(folder, ignore_errors=True)
        for name in made_users:
            _remove_user(name, home=False)


@pytest.fixture
def pg_url(postgres):
    """The URL of a fresh database on the session's server, dropped after the test; a test
    that left the server stopped gets it started again first, so the next test has one."""
    import uuid

    name = f"t_{uuid.uuid4().hex[:12]}"
    url = postgres.create_database(name)
    yield url
    postgres.start()
    postgres.drop_database(name)
