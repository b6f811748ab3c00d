"""Crontab targets: `user`, `user:NAME`, `file:PATH` and `system:PATH` (cron.d).

The text is handled as lines, never re-rendered: a line agency-cron did not write (no
marker) is copied through byte for byte, which python-crontab's own save cannot promise
(it rewrites `0 0 * * *` as `@daily`, moves variables and comments; ARCHITECTURE.md).
Managed lines end with `# agency-cron:NAME`; cron hands the rest of the line to /bin/sh,
which reads that as a comment. A disabled task's line starts with `#`.
"""

from __future__ import annotations

import os
import pwd
import re
import shlex
import shutil
import subprocess
import tempfile
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from pathlib import Path

from agency_cron.errors import BackendError, ConfigError
from agency_cron.fs import read_bytes, write_atomic

MARKER = "# agency-cron:"
MANAGED = re.compile(
    r"^(?P<off>#\s*)?(?P<entry>\S.*?)\s+# agency-cron:(?P<name>[A-Za-z0-9][A-Za-z0-9_-]{0,63})\s*$"
)
ENCODING = ("utf-8", "surrogateescape")  # any byte survives decode + encode


def managed_name(line: str) -> str | None:
    """The task a crontab line belongs to, or None for a line agency-cron did not write."""
    match = MANAGED.match(line)
    return match.group("name") if match else None


def is_disabled(line: str) -> bool:
    match = MANAGED.match(line)
    return bool(match and match.group("off"))


def entry_line(schedule: str, wrapper: Path, name: str, enabled: bool, user: str | None) -> str:
    """One managed line: schedule, (cron.d user,) the wrapper, the marker. Nothing else."""
    # `%` means newline to cron: escape it so a path keeps its meaning.
    command = shlex.quote(str(wrapper)).replace("%", "\\%")
    fields = [schedule, user, command] if user else [schedule, command]
    line = " ".join(fields) + f" {MARKER}{name}"
    return line if enabled else f"# {line}"


def split_lines(text: str) -> list[str]:
    """Lines without their newlines; `"a\\n"` -> `["a"]`, `""` -> `[]`."""
    if not text:
        return []
    lines = text.split("\n")
    return lines[:-1] if lines[-1] == "" else lines


def join_lines(lines: list[str]) -> str:
    return "".join(f"{line}\n" for line in lines)


def installed_entries(text: str) -> dict[str, list[str]]:
    """Managed lines grouped by task, in file order."""
    found: dict[str, list[str]] = {}
    for line in split_lines(text):
        name = managed_name(line)
        if name:
            found.setdefault(name, []).append(line)
    return found


def merge(text: str, desired: dict[str, list[str]], scope: AbstractSet[str] | None) -> str:
    """The crontab text with the managed lines of `scope` (None: all) replaced by `desired`.

    Foreign lines keep their bytes and places; a task's lines go where its first line was,
    new tasks go at the end, tasks in scope but not desired are removed.
    """
    out: list[str] = []
    placed: set[str] = set()
    before = split_lines(text)
    for line in before:
        name = managed_name(line)
        if name is None or (scope is not None and name not in scope):
            out.append(line)
        elif name in desired and name not in placed:
            out.extend(desired[name])
            placed.add(name)
    for name, lines in desired.items():
        if name not in placed:
            out.extend(lines)
    # Nothing to change: a foreign last line keeps even a missing newline. One of ours is
    # terminated (Debian's cron ignores a crontab whose last line has no newline).
    if out == before and not (before and _in_scope(before[-1], scope)):
        return text
    return join_lines(out)


def _in_scope(line: str, scope: AbstractSet[str] | None) -> bool:
    name = managed_name(line)
    return name is not None and (scope is None or name in scope)


@dataclass(frozen=True)
class Target:
    """Where managed lines live. `user_field` is set for cron.d files (system:PATH)."""

    spec: str
    kind: str
    user: str | None = None
    path: Path | None = None

    @property
    def user_field(self) -> bool:
        return self.kind == "system"

    @property
    def label(self) -> str:
        return self.spec

    @property
    def slug(self) -> str:
        return re.sub(r"[^A-Za-z0-9_.-]+", "_", self.spec).strip("_")

    @property
    def file(self) -> Path:
        """The path of a file:, system: or systemd: target (parse_target always sets one)."""
        if self.path is None:
            raise BackendError(f"CRONTAB: {self.spec}: this target has no file")
        return self.path

    def read(self) -> str:
        if self.kind == "systemd":
            return ""  # timers live in unit files, planned as files (plan.py)
        if self.kind in ("file", "system"):
            data = read_bytes(self.file)
            return "" if data is None else data.decode(*ENCODING)
        return _crontab_list(self.user)

    def write(self, text: str) -> None:
        if self.kind == "systemd":
            return
        if self.kind == "system":
            write_atomic(self.file, text.encode(*ENCODING), 0o644)
        elif self.kind == "file":
            mode = self.file.stat().st_mode & 0o7777 if self.file.exists() else 0o644
            write_atomic(self.file, text.encode(*ENCODING), mode)
        else:
            _crontab_install(self.user, text)


def parse_target(spec: str) -> Target:
    """`user`, `user:NAME`, `file:PATH`, `system:PATH` -> Target; ConfigError if wrong."""
    kind, _, rest = spec.partition(":")
    if kind == "user" and not rest:
        return Target(spec, "user")
    if kind == "user":
        try:
            pwd.getpwnam(rest)
        except KeyError:
            raise ConfigError(f"CRONTAB: user:{rest}: no such user on this system") from None
        return Target(spec, "user", user=rest)
    if kind in ("file", "system", "systemd") and rest.startswith("/"):
        path = Path(rest)
        if kind == "system" and "." in path.name:
            raise ConfigError(
                f"CRONTAB: {spec}: Debian cron skips cron.d files whose names contain a dot"
            )
        return Target(spec, kind, path=path)
    raise ConfigError(
        f"CRONTAB: expected user, user:NAME, file:/PATH or system:/PATH, got {spec!r}"
    )


def crontab_binary() -> str:
    binary = shutil.which("crontab")
    if not binary:
        raise BackendError(
            "crontab: command not found; install it (Debian: apt-get install cron) "
            "or use CRONTAB=file:/PATH"
        )
    return binary


def _user_args(user: str | None) -> list[str]:
    return ["-u", user] if user else []


def _crontab_list(user: str | None) -> str:
    result = subprocess.run(
        [crontab_binary(), *_user_args(user), "-l"], capture_output=True, check=False
    )
    stderr = result.stderr.decode(*ENCODING).strip()
    if result.returncode == 0:
        return result.stdout.decode(*ENCODING)
    if "no crontab for" in stderr:
        return ""
    raise BackendError(f"crontab -l failed (exit {result.returncode}): {stderr}")


def _crontab_install(user: str | None, text: str) -> None:
    binary = crontab_binary()
    if not text:
        result = subprocess.run([binary, *_user_args(user), "-r"], capture_output=True, check=False)
        stderr = result.stderr.decode(*ENCODING).strip()
        if result.returncode and "no crontab for" not in stderr:
            raise BackendError(f"crontab -r failed (exit {result.returncode}): {stderr}")
        return
    with tempfile.NamedTemporaryFile("wb", prefix="agency-cron-", suffix=".crontab") as handle:
        handle.write(text.encode(*ENCODING))
        handle.flush()
        os.chmod(handle.name, 0o644)  # crontab -u NAME reads it as that user on some systems
        result = subprocess.run(
            [binary, *_user_args(user), handle.name], capture_output=True, check=False
        )
    if result.returncode:
        stderr = result.stderr.decode(*ENCODING).strip()
        raise BackendError(f"crontab refused the new table (exit {result.returncode}): {stderr}")
