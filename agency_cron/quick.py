"""The `--json` read commands answered without typer, rich, pydantic or Jinja.

`list --json`, `status [NAME] --json`, `history NAME [--limit N] --json`, `next NAME
[-n N] --json` and `log-summary [--since S] [--task T]... --json` need the settings, the
validated manifest and the history. Importing the CLI (typer, click, rich) and validating
the manifest (pydantic, PyYAML) costs several times the work itself, so __main__ first
tries this module, which is standard library only up to the library calls:

* the command line is parsed here for exactly these forms (anything else, --help, a
  typo, an option it does not know: the full path, which gives the usual answer);
* the settings are loaded as the CLI loads them (config.load_settings, find_manifest);
* the manifest comes from a cache of the last full load's validated tasks, used only when
  the fingerprint of everything that load read still holds (fastpath.snapshot: the files
  it opened, the folders it listed, the candidates it checked, agency-cron's own tree,
  the dependencies, the environment, the working directory, the day). Any full load of a
  read command writes it (cli._load). The cache holds no task environment (secrets stay
  out of it) and is written 0600 in the user's cache folder;
* the same library functions as the CLI (reports.*), the same JSON writer
  (results.to_json: typed results, the `version` envelope);
* exit through os._exit after flushing: the interpreter's teardown is skipped (nothing
  here registers an atexit handler or holds an unflushed file).

When anything is not vouched for (no cache, a changed input, a task name the manifest
does not have, any AgencyCronError or OSError on the way) it returns None and the full
path answers, errors included. AGENCY_CRON_NO_QUICK=1 turns it off (the tests compare both
paths byte for byte).
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

from agency_cron import fastpath
from agency_cron.fastpath import sha256

COMMANDS = ("list", "status", "history", "next", "log-summary")
GLOBAL_OPTIONS = ("--config", "--manifest")
# The options each command takes here (each with a value), besides --json.
COMMAND_OPTIONS = {
    "list": (),
    "status": ("--host",),
    "history": ("--limit", "--host"),
    "next": ("-n", "--count"),
    "log-summary": ("--since", "--task", "--host"),
}
POSITIONALS = {"list": (0, 0), "status": (0, 1), "history": (1, 1), "next": (1, 1)}
CACHE_FORMAT = 1


@dataclass
class Call:
    command: str
    config: str | None = None
    manifest: str | None = None
    names: list[str] = field(default_factory=list)
    options: dict[str, list[str]] = field(default_factory=dict)


def enabled() -> bool:
    return not os.environ.get("AGENCY_CRON_NO_QUICK")


def _value(args: list[str], i: int, known: tuple[str, ...]) -> tuple[str, str, int] | None:
    """(option, value, next index) for `--opt value` / `--opt=value`; None if not one."""
    arg = args[i]
    if arg in known:
        if i + 1 >= len(args) or args[i + 1].startswith("-"):
            return None
        return arg, args[i + 1], i + 2
    name, eq, value = arg.partition("=")
    if eq and name in known and name.startswith("--"):
        return name, value, i + 1
    return None


def parse(argv: list[str]) -> Call | None:
    """The call when argv is one of the forms above, else None."""
    i, config, manifest = 0, None, None
    while i < len(argv) and argv[i].startswith("-"):
        found = _value(argv, i, GLOBAL_OPTIONS)
        if found is None:
            return None
        option, value, i = found
        config, manifest = (value, manifest) if option == "--config" else (config, value)
    if i >= len(argv) or argv[i] not in COMMANDS:
        return None
    call = Call(argv[i], config, manifest)
    known = (*GLOBAL_OPTIONS, *COMMAND_OPTIONS[call.command])
    json_flag, i = False, i + 1
    while i < len(argv):
        arg = argv[i]
        if arg == "--json":
            json_flag, i = True, i + 1
        elif arg.startswith("-"):
            found = _value(argv, i, known)
            if found is None:
                return None
            option, value, i = found
            if option == "--config":
                call.config = value
            elif option == "--manifest":
                call.manifest = value
            else:
                call.options.setdefault("--count" if option == "-n" else option, []).append(value)
        else:
            call.names.append(arg)
            i += 1
    low, high = POSITIONALS.get(call.command, (0, 0))
    if not json_flag or not low <= len(call.names) <= high:
        return None
    return call


def _last_int(call: Call, option: str, default: int) -> int | None:
    values = call.options.get(option)
    if not values:
        return default
    text = values[-1]
    if not text.isdigit() or int(text) < 1 or text != str(int(text)):
        return None  # click's own answer for anything else
    return int(text)


# --- the manifest cache ----------------------------------------------------------------


def _key(config: str | None, manifest: str | None) -> list:
    return ["manifest-cache", CACHE_FORMAT, config, manifest]


def _cache_path(key: list) -> str:
    digest = sha256(json.dumps([os.getcwd(), key, os.geteuid()]).encode()).hexdigest()
    return os.path.join(fastpath._cache_dir(), f"manifest-{digest[:24]}.json")


class CachedManifest:
    """The tasks of a validated manifest, as plain frozen records (no pydantic)."""

    def __init__(self, tasks: tuple, sources: tuple[Path, ...]):
        self.tasks = tasks
        self.sources = sources

    def get(self, name: str):
        return next((task for task in self.tasks if task.name == name), None)


class CachedTask:
    """A task's fields as attributes, frozen and hashable like the pydantic Task (the
    reports memoise on them); built per task without dataclass machinery."""

    __slots__ = ("_fields",)

    def __init__(self, fields: dict):
        object.__setattr__(self, "_fields", fields)

    def __getattr__(self, name: str):
        try:
            return self._fields[name]
        except KeyError:
            raise AttributeError(name) from None

    def __setattr__(self, name: str, value) -> None:
        raise AttributeError(f"{type(self).__name__} is frozen")

    def __eq__(self, other) -> bool:
        return isinstance(other, CachedTask) and other._fields == self._fields

    def __hash__(self) -> int:
        return hash(self._fields["name"])


def _frozen(value):
    if isinstance(value, list):
        return tuple(_frozen(v) for v in value)
    return value


def _cached_manifest(config: str | None, manifest: str | None, path: Path):
    key = _key(config, manifest)
    record = fastpath.read_record(_cache_path(key))
    if record is None or record.get("path") != str(path) or not fastpath.holds(record, key):
        return None
    tasks = tuple(CachedTask({k: _frozen(v) for k, v in dump.items()}) for dump in record["tasks"])
    return CachedManifest(tasks, tuple(Path(p) for p in record["sources"]))


def start_recording(argv: list[str]) -> None:
    """A read command about to take the full path: note what its load reads (cli._load
    calls store() once the manifest is loaded)."""
    if enabled() and parse(argv) is not None:
        fastpath.start_recording()


def store(argv: list[str], path: Path, loaded) -> None:
    """After a full load of a read command: cache its tasks with the fingerprint."""
    call = parse(argv)
    if call is None or not fastpath.recording():
        return  # not a read command of this module's (an install records its own reads)
    reads = fastpath.stop_recording()
    if reads is None:
        return
    if any(expr.startswith("once ") for task in loaded.tasks for expr in task.schedule):
        return  # their validity moves with the clock
    key = _key(call.config, call.manifest)
    tasks = []
    for task in loaded.tasks:
        dump = task.model_dump(mode="json")
        dump["env"] = None  # secrets stay out of the cache; no read command shows them
        tasks.append(dump)
    try:
        found = fastpath.snapshot(key, reads)
    except (OSError, fastpath.Unsettled):
        return  # a cache: the full path stays correct without it
    record = {
        **found,
        "path": str(path),
        "tasks": tasks,
        "sources": [str(p) for p in loaded.sources],
    }
    fastpath.write_record(_cache_path(key), record)


# --- answering -------------------------------------------------------------------------


def answer(call: Call) -> str | None:
    """The JSON text the full path would print, or None to let the full path answer."""
    from agency_cron import reports
    from agency_cron.config import find_manifest, load_settings
    from agency_cron.results import to_json

    settings = load_settings(call.config, crontab=None)
    path = find_manifest(call.manifest, settings)
    loaded = _cached_manifest(call.config, call.manifest, path)
    if loaded is None:
        return None
    wanted = call.names or call.options.get("--task", [])
    if any(loaded.get(name) is None for name in wanted):
        return None  # the full path's usage error, with its did-you-mean
    if call.command in ("status", "history", "log-summary"):
        return _history_answer(call, settings, loaded)
    if call.command == "list":
        data: object = reports.task_list(settings, loaded)
    elif call.command == "next":
        count = _last_int(call, "--count", 5)
        if count is None:
            return None
        task = loaded.get(call.names[0])
        times = reports.upcoming(task, count, settings)
        data = {"name": call.names[0], "schedule": list(task.schedule), "next_runs": times}
    return to_json(data)


def _history_answer(call: Call, settings, loaded) -> str | None:
    """status, history and log-summary: read the history of `--host` (the CLI's defaults:
    this host for status and history, the fleet for log-summary); its note on stderr, as
    the CLI words it."""
    from agency_cron import readers, reports
    from agency_cron.results import to_json

    limit = _last_int(call, "--limit", 20)
    if limit is None:
        return None
    since = reports.parse_since((call.options.get("--since") or ["24h"])[-1])
    hosts = call.options.get("--host")
    choice = hosts[-1] if hosts else None
    default = readers.ALL if call.command == "log-summary" else readers.THIS
    with readers.viewing(settings, loaded, choice, default) as view:
        if view.note:
            from agency_cron.terminal import escape_controls

            note = escape_controls(view.note).replace("\n", " ")
            sys.stderr.write(f"agency-cron: warning: {note}\n")
        if call.command == "status":
            rows = reports.task_status(settings, loaded, call.names or None, view)
            data: object = rows[0] if call.names else rows
        elif call.command == "history":
            data = reports.task_history(settings, call.names[0], limit, view=view)
        else:
            tasks = call.options.get("--task") or None
            data = reports.log_summary(settings, loaded, since, tasks, view)
    return to_json(data)


def try_answer(argv: list[str]) -> bool:
    """Answer argv here and exit the process; False when the full path must answer."""
    if not enabled():
        return False
    call = parse(argv)
    if call is None:
        return False
    import gc

    from agency_cron.errors import AgencyCronError

    gc.disable()  # a short process whose objects all live until its exit
    try:
        text = answer(call)
    except (AgencyCronError, OSError):
        text = None  # the full path says it the usual way
    if text is None:
        gc.enable()
        return False
    sys.stdout.write(text)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
