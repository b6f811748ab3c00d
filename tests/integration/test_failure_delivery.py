"""install and doctor say when a failed run would reach nobody: no alert target, and cron
would not mail the wrapper's report (MAILTO empty). Real installs into a `file:` crontab."""

from __future__ import annotations

import json

MANIFEST = """\
tasks:
  - name: nightly
    schedule: "0 3 * * *"
    command: "false"
"""


def delivery(env) -> dict:
    shown = env.process("doctor", "--json")
    found = [f for f in json.loads(shown.stdout)["findings"] if f["check"] == "failure-delivery"]
    assert len(found) == 1, shown.stdout
    return found[0]


def test_an_empty_mailto_and_no_alert_target_is_a_warning_in_install_and_doctor(env):
    env.write_manifest(MANIFEST)
    env.crontab.write_text('MAILTO=""\n')
    installed = env.process("install")
    assert installed.returncode == 0, installed.stderr
    assert "a failure of nightly reaches nobody" in installed.stderr
    assert "MAILTO is empty" in installed.stderr
    finding = delivery(env)
    assert finding["ok"] is False and "MAILTO is empty" in finding["detail"]
    assert "ALERT_URLS" in finding["fix"]


def test_cron_mail_or_an_alert_target_is_enough(env):
    env.write_manifest(MANIFEST)
    env.crontab.write_text("MAILTO=ops@example.test\n")
    installed = env.process("install")
    assert installed.returncode == 0 and "reaches nobody" not in installed.stderr
    assert delivery(env)["ok"] is True and "cron's mail" in delivery(env)["detail"]

    env.crontab.write_text('MAILTO=""\n')
    env.add_config("ALERT_URLS=json://127.0.0.1:9/hook\nALERT_ON_FAILURE=true\n")
    installed = env.process("install")
    assert installed.returncode == 0 and "reaches nobody" not in installed.stderr
    assert delivery(env) == {
        "check": "failure-delivery",
        "ok": True,
        "detail": "failures go to the alert targets",
        "fix": None,
        "task": None,
    }
