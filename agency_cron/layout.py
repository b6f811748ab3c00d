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
    return settings.state_dir / "history.db"


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


def api_tasks_dir(settings: Settings) -> Path:
    """Tasks created or changed through the admin API, one JSON file per task."""
    return settings.state_dir / "api" / "tasks"


def audit_log_path(settings: Settings) -> Path:
    """Every change made through the admin API, one JSON object a line."""
    return settings.state_dir / "api" / "audit.log"
