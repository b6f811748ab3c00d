"""Every way of starting a run gives the task the same environment (issue 9, point 3): the
wrapper cron runs, `agency-cron run`, `run --detach` and the admin API's run now, each
started from another directory with cron's bare PATH. The task sees the wrapper's PATH (the
interpreter's bin, then cron's sbin and bin folders) and the installation's root, config and
manifest, whatever the caller's environment held.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agency_cron import __version__

BARE = {"PATH": "/usr/bin:/bin", "HOME": "/root", "LANG": "C.UTF-8", "NO_COLOR": "1"}
TOKEN = "run-env-0123456789abcdef"
KEYS = (
    "PATH",
    "AGENCY_ROOT",
    "LOG_DIR",
    "STATE_DIR",
    "AGENCY_CRON_CONFIG",
    "AGENCY_CRON_MANIFEST",
    "PROBE_DIR",
)
WAIT_S = 60


@pytest.fixture
def probe(env, tmp_path) -> Path:
    """An installed task that writes its environment to PROBE_DIR/<run id>.env."""
    folder = tmp_path / "probe"
    folder.mkdir()
    env.add_config(f"ADMIN_TOKEN={TOKEN}\n")
    env.write_manifest(
        f"""\
        tasks:
          - name: probe
            schedule: "@daily"
            command: env > "$PROBE_DIR/$AGENCY_CRON_RUN_ID.env"
            env: {{PROBE_DIR: {folder}}}
        """
    )
    installed = python_m("agency_cron", *env.args("install"))
    assert installed.returncode == 0, installed.stderr
    return folder


def python_m(*args: str, cwd: str = "/", **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", *args],
        cwd=cwd,
        env={**BARE, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def seen(folder: Path, count: int) -> list[dict[str, str]]:
    """The environments the first `count` runs wrote, oldest first (waits for detached ones)."""
    deadline = time.monotonic() + WAIT_S
    while len(list(folder.glob("*.env"))) < count:
        assert time.monotonic() < deadline, f"only {list(folder.iterdir())} after {WAIT_S}s"
        time.sleep(0.1)
    files = sorted(folder.glob("*.env"), key=lambda p: p.stat().st_mtime_ns)
    found = []
    for path in files:
        pairs = (line.partition("=") for line in path.read_text().splitlines() if "=" in line)
        found.append({key: value for key, _, value in pairs if key in KEYS})
        path.unlink()
    return found


def test_wrapper_run_detach_and_run_now_give_the_same_environment(env, probe, serving, tmp_path):
    import httpx

    wrapper = env.wrapper("probe")
    elsewhere = str(tmp_path)  # a directory with no config.env or tasks.yaml
    started = subprocess.run([str(wrapper)], cwd="/", env=BARE, timeout=120, check=False)
    assert started.returncode == 0
    [by_cron] = seen(probe, 1)
    python_bin = str(Path(sys.prefix) / "bin")
    assert by_cron["PATH"].split(":")[:4] == [
        python_bin,
        "/usr/local/sbin",
        "/usr/local/bin",
        "/usr/sbin",
    ]
    assert by_cron["AGENCY_CRON_CONFIG"] == str(env.config.resolve())
    assert by_cron["AGENCY_CRON_MANIFEST"] == str(env.manifest.resolve())
    assert by_cron["AGENCY_ROOT"] == str(env.agency_root)

    # The caller's own PATH does not reach the task (the config keys would: CONTRACT.md).
    caller = {"PATH": "/usr/bin:/bin:/opt/caller/bin"}
    ran = python_m("agency_cron", *env.args("run", "probe"), cwd=elsewhere, **caller)
    assert ran.returncode == 0, ran.stderr
    detached = python_m("agency_cron", *env.args("run", "--detach", "probe"), cwd=elsewhere)
    assert detached.returncode == 0, detached.stderr
    assert seen(probe, 2) == [by_cron, by_cron]

    options = ["--config", str(env.config), "--manifest", str(env.manifest)]
    with serving(options, tmp_path / "serve.log", environ=BARE, cwd=elsewhere) as server:
        answer = httpx.post(
            f"{server.url}/api/tasks/probe/actions/run",
            headers={"Authorization": f"Bearer {TOKEN}"},
            timeout=30,
        )
        assert answer.status_code == 202, answer.text
        assert seen(probe, 1) == [by_cron]


def test_run_finds_agency_cron_on_the_path_it_gives(env, tmp_path):
    """`command: agency-cron health` (the seed's overdue-check) runs under `run` even when the
    caller's PATH has no agency-cron on it."""
    env.write_manifest(
        """\
        tasks:
          - name: overdue
            schedule: "*/15 * * * *"
            command: agency-cron --version
        """
    )
    assert shutil.which("agency-cron", path=BARE["PATH"]) is None
    assert python_m("agency_cron", *env.args("install")).returncode == 0
    ran = python_m("agency_cron", *env.args("run", "overdue"), cwd=str(tmp_path))
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert f"agency-cron {__version__}" in ran.stdout


def test_doctor_finds_logrotate_with_crons_path(env):
    """PATH=/usr/bin:/bin lacks /usr/sbin, where Debian keeps logrotate and cron."""
    assert shutil.which("logrotate", path=BARE["PATH"]) is None
    assert os.access("/usr/sbin/logrotate", os.X_OK), "apt-get install logrotate"
    env.write_manifest(
        """\
        tasks:
          - {name: alpha, schedule: "@daily", command: "true"}
        """
    )
    assert python_m("agency_cron", *env.args("install")).returncode == 0
    report = python_m("agency_cron", *env.args("doctor", "--json"))
    findings = json.loads(report.stdout)["findings"]
    logrotate = [f for f in findings if f["check"] == "logrotate"]
    assert logrotate and all(f["ok"] for f in logrotate), logrotate
