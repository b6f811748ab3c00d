"""The rules for a manifest's field values, shared by tasks (manifest.py) and by components
and integrations (checks/models.py): names, durations, `${VAR}` expansion, which fields are
stored in clear, "did you mean" hints and the wording of a problem.

A leaf: standard library, errors and secrets only, and no pydantic at import time (a
ValidationError is only read here), so both model modules import it without importing
each other.
"""

from __future__ import annotations

import re

from agency_cron.errors import SHOWN_MAX, shown
from agency_cron.secrets import is_secret_name

TYPE_CHECKING = False  # typing is not needed at run time; only the type checker reads these
if TYPE_CHECKING:
    from collections.abc import Iterable
    from typing import Any

    from pydantic import ValidationError

# --- names -------------------------------------------------------------------------------

# Tasks, components, integrations and check labels: a file name, a URL part, a unit name.
# The patterns end in \Z: Python's `$` also matches before a final newline, so "backup\n"
# would pass (and break the crontab line it is written into). NAME_FORM and ENV_KEY_FORM
# are the same rules for a JSON schema, whose `$` has no such exception.
NAME_FORM = "[A-Za-z0-9][A-Za-z0-9_-]{0,63}"
NAME_PATTERN = re.compile(rf"^{NAME_FORM}\Z")
NAME_RULE = "1-64 letters, digits, '-' or '_', starting with a letter or digit"
# A variable name in a task's env (what the shell can export).
ENV_KEY_FORM = "[A-Za-z_][A-Za-z0-9_]*"
ENV_KEY = re.compile(rf"^{ENV_KEY_FORM}\Z")

# --- durations ---------------------------------------------------------------------------

DURATION = re.compile(r"^(?:([0-9]+)d)?(?:([0-9]+)h)?(?:([0-9]+)m)?(?:([0-9]+)s)?$")
DURATION_FORMS = "a duration like 30s, 5m, 2h or 1d"


def parse_duration(value: object) -> int:
    """'90s', '5m', '1h30m', '2d' -> seconds. Bare numbers are refused: the unit is not obvious."""
    text = str(value).strip()
    match = DURATION.match(text) if text else None
    if not match or not any(match.groups()):
        raise ValueError(f"expected {DURATION_FORMS}, got {shown(value)}")
    days, hours, minutes, seconds = (int(g or 0) for g in match.groups())
    return ((days * 24 + hours) * 60 + minutes) * 60 + seconds


# --- ${VAR} expansion --------------------------------------------------------------------

VARIABLE = re.compile(r"\$(\$|\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\})")
# Task fields that are stored in clear (wrappers, specs, unit files, a ConfigMap) or shown
# (the process list runs `sh -c COMMAND`; listings show the description).
CLEAR_FIELDS = ("command", "script", "description", "working_dir", "log")


class UnsetVariable(Exception):
    """`${NAME}` with no value and no default; args[0] is the message (`field: ${NAME} ...`)."""


def expand(value: Any, variables: dict[str, str], field: str = "") -> Any:
    """Expand ${VAR} and ${VAR:-default} in every string of a value; `$$` is a literal `$`.

    Raises UnsetVariable for ${VAR} with no value and no default.
    """
    if isinstance(value, dict):
        return {key: expand(item, variables, field or str(key)) for key, item in value.items()}
    if isinstance(value, list):
        return [expand(item, variables, field) for item in value]
    if not isinstance(value, str):
        return value

    def substitute(match: re.Match) -> str:
        if match.group(1) == "$":
            return "$"
        name, default = match.group(2), match.group(3)
        found = variables.get(name)
        if found or default is None and name in variables:
            return found or ""
        if default is not None:
            return default
        raise UnsetVariable(f"{field}: ${{{name}}} is not set in config.env or the environment")

    return VARIABLE.sub(substitute, value)


def secret_references(fields: dict) -> list[tuple[str, str]]:
    """(field, NAME) for each ${NAME} with a secret name in a field stored or shown in
    clear: expanded at load, its value would sit in the wrapper and in `ps` for every local
    user. `$NAME` (no braces) and `$${NAME}` are left to the shell, which is the way out."""
    found = []
    for key in CLEAR_FIELDS:
        value = fields.get(key)
        if not isinstance(value, str):
            continue
        for match in VARIABLE.finditer(value):
            name = match.group(2)
            if name and is_secret_name(name) and (key, name) not in found:
                found.append((key, name))
    return found


def clear_secret_problem(field: str, name: str = "NAME") -> str:
    """The one message for a secret in a CLEAR_FIELDS field (validate, install, export
    kubernetes). The way out is the env form: the shell expands $NAME inside the task, so
    the value is in no file and no argument list."""
    return (
        f"{field}: contains a secret value (of a *_TOKEN, *_PASSWORD, *_SECRET or *_KEY "
        "variable, or an alert URL), which would be stored in clear and shown in the process "
        f"list; pass it in env under a secret name (env: {{{name}: ...}}) and use ${name} "
        "instead, which the shell expands inside the task"
    )


# --- wording of problems -----------------------------------------------------------------


def plain(value: object) -> str:
    """A name or key as written, or quoted and cut (errors.shown) when it has control
    characters that would break the one-line message, or is long."""
    text = str(value)
    return text if text.isprintable() and len(text) <= SHOWN_MAX else shown(value)


def did_you_mean(word: object, choices: Iterable[str]) -> str:
    """` (did you mean 'schedule'?)` for the closest of `choices`, or ''."""
    if len(str(word)) > SHOWN_MAX:
        return ""  # no field name is that long, and difflib's cost grows with it
    import difflib

    close = difflib.get_close_matches(str(word), list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def describe(label: str, error: ValidationError, fields: Iterable[str]) -> list[str]:
    """A flat model's pydantic errors -> `LABEL: field: message` lines: `required` for a
    missing field, `unknown key (did you mean ...)` for an extra one (among `fields`)."""
    known = list(fields)
    messages = []
    for item in error.errors():
        location = ".".join(plain(part) for part in item["loc"])
        key = str(item["loc"][0]) if item["loc"] else ""
        if item["type"] == "extra_forbidden":
            messages.append(f"{label}: {location}: unknown key{did_you_mean(key, known)}")
            continue
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "missing":
            message = "required"
        messages.append(f"{label}: {location or 'task'}: {message}")
    return messages
