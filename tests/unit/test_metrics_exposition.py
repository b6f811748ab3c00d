"""metrics.families()/generate_latest over hand-made snapshots: names, labels, values.

The text is parsed back with prometheus_client's own parser, and promtool checks it too.
"""

from __future__ import annotations

import os
import subprocess

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from agency_cron import metrics
from agency_cron.metrics import Snapshot, TaskFigures

PROMTOOL = "/usr/bin/promtool"  # Debian's prometheus package (.ci/run installs it)


def task(name: str, **figures) -> TaskFigures:
    base = {
        "name": name,
        "user": None,
        "enabled": True,
        "running": False,
        "overdue": False,
        "next_run": 1_800_000_060.0,
        "last_run": None,
        "last_success": None,
        "last_status": None,
        "last_duration": None,
        "last_exit_code": None,
        "runs": {},
    }
    return TaskFigures(**{**base, **figures})


def snapshot(*tasks: TaskFigures) -> Snapshot:
    return Snapshot(
        host="web1",
        tasks=list(tasks),
        history_rows=12,
        history_bytes=4096,
        read_seconds=0.25,
        generated_at=1_800_000_000.5,
    )


class Fixed:
    def __init__(self, snap: Snapshot):
        self.snap = snap

    def collect(self):
        return metrics.families(self.snap)


def text_of(snap: Snapshot) -> str:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(Fixed(snap))
    return generate_latest(registry).decode()


def samples(text: str) -> dict[tuple[str, frozenset], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            assert sample.timestamp is None  # node_exporter refuses sample timestamps
            found[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return found


def key(name: str, **labels: str) -> tuple[str, frozenset]:
    return name, frozenset(labels.items())


def promtool_check(text: str) -> None:
    if not os.access(PROMTOOL, os.X_OK):
        pytest.fail(f"{PROMTOOL} is missing: apt-get install prometheus (.ci/run does)")
    result = subprocess.run(
        [PROMTOOL, "check", "metrics"], input=text, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


SUCCEEDED = task(
    "backup",
    last_run=1_799_999_000.25,
    last_success=1_799_999_000.25,
    last_status="success",
    last_duration=12.5,
    last_exit_code=0,
    runs={"success": 3, "failed": 1, "running": 1},
)


def test_a_task_that_succeeded_has_every_figure():
    found = samples(text_of(snapshot(SUCCEEDED)))
    at = {"task": "backup", "host": "web1"}
    assert found[key("agency_cron_last_run_timestamp_seconds", **at)] == 1_799_999_000.25
    assert found[key("agency_cron_last_success_timestamp_seconds", **at)] == 1_799_999_000.25
    assert found[key("agency_cron_last_duration_seconds", **at)] == 12.5
    assert found[key("agency_cron_last_exit_code", **at)] == 0
    assert found[key("agency_cron_last_run_success", **at)] == 1
    assert found[key("agency_cron_enabled", **at)] == 1
    assert found[key("agency_cron_overdue", **at)] == 0
    assert found[key("agency_cron_running", **at)] == 0
    assert found[key("agency_cron_next_run_timestamp_seconds", **at)] == 1_800_000_060.0
    assert found[key("agency_cron_runs_total", status="success", **at)] == 3
    assert found[key("agency_cron_runs_total", status="failed", **at)] == 1


def test_runs_total_counts_any_status_but_running():
    """The status vocabulary is open: a status this version never heard of is counted;
    `running` is not an outcome (the counter would go down when the run ends)."""
    odd = task("odd", runs={"lost": 2, "paused-by-operator": 4, "running": 1})
    found = samples(text_of(snapshot(odd)))
    at = {"task": "odd", "host": "web1"}
    assert found[key("agency_cron_runs_total", status="paused-by-operator", **at)] == 4
    assert found[key("agency_cron_runs_total", status="lost", **at)] == 2
    assert key("agency_cron_runs_total", status="running", **at) not in found
    # the usual outcomes start at 0, so that increase() sees the first failure
    for status in ("success", "failed", "timeout", "killed", "skipped", "retry-scheduled"):
        assert found[key("agency_cron_runs_total", status=status, **at)] == 0


def test_a_task_that_never_ran_has_zero_times_and_no_invented_figures():
    found = samples(text_of(snapshot(task("fresh"))))
    at = {"task": "fresh", "host": "web1"}
    assert found[key("agency_cron_last_run_timestamp_seconds", **at)] == 0
    assert found[key("agency_cron_last_success_timestamp_seconds", **at)] == 0
    for name in (
        "agency_cron_last_duration_seconds",
        "agency_cron_last_exit_code",
        "agency_cron_last_run_success",
    ):
        assert key(name, **at) not in found


def test_a_failed_task_and_a_disabled_one():
    failed = task(
        "sync",
        last_run=1_799_999_500.0,
        last_status="timeout",
        last_duration=30.0,
        last_exit_code=124,
        overdue=True,
    )
    disabled = task("old", enabled=False, next_run=None)
    found = samples(text_of(snapshot(failed, disabled)))
    assert found[key("agency_cron_last_run_success", task="sync", host="web1")] == 0
    assert found[key("agency_cron_last_exit_code", task="sync", host="web1")] == 124
    assert found[key("agency_cron_overdue", task="sync", host="web1")] == 1
    assert found[key("agency_cron_enabled", task="old", host="web1")] == 0
    assert key("agency_cron_next_run_timestamp_seconds", task="old", host="web1") not in found


def test_user_label_only_where_the_task_sets_one():
    found = samples(text_of(snapshot(task("as-www", user="www-data"), task("plain"))))
    assert key("agency_cron_enabled", task="as-www", host="web1", user="www-data") in found
    assert key("agency_cron_enabled", task="plain", host="web1") in found


def test_history_and_self_figures():
    found = samples(text_of(snapshot()))
    assert found[key("agency_cron_history_rows", host="web1")] == 12
    assert found[key("agency_cron_history_bytes", host="web1")] == 4096
    assert found[key("agency_cron_metrics_scrape_duration_seconds", host="web1")] == 0.25
    assert found[key("agency_cron_metrics_generated_timestamp_seconds", host="web1")] == (
        1_800_000_000.5
    )


@pytest.mark.parametrize(
    "tasks",
    [
        (),
        (SUCCEEDED,),
        (task("fresh"), task("as-www", user="www-data", enabled=False, next_run=None)),
        (task('quote"and\\back', runs={"weird status": 1}),),
    ],
    ids=["empty", "succeeded", "mixed-labels", "escaping"],
)
def test_promtool_accepts_every_shape(tasks):
    promtool_check(text_of(snapshot(*tasks)))


def test_label_values_are_escaped():
    text = text_of(snapshot(task('quote"and\\back')))
    found = samples(text)
    assert key("agency_cron_enabled", task='quote"and\\back', host="web1") in found
