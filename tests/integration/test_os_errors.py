"""OS errors on configured paths: one line naming the path and its setting, exit 2, no
traceback, nothing half-written (issue 9, point 8).

Real file systems: /proc, a regular file where a folder must be, small tmpfs mounts that
are full or read-only (we are root; each mount is taken down after its test).
"""

from __future__ import annotations

import contextlib
import errno
import subprocess
import uuid
from pathlib import Path

import pytest

MANIFEST = """\
tasks:
  - name: alpha
    schedule: "*/5 * * * *"
    command: echo alpha
  - name: beta
    schedule: "0 1 * * *"
    command: echo beta
"""


@pytest.fixture
def tmpfs():
    """mount(folder, ro=False, size="64k"): a small tmpfs on `folder`, unmounted after the test."""
    mounted: list[Path] = []

    def mount(folder: Path, ro: bool = False, size: str = "64k") -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        options = f"size={size}" + (",ro" if ro else "")
        subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)], check=True)
        mounted.append(folder)
        return folder

    yield mount
    for folder in reversed(mounted):
        subprocess.run(["umount", str(folder)], check=True)


def fill(folder: Path) -> None:
    """Write to `folder` until its file system is full."""
    with open(folder / "filler", "wb", buffering=0) as handle, contextlib.suppress(OSError):
        while True:
            handle.write(b"\0" * 4096)
    try:
        (folder / "filler-2").write_bytes(b"x" * 4096)
    except OSError as exc:
        assert exc.errno == errno.ENOSPC
    else:
        raise AssertionError(f"{folder} is not full")


def fails_cleanly(result, *names: str) -> str:
    """Exit 2, no traceback, one line on stderr naming each of `names`; returns the line."""
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("agency-cron: error: ")
    for name in names:
        assert name in lines[0], lines[0]
    return lines[0]


def test_file_crontab_under_proc(env, cli_process):
    env.write_manifest(MANIFEST)
    before = env.snapshot()
    result = cli_process(*env.args("--crontab", "file:/proc/x/crontab", "install"))
    fails_cleanly(result, "/proc/x/crontab", "CRONTAB")
    assert env.snapshot() == before and not Path("/proc/x").exists()


def test_file_crontab_whose_parent_is_a_regular_file(env, cli_process):
    env.write_manifest(MANIFEST)
    blocker = env.root / "not-a-folder"
    blocker.write_text("a file\n")
    before = env.snapshot()
    for command in ("validate", "install"):
        result = cli_process(*env.args("--crontab", f"file:{blocker}/crontab", command))
        line = fails_cleanly(result, f"{blocker}/crontab", "CRONTAB")
        assert f"{blocker} is a file, not a folder" in line
    assert env.snapshot() == before


def test_state_dir_under_proc(env, cli_process):
    env.write_manifest(MANIFEST)
    before = env.snapshot()
    result = cli_process(*env.args("install"), env={"STATE_DIR": "/proc/nope"})
    fails_cleanly(result, "/proc/nope", "STATE_DIR")
    assert env.snapshot() == before and not env.crontab.exists()


def test_state_dir_component_over_name_max_is_found_by_validate(env, cli_process):
    env.write_manifest(MANIFEST)
    long_dir = str(env.root / ("s" * 300) / "state")
    before = env.snapshot()
    for command in ("validate", "install"):
        result = cli_process(*env.args(command), env={"STATE_DIR": long_dir})
        line = fails_cleanly(result, "STATE_DIR", "NAME_MAX", "of 300 bytes")
        assert str(env.root) in line
    assert env.snapshot() == before and not env.crontab.exists()


def test_file_crontab_in_a_missing_folder_creates_no_folder(env, cli_process):
    env.write_manifest(MANIFEST)
    top = Path(f"/nonexistent-{uuid.uuid4().hex[:12]}")
    before = env.snapshot()
    for command in ("validate", "install"):
        result = cli_process(*env.args("--crontab", f"file:{top}/dir/crontab", command))
        line = fails_cleanly(result, "CRONTAB", f"folder {top}/dir does not exist")
        assert not top.exists(), line
    assert env.snapshot() == before


def test_file_crontab_in_a_missing_folder_under_state_dir_is_created(env, cli_process):
    """Folders agency-cron owns are created as before: the crontab file may live there."""
    env.write_manifest(MANIFEST)
    target = env.state_dir / "crontabs" / "agency"
    result = cli_process(*env.args("--crontab", f"file:{target}", "install"))
    assert result.returncode == 0, result.stderr
    assert "# agency-cron:alpha" in target.read_text()


def test_full_disk_under_state_dir(env, cli_process, tmpfs):
    env.write_manifest(MANIFEST)
    state = tmpfs(env.root / "full")
    fill(state)
    config = env.config.read_text().replace(f"STATE_DIR={env.state_dir}", f"STATE_DIR={state}")
    env.config.write_text(config)
    before = env.snapshot()
    result = cli_process(*env.args("install"))
    line = fails_cleanly(result, str(state), "No space left on device", f"STATE_DIR={state}")
    assert env.snapshot() == before, line
    assert not env.crontab.exists()
    assert not env.agency_root.exists() and not env.log_dir.exists()


def test_full_disk_under_the_crontab_folder_rolls_everything_back(env, cli_process, tmpfs):
    """A full disk at the last step (the crontab) of an install that changes an existing
    installation: every file it already rewrote is put back, bytes, mode and mtime."""
    folder = tmpfs(env.root / "crontab.d")
    crontab = folder / "crontab"
    options = ["--crontab", f"file:{crontab}"]
    env.write_manifest(MANIFEST)
    assert cli_process(*env.args(*options, "install")).returncode == 0
    env.write_manifest(MANIFEST.replace("echo beta", "echo changed").replace("0 1", "0 2"))
    fill(folder)
    before = env.snapshot()
    result = cli_process(*env.args(*options, "install"))
    fails_cleanly(result, str(crontab), "No space left on device", "CRONTAB")
    assert env.snapshot() == before
    assert "0 1 * * *" in crontab.read_text()


def test_read_only_log_dir(env, cli_process, tmpfs):
    env.write_manifest(MANIFEST)
    read_only = tmpfs(env.root / "ro", ro=True)
    log_dir = read_only / "log"
    before = env.snapshot()
    result = cli_process(*env.args("install"), env={"LOG_DIR": str(log_dir)})
    fails_cleanly(result, str(log_dir), "Read-only file system", "LOG_DIR")
    assert env.snapshot() == before and not env.crontab.exists()
    assert not env.agency_root.exists() and not env.state_dir.exists()


def test_disable_on_a_full_state_dir_changes_nothing(env, cli_process, tmpfs):
    """enable/disable record the override and change the crontab together, or neither."""
    state = tmpfs(env.root / "state-mount", size="1m")  # room for history.db at first
    config = env.config.read_text().replace(f"STATE_DIR={env.state_dir}", f"STATE_DIR={state}")
    env.config.write_text(config)
    env.write_manifest(MANIFEST)
    assert cli_process(*env.args("install")).returncode == 0
    fill(state)
    before = env.snapshot()
    result = cli_process(*env.args("disable", "alpha"))
    fails_cleanly(result, str(state), "No space left on device", "STATE_DIR")
    assert env.snapshot() == before
    assert not (state / "overrides.json").exists()
