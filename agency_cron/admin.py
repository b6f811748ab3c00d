"""What the admin API does, as a library: no HTTP here (serve/ is the thin shell over it).

Tasks created or changed through the API live in STATE_DIR/api/tasks, one JSON file per
task, which load_manifest reads after the operator's manifest. Every change is validated
with the whole manifest first (the same messages as `agency-cron validate`), then the file
is written atomically and the same plan/apply code as `install` makes it true; if applying
fails, the file is put back as it was. Tasks of the operator's manifest are read-only here
unless API_EDITS_MANIFEST=true, which lets an API copy replace one (deleting the copy
brings the operator's version back; api_tasks.py holds that rule, which the loader
applies). Every change is appended to an audit log.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from agency_cron import api_tasks, apply, layout, reports, statuses
from agency_cron.config import Settings
from agency_cron.errors import AgencyCronError, ConfigError, UsageError
from agency_cron.fields import NAME_PATTERN, NAME_RULE
from agency_cron.fs import exclusive_lock, read_bytes, write_atomic
from agency_cron.manifest import DURATION_FIELDS, Manifest, Task, load_manifest
from agency_cron.overrides import effective_enabled, read_overrides, write_overrides
from agency_cron.readers import Histories
from agency_cron.results import RunDetail, RunRow, Started, TaskStatus, TaskView, names
from agency_cron.secrets import MARKER as REDACTED
from agency_cron.secrets import is_secret_name, masked_ping_url, masked_url, redact

FILE_MODE = 0o600  # an API task may carry secrets in its env
RACY_NS = 2 * 10**9


class NotFound(UsageError):
    """No task (or run) of that name: 404 over HTTP."""


class Conflict(AgencyCronError):
    """The request contradicts what is there (a name taken, a read-only task): 409."""


class Refused(AgencyCronError):
    """The operation is not allowed on this task: 403 over HTTP."""


@dataclass(frozen=True)
class Context:
    """Where the server finds things: the options it was started with.

    Every request reads config and manifest afresh, so an edit on disk counts at once;
    the validated result is reused while none of the files it came from changed (their
    size, mtime and inode, the folders' listings) within the same minute (a `once` time
    can fall into the past), which saves most of a read's cost.
    """

    config: Path | None
    manifest: Path | None
    crontab: str | None = None
    _cache: dict = field(default_factory=dict, compare=False, repr=False)

    def load(self, pending: dict | None = None) -> tuple[Settings, Manifest, Path]:
        if pending:
            return self._load(pending)
        cached = self._cache.get("loaded")
        if cached is not None and self._cache.get("key") == _signature(cached):
            return cached
        started = time.time_ns()
        loaded = self._load(None)
        key = _signature(loaded)
        # A file written while (or just before) it was read could hold other bytes under
        # the same signature: only results read from files older than that are reused.
        if all(sig is None or sig[1] < started - RACY_NS for sig in key[1]):
            self._cache["loaded"], self._cache["key"] = loaded, key
        return loaded

    def _load(self, pending: dict | None) -> tuple[Settings, Manifest, Path]:
        from agency_cron.config import load_settings
        from agency_cron.manifest import find_manifest

        settings = load_settings(self.config, crontab=self.crontab)
        path = find_manifest(self.manifest, settings)
        overlay = api_tasks.overlay(settings, pending)  # the API's tasks over the manifest
        manifest = load_manifest(path, settings, strict=True, pending=pending, overlay=overlay)
        return settings, manifest, path


def _signature(loaded: tuple[Settings, Manifest, Path]) -> tuple:
    """What a loaded manifest depends on, cheaply: stat of every file, listings of folders."""
    from agency_cron.fastpath import signature

    settings, manifest, path = loaded
    files = [settings.config_path, path, *manifest.sources, Path("config.env"), Path("tasks.yaml")]
    folders = [path if path.is_dir() else None, layout.api_tasks_dir(settings)]
    return (
        int(time.time() // 60),
        tuple(signature(str(f)) if f else None for f in files),
        tuple(sorted(os.listdir(d)) if d and d.is_dir() else None for d in folders),
    )


# --- reading -----------------------------------------------------------------------------


def is_api_task(settings: Settings, manifest: Manifest, name: str) -> bool:
    origin = manifest.origins.get(name)
    return origin is not None and origin.parent == layout.api_tasks_dir(settings)


def source_document(settings: Settings, manifest: Manifest, task: Task) -> dict:
    """The task as a manifest document that loads back to the same task: an API task's
    file as it was sent (`${VAR}` kept), else the operator's task with its values as
    loaded (durations as `90s`, `$` as `$$` so that nothing is expanded twice)."""
    if is_api_task(settings, manifest, task.name):
        try:
            return json.loads(read_bytes(manifest.origins[task.name]) or b"{}")
        except ValueError:
            pass  # a hand-edited file that does not parse cannot have loaded; be safe
    document = task.model_dump(exclude_defaults=True, mode="json")
    document["schedule"] = list(task.schedule)
    for key in DURATION_FIELDS:
        if document.get(key) is not None:
            document[key] = f"{document[key]}s"
    return _escape_dollars(document)


def _escape_dollars(value):
    return _walk(value, lambda text: text.replace("$", "$$"))


def _walk(value, change):
    """`value` with `change` applied to every string inside it."""
    if isinstance(value, str):
        return change(value)
    if isinstance(value, dict):
        return {k: _walk(v, change) for k, v in value.items()}
    if isinstance(value, list):
        return [_walk(v, change) for v in value]
    return value


def masked(document: dict) -> dict:
    """Secret-named env values and the credentials in alert URLs as `***`."""
    result = dict(document)
    if isinstance(result.get("env"), dict):
        result["env"] = {
            k: REDACTED if is_secret_name(str(k)) else v for k, v in result["env"].items()
        }
    if isinstance(result.get("alert_urls"), list):
        result["alert_urls"] = [_masked_url(u) for u in result["alert_urls"]]
    if isinstance(result.get("ping_url"), str):
        result["ping_url"] = masked_ping_url(result["ping_url"], result.get("name"))
    return result


def _masked_url(url: object) -> object:
    """An alert URL of a document with its credentials masked; anything else as it is."""
    return masked_url(url) if isinstance(url, str) else url


def unmasked(body: dict, previous: dict) -> dict:
    """A body sent back with `***` where GET showed it keeps the previous values there."""
    result = dict(body)
    env, before = result.get("env"), previous.get("env") or {}
    if isinstance(env, dict):
        result["env"] = {
            k: before[k] if v == REDACTED and is_secret_name(str(k)) and k in before else v
            for k, v in env.items()
        }
    urls = result.get("alert_urls")
    if isinstance(urls, list):
        originals = {_masked_url(u): u for u in previous.get("alert_urls") or []}
        result["alert_urls"] = [originals.get(u, u) if REDACTED in str(u) else u for u in urls]
    before_url = previous.get("ping_url")
    # Only the masked form of the previous URL stands for it: an edited one is new.
    shown = (
        masked_ping_url(before_url, previous.get("name")) if isinstance(before_url, str) else None
    )
    if shown is not None and REDACTED in shown and result.get("ping_url") == shown:
        result["ping_url"] = before_url
    return result


def describe(settings: Settings, manifest: Manifest, task: Task, status: TaskStatus) -> TaskView:
    """A task as the API shows it: its definition (secrets masked) and its state."""
    from agency_cron.render import redaction_list

    # The operator's tasks are shown expanded: a ${CRM_TOKEN} in a command is a secret's
    # value by then, masked like the runner masks it in logs.
    secrets = redaction_list(task, settings)
    document = masked(source_document(settings, manifest, task))
    definition = _walk(document, lambda text: redact(text, secrets))
    from_api = is_api_task(settings, manifest, task.name)
    return TaskView(
        name=task.name,
        description=task.description,
        schedule=list(task.schedule),
        enabled=effective_enabled(task, read_overrides(settings)),
        tags=list(task.tags),
        state=status.state,
        next_run=status.next_run,
        last_run=status.last_run,
        last_status=status.last_status,
        source="api" if from_api else "manifest",
        read_only=not from_api and not api_tasks.api_may_replace(settings),
        definition=definition,
    )


def list_tasks(
    settings: Settings, manifest: Manifest, tag: str | None = None, state: str | None = None
) -> list[TaskView]:
    """Every task, optionally only those with a tag or in a state (status's states)."""
    figures = {row.name: row for row in reports.task_status(settings, manifest, None)}
    found = []
    for task in manifest.tasks:
        if tag and tag not in task.tags:
            continue
        if state and figures[task.name].state != state:
            continue
        found.append(describe(settings, manifest, task, figures[task.name]))
    return found


def get_task(settings: Settings, manifest: Manifest, name: str) -> TaskView:
    task = _task(manifest, name)
    status = reports.task_status(settings, manifest, [name])[0]
    return describe(settings, manifest, task, status)


def _task(manifest: Manifest, name: str) -> Task:
    task = manifest.get(name)
    if task is None:
        raise NotFound(f"unknown task {name!r}")
    return task


def check_name(name: str) -> str:
    """A task name from a URL: the manifest's rule, so `..` and `/` never reach a path."""
    if not NAME_PATTERN.match(name):
        raise UsageError(f"{name!r}: a task name is {NAME_RULE}")
    return name


# --- changing tasks ----------------------------------------------------------------------


@contextlib.contextmanager
def _audited(settings: Settings, actor: dict, action: str, name: object):
    """Audit a refusal of the change made inside (the success is audited by the caller,
    with what was done)."""
    try:
        yield
    except AgencyCronError as exc:
        audit(settings, actor, action, str(name), "refused", exc.problems)
        raise


def create_task(context: Context, body: dict, actor: dict) -> TaskView:
    """Add a task through the API (409 if the name is taken); returns it as shown."""
    settings, manifest, _ = context.load()
    with _audited(settings, actor, "create", body.get("name")):
        name = _body_name(body, None)
        if manifest.get(name) is not None:
            raise Conflict(f"task {name!r} already exists ({_origin(manifest, name)})")
        return _write_task(context, name, body, actor, "create")


def update_task(context: Context, name: str, body: dict, actor: dict) -> TaskView:
    """Replace an API task's definition (or, with API_EDITS_MANIFEST, a manifest task's)."""
    check_name(name)
    settings, manifest, _ = context.load()
    with _audited(settings, actor, "update", name):
        _body_name(body, name)
        current = _task(manifest, name)
        _writable(settings, manifest, name)
        previous = source_document(settings, manifest, current)
        body = {**unmasked(body, previous), "name": name}
        return _write_task(context, name, body, actor, "update")


def delete_task(context: Context, name: str, actor: dict) -> None:
    """Remove an API task (its crontab line and files go with it, as in install)."""
    check_name(name)
    settings, manifest, _ = context.load()
    with _audited(settings, actor, "delete", name):
        _task(manifest, name)
        if not is_api_task(settings, manifest, name):
            raise Conflict(
                f"task {name!r} is defined in the operator's manifest"
                f" ({_origin(manifest, name)}); remove it there"
            )
        _change(context, layout.api_tasks_dir(settings) / f"{name}.json", None, actor, name)
    settings, after, _ = context.load()
    overrides = read_overrides(settings)
    if after.get(name) is None and overrides.pop(name, None) is not None:
        write_overrides(settings, overrides)  # a task made again later starts enabled


def _body_name(body: dict, expected: str | None) -> str:
    """The task's name from a request body: refused like the manifest would refuse it."""
    name = body.get("name")
    if expected is not None and name is not None and name != expected:
        raise ConfigError(f"request body: name: {name!r} does not match the URL's {expected!r}")
    if expected is not None:
        return expected
    if not isinstance(name, str):
        raise ConfigError("request body: name: required (a string)")
    if not NAME_PATTERN.match(name):
        raise ConfigError(f"request body: name: must be {NAME_RULE} (got {name!r})")
    return name


def _writable(settings: Settings, manifest: Manifest, name: str) -> None:
    if not is_api_task(settings, manifest, name) and not api_tasks.api_may_replace(settings):
        raise Refused(
            f"task {name!r} comes from the operator's manifest ({_origin(manifest, name)})"
            " and is read-only over the API (API_EDITS_MANIFEST=true allows edits)"
        )


def _origin(manifest: Manifest, name: str) -> str:
    return str(manifest.origins.get(name, "the manifest"))


def _write_task(context: Context, name: str, body: dict, actor: dict, action: str) -> TaskView:
    settings, _, _ = context.load()
    _change(context, layout.api_tasks_dir(settings) / f"{name}.json", body, actor, name, action)
    settings, manifest, _ = context.load()
    return get_task(settings, manifest, name)


def _change(context, path: Path, body: dict | None, actor, name, action="delete") -> None:
    """Validate with the whole manifest, write (or delete) the file, apply; undo on failure."""
    settings, _, _ = context.load()
    with exclusive_lock(settings.state_dir / "locks" / "api.lock"):
        # Validation reads the manifest as it would be, so messages name the API file.
        settings, manifest, manifest_path = context.load(pending={path: body})
        before = read_bytes(path)
        _put(path, body)
        try:
            apply.install(settings, manifest, manifest_path)
        except BaseException:
            _put_bytes(path, before)
            raise
    audit(settings, actor, action, name, "done", None if body is None else masked(body))


def _put(path: Path, body: dict | None) -> None:
    text = None if body is None else json.dumps(body, indent=2, sort_keys=True) + "\n"
    _put_bytes(path, None if text is None else text.encode())


def _put_bytes(path: Path, content: bytes | None) -> None:
    if content is None:
        path.unlink(missing_ok=True)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, content, FILE_MODE)


# --- actions -----------------------------------------------------------------------------


def set_paused(context: Context, name: str, paused: bool, actor: dict) -> TaskView:
    """pause = `agency-cron disable`, resume = `enable` (kept in STATE_DIR across installs)."""
    check_name(name)
    settings, manifest, path = context.load()
    action = "pause" if paused else "resume"
    with _audited(settings, actor, action, name):
        _task(manifest, name)
        with exclusive_lock(settings.state_dir / "locks" / "api.lock"):
            apply.set_enabled(settings, manifest, path, name, not paused)
    audit(settings, actor, action, name, "done", None)
    return get_task(settings, manifest, name)


def run_now(context: Context, name: str, actor: dict) -> Started:
    """Start the task through the runner in the background (launch.run_now, as
    `agency-cron run --detach` does); returns its run id at once."""
    from agency_cron import launch

    check_name(name)
    settings, manifest, path = context.load()
    with _audited(settings, actor, "run", name):
        task = _task(manifest, name)
    started = launch.run_now(settings, task, path)
    audit(settings, actor, "run", name, "started", {"run_id": started.run_id, "pid": started.pid})
    return started


def reset_retries(context: Context, name: str, actor: dict) -> dict:
    """A run of `name` waiting between attempts gets its full retry budget back and tries
    again now (SIGUSR1 to its runner). Conflict when no run is waiting for a retry."""
    check_name(name)
    settings, manifest, _ = context.load()
    with _audited(settings, actor, "reset-retries", name):
        _task(manifest, name)
        pid = reports.running_pid(settings, name)
        waiting = _waiting_run(settings, name) if pid else None
        if waiting is None or pid is None:
            raise Conflict(f"task {name!r}: no run is waiting for a retry")
    os.kill(pid, signal.SIGUSR1)
    audit(settings, actor, "reset-retries", name, "done", {"run_id": waiting})
    return {"task": name, "run_id": waiting, "reset": True}


def _waiting_run(settings: Settings, name: str) -> str | None:
    rows = reports.task_history(settings, name, 1)
    if rows and rows[0].status == statuses.RETRY_SCHEDULED:
        return rows[0].run_id
    return None


# --- runs --------------------------------------------------------------------------------

EXCERPT_LINES = 200


def get_run(
    settings: Settings, manifest: Manifest, run_id: str, view: Histories | None = None
) -> RunDetail:
    """Every attempt of a run (in `view`, default this host's) and its lines from the
    task's log (already redacted there; a run of another host has its output tail)."""
    attempts = reports.run_attempts(settings, run_id, view)
    if not attempts:
        raise NotFound(f"no run {run_id!r} in the history")
    task = attempts[0].task
    known = manifest.get(task)
    log = settings.log_dir / (known.log_name if known else f"{task}.log")
    excerpt = log_excerpt(log, task, run_id)
    if not excerpt:
        excerpt = (attempts[-1].output_tail or "").splitlines()
    final = attempts[-1]
    return RunDetail(
        run_id=run_id,
        task=task,
        status=final.status,
        exit_code=final.exit_code,
        started_at=attempts[0].started_at,
        finished_at=final.finished_at,
        attempts=[RunRow(**{k: getattr(a, k) for k in names(RunRow)}) for a in attempts],
        log=str(log),
        log_excerpt=excerpt[-EXCERPT_LINES:],
    )


def log_excerpt(path: Path, task: str, run_id: str) -> list[str]:
    """The lines of the task log from the run's first start line to its last end line,
    looked for in the log's last megabyte (a run older than that has its history tail)."""
    from agency_cron.dashboard import tail_lines

    lines = tail_lines(path, 100_000)
    marker = f"run={run_id} "
    first = next((i for i, line in enumerate(lines) if marker in line), None)
    if first is None:
        return []
    last = max(i for i, line in enumerate(lines) if marker in line)
    if "agency-cron: end " not in lines[last] and "skipped" not in lines[last]:
        last = len(lines) - 1  # still running: everything so far
    return lines[first : last + 1]


# --- audit -------------------------------------------------------------------------------

# The audit log is capped with one rotation (audit.log.1): at most twice this on disk,
# even under a flood of refused requests (serve/refusals.py rate-limits those as well).
AUDIT_MAX_BYTES = 10 * 1024 * 1024
# Route threads and the event loop (refusals) write it; the lock keeps a rotation whole.
_AUDIT_LOCK = threading.Lock()


def audit(settings: Settings, actor: dict, action: str, task: str, outcome: str, detail) -> None:
    """One JSON line per change (or refused request): who (token role, client), when, what,
    and how it ended. Past AUDIT_MAX_BYTES the file becomes audit.log.1 (replacing it)."""
    entry = {
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        **actor,
        "action": action,
        "task": task,
        "outcome": outcome,
        "detail": detail,
    }
    path = layout.audit_log_path(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    line = (json.dumps(entry, sort_keys=True, default=str) + "\n").encode()
    with _AUDIT_LOCK:
        size = _size_of(path)
        if size and size + len(line) > AUDIT_MAX_BYTES:
            os.replace(path, path.with_name(path.name + ".1"))
        # O_APPEND keeps concurrent writers' lines whole; 0600: it names clients and tasks.
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, line)
        finally:
            os.close(fd)


def _size_of(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0
