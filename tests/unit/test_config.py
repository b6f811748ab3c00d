from pathlib import Path

import pytest

from agency_cron.config import load_settings, split_urls
from agency_cron.errors import ConfigError


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_defaults_without_any_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    settings = load_settings(environ={"AGENCY_ROOT": str(tmp_path / "none")})
    assert settings.config_path is None
    assert settings.log_dir == Path("/var/log/agency_stack")
    assert settings.state_dir == Path("/var/lib/agency_stack")
    assert settings.logrotate_dir == Path("/etc/logrotate.d")
    assert settings.crontab == "user"
    assert settings.alert_urls == ()
    assert settings.alert_on_failure is False
    assert settings.log_retention_days == 7
    assert settings.get("HEALTH_CHECK_COMPONENTS") == "all"
    assert settings.get("DASHBOARD_UPDATE_INTERVAL") == "@hourly"


def test_comments_quotes_export_and_environment_override(tmp_path):
    config = write(
        tmp_path / "c.env",
        "# a comment\n"
        "export LOG_DIR=/srv/logs\n"
        "STATE_DIR='/srv/state'  # trailing comment\n"
        'ALERT_URLS="json://a.example/x, mailto://u:p@b.example"\n'
        "ALERT_ON_FAILURE=yes\n"
        "LOG_RETENTION_DAYS=14\n",
    )
    settings = load_settings(config, environ={"LOG_RETENTION_DAYS": "3"})
    assert settings.log_dir == Path("/srv/logs")
    assert settings.state_dir == Path("/srv/state")
    assert settings.alert_urls == ("json://a.example/x", "mailto://u:p@b.example")
    assert settings.alert_on_failure is True
    assert settings.log_retention_days == 3  # the process environment wins


def test_config_discovery_order(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    root = tmp_path / "root"
    root.mkdir()
    write(root / "config.env", "LOG_DIR=/from/root\n")
    assert load_settings(environ={"AGENCY_ROOT": str(root)}).log_dir == Path("/from/root")
    write(tmp_path / "config.env", "LOG_DIR=/from/cwd\n")
    assert load_settings(environ={"AGENCY_ROOT": str(root)}).log_dir == Path("/from/cwd")
    named = write(tmp_path / "named.env", "LOG_DIR=/from/env-var\n")
    environ = {"AGENCY_ROOT": str(root), "AGENCY_CRON_CONFIG": str(named)}
    assert load_settings(environ=environ).log_dir == Path("/from/env-var")
    option = write(tmp_path / "option.env", "LOG_DIR=/from/option\n")
    assert load_settings(option, environ=environ).log_dir == Path("/from/option")


def test_a_named_config_that_is_missing_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_settings(tmp_path / "nope.env", environ={})
    with pytest.raises(ConfigError, match="config file not found"):
        load_settings(environ={"AGENCY_CRON_CONFIG": str(tmp_path / "nope.env")})


def test_every_bad_value_is_reported_at_once(tmp_path):
    config = write(
        tmp_path / "c.env",
        "LOG_DIR=relative/logs\nALERT_ON_FAILURE=maybe\nLOG_RETENTION_DAYS=0\nCRONTAB=bogus\n",
    )
    with pytest.raises(ConfigError) as caught:
        load_settings(config, environ={})
    text = str(caught.value)
    for key in ("LOG_DIR", "ALERT_ON_FAILURE", "LOG_RETENTION_DAYS", "CRONTAB"):
        assert f"{config}: {key}:" in text
    assert len(caught.value.problems) == 4


def test_split_urls_on_spaces_and_commas():
    assert split_urls(" a://x ,b://y\tc://z ") == ("a://x", "b://y", "c://z")
