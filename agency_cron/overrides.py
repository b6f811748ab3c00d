"""enable/disable choices, kept in STATE_DIR/overrides.json until reversed.

Its own module so that read-only commands (list, status, log-summary) need not import the
planner and everything it brings.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from agency_cron import layout
from agency_cron.config import Settings
from agency_cron.errors import ConfigError, shown
from agency_cron.fs import read_bytes

if TYPE_CHECKING:  # pydantic: not imported by read commands that need no validation
    from agency_cron.manifest import Task


def read_overrides(settings: Settings) -> dict[str, bool]:
    """{task: enabled} as `agency-cron enable/disable` recorded it.

    A malformed file is refused whole (ConfigError naming it), never half-read: guessing
    could run a task the operator disabled, or skip one they enabled.
    """
    path = layout.overrides_path(settings)
    data = read_bytes(path)
    if not data:
        return {}
    try:
        loaded = json.loads(data)
    except ValueError as exc:
        raise ConfigError(f"{path}: not valid JSON: {exc}") from None
    problem = _shape_problem(loaded)
    if problem:
        raise ConfigError(f"{path}: {problem} (fix it, or remove it to follow the manifest)")
    return dict(loaded.get("enabled", {}))


def _shape_problem(loaded: object) -> str | None:
    """What is wrong with a parsed overrides.json, or None: {"enabled": {TASK: true|false}}."""
    if not isinstance(loaded, dict):
        return f'expected an object like {{"enabled": {{"TASK": false}}}}, got {shown(loaded)}'
    enabled = loaded.get("enabled", {})
    if not isinstance(enabled, dict):
        return f"enabled: expected an object of task names, got {shown(enabled)}"
    for name, choice in enabled.items():
        if not isinstance(choice, bool):
            return f"enabled: {name}: expected true or false, got {shown(choice)}"
    return None


def effective_enabled(task: Task, overrides: dict[str, bool]) -> bool:
    return overrides.get(task.name, task.enabled)


def override_of(task: Task, overrides: dict[str, bool]) -> str | None:
    """The local choice where it differs from the manifest ("disabled", "enabled"), or None."""
    choice = overrides.get(task.name)
    if choice is None or choice == task.enabled:
        return None
    return "enabled" if choice else "disabled"


def with_choice(task: Task, overrides: dict[str, bool], enabled: bool) -> dict[str, bool]:
    """The overrides after `enable`/`disable`: a choice the manifest already makes is no
    override at all, so it is dropped, and a later change of the manifest takes effect."""
    changed = dict(overrides)
    if enabled == task.enabled:
        changed.pop(task.name, None)
    else:
        changed[task.name] = enabled
    return changed


def describe(override: str | None) -> str:
    """The words every human view uses for an override: "disabled locally" or ""."""
    return f"{override} locally" if override else ""


def write_overrides(settings: Settings, overrides: dict[str, bool]) -> None:
    """Record the choices (atomically, and only when they changed)."""
    from agency_cron.fs import write_if_changed

    path = layout.overrides_path(settings)
    document = {"version": 1, "enabled": dict(sorted(overrides.items()))}
    path.parent.mkdir(parents=True, exist_ok=True)
    write_if_changed(path, (json.dumps(document, indent=2) + "\n").encode(), 0o644)
