"""Where agency-cron puts things, derived from Settings in one place (CONTRACT.md)."""

from __future__ import annotations

from pathlib import Path

from agency_cron.config import Settings

LOGROTATE_NAME = "agency_stack_cron"


def scripts_dir(settings: Settings) -> Path:
    return settings.agency_root / "scripts" / "cronjobs"


def wrapper_path(settings: Settings, name: str) -> Path:
    return scripts_dir(settings) / f"{name}.sh"


def spec_dir(settings: Settings) -> Path:
    return settings.state_dir / "tasks"


def spec_path(settings: Settings, name: str) -> Path:
    return spec_dir(settings) / f"{name}.json"


def spec_cache_path(settings: Settings, name: str) -> Path:
    """The same spec in marshal form: the runner reads it without importing json (whose
    regular expressions cost more than the rest of a run of `true`)."""
    return spec_dir(settings) / f"{name}.marshal"


def cron_log_path(settings: Settings, name: str) -> Path:
    return settings.log_dir / "cron" / f"{name}.sh.log"


def logrotate_path(settings: Settings) -> Path:
    return settings.logrotate_dir / LOGROTATE_NAME


def overrides_path(settings: Settings) -> Path:
    return settings.state_dir / "overrides.json"


def backups_dir(settings: Settings) -> Path:
    return settings.state_dir / "backups"


def history_path(settings: Settings) -> Path:
    """The installer's history database: STATE_DIR/history.db, or HISTORY_URL's sqlite path."""
    return settings.history_db


def user_histories_dir(settings: Settings) -> Path:
    """One folder per user a task runs as, each with that user's history.db (history.py)."""
    return settings.state_dir / "history.d"


def user_history_path(settings: Settings, user: str) -> Path:
    return user_histories_dir(settings) / user / "history.db"


def crontab_lock_path(settings: Settings) -> Path:
    return settings.state_dir / "locks" / "crontab.lock"


def completed_path(settings: Settings, name: str) -> Path:
    """Marks a one-time task as done (written by the runner after its run)."""
    return settings.state_dir / "completed" / name


def is_once_only(task) -> bool:
    from agency_cron.schedule import is_once

    return all(is_once(expr) for expr in task.schedule)


def is_completed(settings: Settings, task) -> bool:
    """A one-time task that has run: no next run, no crontab line, no systemd timer."""
    return is_once_only(task) and completed_path(settings, task.name).exists()


def api_tasks_dir(settings: Settings) -> Path:
    """Tasks created or changed through the admin API, one JSON file per task."""
    return settings.state_dir / "api" / "tasks"


def audit_log_path(settings: Settings) -> Path:
    """Every change made through the admin API, one JSON object a line."""
    return settings.state_dir / "api" / "audit.log"


# --- configured paths and the OS errors on them ------------------------------------------

PATH_SETTINGS = ("AGENCY_ROOT", "LOG_DIR", "STATE_DIR", "LOGROTATE_DIR")
# The folders install creates when missing; a `file:` crontab's folder must exist otherwise.
OWNED_SETTINGS = ("AGENCY_ROOT", "LOG_DIR", "STATE_DIR")


def configured_paths(settings: Settings) -> list[tuple[str, Path]]:
    """(setting, path) for every path the configuration names, the crontab target's too."""
    found = [(key, Path(settings.get(key))) for key in PATH_SETTINGS]
    from agency_cron.backends import target_path

    if (path := target_path(settings.crontab)) is not None:
        found.append(("CRONTAB", path))
    return found


def setting_of(settings: Settings, path: Path) -> tuple[str, Path] | None:
    """The configured path that `path` is (or lies under), the deepest one; else None."""
    matches = [
        (key, root)
        for key, root in configured_paths(settings)
        if path == root or root in path.parents
    ]
    return max(matches, key=lambda match: len(match[1].parts), default=None)


def path_error(settings: Settings, exc: OSError) -> str:
    """One line for an OSError: the path, what went wrong, and the setting it came from."""
    path = Path(str(exc.filename)) if exc.filename else None
    reason = exc.strerror or str(exc)
    if path is None:
        return reason
    blocker = file_in_the_way(path)
    if blocker is not None:
        reason = f"{reason} ({blocker} is a file, not a folder)"
    origin = setting_of(settings, path)
    where = f" (from {origin[0]}={origin[1]})" if origin else ""
    return f"{path}: {reason}{where}"


def file_in_the_way(path: Path) -> Path | None:
    """The nearest existing ancestor of `path` when it is not a folder (ENOTDIR), else None."""
    for ancestor in path.parents:
        try:
            if ancestor.exists():
                return None if ancestor.is_dir() else ancestor
        except OSError:
            return None
    return None


def path_problems(settings: Settings) -> list[str]:
    """What is wrong with the configured paths that can be known without writing: a file
    where a folder must be, and a `file:` crontab whose folder is missing outside the
    folders install creates (a `system:` cron.d file's folder is created, as cron's own is)."""
    problems = []
    for key, path in configured_paths(settings):
        blocker = file_in_the_way(path)
        if blocker is not None:
            problems.append(f"{key}: {path}: {blocker} is a file, not a folder")
    if settings.crontab.startswith("file:"):
        folder = Path(settings.crontab.partition(":")[2]).parent
        owned = [Path(settings.get(key)) for key in OWNED_SETTINGS]
        inside = any(folder == root or root in folder.parents for root in owned)
        if not inside and not folder.is_dir() and file_in_the_way(folder / "x") is None:
            problems.append(
                f"CRONTAB: {settings.crontab}: folder {folder} does not exist (create it"
                " first: install creates folders only under AGENCY_ROOT, LOG_DIR and STATE_DIR)"
            )
    return problems
