"""Integration refreshes: one HTTP call or one command per integration, timed and recorded.

They run one after another, in manifest order: a refresh may prepare what the next one reads,
and the APIs they call may limit how many requests arrive at once.
"""

from __future__ import annotations

import time

from agency_cron.checks import web
from agency_cron.checks.common import CheckResult, run_shell, seconds
from agency_cron.checks.models import HttpCall, Integration

KIND = "integration"


def run_integrations(integrations: list[Integration]) -> list[CheckResult]:
    """Refresh each integration in order; one result each."""
    return [refresh(integration) for integration in integrations]


def refresh(integration: Integration) -> CheckResult:
    """Run one integration's HTTP call or command; never raises for a failed call."""
    started = time.monotonic()
    check = "http" if integration.http is not None else "command"
    try:
        if integration.http is not None:
            ok, detail = call(integration.http)
        else:
            ok, detail = run_shell(integration.command or "", integration.timeout)
    except Exception as exc:  # one broken refresh must not stop the others
        ok, detail = False, f"could not run: {type(exc).__name__}: {exc}"
    return CheckResult(KIND, integration.name, check, ok, detail, seconds(started))


def call(spec: HttpCall) -> tuple[bool, str]:
    """Send the request; ok when the status is the expected one. The body is never shown."""
    started = time.monotonic()
    try:
        reply = web.fetch(
            spec.url,
            method=spec.method,
            headers=spec.headers,
            body=spec.body,
            timeout=spec.timeout,
            follow_redirects=spec.follow_redirects,
        )
    except web.FetchError as exc:
        return False, str(exc)
    # Response bodies of APIs echo tokens and personal data: the detail keeps the status only.
    return web.judge(reply, spec.status, None, time.monotonic() - started)
