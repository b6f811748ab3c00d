"""The run-status vocabulary (CONTRACT.md), in one place for the runner, history, reports
and alerts. Standard library only, no imports at all: the runner loads it on every run.
"""

from __future__ import annotations

SUCCESS = "success"
FAILED = "failed"
TIMEOUT = "timeout"
SKIPPED = "skipped"
KILLED = "killed"
RETRY_SCHEDULED = "retry-scheduled"
RUNNING = "running"  # an attempt in progress: its row is written when it starts
LOST = "lost"  # its runner died (SIGKILL, OOM killer, power loss) before recording an end

ALL = (SUCCESS, FAILED, TIMEOUT, SKIPPED, KILLED, RETRY_SCHEDULED, RUNNING, LOST)
# Runs that ended badly: failures for status, log-summary, health, the dashboard and the
# report cron mails when no alert target is configured.
FAILURES = (FAILED, TIMEOUT, KILLED, LOST)
# What the failure policies alert on; `killed` was someone's deliberate stop and alerts only
# when forced (--alert). A lost run was nobody's choice.
ALERTING = (FAILED, TIMEOUT, LOST)
# What the runner retries.
RETRYABLE = (FAILED, TIMEOUT)
# Rows that are not the end of a run: left out when asking how a task's last run ended.
NOT_FINAL = (SKIPPED, RETRY_SCHEDULED)


def sql(statuses: tuple[str, ...]) -> str:
    """`('failed', 'timeout', ...)` for an SQL IN clause (the names are constants above)."""
    return "(" + ", ".join(quoted(s) for s in statuses) + ")"


def quoted(status: str) -> str:
    """`'success'`, one name as an SQL literal (`status = 'success'`)."""
    return f"'{status}'"
