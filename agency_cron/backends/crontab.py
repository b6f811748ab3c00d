"""The crontab backend: `user`, `user:NAME` (the crontab binary) and `file:/PATH`.

The text is handled as lines, never re-rendered: a line agency-cron did not write (no
marker) is copied through byte for byte, which python-crontab's own save cannot promise
(it rewrites `0 0 * * *` as `@daily`, moves variables and comments; ARCHITECTURE.md).
Managed lines end with `# agency-cron:NAME`; cron hands the rest of the line to /bin/sh,
which reads that as a comment. A disabled task's line starts with `#`.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import tempfile
from collections.abc import Set as AbstractSet
from pathlib import Path
from typing import TYPE_CHECKING

from agency_cron.backends import Desired, Installed, Target
from agency_cron.backends import parse_target as parse_target  # its old home
from agency_cron.errors import BackendError, ConfigError
from agency_cron.fs import read_bytes, write_atomic

if TYPE_CHECKING:
    from agency_cron.config import Settings
    from agency_cron.doctor import Finding
    from agency_cron.manifest import Manifest, Task
    from agency_cron.plan import FileChange, Plan

MARKER = "# agency-cron:"
MANAGED = re.compile(
    r"^(?P<off>#\s*)?(?P<entry>\S.*?)\s+# agency-cron:(?P<name>[A-Za-z0-9][A-Za-z0-9_-]{0,63})\s*$"
)
ENCODING = ("utf-8", "surrogateescape")  # any byte survives decode + encode


def managed_name(line: str) -> str | None:
    """The task a crontab line belongs to, or None for a line agency-cron did not write."""
    match = MANAGED.match(line)
    return match.group("name") if match else None


def is_disabled(line: str) -> bool:
    match = MANAGED.match(line)
    return bool(match and match.group("off"))


def entry_line(schedule: str, wrapper: Path, name: str, enabled: bool, user: str | None) -> str:
    """One managed line: schedule, (cron.d user,) the wrapper, the marker. Nothing else."""
    # `%` means newline to cron: escape it so a path keeps its meaning.
    command = shlex.quote(str(wrapper)).replace("%", "\\%")
    fields = [schedule, user, command] if user else [schedule, command]
    line = " ".join(fields) + f" {MARKER}{name}"
    return line if enabled else f"# {line}"


def split_lines(text: str) -> list[str]:
    """Lines without their newlines; `"a\\n"` -> `["a"]`, `""` -> `[]`."""
    if not text:
        return []
    lines = text.split("\n")
    return lines[:-1] if lines[-1] == "" else lines


def join_lines(lines: list[str]) -> str:
    return "".join(f"{line}\n" for line in lines)


def installed_entries(text: str) -> dict[str, list[str]]:
    """Managed lines grouped by task, in file order."""
    found: dict[str, list[str]] = {}
    for line in split_lines(text):
        name = managed_name(line)
        if name:
            found.setdefault(name, []).append(line)
    return found


def merge(text: str, desired: dict[str, list[str]], scope: AbstractSet[str] | None) -> str:
    """The crontab text with the managed lines of `scope` (None: all) replaced by `desired`.

    Foreign lines keep their bytes and places; a task's lines go where its first line was,
    new tasks go at the end, tasks in scope but not desired are removed.
    """
    out: list[str] = []
    placed: set[str] = set()
    before = split_lines(text)
    for line in before:
        name = managed_name(line)
        if name is None or (scope is not None and name not in scope):
            out.append(line)
        elif name in desired and name not in placed:
            out.extend(desired[name])
            placed.add(name)
    for name, lines in desired.items():
        if name not in placed:
            out.extend(lines)
    # Nothing to change: a foreign last line keeps even a missing newline. One of ours is
    # terminated (Debian's cron ignores a crontab whose last line has no newline).
    if out == before and not (before and _in_scope(before[-1], scope)):
        return text
    return join_lines(out)


def _in_scope(line: str, scope: AbstractSet[str] | None) -> bool:
    name = managed_name(line)
    return name is not None and (scope is None or name in scope)


# --- the Backend interface (agency_cron.backends.Backend) ---------------------------------

CRON_LOG: bool = True
NO_MAIL: str | None = None


def read(target: Target) -> Installed:
    """The crontab's text (a user's, through the binary, or a file:) and its managed lines."""
    if target.path is not None:
        data = read_bytes(target.path)
        text = "" if data is None else data.decode(*ENCODING)
    else:
        text = _crontab_list(target.user)
    return Installed(text, installed_entries(text))


def write(target: Target, text: str) -> None:
    if target.path is not None:
        mode = target.path.stat().st_mode & 0o7777 if target.path.exists() else 0o644
        write_atomic(target.path, text.encode(*ENCODING), mode)
    else:
        _crontab_install(target.user, text)


def desired(target: Target, settings: Settings, tasks: list[tuple[Task, bool]]) -> Desired:
    return Desired(
        {task.name: task_lines(settings, task, enabled, None) for task, enabled in tasks}
    )


def entry_lines(
    target: Target, settings: Settings, name: str, schedules: list[str], enabled: bool
) -> list[str]:
    return lines_of(settings, name, schedules, enabled, None)


def activate(target: Target, changes: list[FileChange]) -> None:
    """cron reads the table itself: nothing to tell it."""


def removed(target: Target, installed: Installed) -> list[Path]:
    return []  # every line goes through the table


def run_as(target: Target, task: Task) -> str | None:
    return target.user  # the crontab's owner; None: whoever installs


def user_problems(target: Target, tasks: list[Task]) -> list[str]:
    return [
        f"task {t.name}: user: {t.user!r}, but the crontab of {target.user!r} runs every task as {target.user!r}"
        for t in tasks
        if t.user and target.user and t.user != target.user
    ]


def diagnose(
    settings: Settings, manifest: Manifest, plan: Plan | None, error: Exception | None
) -> list[Finding]:
    from agency_cron import doctor

    return doctor.check_cron_daemon() + doctor.check_crontab(settings, manifest, plan, error)


# --- shared with crond.py -------------------------------------------------------------------


def task_lines(settings: Settings, task: Task, enabled: bool, user: str | None) -> list[str]:
    """A task's managed lines: one per host-time schedule (crontab_schedules)."""
    return lines_of(settings, task.name, crontab_schedules(task, settings), enabled, user)


def lines_of(
    settings: Settings, name: str, schedules: list[str], enabled: bool, user: str | None
) -> list[str]:
    from agency_cron import layout

    wrapper = layout.wrapper_path(settings, name)
    return [entry_line(s, wrapper, name, enabled, user) for s in schedules]


def crontab_schedules(task: Task, settings: Settings) -> list[str]:
    """The host-time expressions for the crontab: a zoned task gets the superset lines that
    the runner narrows down (schedule.host_expression); a completed one-time task none."""
    from agency_cron import layout, schedule

    if layout.is_completed(settings, task):
        return []
    lines: list[str] = []
    for expr in task.schedule:
        if schedule.is_interval(expr):
            # Read-only commands load intervals whatever the target (load_manifest).
            try:
                schedule.cron_form(expr)
            except schedule.ScheduleError as exc:
                raise ConfigError(f"task {task.name}: schedule: {exc}") from None
        if expr == schedule.REBOOT:
            line = expr
        elif task.timezone:
            line = schedule.host_expression(expr, task.timezone)
        else:
            line = schedule.cron_form(expr) if schedule.is_once(expr) else expr
        if line not in lines:
            lines.append(line)
    return lines


# --- the crontab binary ---------------------------------------------------------------------


def crontab_binary() -> str:
    binary = shutil.which("crontab")
    if not binary:
        raise BackendError(
            "crontab: command not found; install it (Debian: apt-get install cron) "
            "or use CRONTAB=file:/PATH"
        )
    return binary


def _user_args(user: str | None) -> list[str]:
    return ["-u", user] if user else []


def _crontab_list(user: str | None) -> str:
    result = subprocess.run(
        [crontab_binary(), *_user_args(user), "-l"], capture_output=True, check=False
    )
    stderr = result.stderr.decode(*ENCODING).strip()
    if result.returncode == 0:
        return result.stdout.decode(*ENCODING)
    if "no crontab for" in stderr:
        return ""
    raise BackendError(f"crontab -l failed (exit {result.returncode}): {stderr}")


def _crontab_install(user: str | None, text: str) -> None:
    binary = crontab_binary()
    if not text:
        result = subprocess.run([binary, *_user_args(user), "-r"], capture_output=True, check=False)
        stderr = result.stderr.decode(*ENCODING).strip()
        if result.returncode and "no crontab for" not in stderr:
            raise BackendError(f"crontab -r failed (exit {result.returncode}): {stderr}")
        return
    with tempfile.NamedTemporaryFile("wb", prefix="agency-cron-", suffix=".crontab") as handle:
        handle.write(text.encode(*ENCODING))
        handle.flush()
        os.chmod(handle.name, 0o644)  # crontab -u NAME reads it as that user on some systems
        result = subprocess.run(
            [binary, *_user_args(user), handle.name], capture_output=True, check=False
        )
    if result.returncode:
        stderr = result.stderr.decode(*ENCODING).strip()
        raise BackendError(f"crontab refused the new table (exit {result.returncode}): {stderr}")
