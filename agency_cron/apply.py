"""Carry out a Plan: directories, files, then the crontab, under a lock, with a backup.

Files go first so that a crontab line never points at a wrapper that is not there yet.
The crontab is re-read under the lock and merged again, so an edit made by someone else
between planning and applying is kept, not overwritten.
"""

from __future__ import annotations

import contextlib
import errno
import os
import time
from dataclasses import replace
from pathlib import Path

from agency_cron import layout
from agency_cron.backends import backend
from agency_cron.backends.crontab import merge
from agency_cron.config import Settings
from agency_cron.errors import PathError
from agency_cron.fs import exclusive_lock, write_atomic, write_if_changed
from agency_cron.layout import path_error
from agency_cron.manifest import Manifest
from agency_cron.plan import REMOVED, UNCHANGED, Plan, build_plan, build_uninstall_plan, select

BACKUPS_KEPT = 50


def apply_plan(plan: Plan, settings: Settings) -> Plan:
    """Make the plan true on disk and in the crontab; returns the plan as applied.

    If any step fails (the crontab binary refuses, a disk fills up), every file and folder
    already changed is put back as it was before the error is raised: a failed install
    leaves nothing half done. An OSError comes out as a PathError naming the path and the
    setting it belongs to.
    """
    undo = Undo()
    try:
        return _apply(plan, settings, undo)
    except OSError as exc:
        unrestored = undo.restore()
        raise PathError(path_error(settings, exc), *unrestored) from None
    except BaseException:
        undo.restore()
        raise


def _apply(plan: Plan, settings: Settings, undo: Undo) -> Plan:
    for folder in plan.directories:
        undo.created_folder(folder)
        folder.mkdir(parents=True, exist_ok=True)
    for change in plan.files:
        if change.action != UNCHANGED:
            undo.remember(change.path)
        if change.action == REMOVED:
            change.path.unlink(missing_ok=True)
        elif change.action != UNCHANGED:
            assert change.content is not None  # only a removal has no content
            write_if_changed(change.path, change.content, change.mode, durable=False)
    for path, user in plan.owners:
        undo.remember(path)
        hand_over(path, user)
    _create_history(settings, undo)
    create_user_histories(settings, plan.history_users, undo)
    if any(change.action != UNCHANGED for change in plan.files):
        os.sync()  # every file on disk before a crontab line can point at it
    backend(plan.target).activate(plan.target, list(plan.files))
    if plan.crontab_before == plan.crontab_after:
        return plan
    lock = layout.crontab_lock_path(settings)
    for folder in (lock.parent, layout.backups_dir(settings)):
        undo.created_folder(folder)  # a failed first install leaves no empty STATE_DIR behind
    if not lock.exists():
        undo.created_file(lock)
    with exclusive_lock(lock):
        current = plan.target.read()
        after = plan.crontab_after if current == plan.crontab_before else _remerge(plan, current)
        if after != current:
            undo.created_file(backup(settings, plan.target.slug, current))
            plan.target.write(after)
    return replace(plan, crontab_before=current, crontab_after=after)


class Undo:
    """What apply changed so far, to put back if a later step fails."""

    def __init__(self):
        self.files: list[tuple[Path, bytes | None, int, os.stat_result | None]] = []
        self.folders: list[Path] = []

    def remember(self, path: Path) -> None:
        try:
            stat = path.stat()
        except FileNotFoundError:
            self.files.append((path, None, 0, None))
            return
        self.files.append((path, path.read_bytes(), stat.st_mode & 0o7777, stat))

    def created_file(self, path: Path) -> None:
        self.files.append((path, None, 0, None))

    def created_folder(self, folder: Path) -> None:
        missing = [folder, *folder.parents]
        self.folders += [f for f in missing if not f.exists()]

    def restore(self) -> list[str]:
        """Put everything back; returns a line for each path that could not be (a disk
        that is still full, say), so that the caller can say so instead of hiding it."""
        failed = []
        for path, content, mode, stat in reversed(self.files):
            try:
                self._restore_file(path, content, mode, stat)
            except OSError as exc:
                failed.append(f"{path}: could not be put back: {exc.strerror or exc}")
        for folder in sorted(self.folders, key=lambda f: len(f.parts), reverse=True):
            with contextlib.suppress(OSError):
                folder.rmdir()  # only if empty: never take away what someone else put there
        return failed

    @staticmethod
    def _restore_file(path: Path, content: bytes | None, mode: int, stat) -> None:
        if content is None:
            path.unlink(missing_ok=True)
            return
        write_atomic(path, content, mode)
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # as if never touched
        if os.geteuid() == 0:
            os.chown(path, stat.st_uid, stat.st_gid)


def _create_history(settings: Settings, undo: Undo) -> None:
    """Create history.db with its schema now, so that the first scheduled runs (often many
    at the same minute) never race each other to create and migrate it. Before the crontab
    is written, so that a STATE_DIR that cannot hold it fails the install as a whole."""
    import sqlite3

    path = layout.history_path(settings)
    if path.exists():
        return
    from agency_cron import history

    for suffix in ("", "-wal", "-shm", "-journal"):
        undo.created_file(path.with_name(path.name + suffix))
    try:
        history.connect(str(path)).close()
    except sqlite3.Error as exc:
        raise OSError(errno.EIO, f"cannot create the history database: {exc}", str(path)) from None


def create_user_histories(settings: Settings, users: tuple[str, ...], undo: Undo) -> None:
    """Give each user a task runs as its folder STATE_DIR/history.d/USER (0750, its own:
    SQLite creates its -wal and -shm files beside the database) and a database with the
    schema. Only root can; history.d itself stays root's, so no user can touch another's.

    The database is created and migrated in root's history.d, handed over, then linked
    into place: root never writes through a path that the user could have replaced.
    """
    if os.geteuid() != 0 or not users:
        return
    import pwd

    base = layout.user_histories_dir(settings)
    base.mkdir(mode=0o755, parents=True, exist_ok=True)
    for user in users:
        entry = pwd.getpwnam(user)
        folder = layout.user_history_path(settings, user).parent
        folder.mkdir(mode=0o750, exist_ok=True)
        os.chown(folder, entry.pw_uid, entry.pw_gid, follow_symlinks=False)
        folder.chmod(0o750)
        _seed_user_database(base, folder / "history.db", entry, undo)


def _seed_user_database(base: Path, path: Path, entry, undo: Undo) -> None:
    if os.path.lexists(path):
        return  # the user's runs are in it (or the runner migrates it at its next run)
    import sqlite3

    from agency_cron import history

    seed = base / f".{entry.pw_name}.{os.getpid()}.db"
    try:
        history.connect(str(seed)).close()
        os.chown(seed, entry.pw_uid, entry.pw_gid)
        seed.chmod(0o640)
        os.link(seed, path)
        undo.created_file(path)  # ours: a failed install takes it away again
    except FileExistsError:
        pass  # a first run created it meanwhile: it is the user's
    except sqlite3.Error as exc:
        raise OSError(errno.EIO, f"cannot create the history database: {exc}", str(path)) from None
    finally:
        for leftover in (seed, Path(f"{seed}-wal"), Path(f"{seed}-shm")):
            leftover.unlink(missing_ok=True)


def hand_over(path: Path, user: str) -> None:
    """Create `path` if missing and give it to `user` (only root can; others keep theirs)."""
    import pwd

    if os.geteuid() != 0:
        return
    entry = pwd.getpwnam(user)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        path.touch(mode=0o640)
    stat = path.stat()
    if (stat.st_uid, stat.st_gid) != (entry.pw_uid, entry.pw_gid):
        os.chown(path, entry.pw_uid, entry.pw_gid)


def _remerge(plan: Plan, current: str) -> str:
    from agency_cron.backends.crontab import installed_entries

    wanted = installed_entries(plan.crontab_after)
    return merge(current, wanted, plan.scope)


def backup(settings: Settings, slug: str, text: str) -> Path:
    """Keep the crontab as it was before a change, newest BACKUPS_KEPT only."""
    folder = layout.backups_dir(settings)
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime()) + f".{time.time_ns() % 10**9:09d}"
    path = folder / f"{slug}.{stamp}.crontab"
    write_atomic(path, text.encode("utf-8", "surrogateescape"), 0o600)
    old = sorted(folder.glob(f"{slug}.*.crontab"))
    for stale in old[:-BACKUPS_KEPT]:
        stale.unlink(missing_ok=True)
    return path


def install(
    settings: Settings, manifest: Manifest, manifest_path: Path, names=None, dry_run=False
) -> Plan:
    plan = build_plan(settings, manifest, manifest_path, names)
    return plan if dry_run else apply_plan(plan, settings)


def uninstall(settings: Settings, purge: bool = False, dry_run: bool = False) -> Plan:
    plan = build_uninstall_plan(settings, purge)
    return plan if dry_run else apply_plan(plan, settings)


def set_enabled(
    settings: Settings, manifest: Manifest, manifest_path: Path, name: str, enabled: bool
) -> Plan:
    """Record enable/disable in STATE_DIR (it outlives installs) and apply it to the task.

    A choice the manifest already makes removes the override rather than pinning it, so a
    later change of the manifest takes effect (overrides.with_choice). The record and the
    crontab change together: if applying fails, the record is put back as it was.
    """
    task = select(manifest, [name])[0]  # unknown task -> UsageError before anything is written
    from agency_cron.overrides import read_overrides, with_choice, write_overrides

    overrides = with_choice(task, read_overrides(settings), enabled)
    plan = build_plan(settings, manifest, manifest_path, [name], overrides)
    record = layout.overrides_path(settings)
    undo = Undo()
    try:
        undo.created_folder(record.parent)
        undo.remember(record)
        write_overrides(settings, overrides)
    except OSError as exc:
        raise PathError(path_error(settings, exc), *undo.restore()) from None
    try:
        return apply_plan(plan, settings)
    except BaseException:
        undo.restore()
        raise
