"""config.env + the process environment -> Settings.

Precedence, highest first: the process environment, the config file, the defaults below.
The file is found as CONTRACT.md says: --config, AGENCY_CRON_CONFIG, ./config.env,
$AGENCY_ROOT/config.env. A default file that is missing is fine; a named one is an error.
"""

from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

from agency_cron.errors import ConfigError

# Task field rules, still importable from here; fields.py owns them.
from agency_cron.fields import CLEAR_FIELDS as CLEAR_FIELDS
from agency_cron.fields import clear_secret_problem as clear_secret_problem

# Timing constants shared with the runner and the exporters.
from agency_cron.timing import ALERT_TIMEOUT_S

DEFAULTS: dict[str, str] = {
    "AGENCY_ROOT": "/opt/agency_stack",
    "LOG_DIR": "/var/log/agency_stack",
    "STATE_DIR": "/var/lib/agency_stack",
    "LOGROTATE_DIR": "/etc/logrotate.d",
    "CRONTAB": "user",
    "ALERT_URLS": "",
    "ALERT_ON_FAILURE": "false",
    "ALERT_TIMEOUT": str(ALERT_TIMEOUT_S),
    "LOG_RETENTION_DAYS": "7",
    "HEALTH_CHECK_COMPONENTS": "all",
    "BACKUP_VERIFY_COMPONENTS": "all",
    "DASHBOARD_UPDATE_INTERVAL": "hourly",
    # agency-cron serve (the admin API): bearer tokens, or files holding them.
    "ADMIN_TOKEN": "",
    "ADMIN_TOKEN_FILE": "",
    "ADMIN_READ_TOKEN": "",
    "ADMIN_READ_TOKEN_FILE": "",
    "API_EDITS_MANIFEST": "false",
    # Heartbeat pings (healthchecks.io protocol): the URL template of every task that sets
    # no ping_url ({name} is the task's name), and the seconds a run may wait for its pings.
    "PING_URL": "",
    "PING_TIMEOUT": "10",
    # Prometheus: the textfile the built-in metrics-export task writes every minute (for
    # node_exporter's textfile collector), and /metrics of `serve` without a token.
    "METRICS_TEXTFILE": "",
    "METRICS_PUBLIC": "false",
    # The run history: STATE_DIR/history.db (the default, SQLite), or a PostgreSQL database
    # the fleet shares (postgresql://USER:PASSWORD@HOST/DB; remote.py). HOST_NAME: the name
    # this host's runs are recorded under (default: its node name). HISTORY_TIMEOUT: the
    # longest wait, in seconds, for the shared history to connect or answer.
    "HISTORY_URL": "",
    "HOST_NAME": "",
    "HISTORY_TIMEOUT": "5",
}

# HISTORY_URL schemes of a PostgreSQL database (what libpq, and so psycopg, accepts); the one
# list that config validation, the runner's spec, remote.py and the exports read.
HISTORY_SCHEMES = ("postgresql", "postgres")
TRUE_WORDS = {"1", "true", "yes", "on"}
FALSE_WORDS = {"0", "false", "no", "off", ""}
# The seed lets DASHBOARD_UPDATE_INTERVAL be a bare word; cron wants the @ form.
INTERVAL_WORDS = {"hourly", "daily", "weekly", "monthly", "yearly", "annually", "midnight"}
# make setup-cronjobs writes AGENCY_ROOT into the runtime venv it creates (AGENCY_ROOT/venv).
ROOT_MARKER = "agency-cron-root"


@dataclass(frozen=True)
class Settings:
    """Resolved configuration. `values` holds every variable for ${VAR} expansion."""

    config_path: Path | None
    agency_root: Path
    log_dir: Path
    state_dir: Path
    logrotate_dir: Path
    crontab: str
    alert_urls: tuple[str, ...]
    alert_on_failure: bool
    alert_timeout: float
    log_retention_days: int
    values: dict[str, str] = field(repr=False)

    def get(self, key: str) -> str:
        return self.values.get(key, DEFAULTS.get(key, ""))

    @property
    def ping_url(self) -> str | None:
        """PING_URL, the template of every task without its own ping_url; None when unset."""
        value = self.get("PING_URL").strip()
        return value if value and value.lower() != "none" else None

    @property
    def ping_timeout(self) -> float:
        """PING_TIMEOUT in seconds (validated by load_settings)."""
        return _positive_float(self.get("PING_TIMEOUT")) or 10.0

    @property
    def metrics_textfile(self) -> Path | None:
        """METRICS_TEXTFILE, or None when no textfile export is configured."""
        value = self.get("METRICS_TEXTFILE").strip()
        return Path(value) if value else None

    @property
    def metrics_public(self) -> bool:
        return self.get("METRICS_PUBLIC").strip().lower() in TRUE_WORDS

    @property
    def history_url(self) -> str | None:
        """HISTORY_URL when it names a PostgreSQL database; None for the SQLite default."""
        value = self.get("HISTORY_URL").strip()
        return value if value.split(":", 1)[0].lower() in HISTORY_SCHEMES else None

    @property
    def history_db(self) -> Path:
        """The installer's local history: HISTORY_URL=sqlite:///PATH, else STATE_DIR/history.db
        (also the spool of a PostgreSQL HISTORY_URL)."""
        value = self.get("HISTORY_URL").strip()
        if value.startswith("sqlite://"):
            return Path(value[len("sqlite://") :])
        return self.state_dir / "history.db"

    @property
    def host_name(self) -> str:
        """HOST_NAME, else the node name: what this host's runs are recorded under."""
        return self.get("HOST_NAME").strip() or os.uname().nodename

    @property
    def history_timeout(self) -> float:
        return _positive_float(self.get("HISTORY_TIMEOUT")) or 5.0


def default_agency_root() -> str:
    """AGENCY_ROOT when neither the environment nor the config sets it: the root of the
    installation whose venv runs this interpreter (its marker), else /opt/agency_stack.

    So AGENCY_ROOT/venv/bin/agency-cron finds AGENCY_ROOT/config.env from any directory and
    in cron's bare environment, whatever AGENCY_ROOT is.
    """
    try:
        with open(os.path.join(sys.prefix, ROOT_MARKER), encoding="utf-8") as handle:
            root = handle.read().strip()
    except (OSError, UnicodeDecodeError):
        return DEFAULTS["AGENCY_ROOT"]
    return root if root.startswith("/") and "\n" not in root else DEFAULTS["AGENCY_ROOT"]


def find_config(explicit: str | os.PathLike | None, environ: dict[str, str]) -> Path | None:
    """The config file to read, or None when no default file exists.

    Raises ConfigError when a file that was named (option or AGENCY_CRON_CONFIG) is missing.
    """
    from agency_cron import fs  # the probes are inputs of the install fingerprint

    named = explicit or environ.get("AGENCY_CRON_CONFIG")
    if named:
        path = Path(named)
        if not fs.is_file(path):
            raise ConfigError(f"{path}: config file not found")
        return path
    for candidate in (
        Path("config.env"),
        Path(environ.get("AGENCY_ROOT") or default_agency_root()) / "config.env",
    ):
        if fs.is_file(candidate):
            return candidate
    return None


def find_manifest(explicit: str | os.PathLike | None, settings: Settings) -> Path:
    """--manifest, AGENCY_CRON_MANIFEST, ./tasks.yaml, $AGENCY_ROOT/tasks.yaml (CONTRACT.md)."""
    from agency_cron import fs  # the probes are inputs of the fingerprints (fastpath.py)

    named = explicit or settings.values.get("AGENCY_CRON_MANIFEST")
    candidates = (
        [Path(named)] if named else [Path("tasks.yaml"), settings.agency_root / "tasks.yaml"]
    )
    for path in candidates:
        if fs.exists(path):
            return path
    raise ConfigError(f"{candidates[0]}: manifest not found")


def read_config_file(path: Path) -> dict[str, str]:
    """Parse a config.env with python-dotenv (comments, quotes, `export`), no expansion."""
    from dotenv import dotenv_values

    try:
        raw = dotenv_values(path, interpolate=False)
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from exc
    return {key: "" if value is None else value for key, value in raw.items()}


def load_settings(
    config: str | os.PathLike | None = None,
    environ: dict[str, str] | None = None,
    crontab: str | None = None,
) -> Settings:
    """Build Settings from the config file and the environment; every problem at once."""
    environ = dict(os.environ if environ is None else environ)
    path = find_config(config, environ)
    from_file = read_config_file(path) if path else {}
    values = {**DEFAULTS, "AGENCY_ROOT": default_agency_root(), **from_file, **environ}
    origins = {key: "environment" for key in environ}
    if crontab:
        values["CRONTAB"] = crontab
        origins["CRONTAB"] = "--crontab"
    interval = values["DASHBOARD_UPDATE_INTERVAL"].strip()
    if interval.lower() in INTERVAL_WORDS:
        values["DASHBOARD_UPDATE_INTERVAL"] = "@" + interval.lower()
    return _validated(path, values, origins)


def _validated(path: Path | None, values: dict[str, str], origins: dict[str, str]) -> Settings:
    default_origin = str(path) if path else "defaults"
    problems: list[str] = []

    def fail(key: str, why: str) -> None:
        problems.append(f"{origins.get(key, default_origin)}: {key}: {why}")

    for key in ("AGENCY_ROOT", "LOG_DIR", "STATE_DIR", "LOGROTATE_DIR"):
        if not values[key].startswith("/"):
            fail(key, f"must be an absolute path, got {values[key]!r}")
        elif "\n" in values[key] or "\0" in values[key]:
            fail(key, "must not contain a newline or NUL")
        elif problem := path_problem(values[key]):
            fail(key, problem)
    from agency_cron.backends import parse_target  # the standard library only: cheap

    crontab = values["CRONTAB"].strip()
    try:
        target = parse_target(crontab)
    except ConfigError as exc:
        fail("CRONTAB", exc.problems[0].removeprefix("CRONTAB: "))
    else:
        if target.path is not None and (problem := path_problem(str(target.path))):
            fail("CRONTAB", problem)
    flag = values["ALERT_ON_FAILURE"].strip().lower()
    if flag not in TRUE_WORDS | FALSE_WORDS:
        fail("ALERT_ON_FAILURE", f"expected true or false, got {values['ALERT_ON_FAILURE']!r}")
    retention = _positive_int(values["LOG_RETENTION_DAYS"])
    if retention is None:
        fail(
            "LOG_RETENTION_DAYS",
            f"expected a whole number of days >= 1, got {values['LOG_RETENTION_DAYS']!r}",
        )
    alert_timeout = _positive_float(values["ALERT_TIMEOUT"])
    if alert_timeout is None:
        fail("ALERT_TIMEOUT", f"expected seconds > 0, got {values['ALERT_TIMEOUT']!r}")
    _check_pings(values, fail)
    _check_metrics(values, fail)
    _check_history(values, fail)
    if problems or retention is None or alert_timeout is None:
        raise ConfigError(*problems)
    return Settings(
        config_path=path.resolve() if path else None,
        agency_root=Path(values["AGENCY_ROOT"]),
        log_dir=Path(values["LOG_DIR"]),
        state_dir=Path(values["STATE_DIR"]),
        logrotate_dir=Path(values["LOGROTATE_DIR"]),
        crontab=crontab,
        alert_urls=split_urls(values["ALERT_URLS"]),
        alert_on_failure=flag in TRUE_WORDS,
        alert_timeout=alert_timeout,
        log_retention_days=retention,
        values=values,
    )


def _check_pings(values: dict[str, str], fail) -> None:
    from agency_cron import ping

    template = values["PING_URL"].strip()
    if template and (problem := ping.problem(template)):
        fail("PING_URL", problem)
    seconds = _positive_float(values["PING_TIMEOUT"])
    if seconds is None or seconds == float("inf"):
        fail("PING_TIMEOUT", f"expected seconds > 0, got {values['PING_TIMEOUT']!r}")


def _check_metrics(values: dict[str, str], fail) -> None:
    textfile = values["METRICS_TEXTFILE"].strip()
    if textfile and (not textfile.startswith("/") or not textfile.endswith(".prom")):
        fail(
            "METRICS_TEXTFILE",
            "expected an absolute path ending in .prom (node_exporter reads only *.prom),"
            f" got {textfile!r}",
        )
    elif any(c in textfile for c in "\n\r\0"):
        fail("METRICS_TEXTFILE", "must not contain a newline or NUL")
    elif textfile and path_problem(textfile):
        fail("METRICS_TEXTFILE", path_problem(textfile))
    if values["METRICS_PUBLIC"].strip().lower() not in TRUE_WORDS | FALSE_WORDS:
        fail("METRICS_PUBLIC", f"expected true or false, got {values['METRICS_PUBLIC']!r}")


def _check_history(values: dict[str, str], fail) -> None:
    url = values["HISTORY_URL"].strip()
    if url:
        from agency_cron.remote import url_problem  # psycopg is not imported by this

        if problem := url_problem(url, values["STATE_DIR"]):
            fail("HISTORY_URL", problem)
    host = values["HOST_NAME"].strip()
    if host and (len(host) > 253 or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", host)):
        fail("HOST_NAME", f"expected a host name (letters, digits, . _ -), got {host[:60]!r}")
    seconds = _positive_float(values["HISTORY_TIMEOUT"])
    if seconds is None or seconds > 600:
        fail(
            "HISTORY_TIMEOUT",
            f"expected seconds > 0, at most 600, got {values['HISTORY_TIMEOUT']!r}",
        )


KERNEL_FILESYSTEMS = (Path("/proc"), Path("/sys"))
PATH_MAX = 4096
DEFAULT_NAME_MAX = 255


def path_problem(value: str) -> str | None:
    """What makes a configured path unusable whatever the disks hold, found without writing:
    a kernel file system (/proc, /sys), a name longer than NAME_MAX, a path over PATH_MAX."""
    path = Path(value)
    for root in KERNEL_FILESYSTEMS:
        if path == root or root in path.parents:
            return f"{value} is under {root}, a kernel file system where no file can be created"
    if len(os.fsencode(value)) >= PATH_MAX:
        return f"{value[:40]}... is {len(os.fsencode(value))} bytes long (PATH_MAX is {PATH_MAX})"
    limit = _name_max(path)
    long = [part for part in path.parts if len(os.fsencode(part)) > limit]
    if long:
        shown = value.replace(long[0], f"{long[0][:12]}...")
        size = len(os.fsencode(long[0]))
        return f"{shown}: a name of {size} bytes, over NAME_MAX ({limit} bytes)"
    return None


def _name_max(path: Path) -> int:
    """NAME_MAX of the file system that would hold `path` (its nearest existing ancestor)."""
    for ancestor in (path, *path.parents):
        try:
            return os.pathconf(ancestor, "PC_NAME_MAX")
        except OSError:
            continue
    return DEFAULT_NAME_MAX


def split_urls(text: str) -> tuple[str, ...]:
    """ALERT_URLS is separated by spaces or commas."""
    return tuple(part for part in re.split(r"[\s,]+", text.strip()) if part)


def _positive_int(text: str) -> int | None:
    text = text.strip()
    # isdigit() alone takes other scripts' digits ("٥"), which int() would read as 5.
    return int(text) if text.isascii() and text.isdigit() and int(text) >= 1 else None


def _positive_float(text: str) -> float | None:
    if not text.isascii():  # float() reads other scripts' digits too
        return None
    try:
        number = float(text)
    except ValueError:
        return None
    return number if number > 0 else None
