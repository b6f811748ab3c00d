"""What cron's every run costs: the rendered wrapper's bootstrap imports the standard library
and a handful of agency-cron's own standard-library modules, nothing else; and the runner
refuses a spec whose format it does not know."""

from __future__ import annotations

import json
import marshal
import os
import re
import subprocess
import sys

import pytest

# What a run of a task may import from agency-cron, and why:
ALLOWED = {
    "agency_cron",  # the package (its __init__ is kept empty for this)
    "agency_cron.runner",  # the run itself
    "agency_cron.history",  # the run's rows in STATE_DIR/history.db (sqlite3 only)
    "agency_cron.secrets",  # masking of the output (Redactor), standard library only
    "agency_cron.statuses",  # the run-status vocabulary: a leaf of constants, no imports
    "agency_cron.timing",  # kill grace, retry delays and jitter: shared with the exporters,
    # standard library only (the runner and the systemd/Kubernetes exports must agree)
}
# Imported only by tasks that need them (not by these tasks): agency_cron.ping (a task
# with ping_url), agency_cron.schedule and cronsim (a zoned or one-time task started by
# cron), agency_cron.alerts and apprise (an alert being sent).
NOT_STDLIB_ALLOWED: set[str] = set()

MANIFEST = """
tasks:
  - name: ok
    schedule: "*/5 * * * *"
    command: echo fine
  - name: fails
    schedule: "*/5 * * * *"
    command: echo broken >&2; exit 3
  - name: secret
    schedule: "*/5 * * * *"
    command: echo "token is $API_TOKEN"
    env:
      API_TOKEN: s3cret-value-123
  - name: retried
    schedule: "*/5 * * * *"
    command: exit 1
    retries: 1
    retry_delay: 1s
"""


def imported(stderr: str) -> set[str]:
    """Module names from the interpreter's -X importtime report."""
    return {m[1] for m in re.finditer(r"^import time:\s+\d+ \|\s+\d+ \|\s*(\S+)$", stderr, re.M)}


def run_wrapper(env, name: str) -> subprocess.CompletedProcess:
    wrapper = env.agency_root / "scripts" / "cronjobs" / f"{name}.sh"
    return subprocess.run(
        [str(wrapper)],
        capture_output=True,
        text=True,
        env={
            "PATH": os.environ["PATH"],
            "HOME": str(env.root),
            "PYTHONPROFILEIMPORTTIME": "1",  # honoured under -S -P (not under -I)
            "AGENCY_CRON_SCHEDULED": "no",
        },
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize(("name", "code"), [("ok", 0), ("fails", 3), ("secret", 0), ("retried", 1)])
def test_the_bootstrap_imports_only_the_standard_library_and_the_run_path(env, cli, name, code):
    env.write_manifest(MANIFEST)
    assert cli(*env.args("install"))[0] == 0
    result = run_wrapper(env, name)
    assert result.returncode == code, result.stderr
    modules = imported(result.stderr)
    assert "agency_cron.runner" in modules  # the report is there at all
    ours = {m for m in modules if m == "agency_cron" or m.startswith("agency_cron.")}
    assert ours <= ALLOWED, ours - ALLOWED
    foreign = {m for m in modules - ours if m.split(".")[0] not in sys.stdlib_module_names}
    assert foreign <= NOT_STDLIB_ALLOWED, foreign
    if name == "secret":
        assert "s3cret-value-123" not in result.stdout


def runner(spec_path, *, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "agency_cron.runner", str(spec_path)],
        input=stdin,
        capture_output=True,
        text=True,
        env={**os.environ, "AGENCY_CRON_SCHEDULED": "no"},
        timeout=60,
        check=False,
    )


@pytest.fixture
def installed_spec(env, cli, tmp_path):
    marker = tmp_path / "ran"
    env.write_manifest(
        f"""
        tasks:
          - name: touch
            schedule: "@daily"
            command: touch {marker}
        """
    )
    assert cli(*env.args("install"))[0] == 0
    spec = json.loads((env.state_dir / "tasks" / "touch.json").read_text())
    assert spec["version"] == 1
    return spec, marker


@pytest.mark.parametrize("version", [2, 0, "1", None])
def test_a_spec_of_another_version_is_refused(installed_spec, tmp_path, version):
    spec, marker = installed_spec
    if version is None:
        del spec["version"]
    else:
        spec["version"] = version
    path = tmp_path / "other.json"
    path.write_text(json.dumps(spec))
    result = runner(path)
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"agency-cron: error: {path}: task spec of")
    assert "this runner reads version 1" in lines[0]
    assert "Traceback" not in result.stderr and not marker.exists()


def test_the_marshal_copy_is_checked_too(env, installed_spec):
    """The runner prefers NAME.marshal: its version is checked the same way."""
    spec, marker = installed_spec
    copy = env.state_dir / "tasks" / "touch.marshal"
    copy.write_bytes(marshal.dumps({**spec, "version": 7}))
    result = runner(env.state_dir / "tasks" / "touch.json")
    assert result.returncode == 2 and "task spec of version 7" in result.stderr
    assert not marker.exists()


def test_stdin_spec_version_and_garbage(installed_spec):
    spec, marker = installed_spec
    result = runner("-", stdin=json.dumps({**spec, "version": 3}))
    assert result.returncode == 2
    assert result.stderr.startswith("agency-cron: error: the task spec on stdin: task spec of")
    garbage = runner("-", stdin="{not json")
    assert garbage.returncode == 2 and len(garbage.stderr.splitlines()) == 1
    assert "Traceback" not in garbage.stderr and not marker.exists()


def test_an_installed_spec_runs(env, installed_spec):
    """The control: the spec install wrote has the version the runner reads."""
    _, marker = installed_spec
    result = runner(env.state_dir / "tasks" / "touch.json")
    assert result.returncode == 0, result.stderr
    assert marker.exists()
