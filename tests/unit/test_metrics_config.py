"""METRICS_TEXTFILE and METRICS_PUBLIC in config.env, and the built-in metrics-export task."""

from __future__ import annotations

from pathlib import Path

import pytest

from agency_cron.config import load_settings
from agency_cron.errors import ConfigError
from agency_cron.manifest import METRICS_TASK, builtin_tasks

TEXTFILE = "/var/lib/prometheus/node-exporter/agency_cron.prom"


@pytest.fixture
def settings_of(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no ./config.env
    root = str(tmp_path / "root")

    def load(**values: str):
        return load_settings(environ={"AGENCY_ROOT": root, **values})

    return load


def test_off_by_default(settings_of):
    settings = settings_of()
    assert settings.metrics_textfile is None
    assert settings.metrics_public is False
    assert builtin_tasks(settings) == []


def test_textfile_and_public(settings_of):
    settings = settings_of(METRICS_TEXTFILE=TEXTFILE, METRICS_PUBLIC="yes")
    assert settings.metrics_textfile == Path(TEXTFILE)
    assert settings.metrics_public is True


@pytest.mark.parametrize(
    "value, why",
    [
        ("agency_cron.prom", "absolute path ending in .prom"),
        ("/var/lib/prometheus/node-exporter/agency_cron.txt", "node_exporter reads only *.prom"),
    ],
)
def test_a_textfile_node_exporter_would_not_read_is_refused(settings_of, value, why):
    with pytest.raises(ConfigError) as caught:
        settings_of(METRICS_TEXTFILE=value)
    assert caught.value.problems == [
        f"environment: METRICS_TEXTFILE: expected an absolute path ending in .prom"
        f" (node_exporter reads only *.prom), got {value!r}"
    ]
    assert why in caught.value.problems[0]


def test_metrics_public_must_be_a_boolean(settings_of):
    with pytest.raises(ConfigError) as caught:
        settings_of(METRICS_PUBLIC="sometimes")
    assert caught.value.problems == [
        "environment: METRICS_PUBLIC: expected true or false, got 'sometimes'"
    ]


def test_the_builtin_task_runs_the_bundled_script_every_minute(settings_of, tmp_path):
    settings = settings_of(METRICS_TEXTFILE=TEXTFILE)
    (found,) = builtin_tasks(settings)
    assert found.name == METRICS_TASK == "metrics-export"
    assert found.schedule == ("* * * * *",)
    assert found.command == f"{tmp_path}/root/scripts/cronjobs/metrics_export_cron.sh"
    assert found.env == {"METRICS_TEXTFILE": TEXTFILE}
    assert found.overlap == "skip" and found.alert == "on_change"
    assert found.timeout < 300  # a stuck export must end before the next ones pile up


def test_a_root_with_a_space_is_quoted(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    settings = load_settings(
        environ={"AGENCY_ROOT": str(tmp_path / "my root"), "METRICS_TEXTFILE": TEXTFILE}
    )
    (found,) = builtin_tasks(settings)
    assert found.command == f"'{tmp_path}/my root/scripts/cronjobs/metrics_export_cron.sh'"
