"""The manifest's `components:` and `integrations:` sections -> frozen, validated models.

Validation follows manifest.py, with the same field rules (fields.py): ${VAR} expanded
first, pydantic does the type work, every problem is collected, and messages read
`tasks.yaml: components[1] (db): checks[0].url: ...`.
Durations are stored in seconds and sizes in bytes. Messages never echo a URL's password
or a header's value: both are usually credentials expanded from config.env.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from agency_cron.fields import (
    NAME_PATTERN,
    NAME_RULE,
    UnsetVariable,
    did_you_mean,
    expand,
    parse_duration,
)
from agency_cron.secrets import without_password

HTTP_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
# \Z, not $: Python's `$` also matches before a final newline (fields.py says more).
HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+\Z")  # an RFC 9110 token
UNIT_NAME = re.compile(r"^[A-Za-z0-9:_.@\\][A-Za-z0-9:_.@\\-]*\Z")  # no leading '-': not an option
CONTAINER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*\Z")
HOST_NAME = re.compile(r"^[A-Za-z0-9_.:\[\]-]+\Z")
SIZE = re.compile(r"^([0-9]+(?:\.[0-9]+)?)\s*([KMGT]?)(I?B)?$", re.IGNORECASE)
# Powers of 1024, as du and ls -h count: for a minimum size the difference hardly matters.
SIZE_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _seconds(value: object) -> int:
    """A manifest duration (30s, 5m, 2h, 1d) -> seconds > 0."""
    if isinstance(value, bool):
        raise ValueError(f"expected a duration like 30s, 5m, 2h or 1d, got {value!r}")
    seconds = parse_duration(value)
    if seconds <= 0:
        raise ValueError("must be longer than 0s")
    return seconds


def parse_size(value: object) -> int:
    """1, 2048, "10KB", "5 MB", "1GiB" -> bytes (K/M/G/T are powers of 1024)."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    match = SIZE.match(str(value).strip()) if isinstance(value, str) else None
    if not match:
        raise ValueError(f"expected a size in bytes or like 10KB, 5MB, 1GB, got {value!r}")
    number, unit = float(match.group(1)), match.group(2).upper()
    return int(number * SIZE_UNITS[unit])


def _http_url(value: str) -> str:
    """An http(s) URL with a host; the error shows the URL without its password."""
    shown = without_password(value)
    if any(c.isspace() or ord(c) < 32 for c in value):
        raise ValueError(f"must not contain spaces or control characters: {shown!r}")
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        raise ValueError(f"not a valid URL: {shown!r}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"expected an http:// or https:// URL with a host, got {shown!r}")
    return value


def _headers(value: object) -> dict[str, str]:
    """NAME: value pairs; values may not break the request (CR, LF, NUL) and are never echoed."""
    if not isinstance(value, dict):
        raise ValueError("expected a mapping of Header-Name: value")
    result = {}
    for name, item in value.items():
        if not isinstance(name, str) or not HEADER_NAME.match(name):
            raise ValueError(f"{name!r} is not a valid header name")
        if not isinstance(item, str | int | float) or isinstance(item, bool):
            raise ValueError(f"{name}: expected a single value")
        text = str(item)
        if any(c in text for c in "\r\n\0"):
            raise ValueError(f"{name}: value must not contain a newline or NUL")
        result[name] = text
    return result


def _absolute(value: str) -> str:
    if not value.startswith("/") or "\0" in value:
        raise ValueError(f"must be an absolute path, got {value!r}")
    return value


def _validates(function, *fields: str, mode: Literal["before", "after"] = "after"):
    """A pydantic field validator for `fields` that applies a plain function to the value."""
    return field_validator(*fields, mode=mode)(classmethod(lambda cls, value: function(value)))


def _matching(regex: re.Pattern, what: str):
    """A function accepting strings that match regex, for _validates."""

    def check(value: str) -> str:
        if not regex.match(value):
            raise ValueError(f"{value!r} is not a valid {what}")
        return value

    return check


class _Check(_Strict):
    """Fields every check has. `label` names it in results (default: its type)."""

    label: str | None = None

    @field_validator("label")
    @classmethod
    def _label(cls, value: str | None) -> str | None:
        if value is not None and not NAME_PATTERN.match(value):
            raise ValueError("must be 1-64 letters, digits, '-' or '_'")
        return value


class HttpCheck(_Check):
    """GET (or another method) a URL; pass on the expected status (and body substring)."""

    type: Literal["http"]
    url: str
    method: Literal[HTTP_METHODS] = "GET"  # type: ignore[valid-type]
    status: int = Field(default=200, ge=100, le=599)
    contains: str | None = None
    timeout: int = 10
    headers: dict[str, str] = Field(default_factory=dict)
    follow_redirects: bool = True

    _url = _validates(_http_url, "url")
    _timeout = _validates(_seconds, "timeout", mode="before")
    _hdrs = _validates(_headers, "headers", mode="before")

    @field_validator("method", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value


class TcpCheck(_Check):
    """Open a TCP connection to host:port."""

    type: Literal["tcp"]
    host: str
    port: int = Field(ge=1, le=65535)
    timeout: int = 5

    _host = _validates(_matching(HOST_NAME, "host name or address"), "host")
    _timeout = _validates(_seconds, "timeout", mode="before")


class ProcessCheck(_Check):
    """A live process by name (optionally with a command-line substring) or by pidfile."""

    type: Literal["process"]
    name: str | None = None
    cmdline: str | None = None
    pidfile: str | None = None

    _pidfile = _validates(lambda v: v if v is None else _absolute(v), "pidfile")

    @model_validator(mode="after")
    def _one_way(self) -> ProcessCheck:
        if (self.name is None) == (self.pidfile is None):
            which = "both" if self.name is not None else "neither"
            raise ValueError(f"give exactly one of name or pidfile ({which} given)")
        if self.cmdline is not None and self.name is None:
            raise ValueError("cmdline narrows a name match; give name with it")
        if self.name is not None and (not self.name or "/" in self.name):
            raise ValueError(f"name: expected a process name without '/', got {self.name!r}")
        return self


class SystemdCheck(_Check):
    """`systemctl is-active UNIT` says active."""

    type: Literal["systemd"]
    unit: str

    _unit = _validates(_matching(UNIT_NAME, "systemd unit name"), "unit")


class DockerCheck(_Check):
    """`docker inspect` says the container is running."""

    type: Literal["docker"]
    container: str

    _name = _validates(_matching(CONTAINER_NAME, "container name"), "container")


class DiskCheck(_Check):
    """The filesystem holding `path` is at most max_used_percent full (as df counts)."""

    type: Literal["disk"]
    path: str
    max_used_percent: float = Field(ge=1, le=100)

    _path = _validates(_absolute, "path")


class CommandCheck(_Check):
    """`/bin/sh -c COMMAND` exits 0 within the timeout."""

    type: Literal["command"]
    command: str = Field(min_length=1)
    timeout: int = 60

    _timeout = _validates(_seconds, "timeout", mode="before")

    @field_validator("command")
    @classmethod
    def _command(cls, value: str) -> str:
        if "\0" in value or not value.strip():
            raise ValueError("must be a non-empty command without NUL")
        return value


Check = Annotated[
    HttpCheck | TcpCheck | ProcessCheck | SystemdCheck | DockerCheck | DiskCheck | CommandCheck,
    Field(discriminator="type"),
]
CHECK_TYPES: dict[str, type[_Check]] = {
    "http": HttpCheck,
    "tcp": TcpCheck,
    "process": ProcessCheck,
    "systemd": SystemdCheck,
    "docker": DockerCheck,
    "disk": DiskCheck,
    "command": CommandCheck,
}


class Backup(_Strict):
    """Where a component's backups land and what a good one looks like."""

    path: str
    glob: str = "*"
    max_age: int = 26 * 3600
    min_size: int = 1
    type: Literal["auto", "tar", "tar.gz", "gzip", "sqlite", "none"] = "auto"
    checksum: Literal["none", "sha256"] = "none"

    _path = _validates(_absolute, "path")
    _age = _validates(_seconds, "max_age", mode="before")
    _size = _validates(parse_size, "min_size", mode="before")

    @field_validator("glob")
    @classmethod
    def _glob(cls, value: str) -> str:
        if not value or value.startswith("/") or ".." in value.split("/") or "\0" in value:
            raise ValueError(
                f"must be a pattern inside path (no leading '/', no '..'), got {value!r}"
            )
        return value


class Component(_Strict):
    """A service of the stack: its health checks and where its backups are."""

    name: str
    description: str = ""
    checks: tuple[Check, ...] = ()
    backup: Backup | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return _valid_name(value)

    @model_validator(mode="after")
    def _unique_labels(self) -> Component:
        labels = [label for label, _ in self.labelled_checks()]
        twice = sorted({label for label in labels if labels.count(label) > 1})
        if twice:
            raise ValueError(
                f"checks: two checks are labelled {', '.join(twice)}; give each its own label"
            )
        return self

    def labelled_checks(self) -> list[tuple[str, Check]]:
        """(label, check) pairs: the label given, else the type, numbered when repeated."""
        counts: dict[str, int] = {}
        labelled = []
        for check in self.checks:
            if check.label is not None:
                labelled.append((check.label, check))
                continue
            counts[check.type] = counts.get(check.type, 0) + 1
            number = counts[check.type]
            labelled.append((check.type if number == 1 else f"{check.type}-{number}", check))
        return labelled


class HttpCall(_Strict):
    """One HTTP request of an integration refresh."""

    url: str
    method: Literal[HTTP_METHODS] = "GET"  # type: ignore[valid-type]
    headers: dict[str, str] = Field(default_factory=dict)
    status: int = Field(default=200, ge=100, le=599)
    timeout: int = 30
    body: str | None = None
    follow_redirects: bool = True

    _url = _validates(_http_url, "url")
    _timeout = _validates(_seconds, "timeout", mode="before")
    _hdrs = _validates(_headers, "headers", mode="before")

    @field_validator("method", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value


class Integration(_Strict):
    """A connection to refresh: one HTTP call, or one command (with its own timeout)."""

    name: str
    description: str = ""
    http: HttpCall | None = None
    command: str | None = None
    timeout: int = 300  # the command's; an http call has its own

    _timeout = _validates(_seconds, "timeout", mode="before")

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return _valid_name(value)

    @model_validator(mode="after")
    def _one_way(self) -> Integration:
        if (self.http is None) == (self.command is None):
            which = "both" if self.http is not None else "neither"
            raise ValueError(f"give exactly one of http or command ({which} given)")
        if self.command is not None and (not self.command.strip() or "\0" in self.command):
            raise ValueError("command: must be a non-empty command without NUL")
        return self


def _valid_name(value: str) -> str:
    if not NAME_PATTERN.match(value):
        raise ValueError(f"must be {NAME_RULE} (got {value!r})")
    return value


SECTIONS: dict[str, type[_Strict]] = {"components": Component, "integrations": Integration}
# Where a location inside one model continues in another, for "did you mean" on nested keys.
NESTED: dict[tuple[type, str], Any] = {
    (Component, "checks"): CHECK_TYPES,
    (Component, "backup"): Backup,
    (Integration, "http"): HttpCall,
}


def validate_section(
    file: Path, key: str, raw: object, variables: dict[str, str], problems: list[str]
) -> tuple:
    """Validate the raw list under `components:` or `integrations:` of one manifest file.

    ${VAR} and ${VAR:-default} are expanded from `variables` first. Every problem is appended
    to `problems` as `FILE: components[1] (db): checks[0].url: message`; the valid models are
    returned in file order (an absent section is an empty tuple). Raises KeyError for a key
    that is not a section.
    """
    model = SECTIONS[key]
    if raw is None:
        return ()
    if not isinstance(raw, list):
        problems.append(f"{file}: {key}: expected a list, got {type(raw).__name__}")
        return ()
    found: list = []
    seen: dict[str, str] = {}
    for index, entry in enumerate(raw):
        where, item = _validate_entry(f"{file}: {key}[{index}]", model, entry, variables, problems)
        # Names are compared as written, so a duplicate is reported even when one copy is invalid.
        name = entry.get("name") if isinstance(entry, dict) else None
        if isinstance(name, str) and name in seen:
            problems.append(f"{where}: name: duplicate name, first defined at {seen[name]}")
            continue
        if isinstance(name, str):
            seen[name] = where
        if item is not None:
            found.append(item)
    return tuple(found)


def _validate_entry(
    where: str, model: type[BaseModel], entry: object, variables: dict, problems: list
):
    """(label, model or None) for one entry of a section."""
    if not isinstance(entry, dict):
        problems.append(f"{where}: expected a mapping of fields, got {type(entry).__name__}")
        return where, None
    name = entry.get("name")
    label = f"{where} ({name})" if isinstance(name, str) and name else where
    before = len(problems)
    expanded = _expand_tree(entry, variables, "", label, problems)
    if len(problems) > before:
        return label, None
    try:
        return label, model.model_validate(expanded)
    except ValidationError as exc:
        problems.extend(describe(label, model, exc))
        return label, None


def _expand_tree(value: Any, variables: dict, path: str, label: str, problems: list) -> Any:
    """expand() on every string leaf, naming the leaf's full path when a variable is unset."""
    if isinstance(value, dict):
        return {
            k: _expand_tree(v, variables, f"{path}.{k}" if path else str(k), label, problems)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [
            _expand_tree(v, variables, f"{path}[{i}]", label, problems) for i, v in enumerate(value)
        ]
    try:
        return expand(value, variables, path)
    except UnsetVariable as exc:
        problems.append(f"{label}: {exc.args[0]}")
        return value


def describe(label: str, model: type[BaseModel], error: ValidationError) -> list[str]:
    """pydantic errors -> `LABEL: checks[0].url: message` lines, with "did you mean" hints."""
    messages = []
    for item in error.errors():
        path, fields = _locate(model, item["loc"])
        messages.append(f"{label}: {_message(path, fields, item)}")
    return messages


def _message(path: str, fields: Any, item: Mapping[str, Any]) -> str:
    kind, ctx = item["type"], item.get("ctx") or {}
    if kind == "extra_forbidden":
        key = str(item["loc"][-1])
        return f"{path}: unknown key{did_you_mean(key, fields or [])}"
    if kind == "union_tag_invalid":
        tag = str(ctx.get("tag"))
        return (
            f"{path}.type: unknown check type {tag!r}{did_you_mean(tag, CHECK_TYPES)};"
            f" expected one of {', '.join(CHECK_TYPES)}"
        )
    if kind == "union_tag_not_found":
        return f"{path}.type: required, one of {', '.join(CHECK_TYPES)}"
    if kind == "missing":
        return f"{path}: required"
    message = item["msg"].removeprefix("Value error, ")
    return f"{path}: {message}" if path else message


def _locate(model: type, loc: tuple) -> tuple[str, Any]:
    """A pydantic location -> (`checks[0].url`, the field names valid beside its last part).

    The discriminator tag pydantic puts in the location (checks.0.http.url) is left out:
    it is the value of `type`, not a key the user wrote.
    """
    text, current = "", model
    for part in loc[:-1] if loc else ():
        if isinstance(part, int):
            text += f"[{part}]"
        elif isinstance(current, dict):  # a check union: part is the tag
            current = current.get(part, current)
        else:
            text += f".{part}" if text else str(part)
            current = NESTED.get((current, part), current)
    last = loc[-1] if loc else None
    if isinstance(last, int):
        text += f"[{last}]"
    elif last is not None and not (isinstance(current, dict) and last in current):
        text += f".{last}" if text else str(last)
    fields = None
    if isinstance(current, type) and issubclass(current, BaseModel):
        fields = list(current.model_fields)
    return text, fields
