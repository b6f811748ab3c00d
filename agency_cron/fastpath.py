"""A no-op `agency-cron install` answered without importing the CLI, pydantic or Jinja.

Re-running `install` (make setup-cronjobs, config management runs, cron) is the common
case and usually changes nothing; the full path spends most of its time importing typer,
rich, pydantic, jinja2, PyYAML and python-crontab (~0.5 s here). After every successful
full install, the slow path records a fingerprint of everything the result depends on;
the next plain `install` that finds every part of it unchanged prints "no changes" at once.
Anything it cannot vouch for sends it down the full path, which is always right.

The fingerprint covers: the command line, working directory, interpreter, the whole
environment, the day (zone rules are read over a window from today), agency-cron's own
files (code, templates, bundled scripts), every input file (config, manifest files and the
candidates that would take precedence over them, overrides, completed one-time tasks, the
user and group databases, the host zone, the logrotate and crontab binaries) and every
output (each rendered file by size, mtime, mode, owner and inode; the folders; the crontab's
text). Manifests with one-time schedules are never fast-pathed: their validity moves with
the clock. Standard library only.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time

FORMAT = 1
PATH_OPTIONS = ("--config", "--manifest", "--crontab")


def _cache_dir() -> str:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "agency-cron")


def _record_path(argv: list[str]) -> str:
    key = json.dumps([os.getcwd(), argv, os.geteuid(), sys.executable])
    return os.path.join(
        _cache_dir(), f"install-{hashlib.sha256(key.encode()).hexdigest()[:24]}.json"
    )


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


def signature(path: str) -> list | None:
    """What identifies a file's state: None when it is missing."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return [st.st_size, st.st_mtime_ns, st.st_mode, st.st_uid, st.st_ino]


def _listing(path: str) -> list[str] | None:
    try:
        return sorted(os.listdir(path))
    except OSError:
        return None


def _own_files() -> list:
    """agency-cron's code, templates and bundled scripts, by name, size and mtime."""
    root = os.path.dirname(os.path.abspath(__file__))
    found = []
    for folder in (
        root,
        os.path.join(root, "backends"),
        os.path.join(root, "templates"),
        os.path.join(root, "cronjobs"),
    ):
        for name in sorted(os.listdir(folder)):
            st = os.stat(os.path.join(folder, name))
            found.append([folder, name, st.st_size, st.st_mtime_ns])
    return found


def inputs_digest(argv: list[str]) -> str:
    """Everything besides files that the result of an install depends on."""
    state = [
        FORMAT,
        argv,
        os.getcwd(),
        sys.executable,
        sorted(os.environ.items()),
        time.strftime("%Y-%m-%d", time.gmtime()),
        _own_files(),
    ]
    return hashlib.sha256(json.dumps(state).encode()).hexdigest()


def _crontab_text(user: str | None) -> str | None:
    import subprocess

    args = ["crontab", *(["-u", user] if user else []), "-l"]
    try:
        result = subprocess.run(args, capture_output=True, check=False)
    except OSError:
        return None
    if result.returncode and b"no crontab for" not in result.stderr:
        return None
    return hashlib.sha256(result.stdout).hexdigest()


def try_install(argv: list[str]) -> int | None:
    """Print "no changes" and return 0 when the recorded fingerprint still holds; else None."""
    if not is_plain_install(argv) or os.environ.get("AGENCY_CRON_NO_FAST_PATH"):
        return None
    try:
        with open(_record_path(argv), encoding="utf-8") as handle:
            record = json.load(handle)
    except (OSError, ValueError):
        return None
    if record.get("inputs") != inputs_digest(argv):
        return None
    if any(signature(path) != sig for path, sig in record["files"]):
        return None
    if any(_listing(path) != names for path, names in record["listings"]):
        return None
    if (
        record.get("user_crontab")
        and _crontab_text(record["user_crontab"]["user"]) != record["user_crontab"]["sha256"]
    ):
        return None
    sys.stdout.write(
        f"plan for {record['target']}: {record['tasks']} task(s) unchanged\nno changes\n"
    )
    return 0


def record_install(argv: list[str], settings, manifest, plan) -> None:
    """After a successful full install: remember what the result depends on (best effort)."""
    if not is_plain_install(argv) or any(
        expr.startswith("once ") for task in manifest.tasks for expr in task.schedule
    ):
        return
    try:
        record = _fingerprint(argv, settings, manifest, plan)
        path = _record_path(argv)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        temporary = f"{path}.{os.getpid()}.tmp"
        with open(temporary, "w", encoding="utf-8") as handle:
            json.dump(record, handle)
        os.replace(temporary, path)
    except OSError:
        pass  # a cache: the full path stays correct without it


def _fingerprint(argv: list[str], settings, manifest, plan) -> dict:
    import shutil

    from agency_cron import layout

    root = str(settings.agency_root)
    inputs = [
        *(str(p) for p in manifest.sources),
        *(str(settings.config_path) for _ in [0] if settings.config_path),
        "config.env",
        "tasks.yaml",
        os.path.join(os.environ.get("AGENCY_ROOT", root), "config.env"),
        os.path.join(root, "config.env"),
        os.path.join(root, "tasks.yaml"),
        str(layout.overrides_path(settings)),
        "/etc/passwd",
        "/etc/group",
        "/etc/localtime",
        *(p for p in (shutil.which("logrotate"), shutil.which("crontab")) if p),
    ]
    outputs = [str(change.path) for change in plan.files]
    if plan.target.path is not None:
        outputs.append(str(plan.target.path))
    folders = [settings.log_dir, settings.log_dir / "cron", layout.spec_dir(settings)]
    listings = [
        str(layout.spec_dir(settings)),
        str(settings.state_dir / "completed"),
        str(layout.api_tasks_dir(settings)),  # a task created through the admin API
    ]
    if plan.target.kind == "systemd":
        listings.append(str(plan.target.path))
    listings += sorted({str(source.parent) for source in manifest.sources})  # files added
    files = [[os.path.abspath(p), signature(p)] for p in [*inputs, *outputs, *map(str, folders)]]
    record = {
        "inputs": inputs_digest(argv),
        "files": files,
        "listings": [[os.path.abspath(p), _listing(p)] for p in listings],
        "target": plan.target.label,
        "tasks": len(manifest.tasks),
    }
    if plan.target.kind == "user":
        record["user_crontab"] = {
            "user": plan.target.user,
            "sha256": hashlib.sha256(
                plan.crontab_after.encode("utf-8", "surrogateescape")
            ).hexdigest(),
        }
    return record
