"""`python -m agency_cron.installation`: what make setup-cronjobs places under AGENCY_ROOT.

The checkout's config.env and tasks.yaml are copied to AGENCY_ROOT; a file there that set-up
did not write (or that was edited since) is the operator's and is never overwritten; the
runtime venv learns its root; a second run changes nothing.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ENV_KEYS = ("AGENCY_CRON_CONFIG", "AGENCY_CRON_MANIFEST", "AGENCY_ROOT")


@pytest.fixture
def site(tmp_path: Path) -> dict[str, Path]:
    """A checkout (config.env, tasks.yaml) and an AGENCY_ROOT whose venv has the command."""
    checkout, root = tmp_path / "checkout", tmp_path / "root"
    checkout.mkdir()
    (checkout / "config.env").write_text("LOG_RETENTION_DAYS=7\n")
    (checkout / "tasks.yaml").write_text("tasks: []\n")
    (checkout / "config.env").chmod(0o644)
    (checkout / "tasks.yaml").chmod(0o644)
    (root / "venv" / "bin").mkdir(parents=True)
    (root / "venv" / "bin" / "agency-cron").symlink_to(Path(sys.prefix) / "bin" / "agency-cron")
    return {"checkout": checkout, "root": root, "tmp": tmp_path}


def place(site, *extra: str, env: dict | None = None) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if k not in ENV_KEYS}
    args = ["--root", str(site["root"]), "--config", str(site["checkout"] / "config.env")]
    args += ["--manifest", str(site["checkout"] / "tasks.yaml"), *extra]
    return subprocess.run(
        [sys.executable, "-m", "agency_cron.installation", *args],
        capture_output=True,
        text=True,
        env={**environ, **(env or {})},
        timeout=60,
        check=False,
    )


def state(folder: Path) -> dict[str, tuple]:
    return {
        str(p): (p.read_bytes() if p.is_file() and not p.is_symlink() else None, p.lstat())
        for p in sorted(folder.rglob("*"))
    }


def mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


def test_places_both_files_then_a_second_run_changes_nothing(site):
    root = site["root"]
    first = place(site)
    assert first.returncode == 0, first.stderr
    assert first.stdout.splitlines() == [
        f"placed {root}/config.env (copy of {site['checkout']}/config.env, mode 0644)",
        f"placed {root}/tasks.yaml (copy of {site['checkout']}/tasks.yaml, mode 0644)",
    ]
    assert (root / "tasks.yaml").read_text() == "tasks: []\n"
    assert (root / "venv" / "agency-cron-root").read_text() == f"{root}\n"
    before = state(root)
    second = place(site)
    assert (second.returncode, second.stdout, second.stderr) == (0, "", "")
    assert state(root) == before


def test_a_config_holding_secrets_is_installed_private(site):
    config = site["checkout"] / "config.env"
    config.write_text("ADMIN_TOKEN=0123456789abcdefghij\n")
    assert place(site).returncode == 0
    assert mode(site["root"] / "config.env") == 0o600
    assert mode(site["root"] / "tasks.yaml") == 0o644


def test_a_private_source_stays_private(site):
    (site["checkout"] / "tasks.yaml").chmod(0o600)
    assert place(site).returncode == 0
    assert mode(site["root"] / "tasks.yaml") == 0o600


def test_an_operators_file_is_kept_and_named(site):
    root = site["root"]
    (root / "tasks.yaml").write_text("tasks: [] # mine\n")
    result = place(site)
    assert result.returncode == 0
    assert f"kept {root}/tasks.yaml: it differs from" in result.stdout
    assert (root / "tasks.yaml").read_text() == "tasks: [] # mine\n"
    # Said again on every run, never overwritten.
    assert "kept" in place(site).stdout
    assert (root / "tasks.yaml").read_text() == "tasks: [] # mine\n"


def test_a_copy_nobody_edited_follows_the_checkout(site):
    root = site["root"]
    assert place(site).returncode == 0
    (site["checkout"] / "tasks.yaml").write_text("tasks: [] # v2\n")
    result = place(site)
    assert result.stdout.startswith(f"updated {root}/tasks.yaml")
    assert (root / "tasks.yaml").read_text() == "tasks: [] # v2\n"


def test_a_copy_edited_after_set_up_is_the_operators(site):
    root = site["root"]
    assert place(site).returncode == 0
    (root / "tasks.yaml").write_text("tasks: [] # edited in place\n")
    (site["checkout"] / "tasks.yaml").write_text("tasks: [] # v2\n")
    result = place(site)
    assert "kept" in result.stdout
    assert (root / "tasks.yaml").read_text() == "tasks: [] # edited in place\n"


def test_an_identical_file_is_adopted_silently(site):
    root = site["root"]
    (root / "config.env").write_text("LOG_RETENTION_DAYS=7\n")
    (root / "config.env").chmod(0o640)
    result = place(site)
    assert f"{root}/config.env" not in result.stdout
    assert mode(root / "config.env") == 0o640  # the operator's mode is theirs
    (site["checkout"] / "config.env").write_text("LOG_RETENTION_DAYS=9\n")
    assert place(site).stdout.startswith(f"updated {root}/config.env")


def test_files_named_in_the_environment_are_not_placed(site, tmp_path):
    own = tmp_path / "own.env"
    own.write_text("")
    result = place(site, env={"AGENCY_CRON_CONFIG": str(own)})
    assert result.returncode == 0
    assert not (site["root"] / "config.env").exists()
    assert (site["root"] / "tasks.yaml").exists()


def test_link_is_made_once_and_never_replaces_another_file(site, tmp_path):
    command = site["root"] / "venv" / "bin" / "agency-cron"
    link = tmp_path / "bin" / "agency-cron"
    link.parent.mkdir()
    assert f"linked {link} -> {command}" in place(site, "--link", str(link)).stdout
    assert os.readlink(link) == str(command)
    assert "linked" not in place(site, "--link", str(link)).stdout
    link.unlink()
    link.write_text("#!/bin/sh\n")
    result = place(site, "--link", str(link))
    assert f"kept {link} (not a link to {command})" in result.stdout
    assert link.read_text() == "#!/bin/sh\n"


def test_without_the_runtime_venv_nothing_is_written(site):
    (site["root"] / "venv" / "bin" / "agency-cron").unlink()
    before = state(site["root"])
    result = place(site)
    assert result.returncode == 2
    assert result.stderr.startswith("agency-cron: error: ") and "Traceback" not in result.stderr
    assert len(result.stderr.splitlines()) == 1
    assert state(site["root"]) == before


def test_a_manifest_folder_is_refused_in_one_line(site):
    folder = site["checkout"] / "tasks.yaml"
    folder.unlink()
    folder.mkdir()
    result = place(site)
    assert result.returncode == 2
    assert result.stderr == (
        f"agency-cron: error: {folder}: --manifest: not a file (set-up installs one file;"
        " name a folder of manifests with AGENCY_CRON_MANIFEST instead)\n"
    )
    assert not (site["root"] / "tasks.yaml").exists()
