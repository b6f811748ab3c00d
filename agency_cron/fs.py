"""Files written atomically and only when they change.

A write goes to a temporary file in the same folder, is flushed to disk and renamed over
the target, so a reader (cron, logrotate, the runner) never sees half a file; a file whose
content and mode already match is not touched, so a no-op install keeps every mtime.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Callable, Iterator
from pathlib import Path

# Told of every path checked with exists()/is_file() (and of any the caller notes): the
# no-op install fingerprint (fastpath.py) records them beside the files install opened.
observer: Callable[[str | os.PathLike], None] | None = None


def note(path: str | os.PathLike) -> None:
    """Tell the observer that the result depends on `path`, though it is not opened."""
    if observer is not None:
        observer(path)


def exists(path: Path) -> bool:
    note(path)
    return path.exists()


def is_file(path: Path) -> bool:
    note(path)
    return path.is_file()


def read_bytes(path: Path) -> bytes | None:
    """The file's bytes, or None when it does not exist."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None


def needs_write(path: Path, content: bytes, mode: int) -> bool:
    """True when the file is missing, differs, or has another mode."""
    try:
        current_mode = path.stat().st_mode & 0o7777
    except FileNotFoundError:
        return True
    return current_mode != mode or read_bytes(path) != content


def write_atomic(path: Path, content: bytes, mode: int, durable: bool = True) -> None:
    """Replace `path` with `content` and `mode` in one rename.

    `durable=False` skips the fsync: for batches that call os.sync() once at the end
    (an fsync per file made a cold install of 1,000 tasks take seconds).
    """
    try:
        _replace(path, content, mode, durable)
    except OSError as exc:
        # A failed write(2) names no file, mkstemp names its temporary: name the target.
        if exc.filename is None or Path(exc.filename).name.startswith(f".{path.name}."):
            exc.filename = str(path)
        raise


def _replace(path: Path, content: bytes, mode: int, durable: bool) -> None:
    import tempfile  # (not at import: read commands load this module and never write)

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(content)
            handle.flush()
            os.fchmod(handle.fileno(), mode)
            if durable:
                os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise


def write_if_changed(path: Path, content: bytes, mode: int, durable: bool = True) -> bool:
    """write_atomic() unless the file already holds `content` with `mode`; True if written."""
    if not needs_write(path, content, mode):
        return False
    write_atomic(path, content, mode, durable)
    return True


@contextlib.contextmanager
def exclusive_lock(path: Path) -> Iterator[None]:
    """Hold an flock on `path` for the block (the kernel drops it if the process dies)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
