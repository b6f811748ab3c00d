"""A no-op `agency-cron install` answered without importing the CLI, pydantic or Jinja.

Re-running `install` (make setup-cronjobs, config management runs, cron) is the common
case and usually changes nothing; the full path spends most of its time importing typer,
rich, pydantic, jinja2, PyYAML and python-crontab (~0.5 s here). After every successful
full install, the slow path records a fingerprint of everything the result depends on;
the next plain `install` that finds every part of it unchanged prints what the full path
printed ("no changes", and any warning) at once. Anything it cannot vouch for sends it
down the full path, which is always right.

The inputs are not listed by hand: they are what the install actually read. `__main__`
calls start_recording() before anything else is imported, which installs an audit hook
(sys.addaudithook) that notes every file opened for reading (the config, each manifest
file, the overrides, templates, zone files, the crontab file, and every module's code),
every folder listed (the manifest folder, the spec folder, the import system's listings
of sys.path, so that a package installed, upgraded or removed is seen) and every program
started (crontab, logrotate, systemctl); and every path only checked for existence or
mode (os.stat, os.lstat and os.access are wrapped while recording, which covers
Path.exists/is_dir/is_file, os.path.* and shutil.which: the config and manifest candidates
that would take precedence, a folder not there yet, sendmail), plus fs.note for a caller
to name one explicitly. Besides those: the source file of every module imported (an
edited .py whose .pyc was read), agency-cron's whole source tree (code, templates,
bundled scripts: also what install renders but does not import, such as the runner and
the checks), the dist-info of every installed dependency, the user and group entries
looked up (pwd, grp: the lookups and their answers), /etc/localtime and its link, the
command line, working directory, interpreter, the whole environment and the day (zone
rules are read over a window from today). Outputs come from the plan: each rendered file
and the crontab by size, mtime, mode, owner and inode, the folders install keeps, a user
crontab's text. Manifests with one-time schedules are never fast-pathed: their validity
moves with the clock. Standard library only.
"""

from __future__ import annotations

import json
import os
import sys
import time

TYPE_CHECKING = False  # (typing itself is not imported: read commands load this module)
if TYPE_CHECKING:
    from typing import Any

try:  # the built-in module: hashlib loads OpenSSL, which costs a read command ~5 ms
    from _sha256 import sha256  # type: ignore[import-not-found]
except ImportError:  # another Python (3.12 has _sha2)
    from hashlib import sha256

FORMAT = 2
PATH_OPTIONS = ("--config", "--manifest", "--crontab")
# Read by C code (the C library's zone), which no audit hook sees. The user and group
# databases are read through NSS too: the lookups themselves are recorded instead (pwd,
# grp: _LOOKUPS), so that an unrelated user added to /etc/passwd does not count.
C_INPUTS = ("/etc/localtime",)
_LOOKUPS = (("pwd", "getpwnam"), ("pwd", "getpwuid"), ("grp", "getgrnam"), ("grp", "getgrgid"))
# Kernel views: their stat moves with every process, and what install reads there (its own
# ancestry, the running cron daemon) is not what its result depends on.
_VOLATILE = ("/proc/", "/dev/", "/sys/")
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND


class _Reads:
    """What the install process read, noted by the audit hook and fs.note."""

    def __init__(self) -> None:
        self.files: dict[str, bool] = {}  # opened: compared by signature(); there when opened?
        # Only checked: compared by probe_signature(); whether each was there when checked.
        self.probes: dict[str, bool] = {}
        self.listings: set[str] = set()
        self.programs: set[str] = set()
        self.lookups: dict[tuple[str, str, object], list | None] = {}  # (module, call, key)


_reads: _Reads | None = None


def _cache_dir() -> str:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "agency-cron")


def _record_path(argv: list[str]) -> str:
    key = json.dumps([os.getcwd(), argv, os.geteuid(), sys.executable])
    return os.path.join(_cache_dir(), f"install-{sha256(key.encode()).hexdigest()[:24]}.json")


def is_plain_install(argv: list[str]) -> bool:
    """`install` with nothing but --config/--manifest/--crontab around it."""
    rest, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg in PATH_OPTIONS:
            skip = True
        elif not arg.startswith(tuple(f"{option}=" for option in PATH_OPTIONS)):
            rest.append(arg)
    return rest == ["install"] and not skip


def enabled(argv: list[str]) -> bool:
    return is_plain_install(argv) and not os.environ.get("AGENCY_CRON_NO_FAST_PATH")


def signature(path: str) -> list | None:
    """What identifies a file's state: None when it is missing."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return [st.st_size, st.st_mtime_ns, st.st_mode, st.st_uid, st.st_ino]


def probe_signature(path: str) -> list | None:
    """What an existence check can tell of a path: None when missing; a folder by kind,
    mode, owner and inode (its mtime moves with every file made in it, and what is in it
    counts only where it is listed, which is recorded apart); a symbolic link by its
    target and what that is; a file by signature()."""
    import stat

    try:
        st = os.lstat(path)
    except OSError:
        return None
    if stat.S_ISLNK(st.st_mode):
        target = os.path.join(os.path.dirname(path), _link(path) or "")
        return ["link", _link(path), probe_signature(target) if target != path else None]
    if stat.S_ISDIR(st.st_mode):
        return ["dir", st.st_mode, st.st_uid, st.st_ino]
    return [st.st_size, st.st_mtime_ns, st.st_mode, st.st_uid, st.st_ino]


def _link(path: str) -> str | None:
    try:
        return os.readlink(path)
    except OSError:
        return None


def _listing(path: str) -> list[str] | None:
    try:
        return sorted(os.listdir(path))
    except OSError:
        return None


def _which(name: str) -> str | None:
    import shutil

    return shutil.which(name)


# --- recording (the full path) ---------------------------------------------------------


# Existence checks (Path.exists/is_dir/is_file, os.path.*, shutil.which, os.access) raise
# no audit event: while recording, these os functions note their path first. The import
# system calls posix.stat directly, so imports are not noted here (their folders' listings
# and the modules' sources are).
_PROBES = ("stat", "lstat", "access")
_real_probes: dict[str, object] = {}


def _exists(path: str) -> bool:
    try:
        (_real_probes.get("lstat") or os.lstat)(path)  # type: ignore[operator]
    except OSError:
        return False
    return True


def _probing(real):
    def probe(path, *args, **kwargs):
        if kwargs.get("dir_fd") is None:  # (relative to a folder's descriptor: not a read)
            _note_path(path)
        return real(path, *args, **kwargs)

    return probe


def _lookup(module: str, call: str, key: object) -> list | None:
    """A user or group database entry as a list; None when there is none."""
    found = _real_lookups.get((module, call)) or getattr(__import__(module), call)
    try:
        return list(found(key))
    except (KeyError, TypeError, OverflowError):
        return None


_real_lookups: dict[tuple[str, str], Any] = {}


def _looking(module: str, call: str, real):
    def lookup(key):
        reads = _reads
        if reads is not None:
            try:
                reads.lookups.setdefault((module, call, key), list(real(key)))
            except (KeyError, TypeError, OverflowError):
                reads.lookups.setdefault((module, call, key), None)
        return real(key)

    return lookup


def start_recording() -> None:
    """Note what this process reads from now on (__main__: a plain install, or a read
    command whose manifest load is to be cached, quick.py)."""
    global _reads
    from agency_cron import fs

    _reads = _Reads()
    fs.observer = _note_path
    for name in _PROBES:
        _real_probes[name] = getattr(os, name)
        setattr(os, name, _probing(_real_probes[name]))
    for module, call in _LOOKUPS:
        where = __import__(module)
        _real_lookups[(module, call)] = getattr(where, call)
        setattr(where, call, _looking(module, call, _real_lookups[(module, call)]))
    sys.addaudithook(_audit)


def recording() -> bool:
    return _reads is not None


def stop_recording() -> _Reads | None:
    global _reads
    from agency_cron import fs

    reads, _reads = _reads, None
    fs.observer = None
    for name, real in _real_probes.items():
        setattr(os, name, real)
    _real_probes.clear()
    for (module, call), real in _real_lookups.items():
        setattr(__import__(module), call, real)
    _real_lookups.clear()
    return reads


def _absolute(path) -> str | None:
    if isinstance(path, int) or path is None:
        return None  # an open file descriptor: its file was named when it was opened
    return os.path.abspath(os.fsdecode(path))


def _note_path(path) -> None:
    reads = _reads
    if reads is not None:
        try:
            found = _absolute(path)
        except (TypeError, ValueError):
            return  # not a path: the call itself will say so
        if (
            found
            and found not in reads.probes
            and "/__pycache__/" not in found
            and not found.startswith(_VOLATILE)
        ):
            reads.probes[found] = _exists(found)


def _audit(event: str, args: tuple) -> None:
    reads = _reads
    if reads is None:
        return
    try:
        if event == "open":
            path, mode, flags = args
            writes = any(c in mode for c in "wax+") if mode else bool(flags & _WRITE_FLAGS)
            found = None if writes else _absolute(path)
            if (
                found
                and found not in reads.files
                and "/__pycache__/" not in found  # (a .pyc: its source is noted instead)
                and not found.startswith(_VOLATILE)
            ):
                reads.files[found] = _exists(found)
        elif event in ("os.listdir", "os.scandir"):
            found = _absolute(args[0] if args[0] is not None else ".")
            if found:
                reads.listings.add(found)
        elif event == "subprocess.Popen":
            program = args[0] if args[0] is not None else args[1][0]
            reads.programs.add(os.fsdecode(program))
    except Exception:  # noqa: BLE001, S110 - a hook must never break the call it watches
        pass


def _module_sources() -> set[str]:
    found = set()
    for module in list(sys.modules.values()):
        path = getattr(module, "__file__", None)
        if isinstance(path, str):
            found.add(os.path.abspath(path))
    return found


def _dependency_metadata() -> set[str]:
    """The dist-info METADATA of agency-cron and of every distribution it requires."""
    import re
    from importlib import metadata

    found: set[str] = set()
    pending, seen = ["agency-cron"], set()
    while pending:
        name = re.split(r"[ ;<>=!~\[(]", pending.pop(), maxsplit=1)[0].lower()
        if not name or name in seen:
            continue
        seen.add(name)
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            found.add(f"<missing {name}>")
            continue
        where = getattr(dist, "_path", None)
        if where is not None:
            found.add(os.path.join(str(where), "METADATA"))
        pending += [r for r in dist.requires or [] if "extra ==" not in r]
    return found


def _own_files() -> list:
    """agency-cron's whole source tree (code, templates, bundled scripts) by size and mtime."""
    root = os.path.dirname(os.path.abspath(__file__))
    found = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        for name in sorted(files):
            st = os.stat(os.path.join(folder, name))
            found.append([os.path.relpath(folder, root), name, st.st_size, st.st_mtime_ns])
    return [root, found]


def inputs_digest(key: list) -> str:
    """Everything besides the recorded files that a result depends on; `key` names the
    question (the install's command line, the manifest cache's --config/--manifest)."""
    state = [
        FORMAT,
        key,
        os.getcwd(),
        sys.executable,
        sys.version,
        os.geteuid(),
        sorted(os.environ.items()),
        time.strftime("%Y-%m-%d", time.gmtime()),
        _own_files(),
        [[path, signature(path), _link(path)] for path in C_INPUTS],
    ]
    return sha256(json.dumps(state).encode()).hexdigest()


class Unsettled(Exception):
    """The run created a path it had found missing: its fingerprint would describe a state
    it did not read. The next run, which sees the settled state, records one."""


def snapshot(key: list, reads: _Reads, extra: list[str] | None = None) -> dict:
    """The fingerprint of what was read (plus `extra` files): see the module's docstring.
    Raises Unsettled."""
    for seen in (reads.files, reads.probes):  # (one it removed, such as its temporary
        if any(_exists(path) and not present for path, present in seen.items()):  # files,
            raise Unsettled  # is recorded missing, as the next run will find it)
    # Before the listings: the cache folder may be in a folder that was listed.
    os.makedirs(_cache_dir(), mode=0o700, exist_ok=True)  # (an OSError: no record)
    programs = {name: _which(name) for name in reads.programs}
    binaries = {path for path in programs.values() if path}
    files = sorted(
        set(reads.files) | _module_sources() | _dependency_metadata() | set(extra or ()) | binaries
    )
    return {
        "inputs": inputs_digest(key),
        "files": [[os.path.abspath(p), signature(p)] for p in files],
        "probes": [[p, probe_signature(p)] for p in sorted(set(reads.probes) - set(files))],
        "listings": [[p, _listing(p)] for p in sorted(reads.listings)],
        "programs": sorted(programs.items()),
        "lookups": [[*key, found] for key, found in reads.lookups.items()],
    }


def holds(record: object, key: list) -> bool:
    """Is every part of a snapshot() still as it was?"""
    if not isinstance(record, dict) or record.get("inputs") != inputs_digest(key):
        return False
    return (
        all(signature(path) == sig for path, sig in record["files"])
        and all(probe_signature(path) == sig for path, sig in record["probes"])
        and all(_listing(path) == names for path, names in record["listings"])
        and all(_which(name) == found for name, found in record["programs"])
        and all(
            _lookup(module, call, key) == found for module, call, key, found in record["lookups"]
        )
    )


# Records kept in the cache folder: one per command line and folder it was run from, so a
# host that runs many different ones would otherwise grow it without end. Dropping an old
# record only costs its next run the full path.
MAX_RECORDS = 128


def write_record(path: str, record: dict) -> None:
    """Atomically, readable by this user only (best effort: a cache), then the oldest
    records beyond MAX_RECORDS go."""
    folder = os.path.dirname(path)
    temporary = f"{path}.{os.getpid()}.tmp"
    try:
        os.makedirs(folder, mode=0o700, exist_ok=True)
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with open(fd, "w", encoding="utf-8") as handle:
            json.dump(record, handle)
        os.replace(temporary, path)
    except OSError:  # a cache: the full path stays correct without it
        _remove(temporary)  # (a full disk leaves no partial file behind)
        return
    _prune(folder)


def _prune(folder: str) -> None:
    try:
        records = [
            (entry.stat().st_mtime_ns, entry.path)
            for entry in os.scandir(folder)
            if entry.name.endswith(".json") and entry.is_file()
        ]
    except OSError:
        return
    for _, old in sorted(records)[:-MAX_RECORDS]:
        _remove(old)


def _remove(path: str) -> None:
    try:  # noqa: SIM105 - contextlib is one more import on every command's start
        os.unlink(path)
    except OSError:
        pass


def read_record(path: str) -> dict | None:
    try:
        with open(path, encoding="utf-8") as handle:
            found = json.load(handle)
    except (OSError, ValueError):
        return None
    return found if isinstance(found, dict) else None


def record_install(argv: list[str], settings, manifest, plan, warnings: list[str]) -> None:
    """After a successful full install: remember what it read and wrote (best effort)."""
    reads = stop_recording()
    if (
        reads is None
        or not enabled(argv)
        or any(expr.startswith("once ") for task in manifest.tasks for expr in task.schedule)
    ):
        return
    outputs, folders = _outputs(settings, plan)
    try:
        found = snapshot(argv, reads, outputs)
    except (OSError, Unsettled):
        return  # a cache: the full path stays correct without it
    record = {
        **found,
        "folders": [[p, _folder_signature(p)] for p in folders],
        "target": plan.target.label,
        "tasks": len(manifest.tasks),
        "warnings": warnings,
    }
    if plan.target.kind == "user":
        record["user_crontab"] = {
            "user": plan.target.user,
            "sha256": sha256(plan.crontab_after.encode("utf-8", "surrogateescape")).hexdigest(),
        }
    write_record(_record_path(argv), record)


def _outputs(settings, plan) -> tuple[list[str], list[str]]:
    """The files the plan keeps, and the folders it keeps them in."""
    from agency_cron import layout

    files = [str(change.path) for change in plan.files]
    if plan.target.path is not None:
        files.append(str(plan.target.path))
    folders = {os.path.dirname(os.path.abspath(p)) for p in files}
    folders |= {
        str(p)
        for p in (
            settings.log_dir,
            settings.log_dir / "cron",
            settings.state_dir,
            layout.spec_dir(settings),
            layout.scripts_dir(settings),
        )
    }
    return files, sorted(folders)


def _folder_signature(path: str) -> list | None:
    """A folder install keeps: its kind, mode, owner and inode (not its mtime, which every
    run's history writes move)."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return [st.st_mode, st.st_uid, st.st_gid, st.st_ino]


# --- the fast path ---------------------------------------------------------------------


def _crontab_text(user: str | None) -> str | None:
    import subprocess

    args = ["crontab", *(["-u", user] if user else []), "-l"]
    try:
        result = subprocess.run(args, capture_output=True, check=False)
    except OSError:
        return None
    if result.returncode and b"no crontab for" not in result.stderr:
        return None
    return sha256(result.stdout).hexdigest()


def still_holds(argv: list[str]) -> dict | None:
    """The recorded install when every part of its fingerprint still holds; else None."""
    record = read_record(_record_path(argv))
    if record is None or not holds(record, argv):
        return None
    if any(_folder_signature(path) != sig for path, sig in record["folders"]):
        return None
    if (
        record.get("user_crontab")
        and _crontab_text(record["user_crontab"]["user"]) != record["user_crontab"]["sha256"]
    ):
        return None
    return record


def try_install(argv: list[str]) -> int | None:
    """Print what the full install printed and return 0 when the recorded fingerprint
    still holds; else None."""
    if not enabled(argv):
        return None
    record = still_holds(argv)
    if record is None:
        return None
    sys.stdout.write(
        f"plan for {record['target']}: {record['tasks']} task(s) unchanged\nno changes\n"
    )
    sys.stdout.flush()
    for line in record.get("warnings", []):
        sys.stderr.write(line + "\n")
    return 0
