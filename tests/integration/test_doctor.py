"""`doctor`: a real install into a `file:` crontab, then each problem made for real and found.

No mocks: the crontab file is edited, wrappers are chmod-ed and deleted, logrotate -d runs,
Apprise parses the URLs. The healthy case starts a real `cron -f` when none is running
(and stops only the daemon it started).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time

import pytest

from agency_cron import doctor, render
from agency_cron.config import load_settings
from agency_cron.manifest import load_manifest

CRON = shutil.which("cron") or "/usr/sbin/cron"
CHECKS = {
    "cron-daemon",
    "crontab-entries",
    "drift",
    "wrappers",
    "log-dirs",
    "logrotate",
    "config-permissions",
    "alert-urls",
    "ping-urls",  # heartbeat ping URLs parse and resolve (issue 12)
    "failure-delivery",
    "commands",
    "overrides",  # says where enable/disable differ from the manifest (issue 9, point 7)
    "metrics-textfile",
    "shared-history",
}

MANIFEST = """\
tasks:
  - name: alpha
    description: first task
    schedule: "*/5 * * * *"
    command: echo alpha
  - name: beta
    schedule: ["0 1 * * *", "@every 30m"]
    command: FOO=1 /bin/true --flag
    alert_urls: ["json://localhost:8080/hook"]
"""


def diagnose(env) -> list[doctor.Finding]:
    settings = load_settings(env.config)
    return doctor.diagnose(settings, load_manifest(env.manifest, settings), env.manifest)


def problems(env) -> list[doctor.Finding]:
    """Failing findings, the cron daemon left out (these tests do not start one)."""
    return [f for f in diagnose(env) if not f.ok and f.check != "cron-daemon"]


@pytest.fixture
def installed(env, cli):
    env.install(cli, MANIFEST)
    return env


@pytest.fixture
def cron_running(tmp_path):
    """Reuses a running cron daemon or starts `cron -f`; stops only the one it started.

    Yields True when this fixture owns the daemon (so it surely runs during the test).
    """
    if doctor.cron_daemon_pids():
        yield False
        return
    if os.geteuid() != 0 or not os.access(CRON, os.X_OK):
        pytest.fail(
            "starting a cron daemon needs root and the cron package (make test installs it)"
        )
    with (tmp_path / "cron.out").open("wb") as out:
        process = subprocess.Popen([CRON, "-f"], stdin=subprocess.DEVNULL, stdout=out, stderr=out)
    try:
        _wait_until_listed(process)
        # It exits at once when another daemon holds the pid file lock: that one is reused.
        yield process.poll() is None
    finally:
        _stop(process)


def _wait_until_listed(process: subprocess.Popen) -> None:
    # Not a timing assertion: a deadline so a broken daemon cannot hang the test.
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and process.poll() is None:
        if process.pid in doctor.cron_daemon_pids():
            return
        time.sleep(0.05)


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def only(findings: list[doctor.Finding]) -> doctor.Finding:
    assert len(findings) == 1, findings
    return findings[0]


def test_healthy_install_is_fully_healthy(installed, cron_running):
    before = bool(doctor.cron_daemon_pids())
    findings = diagnose(installed)
    after = bool(doctor.cron_daemon_pids())
    assert {f.check for f in findings} == CHECKS
    daemon = only([f for f in findings if f.check == "cron-daemon"])
    # Our own daemon surely ran; one we reused belongs to someone else and may come or go.
    assert daemon.ok if cron_running else daemon.ok in (before, after)
    assert [f for f in findings if not f.ok and f.check != "cron-daemon"] == []
    assert all(f.fix is None for f in findings if f.ok)
    if cron_running:
        assert doctor.healthy(findings) and doctor.as_json(findings)["healthy"] is True


def test_json_shape(installed):
    data = doctor.as_json(diagnose(installed))
    assert set(data) == {"version", "healthy", "findings"} and data["version"] == 1
    assert isinstance(data["healthy"], bool)
    for finding in data["findings"]:
        assert set(finding) == {"check", "ok", "detail", "fix", "task"}
        assert finding["check"] in CHECKS and isinstance(finding["ok"], bool)
    assert json.loads(json.dumps(data)) == data


def test_cron_daemon_finding_matches_reality(installed):
    """With a daemon running (not ours to stop) the finding is ok; without, it names the fix."""
    daemon = only([f for f in diagnose(installed) if f.check == "cron-daemon"])
    if doctor.cron_daemon_pids():
        assert daemon.ok and daemon.fix is None
        return
    assert not daemon.ok and daemon.fix in (
        "service cron start",
        "systemctl start cron",
        "service crond start",
        "systemctl start crond",
    )


def _edit_crontab(env, old: str, new: str) -> None:
    text = env.crontab.read_text()
    assert old in text
    env.crontab.write_text(text.replace(old, new))


def test_hand_edited_line_is_drift_and_install_restores_it(installed, cli):
    wrapper = installed.agency_root / "scripts/cronjobs/alpha.sh"
    _edit_crontab(installed, f"*/5 * * * * {wrapper}", f"*/7 * * * * {wrapper}")
    finding = only(problems(installed))
    assert (finding.check, finding.task, finding.fix) == ("drift", "alpha", "agency-cron install")
    assert f"`*/7 * * * * {wrapper} # agency-cron:alpha`" in finding.detail
    assert f"`*/5 * * * * {wrapper} # agency-cron:alpha`" in finding.detail
    assert cli(*installed.args("install"))[0] == 0
    assert problems(installed) == []


def test_line_commented_out_by_hand_is_drift_but_disable_is_not(installed, cli):
    wrapper = installed.agency_root / "scripts/cronjobs/alpha.sh"
    _edit_crontab(installed, f"*/5 * * * * {wrapper}", f"# */5 * * * * {wrapper}")
    finding = only(problems(installed))
    assert finding.check == "drift" and "commented out by hand" in finding.detail
    assert cli(*installed.args("install"))[0] == 0
    assert cli(*installed.args("disable", "alpha"))[0] == 0
    assert problems(installed) == []


def test_missing_managed_line(installed):
    lines = installed.crontab.read_text().splitlines(keepends=True)
    installed.crontab.write_text("".join(x for x in lines if not x.endswith(":alpha\n")))
    finding = only(problems(installed))
    assert (finding.check, finding.task, finding.fix) == (
        "crontab-entries",
        "alpha",
        "agency-cron install",
    )
    assert "no managed line" in finding.detail


def test_manifest_change_not_installed_is_not_drift(installed):
    installed.write_manifest(MANIFEST.replace('"*/5 * * * *"', '"*/10 * * * *"'))
    found = problems(installed)
    assert "drift" not in {f.check for f in found}
    entry = only([f for f in found if f.check == "crontab-entries"])
    assert entry.task == "alpha" and "manifest changed since the last install" in entry.detail


def test_task_dropped_from_manifest_leaves_a_stale_line(installed):
    installed.write_manifest(MANIFEST.split("  - name: beta")[0])
    found = problems(installed)
    entry = only([f for f in found if f.check == "crontab-entries"])
    assert entry.task == "beta" and "no longer in the manifest" in entry.detail
    assert entry.fix == "agency-cron install"


def test_wrapper_not_executable(installed):
    wrapper = installed.agency_root / "scripts/cronjobs/alpha.sh"
    wrapper.chmod(0o644)
    finding = only(problems(installed))
    assert (finding.check, finding.task) == ("wrappers", "alpha")
    assert finding.fix == f"chmod 755 {wrapper}" and "0644" in finding.detail


def test_wrapper_deleted(installed):
    wrapper = installed.agency_root / "scripts/cronjobs/beta.sh"
    wrapper.unlink()
    finding = only(problems(installed))
    assert (finding.check, finding.task, finding.fix) == ("wrappers", "beta", "agency-cron install")
    assert str(wrapper) in finding.detail and "missing" in finding.detail


def test_wrapper_edited_by_hand_is_outdated(installed):
    wrapper = installed.agency_root / "scripts/cronjobs/alpha.sh"
    wrapper.write_text(wrapper.read_text() + "echo extra\n")
    finding = only(problems(installed))
    assert (finding.check, finding.task, finding.fix) == (
        "wrappers",
        "alpha",
        "agency-cron install",
    )
    assert "task spec outdated" in finding.detail


def test_cron_log_dir_removed(installed):
    folder = installed.log_dir / "cron"
    shutil.rmtree(folder)
    finding = only(problems(installed))
    assert finding.check == "log-dirs"
    assert finding.fix == f"mkdir -p {folder} && chmod 755 {folder}"
    subprocess.run(finding.fix, shell=True, check=True)  # the fix really fixes it
    assert problems(installed) == []


def test_logrotate_config_world_writable(installed):
    config = installed.logrotate_dir / "agency_stack_cron"
    config.chmod(0o666)
    finding = only(problems(installed))
    assert finding.check == "logrotate" and finding.fix == f"chmod 644 {config}"
    assert "0666" in finding.detail


def test_logrotate_unknown_option(installed):
    config = installed.logrotate_dir / "agency_stack_cron"
    with config.open("a") as handle:
        handle.write("dailyy\n")
    finding = only(problems(installed))
    assert finding.check == "logrotate" and finding.fix == "agency-cron install"
    assert "unknown option 'dailyy'" in finding.detail and str(config) in finding.detail


def test_config_with_a_secret_readable_by_everyone(installed, cli):
    secret = "s3cr3t-token-value-xyz"
    installed.add_config(f"API_TOKEN={secret}\n")
    # The runner's redaction list lives in the task specs: reinstall so they are current.
    assert cli(*installed.args("install"))[0] == 0
    installed.config.chmod(0o644)
    findings = diagnose(installed)
    finding = only([f for f in findings if not f.ok and f.check != "cron-daemon"])
    assert finding.check == "config-permissions"
    assert finding.fix == f"chmod 600 {installed.config.resolve()}"
    assert "API_TOKEN" in finding.detail
    assert secret not in json.dumps(doctor.as_json(findings))
    installed.config.chmod(0o600)
    assert problems(installed) == []


def test_invalid_alert_urls_are_named_without_credentials(installed, cli):
    secret = "hunter2-very-secret"
    installed.add_config(f"ALERT_URLS=notaservice://x notaservice://admin:{secret}@example.com\n")
    installed.config.chmod(0o600)
    assert cli(*installed.args("install"))[0] == 0
    findings = diagnose(installed)
    bad = [f for f in findings if not f.ok and f.check != "cron-daemon"]
    assert {f.check for f in bad} == {"alert-urls"} and len(bad) == 2
    assert "notaservice://x" in bad[0].detail
    assert "example.com" in bad[1].detail and secret not in bad[1].detail
    assert secret not in json.dumps(doctor.as_json(findings))
    assert all(f.fix for f in bad)


def test_command_not_in_crons_path(installed, cli):
    installed.write_manifest(MANIFEST.replace("echo alpha", "does-not-exist-xyz --flag"))
    assert cli(*installed.args("install"))[0] == 0
    finding = only(problems(installed))
    assert (finding.check, finding.task) == ("commands", "alpha")
    assert finding.detail.startswith("`does-not-exist-xyz` not found in PATH=")
    assert finding.detail.endswith(f":{render.CRON_PATH}")
    assert finding.fix == "use an absolute path in the manifest, or set env PATH"


def test_command_resolves_with_the_tasks_own_path(installed, cli, tmp_path):
    tools = tmp_path / "tools"
    tools.mkdir()
    tool = tools / "my-tool"
    tool.write_text("#!/bin/sh\nexit 0\n")
    tool.chmod(0o755)
    own_path = f"command: my-tool --now\n    env: {{PATH: '{tools}:/usr/bin:/bin'}}"
    installed.write_manifest(MANIFEST.replace("command: echo alpha", own_path))
    assert cli(*installed.args("install"))[0] == 0
    assert problems(installed) == []
