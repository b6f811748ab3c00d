"""What every check shares: the result type, timing, running a command, hiding credentials.

Standard library only: the checks run from cron on every schedule, and stay lean.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import TypeVar

# Enough of a command's output to say why it failed, short enough for one log line.
OUTPUT_TAIL_CHARS = 300
# Checks wait on the network and on other processes, not on the CPU: run a few at once so a
# dozen unreachable services cost one timeout, not a dozen.
WORKERS = 8
# After a timeout kill, how long to wait for the pipes to close before giving up on them.
KILL_GRACE_S = 2.0

T = TypeVar("T")


@dataclass(frozen=True)
class CheckResult:
    """One check's outcome. kind is "health", "backup" or "integration"."""

    kind: str
    component: str
    check_name: str
    ok: bool
    detail: str
    duration_s: float

    @property
    def label(self) -> str:
        return f"{self.component}/{self.check_name}"

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class CommandOutcome:
    """How a command ended: returncode None means it was killed at the timeout."""

    returncode: int | None
    output: str
    duration_s: float


def run_all(work: Callable[[T], list[CheckResult]], items: list[T]) -> list[CheckResult]:
    """Run `work` on every item, a few at once; results keep the items' order."""
    if len(items) <= 1:
        return [result for item in items for result in work(item)]
    with ThreadPoolExecutor(max_workers=min(WORKERS, len(items))) as pool:
        return [result for batch in pool.map(work, items) for result in batch]


def run_command(
    argv: list[str], timeout: float, env: dict[str, str] | None = None
) -> CommandOutcome:
    """Run argv with stdin closed, stdout and stderr merged; kill its whole group at the timeout.

    Raises FileNotFoundError when the program does not exist.
    """
    started = time.monotonic()
    # A session of its own, so a timeout ends the children a shell started too.
    process = subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        env=env,
    )
    try:
        output, _ = process.communicate(timeout=timeout)
        code: int | None = process.returncode
    except subprocess.TimeoutExpired:
        _kill_group(process)
        try:
            output, _ = process.communicate(timeout=KILL_GRACE_S)
        except subprocess.TimeoutExpired:  # a daemonised grandchild holds the pipe open
            output = b""
        code = None
    text = output.decode("utf-8", "replace").strip()
    return CommandOutcome(code, text, time.monotonic() - started)


def run_shell(command: str, timeout: float) -> tuple[bool, str]:
    """`/bin/sh -c COMMAND` -> (ok, detail): ok on exit 0 within the timeout."""
    outcome = run_command(["/bin/sh", "-c", command], timeout)
    if outcome.returncode is None:
        return False, f"timed out after {timeout:g}s"
    if outcome.returncode != 0:
        output = tail(outcome.output)
        return False, f"exit {outcome.returncode}" + (f": {output}" if output else "")
    return True, f"exit 0 in {outcome.duration_s:.2f}s"


def _kill_group(process: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError):  # it ended on its own meanwhile
        os.killpg(process.pid, signal.SIGKILL)


def tail(text: str, limit: int = OUTPUT_TAIL_CHARS) -> str:
    """The last line(s) of output on one line, cut to `limit` characters from the end."""
    flat = " | ".join(line.strip() for line in text.splitlines() if line.strip())
    return flat if len(flat) <= limit else "..." + flat[-limit:]


def seconds(started: float) -> float:
    """Seconds since a time.monotonic() reading, rounded for display and history."""
    return round(time.monotonic() - started, 3)


def human_size(size: float) -> str:
    """Bytes for people, 1024-based: 512B, 1.5KB, 20.0GB."""
    if size < 1024:
        return f"{size:.0f}B"
    for unit in ("KB", "MB", "GB"):
        size /= 1024
        if size < 1024:
            return f"{size:.1f}{unit}"
    return f"{size / 1024:.1f}TB"


def human_duration(total: float) -> str:
    """Seconds for people, two units at most: 45s, 12m30s, 3h12m, 2d4h."""
    total = int(total)
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [(days, "d"), (hours, "h"), (minutes, "m"), (secs, "s")]
    while len(parts) > 1 and parts[0][0] == 0:
        parts.pop(0)
    return "".join(f"{n}{u}" for n, u in parts[:2] if n or u == parts[0][1])
