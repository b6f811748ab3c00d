"""Cron expressions: validate, normalise, next fire times, plain English.

cronsim does the parsing and the fire times (it follows Debian cron's semantics, DST
included); python-crontab's CronSlices is a second opinion on each field. What is left
here is what neither library knows: which forms Debian's cron accepts (no `L`, `#`, `W`,
`?`, no seconds field), and turning `@every N` into cron only where cron is exact.
"""

from __future__ import annotations

import os
import re
from datetime import datetime
from functools import cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from agency_cron.errors import ConfigError

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
EVERY = re.compile(r"^@every\s+(\d+)\s*([smhd])$")
UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


class ScheduleError(ValueError):
    """A schedule that cron would refuse, or that never fires. The message says why."""


def normalise(expr: str) -> str:
    """Return the cron form of one schedule, or raise ScheduleError with the reason.

    `@every N` becomes a 5-field expression when cron runs it at exact intervals;
    `@daily`-style names and 5-field expressions are returned with single spaces.
    """
    if not isinstance(expr, str):
        raise ScheduleError(f"expected a string, got {type(expr).__name__}")
    if "\n" in expr or "\r" in expr or "\0" in expr:
        raise ScheduleError("must not contain a newline or NUL")
    text = " ".join(expr.split())
    if not text:
        raise ScheduleError("is empty")
    if text.startswith("@every"):
        return every_to_cron(text)
    if text.startswith("@"):
        lowered = text.lower()
        if lowered in NICKNAMES or lowered == REBOOT:
            return lowered
        known = ", ".join([*NICKNAMES, REBOOT, "@every N{s,m,h,d}"])
        raise ScheduleError(f"unknown schedule {text!r}; expected one of {known}")
    _check_fields(text)
    return text


def every_to_cron(text: str) -> str:
    """`@every 15m` -> `*/15 * * * *`; refuse intervals that cron cannot keep exactly."""
    match = EVERY.match(text)
    if not match:
        raise ScheduleError(
            f"{text!r}: expected '@every N' with a unit s, m, h or d, e.g. '@every 15m'"
        )
    number, unit = int(match.group(1)), match.group(2)
    seconds = number * UNIT_SECONDS[unit]
    if seconds == 0:
        raise ScheduleError(f"{text!r}: the interval must be greater than zero")
    if seconds % 60:
        raise ScheduleError(
            f"{text!r}: cron runs at most once a minute; use a systemd timer for sub-minute intervals"
        )
    minutes = seconds // 60
    if minutes < 60:
        return _exact_step(text, minutes, 60, "minutes", "* * * * *", "*/{n} * * * *")
    if minutes % 60 == 0 and minutes < 1440:
        return _exact_step(text, minutes // 60, 24, "hours", "0 * * * *", "0 */{n} * * *")
    if minutes == 1440:
        return "0 0 * * *"
    if minutes % 1440 == 0:
        raise ScheduleError(
            f"{text!r}: cron cannot run every {minutes // 1440} days exactly "
            "(day-of-month steps restart each month); use a daily schedule with a day list"
        )
    raise ScheduleError(
        f"{text!r}: {minutes} minutes is not a whole number of hours; cron cannot keep it"
    )


def _exact_step(text: str, step: int, period: int, unit: str, every_one: str, pattern: str) -> str:
    if step == 1:
        return every_one
    if period % step:
        last = (period - 1) // step * step
        raise ScheduleError(
            f"{text!r}: {step} does not divide {period}, so cron's */{step} restarts every "
            f"{'hour' if unit == 'minutes' else 'day'} (runs at {last} and 0 are "
            f"{period - last} {unit} apart); pick a divisor of {period}"
        )
    return pattern.format(n=step)


def _check_fields(text: str) -> None:
    fields = text.split(" ")
    if len(fields) != 5:
        hint = (
            " (a seconds or year field is not supported by cron)" if len(fields) in (6, 7) else ""
        )
        raise ScheduleError(
            f"{text!r} has {len(fields)} fields; cron takes 5 "
            f"(minute hour day-of-month month day-of-week){hint}"
        )
    for index, value in enumerate(fields):
        _check_field_syntax(index, value)
    from crontab import CronSlices

    if not CronSlices.is_valid(text):
        raise ScheduleError(f"{text!r} is not a valid cron expression")
    _first_fire(text)


def _check_field_syntax(index: int, value: str) -> None:
    name = FIELD_NAMES[index]
    if not FIELD_SYNTAX.match(value):
        raise ScheduleError(
            f"{name} field {value!r}: Debian cron allows only digits, names, '*', ',', '-' and '/'"
        )
    for word in re.findall(r"[a-zA-Z]+", value):
        if word.lower() not in NAMES.get(index, set()):
            raise ScheduleError(f"{name} field {value!r}: {word!r} is not a name cron knows here")
    if re.search(r"/0*(?:\D|$)", value):
        raise ScheduleError(f"{name} field {value!r}: a step of 0 is not allowed")


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
                    f"{text!r} can never fire: day-of-month {fields[2]} does not occur in month {fields[3]}"
                ) from None
        raise ScheduleError(f"{text!r}: {reason}") from None
    except StopIteration:
        raise ScheduleError(f"{text!r} can never fire") from None


def normalise_list(value: object) -> tuple[str, ...]:
    """One schedule or a list of them -> a tuple of cron forms (duplicates removed)."""
    items = value if isinstance(value, list | tuple) else [value]
    if not items:
        raise ScheduleError("needs at least one schedule")
    result: list[str] = []
    for item in items:
        cron = normalise(item)
        if cron not in result:
            result.append(cron)
    return tuple(result)


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


def next_runs(
    schedules: tuple[str, ...], count: int = 1, after: datetime | None = None
) -> list[datetime]:
    """The next `count` fire times of all schedules merged, in the host's zone.

    `@reboot` never has a next time, so a task with only @reboot returns [].
    """
    from cronsim import CronSim

    zone = local_zone()
    start = (after or datetime.now(zone)).astimezone(zone).replace(second=0, microsecond=0)
    iterators = [CronSim(NICKNAMES.get(s, s), start) for s in schedules if s != REBOOT]
    pending = {index: next(it) for index, it in enumerate(iterators)}
    result: list[datetime] = []
    while pending and len(result) < count:
        index = min(pending, key=pending.get)
        moment = pending[index]
        if not result or moment != result[-1]:
            result.append(moment)
        pending[index] = next(iterators[index])
    return result


def explain(expr: str) -> str:
    """A schedule in plain English (cron-descriptor), after validating it."""
    cron = normalise(expr)
    if cron == REBOOT:
        return "At system startup"
    from cron_descriptor import Options, get_description

    options = Options()
    options.use_24hour_time_format = True
    sentence = get_description(NICKNAMES.get(cron, cron), options)
    return sentence if cron == expr.strip() else f"{sentence} ({cron})"


def check_expression(expr: str) -> str:
    """normalise() for the CLI: ScheduleError becomes a ConfigError (exit 2)."""
    try:
        return normalise(expr)
    except ScheduleError as exc:
        raise ConfigError(f"schedule: {exc}") from None
