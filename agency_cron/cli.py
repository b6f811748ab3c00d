"""The Typer CLI: parse, call one library function, print the result, exit.

Every expected failure is an AgencyCronError: printed on stderr, one line per problem,
with its exit code (2 for bad input), never a traceback. Human output goes through rich
(which honours NO_COLOR); `--json` prints a stable object for scripts.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from agency_cron import __version__, apply, errors, reports, results, schedule
from agency_cron.config import Settings, load_settings
from agency_cron.errors import AgencyCronError
from agency_cron.manifest import Manifest, find_manifest, load_manifest
from agency_cron.plan import UNCHANGED, Plan

app = typer.Typer(
    name="agency-cron",
    help="Manifest-driven cron for ops teams: install, run, watch and alert on scheduled tasks.\n\n"
    "Example: agency-cron --config config.env install --dry-run",
    no_args_is_help=True,
    add_completion=True,  # --install-completion / --show-completion (bash, zsh, fish)
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
# Piped output keeps whole rows (80 columns would truncate paths and times).
out = Console(
    highlight=False, width=None if sys.stdout.isatty() or os.environ.get("COLUMNS") else 160
)
err = Console(stderr=True, highlight=False, soft_wrap=True)

ConfigOpt = Annotated[
    Path | None, typer.Option("--config", help="config.env to read (default: ./config.env).")
]
ManifestOpt = Annotated[
    Path | None,
    typer.Option("--manifest", help="Manifest file or folder (default: ./tasks.yaml)."),
]
CrontabOpt = Annotated[
    str | None,
    typer.Option(
        "--crontab", help="Target: user, user:NAME, file:/PATH, system:/PATH or systemd:/DIR."
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]
WideOpt = Annotated[
    bool, typer.Option("--wide", help="Every column, times in full (may exceed the terminal).")
]
_HOST_HELP = (
    "Whose runs: one host's (its HOST_NAME) or all (the fleet's, when HISTORY_URL is shared)"
)
ThisHostOpt = Annotated[
    str | None,
    typer.Option("--host", metavar="NAME|all", help=f"{_HOST_HELP}; default: this host."),
]
FleetOpt = Annotated[
    str | None, typer.Option("--host", metavar="NAME|all", help=f"{_HOST_HELP}; default: all.")
]


class Options:
    """--config/--manifest/--crontab, before the command or after it (the command's win)."""

    config: Path | None = None
    manifest: Path | None = None
    crontab: str | None = None
    argv: list[str] = []  # the command line, for the no-op install fingerprint (fastpath.py)
    settings: Settings | None = None  # to name the setting behind a path in an OS error


# The options every command takes, declared here once (README: "Every command takes
# --config and --manifest, and where it touches a scheduler, --crontab").
_SHARED = {"config": ConfigOpt, "manifest": ManifestOpt, "crontab": CrontabOpt}


def command(name: str | None = None, *, crontab: bool = False, group: typer.Typer = app):
    """`group.command(name)` with the shared options added to the command's signature:
    --config and --manifest always, --crontab where the command touches a scheduler.
    Their values land in Options (a value after the command name beats one before it);
    the command itself reads them through _load/_settings."""
    shared = ("config", "manifest", "crontab") if crontab else ("config", "manifest")

    def decorate(func):
        signature = inspect.signature(func, eval_str=True)
        added = [
            inspect.Parameter(
                key, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=_SHARED[key]
            )
            for key in shared
        ]

        @functools.wraps(func)
        def wrapper(*args, **kwargs):
            for key in shared:
                value = kwargs.pop(key, None)
                if value is not None:
                    setattr(Options, key, value)
            return func(*args, **kwargs)

        wrapper.__signature__ = signature.replace(  # type: ignore[attr-defined]
            parameters=[*signature.parameters.values(), *added]
        )
        return group.command(name)(wrapper)

    return decorate


def _settings() -> Settings:
    Options.settings = load_settings(Options.config, crontab=Options.crontab)
    return Options.settings


def _load(strict: bool = False, intervals: bool | None = None) -> tuple[Settings, Manifest, Path]:
    """Settings and manifest; `strict` for commands that write, `intervals` for systemd
    exports (see load_manifest)."""
    settings = _settings()
    path = find_manifest(Options.manifest, settings)
    loaded = load_manifest(path, settings, strict, intervals=intervals)
    if not strict and intervals is None:
        from agency_cron import quick

        quick.store(Options.argv, path, loaded)  # for the next read command (quick.py)
    return settings, loaded, path


def _print_json(data) -> None:
    """Every --json output: results.to_json (typed results, the `version` envelope)."""
    sys.stdout.write(results.to_json(data))


def _columns(cls, keys, wrap=(), right=(), headers=None) -> list:
    """Table columns showing fields of the result class `cls` (results.py), headed by the
    field's name ("last_run" -> "last run") unless `headers` names it otherwise. A key that
    is no field of `cls` fails here, so a table cannot drift from its result's shape."""
    from agency_cron.tables import Column

    unknown = [key for key in keys if key not in results.names(cls)]
    if unknown:
        raise AssertionError(f"{cls.__name__} has no field {unknown}")
    named = headers or {}
    return [
        Column(
            named.get(key, key.replace("_", " ")),
            wrap=key in wrap,
            justify="right" if key in right else "left",
        )
        for key in keys
    ]


def _cells(rows, keys, shown) -> list[list]:
    """Each row's fields `keys`, through `shown[key](row)` where given, else as they are."""
    return [
        [shown[key](row) if key in shown else getattr(row, key) for key in keys] for row in rows
    ]


@contextlib.contextmanager
def _viewing(settings: Settings, loaded: Manifest, choice: str | None, default: str):
    """The histories of `--host choice` (reports.open_view), closed afterwards; its note
    (the shared history away, this host's local one shown) as one warning on stderr."""
    from agency_cron.readers import viewing

    with viewing(settings, loaded, choice, default) as view:
        _warn_note(view.note)
        yield view


def _warn_note(note: str | None) -> None:
    if note:
        err.print(f"agency-cron: warning: {_one_line(note)}", markup=False)


def _hosts_cell(hosts: list[str], wide: bool) -> str:
    """The hosts that ran a task: the name of one, else how many (all of them with --wide)."""
    if len(hosts) == 1 or (wide and hosts):
        return ", ".join(hosts)
    return f"{len(hosts)} hosts" if hosts else "-"


def _several(hosts) -> bool:
    """Whether more than one host reported: tables show a host column then."""
    return len({host for host in hosts if host}) > 1


def _version(value: bool) -> None:
    if value:
        out.print(f"agency-cron {__version__}")
        raise typer.Exit(0)


@app.callback()
def main_options(
    config: ConfigOpt = None,
    manifest: ManifestOpt = None,
    crontab: CrontabOpt = None,
    version: Annotated[
        bool,
        typer.Option(
            "--version", "-V", help="Print the version.", is_eager=True, callback=_version
        ),
    ] = False,
) -> None:
    """Options given here apply to every command."""
    Options.config, Options.manifest, Options.crontab = config, manifest, crontab


@command()
def validate() -> None:
    """Check config.env and the manifest; write nothing. Exit 0 valid, 2 invalid.

    Example: agency-cron validate --manifest tasks.yaml
    """
    from agency_cron.backends.crontab import parse_target
    from agency_cron.errors import ConfigError
    from agency_cron.layout import path_problems

    settings, loaded, path = _load(strict=True)
    parse_target(settings.crontab)
    problems = path_problems(settings)
    if problems:
        raise ConfigError(*problems)
    out.print(f"{path}: {len(loaded.tasks)} task(s), valid")


@command(crontab=True)
def install(
    names: Annotated[list[str] | None, typer.Argument(help="Only these tasks.")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show plan and diff only.")] = False,
    check: Annotated[
        bool,
        typer.Option(
            "--check", help="Plan and diff as --dry-run; exit 1 if anything would change."
        ),
    ] = False,
    json_: JsonOpt = False,
) -> None:
    """Render wrappers and logrotate, create log dirs, sync the managed crontab lines.

    --dry-run and --check write nothing (diffs mask secrets); --check exits 0 when nothing
    would change, 1 when something would (drift), 2 on bad input.

    Example: agency-cron install --dry-run health-check
    """
    settings, loaded, path = _load(strict=True)
    plan = apply.install(settings, loaded, path, names or None, dry_run or check)
    _show_plan(plan, dry_run or check, json_)
    warnings = _warn_undelivered_failures(settings, loaded, plan)
    if check:
        if plan.changes and not json_:
            out.print("check: install would change something (exit 1)")
        raise typer.Exit(1 if plan.changes else 0)
    if not dry_run and not names:
        from agency_cron import fastpath

        fastpath.record_install(Options.argv, settings, loaded, plan, warnings)


@command(crontab=True)
def uninstall(
    purge: Annotated[bool, typer.Option("--purge", help="Also delete rendered files.")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show plan and diff only.")] = False,
    json_: JsonOpt = False,
) -> None:
    """Remove every managed crontab line; other lines stay byte for byte.

    Example: agency-cron uninstall --purge
    """
    plan = apply.uninstall(_settings(), purge, dry_run)
    _show_plan(plan, dry_run, json_)


FULL_TABLE_MAX = 50  # past this many tasks, unchanged ones are counted, not listed


def _warn_undelivered_failures(settings, loaded, plan: Plan) -> list[str]:
    """One line on stderr when a failed run would reach neither an alert target nor cron
    mail; the lines, for the no-op install's replay (fastpath.py)."""
    from agency_cron.doctor import check_failure_delivery

    lines = []
    for finding in check_failure_delivery(settings, loaded, plan):
        if not finding.ok:
            lines.append(f"agency-cron: warning: {finding.detail}; {finding.fix}")
            err.print(lines[-1], markup=False)
    return lines


def _show_plan(plan: Plan, dry_run: bool, as_json: bool) -> None:
    """The plan as a table: every row for small plans; past FULL_TABLE_MAX tasks, the first
    changes and a count per action (rendering a thousand rich rows costs seconds; --json
    always has every row). A dry run adds the diff, secrets masked (Plan.diff)."""
    if as_json:
        extra = {"diff": plan.diff()} if dry_run else {}
        _print_json({**plan.as_json(), "dry_run": dry_run, **extra})
        return
    from agency_cron.tables import print_table
    from agency_cron.terminal import escape_controls

    tasks = [row for row in plan.rows if row.kind == "task"]
    big = len(tasks) > FULL_TABLE_MAX
    rows = [r for r in plan.rows if r.action != UNCHANGED or (r.kind == "task" and not big)]
    shown, hidden = (rows[:FULL_TABLE_MAX], rows[FULL_TABLE_MAX:]) if big else (rows, [])
    keys = ("item", "kind", "action", "detail")
    cells = _cells(shown, keys, {})
    counts: dict[str, int] = {}
    for row in hidden + ([r for r in tasks if r.action == UNCHANGED] if big else []):
        counts[row.action] = counts.get(row.action, 0) + 1
    cells += [[f"{count} more", "", action, ""] for action, count in counts.items()]
    columns = _columns(results.PlanRow, keys, wrap=("detail",))
    title = f"plan for {plan.target.label}" + (" (dry run)" if dry_run else "")
    print_table(out, columns, cells, title=title)
    if dry_run and plan.changes:
        diff = escape_controls(plan.diff())
        out.print(diff, markup=False, emoji=False, end="", soft_wrap=True)
    if not plan.changes:
        out.print("no changes")
    elif dry_run:
        out.print("dry run: nothing written")


@command("list")
def list_(
    json_: JsonOpt = False,
    wide: WideOpt = False,
) -> None:
    """List tasks: name, schedule, enabled, next run, description, tags.

    Example: agency-cron list --json
    """
    from agency_cron.tables import print_table

    settings, loaded, _ = _load()
    rows = reports.task_list(settings, loaded)
    if json_:
        _print_json(rows)
        return
    keys = ("name", "schedule", "enabled", "next_run", "description", "tags")
    columns = _columns(results.TaskListRow, keys, wrap=("enabled", "description", "tags"))
    shown = {
        "schedule": lambda row: "\n".join(row.schedule),
        "enabled": _enabled_cell,
        "next_run": lambda row: _when(row.next_run, wide),
        "tags": lambda row: ", ".join(row.tags),
    }
    print_table(out, columns, _cells(rows, keys, shown), caption=_zone_caption(wide), wide=wide)


def _time_of(key: str, wide: bool):
    """The cell of a time field `key`, as _when shows it."""
    return lambda row: _when(getattr(row, key), wide)


def _when(value: str | None, wide: bool) -> str:
    """A time as tables show it: in full with --wide, else short (tables.short_time)."""
    from agency_cron.tables import short_time

    return (value or "-") if wide else short_time(value)


def _zone_caption(wide: bool) -> str | None:
    from agency_cron.tables import zone_note

    return None if wide else zone_note()


def _enabled_cell(row: results.TaskListRow) -> str:
    from agency_cron.overrides import describe

    return describe(row.override) or ("yes" if row.enabled else "no")


def _state_cell(row: results.TaskStatus) -> str:
    if row.override == "disabled" and row.state == "disabled":
        return "disabled locally"
    return f"{row.state} (enabled locally)" if row.override == "enabled" else row.state


def _toggle(name: str, enabled: bool) -> None:
    settings, loaded, path = _load(strict=True)
    apply.set_enabled(settings, loaded, path, name, enabled)
    out.print(f"{name}: {'enabled' if enabled else 'disabled'}")


@command(crontab=True)
def disable(
    name: str,
) -> None:
    """Comment the task's line out; the choice survives later installs.

    Example: agency-cron disable backup-verify
    """
    _toggle(name, False)


@command(crontab=True)
def enable(
    name: str,
) -> None:
    """Comment the task's line back in (reverses disable).

    Example: agency-cron enable backup-verify
    """
    _toggle(name, True)


@command()
def run(
    name: str,
    alert: Annotated[bool, typer.Option("--alert", help="Send the failure alert anyway.")] = False,
    detach: Annotated[
        bool, typer.Option("--detach", help="Start it in the background and return at once.")
    ] = False,
) -> None:
    """Run a task now exactly as cron would; exits with the task's exit code.

    Example: agency-cron run health-check --alert
    """
    from agency_cron import launch, runner
    from agency_cron.plan import select

    settings, loaded, path = _load()
    task = select(loaded, [name])[0]
    if detach:
        started = launch.run_now(settings, task, path, alert)
        out.print(
            f"{name}: started in the background (run {started.run_id}, runner pid"
            f" {started.pid}); see `agency-cron status {name}`"
        )
        raise typer.Exit(0)
    spec = launch.spec_now(settings, task, path)
    raise typer.Exit(runner.scheduled_run(spec, force_alert=alert))


@command()
def status(
    name: Annotated[str | None, typer.Argument(help="One task (default: all).")] = None,
    host: ThisHostOpt = None,
    json_: JsonOpt = False,
    wide: WideOpt = False,
) -> None:
    """State, runs, successes, failures, last run/success/failure/error, next run.

    --host: this host's runs by default (and every host's runs of `scope: fleet` tasks);
    `--host all` adds up the fleet's per task, with the hosts that ran each.

    Example: agency-cron status health-check --json

    Example: agency-cron status --host all
    """
    from agency_cron.plan import select
    from agency_cron.readers import THIS
    from agency_cron.tables import print_table

    settings, loaded, _ = _load()
    if name:
        select(loaded, [name])
    with _viewing(settings, loaded, host, THIS) as view:
        rows = reports.task_status(settings, loaded, [name] if name else None, view)
    if json_:
        _print_json(rows[0] if name else rows)
        return
    counts = ("runs", "successes", "failures") if wide else ("runs", "failures")
    times = ("last_run", "last_success", "last_failure") if wide else ("last_run",)
    # the ping column only where some task pings, the hosts only where several ran tasks
    pings = ("ping",) if any(row.ping for row in rows) else ()
    hosts = ("hosts",) if _several(h for row in rows for h in row.hosts) else ()
    keys = ("name", *hosts, "state", *counts, *times, "last_error", "next_run", *pings)
    columns = _columns(
        results.TaskStatus, keys, wrap=("state", "last_error", "ping", "hosts"), right=counts
    )
    shown = {
        "state": _state_cell,
        "ping": lambda row: (row.last_ping or "none yet") if row.ping else "-",
        "hosts": lambda row: _hosts_cell(row.hosts, wide),
        **{key: _time_of(key, wide) for key in (*times, "next_run")},
    }
    print_table(out, columns, _cells(rows, keys, shown), caption=_zone_caption(wide), wide=wide)
    out.print(_metrics_line(settings), markup=False)


def _metrics_line(settings: Settings) -> str:
    """Whether the metrics are exported, for status (see metrics.export_state)."""
    from agency_cron.metrics import export_state

    state = export_state(settings)
    where, age = state["textfile"], state["age_s"]
    if state["state"] == "off":
        return "metrics: no textfile export (METRICS_TEXTFILE unset); serve has /metrics"
    if state["state"] == "missing":
        return f"metrics: METRICS_TEXTFILE {where} not written yet"
    if state["state"] == "stale":
        return f"metrics: {where} is STALE, last written {state['updated_at']} ({age:.0f}s ago)"
    return f"metrics: exported to {where}, written {age:.0f}s ago"


def _history_sync(json_: bool) -> None:
    """`history sync`: every local database's unsent rows to the shared history; exit 1
    when it does not answer (the rows stay in the local spool)."""
    from agency_cron import remote
    from agency_cron.readers import send_spool

    settings = _settings()
    url = settings.history_url
    if url is None:
        result: dict[str, object] = {"history_url": None, "sent": 0, "pending": 0}
        result.update(databases=0, error=None)
        if json_:
            _print_json(result)
        else:
            out.print("nothing to send: the history is local (HISTORY_URL is not postgresql://)")
        return
    found = send_spool(settings, url)
    result = {"history_url": remote.masked(url), **vars(found)}
    if json_:
        _print_json(result)
    elif found.error is None:
        out.print(
            f"sent {found.sent} record(s) to {remote.masked(url)}; {found.pending} waiting",
            markup=False,
        )
    if found.error is not None:
        raise errors.CheckFailed(
            f"{found.error}; {found.pending} record(s) wait in the local history, sent by the"
            " next run or `agency-cron history sync`"
        )


@command()
def history(
    name: str,
    limit: Annotated[int, typer.Option("--limit", min=1, help="Rows to show.")] = 20,
    host: ThisHostOpt = None,
    json_: JsonOpt = False,
    wide: WideOpt = False,
) -> None:
    """Runs of a task, newest first (every attempt is a row, with the host that ran it).
    `history sync` sends the records the shared history (HISTORY_URL=postgresql://...)
    does not have yet.

    --host: this host's runs by default (every host's for a `scope: fleet` task); `--host
    all` shows the fleet's, with a host column.

    Example: agency-cron history backup-verify --limit 5

    Example: agency-cron history backup-verify --host all
    """
    from agency_cron.plan import select
    from agency_cron.readers import THIS
    from agency_cron.tables import print_table

    if name == "sync":
        _history_sync(json_)
        return
    settings, loaded, _ = _load()
    select(loaded, [name])
    with _viewing(settings, loaded, host, THIS) as view:
        rows = reports.task_history(settings, name, limit, view=view)
    if json_:
        _print_json(rows)
        return
    times = ("started_at", "finished_at") if wide else ("started_at",)
    tail = ("note", "alert", "ping") if wide else ("note",)
    hosts = ("host",) if _several(row.host for row in rows) else ()
    keys = ("run_id", *hosts, *times, "duration_s", "exit_code", "status", "attempt", *tail)
    headers = {"started_at": "started", "finished_at": "finished", "duration_s": "duration"}
    columns = _columns(
        results.RunRow,
        keys,
        wrap=tail,
        right=("duration_s", "exit_code", "attempt"),
        headers={**headers, "exit_code": "exit"},
    )
    shown = {
        **{key: _time_of(key, wide) for key in times},
        "duration_s": lambda row: _seconds(row.duration_s),
        "attempt": lambda row: f"{row.attempt}/{row.attempts}" if row.attempts else row.attempt,
    }
    cells = _cells(rows, keys, shown)
    print_table(
        out, columns, cells, title=f"history of {name}", caption=_zone_caption(wide), wide=wide
    )


def _seconds(value) -> str:
    return "-" if value is None else f"{value:.2f}s"


@command()
def kill(
    name: str,
    run: Annotated[
        str | None, typer.Option("--run", help="Only this run (its run id, as in history).")
    ] = None,
) -> None:
    """End a task's runs in progress, each with its whole process tree (recorded as
    killed); waits until the trees are gone. Exit 1 if none runs.

    Example: agency-cron kill backup-verify --run 3f2a9c01b7de
    """
    from agency_cron.plan import select

    settings, loaded, _ = _load()
    select(loaded, [name])
    for ended in reports.kill_task(settings, name, run):
        who = f"runner {ended.pid}" if ended.pid else "left by a dead runner"
        state = "stopped" if ended.stopped else "still ending"
        out.print(f"{name}: run {ended.run_id} ({who}): {state}")


@command("next")
def next_(
    name: str,
    count: Annotated[int, typer.Option("-n", "--count", min=1, help="How many.")] = 5,
    json_: JsonOpt = False,
) -> None:
    """The next fire times of a task, in the task's zone (its timezone:, else the host's).

    Example: agency-cron next health-check -n 3
    """
    from agency_cron.plan import select

    settings, loaded, _ = _load()
    task = select(loaded, [name])[0]
    times = reports.upcoming(task, count, settings)
    if json_:
        _print_json({"name": name, "schedule": list(task.schedule), "next_runs": times})
        return
    for moment in times or ["(never: @reboot only, or a one-time task that has run)"]:
        out.print(moment)


@command()
def explain(expr: str, json_: JsonOpt = False) -> None:
    """A cron expression in plain English, with its next fire times. Exit 2 if invalid.

    Example: agency-cron explain '*/15 9-17 * * mon-fri'
    """
    cron = schedule.check_expression(expr)
    text = schedule.explain(expr)
    times = [t.isoformat() for t in schedule.next_runs((cron,), 3)]
    if json_:
        _print_json({"expression": expr, "cron": cron, "description": text, "next_runs": times})
        return
    out.print(text)
    for moment in times:
        out.print(f"  next: {moment}")


@command("log-summary")
def log_summary(
    since: Annotated[str, typer.Option("--since", help="Window: 90m, 24h, 7d.")] = "24h",
    task: Annotated[list[str] | None, typer.Option("--task", help="Only this task.")] = None,
    host: FleetOpt = None,
    json_: JsonOpt = False,
    html: Annotated[Path | None, typer.Option("--html", help="Also write an HTML page.")] = None,
    wide: WideOpt = False,
) -> None:
    """Per task: last run, status, duration, runs and failures in the window, last error,
    next run, overdue. Reads the history, never the log files.

    --host: the fleet by default (every host's runs added up per task, with the hosts that
    ran it; overdue where a host stopped succeeding, or for a `scope: fleet` task where
    none did); exit 1 when the shared history does not answer. `--host NAME`: one host's.

    Example: agency-cron log-summary --since 7d --task backup-verify

    Example: agency-cron log-summary --host web-1 --json
    """
    from agency_cron.plan import select
    from agency_cron.readers import ALL

    settings, loaded, _ = _load()
    if task:
        select(loaded, task)
    window = reports.parse_since(since)
    with _viewing(settings, loaded, host, ALL) as view:
        summary = reports.log_summary(settings, loaded, window, task, view)
    if html:
        _write_summary_html(html, summary)
    if json_:
        _print_json(summary)
        return
    _print_summary(summary, wide)


SUMMARY_HEADERS = {
    "name": "task",
    "last_status": "status",
    "last_duration_s": "duration",
    "last_exit_code": "exit",
}


def _print_summary(summary: results.Summary, wide: bool) -> None:
    from agency_cron import statuses
    from agency_cron.tables import print_table
    from agency_cron.terminal import escape_controls

    wide_only = ("last_exit_code", "skipped") if wide else ()
    hosts = ("hosts",) if _several(h for row in summary.tasks for h in row.hosts) else ()
    keys = ("name", *hosts, "last_run", "last_status", "last_duration_s", *wide_only)
    keys += ("runs", "failures", "next_run", "overdue")
    right = ("last_duration_s", "runs", "failures", "last_exit_code", "skipped")
    columns = _columns(
        results.SummaryRow, keys, wrap=("hosts",), right=right, headers=SUMMARY_HEADERS
    )
    shown = {
        "hosts": lambda row: _hosts_cell(row.hosts, wide),
        "last_run": lambda row: _when(row.last_run, wide) if row.last_run else "never",
        "last_status": lambda row: row.last_status or "-",
        "last_duration_s": lambda row: _seconds(row.last_duration_s),
        "runs": lambda row: str(row.runs),
        "failures": lambda row: str(row.failures),
        "next_run": lambda row: _when(row.next_run, wide),
        "overdue": lambda row: "OVERDUE" if row.overdue else "no",
    }
    cells = _cells(summary.tasks, keys, shown)
    title = f"since {_when(summary.since, wide)}"
    print_table(out, columns, cells, title=title, caption=_zone_caption(wide), wide=wide)
    for row in summary.tasks:
        if row.last_error and row.last_status != statuses.SUCCESS:
            out.print(f"[bold]{row.name}[/bold] last error:")
            for line in row.last_error:
                out.print(f"  {escape_controls(line)}", markup=False)


def _write_summary_html(path: Path, summary: results.Summary) -> None:
    from agency_cron.fs import write_atomic
    from agency_cron.render import render_html
    from agency_cron.terminal import escape_all

    page = render_html("log_summary.html.j2", summary=escape_all(results.enveloped(summary)))
    write_atomic(path, page.encode(), 0o644)


@command()
def health(
    alert: Annotated[bool, typer.Option("--alert", help="Alert when tasks are overdue.")] = False,
    host: FleetOpt = None,
    json_: JsonOpt = False,
) -> None:
    """Overdue tasks: no success within their expected interval. Exit 0 none, 1 some.

    --host: the fleet by default: a task is overdue where a host that ran it stopped
    succeeding, a `scope: fleet` task where no host succeeded in time; exit 1 when the
    shared history does not answer. `--host NAME`: one host's.

    Example: agency-cron health --alert

    Example: agency-cron health --host web-1 --json
    """
    from agency_cron.readers import ALL

    settings, loaded, _ = _load()
    with _viewing(settings, loaded, host, ALL) as view:
        overdue = reports.overdue_tasks(settings, loaded, view)
        scope = reports.scope_of(view)
    outcome = reports.alert_overdue(settings, overdue) if alert and overdue else None
    if json_:
        _print_json({"healthy": not overdue, "overdue": overdue, "alert": outcome, "host": scope})
    elif overdue:
        from agency_cron.terminal import escape_controls

        for item in overdue:
            out.print(escape_controls(f"OVERDUE {item.name}: {item.reason}"), markup=False)
        if outcome:
            out.print(escape_controls(f"alert: {outcome}"), markup=False)
    else:
        out.print(f"healthy: {len(loaded.tasks)} task(s), none overdue")
    raise typer.Exit(1 if overdue else 0)


export_app = typer.Typer(
    help="Write the tasks for another scheduler: systemd timers or Kubernetes CronJobs.\n\n"
    "Example: agency-cron export systemd /etc/systemd/system",
    no_args_is_help=True,
)
app.add_typer(export_app, name="export")


@command("systemd", group=export_app)
def export_systemd(
    directory: Annotated[Path, typer.Argument(help="Folder for the .service/.timer files.")],
) -> None:
    """A .service and a .timer per task (disabled tasks get no timer); writes only changes.

    Example: agency-cron export systemd /etc/systemd/system
    """
    from agency_cron.backends import systemd
    from agency_cron.overrides import read_overrides

    settings, loaded, _ = _load(strict=True, intervals=True)
    units = systemd.export(settings, loaded.tasks, directory, read_overrides(settings))
    out.print(f"{len(units)} unit file(s) in {directory}, {len(units.written)} written")


@command("kubernetes", group=export_app)
def export_kubernetes(
    destination: Annotated[str, typer.Argument(help="File to write, or - for stdout.")],
    image: Annotated[
        str, typer.Option("--image", help="Image with agency-cron and the tasks' tools.")
    ] = "agency-cron:latest",
    namespace: Annotated[str, typer.Option("--namespace", help="Namespace.")] = "default",
    working_dir: Annotated[
        str,
        typer.Option(
            "--working-dir",
            help="Absolute folder, in the image, for tasks without their own working_dir "
            "(the image may not have the host's AGENCY_ROOT).",
        ),
    ] = "/",
) -> None:
    """One batch/v1 CronJob per task (plus a ConfigMap of task specs); secrets as secretKeyRef.

    Example: agency-cron export kubernetes --image registry.example/ops:1.4 --working-dir /srv/agency cronjobs.yaml
    """
    from agency_cron.backends import kubernetes
    from agency_cron.overrides import effective_enabled, read_overrides

    settings, loaded, _ = _load(strict=True)
    overrides = read_overrides(settings)
    pairs = [(t, effective_enabled(t, overrides)) for t in loaded.tasks]
    text = kubernetes.export(settings, pairs, image, namespace, working_dir)
    if destination == "-":
        sys.stdout.write(text)
        return
    from agency_cron.fs import write_if_changed

    write_if_changed(Path(destination), text.encode(), 0o644)
    err.print(f"wrote {destination}")


@command()
def dashboard(
    out_dir: Annotated[
        Path | None, typer.Option("--out", help="Folder (default: STATE_DIR/dashboard).")
    ] = None,
    host: FleetOpt = None,
) -> None:
    """Write dashboard.json and a static index.html (tasks, checks, "Alerts & Logs").

    --host: the fleet's tasks and check results by default (with a hosts column when
    several reported); the logs are this host's files.

    Example: agency-cron dashboard --out /var/www/agency-dashboard

    Example: agency-cron dashboard --host web-1
    """
    from agency_cron import dashboard as board
    from agency_cron.readers import ALL

    settings, loaded, _ = _load()
    folder = out_dir or board.default_out_dir(settings)
    with _viewing(settings, loaded, host, ALL) as view:
        data_path, html_path = board.write(settings, loaded, folder, view)
    out.print(f"wrote {data_path} and {html_path}")


@command("metrics")
def metrics_(
    textfile: Annotated[
        Path | None,
        typer.Option("--textfile", help="Write them atomically to this file (mode 0644)."),
    ] = None,
    host: FleetOpt = None,
) -> None:
    """Prometheus metrics of every task (text format, no timestamps), on stdout or, with
    --textfile, into a file for node_exporter's textfile collector.

    --host: all by default: on the shared history the fleet's figures per task, labelled
    host="all"; `--host NAME` one host's, labelled with its name.

    Example: agency-cron metrics --textfile /var/lib/prometheus/node-exporter/agency_cron.prom

    Example: agency-cron metrics --host "$(hostname)"
    """
    from agency_cron import metrics
    from agency_cron.readers import ALL

    settings, loaded, _ = _load()
    with _viewing(settings, loaded, host, ALL) as view:
        content = metrics.exposition(settings, loaded, view)
    if textfile is None:
        sys.stdout.buffer.write(content)
        return
    named = textfile == settings.metrics_textfile
    metrics.write_textfile(textfile, content, "METRICS_TEXTFILE" if named else "--textfile")


@command(crontab=True)
def doctor(
    json_: JsonOpt = False,
) -> None:
    """Troubleshoot: cron daemon, managed lines and drift, wrappers, log dirs, logrotate,
    config permissions, alert URLs, commands. Each problem comes with the command that
    fixes it. Exit 0 healthy, 1 problems.

    Example: agency-cron doctor --json
    """
    from agency_cron import doctor as diagnosis

    settings, loaded, path = _load()
    findings = diagnosis.diagnose(settings, loaded, path)
    if json_:
        _print_json(diagnosis.as_json(findings))
    else:
        from rich.text import Text

        from agency_cron.tables import Column, print_table

        columns = [Column("check"), Column("ok"), Column("task", key=True)]
        columns.append(Column("detail (and fix)", wrap=True))
        cells = [
            [
                item.check,
                Text("ok", style="green") if item.ok else Text("FAIL", style="red"),
                item.task or "",
                item.detail + (f"\nfix: {item.fix}" if item.fix else ""),
            ]
            for item in findings
        ]
        print_table(out, columns, cells)
    raise typer.Exit(0 if diagnosis.healthy(findings) else 1)


@command(crontab=True)
def serve(
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=1, max=65535, help="TCP port.")] = 8765,
    insecure_localhost: Annotated[
        bool,
        typer.Option(
            "--insecure-localhost", help="Serve without a token (loopback addresses only)."
        ),
    ] = False,
) -> None:
    """The admin API (/api/..., /openapi.json) and the live dashboard (/).

    --host is the address to listen on. Whose runs the reports show is the endpoints'
    `?host=NAME|all` (default all: the fleet, on a shared HISTORY_URL): /api/summary,
    /api/health, /api/dashboard, /metrics, /api/tasks/NAME/executions, /api/runs/RUN_ID.

    Needs ADMIN_TOKEN (or ADMIN_TOKEN_FILE) in config.env; ADMIN_READ_TOKEN may only read.
    API_MAX_BODY, API_HEADER_TIMEOUT and API_MAX_CONNECTIONS bound what a client may cost.
    Exits 0 on SIGINT or SIGTERM, 2 if it cannot start (config, port in use, bad host).

    Example: ADMIN_TOKEN=$(cat /etc/agency/token) agency-cron serve --port 8765

    Example: curl -H "Authorization: Bearer $TOKEN" 'http://127.0.0.1:8765/api/summary?host=web-1'
    """
    from agency_cron import serve as service
    from agency_cron.admin import Context

    context = Context(Options.config, Options.manifest, Options.crontab)
    service.run(context, host, port, insecure_localhost)


def _os_error(exc: OSError) -> str:
    """An OS error on a path: the path, the reason, and the setting the path came from."""
    from agency_cron.layout import path_error

    if Options.settings is None:
        return f"{exc.filename}: {exc.strerror or exc}"
    message = path_error(Options.settings, exc)
    if isinstance(exc, PermissionError):
        message += " (run as root, or point the setting at a folder you can write)"
    return message


def _one_line(text: str) -> str:
    from agency_cron.terminal import escape_controls

    return escape_controls(text).replace("\n", " ")


def main(argv: list[str] | None = None) -> int:
    """Entry point: AgencyCronError -> one line per problem on stderr and its exit code.

    Click runs in standalone mode, so usage errors (an unknown command or option) print
    its usage message and exit 2 the way every CLI does.
    """
    Options.argv = list(sys.argv[1:] if argv is None else argv)
    Options.settings = None  # no stale settings from an earlier in-process call
    try:
        app(args=argv, prog_name="agency-cron", standalone_mode=True)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except AgencyCronError as exc:
        for problem in exc.problems:
            err.print(f"agency-cron: error: {_one_line(problem)}", markup=False)
        return exc.exit_code
    except OSError as exc:
        if exc.filename is None:
            raise  # not about a path: a bug, keep the traceback
        err.print(f"agency-cron: error: {_one_line(_os_error(exc))}", markup=False)
        return 2
    except KeyboardInterrupt:
        err.print("agency-cron: interrupted")
        return 130
    return 0
