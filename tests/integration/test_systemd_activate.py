"""A `systemd:` target whose systemctl fails: one line, exit 2, nothing left behind.

systemd is not the init here, so `install` would skip systemctl altogether. The test runs
install in a private mount namespace where /run/systemd/system exists (the sign systemd
gives that it runs, sd_booted(3)); the real systemctl then believes it and fails for real,
for want of systemd's bus. Nothing outside the namespace sees the mount.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

MANIFEST = """\
tasks:
  - name: nightly
    schedule: "0 3 * * *"
    command: "true"
"""

PRETEND_SYSTEMD = (
    'mount -t tmpfs agency-cron-test /run && mkdir -p /run/systemd/system && exec "$@"'
)


@pytest.fixture
def systemd_site(tmp_path, clean_environ, make_env):
    made = make_env(tmp_path, crontab=f"systemd:{tmp_path}/units", manifest=MANIFEST)
    return tmp_path, made.config, made.manifest


def _in_pretend_systemd(*command: str) -> subprocess.CompletedProcess:
    if os.geteuid() != 0 or not shutil.which("unshare"):
        pytest.fail("this test needs root and unshare(1) for a private mount namespace")
    probe = subprocess.run(
        ["unshare", "--mount", "sh", "-c", PRETEND_SYSTEMD, "sh", "true"], capture_output=True
    )
    if probe.returncode:
        pytest.skip(f"no private mount namespace here: {probe.stderr.decode().strip()}")
    return subprocess.run(
        ["unshare", "--mount", "sh", "-c", PRETEND_SYSTEMD, "sh", *command],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "NO_COLOR": "1", "XDG_CACHE_HOME": "/nonexistent-cache"},
        check=False,
    )


def test_failing_systemctl_is_one_line_and_install_is_undone(systemd_site):
    root, config, manifest = systemd_site
    ran = _in_pretend_systemd(
        sys.executable, "-m", "agency_cron", "--config", str(config), "--manifest", str(manifest),
        "install",
    )  # fmt: skip
    assert ran.returncode == 2, ran.stderr
    assert "Traceback" not in ran.stderr and "CalledProcessError" not in ran.stderr
    lines = ran.stderr.strip().splitlines()
    assert len(lines) == 1, ran.stderr
    assert lines[0].startswith("agency-cron: error: systemctl daemon-reload"), lines[0]
    # The failure undid the install: no unit, wrapper or spec was left behind.
    units = root / "units"
    assert not units.exists() or list(units.iterdir()) == []
    assert not (root / "agency" / "scripts" / "cronjobs" / "nightly.sh").exists()


def test_without_systemd_running_install_writes_the_units_only(systemd_site):
    """The same install outside the namespace: systemctl is not called, the units are the
    result (what the failing case above undid)."""
    root, config, manifest = systemd_site
    if os.path.isdir("/run/systemd/system"):
        pytest.skip("systemd runs here: install would really enable the timer")
    ran = subprocess.run(
        [sys.executable, "-m", "agency_cron", "--config", str(config), "--manifest", str(manifest),
         "install"],
        capture_output=True, text=True, timeout=120, check=False,
        env={**os.environ, "NO_COLOR": "1", "XDG_CACHE_HOME": str(root / "cache")},
    )  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    assert sorted(p.name for p in (root / "units").iterdir()) == [
        "agency-cron-nightly.service",
        "agency-cron-nightly.timer",
    ]
