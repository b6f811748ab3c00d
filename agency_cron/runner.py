"""The run path: what cron executes, through each task's wrapper, on every run.

    python -m agency_cron.runner STATE_DIR/tasks/NAME.json [--alert]

Standard library only on the success path (os, select, _signal, fcntl, marshal, sqlite3):
typer, rich, pydantic, jinja2 and apprise cost 60-120 ms each to import, more than the
whole of `chronic true`, and even json (its regular expressions) and signal (its enums)
are measurable against it. The spec was resolved by `install` (and written in marshal
form beside the JSON), so nothing is parsed or validated here. Apprise is imported by
alerts.py only when an alert is sent; cronsim only for a zoned task started by cron.

One run: take the task's lock (overlap), then for each attempt start the command in its
own process group, stream its output (redacted) to the task log and to our stdout (the
cron log), enforce the timeout on the whole group, record the attempt in history, and
retry with backoff; after the last attempt decide on an alert.
"""

from __future__ import annotations

import fcntl
import os
import select
import sys
import time

try:  # the C module: `signal` wraps it in enums, whose import costs more than a run of `true`
    import _signal as signal
except ImportError:  # another Python implementation
    import signal

EXIT_TIMEOUT = 124
KILL_GRACE_S = 10.0
CHUNK = 1 << 20
TAIL_BYTES = 16 * 1024
TAIL_LINES = 20
FAILURES = ("failed", "timeout")


class RunnerError(Exception):
    """A run that cannot start (unreadable spec, missing working dir): exit 2."""


def now_iso(moment: float | None = None) -> str:
    """UTC ISO 8601 with milliseconds; sorts lexicographically in time order."""
    moment = time.time() if moment is None else moment
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(moment))
    return f"{stamp}.{int(moment % 1 * 1000):03d}+00:00"


class Redactor:
    """Replaces secret values in a byte stream, including ones split across two chunks.

    The last len(longest secret) - 1 bytes are held back until the next chunk, and only
    matches that start before that tail are replaced, longest first: a short secret inside
    a longer one split by a chunk boundary must not be masked early, or the rest of the
    longer one would get through.
    """

    def __init__(self, secrets: list[str]):
        values = sorted({s.encode() for s in secrets if s}, key=len, reverse=True)
        self.keep = max((len(s) for s in values), default=1) - 1
        self.pattern = None
        if values:
            import re

            self.pattern = re.compile(b"|".join(re.escape(v) for v in values))
        self.carry = b""

    def feed(self, data: bytes) -> bytes:
        if self.pattern is None:
            return data
        buffer = self.carry + data
        cut = max(0, len(buffer) - self.keep)
        pieces, position = [], 0
        for match in self.pattern.finditer(buffer):
            if match.start() >= cut:
                break
            pieces += [buffer[position : match.start()], b"***"]
            position = match.end()
        end = max(position, cut)
        pieces.append(buffer[position:end])
        self.carry = buffer[end:]
        return b"".join(pieces)

    def flush(self) -> bytes:
        rest, self.carry = self.carry, b""
        return self.replace(rest)

    def replace(self, data: bytes) -> bytes:
        return data if self.pattern is None else self.pattern.sub(b"***", data)


class Output:
    """Where a run's output goes: the task log (append), our stdout, and a tail in memory."""

    def __init__(self, log_path: str, secrets: list[str], echo: bool = True):
        os.makedirs(os.path.dirname(log_path), exist_ok=True)
        # Opened for append on every run: after logrotate renames the log, the next run
        # creates and writes the new file; a run in flight keeps writing the renamed one.
        self.log_fd = os.open(
            log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640
        )
        self.echo = _echo_target() if echo else None
        self.redactor = Redactor(secrets)
        self.tail = b""
        self.at_line_start = True

    def line(self, text: str) -> None:
        """An agency-cron line (start, end, notes) in the task log and on stdout."""
        data = self.redactor.replace(f"{now_iso()} agency-cron: {text}\n".encode())
        # Our lines start a line of their own, even after output with no final newline.
        self._write(data if self.at_line_start else b"\n" + data)

    def stream(self, data: bytes) -> None:
        self._write(self.redactor.feed(data), keep_tail=True)

    def finish_stream(self) -> None:
        rest = self.redactor.flush()
        if rest:
            self._write(rest, keep_tail=True)

    def _write(self, data: bytes, keep_tail: bool = False) -> None:
        if not data:
            return
        self.at_line_start = data.endswith(b"\n")
        _write_all(self.log_fd, data)
        if self.echo is not None:
            try:
                self.echo(data)
            except (OSError, ValueError):
                self.echo = None  # a closed terminal must not stop the run
        if keep_tail:
            self.tail = (self.tail + data[-TAIL_BYTES:])[-TAIL_BYTES:]

    def take_tail(self) -> str:
        """The last lines of the attempt's output, then start a new tail."""
        lines = self.tail.decode("utf-8", "replace").splitlines()[-TAIL_LINES:]
        self.tail = b""
        return "\n".join(lines)

    def close(self) -> None:
        os.close(self.log_fd)


def _echo_target():
    """Write straight to fd 1 when there is one; else (stdout replaced, as under pytest or
    an embedding program) through sys.stdout as text."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):
        return lambda data: sys.stdout.write(data.decode("utf-8", "replace"))
    sys.stdout.flush()
    return lambda data: _write_all(fd, data)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


class Signals:
    """SIGTERM, SIGINT and SIGHUP to the runner are passed on to the task's process group.

    SIGUSR1 is the admin API's reset-retries: a run waiting between attempts gets its
    full retry budget back and tries again at once; at any other time it is ignored.
    """

    HANDLED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)

    def __init__(self):
        self.received: int | None = None
        self.group: int | None = None
        self.reset_retries = False
        for signum in self.HANDLED:
            signal.signal(signum, self._handle)
        signal.signal(signal.SIGUSR1, self._reset)

    def _handle(self, signum, frame) -> None:
        self.received = signum
        if self.group:
            _signal_group(self.group, signum)

    def _reset(self, signum, frame) -> None:
        self.reset_retries = True


def _signal_group(group: int, signum: int) -> None:
    try:
        os.killpg(group, signum)
    except (ProcessLookupError, PermissionError):
        pass  # already gone


def descendants(root: int) -> list[int]:
    """Every live descendant of `root` by parent links in /proc (those that left its group too)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as handle:
                fields = handle.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(entry))
    found, queue = [], [root]
    while queue:
        for child in children.get(queue.pop(), []):
            found.append(child)
            queue.append(child)
    return found


class Attempt:
    """One execution of the command: spawn, pump output, enforce the deadline."""

    def __init__(self, spec: dict, output: Output, signals: Signals, run_id: str):
        self.spec, self.output, self.signals = spec, output, signals
        self.run_id = run_id
        self.timed_out = False

    def run(self) -> int:
        read_fd, write_fd = os.pipe()
        try:  # 1 MiB instead of 64 KiB: sixteen times fewer wake-ups on chatty tasks
            fcntl.fcntl(write_fd, fcntl.F_SETPIPE_SZ, CHUNK)
        except OSError:
            pass  # above /proc/sys/fs/pipe-max-size for this user: keep the default
        pid = self._spawn(write_fd)
        os.close(write_fd)
        self.signals.group = pid
        try:
            return self._supervise(pid, read_fd)
        finally:
            self.signals.group = None
            os.close(read_fd)

    def _spawn(self, write_fd: int) -> int:
        env = dict(os.environ)
        env.update(self.spec["env"])
        env["AGENCY_CRON_TASK"] = self.spec["name"]
        env["AGENCY_CRON_RUN_ID"] = self.run_id
        return os.posix_spawn(
            "/bin/sh",
            ["/bin/sh", "-c", self.spec["command"]],
            env,
            file_actions=[
                (os.POSIX_SPAWN_OPEN, 0, "/dev/null", os.O_RDONLY, 0),
                (os.POSIX_SPAWN_DUP2, write_fd, 1),
                (os.POSIX_SPAWN_DUP2, write_fd, 2),
            ],
            setsid=True,  # its own session and process group: the timeout ends all of it
        )

    def _supervise(self, pid: int, read_fd: int) -> int:
        """Copy output until the command exits, enforcing the deadline.

        The poll waits on the pipe and on a pidfd of the command, so the exit is noticed at
        once (no sleep-and-retry); without pidfd support it checks every 10 ms.
        """
        deadline = time.monotonic() + self.spec["timeout"]
        exit_fd = _pidfd(pid)
        poller = select.poll()
        poller.register(read_fd, select.POLLIN | select.POLLHUP)
        if exit_fd is not None:
            poller.register(exit_fd, select.POLLIN)
        status, open_pipe = None, True
        try:
            while status is None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return self._expire(pid, read_fd)
                wait = remaining if exit_fd is not None else min(remaining, 0.01)
                for fd, _ in poller.poll(wait * 1000):
                    if fd == read_fd and not self._read(read_fd):
                        poller.unregister(read_fd)
                        open_pipe = False
                status = _reap(pid)
        finally:
            if exit_fd is not None:
                os.close(exit_fd)
        if open_pipe:
            self._drain(read_fd)
        self.output.finish_stream()
        if self.signals.received is not None:
            # The shell is gone, but background jobs ignore SIGINT: end what is left.
            stop_tree(pid, KILL_GRACE_S, self.run_id)
        return status

    def _read(self, read_fd: int) -> bool:
        """Copy one chunk from the pipe; False at end of file."""
        data = os.read(read_fd, CHUNK)
        if data:
            self.output.stream(data)
        return bool(data)

    def _drain(self, read_fd: int) -> None:
        """The command exited: take what is left, but do not wait on a background child
        that keeps the pipe open (at most 100 ms of silence)."""
        poller = select.poll()
        poller.register(read_fd, select.POLLIN | select.POLLHUP)
        while poller.poll(100) and self._read(read_fd):
            pass

    def _expire(self, pid: int, read_fd: int) -> int:
        self.timed_out = True
        self.output.finish_stream()
        self.output.line(f"timeout after {self.spec['timeout']}s: SIGTERM to the process group")
        stop_tree(pid, KILL_GRACE_S, self.run_id)
        _reap(pid, block=True)
        return EXIT_TIMEOUT


def _pidfd(pid: int) -> int | None:
    try:
        return os.pidfd_open(pid)
    except (AttributeError, OSError):  # kernel before 5.3, or no permission
        return None


def stop_tree(pid: int, grace: float, run_id: str) -> None:
    """SIGTERM the whole tree, then SIGKILL whatever is left after `grace`.

    The tree is the process group, every descendant by parent links, and every process
    whose environment carries this run's AGENCY_CRON_RUN_ID: that last one catches a
    grandchild that called setsid and was reparented to init when its parent exited.
    Found only when stopping, so the success path pays nothing for it.
    """
    members = _tree(pid, run_id)
    _signal_group(pid, signal.SIGTERM)
    for member in members:
        _kill(member, signal.SIGTERM)
    end = time.monotonic() + grace
    while time.monotonic() < end and any(_alive(m) for m in members):
        _reap(pid)
        time.sleep(0.05)
    members |= _tree(pid, run_id)
    _signal_group(pid, signal.SIGKILL)
    for member in members:
        _kill(member, signal.SIGKILL)


def _tree(pid: int, run_id: str) -> set[int]:
    return set(descendants(pid)) | {pid} | marked_processes(f"AGENCY_CRON_RUN_ID={run_id}")


def marked_processes(marker: str) -> set[int]:
    """Processes whose environment holds `marker` (exactly, as one NAME=value entry)."""
    needle = marker.encode()
    found = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as handle:
                if needle in handle.read().split(b"\0"):
                    found.add(int(entry))
        except OSError:
            continue
    return found


def _kill(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except (ProcessLookupError, PermissionError):
        pass  # already gone


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            state = handle.read().rsplit(b")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in (b"Z", b"X")


def _reap(pid: int, block: bool = False) -> int | None:
    """The exit code of `pid` once it has ended (128+N for signal N), else None."""
    try:
        done, status = os.waitpid(pid, 0 if block else os.WNOHANG)
    except ChildProcessError:
        return 255
    if done == 0:
        return None
    return os.waitstatus_to_exitcode(status) if status >= 0 else 255


def _normalise_code(code: int) -> int:
    return 128 - code if code < 0 else code


class Lock:
    """The task's overlap lock: an flock on STATE_DIR/locks/NAME.lock holding the runner's pid.

    The kernel drops an flock when its holder dies, so a runner killed with SIGKILL never
    blocks the next run.
    """

    def __init__(self, state_dir: str, name: str):
        folder = os.path.join(state_dir, "locks")
        os.makedirs(folder, exist_ok=True)
        self.path = os.path.join(folder, f"{name}.lock")
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)

    def acquire(self, wait: bool) -> bool:
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            return False
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, f"{os.getpid()}\n".encode(), 0)
        return True

    def holder(self) -> int | None:
        try:
            return int(os.pread(self.fd, 32, 0).split()[0])
        except (ValueError, IndexError, OSError):
            return None

    def close(self) -> None:
        os.close(self.fd)


def retry_delay(spec: dict, attempt: int) -> float:
    """Seconds before attempt `attempt + 1`: fixed or exponential, capped, with +-10% jitter."""
    base = float(spec["retry_delay"])
    if spec["retry_backoff"] == "exponential":
        base *= 2 ** (attempt - 1)
    import random  # only when a retry is due: the success path never pays for it

    jittered = base * random.uniform(0.9, 1.1)
    return max(0.0, min(jittered, float(spec["retry_max_delay"])))


class Run:
    """A whole run of one task: lock, attempts, history, alert."""

    def __init__(
        self, spec: dict, force_alert: bool = False, echo: bool = True, run_id: str | None = None
    ):
        self.spec = spec
        self.force_alert = force_alert
        self.run_id = run_id or os.urandom(6).hex()
        self.host = os.uname().nodename  # what gethostname() returns, without importing socket
        self.attempts = int(spec["retries"]) + 1
        self.alert_urls = _alert_urls(spec)
        self.secrets = _secrets(spec, self.alert_urls)
        self.output = Output(spec["log"], self.secrets, echo)
        from agency_cron.history import writer_path  # its own user's database

        self.history_path = writer_path(spec["state_dir"])
        self._db = None

    def db(self):
        if self._db is None:
            from agency_cron import history

            self._db = history.connect(self.history_path)
        return self._db

    def execute(self) -> int:
        lock = None
        try:
            if self.spec["overlap"] != "allow":
                lock = Lock(self.spec["state_dir"], self.spec["name"])
                if not lock.acquire(wait=self.spec["overlap"] == "wait"):
                    return self._skip(lock.holder())
            return self._attempts()
        finally:
            if lock:
                lock.close()
            self.output.close()

    def _skip(self, holder: int | None) -> int:
        note = f"previous run still running (pid {holder})"
        self.output.line(f"skipped task={self.spec['name']} run={self.run_id}: {note}")
        started = now_iso()
        self._record(1, started, started, 0.0, 0, "skipped", "", note)
        return 0

    def _attempts(self) -> int:
        signals = Signals()
        problem = _enter_working_dir(self.spec["working_dir"])
        if problem:
            return self._cannot_start(problem)
        attempt = 0
        while True:
            attempt += 1
            signals.reset_retries = False  # only a reset asked for during the wait counts
            code, status, row_id, tail, duration = self._one(attempt, signals)
            if status in FAILURES and attempt < self.attempts and signals.received is None:
                delay = retry_delay(self.spec, attempt)
                self.output.line(
                    f"retry in {delay:.1f}s (attempt {attempt + 1} of {self.attempts})"
                )
                if _sleep_unless_signalled(delay, signals):
                    self._after_reset(attempt, signals)
                    continue
            break
        self._maybe_alert(status, code, attempt, tail, duration, row_id)
        return code

    def _after_reset(self, attempt: int, signals: Signals) -> None:
        """A reset during the wait: the retries left are the task's full `retries` again."""
        if signals.reset_retries:
            self.attempts = attempt + int(self.spec["retries"])
            self.output.line(f"retries reset: attempt {attempt + 1} of {self.attempts} starts now")

    def _cannot_start(self, problem: str) -> int:
        """Recorded and alerted like any failure, so a task that never starts is noticed."""
        self.output.line(f"error task={self.spec['name']} run={self.run_id}: {problem}")
        started = now_iso()
        row_id = self._record(1, started, started, 0.0, 2, "failed", problem, problem)
        self._maybe_alert("failed", 2, 1, problem, 0.0, row_id)
        return 2

    def _one(self, attempt: int, signals: Signals):
        spec = self.spec
        started, clock = time.time(), time.monotonic()
        self.output.line(
            f"start task={spec['name']} run={self.run_id} attempt={attempt}/{self.attempts} pid={os.getpid()}"
        )
        runner = Attempt(spec, self.output, signals, self.run_id)
        code = _normalise_code(runner.run())
        duration = time.monotonic() - clock
        final = _status(code, runner.timed_out, signals.received)
        retrying = final in FAILURES and attempt < self.attempts and signals.received is None
        shown = "retry-scheduled" if retrying else final
        self.output.line(
            f"end task={spec['name']} run={self.run_id} attempt={attempt}/{self.attempts}"
            f" duration={duration:.3f}s exit={code} status={shown}"
        )
        tail = self.output.take_tail()
        row_id = self._record(attempt, now_iso(started), now_iso(), duration, code, shown, tail)
        return code, final, row_id, tail, duration

    def _record(
        self, attempt, started, finished, duration, code, status, tail, note=None
    ) -> int | None:
        row = {
            "task": self.spec["name"],
            "run_id": self.run_id,
            "attempt": attempt,
            "attempts": self.attempts,
            "started_at": started,
            "finished_at": finished,
            "duration_s": round(duration, 6),
            "exit_code": code,
            "status": status,
            "host": self.host,
            "pid": os.getpid(),
            "output_tail": tail,
            "note": note,
        }
        for wait in (0.05, 0.1, 0.2, 0.4, 0.8, 1.6, 0):
            try:
                from agency_cron import history

                return history.record(self.db(), row)
            except Exception as exc:  # history must never change the task's exit code
                # SQLite can answer "locked" without waiting (a first run creating the
                # database while another converts it to WAL): retry briefly, then warn.
                if wait and "locked" in str(exc):
                    self._db = None
                    time.sleep(wait)
                    continue
                self.output.line(f"warning: could not record the run in {self.history_path}: {exc}")
                return None
        return None

    def _maybe_alert(self, status, code, attempt, tail, duration, row_id) -> None:
        from agency_cron import history

        if not self.force_alert and not self.spec.get("alert_on_failure"):
            return  # the common case: no history query, no alerts import
        previous = None
        try:
            previous = _previous_status(self.db(), self.spec["name"], row_id)
        except Exception:  # noqa: BLE001 - a broken history only loses the recovery notice
            pass
        kind = _alert_kind(self.spec, status, previous, self.force_alert)
        if kind is None:
            return
        from agency_cron import alerts

        event = {
            "host": self.host,
            "task": self.spec["name"],
            "status": status,
            "exit_code": code,
            "duration_s": round(duration, 3),
            "attempt": attempt,
            "attempts": self.attempts,
            "run_id": self.run_id,
            "output_tail": tail,
        }
        outcome = alerts.send(
            self.alert_urls,
            kind,
            event,
            self.secrets,
            float(self.spec.get("alert_timeout", 30)),
        )
        self.output.line(f"alert ({kind}): {outcome}")
        if row_id is not None:
            try:
                history.set_alert(self.db(), row_id, f"{kind}: {outcome}")
            except Exception as exc:  # noqa: BLE001
                self.output.line(f"warning: could not record the alert: {exc}")


SECRET_SUFFIXES = ("_TOKEN", "_PASSWORD", "_SECRET", "_KEY")


def _alert_urls(spec: dict) -> list[str]:
    """The spec's alert URLs, plus ALERT_URLS from the environment (how a Kubernetes
    Secret or a systemd credential hands them over without writing them in a file)."""
    found = [*spec.get("alert_urls", [])]
    raw = os.environ.get("ALERT_URLS", "")
    if raw.strip():
        found += [u for u in raw.replace(",", " ").split() if u]
    return list(dict.fromkeys(found))


def _secrets(spec: dict, alert_urls: list[str]) -> list[str]:
    """What to mask: the spec's list, secret-named variables of our environment, and the
    credentials in every alert URL (the spec may come from a host without them)."""
    found = set(spec.get("secrets", []))
    found |= {
        v for k, v in os.environ.items() if k.upper().endswith(SECRET_SUFFIXES) and len(v) >= 4
    }
    if set(alert_urls) - set(spec.get("alert_urls", [])):
        from agency_cron.alerts import secrets_of_urls

        found |= {s for s in secrets_of_urls(alert_urls) if len(s) >= 4}
    return sorted(found)


def _alert_kind(spec: dict, status: str, previous: str | None, force: bool) -> str | None:
    """Decide without importing alerts.py when no alert can be due (the common case)."""
    if status == "success" and spec["alert"] != "always" and previous not in FAILURES:
        return None
    from agency_cron import alerts

    return alerts.decide(spec["alert"], status, previous, bool(spec.get("alert_on_failure")), force)


def _previous_status(conn, task: str, current_row: int | None) -> str | None:
    found = conn.execute(
        "SELECT status FROM runs WHERE task = ? AND id < ? AND status NOT IN"
        " ('skipped', 'retry-scheduled') ORDER BY id DESC LIMIT 1",
        (task, current_row if current_row is not None else 1 << 62),
    ).fetchone()
    return found[0] if found else None


def _status(code: int, timed_out: bool, signalled: int | None) -> str:
    if timed_out:
        return "timeout"
    if signalled is not None:
        return "killed"
    return "success" if code == 0 else "failed"


def _sleep_unless_signalled(delay: float, signals: Signals) -> bool:
    """Sleep `delay` seconds; False if a signal asked us to stop meanwhile. A reset of the
    retries (SIGUSR1) ends the wait early."""
    end = time.monotonic() + delay
    while signals.received is None:
        remaining = end - time.monotonic()
        if remaining <= 0 or signals.reset_retries:
            return True
        time.sleep(min(remaining, 0.2))
    return False


def _enter_working_dir(path: str) -> str | None:
    """chdir to the task's working directory; the reason when that is impossible."""
    try:
        os.chdir(path)
    except OSError as exc:
        return f"cannot enter working_dir {path}: {exc.strerror}"
    return None


def load_spec(path: str) -> dict:
    """The task spec: its marshal copy when install wrote one for this interpreter, else
    the JSON (hand-written specs, Kubernetes ConfigMaps, another Python version)."""
    import marshal

    try:
        with open(path.removesuffix(".json") + ".marshal", "rb") as handle:
            spec = marshal.load(handle)
        if isinstance(spec, dict):
            return spec
    except (OSError, EOFError, ValueError, TypeError):
        pass
    import json

    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except FileNotFoundError:
        raise RunnerError(f"{path}: no such task spec; run `agency-cron install` first") from None
    except (OSError, ValueError) as exc:
        raise RunnerError(f"{path}: cannot read the task spec: {exc}") from None


def _stdin_spec() -> dict:
    import json

    return json.load(sys.stdin)


def run_spec(
    spec: dict, force_alert: bool = False, echo: bool = True, run_id: str | None = None
) -> int:
    """Run a task from its resolved spec; returns the exit code to exit with."""
    return Run(spec, force_alert, echo, run_id).execute()


def started_by_cron() -> bool:
    """True when the cron daemon started this run (it is among our nearest ancestors).

    Zone checks and jitter apply to scheduled runs only: a run by hand runs now.
    AGENCY_CRON_SCHEDULED=cron|no overrides the detection (systemd units set it).
    """
    flag = os.environ.get("AGENCY_CRON_SCHEDULED")
    if flag is not None:
        return flag == "cron"
    pid = os.getppid()
    for _ in range(4):
        try:
            with open(f"/proc/{pid}/stat", "rb") as handle:
                head, tail = handle.read().rsplit(b")", 1)
        except OSError:
            return False
        if head.split(b"(", 1)[1] in (b"cron", b"crond"):
            return True
        pid = int(tail.split()[1])
        if pid <= 1:
            return False
    return False


def due_now(spec: dict, moment: float | None = None) -> bool:
    """For a scheduled run of a zoned or one-time task: is this minute a fire time?"""
    zoned = spec.get("timezone")
    if not zoned and not any(s.startswith("once ") for s in spec["schedule"]):
        return True
    from datetime import UTC, datetime

    from agency_cron import schedule

    minute = datetime.fromtimestamp(moment or time.time(), UTC).replace(second=0, microsecond=0)
    zone = schedule.zone_of(zoned)
    for expr in spec["schedule"]:
        if schedule.is_once(expr):
            if schedule.once_time(expr, zone).astimezone(UTC) == minute:
                return True
        elif expr != schedule.REBOOT and schedule.zone_due(expr, zone.key, minute):
            return True
    return False


def mark_completed(spec: dict) -> None:
    """A one-time task is done after its run: the next install removes its line."""
    if spec["schedule"] and all(s.startswith("once ") for s in spec["schedule"]):
        folder = os.path.join(spec["state_dir"], "completed")
        os.makedirs(folder, exist_ok=True)
        with open(os.path.join(folder, spec["name"]), "w") as handle:
            handle.write(now_iso() + "\n")


def scheduled_run(spec: dict, force_alert: bool, run_id: str | None = None) -> int:
    """What the wrapper does: when cron started us, honour the zone and the jitter first."""
    if started_by_cron():
        if not due_now(spec):
            return 0
        if spec.get("jitter"):
            import random

            time.sleep(random.uniform(0, float(spec["jitter"])))
    code = run_spec(spec, force_alert, run_id=run_id)
    mark_completed(spec)
    return code


def _run_id_flag(flags: set[str]) -> tuple[str | None, set[str]]:
    """--run-id=HEX (the admin API names a run before it starts); the other flags."""
    given = [f for f in flags if f.startswith("--run-id=")]
    if len(given) != 1:
        return None, flags
    value = given[0].partition("=")[2]
    ok = 0 < len(value) <= 32 and all(c in "0123456789abcdef" for c in value)
    return (value if ok else ""), flags - set(given)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    flags = {a for a in args if a.startswith("-") and a != "-"}
    paths = [a for a in args if a not in flags]
    run_id, flags = _run_id_flag(flags)
    if len(paths) != 1 or flags - {"--alert"} or run_id == "":
        print(
            "usage: python -m agency_cron.runner SPEC.json|- [--alert] [--run-id=HEX]",
            file=sys.stderr,
        )
        return 2
    try:
        spec = _stdin_spec() if paths[0] == "-" else load_spec(paths[0])
        return scheduled_run(spec, force_alert="--alert" in flags, run_id=run_id)
    except RunnerError as exc:
        print(f"agency-cron: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
