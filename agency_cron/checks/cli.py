"""`python -m agency_cron.checks {health|backup|integrations}`: the built-in tasks, run by cron.

Loads config.env and the manifest's `components:`/`integrations:`, picks what to check
(--components, else HEALTH_CHECK_COMPONENTS / BACKUP_VERIFY_COMPONENTS, else all), runs it,
prints one line per result and a summary naming the failing components last (the runner puts
an output's last lines in the alert), and records every result in history.db.

Exit 0 when everything passed, 1 when something failed, 2 on bad input (config, manifest,
an unknown component). Credentials never reach the output or history: secret config values,
URL passwords and the values of auth/token/key/secret headers are replaced by ***.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import socket
import sqlite3
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from agency_cron.checks.common import CheckResult
from agency_cron.checks.models import Component, Integration
from agency_cron.config import Settings, load_settings
from agency_cron.errors import AgencyCronError, UsageError
from agency_cron.secrets import password_of_url, secret_values, worth_masking

JSON_VERSION = 1
# Header names whose values are credentials (matched as substrings, case-insensitively).
SECRET_HEADER = re.compile(r"auth|token|key|secret|pass|cookie|session", re.IGNORECASE)


@dataclasses.dataclass(frozen=True)
class Command:
    """What one subcommand checks, and how it picks and runs its items."""

    kind: str  # the `kind` column of check_results
    setting: str | None  # config key holding the default selection
    needs: str  # what a selected item must declare, for messages
    applies: Callable[[Any], bool]  # a Component or an Integration
    run: Callable[[list], list[CheckResult]]


def _run_health(items: list) -> list[CheckResult]:
    from agency_cron.checks.health import run_health

    return run_health(items)


def _run_backups(items: list) -> list[CheckResult]:
    from agency_cron.checks.backup import run_backups

    return run_backups(items)


def _run_integrations(items: list) -> list[CheckResult]:
    from agency_cron.checks.integrations import run_integrations

    return run_integrations(items)


COMMANDS = {
    "health": Command(
        "health", "HEALTH_CHECK_COMPONENTS", "checks:", lambda c: bool(c.checks), _run_health
    ),
    "backup": Command(
        "backup",
        "BACKUP_VERIFY_COMPONENTS",
        "backup:",
        lambda c: c.backup is not None,
        _run_backups,
    ),
    "integrations": Command("integration", None, "", lambda i: True, _run_integrations),
}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: returns the exit code (0 ok, 1 a check failed, 2 bad input)."""
    args = _parser().parse_args(argv)
    try:
        return run(args)
    except AgencyCronError as exc:
        for problem in exc.problems:
            print(f"agency-cron: error: {problem}", file=sys.stderr)
        return exc.exit_code


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--components", metavar="LIST", help="comma list or 'all' (default: from config)"
    )
    common.add_argument(
        "--alert", action="store_true", help="alert on failure (outside the runner)"
    )
    common.add_argument("--json", action="store_true", help="print a JSON object instead of lines")
    common.add_argument("--config", metavar="PATH", help="config.env to read")
    common.add_argument("--manifest", metavar="PATH", help="manifest file or folder")
    parser = argparse.ArgumentParser(
        prog="python -m agency_cron.checks",
        description="Run the built-in checks declared in the manifest.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    helps = {
        "health": "check every selected component's services",
        "backup": "verify every selected component's newest backup",
        "integrations": "refresh every selected integration",
    }
    for name, text in helps.items():
        commands.add_parser(name, parents=[common], help=text, description=text)
    return parser


def run(args: argparse.Namespace) -> int:
    """Load, select, check, print, record, alert; the exit code."""
    from agency_cron.manifest import find_manifest
    from agency_cron.runner import now_iso

    settings = load_settings(args.config)
    manifest = find_manifest(args.manifest, settings)
    components, integrations = load_sections(settings, manifest)
    command = COMMANDS[args.command]
    candidates = integrations if args.command == "integrations" else components
    chosen = select(args.command, candidates, *_selection(command, args, settings))
    checked_at, started = now_iso(), time.monotonic()
    secrets = secrets_for(settings, chosen)
    results = redact_results(command.run(chosen) if chosen else [], secrets)
    run_id = os.environ.get("AGENCY_CRON_RUN_ID") or None
    lines = report_lines(args.command, results, manifest)
    if args.json:
        print(json.dumps(_as_json(args.command, command, results, checked_at, run_id), indent=2))
    else:
        print("\n".join(lines))
    sys.stdout.flush()  # the results are in the log even if recording or alerting stalls
    if results:
        record(settings, results, checked_at, run_id)
    failed = any(not result.ok for result in results)
    if failed and args.alert:
        _alert(settings, args.command, lines, time.monotonic() - started, secrets)
    return 1 if failed else 0


def _selection(command: Command, args: argparse.Namespace, settings: Settings) -> tuple[str, str]:
    """(selection text, where it came from): --components, else the config key, else all."""
    if args.components is not None:
        return args.components, "--components"
    if command.setting:
        return settings.get(command.setting), command.setting
    return "all", "--components"


def load_sections(settings: Settings, manifest_path: Path) -> tuple[tuple, tuple]:
    """(components, integrations), validated with the rest of the manifest (ConfigError)."""
    from agency_cron.manifest import load_manifest

    manifest = load_manifest(manifest_path, settings)
    return manifest.components, manifest.integrations


def select(command_name: str, candidates: Sequence, text: str, source: str) -> list:
    """The items named by `text` (comma/space list, or `all`/empty for every applicable one).

    Raises UsageError (exit 2) for an unknown name, or a name without what the command needs.
    """
    command = COMMANDS[command_name]
    names = [name for name in re.split(r"[\s,]+", text.strip()) if name]
    if not names or any(name.lower() == "all" for name in names):
        return [item for item in candidates if command.applies(item)]
    known = {item.name: item for item in candidates}
    noun = "integration" if command_name == "integrations" else "component"
    unknown = [name for name in names if name not in known]
    if unknown:
        declared = ", ".join(known) or "none"
        raise UsageError(f"{source}: unknown {noun} {', '.join(unknown)} (declared: {declared})")
    lacking = [name for name in names if not command.applies(known[name])]
    if lacking:
        raise UsageError(f"{source}: {', '.join(lacking)}: no {command.needs} section to run")
    return [known[name] for name in dict.fromkeys(names)]


def secrets_for(settings: Settings, items: Sequence) -> list[str]:
    """Strings to mask: secret config values, URL passwords, credential header values."""
    found = secret_values(settings.values)
    for spec in _http_specs(items):
        found += password_of_url(spec.url)
        found += [value for name, value in spec.headers.items() if SECRET_HEADER.search(name)]
    return sorted(worth_masking(found), key=len, reverse=True)


def _http_specs(items: Sequence) -> list:
    specs: list = []
    for item in items:
        if isinstance(item, Component):
            specs += [check for _, check in item.labelled_checks() if check.type == "http"]
        elif isinstance(item, Integration) and item.http is not None:
            specs.append(item.http)
    return specs


def redact_results(results: list[CheckResult], secrets: list[str]) -> list[CheckResult]:
    """Results with every secret in their detail replaced by ***, each detail on one line."""
    from agency_cron.alerts import redact

    def clean(detail: str) -> str:
        return redact(" | ".join(part.strip() for part in detail.splitlines()), secrets)

    return [dataclasses.replace(r, detail=clean(r.detail)) for r in results]


def report_lines(command_name: str, results: list[CheckResult], manifest: Path) -> list[str]:
    """`OK   web/http  200 in 0.02s` lines, then the summary line."""
    if not results:
        needs = COMMANDS[command_name].needs
        what = f"no component declares {needs}" if needs else "no integrations declared"
        return [f"{command_name}: nothing to check ({what} in {manifest})"]
    width = max(len(result.label) for result in results)
    lines = [
        f"{'OK' if r.ok else 'FAIL':<4} {r.label:<{width}}  {r.detail}".rstrip() for r in results
    ]
    return [*lines, summary(command_name, results)]


def summary(command_name: str, results: list[CheckResult]) -> str:
    """`health: 3 checks, 1 failed: db` or `health: 3 checks, all ok`."""
    count = f"{len(results)} check{'' if len(results) == 1 else 's'}"
    failing = [r for r in results if not r.ok]
    if not failing:
        return f"{command_name}: {count}, all ok"
    components = ", ".join(dict.fromkeys(r.component for r in failing))
    return f"{command_name}: {count}, {len(failing)} failed: {components}"


def _as_json(name: str, command: Command, results: list, checked_at: str, run_id) -> dict:
    failing = [r for r in results if not r.ok]
    return {
        "version": JSON_VERSION,
        "command": name,
        "kind": command.kind,
        "ok": not failing,
        "checked_at": checked_at,
        "run_id": run_id,
        "checks": len(results),
        "failed": list(dict.fromkeys(r.component for r in failing)),
        "results": [r.as_dict() for r in results],
    }


def record(settings: Settings, results: list[CheckResult], checked_at: str, run_id) -> None:
    """Append the results to the history (this user's database, see history.writer_path);
    a failure is a warning, not a failed check."""
    from agency_cron import history

    # The host its runs are recorded under (the runner's AGENCY_CRON_HOST in a Kubernetes
    # Job, else HOST_NAME): a host's view of the shared history shows its own checks.
    host = os.environ.get("AGENCY_CRON_HOST") or settings.host_name
    rows = [
        {**r.as_dict(), "ok": int(r.ok), "checked_at": checked_at, "run_id": run_id, "host": host}
        for r in results
    ]
    try:
        conn = history.connect(
            history.writer_path(str(settings.state_dir), str(settings.history_db))
        )
        try:
            history.record_checks(conn, rows)
        finally:
            conn.close()
    except (sqlite3.Error, OSError, RuntimeError) as exc:
        print(f"agency-cron: warning: results not recorded in history.db: {exc}", file=sys.stderr)


def _alert(settings: Settings, name: str, lines: list[str], duration: float, secrets) -> None:
    """--alert outside the runner: send the failure ourselves. Under the runner
    (AGENCY_CRON_RUN_ID set) the runner alerts from our exit code; sending here would double it.
    """
    if os.environ.get("AGENCY_CRON_RUN_ID"):
        return
    from agency_cron import alerts

    event = {
        "host": socket.gethostname(),
        "task": os.environ.get("AGENCY_CRON_TASK") or f"{name} check",
        "status": "failed",
        "exit_code": 1,
        "duration_s": round(duration, 3),
        "attempt": 1,
        "attempts": 1,
        "run_id": None,
        "output_tail": "\n".join(lines),
    }
    outcome = alerts.send(
        list(settings.alert_urls), "failure", event, secrets, timeout=settings.alert_timeout
    )
    print(f"alert: {outcome}", file=sys.stderr)
