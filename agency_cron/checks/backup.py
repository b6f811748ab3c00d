"""Backup verification: is each component's newest backup recent, big enough and readable?

Per component: `file` (only when no backup is found), `age`, `size`, then `integrity` when
the type is known and `sha256` when a checksum is asked for. Integrity means reading the whole
file the way a restore would: every tar member's data, every gzip byte, SQLite's own
integrity_check. A damaged file fails with the reader's complaint.
"""

from __future__ import annotations

import gzip
import hashlib
import sqlite3
import tarfile
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Literal
from urllib.parse import quote

from agency_cron.checks.common import CheckResult, human_duration, human_size, run_all, seconds
from agency_cron.checks.models import Backup, Component

KIND = "backup"
CHUNK = 1024 * 1024
SIDECAR_SUFFIX = ".sha256"
SQLITE_MAGIC = b"SQLite format 3\x00"
GZIP_MAGIC = b"\x1f\x8b"
# Suffix -> type for `type: auto`, longest first so .tar.gz is not taken for plain gzip.
AUTO_TYPES = (
    ((".tar.gz", ".tgz"), "tar.gz"),
    ((".tar", ".tar.bz2", ".tbz2", ".tar.xz", ".txz"), "tar"),
    ((".gz",), "gzip"),
    ((".sqlite", ".sqlite3", ".db", ".db3"), "sqlite"),
)
# What a damaged archive makes the readers raise: all mean "this file is not good".
DAMAGED: tuple[type[Exception], ...] = (
    tarfile.TarError,
    EOFError,
    OSError,
    zlib.error,
    ValueError,
    UnicodeError,
)
try:  # lzma is optional in some Python builds
    import lzma

    DAMAGED += (lzma.LZMAError,)
except ImportError:  # pragma: no cover
    pass


def run_backups(components: list[Component]) -> list[CheckResult]:
    """Verify the newest backup of every component that declares one."""
    return run_all(_guarded, [c for c in components if c.backup is not None])


def _guarded(component: Component) -> list[CheckResult]:
    """verify_component, with an unreadable file or folder reported instead of raised."""
    started = time.monotonic()
    try:
        return verify_component(component)
    except OSError as exc:  # a permission or a file removed while we looked
        detail = f"cannot read {exc.filename or 'the backup'}: {exc.strerror or exc}"
    except Exception as exc:  # one broken component must not hide the others' results
        detail = f"could not verify: {type(exc).__name__}: {exc}"
    return [CheckResult(KIND, component.name, "file", False, detail, seconds(started))]


def verify_component(component: Component) -> list[CheckResult]:
    """All results for one component's backup (see the module docstring)."""
    backup = component.backup
    assert backup is not None  # run_backups filters

    def result(check: str, started: float, ok: bool, detail: str) -> CheckResult:
        return CheckResult(KIND, component.name, check, ok, detail, seconds(started))

    started = time.monotonic()
    newest, problem = newest_file(backup)
    if newest is None:
        return [result("file", started, False, problem)]
    stat = newest.stat()
    results = [
        result("age", started, *_age(newest.name, time.time() - stat.st_mtime, backup.max_age)),
        result("size", started, *_size(newest.name, stat.st_size, backup.min_size)),
    ]
    kind = detect_type(newest, backup.type)
    if kind != "none":
        started = time.monotonic()
        results.append(result("integrity", started, *verify_integrity(newest, kind)))
    if backup.checksum == "sha256":
        started = time.monotonic()
        results.append(result("sha256", started, *verify_sha256(newest)))
    return results


def newest_file(backup: Backup) -> tuple[Path | None, str]:
    """(the most recently modified file matching path/glob, "") or (None, why not)."""
    folder = Path(backup.path)
    if not folder.is_dir():
        return None, f"backup folder {folder} not found"
    # A checksum sidecar is newer than its backup; it is never the backup itself.
    skip_sidecars = not backup.glob.endswith(SIDECAR_SUFFIX)
    try:
        candidates = [
            (path.stat().st_mtime, path.name, path)
            for path in folder.glob(backup.glob)
            if path.is_file() and not (skip_sidecars and path.name.endswith(SIDECAR_SUFFIX))
        ]
    except OSError as exc:
        return None, f"cannot list {folder}: {exc.strerror}"
    if not candidates:
        return None, f"no backup matches {folder / backup.glob}"
    return max(candidates)[2], ""


def _age(name: str, age: float, max_age: int) -> tuple[bool, str]:
    shown = human_duration(max(age, 0))
    return age <= max_age, f"{name} is {shown} old (max {human_duration(max_age)})"


def _size(name: str, size: int, min_size: int) -> tuple[bool, str]:
    return size >= min_size, f"{name} is {human_size(size)} (min {human_size(min_size)})"


def detect_type(path: Path, declared: str) -> str:
    """The declared type, or for `auto` the type its suffix says ("none" when unknown)."""
    if declared != "auto":
        return declared
    name = path.name.lower()
    for suffixes, kind in AUTO_TYPES:
        if name.endswith(suffixes):
            return kind
    return "none"


def verify_integrity(path: Path, kind: str) -> tuple[bool, str]:
    """Read the whole file as `kind` (tar, tar.gz, gzip, sqlite); (ok, detail)."""
    readers: dict[str, Callable[[Path], str]] = {
        "tar": lambda p: _read_tar(p, "r:*"),
        "tar.gz": lambda p: _read_tar(p, "r:gz"),
        "gzip": _read_gzip,
        "sqlite": _check_sqlite,
    }
    try:
        return True, readers[kind](path)
    except PermissionError:
        return False, f"{path.name}: cannot read: permission denied"
    except _Bad as exc:
        return False, f"{path.name}: {exc}"
    except DAMAGED as exc:
        return False, f"{path.name}: damaged {kind}: {_reason(exc)}"


class _Bad(Exception):
    """The file is readable but not what it should be."""


def _reason(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


def _read_tar(path: Path, mode: Literal["r:*", "r:gz"]) -> str:
    """Every member header and every byte of member data, as extracting would read them."""
    members = data = 0
    with tarfile.open(path, mode) as archive:
        for member in archive:
            members += 1
            if member.isfile():
                data += _drain(archive.extractfile(member))
    if members == 0:
        raise _Bad("archive has no members")
    noun = "member" if members == 1 else "members"
    return f"{members} {noun}, {human_size(data)} of data read"


def _read_gzip(path: Path) -> str:
    """Decompress to the end: gzip checks the CRC and length of every member there."""
    with path.open("rb") as raw:
        if raw.read(2) != GZIP_MAGIC:
            raise _Bad("not a gzip file")
    with gzip.open(path, "rb") as stream:
        size = _drain(stream)
    return f"{human_size(size)} uncompressed, CRC ok"


def _drain(stream) -> int:
    """Read a stream to its end in chunks; return the byte count."""
    total = 0
    while chunk := stream.read(CHUNK):
        total += len(chunk)
    return total


def _check_sqlite(path: Path) -> str:
    """PRAGMA integrity_check on a read-only connection (the backup is never written)."""
    with path.open("rb") as raw:
        if raw.read(len(SQLITE_MAGIC)) != SQLITE_MAGIC:
            raise _Bad("not a SQLite database")
    conn = sqlite3.connect(f"file:{quote(str(path))}?mode=ro", uri=True, timeout=5)
    try:
        rows = [row[0] for row in conn.execute("PRAGMA integrity_check")]
    except sqlite3.Error as exc:
        raise _Bad(f"damaged sqlite: {exc}") from None
    finally:
        conn.close()
    if rows != ["ok"]:
        # The first row may hold many lines under a "*** in database main ***" heading.
        lines = [line.strip() for row in rows for line in str(row).splitlines()]
        issues = [line for line in lines if line and not line.startswith("*** ")]
        first = issues[0] if issues else "unknown problem"
        raise _Bad(f"integrity_check found {len(issues)} problem(s), first: {first}")
    return "integrity_check ok"


def verify_sha256(path: Path) -> tuple[bool, str]:
    """Compare the file's SHA-256 with FILE.sha256 (`sha256sum` format: HEX  NAME)."""
    sidecar = path.with_name(path.name + SIDECAR_SUFFIX)
    try:
        words = sidecar.read_text(errors="replace").split()
    except FileNotFoundError:
        return False, f"{sidecar.name} not found"
    except OSError as exc:
        return False, f"{sidecar.name}: cannot read: {exc.strerror}"
    expected = words[0].lower() if words else ""
    if len(expected) != 64 or any(c not in "0123456789abcdef" for c in expected):
        return False, f"{sidecar.name} does not start with a SHA-256 hex digest"
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while chunk := stream.read(CHUNK):
            digest.update(chunk)
    if digest.hexdigest() != expected:
        return False, f"{path.name} does not match {sidecar.name}"
    return True, f"{path.name} matches {sidecar.name}"
