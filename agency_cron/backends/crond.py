"""The cron.d backend: `system:/PATH`, a file that cron reads beside /etc/crontab.

The lines are a crontab's (backends/crontab.py writes and merges them) with a user field
between the schedule and the command: each task runs as its `user:` (root by default).
cron's own naming rule, that a cron.d file whose name holds a dot is skipped without a
word, is enforced when the target is parsed (backends.parse_target). The file is always
0644: cron ignores a cron.d file that others can write.
"""

from __future__ import annotations

import os
import pwd
from pathlib import Path
from typing import TYPE_CHECKING

from agency_cron.backends import Desired, Installed, Target, crontab
from agency_cron.fs import write_atomic

if TYPE_CHECKING:
    from agency_cron.config import Settings
    from agency_cron.doctor import Finding
    from agency_cron.manifest import Manifest, Task
    from agency_cron.plan import FileChange, Plan

CRON_LOG: bool = True
NO_MAIL: str | None = None
MODE = 0o644


def read(target: Target) -> Installed:
    return crontab.read(target)  # a file: target's reading: the same lines, a user field more


def write(target: Target, text: str) -> None:
    write_atomic(target.file, text.encode(*crontab.ENCODING), MODE)


def desired(target: Target, settings: Settings, tasks: list[tuple[Task, bool]]) -> Desired:
    return Desired(
        {
            task.name: crontab.task_lines(settings, task, enabled, task.user or "root")
            for task, enabled in tasks
        }
    )


def entry_lines(
    target: Target, settings: Settings, name: str, schedules: list[str], enabled: bool
) -> list[str]:
    # The user field of the lines the last install wrote, as doctor has always rebuilt them.
    user = pwd.getpwuid(os.geteuid()).pw_name
    return crontab.lines_of(settings, name, schedules, enabled, user)


def activate(target: Target, changes: list[FileChange]) -> None:
    """cron notices a changed cron.d file by its mtime: nothing to tell it."""


def removed(target: Target, installed: Installed) -> list[Path]:
    return []


def run_as(target: Target, task: Task) -> str | None:
    return task.user or "root"  # the line's user field


def user_problems(target: Target, tasks: list[Task]) -> list[str]:
    return []  # every line names its own user


def diagnose(
    settings: Settings, manifest: Manifest, plan: Plan | None, error: Exception | None
) -> list[Finding]:
    return crontab.diagnose(settings, manifest, plan, error)
