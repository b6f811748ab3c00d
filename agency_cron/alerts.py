"""Alerts for finished runs: which one to send, what it says, and sending it through Apprise.

The runner imports this module on every run, so it stays stdlib-only at import time: Apprise
(about 120 ms to import) is imported inside `send`, only when an alert actually goes out.
Everything that leaves the process (title, body, the outcome string kept in history) first
goes through `redact`, because alert URLs and task output can both carry credentials.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator
from urllib.parse import parse_qsl

from agency_cron import statuses
from agency_cron.secrets import RecordRedactor, redact, secrets_of_urls

# A failed, timed-out or lost run deserves an alert; "killed" was a deliberate stop.
FAILURE_STATUSES = frozenset(statuses.ALERTING)
# What --alert reports: any run that did not finish by itself, a kill included.
FORCED_STATUSES = frozenset(statuses.FAILURES)
POLICIES = ("never", "on_failure", "on_change", "always")
OUTPUT_TAIL_CHARS = 2000
TITLES = {"failure": "FAILED", "recovery": "RECOVERED", "success": "OK"}
# At DEBUG, Apprise and urllib3 log request URLs with the tokens in them (api.telegram.org/bot...).
CHATTY_LOGGERS = ("apprise", "urllib3.connectionpool")


def _policy_alert(policy: str, status: str, previous: str | None) -> str | None:
    """The alert a policy asks for once alerts are enabled (see `decide`)."""
    failed, was_failed = status in FAILURE_STATUSES, previous in FAILURE_STATUSES
    if policy == "never":
        return None
    if failed:
        # on_change stays quiet while a task keeps failing: one alert per outage.
        return None if policy == "on_change" and was_failed else "failure"
    if status != statuses.SUCCESS:
        return None
    if was_failed:
        return "recovery"
    return "success" if policy == "always" else None


def decide(
    policy: str, status: str, previous: str | None, alert_on_failure: bool, force: bool
) -> str | None:
    """Which alert to send for a finished run: "failure", "recovery" or None ("success" too
    under the always policy).

    status is the run's final status (success, failed, timeout, skipped, killed); previous is
    the previous final status of the same task (None on a first run; skipped runs are not
    passed). failed and timeout are failures; killed is a deliberate stop and alerts only
    when forced. force (--alert) turns failed, timeout and killed into "failure" whatever the
    policy or alert_on_failure; otherwise nothing is sent unless alert_on_failure is True, then
    the policy (never, on_failure, on_change, always) decides. skipped never alerts.
    Raises ValueError on an unknown policy (the manifest validation should have caught it).
    """
    if policy not in POLICIES:
        raise ValueError(f"unknown alert policy {policy!r}; expected one of {', '.join(POLICIES)}")
    if status == statuses.SKIPPED:
        return None
    if force and status in FORCED_STATUSES:
        return "failure"
    if not alert_on_failure:
        return None
    return _policy_alert(policy, status, previous)


def _message(kind: str, event: dict, secrets: list[str]) -> tuple[str, str]:
    """The redacted title and plain-text body of one alert."""
    get = event.get
    title = f"[agency-cron] {TITLES.get(kind, kind.upper())} {get('task')} on {get('host')}"
    # Redact before cutting, so the cut cannot leave half a secret visible.
    tail = redact(str(get("output_tail") or ""), secrets)[-OUTPUT_TAIL_CHARS:]
    lines = [
        f"host: {get('host')}",
        f"task: {get('task')}",
        f"status: {get('status')}",
        f"exit code: {get('exit_code')}",
        f"duration: {get('duration_s')}s",
        f"attempt {get('attempt')} of {get('attempts')}",
        f"run id: {get('run_id')}",
        "",
        f"last output ({len(tail)} chars):" if tail else "no output",
        tail,
    ]
    return redact(title, secrets), redact("\n".join(lines).rstrip(), secrets)


def _with_timeouts(url: str, seconds: float) -> str:
    """The URL with Apprise's connect (cto) and read (rto) timeouts, unless it sets its own."""
    base, _, query = url.partition("?")
    keys = {key.lower() for key, _ in parse_qsl(query, keep_blank_values=True)}
    extra = [f"{key}={seconds:g}" for key in ("cto", "rto") if key not in keys]
    return f"{base}?{'&'.join(filter(None, [query, *extra]))}" if extra else url


def _asset(apprise):
    """An asset that makes Apprise deliver in the calling thread.

    By default Apprise hands each service to its own (non-daemon) thread pool, and a hung
    request there would keep the process alive at exit; inline, it dies with our daemon thread.
    Apprise 1.x has no service_timeout, hence the fallback.
    """
    try:
        return apprise.AppriseAsset(async_mode=False, service_timeout=0)
    except (TypeError, AttributeError):
        return apprise.AppriseAsset(async_mode=False)


def _failure_reason(result) -> str:
    """The last warning Apprise recorded for a failed notify (Apprise 2.x results carry logs)."""
    logs = getattr(result, "logs", None)
    entries = list(logs()) if callable(logs) else []
    warnings = [e.message for e in entries if e.level in ("WARNING", "ERROR", "CRITICAL")]
    return warnings[-1] if warnings else "the alert target did not accept the notification"


def _deliver(urls: list[str], kind: str, title: str, body: str, per_request: float) -> str:
    """Send through Apprise and say how it went; runs in the daemon thread `send` waits on."""
    import apprise  # here only: the runner's import path must stay stdlib-only and fast

    box = apprise.Apprise(asset=_asset(apprise))
    invalid = [i for i, url in enumerate(urls, 1) if not box.add(_with_timeouts(url, per_request))]
    bad = f"invalid alert URL #{invalid[0]} ({urls[invalid[0] - 1]})" if invalid else ""
    if len(invalid) == len(urls):
        return f"failed: {bad}"
    notify_type = apprise.NotifyType.FAILURE if kind == "failure" else apprise.NotifyType.SUCCESS
    result = box.notify(body=body, title=title, notify_type=notify_type, body_format="text")
    if not result:
        return f"failed: {_failure_reason(result)}"
    return f"failed: {bad}; sent to the others" if bad else f"sent to {len(urls)} target(s)"


@contextlib.contextmanager
def _redacted_logs(secrets: list[str]) -> Iterator[None]:
    """Redact what Apprise logs while it sends: the runner's log handlers may be at DEBUG."""
    masks = [(logging.getLogger(name), RecordRedactor(secrets)) for name in CHATTY_LOGGERS]
    for logger, mask in masks:
        logger.addFilter(mask)
    try:
        yield
    finally:
        for logger, mask in masks:
            logger.removeFilter(mask)


def send(urls: list[str], kind: str, event: dict, secrets: list[str], timeout: float = 30.0) -> str:
    """Send one notification through Apprise to every URL; never raises, never waits longer than
    `timeout` seconds overall.

    event keys: host, task, status, exit_code, duration_s, attempt, attempts, run_id, output_tail.
    kind is "failure", "recovery" or "success". Returns a short, redacted outcome for history and
    the log: "sent to N target(s)", "failed: <reason>", "timed out after Ns", or
    "no alert targets". An invalid URL is reported as failed; the valid ones are still sent to.
    """
    if not urls:
        return "no alert targets"
    secrets = [*secrets, *secrets_of_urls(urls)]
    # Connect and read timeouts inside the budget: a stuck target then fails with a reason
    # (and lets the next URL go) rather than only ending in a bare timeout.
    per_request = max(0.5, min(10.0, timeout / 2))
    outcome: list[str] = []

    def work() -> None:
        # Anything at all (an import error, a plugin bug) becomes an outcome, never a crash.
        try:
            title, body = _message(kind, event, secrets)
            with _redacted_logs(secrets):
                outcome.append(_deliver(urls, kind, title, body, per_request))
        except Exception as exc:
            outcome.append(f"failed: {type(exc).__name__}: {exc}")

    # A daemon thread: if a target hangs past every timeout, we stop waiting and the process
    # can still exit; the abandoned request dies with it.
    worker = threading.Thread(target=work, name="agency-cron-alert", daemon=True)
    worker.start()
    worker.join(timeout)
    if worker.is_alive() or not outcome:
        return f"timed out after {timeout:g}s"
    return redact(outcome[0], secrets)
