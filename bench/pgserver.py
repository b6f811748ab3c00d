"""A throwaway PostgreSQL server for the benchmarks (Debian's `postgresql` binaries).

    with postgres_server() as server:
        url = server.create_database("bench")   # postgresql://USER:PASSWORD@127.0.0.1:PORT/bench
        server.psql("SELECT 1", "bench")

tests/conftest.py's PostgresServer in short (the benchmarks cannot import conftest):
initdb in a temporary folder as an unprivileged user (initdb refuses root: as root the
`postgres` system user, else a throwaway one, removed afterwards), scram-sha-256 logins on
127.0.0.1 on a free port, no fsync (a throwaway cluster). The postmaster is our child,
stopped by its pid when the block ends, on errors and Ctrl-C or SIGTERM too, and sent SIGINT
by the kernel if this process dies first (setpriv --pdeathsig).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

SUPERUSER = "agency_cron"
# A throwaway cluster: nothing survives a crash, so nothing is flushed. The rest is
# PostgreSQL's defaults (shared_buffers 128 MB, work_mem 4 MB), what a small server has.
SETTINGS = "fsync = off\nfull_page_writes = off\nsynchronous_commit = off\n"


def bindir() -> Path | None:
    """Debian's newest /usr/lib/postgresql/VERSION/bin (off the PATH), else the PATH's."""
    found = sorted(
        (int(p.parent.name), p)
        for p in Path("/usr/lib/postgresql").glob("*/bin")
        if p.parent.name.isdigit() and (p / "initdb").is_file()
    )
    if found:
        return found[-1][1]
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Server:
    def __init__(self, binaries: Path, folder: Path, os_user: str | None) -> None:
        self.bin, self.folder, self.os_user = binaries, folder, os_user
        self.data = folder / "data"
        self.log = folder / "server.log"
        self.port = free_port()
        self.password = secrets.token_hex(16)
        self.process: subprocess.Popen | None = None

    def url(self, dbname: str) -> str:
        return f"postgresql://{SUPERUSER}:{self.password}@127.0.0.1:{self.port}/{dbname}"

    def _as_user(self) -> dict:
        if self.os_user is None:
            return {}
        entry = pwd.getpwnam(self.os_user)
        return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}

    def _env(self) -> dict[str, str]:  # none of the caller's PG* variables
        return {"PATH": "/usr/bin:/bin", "LC_ALL": "C", "HOME": str(self.folder)}

    def start(self) -> None:
        pwfile = self.folder / "password"
        pwfile.write_text(self.password + "\n")
        if self.os_user:
            shutil.chown(pwfile, self.os_user)
        init = [str(self.bin / "initdb"), "-D", str(self.data), "-U", SUPERUSER,
                f"--pwfile={pwfile}", "--auth=scram-sha-256", "--encoding=UTF8",
                "--locale=C", "--no-sync"]  # fmt: skip
        done = subprocess.run(
            init, capture_output=True, text=True, cwd=self.folder, env=self._env(),
            check=False, **self._as_user(),
        )  # fmt: skip
        pwfile.unlink()
        if done.returncode:
            raise RuntimeError(f"initdb failed ({done.returncode}):\n{done.stderr}")
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.write(
                f"\n# bench/pgserver.py\nlisten_addresses = '127.0.0.1'\nport = {self.port}\n"
                f"unix_socket_directories = '{self.folder}'\n{SETTINGS}"
            )
        command = [str(self.bin / "postgres"), "-D", str(self.data)]
        if shutil.which("setpriv"):
            command = ["setpriv", "--pdeathsig", "INT", "--", *command]
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                cwd=self.folder, env=self._env(), **self._as_user(),
            )  # fmt: skip
        self._wait_ready()

    def _wait_ready(self, timeout: float = 60) -> None:
        """Until postmaster.pid names our process and says "ready" (what pg_ctl waits for)."""
        assert self.process is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"postgres exited:\n{self.log.read_text()[-2000:]}")
            with contextlib.suppress(OSError):
                lines = (self.data / "postmaster.pid").read_text().splitlines()
                if len(lines) >= 8 and lines[0] == str(self.process.pid) and "ready" in lines[7]:
                    return
            time.sleep(0.05)
        raise RuntimeError(f"postgres not ready in {timeout}s:\n{self.log.read_text()[-2000:]}")

    def stop(self) -> None:
        """SIGINT (a fast shutdown) by pid, then SIGQUIT, then SIGKILL if it hangs."""
        process, self.process = self.process, None
        if process is None:
            return
        for sig in (signal.SIGINT, signal.SIGQUIT, signal.SIGKILL):
            if process.poll() is not None:
                break
            process.send_signal(sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=30)
        process.wait()

    def psql_cmd(self, dbname: str, *args: str) -> list[str]:
        """psql (-X: no ~/.psqlrc, unaligned tuples only) on `dbname`, then `args`."""
        psql = self.bin / "psql" if (self.bin / "psql").is_file() else "psql"
        return [str(psql), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", self.url(dbname), *args]  # fmt: skip

    def psql(self, sql: str, dbname: str = "postgres") -> str:
        done = subprocess.run(
            self.psql_cmd(dbname, "-f", "-"), input=sql, capture_output=True, text=True,
            env=self._env(), check=False,
        )  # fmt: skip
        if done.returncode:
            raise RuntimeError(f"psql failed on {sql[:200]!r}:\n{done.stderr[-2000:]}")
        return done.stdout.removesuffix("\n")

    def create_database(self, name: str) -> str:
        self.psql(f'CREATE DATABASE "{name}"')
        return self.url(name)


def _server_user(made: list[str]) -> str | None:
    """This process's user unless root; as root `postgres`, else a throwaway system user."""
    if os.geteuid() != 0:
        return None
    with contextlib.suppress(KeyError):
        return pwd.getpwnam("postgres").pw_name
    name = f"acpg{uuid.uuid4().hex[:8]}"
    subprocess.run(
        ["useradd", "--system", "--no-create-home", "--user-group", "--shell",
         "/usr/sbin/nologin", name],
        check=True, capture_output=True,
    )  # fmt: skip
    made.append(name)
    return name


def _interrupt(signum, frame):
    raise KeyboardInterrupt


@contextlib.contextmanager
def postgres_server() -> Iterator[Server]:
    """A running Server, stopped and its folder (and user, if made) removed afterwards."""
    binaries = bindir()
    if binaries is None or not (binaries / "postgres").is_file():
        raise SystemExit("bench: no PostgreSQL server binaries (apt-get install postgresql)")
    made: list[str] = []
    folder = Path(tempfile.mkdtemp(prefix="acbench-pg-"))  # /tmp: the server's user enters it
    previous = signal.signal(signal.SIGTERM, _interrupt)
    server = None
    try:
        user = _server_user(made)
        if user:
            shutil.chown(folder, user, pwd.getpwnam(user).pw_gid)
        server = Server(binaries, folder, user)
        server.start()
        yield server
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(folder, ignore_errors=True)
        for name in made:
            subprocess.run(["userdel", name], capture_output=True, check=False)
        signal.signal(signal.SIGTERM, previous)
