"""A malformed STATE_DIR/overrides.json (hand-edited, half-written by another tool) is refused
whole: every command says so in one line naming the file (exit 2, no traceback, nothing
changed), and doctor reports it as a failed finding among the others."""

from __future__ import annotations

import pytest

from agency_cron import doctor
from agency_cron.config import load_settings
from agency_cron.manifest import load_manifest

MANIFEST = """\
tasks:
  - name: alpha
    schedule: "*/5 * * * *"
    command: echo alpha
"""

MALFORMED = [
    ("[]", "expected an object"),
    ('{"enabled": null}', "enabled: expected an object"),
    ('{"enabled": []}', "enabled: expected an object"),
    ('{"enabled": {"alpha": "false"}}', "enabled: alpha: expected true or false"),
    ('{"enabled": {"alpha": null}}', "enabled: alpha: expected true or false"),
    ('"enabled"', "expected an object"),
]


@pytest.fixture
def installed(env, cli):
    env.install(cli, MANIFEST)
    return env


@pytest.mark.parametrize(("content", "why"), MALFORMED)
@pytest.mark.parametrize("command", [["list"], ["status", "--json"], ["disable", "alpha"]])
def test_every_command_refuses_it_in_one_line(installed, cli, content, why, command):
    path = installed.state_dir / "overrides.json"
    path.write_text(content)
    before = installed.snapshot(), installed.crontab.read_bytes()
    code, out, err = cli(*installed.args(*command))
    assert code == 2, err
    assert "Traceback" not in err
    (line,) = err.splitlines()
    assert line.startswith(f"agency-cron: error: {path}: ")
    assert why in line
    assert (installed.snapshot(), installed.crontab.read_bytes()) == before


@pytest.mark.parametrize(("content", "why"), MALFORMED)
def test_doctor_reports_it_as_a_failed_finding(installed, content, why):
    path = installed.state_dir / "overrides.json"
    path.write_text(content)
    settings = load_settings(installed.config)
    manifest = load_manifest(installed.manifest, settings)
    (finding,) = doctor.check_overrides(settings, manifest)
    assert (finding.check, finding.ok) == ("overrides", False)
    assert str(path) in finding.detail and why in finding.detail
    assert finding.fix is not None and finding.fix.startswith(f"rm {path}")


def test_a_well_formed_file_still_reads(installed, cli):
    (installed.state_dir / "overrides.json").write_text(
        '{"version": 1, "enabled": {"alpha": false}}'
    )
    code, out, err = cli(*installed.args("list"))
    assert code == 0, err
    assert "disabled locally" in out
