"""Health checks: is each component's service up? One CheckResult per declared check.

A check that cannot run on this host (no systemd, no docker daemon, no permission) fails
with the reason: a health check that silently passes is worse than one that asks for a look.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agency_cron.checks import web
from agency_cron.checks.common import (
    CheckResult,
    human_size,
    run_all,
    run_command,
    run_shell,
    seconds,
    tail,
)
from agency_cron.checks.models import (
    Check,
    CommandCheck,
    Component,
    DiskCheck,
    DockerCheck,
    HttpCheck,
    ProcessCheck,
    SystemdCheck,
    TcpCheck,
)

KIND = "health"
# sd_booted(3): systemd is the init system exactly when this folder exists.
SYSTEMD_RUNTIME = Path("/run/systemd/system")
PROC = Path("/proc")
# systemctl and docker answer in milliseconds; a hung daemon should not hold the run.
TOOL_TIMEOUT_S = 15
# The kernel keeps 15 characters of a process name in /proc/PID/comm.
COMM_LENGTH = 15


def run_health(components: list[Component]) -> list[CheckResult]:
    """Run every check of every component (a few at once); results in declaration order."""
    items = [(c.name, label, check) for c in components for label, check in c.labelled_checks()]
    return run_all(_run_one, items)


def _run_one(item: tuple[str, str, Check]) -> list[CheckResult]:
    component, label, check = item
    started = time.monotonic()
    try:
        ok, detail = CHECKERS[check.type](check)
    except Exception as exc:  # one broken check must not hide every other result
        ok, detail = False, f"check could not run: {type(exc).__name__}: {exc}"
    return [CheckResult(KIND, component, label, ok, detail, seconds(started))]


def check_http(check: HttpCheck) -> tuple[bool, str]:
    """The URL answers with the expected status (and body substring) within the timeout."""
    started = time.monotonic()
    try:
        reply = web.fetch(
            check.url,
            method=check.method,
            headers=check.headers,
            timeout=check.timeout,
            follow_redirects=check.follow_redirects,
        )
    except web.FetchError as exc:
        return False, str(exc)
    return web.judge(reply, check.status, check.contains, time.monotonic() - started)


def check_tcp(check: TcpCheck) -> tuple[bool, str]:
    """A TCP connection to host:port opens within the timeout."""
    started = time.monotonic()
    host = check.host.strip("[]")  # [::1] as written in URLs
    try:
        with socket.create_connection((host, check.port), timeout=check.timeout):
            pass
    except OSError as exc:
        return False, f"{check.host}:{check.port}: {web.describe_error(exc, check.timeout)}"
    return True, f"{check.host}:{check.port} connected in {time.monotonic() - started:.2f}s"


def check_process(check: ProcessCheck) -> tuple[bool, str]:
    """A live (not zombie) process by name, or the pid in a pidfile is alive."""
    if check.pidfile is not None:
        return _check_pidfile(Path(check.pidfile))
    pids = find_processes(check.name or "", check.cmdline)
    wanted = repr(check.name) + (
        f" with {check.cmdline!r} in its command line" if check.cmdline else ""
    )
    if not pids:
        return False, f"no running process named {wanted}"
    shown = ", ".join(str(pid) for pid in pids[:5]) + (", ..." if len(pids) > 5 else "")
    return True, f"{len(pids)} running (pid {shown})"


def find_processes(name: str, cmdline: str | None = None) -> list[int]:
    """Pids of live processes whose name (comm or argv[0]) is `name`; this process excluded."""
    found = []
    for entry in PROC.iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            comm = (entry / "comm").read_text().strip()
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            state = _state(entry)
        except OSError:  # gone in the meantime, or hidden from us
            continue
        argv0 = os.path.basename(argv[0].decode(errors="replace")) if argv[0] else ""
        named = name in (comm, argv0) or (len(name) > COMM_LENGTH and comm == name[:COMM_LENGTH])
        line = b" ".join(argv).decode(errors="replace")
        if named and state != "Z" and (cmdline is None or cmdline in line):
            found.append(int(entry.name))
    return sorted(found)


def _state(proc_dir: Path) -> str:
    """The one-letter state from /proc/PID/stat (Z for a zombie: dead, not yet reaped)."""
    stat = (proc_dir / "stat").read_text()
    return stat.rpartition(")")[2].split()[0]


def _check_pidfile(pidfile: Path) -> tuple[bool, str]:
    try:
        text = pidfile.read_text().strip()
    except FileNotFoundError:
        return False, f"{pidfile} not found"
    except OSError as exc:
        return False, f"{pidfile}: cannot read: {exc.strerror}"
    if not text.isdigit() or int(text) <= 0:
        return False, f"{pidfile} does not hold a pid (got {text[:20]!r})"
    pid = int(text)
    if not pid_alive(pid):
        return False, f"pid {pid} from {pidfile} is not running"
    return True, f"pid {pid} from {pidfile} is running"


def pid_alive(pid: int) -> bool:
    """True when pid is a live process (another user's counts; a zombie does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, it is just not ours
        pass
    try:
        return _state(PROC / str(pid)) != "Z"
    except (OSError, IndexError):
        return True


def check_systemd(check: SystemdCheck) -> tuple[bool, str]:
    """`systemctl is-active UNIT` prints active. Fails where systemd is not the init system."""
    if not SYSTEMD_RUNTIME.is_dir():
        return (
            False,
            f"systemd is not running here ({SYSTEMD_RUNTIME} missing); cannot check {check.unit}",
        )
    try:
        outcome = run_command(["systemctl", "is-active", "--", check.unit], TOOL_TIMEOUT_S)
    except FileNotFoundError:
        return False, "systemctl not found"
    if outcome.returncode is None:
        return False, f"systemctl did not answer within {TOOL_TIMEOUT_S}s"
    state = outcome.output.splitlines()[-1].strip() if outcome.output else ""
    if outcome.returncode == 0 and state == "active":
        return True, f"{check.unit} is active"
    return False, f"{check.unit} is {state or 'unknown'} (systemctl exit {outcome.returncode})"


def check_docker(check: DockerCheck) -> tuple[bool, str]:
    """The container's status is running (and healthy, when it has a healthcheck)."""
    template = "{{.State.Status}} {{if .State.Health}}{{.State.Health.Status}}{{end}}"
    argv = ["docker", "inspect", "--type", "container", "-f", template, check.container]
    try:
        outcome = run_command(argv, TOOL_TIMEOUT_S)
    except FileNotFoundError:
        return False, "docker CLI not found"
    if outcome.returncode is None:
        return False, f"docker did not answer within {TOOL_TIMEOUT_S}s"
    if outcome.returncode != 0:
        return False, tail(outcome.output) or f"docker inspect exit {outcome.returncode}"
    status, _, health = outcome.output.splitlines()[-1].strip().partition(" ")
    if status != "running":
        return False, f"container {check.container} is {status or 'in an unknown state'}"
    if health and health != "healthy":
        return False, f"container {check.container} is running but {health}"
    return True, f"container {check.container} is running" + (f", {health}" if health else "")


def check_disk(check: DiskCheck) -> tuple[bool, str]:
    """The filesystem of path is at most max_used_percent full, counted as df does."""
    try:
        stat = os.statvfs(check.path)
    except OSError as exc:
        return False, f"{check.path}: {exc.strerror}"
    used = (stat.f_blocks - stat.f_bfree) * stat.f_frsize
    # df leaves the root-reserved blocks out of the total: a user cannot fill them.
    total = used + stat.f_bavail * stat.f_frsize
    if total <= 0:
        return False, f"{check.path}: the filesystem reports no size"
    percent = 100.0 * used / total
    detail = f"{percent:.1f}% used of {human_size(total)} (max {check.max_used_percent:g}%)"
    return percent <= check.max_used_percent, detail


def check_command(check: CommandCheck) -> tuple[bool, str]:
    """`/bin/sh -c COMMAND` exits 0 within the timeout."""
    return run_shell(check.command, check.timeout)


# Each takes its own kind of check: Any, as the union of them would need a match per call.
CHECKERS: dict[str, Callable[[Any], tuple[bool, str]]] = {
    "http": check_http,
    "tcp": check_tcp,
    "process": check_process,
    "systemd": check_systemd,
    "docker": check_docker,
    "disk": check_disk,
    "command": check_command,
}
