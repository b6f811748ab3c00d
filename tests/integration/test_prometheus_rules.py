"""The shipped alert rules: `promtool check rules` and their unit tests (`promtool test
rules`), and every metric the rules name is one that `agency-cron metrics` produces."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest
import yaml

PROMTOOL = "/usr/bin/promtool"  # Debian's prometheus package (.ci/run installs it)
CONTRIB = Path(__file__).resolve().parents[2] / "contrib" / "prometheus"
RULES = CONTRIB / "agency-cron.rules.yml"
TESTS = CONTRIB / "agency-cron.rules.test.yml"


def promtool(*args: str) -> subprocess.CompletedProcess:
    if not os.access(PROMTOOL, os.X_OK):
        pytest.fail(f"{PROMTOOL} is missing: apt-get install prometheus (.ci/run does)")
    return subprocess.run(
        [PROMTOOL, *args], capture_output=True, text=True, cwd=CONTRIB, timeout=120, check=False
    )


def test_rules_pass_promtool_check():
    result = promtool("check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 4 rules found" in result.stdout


def test_rules_pass_their_unit_tests():
    result = promtool("test", "rules", str(TESTS))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_alert_is_unit_tested():
    alerts = {r["alert"] for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]}
    tested = {
        case["alertname"]
        for test in yaml.safe_load(TESTS.read_text())["tests"]
        for case in test.get("alert_rule_test", [])
        if case.get("exp_alerts")
    }
    assert (
        alerts
        == tested
        == {
            "AgencyCronTaskFailing",
            "AgencyCronTaskOverdue",
            "AgencyCronTaskNeverSucceeded",
            "AgencyCronMetricsStale",
        }
    )


def test_the_rules_name_only_metrics_agency_cron_produces(env, cli):
    """A renamed metric would leave a rule that never fires; promtool cannot see that."""
    env.write_manifest('tasks:\n  - name: a\n    schedule: "@hourly"\n    command: "true"\n')
    code, produced, err = cli(*env.args("metrics"))
    assert code == 0, err
    names = set(re.findall(r"^# HELP (agency_cron_\w+)", produced, re.M))
    used = set(re.findall(r"\bagency_cron_\w+", RULES.read_text()))
    used |= set(re.findall(r"\bagency_cron_\w+", TESTS.read_text()))
    assert used and used <= names, used - names
