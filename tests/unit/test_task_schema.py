"""manifest.document_schema(): the JSON schema of a task as written, which /openapi.json
shows as the admin API's request body. What it documents must be what the manifest
accepts: its defaults and examples load, and strings its patterns generate are valid."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agency_cron.manifest import (
    DURATION_FIELDS,
    FIELD_HELP,
    SCHEDULE_PATTERN,
    Task,
    document_schema,
)
from agency_cron.schedule import ScheduleError, normalise

SCHEMA = document_schema()
PROPERTIES = SCHEMA["properties"]


def _pattern(key: str) -> str:
    form = PROPERTIES[key]
    return next(f["pattern"] for f in [form, *form.get("anyOf", [])] if "pattern" in f)


def test_every_field_is_described_and_nothing_else():
    assert set(PROPERTIES) == set(Task.model_fields) == set(FIELD_HELP)
    assert SCHEMA["additionalProperties"] is False
    assert all(PROPERTIES[key]["description"] == FIELD_HELP[key] for key in PROPERTIES)


def test_the_documented_defaults_are_the_models():
    written = {
        key: form["default"]
        for key, form in PROPERTIES.items()
        if "default" in form and key not in ("command", "script")
    }
    assert written["timeout"] == "30m" and written["retry_delay"] == "1m"
    task = Task.model_validate({"name": "a", "schedule": "@daily", "command": "true", **written})
    assert task == Task.model_validate({"name": "a", "schedule": "@daily", "command": "true"})


@pytest.mark.parametrize("key", DURATION_FIELDS)
def test_duration_examples_load(key):
    for example in PROPERTIES[key].get("examples") or PROPERTIES[key]["anyOf"][0]["examples"]:
        Task.model_validate({"name": "a", "schedule": "@daily", "command": "x", key: example})


@settings(max_examples=200)
@given(st.from_regex(re.compile(_pattern("retry_delay")), fullmatch=True).filter(bool))
def test_every_duration_the_pattern_allows_loads(text):
    Task.model_validate({"name": "a", "schedule": "@daily", "command": "x", "retry_delay": text})


@settings(max_examples=100, deadline=None)
@given(st.from_regex(re.compile(SCHEDULE_PATTERN), fullmatch=True))
def test_schedules_the_pattern_allows_are_cron_syntax(text):
    # The pattern is syntax: a reversed range (30-5) or a date that does not exist
    # (once 2030-02-31) fits it and is refused with its reason, never with a crash.
    try:
        normalise(text)
    except ScheduleError as exc:
        assert str(exc)


@pytest.mark.parametrize(
    "text",
    ["0 4 * * *", "*/15 * * * *", "0 9-17 * * mon-fri", "0 0 1 jan,jul *", "@hourly",
     "@every 5m", "@every 2h", "once 2999-01-01 00:00", "30 2 * * 1-5/2"],
)  # fmt: skip
def test_common_schedules_fit_the_pattern_and_load(text):
    assert re.fullmatch(SCHEDULE_PATTERN, text)
    normalise(text)


@pytest.mark.parametrize("text", ["* * * jan-3 *", "* * * * mon-3"])
def test_a_range_of_a_name_and_a_number_is_refused_not_a_crash(text):
    # python-crontab's second opinion raised TypeError on these (found by the test above).
    with pytest.raises(ScheduleError, match="is not a valid cron expression"):
        normalise(text)


@pytest.mark.parametrize(
    ("key", "good", "bad"),
    [
        ("name", "db-dump_2", "backup\n"),
        ("log", "cron/backup.log", "../etc/passwd"),
        ("log", "backup.log", "/var/log/x"),
        ("log", "a..b.log", "logs/"),
        ("working_dir", "/srv", "srv"),
        ("command", "echo hi", "   "),
        ("ping_url", "https://hc-ping.com/abc/{name}", "ftp://x"),
    ],
)
def test_patterns_say_what_the_model_says(key, good, bad):
    pattern = _pattern(key)
    assert re.fullmatch(pattern, good) and not re.fullmatch(pattern, bad)
    Task.model_validate({"name": "a", "schedule": "@daily", "command": "x", key: good})
    with pytest.raises(ValueError):
        Task.model_validate({"name": "a", "schedule": "@daily", "command": "x", key: bad})


def test_the_zones_are_the_ones_this_host_knows():
    zones = PROPERTIES["timezone"]["anyOf"][0]["enum"]
    assert "Europe/Paris" in zones and "UTC" in zones
    Task.model_validate({"name": "a", "schedule": "@daily", "command": "x", "timezone": zones[0]})


def test_the_example_loads():
    for example in SCHEMA["examples"]:
        Task.model_validate(example)


def test_exactly_one_of_command_and_script():
    assert SCHEMA["oneOf"] == [{"required": ["command"]}, {"required": ["script"]}]
    assert SCHEMA["required"] == ["name", "schedule"]
