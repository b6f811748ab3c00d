"""A lowercase secret-named variable (api_token) is masked in every output that once used a
copy of the rule: the overdue report sent through Apprise, the runner's environment scan."""

from __future__ import annotations

import json
import os

from agency_cron import reports, runner
from agency_cron.config import load_settings
from agency_cron.results import Overdue

SECRET = "lowercase-named-s3cret"


def test_the_overdue_alert_masks_a_lowercase_api_token(env, http_recorder):
    environ = {
        **os.environ,
        "api_token": SECRET,
        "ALERT_URLS": f"json://127.0.0.1:{http_recorder.port}/",
    }
    settings = load_settings(environ=environ)
    overdue = [Overdue("backup", None, f"failed with {SECRET}")]
    outcome = reports.alert_overdue(settings, overdue)
    assert outcome == "sent to 1 target(s)"
    (request,) = http_recorder.wait_for(1)
    assert SECRET not in request.body.decode()
    assert "failed with ***" in json.loads(request.body)["message"]


def test_the_runner_masks_a_lowercase_api_token_of_its_environment(monkeypatch):
    monkeypatch.setenv("api_token", SECRET)
    assert SECRET in runner._secrets({"secrets": []}, [])
