"""The run path: what cron executes, through each task's wrapper, on every run.

    python -m agency_cron.runner STATE_DIR/tasks/NAME.json [--alert]

Standard library only on the success path (os, select, _signal, fcntl, marshal, sqlite3):
typer, rich, pydantic, jinja2 and apprise cost 60-120 ms each to import, more than the
whole of `chronic true`, and even json (its regular expressions) and signal (its enums)
are measurable against it. The spec was resolved by `install` (and written in marshal
form beside the JSON), so nothing is parsed or validated here. Apprise is imported by
alerts.py only when an alert is sent; cronsim only for a zoned task started by cron.

One run: mark earlier runs whose runner died as `lost` (and tell someone), take the
task's lock (overlap), then for each attempt insert its `running` row, start the command
in its own process group with default signal dispositions, stream its output (redacted)
to the task log and to our stdout (the cron log), enforce the timeout and any stop on the
whole tree, complete the row, and retry with backoff; after the last attempt decide on an
alert, or write a failure report for cron's mail when no alert target would take it.

Supervision never ends early: a log that cannot be written (full disk, I/O error, folder
gone) only drops bytes, counted and noted; a STATE_DIR that cannot be written (lock,
history) costs one warning on stderr, never the run. README "Reliability" has the list.
"""

from __future__ import annotations

import fcntl
import os
import select
import sys
import time

from agency_cron.secrets import Redactor, secret_values, secrets_of_urls, worth_masking
from agency_cron.statuses import ALERTING as ALERTING_STATUSES
from agency_cron.statuses import (
    FAILED,
    FAILURES,
    KILLED,
    LOST,
    NOT_FINAL,
    RETRY_SCHEDULED,
    RETRYABLE,
    RUNNING,
    SKIPPED,
    SUCCESS,
    TIMEOUT,
    quoted,
    sql,
)
from agency_cron.timing import (
    ALERT_TIMEOUT_S,
    KILL_GRACE_S,
    RETRY_JITTER_PERCENT,
    base_delay,
    capped,
)

# typing costs the runner 12 ms to import: mypy alone reads what this guards (it takes any
# name TYPE_CHECKING as true).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

try:  # the C module: `signal` wraps it in enums, whose import costs more than a run of `true`
    import _signal as signal
except ImportError:  # another Python implementation
    import signal

# The format of the spec install writes (render.spec); a spec of any other version, or of
# none, is refused before anything runs: its fields may not mean what this runner reads.
SPEC_VERSION = 1
EXIT_TIMEOUT = 124
CHUNK = 1 << 20
TAIL_BYTES = 16 * 1024
TAIL_LINES = 20


class RunnerError(Exception):
    """A run that cannot start (unreadable spec, missing working dir): exit 2."""


def now_iso(moment: float | None = None) -> str:
    """UTC ISO 8601 with milliseconds; sorts lexicographically in time order."""
    moment = time.time() if moment is None else moment
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(moment))
    return f"{stamp}.{int(moment % 1 * 1000):03d}+00:00"


ROTATION_CHECK_S = 0.1


class LogFile:
    """A log opened by path for append, that never raises on a write and follows logrotate.

    Following: at most every ROTATION_CHECK_S, one stat() of the path against the inode we
    write; when the path names another file (logrotate renamed ours and created a new one),
    we reopen it, so a run that spans rotations never writes into a file that the next
    rotation compresses and removes. A file deleted under us (LOG_DIR removed) is created
    again at the next check, and what went into the deleted file since the previous check
    is counted as dropped; a path missing at two checks in a row is created again too.

    Failures (ENOSPC, EIO, EROFS, a folder gone): the bytes are counted as dropped and the
    first error kept; writing is tried again on every chunk, so a disk that frees up gets
    the rest. The task is never slowed or stopped by its log.
    """

    def __init__(self, path: str):
        self.path = path
        self.fd: int | None = None
        self.inode: tuple[int, int] | None = None
        self.error: str | None = None
        self.dropped = 0
        self.next_check = 0.0
        self.missing = False
        self.unchecked = 0  # bytes written since the last check of the path
        self._open()

    def _open(self) -> None:
        try:
            os.makedirs(os.path.dirname(self.path), exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
            info = os.fstat(fd)
        except OSError as exc:
            self.error = self.error or exc.strerror or str(exc)
            return
        if self.fd is not None:
            os.close(self.fd)
        self.fd, self.inode = fd, (info.st_dev, info.st_ino)
        self.next_check = time.monotonic() + ROTATION_CHECK_S

    def _follow(self, now: float) -> None:
        self.next_check = now + ROTATION_CHECK_S
        unchecked, self.unchecked = self.unchecked, 0
        if self.fd is None:
            return self._open()
        try:
            info = os.stat(self.path)
        except OSError:
            info = None
        if info is not None and (info.st_dev, info.st_ino) == self.inode:
            self.missing = False
            return
        if os.fstat(self.fd).st_nlink == 0:
            # Deleted, not renamed: what went there since the last check is gone. Say so.
            self.dropped += unchecked
            self.error = self.error or "the log file was deleted during the run"
            return self._open()
        if info is None and not self.missing:
            self.missing = True  # renamed, and logrotate is about to create the new file
            return
        self.missing = False
        self._open()

    def write(self, data: bytes) -> None:
        if time.monotonic() >= self.next_check:
            self._follow(time.monotonic())
        if self.fd is None:
            self.dropped += len(data)
            return
        self.unchecked += len(data)
        view = memoryview(data)
        try:
            while view:
                view = view[os.write(self.fd, view) :]
        except OSError as exc:
            self.dropped += len(view)
            self.error = self.error or exc.strerror or str(exc)

    def problem(self, since: int = 0) -> str | None:
        """ "log write failed: REASON; 12.3 MB dropped" when bytes were lost after `since`."""
        if self.dropped <= since:
            return None
        return f"log write failed: {self.error}; {human_bytes(self.dropped - since)} dropped"

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def human_bytes(count: int) -> str:
    for unit, size in (("GB", 10**9), ("MB", 10**6), ("kB", 10**3)):
        if count >= size:
            return f"{count / size:.1f} {unit}"
    return f"{count} bytes"


class Output:
    """Where a run's output goes: the task log (append), the cron log (our stdout), a tail."""

    def __init__(self, log_path: str, secrets: list[str], echo: bool = True):
        self.log = LogFile(log_path)
        self.cron_log = _cron_log() if echo else None
        if self.cron_log is not None:
            self.echo = self.cron_log.write
        elif echo:
            self.echo = _echo_target()
        else:
            self.echo = _discard
        self.redactor = Redactor(secrets)
        self.tail = b""
        self.last_tail = b""  # the attempt's last TAIL_BYTES, for a heartbeat ping's body
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
        self.log.write(data)
        try:
            self.echo(data)
        except (OSError, ValueError):
            self.echo = _discard  # a closed terminal or a full cron log must not stop the run
        if keep_tail:
            self.tail = (self.tail + data[-TAIL_BYTES:])[-TAIL_BYTES:]

    def take_tail(self) -> str:
        """The last lines of the attempt's output, then start a new tail."""
        lines = self.tail.decode("utf-8", "replace").splitlines()[-TAIL_LINES:]
        self.last_tail, self.tail = self.tail, b""
        return "\n".join(lines)

    def close(self) -> None:
        self.log.close()
        if self.cron_log is not None:
            self.cron_log.close()


def _discard(data: bytes) -> None:
    """The echo of a run that prints nothing (the admin API's, or after stdout failed)."""


def _cron_log() -> LogFile | None:
    """The cron log by path when the wrapper sent our stdout there (AGENCY_CRON_CRON_LOG), so
    that our copy of the output follows logrotate as the task log does."""
    path = os.environ.get("AGENCY_CRON_CRON_LOG")
    if not path:
        return None
    log = LogFile(path)
    return log if log.fd is not None else None


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
    """SIGTERM, SIGINT and SIGHUP to the runner stop the run: the attempt in progress ends
    its whole tree as a timeout does (SIGTERM now, SIGKILL after the grace; a second signal
    does not wait for the grace), and the run is `killed` with exit 128+N.

    The handlers only take note; the wake-up fd makes the supervising poll return at once
    (Python retries an interrupted poll after running the handler, so without it a task
    that ignores SIGTERM would be noticed only at its timeout).

    SIGUSR1 is the admin API's reset-retries: a run waiting between attempts gets its
    full retry budget back and tries again at once; at any other time it is ignored.
    """

    HANDLED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1)

    def __init__(self):
        self.received: int | None = None
        self.count = 0
        self.reset_retries = False
        self.wake_fd: int | None = None
        self.previous: dict[int, object] = {}
        self.previous_wakeup: int | None = None
        try:
            read_fd, write_fd = os.pipe()
            os.set_blocking(read_fd, False)
            os.set_blocking(write_fd, False)
            self.previous_wakeup = signal.set_wakeup_fd(write_fd)
            self.wake_fd, self.wake_write = read_fd, write_fd
        except (OSError, ValueError):  # not the main thread: the poll then checks every 0.1 s
            pass
        for signum in self.HANDLED:
            self.previous[signum] = signal.signal(signum, self._handle)

    def _handle(self, signum, frame) -> None:
        if signum == signal.SIGUSR1:
            self.reset_retries = True
            return
        if self.received is None:
            self.received = signum
        self.count += 1

    def drain(self) -> None:
        if self.wake_fd is None:
            return
        try:
            while os.read(self.wake_fd, 512):
                pass
        except (BlockingIOError, OSError):
            pass

    def close(self) -> None:
        """Put back what was there (an in-process `agency-cron run` goes on afterwards)."""
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)
        if self.wake_fd is not None:
            signal.set_wakeup_fd(self.previous_wakeup if self.previous_wakeup is not None else -1)
            os.close(self.wake_fd)
            os.close(self.wake_write)
            self.wake_fd = None


def _signal_group(group: int, signum: int) -> None:
    try:
        os.killpg(group, signum)
    except (ProcessLookupError, PermissionError):
        pass  # already gone


def _proc_stats() -> list[tuple[int, list[bytes]]]:
    """(pid, the fields of /proc/PID/stat after the command name) of every live process."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as handle:
                found.append((int(entry), handle.read().rsplit(b")", 1)[1].split()))
        except OSError:  # gone in the meantime
            continue
    return found


def descendants(root: int) -> list[int]:
    """Every live descendant of `root` by parent links in /proc (those that left its group too)."""
    children: dict[int, list[int]] = {}
    for pid, fields in _proc_stats():
        children.setdefault(int(fields[1]), []).append(pid)
    found, queue = [], [root]
    while queue:
        for child in children.get(queue.pop(), []):
            found.append(child)
            queue.append(child)
    return found


# Every signal back to its default action and none blocked in the task, as cron starts a
# job: Python ignores SIGPIPE and SIGXFSZ, and whoever started us may have ignored or
# blocked others (SIGINT in a background job, SIGHUP under nohup). An ignored SIGPIPE makes
# `yes | head -n1` print "Broken pipe" and loop on EPIPE instead of ending.
DEFAULT_SIGNALS = frozenset(signal.valid_signals()) - {signal.SIGKILL, signal.SIGSTOP}


class Attempt:
    """One execution of the command: spawn, pump output, enforce the deadline and stops."""

    def __init__(self, spec: dict, output: Output, signals: Signals, run_id: str, lock_fd=None):
        self.spec, self.output, self.signals = spec, output, signals
        self.run_id = run_id
        self.lock_fd = lock_fd
        self.timed_out = False
        self.stop: TreeStop | None = None

    def run(self) -> int:
        read_fd, write_fd = os.pipe()
        try:  # 1 MiB instead of 64 KiB: sixteen times fewer wake-ups on chatty tasks
            fcntl.fcntl(write_fd, fcntl.F_SETPIPE_SZ, CHUNK)
        except OSError:
            pass  # above /proc/sys/fs/pipe-max-size for this user: keep the default
        try:
            pid = self._spawn(write_fd)
        finally:
            os.close(write_fd)
        try:
            return self._supervise(pid, read_fd)
        finally:
            os.close(read_fd)

    def _spawn(self, write_fd: int) -> int:
        env = dict(os.environ)
        env.update(self.spec["env"])
        env["AGENCY_CRON_TASK"] = self.spec["name"]
        env["AGENCY_CRON_RUN_ID"] = self.run_id
        for private in (
            "AGENCY_CRON_REPORT_FD",
            "AGENCY_CRON_CRON_LOG",
            "AGENCY_CRON_PING_URL",
            "AGENCY_CRON_HISTORY_URL",
        ):
            env.pop(private, None)
        if self.lock_fd is not None:
            env["AGENCY_CRON_LOCK_FD"] = str(self.lock_fd)
        # Caught signals (ours, Python's SIGINT) go back to their default at exec by
        # themselves; the ignored ones (Python's SIGPIPE and SIGXFSZ, whatever our parent
        # ignored) are reset in the child: usually two system calls, not sixty.
        ignored = [s for s in DEFAULT_SIGNALS if signal.getsignal(s) == signal.SIG_IGN]
        internal = _ignored_internal_signals()
        pid = os.fork()
        if pid == 0:
            argv = ["/bin/sh", "-c", self.spec["command"]]
            _exec_task(argv, env, write_fd, self.lock_fd, ignored, internal)
        return pid

    def _supervise(self, pid: int, read_fd: int) -> int:
        """Copy output until the command exits, enforcing the deadline and any stop.

        The poll waits on the pipe, on a pidfd of the command (its exit is noticed at once,
        no sleep-and-retry; without pidfd support it checks every 10 ms) and on the signal
        wake-up fd. Output keeps flowing into the log while a stop is under way.
        """
        deadline = time.monotonic() + self.spec["timeout"]
        exit_fd = _pidfd(pid)
        poller = select.poll()
        poller.register(read_fd, select.POLLIN | select.POLLHUP)
        for fd in (exit_fd, self.signals.wake_fd):
            if fd is not None:
                poller.register(fd, select.POLLIN)
        status, open_pipe = None, True
        try:
            while status is None:
                wait = self._next_step(pid, deadline)
                if exit_fd is None or self.signals.wake_fd is None:
                    wait = min(wait, 0.01)
                for fd, _ in poller.poll(max(wait, 0) * 1000):
                    if fd == read_fd and not self._read(read_fd):
                        poller.unregister(read_fd)
                        open_pipe = False
                    elif fd == self.signals.wake_fd:
                        self.signals.drain()
                status = _reap(pid)
        finally:
            if exit_fd is not None:
                os.close(exit_fd)
        if open_pipe:
            self._drain(read_fd)
        self.output.finish_stream()
        if self.stop is None and self.signals.received is not None:
            self._begin_stop(pid, "stopped: SIGTERM to what is left of the process tree", False)
        if self.stop is not None:
            self.stop.finish(self.output)  # the shell is gone: end what is left of the tree
        return EXIT_TIMEOUT if self.timed_out else status

    def _next_step(self, pid: int, deadline: float) -> float:
        """Start or escalate a stop when one is due; seconds until the next thing to do."""
        now = time.monotonic()
        stop = self.stop
        if stop is None:
            if self.signals.received is not None:
                name = _signal_name(self.signals.received)
                stop = self._begin_stop(
                    pid, f"{name} to the runner: SIGTERM to the task's process tree"
                )
            elif now >= deadline:
                self.timed_out = True
                stop = self._begin_stop(
                    pid, f"timeout after {self.spec['timeout']}s: SIGTERM to the process tree"
                )
            else:
                return deadline - now
        if not stop.killed and (now >= stop.kill_at or self.signals.count > 1):
            stop.kill(self.output)
        return 1.0 if stop.killed else stop.kill_at - now

    def _begin_stop(self, pid: int, note: str, leader_alive: bool = True) -> TreeStop:
        self.output.finish_stream()
        self.output.line(note)
        self.stop = TreeStop(pid, self.run_id, KILL_GRACE_S, leader_alive)
        return self.stop

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


# glibc's own signals (SIGCANCEL, SIGSETXID): its sigaction() refuses them, so the signal
# module cannot reset them, yet a parent started by posix_spawn (GNU make, Python's
# subprocess) can leave them ignored, and an ignored signal stays ignored across exec.
GLIBC_INTERNAL_SIGNALS = (32, 33)
# rt_sigaction's number, where the kernel's struct sigaction is known to be all words.
RT_SIGACTION = {"x86_64": 13, "aarch64": 134}


def _ignored_internal_signals() -> tuple[int, ...]:
    """Those of GLIBC_INTERNAL_SIGNALS that we have ignored (one read of /proc/self/status)."""
    try:
        with open("/proc/self/status", "rb") as status:
            for line in status:
                if line.startswith(b"SigIgn:"):
                    mask = int(line.split()[1], 16)
                    return tuple(s for s in GLIBC_INTERNAL_SIGNALS if mask >> (s - 1) & 1)
    except (OSError, ValueError, IndexError):
        pass
    return ()


def _reset_internal_signals(signums: tuple[int, ...]) -> None:
    """In the child: SIG_DFL for glibc's signals through the raw system call (ctypes is
    imported only in a child that needs it, i.e. hardly ever under cron)."""
    number = RT_SIGACTION.get(os.uname().machine)
    if not signums or number is None:
        return
    import ctypes

    syscall = ctypes.CDLL(None, use_errno=True).syscall
    default = (ctypes.c_ulong * 4)()  # handler SIG_DFL, no flags, no restorer, empty mask
    for signum in signums:
        syscall(ctypes.c_long(number), ctypes.c_int(signum), ctypes.byref(default), None, 8)


def _exec_task(
    argv: list[str], env: dict, write_fd: int, lock_fd, ignored=DEFAULT_SIGNALS, internal=()
) -> None:
    """In the forked child: the state cron gives a job, then exec; never returns.

    Its own session and process group (the timeout and stops end all of it), stdin from
    /dev/null, stdout and stderr into our pipe, the lock descriptor inherited, every signal
    at its default and none blocked. os.fork rather than posix_spawn: glibc's posix_spawn
    leaves its two internal signals (32, 33) ignored in the child, and an ignored signal
    stays ignored across exec. The runner has no other thread at this point.
    """
    try:
        for signum in ignored:
            signal.signal(signum, signal.SIG_DFL)
        _reset_internal_signals(internal)
        signal.pthread_sigmask(signal.SIG_SETMASK, ())
        os.setsid()
        null = os.open("/dev/null", os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(write_fd, 1)
        os.dup2(write_fd, 2)
        if lock_fd is not None:
            os.set_inheritable(lock_fd, True)
        os.execve(argv[0], argv, env)
    except BaseException as exc:  # noqa: BLE001 - nothing may escape into a second runner
        try:
            os.write(2, f"agency-cron: cannot start {argv[0]}: {exc}\n".encode())
        finally:
            os._exit(127)


def _signal_name(signum: int) -> str:
    names = {signal.SIGTERM: "SIGTERM", signal.SIGINT: "SIGINT", signal.SIGHUP: "SIGHUP"}
    return names.get(signum, f"signal {signum}")


class TreeStop:
    """Ending a task's whole tree: SIGTERM to all of it at once, SIGKILL to whatever is left
    after `grace` seconds, then wait (boundedly) until it is gone.

    The tree is the process group, every descendant by parent links, and every process
    whose environment carries this run's AGENCY_CRON_RUN_ID: that last one catches a
    grandchild that called setsid and was reparented to init when its parent exited.
    Found only when stopping, so the success path pays nothing for it.
    """

    GONE_WAIT_S = 5.0

    def __init__(self, pid: int, run_id: str, grace: float, leader_alive: bool = True):
        self.pid, self.run_id = pid, run_id
        self.members = _tree(pid, run_id, leader_alive)
        self.kill_at = time.monotonic() + grace
        self.killed = False
        _signal_group(pid, signal.SIGTERM)
        for member in self.members:
            _kill(member, signal.SIGTERM)

    def kill(self, output: Output | None = None) -> None:
        self.members |= _tree(self.pid, self.run_id, leader_alive=_alive(self.pid))
        if output is not None and any(_alive(m) for m in self.members):
            output.line("SIGKILL to what is left of the process tree")
        _signal_group(self.pid, signal.SIGKILL)
        for member in self.members:
            _kill(member, signal.SIGKILL)
        self.killed = True

    def finish(self, output: Output | None = None) -> bool:
        """After the leader was reaped: the rest gets the grace, then SIGKILL. True once no
        process of the tree is left."""
        self.members |= _tree(self.pid, self.run_id, leader_alive=False)
        while not self.killed and time.monotonic() < self.kill_at and self._left():
            time.sleep(0.05)
        if not self.killed and self._left():
            self.kill(output)
        end = time.monotonic() + self.GONE_WAIT_S
        while self._left() and time.monotonic() < end:
            time.sleep(0.02)
        return not self._left()

    def _left(self) -> bool:
        return any(_alive(m) for m in self.members if m != self.pid) or _group_alive(self.pid)


def end_processes(pids: set[int], grace: float) -> bool:
    """End processes that no runner supervises any more (what a dead runner left): SIGTERM
    to them and their process groups, SIGKILL after `grace`; True once they are gone."""
    groups = {g for g in map(_group_of, pids) if g and g > 1}
    for signum in (signal.SIGTERM, signal.SIGKILL):
        for group in groups:
            _signal_group(group, signum)
        for pid in pids:
            _kill(pid, signum)
        end = time.monotonic() + (grace if signum == signal.SIGTERM else TreeStop.GONE_WAIT_S)
        while time.monotonic() < end and _any_left(pids, groups):
            time.sleep(0.05)
        if not _any_left(pids, groups):
            return True
    return False


def _group_of(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except OSError:
        return None


def _any_left(pids: set[int], groups: set[int]) -> bool:
    return any(_alive(p) for p in pids) or any(_group_alive(g) for g in groups)


def _group_alive(group: int) -> bool:
    """Is a live (not zombie) process left in the process group? killpg(0) answers for
    zombies too, which a PID 1 that never reaps (some containers) keeps forever."""
    try:
        os.killpg(group, 0)
    except (ProcessLookupError, PermissionError):
        return False
    for _, fields in _proc_stats():
        if int(fields[2]) == group and fields[0] not in (b"Z", b"X"):
            return True
    return False


def _pidfd(pid: int) -> int | None:
    try:
        return os.pidfd_open(pid)
    except (AttributeError, OSError):  # kernel before 5.3, or no permission
        return None


def _tree(pid: int, run_id: str, leader_alive: bool = True) -> set[int]:
    """The leader (while it lives), its descendants, and the run's marked processes. Once
    the leader is reaped its pid may name another process: it and its "descendants" are
    then left out."""
    found = marked_processes(f"AGENCY_CRON_RUN_ID={run_id}")
    if leader_alive:
        found |= set(descendants(pid)) | {pid}
    return found


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

    The task inherits the locked descriptor (its number is in AGENCY_CRON_LOCK_FD), so the
    flock lasts as long as any process of the run's tree holds it, as with flock(1). When
    the runner is killed with SIGKILL (the OOM killer, kill -9, a container stop) the tree
    it leaves keeps the lock: the next run of an `overlap: skip` task is `skipped` (and says
    why) until that tree ends, `agency-cron kill NAME` ends it, or a run finds it past the
    task's timeout and ends it (Run._take_lock), instead of running beside it. Chosen over ending the tree with its runner: PR_SET_PDEATHSIG reaches only the
    direct child, never the grandchildren, and a watcher process dies with the runner when
    the OOM killer or a container stop takes both, while costing a process on every run.
    A task that starts a daemon meant to outlive it should close that descriptor for it
    (`daemon {fd}>&-` in bash, or `setsid -f daemon 3>&-` for the usual fd 3), or every
    later run is skipped while the daemon lives.
    """

    def __init__(self, state_dir: str, name: str):
        """Raises OSError when STATE_DIR/locks cannot be created or opened."""
        folder = os.path.join(state_dir, "locks")
        os.makedirs(folder, exist_ok=True)
        self.path = os.path.join(folder, f"{name}.lock")
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)

    def acquire(self, wait: bool) -> bool:
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            return False
        try:
            os.ftruncate(self.fd, 0)
            os.pwrite(self.fd, f"{os.getpid()}\n".encode(), 0)
        except OSError:
            pass  # a full STATE_DIR: the flock holds all the same, only the pid is not shown
        return True

    def holder(self) -> int | None:
        try:
            return int(os.pread(self.fd, 32, 0).split()[0])
        except (ValueError, IndexError, OSError):
            return None

    def close(self) -> None:
        os.close(self.fd)


def processes_holding(path: str) -> list[int]:
    """Processes with `path` open (by /proc/PID/fd): who holds a lock file, our own included.
    Only asked when a run is skipped or killed, never on the success path."""
    target = os.path.realpath(path)
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fds = os.listdir(f"/proc/{entry}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(f"/proc/{entry}/fd/{fd}") == target:
                    found.append(int(entry))
                    break
            except OSError:
                continue
    return sorted(found)


def orphans_of(lock: Lock) -> list[int]:
    """Processes that hold the lock while the runner named in it is gone (the tree a runner
    killed with SIGKILL left); [] when a live runner holds it. Asked only when it is busy."""
    holder = lock.holder()
    others = [p for p in processes_holding(lock.path) if p != os.getpid()]
    if holder is not None and (holder in others or not others):
        return []
    return others


def holder_note(lock: Lock, orphans: list[int], name: str) -> str:
    """Why the lock is busy: a live runner, or the tree a dead runner left behind."""
    if not orphans:
        return f"previous run still running (pid {lock.holder()})"
    shown = ", ".join(map(str, orphans[:8])) + (", ..." if len(orphans) > 8 else "")
    return (
        f"the previous run's runner (pid {lock.holder()}) is gone but its processes still"
        f" hold the lock (pid {shown}): they end by themselves, at the task's timeout, or"
        f" with `agency-cron kill {name}`"
    )


def _epoch(stamp: str) -> float:
    """now_iso()'s UTC form back to seconds since the epoch."""
    import calendar

    return calendar.timegm(time.strptime(stamp[:19], "%Y-%m-%dT%H:%M:%S"))


def once_completed(spec: dict) -> bool:
    """A one-time task that already ran (runner.mark_completed wrote its mark)."""
    return (
        bool(spec["schedule"])
        and all(s.startswith("once ") for s in spec["schedule"])
        and (os.path.exists(os.path.join(spec["state_dir"], "completed", spec["name"])))
    )


def _report_fd() -> int | None:
    """cron's own stdout, kept by the wrapper as AGENCY_CRON_REPORT_FD when it sent ours to
    the cron log: a failure report written there reaches cron's mail. Never inherited by
    the task (a daemon it leaves would keep cron waiting for the end of the mail)."""
    raw = os.environ.get("AGENCY_CRON_REPORT_FD", "")
    if not raw.isdigit():
        return None
    try:
        os.set_inheritable(int(raw), False)
    except OSError:
        return None
    return int(raw)


def retry_delay(spec: dict, attempt: int) -> float:
    """Seconds before attempt `attempt + 1`: fixed or exponential, capped, with +-10% jitter."""
    base = base_delay(float(spec["retry_delay"]), spec["retry_backoff"], attempt)
    import random  # only when a retry is due: the success path never pays for it

    spread = RETRY_JITTER_PERCENT / 100
    jittered = base * random.uniform(1 - spread, 1 + spread)
    return capped(jittered, float(spec["retry_max_delay"]))


class Run:
    """A whole run of one task: lock, attempts, history, alert."""

    def __init__(
        self,
        spec: dict,
        force_alert: bool = False,
        echo: bool = True,
        run_id: str | None = None,
        fired: float | None = None,
    ):
        self.spec = spec
        self.force_alert = force_alert
        self.run_id = run_id or os.urandom(6).hex()
        self.fired = fired
        # HOST_NAME, else what gethostname() returns (without importing socket).
        self.host = os.environ.get("AGENCY_CRON_HOST") or spec.get("host") or os.uname().nodename
        self.attempts = int(spec["retries"]) + 1
        self.alert_urls = _alert_urls(spec)
        self.history_url = _history_url(spec)
        self.secrets = _secrets(spec, self.alert_urls, self.history_url)
        # The shared history's connection (psycopg), holding a fleet task's turn.
        self.fleet: Any = None
        self.away: str | None = None  # why the shared history did not answer this run
        self.pings = _pings(spec, self.run_id, self.secrets)
        self.output = Output(spec["log"], self.secrets, echo)
        from agency_cron.history import writer_path  # its own user's database

        self.history_path = writer_path(spec["state_dir"], spec.get("history_db"))
        self.report_fd = _report_fd()
        self.lock: Lock | None = None
        self.warned: set[str] = set()
        self._db: object = None

    def db(self):
        if self._db is None:
            from agency_cron import history

            self._db = history.connect(self.history_path)
        return self._db

    def execute(self) -> int:
        signals = Signals()
        try:
            return self._execute(signals)
        finally:
            signals.close()
            if self.pings is not None:
                self.pings.close()
            if self.lock is not None:
                self.lock.close()
            self._send_history()
            self.output.close()

    def _execute(self, signals: Signals) -> int:
        self._notice_lost()
        if self.spec["overlap"] != "allow":
            self.lock = self._open_lock()
            busy = self._take_lock(self.lock, signals) if self.lock else None
            if busy:
                return self._skip(busy)
        if once_completed(self.spec):
            return self._skip("once task already completed")
        if self.spec.get("scope") == "fleet":
            elsewhere = self._fleet_turn(signals)
            if elsewhere:
                return self._skip(elsewhere)
        if self.pings is not None:  # a skipped run is not a run: it pings nothing
            self.pings.start()
        code = self._attempts(signals)
        self._mark_completed()
        return code

    def _take_lock(self, lock: Lock, signals: Signals) -> str | None:
        """Take the overlap lock (waiting for it with `overlap: wait`); the reason to skip
        the run when it cannot be had.

        The tree of a runner killed with SIGKILL keeps the lock (class Lock): it is left
        alone until its run is past the task's timeout, then ended here, as its runner
        would have ended it. A wait for such a tree polls, so that its timeout still counts.
        """
        wait, ended = self.spec["overlap"] == "wait", False
        while not lock.acquire(wait=False):
            orphans = orphans_of(lock)
            if orphans and not ended and self._past_timeout():
                self.output.line(
                    f"the processes left by a lost run (pid {', '.join(map(str, orphans[:8]))})"
                    f" are past the task's timeout of {self.spec['timeout']}s: ending them"
                )
                end_processes(set(orphans), KILL_GRACE_S)
                ended = True  # once: a process that SIGKILL cannot end is not waited for again
                continue
            if not wait:
                return holder_note(lock, orphans, self.spec["name"])
            if not orphans:
                lock.acquire(wait=True)  # a live runner: it ends by its own timeout
                return None
            if not _sleep_unless_signalled(0.5, signals):
                return "stopped while waiting for the lock"
        return None

    def _past_timeout(self) -> bool:
        """Did the task's latest lost run start longer ago than its timeout?"""
        name = self.spec["name"]
        found = self._history(
            lambda conn: conn.execute(
                f"SELECT MAX(started_at) FROM runs WHERE task = ? AND status = {quoted(LOST)}",
                (name,),
            ).fetchone()[0]
        )
        return bool(found) and time.time() - _epoch(found) > float(self.spec["timeout"])

    def _open_lock(self) -> Lock | None:
        try:
            return Lock(self.spec["state_dir"], self.spec["name"])
        except OSError as exc:
            where = exc.filename or os.path.join(self.spec["state_dir"], "locks")
            self._warn(
                "lock", f"could not lock the run ({where}: {exc.strerror}); it runs unlocked"
            )
            return None

    def _fleet_turn(self, signals: Signals) -> str | None:
        """A `scope: fleet` task: take its fleet-wide turn (remote.claim); the reason to skip
        when another host has it. The shared history away: when_unreachable decides, and
        the log and an alert say which way."""
        from agency_cron import remote

        timeout = float(self.spec.get("history_timeout", remote.DEFAULT_TIMEOUT_S))
        name, overlap = self.spec["name"], self.spec["overlap"]
        try:
            if not self.history_url:
                raise remote.Unreachable("no HISTORY_URL=postgresql://... is configured")
            self.fleet = remote.connect(self.history_url, timeout)
            # `overlap: wait` waits as long as the other host's run may last, then skips;
            # the claim stops asking before bounded() stops waiting for it, so a turn it
            # gave up on is never taken behind its back.
            wait = float(self.spec["timeout"]) + KILL_GRACE_S if overlap == "wait" else 0
            until = time.monotonic() + wait
            return remote.bounded(
                lambda: remote.claim(
                    self.fleet,
                    name,
                    self.host,
                    self.run_id,
                    overlap,
                    lambda: signals.received is None and time.monotonic() < until,
                    self.fired,
                ),
                timeout * 2 + wait + remote.LOCK_POLL_S + remote.CLAIM_SEEN_S,
                "taking the fleet turn",
            )
        except Exception as exc:  # noqa: BLE001 - Unreachable, psycopg.Error: the same answer
            self._drop_fleet()
            self.away = str(exc)
            return self._unreachable(str(exc))

    def _unreachable(self, reason: str) -> str | None:
        reason = self.output.redactor.replace(reason.encode()).decode("utf-8", "replace")
        choice = self.spec.get("when_unreachable", "skip")
        done = "not run" if choice == "skip" else "run on this host alone"
        note = f"the shared history is unreachable ({reason}): fleet task {done} (when_unreachable: {choice})"
        self.output.line(f"fleet: {note}")
        self._notify(SKIPPED if choice == "skip" else "unreachable", note)
        return note if choice == "skip" else None

    def _notify(self, status: str, note: str) -> None:
        """An alert whatever the policy (a person must know a fleet task may not run), or,
        with no alert target, the report cron mails."""
        if not self.alert_urls:
            if self.report_fd is not None:
                text = f"agency-cron: task {self.spec['name']} on {self.host}: {note}\n"
                try:
                    _write_all(self.report_fd, self.output.redactor.replace(text.encode()))
                except OSError:
                    pass
            return
        from agency_cron import alerts

        event = self._event(status, None, 1, 0.0, note)
        timeout = float(self.spec.get("alert_timeout", ALERT_TIMEOUT_S))
        outcome = alerts.send(self.alert_urls, "failure", event, self.secrets, timeout)
        self.output.line(f"alert (fleet): {outcome}")

    def _drop_fleet(self) -> None:
        if self.fleet is not None:
            try:
                self.fleet.close()  # the session ends: its advisory lock is released
            except Exception:  # noqa: BLE001 - a connection already broken
                pass
            self.fleet = None

    def _send_history(self, keep: bool = False) -> None:
        """Send this database's rows not sent yet to the shared history (HISTORY_URL): this
        run's, and any an earlier run could not send. They stay in the local database (the
        spool) when it is away, and the next run or `agency-cron history sync` sends them."""
        if not self.history_url:
            return
        from agency_cron import history, remote

        timeout = float(self.spec.get("history_timeout", remote.DEFAULT_TIMEOUT_S))
        url, path, host, fleet = self.history_url, self.history_path, self.host, self.fleet

        def send() -> int:
            if self.away:  # asked once already: one wait per run, not two
                raise remote.Unreachable(self.away)
            conn = fleet or remote.connect(url, timeout)
            local = history.connect(path)
            try:
                return remote.push(conn, local, host)
            finally:
                local.close()
                if conn is not fleet:
                    conn.close()

        try:
            remote.bounded(send, timeout * 4 + 1, "sending the run")
        except Exception as exc:  # noqa: BLE001 - away, or the local file unreadable
            reason = self.output.redactor.replace(str(exc).encode()).decode("utf-8", "replace")
            self.away = reason
            self.output.line(
                f"history: not sent to the shared history ({reason}); kept in {path}, sent by"
                " the next run or `agency-cron history sync`"
            )
        finally:
            if not keep:
                self._drop_fleet()

    def _warn(self, kind: str, text: str) -> None:
        """One line on stderr (and in the task log, and in cron's mail when cron started us)
        per kind of STATE_DIR trouble."""
        if kind in self.warned:
            return
        self.warned.add(kind)
        self.output.log.write(f"{now_iso()} agency-cron: warning: {text}\n".encode())
        line = f"agency-cron: warning: {self.spec['name']}: {text}\n"
        try:
            sys.stderr.write(line)
            sys.stderr.flush()
        except (OSError, ValueError):
            pass
        if self.report_fd is not None:  # started by cron: its mail reaches a person
            try:
                _write_all(self.report_fd, line.encode())
            except OSError:
                pass

    def _history(self, work):
        """work(conn) on the history; None, and one warning, when it cannot be written (a
        full or read-only STATE_DIR): history must never change the task's exit code."""
        for wait in (0.05, 0.1, 0.2, 0.4, 0.8, 1.6, 0):
            try:
                return work(self.db())
            except Exception as exc:  # noqa: BLE001 - sqlite3, OSError, a newer schema
                # SQLite can answer "locked" without waiting (a first run creating the
                # database while another converts it to WAL): retry briefly, then warn.
                if wait and "locked" in str(exc):
                    self._db = None
                    time.sleep(wait)
                    continue
                self._warn("record", f"could not record the run in {self.history_path}: {exc}")
                return None
        return None

    def _mark_completed(self) -> None:
        try:
            mark_completed(self.spec)
        except OSError as exc:
            self._warn("completed", f"could not mark the one-time task completed: {exc}")

    def _skip(self, note: str) -> int:
        self.output.line(f"skipped task={self.spec['name']} run={self.run_id}: {note}")
        started = now_iso()
        self._record(1, started, started, 0.0, 0, SKIPPED, "", note)
        return 0

    def _notice_lost(self) -> None:
        """Earlier runs of this task whose runner died: mark them `lost`, and tell someone."""
        from agency_cron import history

        name = self.spec["name"]
        host = self.host
        for row in self._history(lambda conn: history.lost_to_tell(conn, name, host)) or []:
            note = row["note"] or history.lost_note(row)
            self.output.line(
                f"lost task={name} run={row['run_id']} started={row['started_at']}: {note}"
            )
            outcome = self._maybe_alert(LOST, None, row["attempt"], note, 0.0, row["id"])
            told = self._report(LOST, None, row["attempt"], note, outcome, row["run_id"])
            if outcome is None:  # marked, so that the next run does not tell it again
                mark = "reported to cron mail" if told else "not sent: no alert target"
                if not told and self._alert_target():
                    mark = "not sent: the alert policy asked for none"
                self._history(lambda conn, i=row["id"], m=mark: history.set_alert(conn, i, m))
            self._ping_lost(row, note)

    def _attempts(self, signals: Signals) -> int:
        problem = _enter_working_dir(self.spec["working_dir"])
        if problem:
            return self._cannot_start(problem)
        attempt, waited = 0, None
        while True:
            attempt += 1
            signals.reset_retries = False  # only a reset asked for during the wait counts
            code, status, row_id, tail, duration = self._one(attempt, signals, waited)
            waited = None
            if status in RETRYABLE and attempt < self.attempts and signals.received is None:
                delay = retry_delay(self.spec, attempt)
                self.output.line(
                    f"retry in {delay:.1f}s (attempt {attempt + 1} of {self.attempts})"
                )
                # The `retry-scheduled` row stays open (it keeps our identity) during the
                # wait: a runner killed now is found `lost` like one killed mid-attempt.
                if _sleep_unless_signalled(delay, signals):
                    self._after_reset(attempt, signals)
                    waited = row_id
                    continue
                code, status = 128 + (signals.received or 0), KILLED
                end = {
                    "status": status,
                    "exit_code": code,
                    "note": "stopped while waiting to retry",
                }
                self._close_wait(row_id, end)
            break
        self._ping_end(status, code, attempt, duration, row_id, self.output.last_tail)
        outcome = self._maybe_alert(status, code, attempt, tail, duration, row_id)
        self._report(status, code, attempt, tail, outcome, self.run_id)
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
        row_id = self._record(1, started, started, 0.0, 2, FAILED, problem, problem)
        self._ping_end(FAILED, 2, 1, 0.0, row_id, problem.encode())
        outcome = self._maybe_alert(FAILED, 2, 1, problem, 0.0, row_id)
        self._report(FAILED, 2, 1, problem, outcome, self.run_id)
        return 2

    def _one(self, attempt: int, signals: Signals, waited: int | None):
        spec = self.spec
        started = time.time()
        dropped = self.output.log.dropped
        self.output.line(
            f"start task={spec['name']} run={self.run_id} attempt={attempt}/{self.attempts} pid={os.getpid()}"
        )
        row_id = self._start_row(attempt, started)
        self._close_wait(waited)  # the previous attempt's wait is over: this row took over
        lock_fd = self.lock.fd if self.lock is not None else None
        runner = Attempt(spec, self.output, signals, self.run_id, lock_fd)
        clock = time.monotonic()  # the duration is the task's, not our bookkeeping's
        code = _normalise_code(runner.run())
        if signals.received is not None and not runner.timed_out:
            code = 128 + signals.received  # stopped: never the code the task chose on SIGTERM
        duration = time.monotonic() - clock
        final = _status(code, runner.timed_out, signals.received)
        retrying = final in RETRYABLE and attempt < self.attempts and signals.received is None
        shown = RETRY_SCHEDULED if retrying else final
        note = self.output.log.problem(dropped)
        if note:
            self.output.line(f"warning: {note}")
        self.output.line(
            f"end task={spec['name']} run={self.run_id} attempt={attempt}/{self.attempts}"
            f" duration={duration:.3f}s exit={code} status={shown}"
        )
        tail = self.output.take_tail()
        if note:
            tail = f"{tail}\n[agency-cron: the log is incomplete: {note}]".lstrip("\n")
        row_id = self._finish_row(row_id, attempt, started, duration, code, shown, tail, note)
        return code, final, row_id, tail, duration

    def _row(self, attempt, started, finished, duration, code, status, tail, note=None) -> dict:
        return {
            "task": self.spec["name"],
            "run_id": self.run_id,
            "attempt": attempt,
            "attempts": self.attempts,
            "started_at": started,
            "finished_at": finished,
            "duration_s": None if duration is None else round(duration, 6),
            "exit_code": code,
            "status": status,
            "host": self.host,
            "pid": os.getpid(),
            "output_tail": tail,
            "note": note,
            "runner": _own_identity(),
        }

    def _start_row(self, attempt, started: float) -> int | None:
        """The attempt's `running` row, inserted as it starts."""
        from agency_cron import history

        row = self._row(attempt, now_iso(started), None, None, None, RUNNING, None)
        row_id = self._history(lambda conn: history.start_run(conn, row))
        if self.fleet is not None:  # the fleet sees its run from its start, as this host does
            self._send_history(keep=True)
        return row_id

    def _close_wait(self, row_id: int | None, end: dict | None = None) -> None:
        if row_id is not None:
            from agency_cron import history

            self._history(lambda conn: history.close_wait(conn, row_id, end))

    def _finish_row(self, row_id, attempt, started, duration, code, status, tail, note):
        """Complete the attempt's row; insert it whole if its start could not be recorded."""
        from agency_cron import history

        row = self._row(attempt, now_iso(started), now_iso(), duration, code, status, tail, note)
        if row_id is None:
            return self._history(lambda conn: history.record(conn, row))
        self._history(lambda conn: history.finish_run(conn, row_id, row))
        return row_id

    def _record(
        self, attempt, started, finished, duration, code, status, tail, note=None
    ) -> int | None:
        from agency_cron import history

        row = self._row(attempt, started, finished, duration, code, status, tail, note)
        return self._history(lambda conn: history.record(conn, row))

    def _alert_target(self) -> bool:
        """Would a failure reach someone through an alert (URLs, and alerting on)?"""
        enabled = self.force_alert or (
            self.spec.get("alert_on_failure") and self.spec["alert"] != "never"
        )
        return bool(self.alert_urls) and bool(enabled)

    def _report(self, status, code, attempt, tail, outcome, run_id) -> bool:
        """The failure report cron mails (MAILTO), as chronic does: written on cron's own
        stdout when the run failed and no alert target took it. Successes stay silent."""
        if self.report_fd is None or status not in FAILURES:
            return False
        if self._alert_target() and (outcome is None or outcome.startswith("sent")):
            return False  # the alert policy speaks for this run
        text = failure_report(
            self.spec, self.host, status, code, attempt, self.attempts, tail, run_id
        )
        if outcome and not outcome.startswith("sent"):
            text += f"alert: {outcome}\n"
        try:
            _write_all(self.report_fd, self.output.redactor.replace(text.encode()))
        except OSError:
            return False
        return True

    def _ping_end(self, status, code, attempt, duration, row_id, tail: bytes) -> None:
        """The run's final heartbeat ping (before the alert, which may take ALERT_TIMEOUT):
        its outcome in the log and on the last attempt's row, never in the exit code."""
        if self.pings is None:
            return
        from agency_cron import ping

        header = (
            f"agency-cron: task {self.spec['name']} {status} on {self.host} (exit code {code},"
            f" attempt {attempt} of {self.attempts}, {duration:.1f}s, run {self.run_id})"
        )
        data = self.output.redactor.replace(ping.body(header, tail))
        action, outcome = self.pings.end(status, code, data)
        self._ping_outcome(outcome, f"{action}, rid {self.pings.rid}", row_id)

    def _ping_lost(self, row: dict, note: str) -> None:
        """/fail for a lost run, with its own rid (whoever finds it pings; readers only mark)."""
        if self.pings is None:
            return
        from agency_cron import ping

        header = (
            f"agency-cron: task {self.spec['name']} lost on {row['host']} (run {row['run_id']})"
        )
        data = self.output.redactor.replace(ping.body(header, note.encode()))
        outcome = self.pings.lost(row["run_id"], data)
        detail = f"fail, lost run {row['run_id']}, rid {ping.rid_of(row['run_id'])}"
        self._ping_outcome(outcome, detail, row["id"])

    def _ping_outcome(self, outcome: str, detail: str, row_id: int | None) -> None:
        from agency_cron import history

        outcome = self.output.redactor.replace(outcome.encode()).decode("utf-8", "replace")
        self.output.line(f"ping: {outcome} ({detail})")
        if row_id is not None:
            self._history(lambda conn: history.set_ping(conn, row_id, outcome))

    def _event(self, status, code, attempt, duration, tail) -> dict:
        """What an alert tells of this run (alerts.send's event)."""
        return {
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

    def _maybe_alert(self, status, code, attempt, tail, duration, row_id) -> str | None:
        """Send the alert the policy asks for; its outcome, or None when none was due."""
        from agency_cron import history

        if not self.force_alert and not self.spec.get("alert_on_failure"):
            return None  # the common case: no history query, no alerts import
        previous = None
        try:
            previous = _previous_status(self.db(), self.spec["name"], row_id)
        except Exception:  # noqa: BLE001 - a broken history only loses the recovery notice
            pass
        kind = _alert_kind(self.spec, status, previous, self.force_alert)
        if kind is None:
            return None
        from agency_cron import alerts

        event = self._event(status, code, attempt, duration, tail)
        outcome = alerts.send(
            self.alert_urls,
            kind,
            event,
            self.secrets,
            float(self.spec.get("alert_timeout", ALERT_TIMEOUT_S)),
        )
        self.output.line(f"alert ({kind}): {outcome}")
        if row_id is not None:
            self._history(lambda conn: history.set_alert(conn, row_id, f"{kind}: {outcome}"))
        return outcome


def failure_report(spec, host, status, code, attempt, attempts, tail, run_id) -> str:
    """A few lines for a person: task, status, exit code, the last lines, the log."""
    code_text = "unknown" if code is None else str(code)
    lines = [
        f"agency-cron: task {spec['name']} {status} on {host} (exit code {code_text};"
        f" run {run_id}, attempt {attempt} of {attempts})",
        f"log: {spec['log']}",
    ]
    shown = [line for line in (tail or "").splitlines() if line.strip()][-TAIL_LINES:]
    lines += ["last lines:", *(f"  {line}" for line in shown)] if shown else ["no output"]
    return "\n".join(lines) + "\n"


_IDENTITY: list[str | None] = []


def _own_identity() -> str | None:
    """This runner's "BOOT_ID:START_TIME" (history.process_identity), read once."""
    if not _IDENTITY:
        from agency_cron import history

        _IDENTITY.append(history.process_identity(os.getpid()))
    return _IDENTITY[0]


def _pings(spec: dict, run_id: str, secrets: list[str]):
    """The run's heartbeat pings (ping.RunPings) when the spec names a URL, or, from a
    Kubernetes Secret, AGENCY_CRON_PING_URL does (its secrets join `secrets`: the spec's
    redaction list never saw it); else None and ping.py is never imported: runs without
    pings pay nothing for them."""
    url = spec.get("ping_url") or os.environ.get("AGENCY_CRON_PING_URL", "").strip()
    if not url:
        return None
    from agency_cron import ping

    if not spec.get("ping_url"):
        from agency_cron.secrets import ping_url_secrets

        secrets += [s for s in ping_url_secrets(url, spec["name"]) if s not in secrets]
    return ping.RunPings(url, run_id, float(spec.get("ping_timeout", ping.DEFAULT_TIMEOUT)))


def _alert_urls(spec: dict) -> list[str]:
    """The spec's alert URLs, plus ALERT_URLS from the environment (how a Kubernetes
    Secret or a systemd credential hands them over without writing them in a file)."""
    found = [*spec.get("alert_urls", [])]
    raw = os.environ.get("ALERT_URLS", "")
    if raw.strip():
        found += [u for u in raw.replace(",", " ").split() if u]
    return list(dict.fromkeys(found))


def _history_url(spec: dict) -> str | None:
    """The shared history's URL: AGENCY_CRON_HISTORY_URL (how a Kubernetes Secret hands it
    over), else the spec's (HISTORY_URL); None for the local SQLite history alone."""
    return os.environ.get("AGENCY_CRON_HISTORY_URL", "").strip() or spec.get("history_url")


def _secrets(spec: dict, alert_urls: list[str], history_url: str | None = None) -> list[str]:
    """What to mask: the spec's list, secret-named variables of our environment, the
    credentials in every alert URL (the spec may come from a host without them) and in
    the shared history's URL."""
    found = [*spec.get("secrets", []), *secret_values(os.environ)]
    if set(alert_urls) - set(spec.get("alert_urls", [])):
        found += secrets_of_urls(alert_urls)
    if history_url and history_url != spec.get("history_url"):
        from agency_cron.remote import secrets_of

        found += secrets_of(history_url)
    return worth_masking(found)


def _alert_kind(spec: dict, status: str, previous: str | None, force: bool) -> str | None:
    """Decide without importing alerts.py when no alert can be due (the common case)."""
    if status == SUCCESS and spec["alert"] != "always" and previous not in ALERTING_STATUSES:
        return None
    from agency_cron import alerts

    return alerts.decide(spec["alert"], status, previous, bool(spec.get("alert_on_failure")), force)


def _previous_status(conn, task: str, current_row: int | None) -> str | None:
    """How the task's run before `current_row` ended (runs still in progress left out)."""
    found = conn.execute(
        "SELECT status FROM runs WHERE task = ? AND id < ? AND status NOT IN"
        f" {sql((RUNNING, *NOT_FINAL))} ORDER BY id DESC LIMIT 1",
        (task, current_row if current_row is not None else 1 << 62),
    ).fetchone()
    return found[0] if found else None


def _status(code: int, timed_out: bool, signalled: int | None) -> str:
    if timed_out:
        return TIMEOUT
    if signalled is not None:
        return KILLED
    return SUCCESS if code == 0 else FAILED


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


def check_version(spec: object, where: str) -> None:
    """Refuse a spec this runner does not know the format of (one line, exit 2, as for a
    spec that cannot be read)."""
    version = spec.get("version") if isinstance(spec, dict) else None
    if version != SPEC_VERSION:
        shown = "no version" if version is None else f"version {version!r}"
        raise RunnerError(
            f"{where}: task spec of {shown}; this runner reads version {SPEC_VERSION}"
            " (run `agency-cron install` again with this agency-cron)"
        )


def _stdin_spec() -> dict:
    import json

    try:
        return json.load(sys.stdin)
    except ValueError as exc:
        raise RunnerError(f"the task spec on stdin cannot be read: {exc}") from None


def run_spec(
    spec: dict,
    force_alert: bool = False,
    echo: bool = True,
    run_id: str | None = None,
    fired: float | None = None,
) -> int:
    """Run a task from its resolved spec; returns the exit code to exit with. `fired`: when
    cron fired it (before any jitter), the moment a `scope: fleet` run claims."""
    return Run(spec, force_alert, echo, run_id, fired).execute()


# "Started by cron?" is one rule: the cron daemon is the parent or the grandparent (cron's
# `sh -c LINE`). The wrapper (templates/wrapper.sh.j2, from_cron) asks it to choose where
# its output goes, then execs the runner in its own process, so the runner's parent and
# grandparent are the wrapper's and both answer alike.
CRON_ANCESTORS = 2


def started_by_cron() -> bool:
    """True when the cron daemon started this run (see CRON_ANCESTORS).

    Zone checks and jitter apply to scheduled runs only: a run by hand runs now.
    AGENCY_CRON_SCHEDULED=cron|no overrides the detection (systemd units set it).
    """
    flag = os.environ.get("AGENCY_CRON_SCHEDULED")
    if flag is not None:
        return flag == "cron"
    pid = os.getppid()
    for _ in range(CRON_ANCESTORS):
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
    fired = time.time()
    if started_by_cron():
        if not due_now(spec, fired):
            return 0
        if spec.get("jitter"):
            import random

            time.sleep(random.uniform(0, float(spec["jitter"])))
    # A one-time task is marked completed by the run itself, inside its lock.
    return run_spec(spec, force_alert, run_id=run_id, fired=fired)


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
        check_version(spec, "the task spec on stdin" if paths[0] == "-" else paths[0])
        return scheduled_run(spec, force_alert="--alert" in flags, run_id=run_id)
    except RunnerError as exc:
        print(f"agency-cron: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
