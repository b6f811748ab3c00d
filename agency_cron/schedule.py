"""Cron expressions: validate, normalise, next fire times, plain English.

cronsim does the parsing and the fire times (it follows Debian cron's semantics, DST
included); python-crontab's CronSlices is a second opinion on each field. What is left
here is what neither library knows: which forms Debian's cron accepts (no `L`, `#`, `W`,
`?`, no seconds field), and turning `@every N` into cron only where cron is exact.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from datetime import datetime, timedelta
from functools import cache, lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from agency_cron.errors import ConfigError, shown

NICKNAMES = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
REBOOT = "@reboot"
FIELD_NAMES = ("minute", "hour", "day-of-month", "month", "day-of-week")
# Debian cron: digits, * , - / and three-letter month or day names, nothing else.
FIELD_SYNTAX = re.compile(r"^[0-9*,/\-a-zA-Z]+$")
NAMES = {
    3: {"jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"},
    4: {"sun", "mon", "tue", "wed", "thu", "fri", "sat"},
}
EVERY = re.compile(r"^@every\s+([0-9]+)\s*([smhd])$")
ONCE = re.compile(r"^once\s+([0-9]{4}-[0-9]{2}-[0-9]{2})[T ]([0-9]{2}):([0-9]{2})$")
UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


# No real schedule comes close; a longer one is a pasted file, not worth parsing.
EXPRESSION_MAX = 1000
# systemd starts a unit at most 5 times in 10 s by default (DefaultStartLimitBurst=): a
# shorter interval would trip the limit and leave the timer's service failed.
SYSTEMD_MIN_INTERVAL_S = 5


class ScheduleError(ValueError):
    """A schedule that cron would refuse, or that never fires. The message says why."""


class CronIntervalError(ScheduleError):
    """`@every N` that cron cannot keep exactly; a systemd timer can (OnUnitActiveSec=)."""


def normalise(expr: object, strict: bool = True, intervals: bool = False) -> str:
    """Return the cron form of one schedule, or raise ScheduleError with the reason.

    `strict` adds python-crontab's check of the fields (see _python_crontab_agrees).
    `intervals` (systemd targets and exports) keeps an `@every N` that cron cannot run
    exactly as the interval `@every N` (see is_interval) instead of refusing it.
    """
    if not isinstance(expr, str):
        raise ScheduleError(f"expected a string, got {type(expr).__name__}")
    cron = _normalise(expr, intervals)
    if strict and len(cron.split(" ")) == 5:
        _python_crontab_agrees(cron)
    return cron


@lru_cache(maxsize=4096)  # manifests repeat a handful of schedules over many tasks
def _normalise(expr: str, intervals: bool = False) -> str:
    """Return the cron form of one schedule, or raise ScheduleError with the reason.

    `@every N` becomes a 5-field expression when cron runs it at exact intervals;
    `@daily`-style names and 5-field expressions are returned with single spaces.
    """
    if "\n" in expr or "\r" in expr or "\0" in expr:
        raise ScheduleError("must not contain a newline or NUL")
    if len(expr) > EXPRESSION_MAX:
        raise ScheduleError(f"{shown(expr)} is longer than {EXPRESSION_MAX} characters")
    text = " ".join(expr.split())
    if not text:
        raise ScheduleError("is empty")
    if text.startswith("@every"):
        return _every(text, intervals)
    if text.lower().startswith("once"):
        return _once(text)
    if text.startswith("@"):
        lowered = text.lower()
        if lowered in NICKNAMES or lowered == REBOOT:
            return lowered
        known = ", ".join([*NICKNAMES, REBOOT, "@every N{s,m,h,d}"])
        raise ScheduleError(f"unknown schedule {shown(text)}; expected one of {known}")
    _check_fields(text)
    return text


def _every(text: str, intervals: bool) -> str:
    try:
        return every_to_cron(text)
    except CronIntervalError:
        if not intervals:
            raise
    seconds = interval_seconds(text)
    if seconds < SYSTEMD_MIN_INTERVAL_S:
        raise ScheduleError(
            f"{shown(text)}: systemd starts a unit at most 5 times in 10 seconds "
            f"(StartLimitBurst=); use an interval of at least {SYSTEMD_MIN_INTERVAL_S}s"
        ) from None
    number, unit = _every_parts(text)
    return f"@every {number}{unit}"


def is_interval(expr: str) -> bool:
    """A normalised `@every N` that stayed an interval: systemd timers only (OnUnitActiveSec=)."""
    return expr.startswith("@every")


def interval_seconds(text: str) -> int:
    number, unit = _every_parts(text)
    return number * UNIT_SECONDS[unit]


def _every_parts(text: str) -> tuple[int, str]:
    """`@every 90 m` -> (90, "m"), or ScheduleError."""
    match = EVERY.match(text)
    if not match:
        raise ScheduleError(
            f"{shown(text)}: expected '@every N' with a unit s, m, h or d, e.g. '@every 15m'"
        )
    return int(match.group(1)), match.group(2)


def every_to_cron(text: str) -> str:
    """`@every 15m` -> `*/15 * * * *`; refuse intervals that cron cannot keep exactly
    (CronIntervalError: a systemd target keeps them as intervals)."""
    seconds = interval_seconds(text)
    if seconds == 0:
        raise ScheduleError(f"{shown(text)}: the interval must be greater than zero")
    if seconds % 60:
        raise CronIntervalError(
            f"{shown(text)}: cron runs at most once a minute; use a systemd timer for"
            " sub-minute intervals (CRONTAB=systemd:DIR, or agency-cron export systemd)"
        )
    minutes = seconds // 60
    if minutes < 60:
        return _exact_step(text, minutes, 60, "minutes", "* * * * *", "*/{n} * * * *")
    if minutes % 60 == 0 and minutes < 1440:
        return _exact_step(text, minutes // 60, 24, "hours", "0 * * * *", "0 */{n} * * *")
    if minutes == 1440:
        return "0 0 * * *"
    if minutes % 1440 == 0:
        raise CronIntervalError(
            f"{shown(text)}: cron cannot run every {minutes // 1440} days exactly "
            "(day-of-month steps restart each month); use a daily schedule with a day list"
            f"{SYSTEMD_HINT}"
        )
    raise CronIntervalError(
        f"{shown(text)}: {minutes} minutes is not a whole number of hours; cron cannot keep it"
        f"{SYSTEMD_HINT}"
    )


SYSTEMD_HINT = "; a systemd timer (CRONTAB=systemd:DIR) keeps any interval"


def _once(text: str) -> str:
    """`once 2026-12-01T03:00` -> the same, checked; the time is read in the task's zone."""
    match = ONCE.match(text)
    if not match:
        raise ScheduleError(
            f"{shown(text)}: expected 'once YYYY-MM-DDTHH:MM', e.g. 'once 2026-12-01T03:00'"
        )
    try:
        datetime.fromisoformat(f"{match.group(1)}T{match.group(2)}:{match.group(3)}")
    except ValueError as exc:
        raise ScheduleError(f"{shown(text)}: {exc}") from None
    return f"once {match.group(1)}T{match.group(2)}:{match.group(3)}"


def is_once(expr: str) -> bool:
    return expr.startswith("once ")


def once_time(expr: str, zone: ZoneInfo) -> datetime:
    """The moment of a one-time schedule, in `zone`."""
    return datetime.fromisoformat(expr.removeprefix("once ")).replace(tzinfo=zone)


def cron_form(expr: str) -> str:
    """What cronsim and the crontab get: nicknames expanded, `once` as its yearly date.
    An interval has none: CronIntervalError, with the reason cron cannot keep it."""
    if is_interval(expr):
        every_to_cron(expr)  # raises: a kept interval is one cron cannot run
    if is_once(expr):
        moment = datetime.fromisoformat(expr.removeprefix("once "))
        return f"{moment.minute} {moment.hour} {moment.day} {moment.month} *"
    return NICKNAMES.get(expr, expr)


def _exact_step(text: str, step: int, period: int, unit: str, every_one: str, pattern: str) -> str:
    if step == 1:
        return every_one
    if period % step:
        last = (period - 1) // step * step
        raise CronIntervalError(
            f"{shown(text)}: {step} does not divide {period}, so cron's */{step} restarts every "
            f"{'hour' if unit == 'minutes' else 'day'} (runs at {last} and 0 are "
            f"{period - last} {unit} apart); pick a divisor of {period}{SYSTEMD_HINT}"
        )
    return pattern.format(n=step)


def _check_fields(text: str) -> None:
    fields = text.split(" ")
    if len(fields) != 5:
        hint = (
            " (a seconds or year field is not supported by cron)" if len(fields) in (6, 7) else ""
        )
        raise ScheduleError(
            f"{shown(text)} has {len(fields)} fields; cron takes 5 "
            f"(minute hour day-of-month month day-of-week){hint}"
        )
    for index, value in enumerate(fields):
        _check_field_syntax(index, value)
    _first_fire(text)


@lru_cache(maxsize=4096)
def _python_crontab_agrees(text: str) -> None:
    """python-crontab's CronSlices as a second opinion on the fields. Asked by install and
    validate only: importing it costs ~30 ms (it imports asyncio), too much for every
    read-only command."""
    from crontab import CronSlices

    try:
        valid = CronSlices.is_valid(text)
    except Exception:  # noqa: BLE001 - it trips over some forms (`jan-3`: TypeError)
        valid = False
    if not valid:
        raise ScheduleError(f"{shown(text)} is not a valid cron expression")


def _check_field_syntax(index: int, value: str) -> None:
    name = FIELD_NAMES[index]
    if not FIELD_SYNTAX.match(value):
        raise ScheduleError(
            f"{name} field {shown(value)}: Debian cron allows only digits, names, '*', ',', '-' and '/'"
        )
    for word in re.findall(r"[a-zA-Z]+", value):
        if word.lower() not in NAMES.get(index, set()):
            raise ScheduleError(
                f"{name} field {shown(value)}: {shown(word)} is not a name cron knows here"
            )
    if re.search(r"/0*(?:\D|$)", value):
        raise ScheduleError(f"{name} field {shown(value)}: a step of 0 is not allowed")


def _first_fire(text: str) -> None:
    from cronsim import CronSim, CronSimError

    start = datetime(2000, 1, 1)
    try:
        next(CronSim(text, start))
    except CronSimError as exc:
        fields = text.split(" ")
        reason = str(exc)
        if "day-of-month" in reason:
            try:
                next(CronSim(" ".join([*fields[:3], "*", fields[4]]), start))
            except CronSimError:
                pass
            else:
                raise ScheduleError(
                    f"{shown(text)} can never fire: day-of-month {fields[2]} does not occur in month {fields[3]}"
                ) from None
        raise ScheduleError(f"{shown(text)}: {reason}") from None
    except StopIteration:
        raise ScheduleError(f"{shown(text)} can never fire") from None


def normalise_list(value: object, strict: bool = True, intervals: bool = False) -> tuple[str, ...]:
    """One schedule or a list of them -> a tuple of cron forms (duplicates removed)."""
    items = value if isinstance(value, list | tuple) else [value]
    if not items:
        raise ScheduleError("needs at least one schedule")
    result: list[str] = []
    for item in items:
        cron = normalise(item, strict, intervals)
        # "@daily" and "@midnight" (or "0 0 * * *") fire together: keep one of them.
        if all(_same_times(cron, kept) for kept in result):
            result.append(cron)
    return tuple(result)


def _same_times(one: str, other: str) -> bool:
    if is_interval(one) or is_interval(other):
        return one != other
    return cron_form(one) != cron_form(other)


@cache
def local_zone() -> ZoneInfo:
    """The host's zone, as cron uses it: $TZ, else /etc/localtime, else UTC."""
    for key in (os.environ.get("TZ", "").lstrip(":"), _etc_localtime_key()):
        if key:
            try:
                return ZoneInfo(key)
            except (ZoneInfoNotFoundError, ValueError):
                continue
    return ZoneInfo("UTC")


def _etc_localtime_key() -> str:
    try:
        target = os.readlink("/etc/localtime")
    except OSError:
        return ""
    return target.split("zoneinfo/", 1)[-1] if "zoneinfo/" in target else ""


def zone_of(name: str | None) -> ZoneInfo:
    return ZoneInfo(name) if name else local_zone()


def next_runs(
    schedules: tuple[str, ...],
    count: int = 1,
    after: datetime | None = None,
    zone: ZoneInfo | None = None,
) -> list[datetime]:
    """The next `count` fire times of all schedules merged, in `zone` (default: the host's).

    `@reboot` never has a next time; a `once` time has one until it has passed.
    """
    from cronsim import CronSim

    zone = zone or local_zone()
    now = (after or datetime.now(zone)).astimezone(zone)
    start = now.replace(second=0, microsecond=0)
    regular = [s for s in schedules if s != REBOOT and not is_once(s) and not is_interval(s)]
    iterators: list[Iterator[datetime]] = [CronSim(cron_form(s), start) for s in regular]
    once = sorted(once_time(s, zone) for s in schedules if is_once(s))
    iterators.append(iter([moment for moment in once if moment > start]))
    iterators += [_interval_times(s, now) for s in schedules if is_interval(s)]
    pending = {index: moment for index, it in enumerate(iterators) if (moment := next(it, None))}
    result: list[datetime] = []
    while pending and len(result) < count:
        index = min(pending, key=pending.__getitem__)
        moment = pending[index]
        if not result or moment != result[-1]:
            result.append(moment)
        following = next(iterators[index], None)
        if following is None:
            del pending[index]
        else:
            pending[index] = following
    return result


def _interval_times(expr: str, now: datetime) -> Iterator[datetime]:
    """An interval's next times as seen from `now`: systemd counts each one from the last
    run's start, which only it knows, so these are estimates at the right spacing."""
    step = timedelta(seconds=interval_seconds(expr))
    moment = now.replace(microsecond=0)
    while True:
        moment += step
        yield moment


def explain(expr: str) -> str:
    """A schedule in plain English (cron-descriptor), after validating it."""
    cron = normalise(expr, intervals=True)
    if cron == REBOOT:
        return "At system startup"
    if is_interval(cron):
        return (
            f"Every {_span_words(interval_seconds(cron))}, counted from the start of the "
            "previous run (systemd timers only: cron cannot keep this interval)"
        )
    from cron_descriptor import Options, get_description

    options = Options()
    options.use_24hour_time_format = True
    if is_once(cron):
        return f"Once, at {cron.removeprefix('once ').replace('T', ' ')}"
    sentence = get_description(cron_form(cron), options)
    return sentence if cron == expr.strip() else f"{sentence} ({cron})"


def _span_words(seconds: int) -> str:
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds % size == 0:
            count = seconds // size
            return f"{count} {unit}{'s' if count != 1 else ''}"
    return f"{seconds} seconds"


def check_expression(expr: str) -> str:
    """normalise() for the CLI: ScheduleError becomes a ConfigError (exit 2)."""
    try:
        return normalise(expr)
    except ScheduleError as exc:
        raise ConfigError(f"schedule: {exc}") from None


# --- per-task time zones on a cron that schedules in host time ------------------------
#
# Debian's cron ignores CRON_TZ for scheduling. So a task with `timezone:` gets crontab
# lines in host time that fire at every host minute that can be a fire time in its zone
# (a superset: each UTC offset the two zones can have, plus the minute right after a DST
# gap where cron runs the skipped times), and the runner, started by cron, runs the task
# only when cronsim says this minute is a fire time in the task's zone (zone_due below).


def offset_differences(
    zone: ZoneInfo, host: ZoneInfo, start: datetime, days: int = 800
) -> set[int]:
    """Every (zone - host) UTC offset difference in minutes over `days` from `start`."""
    found = set()
    for _, instant in _offset_periods(zone, host, start, days):
        delta = _utcoffset(instant, zone) - _utcoffset(instant, host)
        found.add(int(delta.total_seconds()) // 60)
    return found


def gap_ends(zone: ZoneInfo, start: datetime, days: int = 800) -> list[datetime]:
    """The first instants after each DST gap in `zone` (where cron runs skipped times)."""
    ends = []
    for before, after in _transitions(zone, start, days):
        if _utcoffset(after, zone) > _utcoffset(before, zone):
            ends.append(after)
    return ends


def _utcoffset(moment: datetime, zone: ZoneInfo) -> timedelta:
    """`moment`'s UTC offset in `zone` (a ZoneInfo always has one; the type says Optional)."""
    offset = moment.astimezone(zone).utcoffset()
    assert offset is not None
    return offset


def _offset_periods(zone: ZoneInfo, host: ZoneInfo, start: datetime, days: int):
    """(start, an instant) of every period in which neither zone changes its offset."""
    from datetime import UTC

    moments = [start.astimezone(UTC)]
    for _, after in _transitions(zone, start, days) + _transitions(host, start, days):
        moments.append(after)
    return [(m, m) for m in sorted(moments)]


def _transitions(zone: ZoneInfo, start: datetime, days: int) -> list[tuple[datetime, datetime]]:
    """(last minute before, first minute after) each UTC offset change of `zone`.

    Sampled every 12 hours, then narrowed to the minute: offsets never change twice
    within 12 hours in the tz database.
    """
    from datetime import UTC

    step = timedelta(hours=12)
    moment = start.astimezone(UTC).replace(second=0, microsecond=0)
    found = []
    for _ in range(days * 2):
        later = moment + step
        if later.astimezone(zone).utcoffset() != moment.astimezone(zone).utcoffset():
            found.append(_narrow(zone, moment, later))
        moment = later
    return found


def _narrow(zone: ZoneInfo, low: datetime, high: datetime) -> tuple[datetime, datetime]:
    offset = low.astimezone(zone).utcoffset()
    while high - low > timedelta(minutes=1):
        middle = low + (high - low) / 2
        middle = middle.replace(second=0, microsecond=0)
        if middle.astimezone(zone).utcoffset() == offset:
            low = middle
        else:
            high = middle
    return low, high


def host_expression(expr: str, zone_name: str, start: datetime | None = None) -> str:
    """The host-time cron expression that covers every fire time of `expr` in `zone_name`."""
    from cronsim import CronSim

    zone, host = ZoneInfo(zone_name), local_zone()
    start = start or datetime.now(host)
    parsed = CronSim(cron_form(expr), start.replace(tzinfo=None))
    zone_minutes = {hour * 60 + minute for hour in parsed.hours for minute in parsed.minutes}
    minutes_of_day = {
        (local - difference) % 1440
        for difference in offset_differences(zone, host, start)
        for local in zone_minutes
    }
    for end in gap_ends(zone, start):
        if _skipped_minutes(zone, end) & zone_minutes:  # cron runs those right after the gap
            local = end.astimezone(host)
            minutes_of_day.add(local.hour * 60 + local.minute)
    minutes = sorted({m % 60 for m in minutes_of_day})
    hours = sorted({m // 60 for m in minutes_of_day})
    if _has_transitions(host, start):
        # Cron runs a line with a fixed hour once in a repeated hour and late after a gap;
        # with '*' hours the line is a wildcard job that fires at every real host minute.
        hours = list(range(24))
    return f"{_cron_list(minutes, 60)} {_cron_list(hours, 24)} * * *"


def _skipped_minutes(zone: ZoneInfo, gap_end: datetime) -> set[int]:
    """The local minutes of day that a DST gap ending at `gap_end` skipped."""
    after = gap_end.astimezone(zone)
    jump = _utcoffset(gap_end, zone) - _utcoffset(gap_end - timedelta(minutes=1), zone)
    jump_minutes = int(jump.total_seconds()) // 60
    first = after.hour * 60 + after.minute
    return {(first - step) % 1440 for step in range(1, jump_minutes + 1)}


def _has_transitions(zone: ZoneInfo, start: datetime) -> bool:
    return bool(_transitions(zone, start, 400))


def _cron_list(values: list[int], size: int) -> str:
    return "*" if len(values) == size else ",".join(str(v) for v in values)


def zone_due(expr: str, zone_name: str, minute_utc: datetime) -> bool:
    """True when `minute_utc` (a UTC minute) is a fire time of `expr` in `zone_name`,
    as cronsim (Debian cron's rules, DST included) computes them."""
    from datetime import UTC

    from cronsim import CronSim

    if is_interval(expr):
        return False  # only systemd runs intervals, and it never asks whether a minute is due
    zone = ZoneInfo(zone_name)
    target = minute_utc.astimezone(UTC).replace(second=0, microsecond=0)
    start = (target - timedelta(hours=3)).astimezone(zone)
    for count, fire in enumerate(CronSim(cron_form(expr), start)):
        fire_utc = fire.astimezone(UTC)
        if fire_utc == target:
            return True
        if fire_utc > target + timedelta(hours=3) or count > 100_000:
            return False
    return False
