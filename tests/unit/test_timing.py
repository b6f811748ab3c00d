"""timing.py: the exporters' worst case really bounds what the runner waits."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from agency_cron import timing
from agency_cron.runner import retry_delay


@given(
    delay=st.integers(0, 3600),
    max_delay=st.integers(0, 86400),
    backoff=st.sampled_from(["fixed", "exponential"]),
    retries=st.integers(0, 100),
)
def test_runner_delays_never_exceed_the_exporters_bound(delay, max_delay, backoff, retries):
    spec = {"retry_delay": delay, "retry_backoff": backoff, "retry_max_delay": max_delay}
    waited = sum(retry_delay(spec, attempt) for attempt in range(1, retries + 1))
    assert waited <= timing.retry_delays_bound(delay, backoff, max_delay, retries)


def test_run_bound_adds_every_attempt_the_grace_an_alert_and_the_pings():
    # 3 attempts of 60 s + 10 s grace, delays 5 + 10 (+10%: 17), an alert of 30, pings of 10
    assert timing.run_bound(60, 2, 5, "exponential", 100, 30, 10) == 3 * 70 + 17 + 30 + 10
    assert timing.run_bound(60, 0, 5, "fixed", 100, 29.5) == 70 + 30
