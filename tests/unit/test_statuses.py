"""The run-status vocabulary is one list: what the API promises is what statuses.py names."""

from __future__ import annotations

import typing

from agency_cron import alerts, statuses
from agency_cron.serve import app


def test_the_api_schema_names_every_status_and_no_other():
    assert typing.get_args(app.RUN_STATUSES) == statuses.ALL


def test_failures_alerts_and_retries_are_drawn_from_the_vocabulary():
    for group in (statuses.FAILURES, statuses.ALERTING, statuses.RETRYABLE, statuses.NOT_FINAL):
        assert set(group) <= set(statuses.ALL)
    assert set(statuses.ALERTING) == alerts.FAILURE_STATUSES
    assert statuses.LOST in statuses.FAILURES and statuses.KILLED not in statuses.ALERTING


def test_the_sql_list_quotes_each_name():
    assert statuses.sql(("failed", "lost")) == "('failed', 'lost')"
