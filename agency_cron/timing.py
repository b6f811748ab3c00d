"""How long a run can take: the runner's timing rules, shared with the exporters.

Standard library only: the runner imports it on every scheduled minute. The runner keeps
each bound (the kill grace, the retry delays); the systemd and Kubernetes exporters add
them up into the backstops they give the other scheduler (TimeoutStartSec=,
activeDeadlineSeconds), which must never cut a run the runner would still finish.
"""

from __future__ import annotations

# ALERT_TIMEOUT's default: the seconds one alert may take (config.DEFAULTS, and the runner
# for a spec written before the key existed).
ALERT_TIMEOUT_S = 30
# SIGTERM to a task's process group, then SIGKILL this many seconds later.
KILL_GRACE_S = 10.0
# A retry delay varies by this many percent either way (runner.retry_delay).
RETRY_JITTER_PERCENT = 10
# Exponential back-off stops doubling here (retries may be up to 100; 2**62 s is forever).
MAX_DOUBLINGS = 62
# Margins on top of the runner's own bound: Python's start-up and the history write under
# systemd; under Kubernetes also the pod's start (image pull, volume mounts).
SYSTEMD_START_MARGIN_S = 60
POD_START_MARGIN_S = 120


def base_delay(delay: float, backoff: str, attempt: int) -> float:
    """The delay before attempt `attempt + 1`, before jitter and the cap."""
    if backoff == "exponential":
        return delay * 2 ** min(attempt - 1, MAX_DOUBLINGS)
    return delay


def capped(delay: float, max_delay: float) -> float:
    return max(0.0, min(delay, max_delay))


def retry_delays_bound(delay: int, backoff: str, max_delay: int, retries: int) -> int:
    """The longest the runner can wait between the attempts of one run, in whole seconds:
    each capped delay, plus the jitter (rounded up, in integers)."""
    delays = sum(
        int(capped(base_delay(delay, backoff, attempt), max_delay))
        for attempt in range(1, retries + 1)
    )
    return (delays * (100 + RETRY_JITTER_PERCENT) + 99) // 100


def run_bound(
    timeout: int,
    retries: int,
    retry_delay: int,
    retry_backoff: str,
    retry_max_delay: int,
    alert_timeout: float,
    ping_timeout: float = 0.0,
) -> int:
    """A whole run at its longest, in whole seconds: every attempt to its timeout and kill
    grace, every retry delay at its longest, then an alert and the pings."""
    attempts = retries + 1
    delays = retry_delays_bound(retry_delay, retry_backoff, retry_max_delay, retries)
    grace = _ceil(KILL_GRACE_S)
    return attempts * (timeout + grace) + delays + _ceil(alert_timeout) + _ceil(ping_timeout)


def _ceil(seconds: float) -> int:
    """math.ceil without importing math (the runner's start-up is measured)."""
    return -int(-seconds // 1)
