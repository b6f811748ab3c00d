"""Desired state vs what is installed -> a Plan (added, changed, removed, unchanged).

Building a plan reads the crontab and the files but writes nothing: `--dry-run` stops here
and shows the plan and its diff; apply.py carries it out.
"""

from __future__ import annotations

import difflib
import grp
import json
import os
import pwd
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path

from agency_cron import layout, logrotate, render, schedule
from agency_cron.backends import Desired, Installed, Target, backend, parse_target
from agency_cron.backends.crontab import crontab_schedules as crontab_schedules  # its old home
from agency_cron.backends.crontab import merge
from agency_cron.config import Settings
from agency_cron.errors import ConfigError, UsageError
from agency_cron.fs import read_bytes
from agency_cron.manifest import Manifest, Task
from agency_cron.overrides import describe, effective_enabled, override_of, read_overrides
from agency_cron.results import PlanRow as Row
from agency_cron.secrets import MARKER as REDACTED
from agency_cron.secrets import redact, secrets_of_urls, worth_masking

ADDED, CHANGED, REMOVED, UNCHANGED = "added", "changed", "removed", "unchanged"
EXECUTABLE, PUBLIC, PRIVATE = 0o755, 0o644, 0o600


@dataclass(frozen=True)
class FileChange:
    """One file to write (content) or delete (content None), and what it is for."""

    path: Path
    content: bytes | None
    mode: int
    action: str
    owner: str  # the task it belongs to, or "shared"


@dataclass(frozen=True)
class Plan:
    target: Target
    scope: frozenset[str] | None
    crontab_before: str
    crontab_after: str
    files: tuple[FileChange, ...]
    rows: tuple[Row, ...]
    directories: tuple[Path, ...] = field(default=())
    # Files a task running as another user must own (its logs, spec and lock): (path, user).
    owners: tuple[tuple[Path, str], ...] = field(default=())
    # Values diff() masks: secret-named variables, alert URL credentials (plan_secrets).
    secrets: tuple[str, ...] = field(default=(), repr=False)
    # The other users tasks run as: each gets its own history database (history.py).
    history_users: tuple[str, ...] = field(default=())

    @property
    def changes(self) -> bool:
        return (
            self.crontab_before != self.crontab_after
            or any(f.action != UNCHANGED for f in self.files)
            or bool(self.directories)
        )

    def diff(self) -> str:
        """A unified diff of the crontab and every file the plan changes, with secrets
        masked as listings mask them (`***`) and binary files named, never dumped."""
        parts = [_diff(self.crontab_before, self.crontab_after, f"crontab ({self.target.label})")]
        for change in self.files:
            if change.action == UNCHANGED:
                continue
            before = read_bytes(change.path) or b""
            after = change.content or b""
            if _is_binary(before) or _is_binary(after):
                parts.append(_binary_note(change, before, after))
                continue
            secrets = [*self.secrets, *_recorded_secrets(before)]
            old = _masked(change.path, _text(before), secrets)
            new = _masked(change.path, _text(after), secrets)
            if before == after and change.action == CHANGED:
                parts.append(f"{change.path}: mode becomes {change.mode:04o}\n")
            elif old == new and change.action == CHANGED:
                parts.append(f"{change.path}: only secret values changed (masked)\n")
            else:
                parts.append(_diff(old, new, str(change.path)))
        return "".join(parts)

    def as_json(self) -> dict:
        return {
            "version": 1,
            "target": self.target.label,
            "changes": self.changes,
            "rows": [row.__dict__ for row in self.rows],
            "directories": [str(d) for d in self.directories],
        }


def _text(data: bytes) -> str:
    return data.decode("utf-8", "replace")


def _is_binary(data: bytes) -> bool:
    """NUL bytes or bytes that are not UTF-8 (the .marshal spec caches): not for a diff."""
    if b"\0" in data:
        return True
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return True
    return False


def _binary_note(change: FileChange, before: bytes, after: bytes) -> str:
    if change.action == ADDED:
        return f"binary file {change.path} added ({len(after)} bytes)\n"
    if change.action == REMOVED:
        return f"binary file {change.path} removed ({len(before)} bytes)\n"
    return f"binary file {change.path} changed ({len(before)} -> {len(after)} bytes)\n"


def _recorded_secrets(data: bytes) -> list[str]:
    """The redaction list a spec written earlier carries: its old secrets stay masked in
    the `-` lines even after the config changed them."""
    try:
        recorded = json.loads(data).get("secrets") if data.startswith(b"{") else None
    except (ValueError, AttributeError):
        return []
    return [value for value in recorded or [] if isinstance(value, str)]


def _masked(path: Path, text: str, secrets: list[str]) -> str:
    """`text` as a listing shows it: a task spec's secret-named env values and alert URL
    credentials as `***` (admin.masked, whatever their length), then every known secret
    value wherever else it appears (alerts.redact)."""
    from agency_cron.admin import masked

    if path.suffix == ".json" and text.startswith("{"):
        try:
            document = masked(json.loads(text))
        except ValueError:
            document = None
        if isinstance(document, dict):
            if isinstance(document.get("secrets"), list):
                document["secrets"] = [REDACTED for _ in document["secrets"]]
            text = json.dumps(document, sort_keys=True) + "\n"
    return redact(text, secrets)


def plan_secrets(settings: Settings, tasks: list[Task]) -> tuple[str, ...]:
    """Every value a diff must mask: what the runner masks in each task's log (secret-named
    variables of the config and the task, alert URL credentials), the config's own too."""
    found = [*render.settings_secret_values(settings), *secrets_of_urls(list(settings.alert_urls))]
    for task in tasks:
        found += render.redaction_list(task, settings)
    return tuple(worth_masking(found))


def _diff(before: str, after: str, name: str) -> str:
    lines = difflib.unified_diff(
        before.splitlines(keepends=True),
        after.splitlines(keepends=True),
        f"a/{name}",
        f"b/{name}",
    )
    return "".join(line if line.endswith("\n") else line + "\n" for line in lines)


def select(manifest: Manifest, names: list[str] | None) -> list[Task]:
    """The tasks named (all when none); an unknown name is a usage error."""
    if not names:
        return list(manifest.tasks)
    found = {name: manifest.get(name) for name in dict.fromkeys(names)}
    unknown = [name for name, task in found.items() if task is None]
    if unknown:
        known = ", ".join(t.name for t in manifest.tasks) or "none"
        raise UsageError(f"unknown task {unknown[0]!r} (tasks in the manifest: {known})")
    return [task for task in found.values() if task is not None]


def build_plan(
    settings: Settings,
    manifest: Manifest,
    manifest_path: Path,
    names: list[str] | None = None,
    overrides: dict[str, bool] | None = None,
) -> Plan:
    """Compare what the manifest asks for with what the target holds; write nothing."""
    target = parse_target(settings.crontab)
    scheduler = backend(target)
    problems = layout.path_problems(settings)
    if problems:
        raise ConfigError(*problems)
    overrides = read_overrides(settings) if overrides is None else overrides
    tasks = select(manifest, names)
    check_once_times(settings, tasks)
    problems = scheduler.user_problems(target, tasks)
    if problems:
        raise ConfigError(*problems)
    scope = frozenset(t.name for t in tasks) if names else None
    installed = scheduler.read(target)
    before = installed.text
    wanted = scheduler.desired(
        target, settings, [(t, effective_enabled(t, overrides)) for t in tasks]
    )
    desired = wanted.entries
    after = merge(before, desired, scope)
    stale = _stale_tasks(settings, installed, manifest) if scope is None else set()
    changes = _file_changes(settings, tasks, manifest_path, overrides, stale, scope is None)
    changes += _scheduler_files(installed, wanted, {t.name for t in tasks}, scope is None)
    stale |= {name for name in installed.files.values() if manifest.get(name) is None}
    rows = _task_rows(tasks, stale, installed.entries, desired, changes, overrides)
    rows += [_file_row(c) for c in changes if c.owner == "shared"]
    owners = _owners(settings, tasks, target)
    secrets = plan_secrets(settings, tasks)
    users = _history_users(tasks, target)
    return Plan(
        target,
        scope,
        before,
        after,
        tuple(changes),
        tuple(rows),
        _missing_dirs(settings) + _missing_history_dirs(settings, users),
        owners,
        secrets,
        users,
    )


def run_as(task: Task, target: Target) -> str:
    """Who the scheduler runs the task as: the crontab's owner, the cron.d line's user
    field, the unit's `User=`; whoever installs when the target does not say."""
    return backend(target).run_as(target, task) or _run_as_user()


def _owners(settings: Settings, tasks: list[Task], target: Target) -> tuple[tuple[Path, str], ...]:
    """A task run as another user writes its logs, reads its spec and takes its lock as
    that user: hand those files over (its history has a database of its own: see
    _history_users)."""
    owned = []
    for task in tasks:
        user = run_as(task, target)
        if user != _run_as_user():
            for path in (
                settings.log_dir / task.log_name,
                layout.cron_log_path(settings, task.name),
                layout.spec_path(settings, task.name),
                layout.spec_cache_path(settings, task.name),
                settings.state_dir / "locks" / f"{task.name}.lock",
            ):
                if _owner_differs(path, user):
                    owned.append((path, user))
    return tuple(owned)


def _history_users(tasks: list[Task], target: Target) -> tuple[str, ...]:
    """The users other than the installer that tasks run as: their runs are recorded in
    STATE_DIR/history.d/USER/history.db, which install creates for them (apply.py)."""
    me = _run_as_user()
    return tuple(sorted({run_as(t, target) for t in tasks} - {me}))


def _missing_history_dirs(settings: Settings, users: tuple[str, ...]) -> tuple[Path, ...]:
    if os.geteuid() != 0:
        return ()  # only root can hand a folder over (doctor reports the user's problem)
    folders = [layout.user_histories_dir(settings)]
    folders += [layout.user_history_path(settings, user).parent for user in users]
    return tuple(f for f in folders if users and not f.is_dir())


def _owner_differs(path: Path, user: str) -> bool:
    try:
        return path.stat().st_uid != pwd.getpwnam(user).pw_uid
    except FileNotFoundError:
        return True


def build_uninstall_plan(settings: Settings, purge: bool) -> Plan:
    """Every managed line and scheduler file removed; with purge, every file install
    rendered as well."""
    target = parse_target(settings.crontab)
    scheduler = backend(target)
    installed = scheduler.read(target)
    before = installed.text
    after = merge(before, {}, None)
    stale = set(installed.entries) | _rendered_tasks(settings)
    changes = _removals(settings, stale, purge) if purge else []
    changes += [
        FileChange(path, None, 0, REMOVED, "shared")
        for path in scheduler.removed(target, installed)
    ]
    rows = [Row(name, "task", REMOVED) for name in sorted(installed.entries)]
    rows += [_file_row(c) for c in changes]
    return Plan(
        target, None, before, after, tuple(changes), tuple(rows), secrets=plan_secrets(settings, [])
    )


def _scheduler_files(
    installed: Installed, wanted: Desired, names: set[str], full: bool
) -> list[FileChange]:
    """The files the scheduler itself reads (systemd units): each wanted one compared with
    the disk, each installed one no task wants removed (in a full install, or when its
    task is among those installed)."""
    changes = [
        _compare(path, content, PUBLIC, owner) for path, (content, owner) in wanted.files.items()
    ]
    for path, owner in sorted(installed.files.items()):
        if path not in wanted.files and (full or owner in names):
            changes.append(FileChange(path, None, 0, REMOVED, owner))
    return changes


is_once_only = layout.is_once_only
is_completed = layout.is_completed


def check_once_times(settings: Settings, tasks) -> None:
    """A one-time schedule in the past that never ran is a mistake: refuse it (exit 2)."""
    from datetime import datetime

    problems = []
    for task in tasks:
        if is_completed(settings, task):
            continue
        zone = schedule.zone_of(task.timezone)
        for expr in task.schedule:
            if schedule.is_once(expr) and schedule.once_time(expr, zone) <= datetime.now(zone):
                problems.append(f"task {task.name}: schedule: {expr!r} is in the past ({zone.key})")
    if problems:
        raise ConfigError(*problems)


def _run_as_user() -> str:
    return pwd.getpwuid(os.geteuid()).pw_name


def _stale_tasks(settings: Settings, installed: Installed, manifest: Manifest) -> set[str]:
    """Tasks installed earlier (crontab lines or rendered specs) that the manifest dropped."""
    wanted = {t.name for t in manifest.tasks}
    return (set(installed.entries) | _rendered_tasks(settings)) - wanted


def _rendered_tasks(settings: Settings) -> set[str]:
    folder = layout.spec_dir(settings)
    return {p.stem for p in folder.glob("*.json")} if folder.is_dir() else set()


def _bundled_scripts() -> list[Path]:
    folder = files("agency_cron.cronjobs")
    return sorted(Path(str(p)) for p in folder.iterdir() if p.name.endswith(".sh"))


def _file_changes(settings, tasks, manifest_path, overrides, stale, full) -> list[FileChange]:
    wanted: list[tuple[Path, bytes, int, str]] = []
    for task in tasks:
        enabled = effective_enabled(task, overrides)
        wrapper = render.wrapper_text(task, settings, manifest_path.resolve())
        spec = render.spec_text(task, settings, enabled)
        wanted.append(
            (layout.wrapper_path(settings, task.name), wrapper.encode(), EXECUTABLE, task.name)
        )
        wanted.append((layout.spec_path(settings, task.name), spec.encode(), PRIVATE, task.name))
        cache = render.spec_marshal(task, settings, enabled)
        wanted.append((layout.spec_cache_path(settings, task.name), cache, PRIVATE, task.name))
    for script in _bundled_scripts():
        # The scripts call the checks with the interpreter install runs under (its venv),
        # on the config and manifest it installed.
        content = render.script_text(script.read_bytes(), settings, manifest_path)
        wanted.append((layout.scripts_dir(settings) / script.name, content, EXECUTABLE, "shared"))
    logrotate = _checked_logrotate(settings)
    wanted.append((layout.logrotate_path(settings), logrotate.encode(), PUBLIC, "shared"))
    changes = [_compare(path, content, mode, owner) for path, content, mode, owner in wanted]
    return changes + (_removals(settings, stale, False) if full else [])


def _removals(settings: Settings, names: set[str], with_shared: bool) -> list[FileChange]:
    paths = []
    for name in sorted(names):
        paths += [
            (layout.wrapper_path(settings, name), name),
            (layout.spec_path(settings, name), name),
            (layout.spec_cache_path(settings, name), name),
        ]
    if with_shared:
        paths += [(layout.scripts_dir(settings) / p.name, "shared") for p in _bundled_scripts()]
        paths.append((layout.logrotate_path(settings), "shared"))
    return [FileChange(p, None, 0, REMOVED, owner) for p, owner in paths if p.exists()]


def _compare(path: Path, content: bytes, mode: int, owner: str) -> FileChange:
    try:
        current_mode = path.stat().st_mode & 0o7777
    except FileNotFoundError:
        return FileChange(path, content, mode, ADDED, owner)
    same = current_mode == mode and read_bytes(path) == content
    return FileChange(path, content, mode, UNCHANGED if same else CHANGED, owner)


def _task_rows(tasks, stale, installed, desired, changes, overrides) -> list[Row]:
    file_actions: dict[str, set[str]] = {}
    for change in changes:
        file_actions.setdefault(change.owner, set()).add(change.action)
    rows = []
    for task in tasks:
        lines = desired[task.name]
        if task.name not in installed:
            action = ADDED
        elif installed[task.name] != lines or file_actions.get(task.name, set()) - {UNCHANGED}:
            action = CHANGED
        else:
            action = UNCHANGED
        state = "disabled" if lines and lines[0].startswith("#") else "enabled"
        state = describe(override_of(task, overrides)) or state
        rows.append(Row(task.name, "task", action, f"{', '.join(task.schedule)} ({state})"))
    rows += [Row(name, "task", REMOVED) for name in sorted(stale)]
    return rows


def _file_row(change: FileChange) -> Row:
    return Row(str(change.path), "file", change.action)


def _missing_dirs(settings: Settings) -> tuple[Path, ...]:
    wanted = [
        settings.log_dir,
        settings.log_dir / "cron",
        settings.state_dir,
        layout.spec_dir(settings),
        layout.scripts_dir(settings),
    ]
    return tuple(d for d in wanted if not d.is_dir())


def log_owner() -> tuple[str, str]:
    """The user and group that own the logs: whoever runs install (cron runs tasks as them)."""
    uid, gid = os.geteuid(), os.getegid()
    try:
        user = pwd.getpwuid(uid).pw_name
    except KeyError:
        user = str(uid)
    try:
        group = grp.getgrgid(gid).gr_name
    except KeyError:
        group = str(gid)
    return user, group


def _checked_logrotate(settings: Settings) -> str:
    """Render the logrotate config and, when logrotate is installed, check it with -d."""
    text = render.logrotate_text(settings, *log_owner())
    binary = render.find_program("logrotate")
    if binary:
        shown = layout.logrotate_path(settings)
        problems = logrotate.errors(binary, text.encode(), shown)
        if problems:
            raise ConfigError(f"{shown}: logrotate -d: {problems[0]}")
    return text
