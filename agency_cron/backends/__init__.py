"""Scheduler backends behind one interface, and the one parser of `CRONTAB=` targets.

A target string names a backend and where it keeps its entries:

  user, user:NAME, file:/PATH   backends/crontab.py  a crontab (the crontab binary, or a file)
  system:/PATH                  backends/crond.py    a cron.d file: a user field on each line
  systemd:/DIR                  backends/systemd.py  a .service and a .timer per task

`parse_target` is the only place that reads the string; it is standard library and cheap
(config.py validates CRONTAB= with it on every read command), and imports no backend.
`backend(target)` imports the module that does the work. Each module implements `Backend`
as same-named functions; the planner (plan.py) only compares what `desired` returns with
what `read` found, apply.py writes the table and calls `activate`, doctor.py asks
`diagnose` and `NO_MAIL`. Kubernetes is an exporter (backends/kubernetes.py), not a target.
"""

from __future__ import annotations

import pwd
import re
from dataclasses import dataclass, field
from importlib import import_module
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, cast

from agency_cron.errors import BackendError, ConfigError

if TYPE_CHECKING:
    from agency_cron.config import Settings
    from agency_cron.doctor import Finding
    from agency_cron.manifest import Manifest, Task
    from agency_cron.plan import FileChange, Plan

FORMS = "user, user:NAME, file:/PATH, system:/PATH or systemd:/DIR"
# The target form -> the module under agency_cron.backends that implements it.
MODULES = {"user": "crontab", "file": "crontab", "system": "crond", "systemd": "systemd"}
# What useradd accepts (Debian's NAME_REGEX, with a trailing $ for machine accounts).
USER_NAME = re.compile(r"^[a-z_][a-z0-9_.-]*\$?$")


@dataclass(frozen=True)
class Target:
    """A parsed `CRONTAB=` value: its form (`kind`), and the user or path it names."""

    spec: str
    kind: str  # user, file, system or systemd (MODULES)
    user: str | None = None
    path: Path | None = None

    @property
    def label(self) -> str:
        return self.spec

    @property
    def slug(self) -> str:
        """The target as a file name part (crontab backups)."""
        return re.sub(r"[^A-Za-z0-9_.-]+", "_", self.spec).strip("_")

    @property
    def file(self) -> Path:
        """The path of a file:, system: or systemd: target (parse_target always sets one)."""
        if self.path is None:
            raise BackendError(f"CRONTAB: {self.spec}: this target has no file")
        return self.path

    def read(self) -> str:
        """The table's text ("" for a scheduler of files)."""
        return backend(self).read(self).text

    def write(self, text: str) -> None:
        backend(self).write(self, text)


def parse_target(spec: str) -> Target:
    """`user`, `user:NAME`, `file:/PATH`, `system:/PATH`, `systemd:/DIR` -> Target.

    ConfigError (one line, starting `CRONTAB: `) for anything else, for a user this system
    does not have, and for a cron.d name that cron would silently skip.
    """
    kind, _, rest = spec.partition(":")
    if "\n" in spec or "\0" in spec:
        raise ConfigError(f"CRONTAB: expected {FORMS}, got {spec!r}")
    if kind == "user" and not rest and ":" not in spec:
        return Target(spec, "user")
    if kind == "user" and USER_NAME.match(rest):
        try:
            pwd.getpwnam(rest)
        except KeyError:
            raise ConfigError(f"CRONTAB: user:{rest}: no such user on this system") from None
        return Target(spec, "user", user=rest)
    if kind in ("file", "system", "systemd") and rest.startswith("/") and len(rest) > 1:
        path = Path(rest)
        if kind == "system" and "." in path.name:
            raise ConfigError(
                f"CRONTAB: {spec}: Debian cron skips cron.d files whose names contain a dot"
            )
        return Target(spec, kind, path=path)
    raise ConfigError(f"CRONTAB: expected {FORMS}, got {spec!r}")


def target_path(spec: str) -> Path | None:
    """The file or folder a target names (None for a user's crontab or a bad target)."""
    try:
        return parse_target(spec).path
    except ConfigError:
        return None


@dataclass(frozen=True)
class Installed:
    """What a target holds now, as `read` found it."""

    text: str = ""  # the table (a crontab's text); "" for a scheduler of files
    # task -> its managed lines in table order; [] for a task known by its files only
    entries: dict[str, list[str]] = field(default_factory=dict)
    # the scheduler's files agency-cron wrote (systemd units) -> the task each belongs to
    files: dict[Path, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Desired:
    """What the tasks want in the target, as `desired` renders it."""

    entries: dict[str, list[str]]  # task -> its lines ([] when the scheduler holds files)
    files: dict[Path, tuple[bytes, str]] = field(default_factory=dict)  # -> (content, task)


class Backend(Protocol):
    """The functions (and two constants) each module in MODULES defines."""

    # Does the wrapper's cron log (LOG_DIR/cron/NAME.log) get written under this scheduler?
    CRON_LOG: bool
    # Why a failed run's output cannot reach cron's mail; None when it can (MAILTO).
    NO_MAIL: str | None

    def read(self, target: Target) -> Installed:
        """What is installed: the table's text and managed lines, the scheduler's files."""
        ...

    def desired(
        self, target: Target, settings: Settings, tasks: list[tuple[Task, bool]]
    ) -> Desired:
        """What the (task, enabled) pairs want: every task has an `entries` key. Raises
        ConfigError, with every problem found, for a task the scheduler would refuse."""
        ...

    def entry_lines(
        self, target: Target, settings: Settings, name: str, schedules: list[str], enabled: bool
    ) -> list[str]:
        """The lines of a task with these host-time schedules (doctor rebuilds what the last
        install wrote from the task's spec)."""
        ...

    def write(self, target: Target, text: str) -> None:
        """Replace the table with `text` (apply.py holds the lock and the backup)."""
        ...

    def activate(self, target: Target, changes: list[FileChange]) -> None:
        """After the plan's files are written: tell the scheduler (BackendError if it fails)."""
        ...

    def removed(self, target: Target, installed: Installed) -> list[Path]:
        """The scheduler files `uninstall` deletes (its lines go through the table)."""
        ...

    def run_as(self, target: Target, task: Task) -> str | None:
        """The user the scheduler runs `task` as; None for whoever installs."""
        ...

    def user_problems(self, target: Target, tasks: list[Task]) -> list[str]:
        """Tasks whose `user:` this target cannot honour."""
        ...

    def diagnose(
        self, settings: Settings, manifest: Manifest, plan: Plan | None, error: Exception | None
    ) -> list[Finding]:
        """doctor's scheduler checks: is it running, does it hold what install would write."""
        ...


def backend(target: Target) -> Backend:
    """The module that implements `target`'s form (imported on first use)."""
    module = import_module(f"agency_cron.backends.{MODULES[target.kind]}")
    return cast(Backend, module)


if TYPE_CHECKING:  # mypy holds each module to the protocol
    from agency_cron.backends import crond, crontab, systemd

    _crontab: Backend = crontab
    _crond: Backend = crond
    _systemd: Backend = systemd
