"""systemd export: a `.service` and a `.timer` per task, firing when the crontab line would.

The service runs the task's wrapper, exactly as cron does, so logs, history and alerts are
the same whichever scheduler calls it. The timer's `OnCalendar=` values are built from the
field sets cronsim expands (the parser schedule.py already trusts), never by re-reading cron
text here. Two semantic gaps need care:

- cron ORs day-of-month and day-of-week when both are restricted; systemd ANDs the parts of
  one calendar spec. An OR becomes two `OnCalendar=` lines. Like Debian cron, cronsim treats
  a field that starts with `*` (`*/2`) as unrestricted for this rule, so that case stays AND.
- A time zone goes at the end of every calendar spec (systemd >= 235), because Debian's cron
  has no per-task zone at all (ARCHITECTURE.md).

DST edges differ between the two schedulers; tests/integration/test_systemd_export.py
measures and pins each difference.

Two schedules have no crontab line to mirror: `once` is a dated `OnCalendar=` (always with
its zone), and an `@every` interval that cron cannot keep (schedule.is_interval) is
`OnActiveSec=` for the first run plus `OnUnitActiveSec=` for the following ones; without
the first, a timer whose unit never ran would never fire. A completed one-time task gets
no timer (layout.is_completed), like a disabled one.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from agency_cron import layout, timing
from agency_cron.backends import Desired, Installed, Target
from agency_cron.config import Settings
from agency_cron.errors import BackendError, ConfigError
from agency_cron.fs import write_if_changed
from agency_cron.manifest import Task
from agency_cron.render import ping_url, render, working_dir
from agency_cron.schedule import (
    NICKNAMES,
    REBOOT,
    ScheduleError,
    interval_seconds,
    is_interval,
    is_once,
    local_zone,
    normalise,
)

if TYPE_CHECKING:
    from agency_cron.doctor import Finding
    from agency_cron.manifest import Manifest
    from agency_cron.plan import FileChange, Plan

UNIT_PREFIX = "agency-cron-"
UNIT_SUFFIXES = (".service", ".timer")
# systemd.unit(5): letters, digits, ":", "-", "_", ".", "\"; at most 255 bytes with the suffix.
UNIT_CHARS = re.compile(r"^[A-Za-z0-9:_.\\-]+$")
UNIT_NAME_MAX = 255
UNIT_MODE = 0o644
# cronsim needs a start time to expand the fields; any fixed one will do.
FIELDS_START = datetime(2000, 1, 1)
# cron's @reboot runs when the daemon starts; a minute after boot is the closest timer form.
BOOT_DELAY = "1min"
WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")  # systemd's order: Monday first
# systemd reads zones from the host's tz database, not from Python's tzdata package.
ZONEINFO = Path("/usr/share/zoneinfo")
# ExecStart paths: anything outside this set is written inside double quotes, and systemd
# refuses paths with UNSAFE_EXEC characters (string_is_safe() in its source).
PLAIN_WORD = re.compile(r"^[A-Za-z0-9/_.:+,=@-]+$")
UNSAFE_EXEC = re.compile(r"[\"'\\\x00-\x1f\x7f]")


def unit_name(task_name: str) -> str:
    """`agency-cron-NAME`, or ConfigError when systemd would refuse a unit of that name."""
    base = f"{UNIT_PREFIX}{task_name}"
    longest = base + max(UNIT_SUFFIXES, key=len)
    if not UNIT_CHARS.match(task_name) or len(longest.encode()) > UNIT_NAME_MAX:
        raise ConfigError(
            f"{longest!r} is not a valid systemd unit name "
            f"(letters, digits, ':', '-', '_', '.' and '\\' only, at most {UNIT_NAME_MAX} bytes)"
        )
    return base


def cron_to_oncalendar(expr: str, timezone: str | None) -> list[str]:
    """The `OnCalendar=` values that fire when the cron expression `expr` does.

    `@reboot` and intervals return [] (the timer uses OnBootSec= and OnUnitActiveSec=
    instead); `once` a dated value. A zone, when given, ends every value. Raises
    ConfigError for an expression cron would refuse.
    """
    try:
        cron = normalise(expr, intervals=True)
    except ScheduleError as exc:
        raise ConfigError(f"schedule {expr!r}: {exc}") from None
    if cron == REBOOT or is_interval(cron):
        return []
    if is_once(cron):
        return [once_to_oncalendar(cron, timezone)]
    from cronsim import CronSim

    sim = CronSim(NICKNAMES.get(cron, cron), FIELDS_START)
    clock = f"{_numbers(sim.hours, 24)}:{_numbers(sim.minutes, 60)}:00"
    month = _numbers(sim.months, 12, first=1)
    zone = f" {_known_zone(timezone)}" if timezone else ""
    return [
        f"{weekdays + ' ' if weekdays else ''}*-{month}-{days} {clock}{zone}"
        for weekdays, days in _day_parts(sim)
    ]


def once_to_oncalendar(expr: str, timezone: str | None) -> str:
    """`once 2026-12-01T03:00` -> `2026-12-01 03:00:00 ZONE`: a spec that elapses once.

    The zone is always written, the host's when the task has none: the runner and `next`
    read a one-time schedule in that zone, and the unit may be copied to another host.
    """
    zone = timezone or local_zone().key
    return f"{expr.removeprefix('once ').replace('T', ' ')}:00 {_known_zone(zone)}"


def time_span(seconds: int) -> str:
    """Seconds as a systemd time span in its largest exact unit: 15s, 90min, 2h, 3d."""
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _day_parts(sim) -> list[tuple[str | None, str]]:
    """cron's day rule as (weekdays, days of month) pairs: ANDed within a pair, ORed between.

    cronsim's `day_and` is Debian cron's rule: AND when either field starts with `*`.
    """
    days = _numbers(sim.days, 31, first=1)
    weekdays = _weekdays(sim.weekdays)
    if sim.day_and:
        return [(weekdays, days)]
    if days == "*" or weekdays is None:
        # An OR with a side that matches every day matches every day.
        return [(None, "*")]
    return [(None, days), (weekdays, "*")]


def _known_zone(zone: str) -> str:
    """`zone`, or ConfigError when this host's tz database lacks it.

    systemd ignores an OnCalendar= line whose zone it cannot load, and a timer left with no
    line never fires: better to refuse now. (Python may know more zones, from pip's tzdata.)
    """
    if ZONEINFO.is_dir() and not (ZONEINFO / zone).is_file():
        raise ConfigError(
            f"time zone {zone!r} is not in {ZONEINFO}, so systemd would ignore the schedule "
            "(install the system's tzdata, or use a canonical zone name)"
        )
    return zone


def _numbers(values: Iterable[int], size: int, first: int = 0) -> str:
    """A set of field values as systemd writes them: `*`, or `01..05,10,12` (two digits)."""
    ordered = sorted(values)
    if ordered == list(range(first, first + size)):
        return "*"
    return _ranges(ordered, "{:02d}".format)


def _weekdays(values: Iterable) -> str | None:
    """cron's day-of-week set (0 and 7 are Sunday) as `Mon..Fri,Sun`; None for every day."""
    monday_first = sorted({(int(day) - 1) % 7 for day in values})
    if len(monday_first) == 7:
        return None
    return _ranges(monday_first, WEEKDAYS.__getitem__)


def _ranges(ordered: list[int], label: Callable[[int], str]) -> str:
    """[1, 2, 3, 7, 8] -> `1..3,7,8`: runs of three or more become systemd ranges."""
    runs: list[tuple[int, int]] = []
    for value in ordered:
        if runs and runs[-1][1] == value - 1:
            runs[-1] = (runs[-1][0], value)
        else:
            runs.append((value, value))
    parts: list[str] = []
    for low, high in runs:
        if high - low >= 2:
            parts.append(f"{label(low)}..{label(high)}")
        else:
            parts.extend(label(value) for value in range(low, high + 1))
    return ",".join(parts)


def render_units(task: Task, settings: Settings) -> dict[str, str]:
    """{"agency-cron-NAME.service": text, "agency-cron-NAME.timer": text}.

    Raises ConfigError, naming the task, for anything systemd would refuse.
    """
    try:
        return _render_units(task, settings)
    except ConfigError as exc:
        raise ConfigError(*(f"task {task.name!r}: {p}" for p in exc.problems)) from None


def _render_units(task: Task, settings: Settings) -> dict[str, str]:
    name = unit_name(task.name)
    calendars = _calendars(task)
    description = _escape(_description(task))
    service = render(
        "systemd.service.j2",
        timer=f"{name}.timer",
        description=description,
        exec_start=exec_quote(str(layout.wrapper_path(settings, task.name))),
        user=_escape(task.user or "root"),
        working_dir=_escape(_path_value(working_dir(task, settings))),
        timeout=start_timeout(task, settings),
    )
    intervals = sorted({interval_seconds(e) for e in task.schedule if is_interval(e)})
    timer = render(
        "systemd.timer.j2",
        description=f"{description} (timer)",
        calendars=calendars,
        boot_delay=BOOT_DELAY if REBOOT in task.schedule else None,
        intervals=[time_span(seconds) for seconds in intervals],
        accuracy=_accuracy(intervals),
        jitter=task.jitter,
        service=f"{name}.service",
    )
    return {f"{name}.service": service, f"{name}.timer": timer}


def _accuracy(intervals: list[int]) -> str:
    """AccuracySec=: 1s keeps calendar times to the second; an interval under 10 s needs
    finer, or systemd's coalescing could stretch it by a fifth."""
    return "100ms" if intervals and intervals[0] < 10 else "1s"


def _calendars(task: Task) -> list[str]:
    found: list[str] = []
    for expr in task.schedule:
        specs = cron_to_oncalendar(expr, task.timezone)
        found.extend(spec for spec in specs if spec not in found)
    return found


def _description(task: Task) -> str:
    # A trailing backslash would join the next line of the unit file (systemd.syntax(7)),
    # and unit files have no escape for it; trailing spaces are stripped by systemd anyway.
    text = task.description.rstrip(" \t\\")
    return f"agency-cron {task.name}: {text}" if text else f"agency-cron {task.name}"


def _path_value(path: str) -> str:
    if path.endswith("\\"):
        raise ConfigError(
            f"working directory {path!r} ends with '\\', which a unit file reads as a line "
            "continuation"
        )
    return path


def _escape(value: str) -> str:
    """`%` starts a specifier in unit files (systemd.unit(5)); `%%` is a literal `%`."""
    return value.replace("%", "%%")


def exec_quote(path: str) -> str:
    """The executable of an ExecStart= line (systemd.service(5)): `%` doubled, quoted if needed.

    `$` stays single: systemd expands variables in the arguments only, and execs the path as
    written (measured: `$$` reached `systemd-analyze verify` as two dollars). Quotes,
    backslashes and control characters it refuses outright ("Executable name contains
    special characters"), so they raise ConfigError here.
    """
    if UNSAFE_EXEC.search(path):
        raise ConfigError(
            f"wrapper path {path!r} contains a quote, backslash or control character, which "
            "systemd refuses in an executable path; choose another AGENCY_ROOT"
        )
    text = _escape(path)
    return text if PLAIN_WORD.match(path) else f'"{text}"'


def start_timeout(task: Task, settings: Settings) -> int:
    """TimeoutStartSec=: a backstop above the runner's own bound, in seconds.

    The runner enforces `timeout` per attempt and records the timeout itself (exit 124); if
    systemd killed it at the same moment, that record and the alert would be lost. So the
    backstop covers every attempt, every retry delay (+10% jitter), an alert, the pings
    when the task pings (the runner waits for its last ping before it exits) and a margin
    (timing.run_bound).
    """
    pings = settings.ping_timeout if ping_url(task, settings) else 0.0
    bound = timing.run_bound(
        task.timeout,
        task.retries,
        task.retry_delay,
        task.retry_backoff,
        task.retry_max_delay,
        settings.alert_timeout,
        pings,
    )
    return bound + timing.SYSTEMD_START_MARGIN_S


def render_all(settings: Settings, tasks: Iterable[tuple[Task, bool]]) -> dict[str, str]:
    """{unit file name: text} for every (task, enabled); a disabled or completed task keeps
    its service (runnable by hand) but has no timer. ConfigError carries every problem found."""
    rendered: dict[str, str] = {}
    problems: list[str] = []
    for task, enabled in tasks:
        try:
            units = render_units(task, settings)
        except ConfigError as exc:
            problems.extend(exc.problems)
            continue
        # A one-time task that has run keeps its service (runnable by hand), like a disabled one.
        timed = enabled and not layout.is_completed(settings, task)
        rendered.update({k: v for k, v in units.items() if timed or not k.endswith(".timer")})
    if problems:
        raise ConfigError(*problems)
    return rendered


def installed_units(directory: Path) -> set[str]:
    """The unit files of agency-cron in `directory` (by their name prefix)."""
    if not Path(directory).is_dir():
        return set()
    return {
        p.name
        for p in Path(directory).glob(f"{UNIT_PREFIX}*")
        if p.suffix in (".service", ".timer")
    }


def task_of_unit(file_name: str) -> str:
    return file_name.removeprefix(UNIT_PREFIX).rsplit(".", 1)[0]


class Exported(list[Path]):
    """The unit files `export` left in the folder (written or already current), in render
    order; `written` holds those it changed."""

    def __init__(self, paths: list[Path], written: list[Path]):
        super().__init__(paths)
        self.written = written


def export(
    settings: Settings,
    tasks: Iterable[Task],
    directory: Path,
    overrides: dict[str, bool] | None = None,
) -> Exported:
    """Write every task's units into `directory` (0644), writing only what changed; a task
    disabled (in the manifest or by `agency-cron disable`: `overrides`) or completed keeps
    its service but gets no timer. `agency-cron export systemd DIR` is this function.

    As install does, a one-time schedule in the past is refused. Every task is converted
    before anything is written, so one bad task leaves the folder untouched; ConfigError
    carries every problem found.
    """
    from agency_cron.overrides import effective_enabled
    from agency_cron.plan import check_once_times

    tasks = list(tasks)
    check_once_times(settings, tasks)
    rendered = render_all(settings, [(t, effective_enabled(t, overrides or {})) for t in tasks])
    paths, written = [], []
    for file_name, text in rendered.items():
        path = Path(directory) / file_name
        if write_if_changed(path, text.encode(), UNIT_MODE):
            written.append(path)
        paths.append(path)
    return Exported(paths, written)


# --- the Backend interface (agency_cron.backends.Backend): CRONTAB=systemd:/DIR -----------

CRON_LOG: bool = False  # the service runs the wrapper with its output in the journal
NO_MAIL: str | None = "systemd timers do not mail a job's output"
# Where systemd, when it is the running init, says so (sd_booted(3)).
RUNNING_INIT = Path("/run/systemd/system")


def read(target: Target) -> Installed:
    """The unit files of agency-cron in the folder; each task that has one is installed."""
    units = sorted(installed_units(target.file))
    return Installed(
        entries={task_of_unit(name): [] for name in units},
        files={target.file / name: task_of_unit(name) for name in units},
    )


def desired(target: Target, settings: Settings, tasks: list[tuple[Task, bool]]) -> Desired:
    wanted = render_all(settings, tasks)
    return Desired(
        {task.name: [] for task, _ in tasks},
        {target.file / name: (text.encode(), task_of_unit(name)) for name, text in wanted.items()},
    )


def entry_lines(
    target: Target, settings: Settings, name: str, schedules: list[str], enabled: bool
) -> list[str]:
    return []  # timers live in unit files


def write(target: Target, text: str) -> None:
    """No table: the units are the plan's files."""


def activate(target: Target, changes: list[FileChange]) -> None:
    """When systemd is the running init, load the changed units and start/stop their timers.

    Without a running systemd (containers, chroots, a folder exported for another host)
    the unit files are the whole result. A systemctl that fails is a BackendError.
    """
    from agency_cron.plan import REMOVED, UNCHANGED

    units = [c for c in changes if c.path.parent == target.path]
    if not RUNNING_INIT.is_dir() or all(c.action == UNCHANGED for c in units):
        return
    _systemctl("daemon-reload")
    for change in units:
        if change.path.suffix == ".timer":
            verb = "disable" if change.action == REMOVED else "enable"
            _systemctl(verb, "--now", change.path.name)


def _systemctl(*args: str) -> None:
    import subprocess

    command = " ".join(("systemctl", *args))
    try:
        result = subprocess.run(["systemctl", *args], capture_output=True, text=True, check=False)
    except OSError as exc:
        raise BackendError(f"{command}: {exc.strerror or exc}") from None
    if result.returncode:
        why = (result.stderr.strip() or result.stdout.strip()).splitlines()
        detail = f": {why[-1]}" if why else ""
        raise BackendError(f"{command} failed (exit {result.returncode}){detail}")


def removed(target: Target, installed: Installed) -> list[Path]:
    return sorted(installed.files)


def run_as(target: Target, task: Task) -> str | None:
    return task.user or "root"  # the service's User=


def user_problems(target: Target, tasks: list[Task]) -> list[str]:
    return []


def diagnose(
    settings: Settings, manifest: Manifest, plan: Plan | None, error: Exception | None
) -> list[Finding]:
    from agency_cron.doctor import check_systemd_units

    return check_systemd_units(plan, error)
