"""Pure rendering: Task + Settings -> text. Nothing here touches the disk or the crontab.

Templates ship inside the package (agency_cron.templates, mapped from the repository's
templates/ folder), so a plain `pip install .` renders the same files as a checkout.
"""

from __future__ import annotations

import json
import os
import shlex
import sys
from functools import cache
from pathlib import Path

from agency_cron import layout
from agency_cron.config import Settings
from agency_cron.manifest import Task
from agency_cron.runner import SPEC_VERSION  # the runner refuses a spec of another
from agency_cron.secrets import is_secret_name, ping_url_secrets, secrets_of_urls, worth_masking

CRON_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@cache
def environment():
    """The Jinja environment: strict about undefined names, with a shell-quoting filter."""
    from importlib.resources import files

    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(files("agency_cron.templates"))),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,
    )
    env.filters["sh"] = lambda value: shlex.quote(str(value))
    return env


def render(template: str, **context) -> str:
    return environment().get_template(template).render(**context)


@cache
def html_environment():
    """Like environment() but HTML-escaping everything: log lines end up in these pages."""
    import jinja2

    env = jinja2.Environment(
        loader=environment().loader,
        undefined=jinja2.StrictUndefined,
        autoescape=True,
    )
    return env


def render_html(template: str, **context) -> str:
    return html_environment().get_template(template).render(**context)


def python_executable() -> str:
    """The interpreter the wrappers call: AGENCY_CRON_PYTHON, else the one running
    agency-cron now (its venv). The environment is read on every call, not cached, so a
    process that renders for several installations (the API, the tests) never reuses
    another's choice."""
    return os.environ.get("AGENCY_CRON_PYTHON") or _running_python()


@cache
def _running_python() -> str:
    # sys.prefix/bin/python3 rather than sys.executable: `python` and `python3` of one
    # venv must render the same wrapper, or switching between them rewrites every file.
    from agency_cron.fs import exists

    preferred = Path(sys.prefix) / "bin" / "python3"
    return str(preferred if exists(preferred) else sys.executable)


def task_path() -> str:
    """The PATH every run gets: the interpreter's bin (agency-cron itself), then cron's."""
    return f"{Path(python_executable()).parent}:{CRON_PATH}"


def runner_env(settings: Settings, manifest: Path | str) -> dict[str, str]:
    """What every run of a task starts with, however it is started (the wrapper cron runs,
    `run`, `run --detach`, the API's run now): the installation it belongs to, so that the
    task and the agency-cron commands inside it resolve the same config and manifest from
    any directory, and the same PATH."""
    found = {
        "AGENCY_ROOT": str(settings.agency_root),
        "LOG_DIR": str(settings.log_dir),
        "STATE_DIR": str(settings.state_dir),
    }
    if settings.config_path:
        found["AGENCY_CRON_CONFIG"] = str(settings.config_path)
    found["AGENCY_CRON_MANIFEST"] = str(Path(manifest).resolve())
    found["PATH"] = task_path()
    return found


def find_program(name: str) -> str | None:
    """`name` on the caller's PATH or cron's: cron's bare PATH=/usr/bin:/bin lacks the sbin
    folders where logrotate and cron live."""
    import shutil

    from agency_cron.fs import note

    path = os.environ.get("PATH", "")
    extra = [d for d in CRON_PATH.split(":") if d not in path.split(":")]
    search = ":".join(p for p in [path, *extra] if p)
    for folder in search.split(":"):  # each candidate is an input of the install fingerprint
        note(os.path.join(folder or ".", name))
    return shutil.which(name, path=search)


def wrapper_text(task: Task, settings: Settings, manifest: Path | str) -> str:
    """The shell wrapper cron runs for `task`; secrets stay out of it (it is 0755)."""
    python = python_executable()
    public = sorted((k, v) for k, v in task.env.items() if not is_secret_name(k))
    secrets = sorted(k for k in task.env if is_secret_name(k))
    return render(
        "wrapper.sh.j2",
        task=task,
        manifest=str(manifest),
        wrapper=str(layout.wrapper_path(settings, task.name)),
        cron_log=str(layout.cron_log_path(settings, task.name)),
        runner_env=runner_env(settings, manifest),
        public_env=public,
        secret_names=secrets,
        working_dir=working_dir(task, settings),
        python=python,
        bootstrap=runner_bootstrap(),
        spec=str(layout.spec_path(settings, task.name)),
    )


def script_text(source: bytes, settings: Settings, manifest: Path | str) -> bytes:
    """A bundled seed script with its installation written in: @AGENCY_CRON_PYTHON@ and the
    @NAME@ of each runner_env() variable become shell-quoted values."""
    values = {**runner_env(settings, manifest), "AGENCY_CRON_PYTHON": python_executable()}
    for key in ("AGENCY_CRON_PYTHON", "AGENCY_ROOT", "AGENCY_CRON_CONFIG", "AGENCY_CRON_MANIFEST"):
        quoted = shlex.quote(values.get(key, ""))
        source = source.replace(f"@{key}@".encode(), quoted.encode("utf-8", "surrogateescape"))
    return source


@cache
def runner_bootstrap() -> str:
    """The `python -S -P -c` program the wrapper runs: the import paths are spelled out, so
    the interpreter skips `site` and its .pth files (a few ms on every run) and the working
    directory never shadows a module. These are the paths of the install being run now."""
    import sysconfig

    import agency_cron

    roots = [str(Path(agency_cron.__file__).resolve().parent.parent)]
    for key in ("purelib", "platlib"):
        path = sysconfig.get_paths()[key]
        if path not in roots:
            roots.append(path)
    return f"import sys; sys.path[:0] = {json.dumps(roots)}; from agency_cron.runner import main; sys.exit(main())"


def working_dir(task: Task, settings: Settings) -> str:
    return task.working_dir or str(settings.agency_root)


def spec(task: Task, settings: Settings, enabled: bool) -> dict:
    """Everything the runner needs, resolved, so the run path reads JSON and nothing else."""
    found = {
        "version": SPEC_VERSION,
        "name": task.name,
        "description": task.description,
        "schedule": list(task.schedule),
        "enabled": enabled,
        "command": task.command if task.command is not None else task.script,
        "timeout": task.timeout,
        "env": dict(sorted(task.env.items())),
        "working_dir": working_dir(task, settings),
        "log": str(settings.log_dir / task.log_name),
        "log_dir": str(settings.log_dir),
        "state_dir": str(settings.state_dir),
        "retries": task.retries,
        "retry_delay": task.retry_delay,
        "retry_backoff": task.retry_backoff,
        "retry_max_delay": task.retry_max_delay,
        "overlap": task.overlap,
        "alert": task.alert,
        "alert_urls": [*settings.alert_urls, *task.alert_urls],
        "alert_on_failure": settings.alert_on_failure,
        "alert_timeout": settings.alert_timeout,
        "secrets": redaction_list(task, settings),
        "timezone": task.timezone,
        "jitter": task.jitter,
    }
    if settings.get("HOST_NAME").strip():  # else the runner's node name, read at each run
        found["host"] = settings.host_name
    if task.scope == "fleet":
        found["scope"] = task.scope
        found["when_unreachable"] = task.when_unreachable
    if settings.history_db != settings.state_dir / "history.db":  # HISTORY_URL=sqlite:///PATH
        found["history_db"] = str(settings.history_db)
    if settings.history_url:  # the shared history: the runner sends its records there
        found["history_url"] = settings.history_url
        found["history_timeout"] = settings.history_timeout
    return _with_pings(task, settings, found)


def ping_url(task: Task, settings: Settings) -> str | None:
    """The URL the task's runs ping: its ping_url, else PING_URL, {name} filled in; None
    when neither is set or the task says `ping_url: none`."""
    from agency_cron import ping

    template = task.ping_url if task.ping_url is not None else settings.ping_url
    return ping.resolve(template, task.name)


def _with_pings(task: Task, settings: Settings, found: dict) -> dict:
    """The ping keys, only for a task that pings: the other specs stay as they were."""
    url = ping_url(task, settings)
    if url is not None:
        found["ping_url"] = url
        found["ping_timeout"] = settings.ping_timeout
    return found


def spec_run_now(task: Task, settings: Settings, enabled: bool, manifest: Path | str) -> dict:
    """spec() for a run started by hand (`run`, `run --detach`, the API's run now): its
    command gets what the wrapper exports for a scheduled run (runner_env: PATH, config,
    manifest), the task's own env over it, whatever the caller's environment is."""
    found = spec(task, settings, enabled)
    found["env"] = {**runner_env(settings, manifest), **found["env"]}
    return found


def redaction_list(task: Task, settings: Settings) -> list[str]:
    """Every value the runner must mask: secret-named variables and alert URL credentials.

    Values shorter than 4 characters are left out: masking every "1" or "no" in the output
    would destroy the log and protect nothing.
    """
    found = [*task.secret_values, *_config_secrets(settings)]
    if task.alert_urls:
        found += secrets_of_urls(list(task.alert_urls))
    found += ping_secrets(task, settings)
    return worth_masking(found)


def ping_secrets(task: Task, settings: Settings) -> list[str]:
    """The secrets of the task's ping URL (its UUID, ping key, credentials, the whole URL)."""
    url = ping_url(task, settings)
    return ping_url_secrets(url, task.name) if url else []


def _config_secrets(settings: Settings) -> tuple[str, ...]:
    """The config's share of every task's redaction list, worked out once per Settings."""
    cached = settings.__dict__.get("_config_secrets")
    if cached is None:
        found = {*settings_secret_values(settings), *secrets_of_urls(list(settings.alert_urls))}
        cached = tuple(found)
        object.__setattr__(settings, "_config_secrets", cached)  # a cache, not state
    return cached


def settings_secret_values(settings: Settings) -> list[str]:
    """Values of config variables whose names mark them secret (for redaction)."""
    found = [v for k, v in settings.values.items() if is_secret_name(k)]
    if settings.history_url:  # its password (and the URL, which holds it)
        from agency_cron.remote import secrets_of

        found += secrets_of(settings.history_url)
    return found


def spec_marshal(task: Task, settings: Settings, enabled: bool) -> bytes:
    """spec() for the runner's fast path (see layout.spec_cache_path).

    Format version 2: later ones record whether each string is interned and shared (by
    reference count), which depends on what the process did before, so the same spec
    could give other bytes and a second install would rewrite the file."""
    import marshal

    return marshal.dumps(spec(task, settings, enabled), 2)


def spec_text(task: Task, settings: Settings, enabled: bool) -> str:
    # One line: json's C encoder only runs without indent, and install renders every spec.
    return json.dumps(spec(task, settings, enabled), sort_keys=True) + "\n"


def logrotate_text(settings: Settings, owner: str, group: str) -> str:
    return render(
        "logrotate.j2",
        log_dir=str(settings.log_dir),
        retention=settings.log_retention_days,
        owner=owner,
        group=group,
    )
