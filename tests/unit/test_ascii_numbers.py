"""Numbers and durations are ASCII digits only: Python's \\d, isdigit() and float() also read
other scripts' digits (Arabic-Indic ٥ is 5), which cron, systemd and the operator would not."""

from __future__ import annotations

import pytest

from agency_cron.checks.models import parse_size
from agency_cron.config import load_settings
from agency_cron.errors import ConfigError
from agency_cron.manifest import parse_duration
from agency_cron.schedule import ScheduleError, normalise

FIVE = "\u0665"  # ARABIC-INDIC DIGIT FIVE
FULLWIDTH_ONE = "\uff11"


@pytest.mark.parametrize("text", [f"{FIVE}m", f"1h{FIVE}m", f"{FULLWIDTH_ONE}d", f"{FIVE}s"])
def test_durations_refuse_other_digits(text):
    with pytest.raises(ValueError, match="expected a duration"):
        parse_duration(text)
    assert parse_duration("1h5m") == 3900  # ASCII still works


@pytest.mark.parametrize(
    "expr", [f"@every {FIVE}m", f"once 2030-01-0{FIVE} 10:00", f"{FIVE} * * * *"]
)
def test_schedules_refuse_other_digits(expr):
    with pytest.raises(ScheduleError):
        normalise(expr, intervals=True)


@pytest.mark.parametrize("key", ["LOG_RETENTION_DAYS", "ALERT_TIMEOUT"])
def test_config_numbers_refuse_other_digits(key, tmp_path):
    environ = {"AGENCY_ROOT": str(tmp_path), key: f"{FIVE}0"}
    with pytest.raises(ConfigError, match=key):
        load_settings(environ=environ)


def test_sizes_refuse_other_digits():
    with pytest.raises(ValueError):
        parse_size(f"{FIVE}M")
