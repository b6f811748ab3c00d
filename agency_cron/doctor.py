"""`agency-cron doctor`: the seed's troubleshooting section as checks, each with its fix.

Every check returns Findings; a failing one carries the exact command that repairs it. The
library only reads (the crontab, files, /proc, `logrotate -d` on a copy) and never prints;
the CLI shows the findings and exits 1 when one is not ok.

Check names (stable, used by `--json` consumers):
  cron-daemon, crontab-entries, drift, wrappers, log-dirs, logrotate, config-permissions,
  alert-urls, ping-urls, failure-delivery, commands, overrides, task-users, metrics-textfile,
  shared-history.

Decisions worth knowing:
- Drift means a managed crontab line that differs from what `install` writes *and* from what
  the last install recorded in the task spec. A line that matches the spec but not the manifest
  is a manifest change not installed yet (crontab-entries), not a hand edit.
- `logrotate -d` runs on a 0644 copy of the config, so a syntax error is found even while the
  file's own mode is unsafe (that is reported separately). `error: stat of ... failed` lines
  are ignored, as install does: they name log files that no task has written yet.
- A missing `logrotate` binary is a failure: nothing would rotate the logs.
- Only the first word of a `command:` is resolved; `script:` bodies are not checked.
"""

from __future__ import annotations

import json
import os
import pwd
import re
import shlex
import shutil
import stat
from dataclasses import asdict, dataclass
from pathlib import Path
from urllib.parse import quote, urlsplit

from agency_cron import layout, logrotate, ping, render
from agency_cron.backends import Target, backend, parse_target
from agency_cron.backends.crontab import installed_entries
from agency_cron.config import Settings, read_config_file, split_urls
from agency_cron.errors import AgencyCronError
from agency_cron.fs import read_bytes
from agency_cron.manifest import Manifest, Task
from agency_cron.plan import UNCHANGED, Plan, build_plan, log_owner
from agency_cron.secrets import (
    is_secret_name,
    masked_ping_url,
    masked_url,
    ping_url_secrets,
    secrets_of_urls,
    url_credentials,
)

JSON_VERSION = 1
INSTALL = "agency-cron install"
CRON_NAMES = frozenset({"cron", "crond"})
PATH_HINT = "use an absolute path in the manifest, or set env PATH"
# Words /bin/sh runs without a PATH lookup: builtins and reserved words.
_SHELL_WORDS = (
    ". : [ alias bg break case cd command continue do done echo elif else esac eval exec exit "
    "export false fc fg fi for getopts hash if jobs kill local printf pwd read readonly return "
    "set shift test then times trap true type ulimit umask unalias unset until wait while "
    "{ } ( ) !"
)
SHELL_WORDS = frozenset(_SHELL_WORDS.split())
ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
TASK_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")


@dataclass(frozen=True)
class Finding:
    """One check's result: what was found and, when it failed, the command that fixes it."""

    check: str
    ok: bool
    detail: str
    fix: str | None = None
    task: str | None = None


def diagnose(settings: Settings, manifest: Manifest, manifest_path: Path) -> list[Finding]:
    """Run every check; returns findings grouped by check, in the order of the docstring.

    Reads only. Problems found are findings, never exceptions; config and manifest errors
    were raised earlier, when `settings` and `manifest` were loaded.
    """
    plan, plan_error = _plan(settings, manifest, manifest_path)
    target = parse_target(settings.crontab)
    findings = backend(target).diagnose(settings, manifest, plan, plan_error)
    findings += check_wrappers(settings, manifest, plan)
    findings += check_log_dirs(settings)
    findings += check_logrotate(settings)
    findings += check_config_permissions(settings)
    findings += check_alert_urls(settings, manifest)
    findings += check_ping_urls(settings, manifest)
    findings += check_failure_delivery(settings, manifest, plan)
    findings += check_commands(settings, manifest)
    findings += check_overrides(settings, manifest)
    findings += check_task_users(settings, manifest, plan)
    findings += check_metrics_textfile(settings)
    findings += check_shared_history(settings)
    return findings


def healthy(findings: list[Finding]) -> bool:
    return all(finding.ok for finding in findings)


def as_json(findings: list[Finding]) -> dict:
    """The stable `--json` form: {"version", "healthy", "findings": [{check, ok, ...}]}."""
    return {
        "version": JSON_VERSION,
        "healthy": healthy(findings),
        "findings": [asdict(finding) for finding in findings],
    }


def _plan(settings, manifest, manifest_path) -> tuple[Plan | None, Exception | None]:
    # A crontab that cannot be read (no crontab binary, say) is a finding, not a crash.
    try:
        return build_plan(settings, manifest, manifest_path), None
    except (AgencyCronError, OSError) as exc:
        return None, exc


# --- cron daemon -----------------------------------------------------------------------


def cron_daemon_pids() -> list[int]:
    """Live processes named cron or crond (/proc/PID/comm), zombies left out."""
    found: list[int] = []
    try:
        entries = os.listdir("/proc")
    except OSError:
        return found  # no /proc (not Linux): reported as not running
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            comm = Path(f"/proc/{entry}/comm").read_text().strip()
            state = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue  # the process ended while we looked
        if comm in CRON_NAMES and state not in ("Z", "X"):
            found.append(int(entry))
    return sorted(found)


def check_systemd_units(plan: Plan | None, plan_error: Exception | None) -> list[Finding]:
    """systemd:DIR targets: the units match what install renders, and systemd runs them."""
    if plan is None:
        return [Finding("systemd-units", False, f"cannot plan: {plan_error}", INSTALL)]
    running = os.path.isdir("/run/systemd/system")
    findings = [
        Finding("systemd", True, "systemd is the running init")
        if running
        else Finding(
            "systemd",
            False,
            "systemd is not the running init here: the unit files are written but nothing starts them",
            "copy the units to a host that runs systemd, or set CRONTAB=user",
        )
    ]
    units = [c for c in plan.files if c.path.parent == plan.target.path]
    stale = [c for c in units if c.action != UNCHANGED]
    for change in stale:
        detail = f"{change.path} is {'missing' if change.action == 'added' else change.action}: it differs from what install renders"
        findings.append(Finding("systemd-units", False, detail, INSTALL, change.owner))
    if not stale:
        findings.append(
            Finding(
                "systemd-units", True, f"{len(units)} unit file(s) current in {plan.target.path}"
            )
        )
    return findings


def check_cron_daemon() -> list[Finding]:
    pids = cron_daemon_pids()
    if pids:
        return [Finding("cron-daemon", True, f"cron daemon running (pid {pids[0]})")]
    return [
        Finding(
            "cron-daemon",
            False,
            "no cron or crond process is running: nothing runs the crontab",
            _start_cron_command(),
        )
    ]


def _start_cron_command() -> str:
    found = render.find_program
    service = "crond" if found("crond") and not found("cron") else "cron"
    if Path("/run/systemd/system").is_dir():
        return f"systemctl start {service}"
    return f"service {service} start"


# --- crontab entries and drift ---------------------------------------------------------


def check_crontab(
    settings: Settings, manifest: Manifest, plan: Plan | None, error: Exception | None
) -> list[Finding]:
    """Missing, stale and hand-edited managed lines; one ok finding per check otherwise."""
    if plan is None:
        fix = "apt-get install cron" if "command not found" in str(error) else None
        return [Finding("crontab-entries", False, f"cannot read the crontab: {error}", fix)]
    installed = installed_entries(plan.crontab_before)
    desired = installed_entries(plan.crontab_after)
    findings = []
    for task in manifest.tasks:
        have, want = installed.get(task.name), desired.get(task.name, [])
        if have is None:
            findings.append(_missing_line(task, plan.target))
        elif have != want:
            findings.append(_changed_line(settings, plan.target, task, have, want))
    wanted = {task.name for task in manifest.tasks}
    findings += [_stale_line(name, plan.target) for name in sorted(set(installed) - wanted)]
    return _with_ok_summaries(findings, plan, installed)


def _missing_line(task: Task, target: Target) -> Finding:
    detail = f"{task.name}: no managed line in the crontab ({target.label})"
    return Finding("crontab-entries", False, detail, INSTALL, task.name)


def _stale_line(name: str, target: Target) -> Finding:
    detail = (
        f"{name}: managed line in the crontab ({target.label}) for a task no longer in the manifest"
    )
    return Finding("crontab-entries", False, detail, INSTALL, name)


def _changed_line(settings, target, task, have: list[str], want: list[str]) -> Finding:
    """A manifest change not installed yet, or a line edited by hand (drift)."""
    shown = f"installed {_lines(have)}, expected {_lines(want)}"
    if have == _lines_from_spec(settings, target, task.name):
        detail = f"{task.name}: the manifest changed since the last install: {shown}"
        return Finding("crontab-entries", False, detail, INSTALL, task.name)
    if [f"# {line}" for line in want] == have:
        detail = f"{task.name}: managed line commented out by hand (use `agency-cron disable {task.name}` to keep it off): {shown}"
    else:
        detail = f"{task.name}: managed line edited by hand: {shown}"
    return Finding("drift", False, detail, INSTALL, task.name)


def _lines(lines: list[str]) -> str:
    return " | ".join(f"`{line}`" for line in lines)


def _lines_from_spec(settings, target: Target, name: str) -> list[str] | None:
    """The lines the last install wrote, rebuilt from the task spec it left in STATE_DIR."""
    data = read_bytes(layout.spec_path(settings, name))
    try:
        spec = json.loads(data) if data else {}
        schedules, enabled = list(spec["schedule"]), bool(spec["enabled"])
    except (ValueError, TypeError, KeyError):
        return None
    return backend(target).entry_lines(target, settings, name, schedules, enabled)


def _with_ok_summaries(findings: list[Finding], plan: Plan, installed) -> list[Finding]:
    checks = {finding.check for finding in findings}
    if "crontab-entries" not in checks:
        count = sum(len(lines) for lines in installed.values())
        detail = f"{count} managed line(s) for {len(installed)} task(s) in {plan.target.label}"
        findings.insert(0, Finding("crontab-entries", True, detail))
    if "drift" not in checks:
        findings.append(Finding("drift", True, "no managed line was edited by hand"))
    return sorted(findings, key=lambda f: f.check != "crontab-entries")


# --- wrappers --------------------------------------------------------------------------


def check_wrappers(settings: Settings, manifest: Manifest, plan: Plan | None) -> list[Finding]:
    """Each task's wrapper exists, is 0755 and matches what install renders (with its spec)."""
    rendered = {change.path: change.content for change in plan.files} if plan else {}
    found = [_wrapper_finding(settings, task, rendered) for task in manifest.tasks]
    findings = [finding for finding in found if finding is not None]
    if plan is not None:
        findings += _leftover_files(settings, manifest)
    if not findings:
        detail = f"{len(manifest.tasks)} wrapper(s) present, executable (0755) and current"
        findings = [Finding("wrappers", True, detail)]
    return findings


def _wrapper_finding(settings: Settings, task: Task, rendered: dict) -> Finding | None:
    path = layout.wrapper_path(settings, task.name)
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        return Finding("wrappers", False, f"{path} is missing", INSTALL, task.name)
    if not os.access(path, os.X_OK) or mode != 0o755:
        detail = (
            f"{path} has mode {mode:04o}, not 0755 (cron cannot run it, or others can change it)"
        )
        return Finding("wrappers", False, detail, f"chmod 755 {shlex.quote(str(path))}", task.name)
    return _outdated(settings, task, rendered)


def _outdated(settings: Settings, task: Task, rendered: dict) -> Finding | None:
    # The plan renders the wrapper and spec for the manifest as it is now; a difference means
    # the manifest or config changed since install, or someone edited the rendered files.
    paths = (layout.wrapper_path(settings, task.name), layout.spec_path(settings, task.name))
    stale = [p for p in paths if p in rendered and read_bytes(p) != rendered[p]]
    if not stale:
        return None
    names = " and ".join(str(p) for p in stale)
    verb = "differ" if len(stale) > 1 else "differs"
    detail = f"task spec outdated: {names} {verb} from what `{INSTALL}` renders now"
    return Finding("wrappers", False, detail, INSTALL, task.name)


def _leftover_files(settings: Settings, manifest: Manifest) -> list[Finding]:
    """Wrappers and specs of tasks the manifest dropped (install removes them)."""
    folder = layout.spec_dir(settings)
    names = {p.stem for p in folder.glob("*.json")} if folder.is_dir() else set()
    names -= {task.name for task in manifest.tasks}
    return [
        Finding(
            "wrappers",
            False,
            f"{name}: files left from a task no longer in the manifest",
            INSTALL,
            name,
        )
        for name in sorted(names)
    ]


# --- log folders -----------------------------------------------------------------------


def check_log_dirs(settings: Settings) -> list[Finding]:
    """LOG_DIR and LOG_DIR/cron exist and are writable (the wrapper and runner append there)."""
    return [_log_dir_finding(folder) for folder in (settings.log_dir, settings.log_dir / "cron")]


def _log_dir_finding(folder: Path) -> Finding:
    quoted = shlex.quote(str(folder))
    if not folder.exists():
        fix = f"mkdir -p {quoted} && chmod 755 {quoted}"
        return Finding("log-dirs", False, f"{folder} does not exist", fix)
    if not folder.is_dir():
        fix = f"mv {quoted} {quoted}.bak && mkdir -p {quoted} && chmod 755 {quoted}"
        return Finding("log-dirs", False, f"{folder} is not a folder", fix)
    if not os.access(folder, os.W_OK | os.X_OK):
        user, group = log_owner()
        fix = f"chown {user}:{group} {quoted} && chmod 755 {quoted}"
        return Finding("log-dirs", False, f"{folder} is not writable by {user}", fix)
    return Finding("log-dirs", True, f"{folder} exists and is writable")


# --- logrotate -------------------------------------------------------------------------


def check_logrotate(settings: Settings) -> list[Finding]:
    """The config exists, is safe (logrotate silently skips unsafe files) and parses."""
    path = layout.logrotate_path(settings)
    try:
        info = path.stat()
    except FileNotFoundError:
        return [Finding("logrotate", False, f"{path} is missing", INSTALL)]
    findings = [_logrotate_safety(path, info)]
    binary = render.find_program("logrotate")
    if binary is None:
        detail = "logrotate is not installed: nothing rotates the logs"
        return [*findings, Finding("logrotate", False, detail, "apt-get install logrotate")]
    errors = logrotate_errors(binary, path)
    findings += [Finding("logrotate", False, f"logrotate -d: {line}", INSTALL) for line in errors]
    if not errors:
        findings.append(Finding("logrotate", True, f"logrotate -d {path}: no errors"))
    return findings


def _logrotate_safety(path: Path, info: os.stat_result) -> Finding:
    # logrotate ignores a config not owned by root or the invoking user, or writable by
    # group or others, and still exits 0 (ARCHITECTURE.md, known traps).
    mode, quoted = stat.S_IMODE(info.st_mode), shlex.quote(str(path))
    fixes, problems = [], []
    if info.st_uid not in (0, os.geteuid()):
        problems.append(f"owned by uid {info.st_uid}")
        fixes.append(f"chown root:root {quoted}")
    if mode & 0o022:
        problems.append(f"mode {mode:04o} is group/world-writable")
        fixes.append(f"chmod 644 {quoted}")
    if problems:
        detail = f"{path}: {' and '.join(problems)}: logrotate skips it silently"
        return Finding("logrotate", False, detail, " && ".join(fixes))
    return Finding("logrotate", True, f"{path}: owner uid {info.st_uid}, mode {mode:04o}")


def logrotate_errors(binary: str, path: Path) -> list[str]:
    """`error:` lines of `logrotate -d` on the installed config (logrotate.errors)."""
    try:
        text = path.read_bytes()
    except OSError as exc:
        return [f"error: cannot read {path}: {exc.strerror}"]
    return logrotate.errors(binary, text, path)


# --- config permissions ----------------------------------------------------------------


def check_config_permissions(settings: Settings) -> list[Finding]:
    """A config.env holding secrets must not be world-readable. Names only, never values."""
    path = settings.config_path
    if path is None:
        return [Finding("config-permissions", True, "no config file in use")]
    secrets = secret_keys(read_config_file(path))
    if not secrets:
        return [Finding("config-permissions", True, f"{path} holds no secrets")]
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o004:
        detail = f"{path} holds {', '.join(secrets)} and is world-readable (mode {mode:04o})"
        return [Finding("config-permissions", False, detail, f"chmod 600 {shlex.quote(str(path))}")]
    return [Finding("config-permissions", True, f"{path} holds secrets, mode {mode:04o}")]


def secret_keys(values: dict[str, str]) -> list[str]:
    """Names of keys that carry a secret: *_TOKEN/_PASSWORD/_SECRET/_KEY, credentialed URLs."""
    found = [key for key, value in values.items() if is_secret_name(key) and value]
    if any(url_credentials(url) for url in split_urls(values.get("ALERT_URLS", ""))):
        found.append("ALERT_URLS")
    if len(ping_url_secrets(values.get("PING_URL", "").strip())) > 1:  # more than itself
        found.append("PING_URL")
    if urlsplit(values.get("HISTORY_URL", "").strip()).password:
        found.append("HISTORY_URL")
    return sorted(found)


# --- alert URLs ------------------------------------------------------------------------


def check_alert_urls(settings: Settings, manifest: Manifest) -> list[Finding]:
    """Every Apprise URL (ALERT_URLS and each task's alert_urls) is one Apprise accepts."""
    sources: list[tuple[str, str | None]] = [(url, None) for url in settings.alert_urls]
    sources += [(url, task.name) for task in manifest.tasks for url in task.alert_urls]
    if not sources:
        return [Finding("alert-urls", True, "no alert URLs configured")]
    bad = [(url, task) for url, task in dict.fromkeys(sources) if not _apprise_accepts(url)]
    findings = [
        Finding(
            "alert-urls",
            False,
            f"Apprise cannot parse {masked_url(url)}",
            _url_fix(settings, task),
            task,
        )
        for url, task in bad
    ]
    count = len({url for url, _ in sources})
    return findings or [Finding("alert-urls", True, f"{count} alert URL(s) parse")]


def _url_fix(settings: Settings, task: str | None) -> str:
    # No command can guess the right URL: say where it lives and how to apply the change.
    if task:
        where = f"alert_urls of task {task} in the manifest"
    else:
        where = f"ALERT_URLS in {settings.config_path or 'the environment'}"
    return f"correct {where} (Apprise URL syntax), then {INSTALL}"


def _apprise_accepts(url: str) -> bool:
    import apprise  # 120 ms: only paid when URLs are configured

    from agency_cron.alerts import _redacted_logs

    # Apprise logs a rejected URL whole; a caller's log handler must not see the credentials.
    with _redacted_logs(secrets_of_urls([url])):
        return bool(apprise.Apprise().add(url))


# --- ping URLs -------------------------------------------------------------------------

RESOLVE_TIMEOUT_S = 5.0


def check_ping_urls(settings: Settings, manifest: Manifest) -> list[Finding]:
    """Every task's ping URL (its ping_url, else PING_URL) parses and its host resolves; a
    healthchecks.io slug URL must end in a lowercase slug. Never pings: a ping from doctor
    would tell the monitor that the task ran. URLs are shown masked."""
    urls: dict[str, str] = {}
    for task in manifest.tasks:
        if url := render.ping_url(task, settings):
            urls[task.name] = url
    if not urls:
        return [Finding("ping-urls", True, "no ping URLs configured (PING_URL, ping_url)")]
    findings = [
        found
        for name, url in urls.items()
        if (found := _ping_finding(settings, manifest, name, url)) is not None
    ]
    hosts = sorted({host for url in urls.values() if (host := _host(url))})
    findings += [
        Finding("ping-urls", False, f"ping host {host} does not resolve", _DNS_FIX)
        for host in hosts
        if not _resolves(host)
    ]
    return findings or [
        Finding("ping-urls", True, f"{len(urls)} task(s) ping; their URLs parse and resolve")
    ]


_DNS_FIX = "check the host in PING_URL or ping_url, and the host's DNS (/etc/resolv.conf)"


def _ping_finding(settings: Settings, manifest: Manifest, name: str, url: str) -> Finding | None:
    task = manifest.get(name)
    if task is not None and task.ping_url is None:
        where = f"PING_URL in {settings.config_path or 'the environment'}"
    else:
        where = f"ping_url of task {name} in the manifest"
    problem = ping.problem(url)
    if problem is not None:
        return Finding(
            "ping-urls",
            False,
            f"{name}: ping URL {problem}",
            f"correct {where}, then {INSTALL}",
            name,
        )
    slug = url.split("?")[0].rstrip("/").rsplit("/", 1)[-1]
    if slug == name and name != name.lower():
        detail = (
            f"{name}: {masked_ping_url(url, name)} ends in the task's name, but healthchecks.io"
            " slugs are lowercase (a-z, 0-9, - and _): no check will be found"
        )
        fix = f"give task {name} its own ping_url ending in {name.lower()}, then {INSTALL}"
        return Finding("ping-urls", False, detail, fix, name)
    return None


def _host(url: str) -> str | None:
    from urllib.parse import urlsplit

    try:
        return urlsplit(url).hostname
    except ValueError:
        return None


def _resolves(host: str) -> bool:
    """getaddrinfo in a daemon thread, waited for RESOLVE_TIMEOUT_S at most (it has no
    timeout of its own, and a broken resolver must not hang doctor)."""
    import socket
    import threading

    answer: list[bool] = []

    def lookup() -> None:
        try:
            answer.append(bool(socket.getaddrinfo(host, None)))
        except (OSError, UnicodeError):
            answer.append(False)

    worker = threading.Thread(target=lookup, daemon=True)
    worker.start()
    worker.join(RESOLVE_TIMEOUT_S)
    return bool(answer and answer[0])


# --- commands --------------------------------------------------------------------------


def check_commands(settings: Settings, manifest: Manifest) -> list[Finding]:
    """Each `command:` starts with a word /bin/sh finds under the PATH the wrapper sets."""
    tasks = [task for task in manifest.tasks if task.command is not None]
    found = [_command_finding(settings, task) for task in tasks]
    findings = [finding for finding in found if finding is not None]
    return findings or [
        Finding("commands", True, f"{len(tasks)} command(s) resolve under cron's PATH")
    ]


def cron_path(task: Task) -> str:
    """The PATH a task's command sees: its own env PATH, else the wrapper's."""
    return task.env.get("PATH") or render.task_path()


def _command_finding(settings: Settings, task: Task) -> Finding | None:
    if task.command is None:  # a script task: its file is checked elsewhere
        return None
    try:
        word = first_word(task.command)
    except ValueError as exc:
        return Finding("commands", False, f"cannot parse the command: {exc}", None, task.name)
    if word is None or word in SHELL_WORDS or "$" in word or "`" in word:
        return None  # a builtin, or a word the shell only knows at run time
    if "/" in word or word.startswith("~"):
        return _path_finding(settings, task, word)
    path = cron_path(task)
    if shutil.which(word, path=path) is None:
        detail = f"`{word}` not found in PATH={path}"
        return Finding("commands", False, detail, PATH_HINT, task.name)
    return None


def first_word(command: str) -> str | None:
    """The word /bin/sh looks up first: assignments (VAR=x) and `(`, `{`, `!` skipped.

    Raises ValueError on unbalanced quotes.
    """
    lexer = shlex.shlex(command, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    tokens = list(lexer)  # all of them: an unbalanced quote anywhere breaks the command
    for token in tokens:
        if ASSIGNMENT.match(token) or token in ("(", "{", "!"):
            continue
        return token
    return None


def _path_finding(settings: Settings, task: Task, word: str) -> Finding | None:
    # The runner starts the command in the task's working_dir, so relative paths start there.
    path = Path(render.working_dir(task, settings)) / os.path.expanduser(word)
    if not path.is_file():
        return Finding("commands", False, f"`{word}` not found ({path})", PATH_HINT, task.name)
    if not os.access(path, os.X_OK):
        fix = f"chmod 755 {shlex.quote(str(path))}"
        return Finding("commands", False, f"`{word}` is not executable ({path})", fix, task.name)
    return None


# --- local overrides -------------------------------------------------------------------


def check_overrides(settings: Settings, manifest: Manifest) -> list[Finding]:
    """Tasks that `enable`/`disable` set otherwise than the manifest: not a fault (ok), but
    said, so that a manifest change that is not taking effect is explained."""
    from agency_cron.overrides import override_of, read_overrides

    try:
        overrides = read_overrides(settings)
    except AgencyCronError as exc:  # every command refuses it; doctor says so among the rest
        remove = f"rm {shlex.quote(str(layout.overrides_path(settings)))}"
        return [Finding("overrides", False, str(exc), f"{remove}, then enable/disable again")]
    findings = []
    for task in manifest.tasks:
        override = override_of(task, overrides)
        if override:
            manifest_word = "enables" if task.enabled else "disables"
            undo = "enable" if override == "disabled" else "disable"
            detail = f"{override} locally (the manifest {manifest_word} it; `agency-cron {undo} {task.name}` follows the manifest again)"
            findings.append(Finding("overrides", True, detail, None, task.name))
    return findings or [Finding("overrides", True, "no local overrides")]


# --- tasks run as another user -----------------------------------------------------------


def check_task_users(settings: Settings, manifest: Manifest, plan: Plan | None) -> list[Finding]:
    """Each task that runs as another user can, as that user, read its spec and write its
    history database, its logs and its lock: otherwise its runs go unrecorded or never start.
    Asked of the kernel as that user (a forked child), so modes, groups, ACLs and folders
    it cannot enter all count."""
    from agency_cron.plan import run_as

    if plan is None:
        return []
    installer = log_owner()[0]
    by_user: dict[str, list[Task]] = {}
    for task in manifest.tasks:
        user = run_as(task, plan.target)
        if user != installer:
            by_user.setdefault(user, []).append(task)
    findings = []
    for user, tasks in sorted(by_user.items()):
        findings += _user_findings(settings, plan.target, user, tasks)
    return findings + check_user_histories(settings)


def check_user_histories(settings: Settings) -> list[Finding]:
    """Each database in STATE_DIR/history.d is one the readers take (a regular file owned
    by its folder's owner) and holds runs of that user's tasks only: rows of other tasks
    (forged, or left from before a task changed user) are not shown, so they are named."""
    from agency_cron import history

    base = layout.user_histories_dir(settings)
    if not base.is_dir():
        return []
    state = str(settings.state_dir)
    taken = dict(history.user_databases(state))
    owners = history.task_owners(state)
    findings = []
    for folder in sorted(p for p in base.iterdir() if p.is_dir() and not p.is_symlink()):
        path = folder / history.DB_NAME
        if not os.path.lexists(path):
            continue  # no run as this user yet
        if str(path) not in taken:
            detail = f"{path} is not a file owned by {folder}'s owner: its runs are not shown"
            fix = f"mv {shlex.quote(str(path))} {shlex.quote(str(path))}.bad && {INSTALL}"
            findings.append(Finding("task-users", False, detail, fix))
            continue
        uid = taken[str(path)]
        if uid != 0:
            findings += _foreign_rows(path, set(owners.get(uid, [])))
    return findings


def _foreign_rows(path: Path, tasks: set[str]) -> list[Finding]:
    import sqlite3

    try:
        conn = sqlite3.connect(f"file:{quote(str(path))}?mode=ro", uri=True)
        try:
            counts = conn.execute("SELECT task, COUNT(*) FROM runs GROUP BY task").fetchall()
        finally:
            conn.close()
    except sqlite3.Error as exc:
        fix = f"mv {shlex.quote(str(path))} {shlex.quote(str(path))}.bad && {INSTALL}"
        return [Finding("task-users", False, f"{path} cannot be read: {exc}", fix)]
    foreign = {task: n for task, n in counts if task not in tasks}
    if not foreign:
        return []
    # The names come from a file its user writes: only task names are shown or quoted.
    names = sorted(t for t in foreign if isinstance(t, str) and TASK_NAME.fullmatch(t))
    others = len(foreign) - len(names)
    shown = ", ".join(names) + (f" and {others} other name(s)" if others else "")
    detail = (
        f"{path} holds {sum(foreign.values())} run(s) of tasks that do not run as its owner"
        f" ({shown}): not shown (forged, or from before the task changed user)"
    )
    kept = ", ".join(f"'{name}'" for name in sorted(tasks)) or "''"
    fix = f'sqlite3 {shlex.quote(str(path))} "DELETE FROM runs WHERE task NOT IN ({kept})"'
    return [Finding("task-users", False, detail, fix)]


def _user_findings(
    settings: Settings, target: Target, user: str, tasks: list[Task]
) -> list[Finding]:
    fix = f"{INSTALL} (as root: it creates these files and hands them to {user})"
    if os.geteuid() != 0:
        detail = f"{user}: what it can write is checked as root only"
        return [Finding("task-users", False, detail, "sudo agency-cron doctor")]
    try:
        probes = [(t, *probe) for t in tasks for probe in _user_probes(settings, target, user, t)]
        allowed = access_as(user, [(path, mode) for _, _, path, mode in probes])
    except (KeyError, OSError) as exc:
        return [Finding("task-users", False, f"{user}: cannot check as this user: {exc}", fix)]
    denied: dict[tuple[str, Path], list[str]] = {}
    for (task, what, path, _), ok in zip(probes, allowed, strict=True):
        if not ok:
            denied.setdefault((what, path), []).append(task.name)
    if not denied:
        detail = f"{user} can read the specs and write the history, logs and locks of its tasks"
        return [Finding("task-users", True, f"{detail} ({len(tasks)})")]
    return [
        Finding(
            "task-users",
            False,
            f"{user} cannot {what} {path}: the runs of {', '.join(names)} (as {user}) need it",
            fix,
            names[0] if len(names) == 1 else None,
        )
        for (what, path), names in denied.items()
    ]


def _user_probes(settings: Settings, target: Target, user: str, task: Task):
    """(what, path, os.access mode) that a run of `task` as `user` needs."""
    wanted = [("read", layout.spec_path(settings, task.name), os.R_OK)]
    wanted += _database_probes(settings, user)
    wanted.append(_write_probe("write the log", settings.log_dir / task.log_name))
    if backend(target).CRON_LOG:
        wanted.append(_write_probe("write the cron log", layout.cron_log_path(settings, task.name)))
    if task.overlap != "allow":
        lock = settings.state_dir / "locks" / f"{task.name}.lock"
        wanted.append(_write_probe("take the lock", lock))
    return wanted


def _database_probes(settings: Settings, user: str) -> list[tuple[str, Path, int]]:
    """The database the runner records in as `user` (history.writer_path), and its folder,
    where SQLite creates the -wal and -shm files."""
    owner = settings.state_dir.stat().st_uid if settings.state_dir.exists() else None
    if owner == pwd.getpwnam(user).pw_uid:
        database = layout.history_path(settings)
    else:
        database = layout.user_history_path(settings, user)
    if not database.exists():
        return [_write_probe("create its history database in", database.parent)]
    folder = ("write the history journal in", database.parent, os.W_OK | os.X_OK)
    return [("record runs in", database, os.W_OK), folder]


def _write_probe(what: str, path: Path) -> tuple[str, Path, int]:
    """Write access to `path`, or when it does not exist yet to the nearest folder above
    it (the runner creates what is missing below that)."""
    if path.exists():
        return what, path, os.W_OK | (os.X_OK if path.is_dir() else 0)
    folder = path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return what, folder, os.W_OK | os.X_OK


def access_as(user: str, probes: list[tuple[Path, int]]) -> list[bool]:
    """os.access() for each (path, mode) as `user`, in a forked child that takes the user's
    uid, gid and groups (looked up here: the child makes system calls only)."""
    entry = pwd.getpwnam(user)
    groups = os.getgrouplist(user, entry.pw_gid)
    paths = [(os.fsencode(path), mode) for path, mode in probes]
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through the pipe
        code = 1
        try:
            os.close(read_fd)
            os.setgroups(groups)
            os.setgid(entry.pw_gid)
            os.setuid(entry.pw_uid)
            os.write(write_fd, bytes(49 if os.access(p, m) else 48 for p, m in paths))
            code = 0
        finally:
            os._exit(code)
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as answer:
        found = answer.read()
    os.waitpid(pid, 0)
    if len(found) != len(paths):
        raise OSError(f"the check as {user} did not answer")
    return [byte == 49 for byte in found]


# --- Prometheus textfile ---------------------------------------------------------------

NODE_EXPORTER_DIR = "/var/lib/prometheus/node-exporter"  # Debian's prometheus-node-exporter


def check_shared_history(settings: Settings) -> list[Finding]:
    """HISTORY_URL=postgresql://...: the shared history answers, and how many local records
    still wait to be sent (the spool). Nothing to check for the local SQLite history."""
    from agency_cron import readers, remote

    url = settings.history_url
    if url is None:
        return [Finding("shared-history", True, f"local history only: {settings.history_db}")]
    found = readers.send_spool(settings, url)
    where = remote.masked(url)
    if found.error:
        detail = f"{found.error}; {found.pending} record(s) wait in the local history"
        fix = f"start or reach the database at {where}, then: agency-cron history sync"
        return [Finding("shared-history", False, detail, fix)]
    detail = f"{where} answers as {settings.host_name}; sent {found.sent}, {found.pending} waiting"
    return [Finding("shared-history", True, detail)]


def check_metrics_textfile(settings: Settings) -> list[Finding]:
    """METRICS_TEXTFILE's folder exists and is writable (the metrics-export task writes a
    temporary file there and renames it), and a file already there is readable by
    node_exporter's own user. Nothing to check when the export is off."""
    path = settings.metrics_textfile
    if path is None:
        detail = "METRICS_TEXTFILE is not set: no textfile export"
        return [Finding("metrics-textfile", True, detail)]
    problem, fix = _textfile_problem(path)
    if problem:
        return [Finding("metrics-textfile", False, f"METRICS_TEXTFILE: {problem}", fix)]
    written = "is readable" if path.exists() else "not written yet"
    return [Finding("metrics-textfile", True, f"{path.parent} is writable; {path.name} {written}")]


def _textfile_problem(path: Path) -> tuple[str | None, str | None]:
    folder, quoted = path.parent, shlex.quote(str(path.parent))
    if not folder.is_dir():
        hint = "  (apt-get install prometheus-node-exporter creates it)"
        fix = f"mkdir -p {quoted}" + (hint if str(folder) == NODE_EXPORTER_DIR else "")
        return f"{folder} {'is not a folder' if folder.exists() else 'does not exist'}", fix
    if not os.access(folder, os.W_OK | os.X_OK):
        user = pwd.getpwuid(os.geteuid()).pw_name
        fix = f"chown {user} {quoted}, or point METRICS_TEXTFILE at a folder {user} can write"
        return f"{folder} is not writable by {user}", fix
    try:
        readable = path.stat().st_mode & stat.S_IROTH
    except FileNotFoundError:
        return None, None
    if not readable:
        return f"{path} is not readable by node_exporter", f"chmod 644 {shlex.quote(str(path))}"
    return None, None


# --- failures reach a person --------------------------------------------------------------

SENDMAIL = "/usr/sbin/sendmail"  # what Debian's cron runs to mail a job's output
MAILTO = re.compile(r"^\s*MAILTO\s*=\s*(.*?)\s*$")


def check_failure_delivery(
    settings: Settings, manifest: Manifest, plan: Plan | None
) -> list[Finding]:
    """Does a failed run reach someone? Through an alert target, or else through cron's mail
    (the wrapper's report on cron's stdout): that needs a cron target, a non-empty MAILTO
    and an MTA at /usr/sbin/sendmail."""
    silent = [task.name for task in manifest.tasks if not _alerts_reach(settings, task)]
    if not silent:
        return [Finding("failure-delivery", True, "failures go to the alert targets")]
    why = cron_mail_problem(settings, plan.crontab_after if plan else "")
    if why is None:
        return [
            Finding(
                "failure-delivery",
                True,
                "failures without an alert target go to cron's mail (MAILTO)",
            )
        ]
    names = ", ".join(silent[:5]) + (f" and {len(silent) - 5} more" if len(silent) > 5 else "")
    return [
        Finding(
            "failure-delivery",
            False,
            f"a failure of {names} reaches nobody: no alert target, and {why}",
            "set ALERT_URLS and ALERT_ON_FAILURE=true in config.env, or let cron mail"
            " (an MTA such as `apt-get install msmtp-mta`, and MAILTO not empty)",
        )
    ]


def _alerts_reach(settings: Settings, task: Task) -> bool:
    urls = [*settings.alert_urls, *task.alert_urls]
    return bool(urls) and settings.alert_on_failure and task.alert != "never"


def cron_mail_problem(settings: Settings, crontab_text: str) -> str | None:
    """Why cron would not mail a job's output, or None when it would."""
    if why := backend(parse_target(settings.crontab)).NO_MAIL:
        return why
    if not os.access(SENDMAIL, os.X_OK):
        return f"cron cannot mail ({SENDMAIL} is missing: no MTA)"
    mailto = None
    for line in crontab_text.splitlines():
        if "# agency-cron:" in line:
            break  # cron gives each line the variables set above it
        found = MAILTO.match(line)
        if found:
            mailto = found.group(1).strip("'\"")
    if mailto == "":
        return "MAILTO is empty in the crontab (cron mails nothing)"
    return None
