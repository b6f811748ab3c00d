"""YAML/JSON manifest -> validated, frozen Task models.

Loading collects every problem before raising, so an operator fixes a manifest in one pass.
Messages read `tasks.yaml: tasks[2] (backup): schedule: ...`, the shape borgmatic made
familiar. pydantic does the type work; the checks that need cron knowledge live in schedule.py.
"""

from __future__ import annotations

import functools
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from agency_cron import layout
from agency_cron.config import Settings
from agency_cron.config import find_manifest as find_manifest  # its home: config.py (light)
from agency_cron.errors import ConfigError, shown
from agency_cron.fields import (
    ENV_KEY,
    ENV_KEY_FORM,
    NAME_FORM,
    NAME_PATTERN,
    NAME_RULE,
    UnsetVariable,
    clear_secret_problem,
    describe,
    did_you_mean,
    expand,
    parse_duration,
    plain,
    secret_references,
)
from agency_cron.schedule import ScheduleError, normalise_list
from agency_cron.secrets import is_secret_name

if TYPE_CHECKING:
    from agency_cron.api_tasks import Overlay
    from agency_cron.checks.models import Component, Integration

TOP_LEVEL_KEYS = ("defaults", "tasks", "components", "integrations")
SECTIONS = ("components", "integrations")  # validated by agency_cron.checks.models
MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")


def _no_control(value: str, field: str) -> str:
    if "\n" in value or "\r" in value or "\0" in value:
        raise ValueError("must not contain a newline or NUL")
    return value


class Task(BaseModel):
    """One scheduled task, validated and frozen. Durations are stored in seconds."""

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=False)

    name: str
    description: str = ""
    schedule: tuple[str, ...]
    command: str | None = None
    script: str | None = None
    enabled: bool = True
    timeout: int = 1800
    env: dict[str, str] = Field(default_factory=dict)
    working_dir: str | None = None
    log: str | None = None
    retries: int = Field(default=0, ge=0, le=100)
    retry_delay: int = 60
    retry_backoff: Literal["fixed", "exponential"] = "fixed"
    retry_max_delay: int = 3600
    overlap: Literal["skip", "wait", "allow"] = "skip"
    alert: Literal["on_failure", "on_change", "always", "never"] = "on_failure"
    alert_urls: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    # Overdue when no success for this long (default: from the schedule).
    expect_within: int | None = None
    # The IANA zone the schedule is read in (default: the host's).
    timezone: str | None = None
    # A random delay before each scheduled run, up to this many seconds.
    jitter: int = 0
    # Run as this user (system:/cron.d and systemd targets; root there by default).
    user: str | None = None
    # Heartbeat pings (healthchecks.io protocol) to this URL ({name}: the task's name);
    # `none` opts out of PING_URL. See agency_cron/ping.py.
    ping_url: str | None = None
    # host: every host that has it installed runs it; fleet: one host of those sharing
    # HISTORY_URL per fire time (remote.claim), and what to do when that history is away.
    scope: Literal["host", "fleet"] = "host"
    when_unreachable: Literal["skip", "run"] = "skip"

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not NAME_PATTERN.match(value):
            raise ValueError(f"must be {NAME_RULE} (got {shown(value)})")
        return value

    @field_validator("schedule", mode="before")
    @classmethod
    def _schedule(cls, value: object, info) -> tuple[str, ...]:
        context = info.context or {}
        try:
            return normalise_list(
                value, context.get("strict", True), context.get("intervals", False)
            )
        except ScheduleError as exc:
            raise ValueError(str(exc)) from None

    @field_validator("ping_url")
    @classmethod
    def _ping_url(cls, value: str | None) -> str | None:
        from agency_cron import ping

        if value is not None and (problem := ping.problem(value)):
            raise ValueError(problem)
        return None if value is None else value.strip()

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str | None) -> str | None:
        if value is None:
            return None
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"unknown time zone {shown(value)} (expected an IANA name like Europe/Paris)"
            ) from None
        return value

    @field_validator("user")
    @classmethod
    def _user(cls, value: str | None) -> str | None:
        if value is None:
            return None
        import pwd

        try:
            pwd.getpwnam(value)
        except KeyError:
            raise ValueError(f"no such user {shown(value)} on this system") from None
        return value

    @field_validator(
        "timeout", "retry_delay", "retry_max_delay", "expect_within", "jitter", mode="before"
    )
    @classmethod
    def _duration(cls, value: object) -> int | None:
        if value is None:
            return None
        seconds = parse_duration(value)
        return seconds

    @field_validator("timeout")
    @classmethod
    def _positive_timeout(cls, value: int) -> int:
        if value <= 0:
            raise ValueError("must be longer than 0s")
        return value

    @field_validator("description", "command", "working_dir", "log")
    @classmethod
    def _single_line(cls, value: str | None, info) -> str | None:
        return value if value is None else _no_control(value, info.field_name)

    @field_validator("script")
    @classmethod
    def _script(cls, value: str | None) -> str | None:
        if value is not None and "\0" in value:
            raise ValueError("must not contain a NUL")
        return value

    @field_validator("env", mode="before")
    @classmethod
    def _env(cls, value: object) -> dict[str, str]:
        if not isinstance(value, dict):
            raise ValueError("expected a mapping of NAME: value")
        result = {}
        for key, item in value.items():
            if not isinstance(key, str) or not ENV_KEY.match(key):
                raise ValueError(
                    f"{shown(key)} is not a valid variable name (letters, digits, '_', no '=')"
                )
            if isinstance(item, dict | list) or item is None:
                raise ValueError(f"{key}: expected a single value")
            text = _yaml_scalar(item)
            if "\n" in text or "\r" in text or "\0" in text:
                raise ValueError(f"{key}: value must not contain a newline or NUL")
            result[key] = text
        return result

    @field_validator("alert_urls", "tags", mode="before")
    @classmethod
    def _string_list(cls, value: object) -> tuple[str, ...]:
        items = value.split() if isinstance(value, str) else value
        if not isinstance(items, list | tuple):
            raise ValueError("expected a list of strings")
        for item in items:
            if not isinstance(item, str) or not item or any(c in item for c in "\n\r\0"):
                raise ValueError(f"{shown(item)}: expected a non-empty single-line string")
        return tuple(items)

    @field_validator("working_dir")
    @classmethod
    def _absolute(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith("/"):
            raise ValueError(f"must be an absolute path, got {shown(value)}")
        return value

    @field_validator("log")
    @classmethod
    def _log_name(cls, value: str | None) -> str | None:
        if value is not None and (
            not value or value.startswith("/") or ".." in value.split("/") or value.endswith("/")
        ):
            raise ValueError(f"must be a file name inside LOG_DIR, got {shown(value)}")
        return value

    @model_validator(mode="after")
    def _one_body(self) -> Task:
        if (self.command is None) == (self.script is None):
            which = "both" if self.command is not None else "neither"
            raise ValueError(f"give exactly one of command or script ({which} given)")
        if self.command is not None and not self.command.strip():
            raise ValueError("command is empty")
        return self

    @property
    def log_name(self) -> str:
        return self.log or f"{self.name}.log"

    @property
    def secret_values(self) -> tuple[str, ...]:
        return tuple(v for k, v in self.env.items() if is_secret_name(k) and v)


def _yaml_scalar(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


# --- the JSON schema of a task as written (the admin API's request body) ------------------
#
# Task.model_json_schema() describes the model as stored (durations in seconds); a manifest
# or a request body writes some fields in other forms (`timeout: 30m`, one schedule or a
# list). document_schema() is the model's schema with those fields in their written forms,
# each field described: /openapi.json shows it, and schemathesis generates tasks from it.

DURATION_FIELDS = ("timeout", "retry_delay", "retry_max_delay", "expect_within", "jitter")
FIELD_HELP = {
    "name": "The task's name: 1-64 letters, digits, '-' or '_', starting with a letter or digit",
    "description": "One line shown in listings and on the dashboard",
    "schedule": "When it runs: a cron expression (minute hour day-of-month month day-of-week,"
    " with lists, ranges, steps and jan-dec/sun-sat names, as Debian cron reads them), a"
    " nickname (@hourly, @daily, @weekly, @monthly, @yearly), `@every N` (s, m, h or d) or"
    " `once YYYY-MM-DD HH:MM`; or a list of them",
    "command": "A shell command line (`sh -c`); give exactly one of command and script",
    "script": "A shell script, run by /bin/sh; give exactly one of command and script",
    "enabled": "false keeps the task installed but never run (`agency-cron enable` turns it on)",
    "timeout": "How long a run may take before its process group is killed",
    "env": "Environment variables of the task; values of *_TOKEN, *_PASSWORD, *_SECRET and"
    " *_KEY names are secrets, masked wherever output is shown",
    "working_dir": "The absolute folder the task runs in",
    "log": "Its log file, relative to LOG_DIR (default: NAME.log)",
    "retries": "How many more attempts after a failed one",
    "retry_delay": "The wait before the first retry",
    "retry_backoff": "exponential doubles the wait after each attempt",
    "retry_max_delay": "The longest wait between attempts",
    "overlap": "What a run does while the previous one still runs: skip, wait for it, or allow",
    "alert": "When to send an alert",
    "alert_urls": "Apprise URLs of this task's alerts (besides ALERT_URLS); a string of"
    " space-separated URLs or a list",
    "tags": "Labels to filter by; a string of space-separated words or a list",
    "expect_within": "Overdue when no run succeeded for this long (default: from the schedule)",
    "timezone": "The IANA time zone the schedule is read in (default: the host's)",
    "jitter": "A random delay before each scheduled run, up to this long",
    "user": "The user it runs as (system: and systemd: targets; root there by default)",
    "ping_url": "Heartbeat pings (healthchecks.io protocol) to this http(s) URL ({name}: the"
    " task's name); `none` opts out of PING_URL",
    "scope": "host: runs on every host that installs it; fleet: once per fire time across the"
    " hosts sharing HISTORY_URL (PostgreSQL)",
    "when_unreachable": "A fleet task while the shared history is away: skip the run, or run"
    " it on this host anyway (both are logged and alerted)",
}
LINE = r"[^\n\r\u0000]"  # a character of a one-line field


def _cron_field(number: str, step: str, names: str = "") -> str:
    """A pattern for one cron field: `*`, numbers, ranges (low-high), steps (after `*` or a
    range) and lists of them; names for months and days."""
    value = f"({number}|{names})" if names else number
    item = rf"((\*|{value}-{value})(/({step}))?|{value})"
    return rf"{item}(,{item})*"


_MONTHS = "jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec"
_DAYS = "sun|mon|tue|wed|thu|fri|sat"
_DAY_OF_MONTH = "[1-9]|[12][0-9]|3[01]"
_CRON = " ".join(
    (
        _cron_field("[1-5]?[0-9]", "[1-9]|[1-5][0-9]"),
        _cron_field("(1?[0-9]|2[0-3])", "[1-9]|1[0-9]|2[0-3]"),
        _cron_field(f"({_DAY_OF_MONTH})", _DAY_OF_MONTH),
        _cron_field("([1-9]|1[0-2])", "[1-9]|1[0-2]", _MONTHS),
        _cron_field("[0-7]", "[1-7]", _DAYS),
    )
)
# The `@every` that cron keeps exactly (a systemd: target keeps any, see schedule.py).
_EVERY = r"@every ((1|2|3|4|5|6|10|12|15|20|30)m|(1|2|3|4|6|8|12)h|1d)"
_ONCE = r"once 2[0-9]{3}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01]) ([01][0-9]|2[0-3]):[0-5][0-9]"
SCHEDULE_PATTERN = (
    rf"^(@(hourly|daily|weekly|monthly|yearly|annually|midnight)|{_EVERY}|{_ONCE}|{_CRON})$"
)
_SCHEDULE = {"type": "string", "pattern": SCHEDULE_PATTERN, "examples": ["0 4 * * *", "@hourly"]}
_DURATION_FORM = r"([0-9]+d)?([0-9]+h)?([0-9]+m)?([0-9]+s)?"
_DURATION = {
    "type": "string",
    "pattern": rf"^{_DURATION_FORM}$",
    "minLength": 2,
    "examples": ["90s", "30m", "1h30m", "2d"],
}
_WORDS = {"type": "string", "pattern": r"^\S+( \S+)*$"}
_WORD_LIST = {"type": "array", "items": {"type": "string", "pattern": rf"^{LINE}+$"}}
_ONE_LINE = {"type": "string", "pattern": rf"^{LINE}*$"}
WRITTEN_FORMS: dict[str, dict[str, Any]] = {
    "name": {"type": "string", "pattern": f"^{NAME_FORM}$"},
    "description": _ONE_LINE,
    "schedule": {"anyOf": [_SCHEDULE, {"type": "array", "items": _SCHEDULE, "minItems": 1}]},
    "command": {"type": "string", "pattern": rf"^{LINE}*[^\s\u0000]{LINE}*$"},
    "script": {"type": "string", "pattern": r"^[^\u0000]*$"},
    "env": {
        "type": "object",
        "propertyNames": {"pattern": f"^{ENV_KEY_FORM}$"},
        "additionalProperties": {"anyOf": [_ONE_LINE, {"type": "number"}, {"type": "boolean"}]},
    },
    "working_dir": {"type": "string", "pattern": rf"^/{LINE}*$"},
    # Inside LOG_DIR: not absolute, no `..` part, not a folder.
    "log": {"type": "string", "pattern": rf"^(?!/)(?!(.*/)?\.\.(/|$)){LINE}*[^/\n\r\u0000]$"},
    "alert_urls": {"anyOf": [_WORDS, _WORD_LIST]},
    "tags": {"anyOf": [_WORDS, _WORD_LIST]},
    "timezone": {"type": "string", "examples": ["Europe/Paris", "UTC"]},  # + the host's zones
    "user": {"type": "string", "examples": ["backup"]},
    "ping_url": {
        "type": "string",
        "pattern": r"^(none|https?://[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*(:[0-9]{1,4})?(/[A-Za-z0-9._~{}/-]*)?)$",
        "examples": ["https://hc-ping.com/KEY/{name}", "none"],
    },
    **{key: _DURATION for key in DURATION_FIELDS},
    "timeout": {**_DURATION, "pattern": rf"^(?=.*[1-9]){_DURATION_FORM}$"},  # > 0s
}


def _duration_text(seconds: int) -> str:
    """1800 -> '30m', 5400 -> '1h30m': a duration as the manifest writes it."""
    parts = [(seconds // 86400, "d"), (seconds // 3600 % 24, "h"), (seconds // 60 % 60, "m")]
    text = "".join(f"{n}{unit}" for n, unit in [*parts, (seconds % 60, "s")] if n)
    return text or "0s"


@functools.cache
def document_schema() -> dict[str, Any]:
    """The JSON schema of one task as a manifest or the admin API writes it (see above).
    Strings may hold ${VAR}, expanded from config.env before these forms are checked."""
    schema = Task.model_json_schema()
    properties = {}
    for key, stored in schema["properties"].items():
        form = dict(WRITTEN_FORMS.get(key) or stored)
        form.pop("title", None)
        if "default" in stored:
            default = stored["default"]
            form["default"] = (
                _duration_text(default)
                if key in DURATION_FIELDS and isinstance(default, int)
                else default
            )
        if key == "timezone":
            form["enum"] = _zones()
        nullable = any(item.get("type") == "null" for item in stored.get("anyOf", ()))
        if nullable and key in WRITTEN_FORMS and key not in ("command", "script"):
            form = {"anyOf": [form, {"type": "null"}], **_kept(form)}
        properties[key] = {**form, "description": FIELD_HELP[key]}
    return {
        "title": "TaskDocument",
        "description": "A task as in the manifest (README, 'Manifest reference'). Strings may"
        " hold ${VAR} or ${VAR:-default}, expanded from config.env first.",
        "type": "object",
        "properties": properties,
        "required": schema.get("required", []),
        "oneOf": [{"required": ["command"]}, {"required": ["script"]}],
        "additionalProperties": False,
        "examples": [{"name": "nightly-report", "schedule": "0 4 * * *", "command": "true"}],
    }


def _zones() -> list[str]:
    """The IANA zones this host knows: the values `timezone` accepts here."""
    from zoneinfo import available_timezones

    return sorted(available_timezones())


def _kept(form: dict) -> dict:
    """What stays beside anyOf when a written form is made nullable (default, examples)."""
    return {k: form.pop(k) for k in ("default", "examples") if k in form}


@dataclass(frozen=True)
class Manifest:
    """Every task, in file order, with the files they came from."""

    tasks: tuple[Task, ...]
    sources: tuple[Path, ...]
    components: tuple[Component, ...] = ()
    integrations: tuple[Integration, ...] = ()
    # The file each task came from (the admin API tells its own tasks from the operator's).
    origins: dict[str, Path] = field(default_factory=dict, compare=False, hash=False)

    def get(self, name: str) -> Task | None:
        return next((task for task in self.tasks if task.name == name), None)


def load_manifest(
    path: str | os.PathLike,
    settings: Settings,
    strict: bool = True,
    pending: dict[Path, dict | None] | None = None,
    intervals: bool | None = None,
    overlay: Overlay | None = None,
) -> Manifest:
    """Load a manifest file or a folder of them, then the files of `overlay`; raise
    ConfigError with every problem.

    `strict=False` (read-only commands) skips python-crontab's second opinion on the
    cron fields; everything else is checked the same. `pending` maps files to the document
    they are about to hold (None: about to be deleted), so that a change is validated with
    the whole manifest before anything is written.

    `intervals`: whether `@every N` that cron cannot keep (`@every 15s`, `@every 90m`) is
    accepted as a systemd interval; by default on a systemd:DIR target, and by read-only
    commands (strict=False), which show whatever a systemd install may hold.

    `overlay`: files read after the manifest's, and whether their tasks may replace the
    manifest's; by default the admin API's task folder (api_tasks.overlay: its rule, which
    every reader of the manifest applies the same way).
    """
    path = Path(path)
    if intervals is None:
        intervals = not strict or settings.crontab.startswith("systemd:")
    if overlay is None:
        from agency_cron import api_tasks

        overlay = api_tasks.overlay(settings, pending)
    context = {"strict": strict, "intervals": intervals}
    files = _manifest_files(path)
    problems: list[str] = []
    tasks: list[Task] = []
    origins: dict[str, Path] = {}
    sections: dict[str, list] = {key: [] for key in SECTIONS}
    seen: dict[str, str] = {}
    for file in [*files, *overlay.files]:
        document = (pending or {}).get(file, _UNREAD)
        for where, task in _load_file(file, settings, problems, sections, context, document):
            if task.name in seen:
                if overlay.replaces_task(file, origins[task.name]):
                    index = next(i for i, t in enumerate(tasks) if t.name == task.name)
                    tasks[index], origins[task.name] = task, file
                    continue
                problems.append(
                    f"{where}: name: duplicate task name, first defined at {seen[task.name]}"
                    + overlay.duplicate_hint(file)
                )
                continue
            seen[task.name], origins[task.name] = where, file
            tasks.append(task)
            _refuse_bundled_name(where, task.name, problems)
            if strict and task.scope == "fleet" and not settings.history_url:
                problems.append(
                    f"{where}: scope: fleet needs a history the hosts share:"
                    " HISTORY_URL=postgresql://USER:PASSWORD@HOST/DB in config.env"
                )
    tasks += [task for task in builtin_tasks(settings, strict) if task.name not in seen]
    _refuse_duplicates(path, sections, problems)
    if problems:
        raise ConfigError(*_bounded(problems))
    return Manifest(
        tasks=tuple(tasks),
        sources=tuple(files + [f for f in overlay.files if f.exists()]),
        components=tuple(sections["components"]),
        integrations=tuple(sections["integrations"]),
        origins=origins,
    )


_UNREAD = object()
MAX_PROBLEMS = 50  # a broken file of 4,000 tasks is fixed from its first lines
MAX_PROBLEM_CHARS = 1000


def _bounded(problems: list[str]) -> list[str]:
    """At most MAX_PROBLEMS lines of at most MAX_PROBLEM_CHARS each (values are cut where
    they are quoted; this is the backstop for a message that quotes one whole)."""
    shown = [
        p if len(p) <= MAX_PROBLEM_CHARS else f"{p[:MAX_PROBLEM_CHARS]}... ({len(p):,} characters)"
        for p in problems[:MAX_PROBLEMS]
    ]
    if len(problems) > MAX_PROBLEMS:
        shown.append(f"... and {len(problems) - MAX_PROBLEMS} more problems")
    return shown


METRICS_TASK = "metrics-export"


def builtin_tasks(settings: Settings, strict: bool = True) -> list[Task]:
    """Tasks agency-cron adds by itself: `metrics-export` when METRICS_TEXTFILE is set,
    every minute, through the bundled script (which calls the interpreter install ran
    with). A manifest task of the same name takes its place (another schedule, say)."""
    textfile = settings.metrics_textfile
    if textfile is None:
        return []
    import shlex

    script = layout.scripts_dir(settings) / "metrics_export_cron.sh"
    document = {
        "name": METRICS_TASK,
        "description": "Writes the Prometheus metrics to METRICS_TEXTFILE for node_exporter",
        "schedule": "* * * * *",
        "command": shlex.quote(str(script)),
        "env": {"METRICS_TEXTFILE": str(textfile)},
        "timeout": "2m",
        "overlap": "skip",
        "alert": "on_change",  # one alert when the export breaks, one when it recovers
        "log": "metrics.log",
        "tags": ["monitoring"],
    }
    return [Task.model_validate(document, context={"strict": strict})]


def _refuse_bundled_name(where: str, name: str, problems: list[str]) -> None:
    """A wrapper NAME.sh must not overwrite one of the bundled scripts beside it."""
    if name in _bundled_names():
        problems.append(
            f"{where}: name: its wrapper {name}.sh would overwrite the bundled script of the"
            " same name; pick another name"
        )


@functools.cache
def _bundled_names() -> frozenset[str]:
    from importlib.resources import files

    return frozenset(
        p.name[:-3] for p in files("agency_cron.cronjobs").iterdir() if p.name.endswith(".sh")
    )


def _refuse_duplicates(path: Path, sections: dict[str, list], problems: list[str]) -> None:
    for key, items in sections.items():
        names = [item.name for item in items]
        for name in sorted({n for n in names if names.count(n) > 1}):
            problems.append(f"{path}: {key}: {name!r} is declared more than once")


def _manifest_files(path: Path) -> list[Path]:
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix in MANIFEST_SUFFIXES and p.is_file())
        if not files:
            raise ConfigError(f"{path}: no *.yaml, *.yml or *.json files in this folder")
        return files
    if not path.is_file():
        raise ConfigError(f"{path}: manifest not found")
    return [path]


def _load_file(
    file: Path,
    settings: Settings,
    problems: list[str],
    sections: dict[str, list],
    context: dict,
    document: Any = _UNREAD,
) -> list[tuple[str, Task]]:
    if document is _UNREAD:
        try:
            document = _parse(file)
        except ConfigError as exc:
            problems.extend(exc.problems)
            return []
    elif problem := shape_problem(document):  # an API request body, bounded like a file
        problems.append(f"{file}: {problem}")
        return []
    entries, defaults = _entries(file, document, problems)
    if isinstance(document, dict) and any(key in document for key in SECTIONS):
        from agency_cron.checks.models import validate_section

        for key in SECTIONS:
            sections[key] += validate_section(
                file, key, document.get(key), settings.values, problems
            )
    loaded = []
    for label, raw in entries:
        where = f"{file}: {label}"
        task = _build_task(where, raw, defaults, settings, problems, context)
        if task is not None:
            loaded.append((f"{where} ({task.name})", task))
    return loaded


def _parse(file: Path) -> Any:
    text = _read_bounded(file)
    if "\0" in text:
        raise ConfigError(f"{file}: contains a NUL byte")
    if file.suffix == ".json":
        try:
            document = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{file}: line {exc.lineno}: invalid JSON: {exc.msg}") from None
        except RecursionError:
            raise ConfigError(f"{file}: {_too_deep()}") from None
        if problem := shape_problem(document):
            raise ConfigError(f"{file}: {problem}")
        return document
    return _parse_yaml(file, text)


def _read_bounded(file: Path) -> str:
    """The file's text; never more than MAX_BYTES read (a manifest is not a data file)."""
    try:
        with open(file, "rb") as handle:
            data = handle.read(MAX_BYTES + 1)
        if len(data) > MAX_BYTES:
            raise ConfigError(
                f"{file}: larger than {MAX_BYTES // 2**20} MiB; a manifest that big is refused"
                " (split it into a folder of files)"
            )
        return data.decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{file}: cannot read: {exc}") from None


def _parse_yaml(file: Path, text: str) -> Any:
    import yaml

    loader = _unique_key_loader()
    try:
        _check_yaml_shape(file, text, _base_loader())
        return yaml.load(text, Loader=loader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{file}: {where}invalid YAML: {problem}") from None


# --- bounds: what reading one manifest may cost ------------------------------------------
#
# YAML aliases share nodes, so 400 bytes can describe 9^9 values (an "alias bomb"); the
# loader builds them shared and cheap, but expanding ${VAR}, validating and quoting them
# in messages walks every copy (measured before these bounds: 15 s and 1.2 GB for 9^8).
# So the shape is checked on the parser's events, before anything is built: values and
# text counted as if every alias were expanded, nesting counted through aliases too.

MAX_BYTES = 4 * 2**20
MAX_DEPTH = 64  # a manifest needs about 6 levels (tasks, a task, env, ...)
MAX_VALUES = 100_000  # about 4,000 tasks, aliases expanded
MAX_TEXT = 4 * MAX_BYTES  # characters of all scalars, aliases expanded


def _too_deep() -> str:
    return f"nested more than {MAX_DEPTH} levels deep"


def _too_big(values: int, text: int, aliased: bool) -> str | None:
    how = " once its aliases are expanded" if aliased else ""
    if values > MAX_VALUES:
        return f"holds more than {MAX_VALUES:,} values{how}"
    if text > MAX_TEXT:
        return f"holds more than {MAX_TEXT // 2**20} MiB of text{how}"
    return None


def _check_yaml_shape(file: Path, text: str, loader: type) -> None:
    """Raise ConfigError when the document, aliases expanded, is too big or too deep."""
    import yaml

    counter = _ExpandedShape(yaml)
    for event in yaml.parse(text, Loader=loader):
        problem = counter.add(event)
        if problem:
            mark = event.start_mark  # the parser always sets it; the stubs say Optional
            raise ConfigError(f"{file}: line {mark.line + 1 if mark else '?'}: {problem}")


class _ExpandedShape:
    """Counts a YAML event stream as if every alias were expanded: values, characters of
    text, nesting. Each node's totals are kept under its anchor, so an alias costs what
    its node holds without being walked again (the check is linear in the events)."""

    def __init__(self, yaml):
        self.kinds = {
            yaml.ScalarEvent: self._scalar,
            yaml.SequenceStartEvent: self._start,
            yaml.MappingStartEvent: self._start,
            yaml.SequenceEndEvent: self._end,
            yaml.MappingEndEvent: self._end,
            yaml.AliasEvent: self._alias,
        }
        self.anchors: dict[str, tuple[int, int, int]] = {}  # name -> (values, text, depth)
        self.open: list[list] = []  # per open collection: [anchor, values, text, depth]
        self.values = self.text = 0
        self.aliased = False

    def add(self, event) -> str | None:
        """The problem this event makes, or None."""
        handler = self.kinds.get(type(event))
        return handler(event) if handler else None

    def _scalar(self, event) -> str | None:
        node = (1, len(event.value), 0)
        if event.anchor:
            self.anchors[event.anchor] = node
        return self._place(node)

    def _start(self, event) -> str | None:
        self.anchors.pop(event.anchor, None)  # an alias inside it would be recursive
        self.open.append([event.anchor, 1, 0, 0])
        self.values += 1
        if len(self.open) > MAX_DEPTH:
            return _too_deep()
        return _too_big(self.values, self.text, self.aliased)

    def _end(self, event) -> None:
        anchor, values, text, depth = self.open.pop()
        node = (values, text, depth + 1)
        if anchor:
            self.anchors[anchor] = node
        if self.open:  # in the totals already, part by part: only its parent learns of it
            self._into_parent(node)

    def _alias(self, event) -> str | None:
        node = self.anchors.get(event.anchor)
        if node is None:
            if any(entry[0] == event.anchor for entry in self.open):
                return f"alias *{event.anchor} is inside its own anchor"
            return None  # undefined: the loader says so
        self.aliased = True
        if len(self.open) + node[2] > MAX_DEPTH:
            return _too_deep()
        return self._place(node)

    def _place(self, node: tuple[int, int, int]) -> str | None:
        self.values += node[0]
        self.text += node[1]
        if self.open:
            self._into_parent(node)
        return _too_big(self.values, self.text, self.aliased)

    def _into_parent(self, node: tuple[int, int, int]) -> None:
        parent = self.open[-1]
        parent[1] += node[0]
        parent[2] += node[1]
        parent[3] = max(parent[3], node[2])


def shape_problem(document: Any) -> str | None:
    """For a document already in memory (JSON, an API request body): too big or too deep?"""
    pending = [(document, 1)]
    values, chars = 1, 0
    while pending:
        value, depth = pending.pop()
        if isinstance(value, dict | list):
            if depth > MAX_DEPTH:
                return _too_deep()
            items = [*value, *value.values()] if isinstance(value, dict) else value
            values += len(items)  # counted before they are queued: a huge list stays unread
            if values <= MAX_VALUES:
                pending.extend((item, depth + 1) for item in items)
        elif isinstance(value, str):
            chars += len(value)
        if problem := _too_big(values, chars, False):
            return problem
    return None


def _base_loader() -> Any:  # a loader class: libyaml's CSafeLoader, else SafeLoader
    import yaml

    return getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@functools.cache
def _unique_key_loader() -> type:
    """A SafeLoader (libyaml when present) that refuses duplicate keys instead of keeping the last."""
    import yaml

    base: Any = _base_loader()

    class UniqueKeyLoader(base):
        def construct_mapping(self, node, deep=False):
            # The mapping's own keys must be unique; a key merged in (<<: *defaults) may
            # be overridden by one of them, as YAML's merge rule says.
            seen = set()
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=deep)
                if not isinstance(key, str | int | float | bool) and key is not None:
                    raise yaml.constructor.ConstructorError(
                        None,
                        None,
                        "a key must be a plain value, not a list or mapping",
                        key_node.start_mark,
                    )
                if key in seen:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"duplicate key {shown(key)}", key_node.start_mark
                    )
                seen.add(key)
            self.flatten_mapping(node)
            return super().construct_mapping(node, deep=deep)

    return UniqueKeyLoader


def _entries(file: Path, document: Any, problems: list[str]) -> tuple[list[tuple[str, Any]], dict]:
    """Split a document into (label, raw task) pairs and its defaults."""
    if isinstance(document, dict) and "name" in document and "tasks" not in document:
        return [("task", document)], {}
    if not isinstance(document, dict):
        shape = "empty" if document is None else type(document).__name__
        problems.append(
            f"{file}: expected a mapping with a 'tasks:' list (or one task), got {shape}"
        )
        return [], {}
    for key in document:
        if key not in TOP_LEVEL_KEYS:
            problems.append(
                f"{file}: {plain(key)}: unknown top-level key{did_you_mean(key, TOP_LEVEL_KEYS)}"
            )
    defaults = document.get("defaults") or {}
    if not isinstance(defaults, dict):
        problems.append(f"{file}: defaults: expected a mapping of task fields")
        defaults = {}
    elif "name" in defaults:
        problems.append(
            f"{file}: defaults: name: a default name makes no sense; give each task its own"
        )
        defaults = {k: v for k, v in defaults.items() if k != "name"}
    tasks = document.get("tasks")
    if tasks is None and any(key in document for key in SECTIONS):
        return [], defaults  # a file of components or integrations only
    if not isinstance(tasks, list):
        problems.append(f"{file}: tasks: expected a list of tasks")
        return [], defaults
    return [(f"tasks[{index}]", raw) for index, raw in enumerate(tasks)], defaults


def _build_task(
    where: str, raw: Any, defaults: dict, settings: Settings, problems: list[str], context: dict
):
    if not isinstance(raw, dict):
        problems.append(f"{where}: expected a mapping of task fields, got {type(raw).__name__}")
        return None
    merged = {**defaults, **raw}
    if isinstance(defaults.get("env"), dict) and isinstance(raw.get("env"), dict):
        merged["env"] = {**defaults["env"], **raw["env"]}
    name = raw.get("name")
    # A name with control characters would break the one-line message: show it quoted.
    label = f"{where} ({plain(name)})" if isinstance(name, str) and name else where
    leaks = secret_references(merged)
    if leaks:
        problems.extend(f"{label}: {clear_secret_problem(f, var)}" for f, var in leaks)
        return None
    try:
        expanded = {key: expand(value, settings.values, key) for key, value in merged.items()}
    except UnsetVariable as exc:
        problems.append(f"{label}: {exc.args[0]}")
        return None
    try:
        return Task.model_validate(expanded, context=context)
    except ValidationError as exc:
        problems.extend(describe(label, exc, Task.model_fields))
        return None
